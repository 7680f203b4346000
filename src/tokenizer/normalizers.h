// Normalizers of tokenizer.json (NFC/NFD/NFKC/NFKD, Lowercase, Prepend, Replace, Strip,
// StripAccents, ByteLevel, Sequence), applied to each piece of text between added tokens.
#pragma once

#include <memory>
#include <string>

#include "tokenizer/json_reader.h"
#include "tokenizer/regex.h"

namespace attnlab::tok {

class Normalizer {
public:
    virtual ~Normalizer() = default;
    // Rewrites `text`. `at_start` says whether the text begins at offset 0 of the input
    // (Metaspace's prepend_scheme "first" depends on it); a normalizer that removes the
    // leading characters clears it, as the offsets of the remaining text no longer start at 0.
    virtual void normalize(std::string& text, bool& at_start) const = 0;
};

// A tokenizer.json pattern, obj[key] = {"String": s} or {"Regex": r} (Split, Replace).
Pattern build_pattern(const Json& obj, std::string_view key, const Where& where);

// Null JSON gives null. Unknown types throw NotSupported naming the type.
std::unique_ptr<Normalizer> build_normalizer(const Json& j, const Where& where, int depth = 0);

}  // namespace attnlab::tok
