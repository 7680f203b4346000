// Pre-tokenizers of tokenizer.json: they cut normalized text into the pieces ("words") that
// the model encodes one by one. ByteLevel, Split, Metaspace, Digits, Whitespace,
// WhitespaceSplit, Punctuation, CharDelimiterSplit, BertPreTokenizer, Sequence.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "tokenizer/json_reader.h"

namespace attnlab::tok {

// One piece of the input on its way through the pipeline.
struct Piece {
    std::string text;
    int32_t added_id = -1;  // >= 0: an added token, encoded as this id and never split again
    // The piece begins at offset 0 of the input text (Metaspace prepend_scheme "first").
    // A sub-piece inherits it when it begins where its parent began.
    bool at_start = false;
};

// Receives pieces one at a time: pre-tokenizers stream, so a long text is never held as a
// list of a million pieces.
using PieceSink = std::function<void(Piece&&)>;

class PreTokenizer {
public:
    virtual ~PreTokenizer() = default;
    // Passes the non-empty pieces `in` splits into to `out`, in order.
    virtual void split(Piece&& in, const PieceSink& out) const = 0;
};

// Metaspace's prepend_scheme (or the older add_prefix_space), shared with its decoder.
enum class PrependScheme { First, Never, Always };
PrependScheme parse_prepend_scheme(const Json& j, const Where& where);

std::unique_ptr<PreTokenizer> build_pre_tokenizer(const Json& j, const Where& where, int depth = 0);

}  // namespace attnlab::tok
