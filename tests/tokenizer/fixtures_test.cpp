// Parity with Hugging Face tokenizers 0.23 on the recorded fixture cases: ids, tokens and
// decoded text of every case, and the prompts of the model fixtures.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "test_support.h"
#include "tokenizer_test_util.h"

namespace attnlab::test {
namespace {

using nlohmann::json;

class FixtureCases : public ::testing::TestWithParam<std::string> {};

TEST_P(FixtureCases, MatchesHuggingFace) {
    const std::string name = GetParam();
    const Tokenizer& tok = fixture_tokenizer(name);
    json cases = json::parse(read_file(fixtures_dir() / "tokenizers" / name / "cases.json"));
    ASSERT_FALSE(cases["cases"].empty());
    for (const json& c : cases["cases"]) {
        const std::string text = c["text"];
        const bool add_special = c["add_special_tokens"];
        SCOPED_TRACE(::testing::Message() << name << " text=" << json(text).dump() << " add_special=" << add_special);
        const auto want_ids = c["ids"].get<std::vector<int32_t>>();
        EXPECT_EQ(tok.encode(text, add_special), want_ids);
        EXPECT_EQ(tok.encode_tokens(text, add_special), c["tokens"].get<std::vector<std::string>>());
        EXPECT_EQ(tok.decode(want_ids, false), c["decoded"].get<std::string>());
    }
}

INSTANTIATE_TEST_SUITE_P(Tokenizers, FixtureCases, ::testing::Values("gpt2", "llama2", "llama3", "qwen3"));

struct ModelCase {
    std::string model;
    int32_t extra_bos;  // transformers' GPT-2 tokenizer adds <|endoftext|>; tokenizer.json does not
};

class ModelPrompts : public ::testing::TestWithParam<ModelCase> {};

TEST_P(ModelPrompts, EncodeToReferenceIds) {
    const ModelCase mc = GetParam();
    const Tokenizer& tok = model_tokenizer(mc.model);
    json ref = json::parse(read_file(fixtures_dir() / "models" / mc.model / "reference.json"));
    for (int k = 0; k < 2; ++k) {
        const json& c = ref["cases"][k];
        const std::string prompt = c["prompt"];
        SCOPED_TRACE(::testing::Message() << mc.model << " case " << k << ": " << prompt);
        auto want = c["input_ids"].get<std::vector<int32_t>>();
        std::vector<int32_t> got = tok.encode(prompt, true);
        if (mc.extra_bos >= 0) got.insert(got.begin(), mc.extra_bos);
        EXPECT_EQ(got, want);
        // Decoding without the specials gives the prompt back.
        EXPECT_EQ(tok.decode(want, true), prompt);
    }
}

INSTANTIATE_TEST_SUITE_P(Models, ModelPrompts,
                         ::testing::Values(ModelCase{"gpt2-tiny", 50256}, ModelCase{"llama-tiny", -1},
                                           ModelCase{"tinylm", -1}),
                         [](const auto& info) {
                             std::string n = info.param.model;
                             for (char& ch : n)
                                 if (ch == '-') ch = '_';
                             return n;
                         });

}  // namespace
}  // namespace attnlab::test
