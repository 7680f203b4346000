// perplexity(): against an independent transcription of the Hugging Face guide's sliding-window
// loop on a tiny random model (odd sizes, overlapping and non-overlapping windows, with and
// without BOS), an exact uniform-logits case, the errors; and `attnlab perplexity` on tinylm.
#include "test_support.h"

#include <attnlab/error.h>
#include <attnlab/model.h>
#include <attnlab/perplexity.h>
#include <attnlab/safetensors.h>

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace attnlab::test {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

constexpr int64_t kVocab = 97;  // odd on purpose

json tiny_config(bool with_bos) {
    json c = {{"architectures", {"LlamaForCausalLM"}},
              {"model_type", "llama"},
              {"vocab_size", kVocab},
              {"hidden_size", 24},
              {"intermediate_size", 40},
              {"num_hidden_layers", 2},
              {"num_attention_heads", 3},
              {"num_key_value_heads", 1},
              {"head_dim", 8},
              {"max_position_embeddings", 64},
              {"rms_norm_eps", 1e-5},
              {"rope_theta", 10000.0},
              {"tie_word_embeddings", false},
              {"torch_dtype", "float32"}};
    if (with_bos) c["bos_token_id"] = 1;
    return c;
}

// A random f32 checkpoint for `config` in dir/name; `zero_final_norm` makes every logit 0.
std::unique_ptr<Model> make_model(const TempDir& dir, const std::string& name, const json& config,
                                  bool zero_final_norm = false) {
    const fs::path model_dir = dir / name;
    fs::create_directories(model_dir);
    write_file(model_dir / "config.json", config.dump(2));
    const ModelConfig parsed = parse_model_config(config.dump(), (model_dir / "config.json").string());
    const fs::path weights = model_dir / "model.safetensors";
    save_random_checkpoint(parsed, DType::F32, /*seed=*/11, /*init_std=*/0.2, (dir / "random.safetensors").string());
    if (zero_final_norm) {
        SafetensorsFile file = load_safetensors((dir / "random.safetensors").string());
        std::vector<std::pair<std::string, Tensor>> tensors;
        bool found = false;
        for (const auto& [n, t] : file.tensors) {
            Tensor copy = t.clone();
            if (n == "model.norm.weight") {
                copy = Tensor::zeros(t.shape(), t.dtype());
                found = true;
            }
            tensors.emplace_back(n, copy);
        }
        EXPECT_TRUE(found);
        save_safetensors(weights.string(), tensors);
    } else {
        fs::copy_file(dir / "random.safetensors", weights);
    }
    return Model::load(model_dir.string());
}

std::vector<int32_t> token_ids(int64_t n, uint32_t seed) {
    std::vector<int32_t> ids;
    uint32_t x = seed * 2654435761u + 12345u;
    for (int64_t i = 0; i < n; ++i) {
        x = x * 1664525u + 1013904223u;
        ids.push_back(static_cast<int32_t>((x >> 8) % static_cast<uint32_t>(kVocab)));
    }
    return ids;
}

struct Reference {
    std::vector<double> nll;  // per scored token, in order
    int64_t windows = 0;
};

// The Hugging Face perplexity guide's loop, transcribed: windows start every `stride` text
// tokens; the last trg_len = end - prev_end labels of a window count, the rest are -100; the
// model's internal shift means label p is predicted from logits p - 1, so position 0 never
// counts. BOS (if any) is prepended to every window with label -100, and then a window holds
// context - 1 text tokens: a stride beyond that is capped (attnlab's rule; the guide has no BOS).
Reference hf_reference(const Model& model, const std::vector<int32_t>& ids, int64_t context, int64_t stride,
                       std::optional<int32_t> bos) {
    const int64_t N = static_cast<int64_t>(ids.size());
    const int64_t max_length = bos ? context - 1 : context;
    stride = std::min(stride, max_length);
    Reference ref;
    int64_t prev_end = 0;
    for (int64_t begin = 0; begin < N; begin += stride) {
        const int64_t end = std::min(begin + max_length, N);
        const int64_t trg_len = end - prev_end;
        std::vector<int32_t> input;
        if (bos) input.push_back(*bos);
        input.insert(input.end(), ids.begin() + begin, ids.begin() + end);
        const int64_t L = static_cast<int64_t>(input.size());
        std::vector<int32_t> labels = input;
        for (int64_t p = 0; p < L - trg_len; ++p) labels[p] = -100;
        if (bos) labels[0] = -100;
        KVCache cache;
        ForwardOptions options;
        options.all_logits = true;
        const std::vector<float> logits = model.forward(input, cache, options).to_floats();  // (L, V)
        bool any = false;
        for (int64_t p = 1; p < L; ++p) {
            if (labels[p] == -100) continue;
            const float* row = logits.data() + (p - 1) * kVocab;
            double m = -INFINITY;
            for (int64_t v = 0; v < kVocab; ++v) m = std::max(m, double(row[v]));
            double s = 0;
            for (int64_t v = 0; v < kVocab; ++v) s += std::exp(double(row[v]) - m);
            ref.nll.push_back(-(double(row[labels[p]]) - m - std::log(s)));
            any = true;
        }
        ref.windows += any ? 1 : 0;
        prev_end = end;
        if (end == N) break;
    }
    return ref;
}

void expect_matches(const PerplexityResult& got, const Reference& ref) {
    const double n = static_cast<double>(ref.nll.size());
    double mean = 0;
    for (double x : ref.nll) mean += x;
    mean /= n;
    double var = 0;
    for (double x : ref.nll) var += (x - mean) * (x - mean);
    const double nll_stderr = n >= 2 ? std::sqrt(var / (n - 1) / n) : 0.0;  // 0 by definition for one
    EXPECT_EQ(got.tokens_scored, static_cast<int64_t>(ref.nll.size()));
    EXPECT_EQ(got.windows, ref.windows);
    EXPECT_NEAR(got.mean_nll, mean, 1e-12 * std::abs(mean));
    EXPECT_NEAR(got.nll_stderr, nll_stderr, 1e-9 * nll_stderr);
    EXPECT_NEAR(got.ppl, std::exp(mean), 1e-12 * std::exp(mean));
    EXPECT_NEAR(got.ppl_stderr, std::exp(mean) * nll_stderr, 1e-9 * std::exp(mean) * nll_stderr);
    // A random model with large weights is far from uniform: the NLL varies.
    if (n >= 2) {
        EXPECT_GT(nll_stderr, 0.0);
    }
}

class PerplexityTiny : public ::testing::Test {
protected:
    static void SetUpTestSuite() {
        dir_ = new TempDir();
        with_bos_ = make_model(*dir_, "bos", tiny_config(true)).release();
        without_bos_ = make_model(*dir_, "nobos", tiny_config(false)).release();
    }
    static void TearDownTestSuite() {
        delete with_bos_;
        delete without_bos_;
        delete dir_;
    }
    static TempDir* dir_;
    static Model* with_bos_;
    static Model* without_bos_;
};
TempDir* PerplexityTiny::dir_ = nullptr;
Model* PerplexityTiny::with_bos_ = nullptr;
Model* PerplexityTiny::without_bos_ = nullptr;

TEST_F(PerplexityTiny, MatchesTheGuidesLoop) {
    struct Case {
        int64_t n, context, stride;
        bool add_bos;
    };
    for (const Case& c : std::vector<Case>{{23, 7, 7, true},
                                           {23, 7, 7, false},
                                           {23, 7, 3, true},
                                           {23, 7, 3, false},
                                           {50, 13, 5, true},
                                           {50, 13, 1, false},
                                           {37, 64, 64, true},  // one window holds everything
                                           {37, 64, 64, false},
                                           {2, 2, 1, true},
                                           {2, 2, 2, false},
                                           {41, 9, 8, true},  // stride = context - 1: BOS's own cap
                                           {41, 9, 9, false}}) {
        SCOPED_TRACE(fmt::format("n={} context={} stride={} bos={}", c.n, c.context, c.stride, c.add_bos));
        const std::vector<int32_t> ids = token_ids(c.n, static_cast<uint32_t>(c.n * 31 + c.stride));
        PerplexityOptions o;
        o.context = c.context;
        o.stride = c.stride;
        o.add_bos = c.add_bos;
        const PerplexityResult got = perplexity(*with_bos_, ids, o);
        const Reference ref = hf_reference(*with_bos_, ids, c.context, c.stride,
                                           c.add_bos ? std::optional<int32_t>(1) : std::nullopt);
        ASSERT_FALSE(ref.nll.empty());
        expect_matches(got, ref);
        EXPECT_EQ(got.context, c.context);
    }
}

TEST_F(PerplexityTiny, WindowCountsAndScoredTokens) {
    const std::vector<int32_t> ids = token_ids(23, 5);
    PerplexityOptions o;
    o.context = 7;
    // BOS + 6 text tokens per window, stepping by 3: [0,6) [3,9) ... [18,23), every token scored.
    o.stride = 3;
    PerplexityResult r = perplexity(*with_bos_, ids, o);
    EXPECT_EQ(r.windows, 7);
    EXPECT_EQ(r.tokens_scored, 23);
    EXPECT_EQ(r.stride, 3);
    // Without BOS, non-overlapping [0,7) [7,14) [14,21) [21,23): each window's first token unscored.
    o.stride = 0;
    o.add_bos = false;
    r = perplexity(*with_bos_, ids, o);
    EXPECT_EQ(r.windows, 4);
    EXPECT_EQ(r.tokens_scored, 19);
    EXPECT_EQ(r.stride, 7);
    // Overlapping without BOS: only the very first token goes unscored.
    o.stride = 2;
    r = perplexity(*with_bos_, ids, o);
    EXPECT_EQ(r.tokens_scored, 22);
    // A last window that would score nothing (one token, no BOS) is not run.
    const std::vector<int32_t> ids15 = token_ids(15, 6);
    o.stride = 7;
    r = perplexity(*with_bos_, ids15, o);
    EXPECT_EQ(r.windows, 2);
    EXPECT_EQ(r.tokens_scored, 12);
}

TEST_F(PerplexityTiny, DefaultsAndBosCap) {
    const std::vector<int32_t> ids = token_ids(150, 9);
    // Default context = max_position_embeddings (64 < 1024); stride = context, capped at 63 with BOS.
    const PerplexityResult def = perplexity(*with_bos_, ids, {});
    EXPECT_EQ(def.context, 64);
    EXPECT_EQ(def.stride, 63);
    EXPECT_EQ(def.windows, 3);
    EXPECT_EQ(def.tokens_scored, 150);
    PerplexityOptions o;
    o.context = 64;
    o.stride = 64;
    const PerplexityResult capped = perplexity(*with_bos_, ids, o);
    EXPECT_EQ(capped.mean_nll, def.mean_nll);
    o.stride = 63;
    EXPECT_EQ(perplexity(*with_bos_, ids, o).mean_nll, def.mean_nll);
}

TEST_F(PerplexityTiny, ModelWithoutBosTokenScoresLikeNoBos) {
    const std::vector<int32_t> ids = token_ids(30, 3);
    PerplexityOptions o;
    o.context = 11;
    o.stride = 4;
    const PerplexityResult a = perplexity(*without_bos_, ids, o);  // add_bos, but no bos_token_id
    o.add_bos = false;
    const PerplexityResult b = perplexity(*without_bos_, ids, o);
    EXPECT_EQ(a.tokens_scored, 29);
    EXPECT_EQ(a.mean_nll, b.mean_nll);
    expect_matches(a, hf_reference(*without_bos_, ids, 11, 4, std::nullopt));
}

TEST_F(PerplexityTiny, ProgressCountsWindows) {
    const std::vector<int32_t> ids = token_ids(40, 4);
    std::vector<std::pair<int64_t, int64_t>> calls;
    PerplexityOptions o;
    o.context = 10;
    o.stride = 5;
    o.progress = [&](int64_t done, int64_t total) { calls.emplace_back(done, total); };
    const PerplexityResult r = perplexity(*with_bos_, ids, o);
    ASSERT_EQ(static_cast<int64_t>(calls.size()), r.windows);
    for (size_t i = 0; i < calls.size(); ++i) {
        EXPECT_EQ(calls[i].first, static_cast<int64_t>(i) + 1);
        EXPECT_EQ(calls[i].second, r.windows);
    }
}

TEST_F(PerplexityTiny, Errors) {
    const std::vector<int32_t> ids = token_ids(20, 2);
    auto expect_error = [&](std::span<const int32_t> input, int64_t context, int64_t stride,
                            const std::string& needle) {
        PerplexityOptions o;
        o.context = context;
        o.stride = stride;
        try {
            perplexity(*with_bos_, input, o);
            ADD_FAILURE() << "no error for context " << context << ", stride " << stride;
        } catch (const InvalidArgument& e) {
            const std::string what = e.what();
            EXPECT_EQ(what.rfind("[perplexity] ", 0), 0u) << what;
            EXPECT_NE(what.find(needle), std::string::npos) << what;
        }
    };
    expect_error(std::span<const int32_t>(ids.data(), 1), 8, 0, "at least 2 tokens, got 1");
    expect_error(std::span<const int32_t>(), 8, 0, "got 0");
    expect_error(ids, 1, 0, "context must be >= 2, got 1");
    expect_error(ids, -4, 0, "got -4");
    expect_error(ids, 8, 9, "got 9");
    expect_error(ids, 8, -1, "got -1");
    // Ids outside the vocabulary are forward()'s to refuse, before any output.
    std::vector<int32_t> bad = ids;
    bad[7] = kVocab;
    PerplexityOptions o;
    o.context = 8;
    EXPECT_THROW(perplexity(*with_bos_, bad, o), Error);
}

TEST(Perplexity, UniformLogitsGiveTheVocabularySize) {
    // A zero final norm zeroes every hidden state the lm_head sees: all logits are 0, so every
    // token's NLL is exactly log V.
    TempDir dir;
    auto model = make_model(dir, "uniform", tiny_config(true), /*zero_final_norm=*/true);
    const std::vector<int32_t> ids = token_ids(45, 8);
    PerplexityOptions o;
    o.context = 16;
    o.stride = 6;
    const PerplexityResult r = perplexity(*model, ids, o);
    EXPECT_EQ(r.tokens_scored, 45);
    EXPECT_NEAR(r.mean_nll, std::log(double(kVocab)), 1e-12);
    EXPECT_NEAR(r.ppl, double(kVocab), 1e-9);
    EXPECT_NEAR(r.nll_stderr, 0.0, 1e-12);
    EXPECT_NEAR(r.ppl_stderr, 0.0, 1e-9);
}

// ---- the CLI on tinylm ----

struct Printed {
    double ppl = NAN, err = NAN;
};

// The final "PPL = X +/- Y" line of stdout.
Printed parse_ppl_line(const std::string& out) {
    Printed p;
    const size_t at = out.rfind("PPL = ");
    if (at == std::string::npos) return p;
    EXPECT_EQ(out.find('\n', at), out.size() - 1) << "the PPL line is not the last: " << out;
    char* end = nullptr;
    p.ppl = std::strtod(out.c_str() + at + 6, &end);
    if (std::string(end).rfind(" +/- ", 0) == 0) p.err = std::strtod(end + 5, nullptr);
    return p;
}

std::string tinylm() { return (source_dir() / "models" / "tinylm").string(); }
std::string heldout() { return (source_dir() / "data" / "heldout.txt").string(); }

TEST(PerplexityCli, TinylmOnTheHeldOutText) {
    TempDir tmp;
    const fs::path json_out = tmp / "ppl.json";
    CommandResult r = run_cli({"perplexity", "-m", tinylm(), "-f", heldout(), "--json", json_out.string()});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(r.err, "");  // no progress when stderr is not a terminal
    // Two lines: the summary, then the result.
    EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 2) << r.out;
    EXPECT_NE(r.out.find("windows of 1024"), std::string::npos) << r.out;
    const Printed p = parse_ppl_line(r.out);
    ASSERT_TRUE(std::isfinite(p.ppl) && std::isfinite(p.err)) << r.out;
    // Novel text for a small model trained for many epochs on a 1.6M-token corpus: high, but far
    // below the 8192 of a model that knows nothing.
    EXPECT_GT(p.ppl, 1.0);
    EXPECT_LT(p.ppl, 2000.0);
    EXPECT_GT(p.err, 0.0);
    const json j = json::parse(read_file(json_out));
    EXPECT_NEAR(j.at("ppl").get<double>(), p.ppl, 1e-4);
    EXPECT_NEAR(j.at("ppl_stderr").get<double>(), p.err, 1e-4);
    EXPECT_NEAR(std::exp(j.at("mean_nll").get<double>()), j.at("ppl").get<double>(), 1e-9 * p.ppl);
    EXPECT_EQ(j.at("tokens_scored").get<int64_t>(), j.at("tokens").get<int64_t>());  // BOS: all scored
    EXPECT_EQ(j.at("windows").get<int64_t>(), 1);
    EXPECT_TRUE(j.at("add_bos").get<bool>());
}

