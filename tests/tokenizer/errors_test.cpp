// Malformed or hostile tokenizer.json and bad arguments give typed errors with a clear
// message ("[tokenizer] <file>: <field>: ..."), never a crash.
#include <gtest/gtest.h>

#include <climits>

#include "attnlab/error.h"
#include "attnlab/tokenizer.h"
#include "test_support.h"

namespace attnlab::test {
namespace {

// A minimal valid BPE tokenizer with `extra` spliced into the top level.
std::string tokenizer_json(const std::string& model_extra = "", const std::string& top_extra = "") {
    return R"({"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2})" + model_extra +
           R"(, "merges": ["a b"]})" + top_extra + "}";
}

template <class E>
std::string error_of(const std::string& json) {
    try {
        Tokenizer::from_json(json, "bad.json");
    } catch (const E& e) {
        return e.what();
    } catch (const Error& e) {
        ADD_FAILURE() << "wrong error type: " << e.what();
        return "";
    }
    ADD_FAILURE() << "no error for " << json;
    return "";
}

void expect_has(const std::string& message, std::initializer_list<const char*> parts) {
    EXPECT_EQ(message.rfind("[tokenizer]", 0), 0u) << message;
    for (const char* p : parts) EXPECT_NE(message.find(p), std::string::npos) << "'" << p << "' not in: " << message;
}

TEST(TokenizerErrors, ValidMinimalLoads) {
    Tokenizer tok = Tokenizer::from_json(tokenizer_json());
    EXPECT_EQ(tok.encode("ab", false), (std::vector<int32_t>{2}));
    EXPECT_EQ(tok.vocab_size(), 3);
}

TEST(TokenizerErrors, MalformedJson) {
    expect_has(error_of<FormatError>("{\"model\": "), {"bad.json", "JSON"});
    expect_has(error_of<FormatError>("not json"), {"bad.json"});
    expect_has(error_of<FormatError>("[1, 2]"), {"bad.json", "object"});
    expect_has(error_of<FormatError>(""), {"bad.json"});
}

TEST(TokenizerErrors, MissingModel) { expect_has(error_of<FormatError>(R"({"added_tokens": []})"), {"model"}); }

TEST(TokenizerErrors, UnknownModelType) {
    expect_has(error_of<NotSupported>(R"({"model": {"type": "Unigram", "vocab": [["a", 0.0]]}})"),
               {"model.type", "Unigram"});
    expect_has(error_of<NotSupported>(R"({"model": {"type": "WordPiece", "vocab": {"a": 0}}})"), {"WordPiece"});
}

TEST(TokenizerErrors, UnknownComponentTypes) {
    expect_has(error_of<NotSupported>(tokenizer_json("", R"(, "pre_tokenizer": {"type": "Fancy"})")),
               {"pre_tokenizer.type", "Fancy"});
    expect_has(error_of<NotSupported>(tokenizer_json(
                   "", R"(, "pre_tokenizer": {"type": "Sequence", "pretokenizers": [{"type": "Digits"}, {"type": "Nope"}]})")),
               {"pre_tokenizer.pretokenizers[1].type", "Nope"});
    expect_has(error_of<NotSupported>(tokenizer_json("", R"(, "normalizer": {"type": "Precompiled"})")),
               {"normalizer.type", "Precompiled"});
    expect_has(error_of<NotSupported>(tokenizer_json("", R"(, "decoder": {"type": "CTC"})")), {"decoder.type", "CTC"});
    expect_has(error_of<NotSupported>(tokenizer_json("", R"(, "post_processor": {"type": "Magic"})")),
               {"post_processor.type", "Magic"});
}

TEST(TokenizerErrors, MergesNamingUnknownTokens) {
    expect_has(error_of<FormatError>(R"({"model": {"type": "BPE", "vocab": {"a": 0, "b": 1}, "merges": ["a c"]}})"),
               {"model.merges[0]", "'c'"});
    expect_has(error_of<FormatError>(R"({"model": {"type": "BPE", "vocab": {"a": 0, "b": 1}, "merges": [["a", "b"]]}})"),
               {"model.merges[0]", "'ab'"});
    expect_has(error_of<FormatError>(R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": ["a"]}})"),
               {"merges[0]"});
    expect_has(error_of<FormatError>(R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": [["a", "a", "a"]]}})"),
               {"merges[0]"});
}

