// Every model fixture of ../shared/fixtures/models, through the same CLI path a user runs:
// `attnlab run` (hidden states, attention patterns, logits) and `attnlab generate` (greedy ids
// with the KV cache) against Hugging Face transformers run in float64.
#include "test_support.h"

#include <attnlab/safetensors.h>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>

namespace attnlab::test {
namespace {

using json = nlohmann::json;

struct FixtureCase {
    std::string model;
    int index = 0;  // -1: the fixture could not be read (the test then fails saying so)
};

// The cases are listed while tests are registered (and ctest discovers them at build time): a
// missing fixture directory becomes one failing case per model, not an abort of the build.
std::vector<FixtureCase> all_cases() {
    std::vector<FixtureCase> cases;
    for (const char* model : {"gpt2-tiny", "llama-tiny", "llama3-tiny", "qwen2-tiny", "qwen3-tiny",
                              "mistral-tiny", "tinylm"}) {
        try {
            json ref = json::parse(read_file(fixtures_dir() / "models" / model / "reference.json"));
            for (size_t i = 0; i < ref["cases"].size(); ++i) cases.push_back({model, static_cast<int>(i)});
        } catch (const std::exception&) {
            cases.push_back({model, -1});
        }
    }
    return cases;
}

std::string join_ids(const std::vector<int64_t>& ids) {
    std::string s;
    for (size_t i = 0; i < ids.size(); ++i) s += (i ? "," : "") + std::to_string(ids[i]);
    return s;
}

// max |a - b| / max |b|: the relative error of a whole tensor.
double relative_error(const std::vector<float>& got, const Tensor& ref) {
    std::vector<float> r = ref.to_floats();
    EXPECT_EQ(got.size(), r.size());
    double max_err = 0, max_ref = 0;
    for (size_t i = 0; i < std::min(got.size(), r.size()); ++i) {
        max_err = std::max(max_err, std::fabs(double(got[i]) - double(r[i])));
        max_ref = std::max(max_ref, std::fabs(double(r[i])));
    }
    return max_err / std::max(max_ref, 1e-30);
}

double max_abs_error(const std::vector<float>& got, const Tensor& ref) {
    std::vector<float> r = ref.to_floats();
    EXPECT_EQ(got.size(), r.size());
    double max_err = 0;
    for (size_t i = 0; i < std::min(got.size(), r.size()); ++i)
        max_err = std::max(max_err, std::fabs(double(got[i]) - double(r[i])));
    return max_err;
}

class ModelFixture : public ::testing::TestWithParam<FixtureCase> {};

TEST_P(ModelFixture, MatchesTransformers) {
    const FixtureCase& fc = GetParam();
    ASSERT_GE(fc.index, 0) << "cannot read " << (fixtures_dir() / "models" / fc.model / "reference.json")
                           << ": the fixtures are expected at ../shared/fixtures next to the repository";
    TempDir tmp;
    const auto model_dir = prepare_model_dir(fc.model, tmp);
    json ref_json = json::parse(read_file(fixtures_dir() / "models" / fc.model / "reference.json"));
    const json& c = ref_json["cases"][fc.index];
    SafetensorsFile ref = load_safetensors((fixtures_dir() / "models" / fc.model / c["file"].get<std::string>()).string());
    std::vector<int64_t> ids = ref.tensors.at("input_ids").to_ints();
    ASSERT_EQ(ids, c["input_ids"].get<std::vector<int64_t>>());

    // Prompt cases go through the tokenizer, as a user's -p would; the others use --ids.
    // GPT-2's tokenizer adds no BOS: the fixture prepends 50256 itself (fixtures README), so
    // there the prompt is checked with `tokenize` and the forward pass takes --ids.
    std::vector<std::string> input = {"--ids", join_ids(ids)};
    const bool from_text = c.contains("prompt") && c["prompt"].is_string();
    if (from_text && fc.model == "gpt2-tiny") {
        CommandResult tok = run_cli({"tokenize", "-m", model_dir.string(), "--text", c["prompt"].get<std::string>(), "--json"});
        ASSERT_EQ(tok.exit_code, 0) << tok.err;
        std::vector<int64_t> encoded = json::parse(tok.out)["ids"].get<std::vector<int64_t>>();
        encoded.insert(encoded.begin(), 50256);
        EXPECT_EQ(encoded, ids);
    } else if (from_text) {
        input = {"-p", c["prompt"].get<std::string>()};
    }

    const std::string out = (tmp / "out.safetensors").string();
    std::vector<std::string> args = {"run", "-m", model_dir.string(), "--save", out, "--hooks",
                                     "blocks\\.[0-9]+\\.hook_resid_pre|ln_final\\.hook_normalized|"
                                     "blocks\\.[0-9]+\\.attn\\.hook_pattern"};
    args.insert(args.end(), input.begin(), input.end());
    CommandResult r = run_cli(args);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    SafetensorsFile got = load_safetensors(out);
    EXPECT_EQ(got.tensors.at("input_ids").to_ints(), ids) << "tokenizer disagrees with the fixture";

    // Hidden states: hidden.l = blocks.l.hook_resid_pre, hidden.L = ln_final.hook_normalized.
    int64_t n_layers = 0;
    while (ref.tensors.count("attn_probs." + std::to_string(n_layers))) ++n_layers;
    ASSERT_GT(n_layers, 0);
    for (int64_t l = 0; l <= n_layers; ++l) {
        const std::string hook = l < n_layers ? "blocks." + std::to_string(l) + ".hook_resid_pre"
                                              : "ln_final.hook_normalized";
        ASSERT_TRUE(got.tensors.count(hook)) << hook;
        EXPECT_LT(relative_error(got.tensors.at(hook).to_floats(), ref.tensors.at("hidden." + std::to_string(l))), 1e-4)
            << hook;
    }
    for (int64_t l = 0; l < n_layers; ++l) {
        const std::string hook = "blocks." + std::to_string(l) + ".attn.hook_pattern";
        ASSERT_TRUE(got.tensors.count(hook)) << hook;
        EXPECT_EQ(got.tensors.at(hook).shape(), ref.tensors.at("attn_probs." + std::to_string(l)).shape());
        EXPECT_LT(max_abs_error(got.tensors.at(hook).to_floats(), ref.tensors.at("attn_probs." + std::to_string(l))), 1e-5)
            << hook;
    }

    // Logits: the last row, the logsumexp of every row, the top-8 of every row.
    const Tensor& logits = got.tensors.at("logits");  // (T, V)
    const int64_t T = logits.size(0), V = logits.size(1);
    ASSERT_EQ(T, static_cast<int64_t>(ids.size()));
    std::vector<float> all = logits.to_floats();
    std::vector<float> last(all.end() - V, all.end());
    EXPECT_LT(relative_error(last, ref.tensors.at("logits_last")), 1e-4);
    std::vector<float> lse(T);
    for (int64_t t = 0; t < T; ++t) {
        double m = *std::max_element(all.begin() + t * V, all.begin() + (t + 1) * V), s = 0;
        for (int64_t v = 0; v < V; ++v) s += std::exp(all[t * V + v] - m);
        lse[t] = static_cast<float>(m + std::log(s));
    }
    EXPECT_LT(relative_error(lse, ref.tensors.at("logsumexp")), 1e-4);
    const Tensor& top_ids = ref.tensors.at("top8_ids");      // (T, 8)
    const Tensor& top_logits = ref.tensors.at("top8_logits");  // (T, 8)
    const double scale = std::max(1.0, static_cast<double>(*std::max_element(all.begin(), all.end())));
    for (int64_t t = 0; t < T; ++t) {
        for (int64_t k = 0; k < 8; ++k) {
            const int64_t id = static_cast<int64_t>(top_ids.item({t, k}));
            // The reference's k-th best token has the reference's k-th best logit here too.
            EXPECT_NEAR(all[t * V + id], top_logits.item({t, k}), 1e-4 * scale) << "row " << t << " rank " << k;
        }
    }

    // Greedy decoding with the KV cache, 16 tokens, no EOS stop.
    std::vector<std::string> gen = {"generate", "-m", model_dir.string(), "--ids", join_ids(ids), "-n", "16",
                                    "--temp", "0", "--json"};
    r = run_cli(gen);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    std::vector<int64_t> greedy = json::parse(r.out)["ids"].get<std::vector<int64_t>>();
    std::vector<int64_t> expected = ref.tensors.at("greedy_ids").to_ints();
    // tinylm's fixture stores zeros for greedy_ids (see the note in docs/testing.md): check its
    // greedy continuation against the top-1 of the fixture's own logits instead.
    const bool fixture_has_greedy = std::any_of(expected.begin(), expected.end(), [](int64_t v) { return v != 0; });
    if (fixture_has_greedy) {
        EXPECT_EQ(greedy, expected);
    } else {
        EXPECT_EQ(greedy.front(), static_cast<int64_t>(top_ids.item({T - 1, 0})));
    }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, ModelFixture, ::testing::ValuesIn(all_cases()),
                         [](const ::testing::TestParamInfo<FixtureCase>& info) {
                             std::string name = info.param.model + (info.param.index < 0 ? "_missing" : "_case" + std::to_string(info.param.index));
                             std::replace(name.begin(), name.end(), '-', '_');
                             return name;
                         });

}  // namespace
}  // namespace attnlab::test