TEST(PerplexityCli, TinylmOnItsOwnGreedyTextIsLow) {
    // The fixture's greedy continuation is what the model itself predicts: its perplexity must be
    // small, which checks tokenisation, BOS and the scoring offsets end to end.
    const json ref = json::parse(read_file(fixtures_dir() / "models" / "tinylm" / "reference.json"));
    std::string text;
    for (const auto& s : ref.at("samples"))
        if (s.at("prompt").get<std::string>().rfind("And the LORD", 0) == 0) text = s.at("greedy").get<std::string>();
    ASSERT_FALSE(text.empty());
    TempDir tmp;
    write_file(tmp / "greedy.txt", text);
    CommandResult r = run_cli({"perplexity", "-m", tinylm(), "-f", (tmp / "greedy.txt").string()});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const Printed p = parse_ppl_line(r.out);
    EXPECT_GT(p.ppl, 1.0) << r.out;
    EXPECT_LT(p.ppl, 5.0) << r.out;
    // Overlapping windows and --no-bos run too.
    r = run_cli({"perplexity", "-m", tinylm(), "-f", (tmp / "greedy.txt").string(), "--context", "16", "--stride",
                 "4", "--no-bos"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_TRUE(std::isfinite(parse_ppl_line(r.out).ppl)) << r.out;
}

void expect_one_error_line(const std::vector<std::string>& args, const std::string& needle, int code = 1) {
    SCOPED_TRACE(needle);
    CommandResult r = run_cli(args);
    EXPECT_EQ(r.exit_code, code) << r.err;
    EXPECT_EQ(r.out, "");
    EXPECT_EQ(r.err.rfind("attnlab: error: ", 0), 0u) << r.err;
    ASSERT_FALSE(r.err.empty());
    EXPECT_EQ(r.err.find('\n'), r.err.size() - 1) << "not one line: " << r.err;
    EXPECT_NE(r.err.find(needle), std::string::npos) << r.err;
}

TEST(PerplexityCli, Errors) {
    TempDir tmp;
    const std::string missing = (tmp / "missing.txt").string();
    expect_one_error_line({"perplexity", "-m", tinylm(), "-f", missing}, missing);
    write_file(tmp / "empty.txt", "");
    expect_one_error_line({"perplexity", "-m", tinylm(), "-f", (tmp / "empty.txt").string()}, "is empty");
    expect_one_error_line({"perplexity", "-m", tinylm(), "-f", tmp.path().string()}, "not a regular file");
    write_file(tmp / "one.txt", "And");
    expect_one_error_line({"perplexity", "-m", tinylm(), "-f", (tmp / "one.txt").string()}, "at least 2 tokens");
    // llama3-tiny has no tokenizer.json.
    expect_one_error_line(
        {"perplexity", "-m", (fixtures_dir() / "models" / "llama3-tiny").string(), "-f", heldout()}, "tokenizer");
    expect_one_error_line({"perplexity", "-m", tinylm(), "-f", heldout(), "--context", "64", "--stride", "65"},
                          "stride");
    expect_one_error_line({"perplexity", "-m", tinylm(), "-f", heldout(), "--context", "1"}, "context");
    expect_one_error_line({"perplexity", "-m", tinylm(), "-f", heldout(), "--context", "2048"}, "--ctx-size");
    expect_one_error_line({"perplexity", "-m", tinylm()}, "--file", 2);
}

}  // namespace
}  // namespace attnlab::test
