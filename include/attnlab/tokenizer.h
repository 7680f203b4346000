// Tokenizer: Hugging Face tokenizer.json, encode and decode exactly as `tokenizers` does.
//
// Supported: model BPE (byte-level as in GPT-2 / Llama-3 / Qwen, and SentencePiece-style with
// byte fallback as in Llama-2 / Mistral / Gemma); normalizers NFC, NFD, NFKC, NFKD, Lowercase,
// Prepend, Replace, Strip, StripAccents, ByteLevel, Sequence; pre-tokenizers ByteLevel, Split
// (PCRE2 regexes with Unicode classes and lookahead), Metaspace, Digits, Whitespace,
// WhitespaceSplit, Punctuation, CharDelimiterSplit, BertPreTokenizer, Sequence; decoders
// ByteLevel, Metaspace, Replace, ByteFallback, Fuse, Strip, BPEDecoder, Sequence; added/special
// tokens matched in raw text; post-processors TemplateProcessing, ByteLevel, RobertaProcessing,
// BertProcessing, Sequence. Anything else is a NotSupported error naming the part.
// Thread safety: a const Tokenizer may be used by several threads at once.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace attnlab {

class Tokenizer {
public:
    // Loads tokenizer.json. Throws IoError / FormatError / NotSupported.
    static Tokenizer from_file(const std::string& path);
    static Tokenizer from_json(std::string_view json_text, const std::string& origin = "<memory>");

    Tokenizer(Tokenizer&&) noexcept;
    Tokenizer& operator=(Tokenizer&&) noexcept;
    ~Tokenizer();

    // Tokenizer.encode(text, add_special_tokens=...).ids
    std::vector<int32_t> encode(std::string_view text, bool add_special_tokens = true) const;
    // The token strings of encode(), as Encoding.tokens.
    std::vector<std::string> encode_tokens(std::string_view text,
                                           bool add_special_tokens = true) const;
    // Tokenizer.decode(ids, skip_special_tokens=...). Ids out of range throw InvalidArgument.
    std::string decode(std::span<const int32_t> ids, bool skip_special_tokens = false) const;

    int64_t vocab_size() const;  // largest id + 1, added tokens included
    std::optional<std::string> id_to_token(int32_t id) const;
    std::optional<int32_t> token_to_id(std::string_view token) const;
    bool is_special(int32_t id) const;

private:
    struct Impl;
    explicit Tokenizer(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> impl_;
};

// Streams text as tokens arrive: returns only the new, complete UTF-8 text since the last
// call (bytes of a split multi-byte character are held back until they complete).
class DetokenizeStream {
public:
    explicit DetokenizeStream(const Tokenizer& tokenizer, bool skip_special_tokens = false);
    std::string push(int32_t id);
    std::string finish();  // whatever is left, invalid bytes replaced as decode() does

private:
    const Tokenizer& tokenizer_;
    bool skip_special_;
    // The window of ids still needed as context (tokenizers' DecodeStream): the text of
    // ids_[0, prefix_index_) has been returned; prefix_ is the decode of the window the last
    // time text was returned, so new text is what a longer decode adds after it.
    std::vector<int32_t> ids_;
    size_t emitted_bytes_ = 0;  // total bytes returned so far
    size_t prefix_index_ = 0;
    std::string prefix_;
};

}  // namespace attnlab
