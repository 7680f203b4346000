// DetokenizeStream: text streamed token by token equals decode() of all the tokens, and no
// chunk ever ends inside a multi-byte character (emoji and CJK split across byte-fallback
// tokens in Llama-2, across byte-level tokens in GPT-2 / Llama-3 / Qwen).
#include <gtest/gtest.h>

#include "tokenizer_test_util.h"
#include "attnlab/error.h"
#include "tokenizer/unicode.h"

namespace attnlab::test {
namespace {

const char* const kTexts[] = {
    "Emoji: 👋🌍🚀 and ❤️ done",
    "你好，世界！这是一个测试。",
    "mixed 日本語 text 🎉🎉 with café and naïve 😀",
    "  leading spaces\nand\ttabs 🚀",
    "🚀",
};

void check_stream(const Tokenizer& tok, const std::vector<int32_t>& ids, bool skip_special) {
    DetokenizeStream stream(tok, skip_special);
    std::string streamed;
    int held_back = 0;
    for (int32_t id : ids) {
        std::string chunk = stream.push(id);
        EXPECT_EQ(tok::find_invalid_utf8(chunk), std::string::npos);
        EXPECT_EQ(chunk.find("\xEF\xBF\xBD"), std::string::npos) << "chunk ends inside a character";
        if (chunk.empty()) ++held_back;
        streamed += chunk;
    }
    streamed += stream.finish();
    EXPECT_EQ(streamed, tok.decode(ids, skip_special));
}

class StreamTest : public ::testing::TestWithParam<std::string> {};

TEST_P(StreamTest, EqualsWholeDecode) {
    const Tokenizer& tok = fixture_tokenizer(GetParam());
    for (const char* text : kTexts) {
        SCOPED_TRACE(text);
        for (bool special : {false, true}) {
            std::vector<int32_t> ids = tok.encode(text, special);
            check_stream(tok, ids, false);
            check_stream(tok, ids, true);
        }
    }
}

INSTANTIATE_TEST_SUITE_P(Tokenizers, StreamTest, ::testing::Values("gpt2", "llama2", "llama3", "qwen3"));

TEST(StreamTest, HoldsBackSplitCharacters) {
    // Llama-2 has no token for 👋: it is four <0xNN> tokens, and nothing may come out until
    // the fourth has arrived.
    const Tokenizer& tok = fixture_tokenizer("llama2");
    std::vector<int32_t> ids = tok.encode("👋", false);
    ASSERT_EQ(ids.size(), 5u);  // "▁" then four bytes
    DetokenizeStream stream(tok);
    std::string out;
    for (size_t k = 0; k < ids.size(); ++k) {
        std::string chunk = stream.push(ids[k]);
        if (k >= 1 && k < 4) {
            EXPECT_EQ(chunk, "") << "byte " << k;
        }
        out += chunk;
    }
    EXPECT_EQ(out + stream.finish(), "👋");
}

TEST(StreamTest, ByteLevelEmojiAcrossTokens) {
    const Tokenizer& tok = fixture_tokenizer("gpt2");
    std::vector<int32_t> ids = tok.encode("👋🌍", false);
    ASSERT_GT(ids.size(), 2u);  // GPT-2 spells these emoji with several byte tokens
    DetokenizeStream stream(tok);
    std::string out;
    for (int32_t id : ids) out += stream.push(id);
    EXPECT_EQ(out + stream.finish(), "👋🌍");
}

TEST(StreamTest, FinishReplacesIncompleteBytes) {
    // The stream ends in the middle of a character: finish() gives what decode() gives.
    const Tokenizer& tok = fixture_tokenizer("llama2");
    std::vector<int32_t> ids = tok.encode("a👋", false);
    ids.pop_back();
    DetokenizeStream stream(tok);
    std::string out;
    for (int32_t id : ids) out += stream.push(id);
    out += stream.finish();
    EXPECT_EQ(out, tok.decode(ids));
    EXPECT_NE(out.find("\xEF\xBF\xBD"), std::string::npos);
}

TEST(StreamTest, RejectsOutOfRangeIdAndKeepsGoing) {
    const Tokenizer& tok = fixture_tokenizer("gpt2");
    DetokenizeStream stream(tok);
    std::string out = stream.push(tok.encode("Hello", false)[0]);
    EXPECT_THROW(stream.push(-5), InvalidArgument);
    EXPECT_THROW(stream.push(1 << 30), InvalidArgument);
    out += stream.push(tok.encode(" world", false)[0]);
    EXPECT_EQ(out + stream.finish(), "Hello world");
}

}  // namespace
}  // namespace attnlab::test
