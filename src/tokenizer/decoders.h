// Decoders of tokenizer.json: turn token strings back into text (ByteLevel, Metaspace,
// Replace, ByteFallback, Fuse, Strip, BPEDecoder, Sequence). Each works on the list of
// token strings, as tokenizers' decode_chain does; the final text is their concatenation.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "tokenizer/json_reader.h"

namespace attnlab::tok {

class Decoder {
public:
    virtual ~Decoder() = default;
    virtual void decode_chain(std::vector<std::string>& tokens) const = 0;
};

std::unique_ptr<Decoder> build_decoder(const Json& j, const Where& where, int depth = 0);

}  // namespace attnlab::tok
