// libFuzzer target for the tokenizer. Each input is used twice:
//  1. as a tokenizer.json: loading it may only throw attnlab::Error; a tokenizer that loads
//     must encode, decode and stream without crashing;
//  2. as text for a fixed real tokenizer (ATTNLAB_FUZZ_TOKENIZER=<tokenizer.json>, else a
//     built-in byte-level one): valid UTF-8 must encode, decode and stream; invalid UTF-8
//     must be rejected with InvalidArgument. For the built-in tokenizer decode(encode(text))
//     must give the text back, and streaming must give what decode gives.
#include <attnlab/error.h>
#include <attnlab/tokenizer.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "tokenizer/byte_level.h"
#include "tokenizer/unicode.h"

namespace {

std::string json_string(const std::string& s) {
    std::string out = "\"";
    for (unsigned char c : s) {
        if (c == '"' || c == '\\') {
            out += '\\';
            out += static_cast<char>(c);
        } else if (c < 0x20) {
            char buf[8];
            std::snprintf(buf, sizeof buf, "\\u%04x", c);
            out += buf;
        } else {
            out += static_cast<char>(c);
        }
    }
    return out + "\"";
}

// GPT-2 style: all 256 byte symbols, a few merges, specials and an added single-word token.
std::string builtin_tokenizer_json() {
    std::string vocab;
    int id = 0;
    for (int b = 0; b < 256; ++b) {
        std::string sym;
        attnlab::tok::append_byte_level(sym, std::string(1, static_cast<char>(b)));
        vocab += (b ? "," : "") + json_string(sym) + ":" + std::to_string(id++);
    }
    const char* merged[] = {"Ġt", "he", "Ġthe", "in", "Ġa", "er", "on", "Ġin", "ĠĠ", "ĠĠĠĠ"};
    for (const char* m : merged) vocab += "," + json_string(m) + ":" + std::to_string(id++);
    return R"({"version": "1.0",
  "added_tokens": [
    {"id": 300, "content": "<|endoftext|>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true},
    {"id": 301, "content": "<think>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": false},
    {"id": 302, "content": "hello", "single_word": true, "lstrip": false, "rstrip": false, "normalized": false, "special": false}],
  "normalizer": null,
  "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
    {"type": "Split", "pattern": {"Regex": "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"}, "behavior": "Isolated", "invert": false},
    {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false}]},
  "post_processor": {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<|endoftext|>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
    "special_tokens": {"<|endoftext|>": {"id": "<|endoftext|>", "ids": [300], "tokens": ["<|endoftext|>"]}}},
  "decoder": {"type": "ByteLevel"},
  "model": {"type": "BPE", "ignore_merges": false, "vocab": {)" +
           vocab + R"(}, "merges": [["Ġ", "t"], ["h", "e"], ["Ġt", "he"], ["i", "n"], ["Ġ", "a"], ["e", "r"], ["o", "n"], ["Ġ", "in"], ["Ġ", "Ġ"], ["ĠĠ", "ĠĠ"]]}})";
}

struct Fixed {
    std::unique_ptr<attnlab::Tokenizer> tokenizer;
    bool builtin = true;
};

const Fixed& fixed() {
    static const Fixed f = [] {
        Fixed out;
        if (const char* path = std::getenv("ATTNLAB_FUZZ_TOKENIZER")) {
            out.tokenizer = std::make_unique<attnlab::Tokenizer>(attnlab::Tokenizer::from_file(path));
            out.builtin = false;
        } else {
            out.tokenizer = std::make_unique<attnlab::Tokenizer>(
                attnlab::Tokenizer::from_json(builtin_tokenizer_json(), "<fuzz builtin>"));
        }
        return out;
    }();
    return f;
}

std::string stream_all(const attnlab::Tokenizer& tok, const std::vector<int32_t>& ids) {
    attnlab::DetokenizeStream stream(tok);
    std::string out;
    for (int32_t id : ids) out += stream.push(id);
    return out + stream.finish();
}

// Exercises a tokenizer that loaded: nothing may escape but attnlab::Error.
void exercise(const attnlab::Tokenizer& tok, const std::string& text) {
    try {
        std::vector<int32_t> ids = tok.encode(text, true);
        tok.encode_tokens(text, false);
        tok.decode(ids, false);
        tok.decode(ids, true);
        stream_all(tok, ids);
    } catch (const attnlab::Error&) {
    }
    // Ids taken from the input bytes, in and out of range.
    std::vector<int32_t> ids;
    for (size_t k = 0; k + 1 < text.size() && ids.size() < 64; k += 2)
        ids.push_back(static_cast<int32_t>(static_cast<unsigned char>(text[k]) << 8 | static_cast<unsigned char>(text[k + 1])) %
                      static_cast<int32_t>(std::max<int64_t>(tok.vocab_size() + 2, 1)));
    try {
        tok.decode(ids, false);
        stream_all(tok, ids);
    } catch (const attnlab::Error&) {
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string input(reinterpret_cast<const char*>(data), size);

    try {
        attnlab::Tokenizer tok = attnlab::Tokenizer::from_json(input, "fuzz/tokenizer.json");
        exercise(tok, "Hello world! 123 héllo 👋 <|endoftext|> <s>  x\n");
        exercise(tok, input.substr(0, 512));
    } catch (const attnlab::Error&) {
        // Rejected cleanly.
    }

    const Fixed& f = fixed();
    const attnlab::Tokenizer& tok = *f.tokenizer;
    const bool valid = attnlab::tok::find_invalid_utf8(input) == std::string::npos;
    std::vector<int32_t> ids;
    try {
        ids = tok.encode(input, false);
        if (!valid) std::abort();  // invalid UTF-8 must be refused
    } catch (const attnlab::InvalidArgument&) {
        if (valid && f.builtin) std::abort();
        return 0;
    }
    const std::string decoded = tok.decode(ids, false);
    if (f.builtin && decoded != input) std::abort();  // byte-level BPE loses nothing
    if (stream_all(tok, ids) != decoded) std::abort();
    exercise(tok, input);
    return 0;
}