TEST(TokenizerErrors, WrongTypesAndRanges) {
    expect_has(error_of<FormatError>(R"({"model": {"type": "BPE", "vocab": {"a": "zero"}, "merges": []}})"), {"vocab"});
    expect_has(error_of<FormatError>(R"({"model": {"type": "BPE", "vocab": {"a": -1}, "merges": []}})"), {"vocab", "-1"});
    expect_has(error_of<FormatError>(R"({"model": {"type": "BPE", "vocab": {"a": 99999999999}, "merges": []}})"),
               {"vocab"});
    expect_has(error_of<FormatError>(R"({"model": {"type": "BPE", "vocab": {"a": 0}}})"), {"merges"});
    expect_has(error_of<FormatError>(R"({"model": {"type": "BPE", "merges": []}})"), {"vocab"});
    expect_has(error_of<FormatError>(R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": {}}})"), {"merges"});
    expect_has(error_of<FormatError>(R"({"model": {"type": 7, "vocab": {"a": 0}, "merges": []}})"), {"model.type"});
    expect_has(error_of<FormatError>(tokenizer_json(", \"byte_fallback\": \"yes\"")), {"model.byte_fallback"});
    expect_has(error_of<FormatError>(tokenizer_json("", R"(, "added_tokens": [{"id": -3, "content": "x"}])")),
               {"added_tokens[0].id"});
    expect_has(error_of<FormatError>(tokenizer_json("", R"(, "added_tokens": [{"content": "x"}])")),
               {"added_tokens[0]", "'id'"});
    expect_has(error_of<FormatError>(tokenizer_json(
                   "", R"(, "pre_tokenizer": {"type": "Split", "pattern": {"Regex": "(unclosed"}, "behavior": "Isolated"})")),
               {"pre_tokenizer.pattern", "(unclosed"});
    expect_has(error_of<FormatError>(tokenizer_json(
                   "", R"(, "pre_tokenizer": {"type": "Split", "pattern": {"Regex": "a"}, "behavior": "Sideways"})")),
               {"behavior", "Sideways"});
    expect_has(error_of<FormatError>(tokenizer_json(
                   "", R"(, "post_processor": {"type": "TemplateProcessing", "single": "<s> $A", "special_tokens": {}})")),
               {"'<s>'"});
}

TEST(TokenizerErrors, DeepNesting) {
    std::string deep(100000, '[');
    expect_has(error_of<FormatError>(deep), {"bad.json"});
    std::string nested = R"({"type": "Sequence", "normalizers": [)";
    std::string json = tokenizer_json("", ", \"normalizer\": " + [&] {
        std::string s;
        for (int k = 0; k < 60; ++k) s += nested;
        s += R"({"type": "NFC"})";
        for (int k = 0; k < 60; ++k) s += "]}";
        return s;
    }());
    expect_has(error_of<FormatError>(json), {"normalizer"});
}

TEST(TokenizerErrors, DecodeIdsOutOfRange) {
    Tokenizer tok = Tokenizer::from_json(tokenizer_json());
    for (int32_t bad : {-1, 3, INT_MAX, INT_MIN}) {
        std::vector<int32_t> ids = {0, bad};
        try {
            tok.decode(ids);
            ADD_FAILURE() << "no error for id " << bad;
        } catch (const InvalidArgument& e) {
            expect_has(e.what(), {"decode", std::to_string(bad).c_str(), "position 1"});
        }
    }
    EXPECT_FALSE(tok.id_to_token(-1));
    EXPECT_FALSE(tok.id_to_token(1 << 30));
    EXPECT_FALSE(tok.is_special(-7));
}

TEST(TokenizerErrors, InvalidUtf8Input) {
    Tokenizer tok = Tokenizer::from_json(tokenizer_json());
    try {
        tok.encode("ab\xC3(", false);
        ADD_FAILURE() << "no error";
    } catch (const InvalidArgument& e) {
        expect_has(e.what(), {"UTF-8", "offset 2"});
    }
    EXPECT_THROW(tok.encode("\xED\xA0\x80", false), InvalidArgument);  // a surrogate
    EXPECT_THROW(tok.encode("\xC0\x80", false), InvalidArgument);      // overlong
}

TEST(TokenizerErrors, Files) {
    EXPECT_THROW(Tokenizer::from_file("/nonexistent/tokenizer.json"), IoError);
    TempDir dir;
    EXPECT_THROW(Tokenizer::from_file(dir.path().string()), IoError);
    write_file(dir / "tokenizer.json", "{\"model\": 3}");
    try {
        Tokenizer::from_file((dir / "tokenizer.json").string());
        ADD_FAILURE() << "no error";
    } catch (const FormatError& e) {
        expect_has(e.what(), {"tokenizer.json", "model"});
    }
}

}  // namespace
}  // namespace attnlab::test