namespace attnlab::test {
namespace {

// tinylm's reference.json keeps greedy continuations of three prompts as text (decoded with
// special tokens skipped, EOS not stopping): the engine's greedy ids, decoded the same way,
// must reproduce them. This is the exact greedy check for tinylm, whose greedy_ids are zeros.
TEST(TinylmSamples, GreedyContinuationsMatchTransformers) {
    json ref = json::parse(read_file(fixtures_dir() / "models" / "tinylm" / "reference.json"));
    TempDir tmp;
    const auto model_dir = prepare_model_dir("tinylm", tmp);
    ASSERT_FALSE(ref["samples"].empty());
    for (const json& sample : ref["samples"]) {
        const std::string prompt = sample["prompt"].get<std::string>();
        const std::string expected = sample["greedy"].get<std::string>();
        ASSERT_EQ(expected.rfind(prompt, 0), 0u);
        CommandResult r = run_cli({"generate", "-m", model_dir.string(), "-p", prompt, "-n", "32", "--temp", "0",
                                   "--ignore-eos", "--json"});
        ASSERT_EQ(r.exit_code, 0) << r.err;
        std::vector<int64_t> ids = json::parse(r.out)["ids"].get<std::vector<int64_t>>();
        std::string id_list;
        for (size_t i = 0; i < ids.size(); ++i) id_list += (i ? "," : "") + std::to_string(ids[i]);
        CommandResult d = run_cli({"detokenize", "-m", model_dir.string(), "--ids", id_list, "--skip-special"});
        ASSERT_EQ(d.exit_code, 0) << d.err;
        std::string text = d.out.substr(0, d.out.size() - 1);  // detokenize ends with a newline
        // 32 tokens may end inside the reference text or run past it: compare the overlap.
        const std::string continuation = expected.substr(prompt.size());
        const size_t n = std::min(text.size(), continuation.size());
        ASSERT_GT(n, 40u);
        EXPECT_EQ(text.substr(0, n), continuation.substr(0, n)) << prompt;
    }
}

}  // namespace
}  // namespace attnlab::test
