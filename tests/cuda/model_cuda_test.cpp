// CudaModel (the decoder on the GPU) against the CPU Model and the transformers fixtures.
// Needs a GPU: built only with ATTNLAB_CUDA_TESTS=ON (docs/cuda.md).
//
// Oracles:
// - F32 mode is the CPU engine's arithmetic on the GPU: logits within 1e-4 relative of the CPU
//   model and of the float64 fixtures, greedy ids exactly.
// - BF16 mode rounds every matmul input, the attention inputs and the KV cache to bf16. Its
//   tolerance is the design's rule for bf16 paths: at most 2× the error of a naive bf16
//   computation, plus 1e-4 (both relative to max |logit|). The naive computation is the CPU
//   model itself with hooks rounding, in place, exactly the tensors the GPU rounds (norm outputs,
//   rotated q/k, v, z, the MLP's hidden activation, the final norm's output); the checkpoints
//   hold bf16 weights, so both sides multiply by the same numbers. What the emulation leaves out
//   (the attention kernel's P rounded to bf16 before P·V, summation order) is what the factor 2
//   allows for.
#include "kernels/cuda/cublas_util.cuh"
#include "kernels/cuda/model_kernels.cuh"
#include "model/weights.h"
#include "test_support.h"

#include <attnlab/cuda.h>
#include <attnlab/cuda_model.h>
#include <attnlab/generate.h>
#include <attnlab/half.h>
#include <attnlab/safetensors.h>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <functional>
#include <random>
#include <string>
#include <vector>

namespace attnlab {
namespace {

using json = nlohmann::json;
using test::TempDir;

// ---------------------------------------------------------------------------------------------
// Random models of several architectures (head dims 64/128, which the bf16 kernels run).

struct ArchCase {
    std::string name;
    json config;
    bool bf16_emulable = true;  // false: no pre-norms, the GPU rounds a copy of x the CPU cannot
};

json decoder_config(const std::string& arch, const std::string& type, int64_t heads, int64_t kv_heads, int64_t D) {
    return {{"architectures", {arch}}, {"model_type", type},       {"vocab_size", 512},
            {"hidden_size", 256},      {"intermediate_size", 384}, {"num_hidden_layers", 2},
            {"num_attention_heads", heads}, {"num_key_value_heads", kv_heads}, {"head_dim", D},
            {"max_position_embeddings", 4096}, {"rms_norm_eps", 1e-5}, {"rope_theta", 10000.0},
            {"tie_word_embeddings", false}, {"torch_dtype", "bfloat16"}};
}

std::vector<ArchCase> arch_cases() {
    std::vector<ArchCase> cases;
    cases.push_back({"llama_d64_gqa2", decoder_config("LlamaForCausalLM", "llama", 4, 2, 64)});
    cases.push_back({"llama_d128_gqa8", decoder_config("LlamaForCausalLM", "llama", 8, 1, 128)});
    json qwen2 = decoder_config("Qwen2ForCausalLM", "qwen2", 4, 4, 64);  // q/k/v biases, tied
    qwen2["tie_word_embeddings"] = true;
    cases.push_back({"qwen2_bias_tied", qwen2});
    cases.push_back({"qwen3_qk_norm", decoder_config("Qwen3ForCausalLM", "qwen3", 4, 2, 64)});
    json gemma2 = decoder_config("Gemma2ForCausalLM", "gemma2", 4, 2, 64);  // post norms, softcaps, windows
    gemma2["sliding_window"] = 24;
    gemma2["query_pre_attn_scalar"] = 64;
    gemma2["attn_logit_softcapping"] = 50.0;
    gemma2["final_logit_softcapping"] = 30.0;
    gemma2["tie_word_embeddings"] = true;
    cases.push_back({"gemma2_softcap_window", gemma2});
    cases.push_back({"olmo2_full_width_qk_norm", decoder_config("Olmo2ForCausalLM", "olmo2", 4, 4, 64), false});
    const json gpt2 = {{"architectures", {"GPT2LMHeadModel"}}, {"model_type", "gpt2"}, {"vocab_size", 512},
                       {"n_embd", 256}, {"n_layer", 2}, {"n_head", 4}, {"n_positions", 1024},
                       {"activation_function", "gelu_new"}, {"torch_dtype", "bfloat16"}};
    cases.push_back({"gpt2_learned_positions", gpt2});
    return cases;
}

std::unique_ptr<Model> make_model(const ArchCase& arch, const TempDir& dir) {
    const auto model_dir = dir / arch.name;
    std::filesystem::create_directories(model_dir);
    test::write_file(model_dir / "config.json", arch.config.dump(2));
    const ModelConfig parsed = parse_model_config(arch.config.dump(), (model_dir / "config.json").string());
    // bf16 weights: the CPU widens exactly the numbers the GPU multiplies by.
    save_random_checkpoint(parsed, DType::BF16, 11, 0.08, (model_dir / "model.safetensors").string());
    return Model::load(model_dir.string());
}

std::vector<int32_t> random_ids(int64_t n, int64_t vocab, uint32_t seed) {
    std::mt19937 rng(seed);
    std::vector<int32_t> ids(static_cast<size_t>(n));
    for (int32_t& id : ids) id = static_cast<int32_t>(rng() % vocab);
    return ids;
}

// Rounds, in place, the CPU model's tensors that the GPU's BF16 mode rounds (see the top).
class RoundLikeGpu : public Hooks {
public:
    explicit RoundLikeGpu(const ModelConfig& c) : rope_(!c.learned_positions), embed_(c.embedding_scale == 1.0) {}
    bool wants(const std::string& name) const override {
        auto ends = [&](const char* suffix) {
            const std::string s(suffix);
            return name.size() >= s.size() && name.compare(name.size() - s.size(), s.size(), s) == 0;
        };
        if (ends("hook_normalized") || ends("attn.hook_v") || ends("attn.hook_z") || ends("mlp.hook_post")) return true;
        if (rope_ ? (ends("attn.hook_rot_q") || ends("attn.hook_rot_k")) : (ends("attn.hook_q") || ends("attn.hook_k")))
            return true;
        // The embedding tables are bf16 on the GPU (a no-op for bf16 checkpoints, unless scaled).
        return embed_ && (name == "hook_embed" || name == "hook_pos_embed");
    }
    void on(const std::string&, Tensor& value) override {
        float* x = value.data<float>();
        for (int64_t i = 0; i < value.numel(); ++i) x[i] = bf16_to_f32(f32_to_bf16(x[i]));
    }

private:
    bool rope_, embed_;
};

// max |got - ref| / max |ref| over all elements.
double relative_error(const float* got, const float* ref, int64_t n) {
    double err = 0, scale = 0;
    for (int64_t i = 0; i < n; ++i) {
        err = std::max(err, std::fabs(double(got[i]) - double(ref[i])));
        scale = std::max(scale, std::fabs(double(ref[i])));
    }
    return err / std::max(scale, 1e-30);
}

double max_abs(const Tensor& t) {
    double m = 0;
    for (int64_t i = 0; i < t.numel(); ++i) m = std::max(m, std::fabs(double(t.data<float>()[i])));
    return m;
}

// Logits of the CPU model for `ids` appended to `cache` (all rows), optionally bf16-emulated.
Tensor cpu_logits(const Model& model, std::span<const int32_t> ids, KVCache& cache, bool emulate_bf16) {
    RoundLikeGpu round(model.config());
    ForwardOptions options;
    options.all_logits = true;
    if (emulate_bf16) options.hooks = &round;
    return model.forward(ids, cache, options);
}

Tensor gpu_logits(const CudaModel& model, std::span<const int32_t> ids, CudaKVCache& cache) {
    ForwardOptions options;
    options.all_logits = true;
    return model.forward(ids, cache, options);
}

// The BF16 rule: err(gpu) <= 2 err(naive) + 1e-4, both relative to max |exact logit|.
void expect_bf16_close(const Tensor& gpu, const Tensor& naive, const Tensor& exact, const std::string& what) {
    ASSERT_EQ(gpu.shape(), exact.shape()) << what;
    const int64_t n = exact.numel();
    const double e_gpu = relative_error(gpu.data<float>(), exact.data<float>(), n);
    const double e_naive = relative_error(naive.data<float>(), exact.data<float>(), n);
    std::printf("[cuda-check] %s: bf16 gpu err %.3g, naive bf16 err %.3g (ratio %.2f)\n", what.c_str(), e_gpu, e_naive,
                e_gpu / std::max(e_naive, 1e-30));
    EXPECT_LE(e_gpu, 2 * e_naive + 1e-4) << what;
}

class ArchTest : public ::testing::TestWithParam<ArchCase> {
protected:
    void SetUp() override {
        model_ = make_model(GetParam(), dir_);  // CPU side first: it runs without a GPU too
        if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
    }
    TempDir dir_;
    std::unique_ptr<Model> model_;
};

// Prefill of T tokens from an empty cache: every row's logits.
TEST_P(ArchTest, Bf16PrefillMatchesCpu) {
    if (!GetParam().bf16_emulable) GTEST_SKIP() << "no pre-norms: the bf16 emulation does not apply (F32 tests cover it)";
    const CudaModel gpu(*model_, {CudaPrecision::BF16});
    for (int64_t T : {1, 7, 64, 65, 300}) {
        const std::vector<int32_t> ids = random_ids(T, model_->config().vocab_size, uint32_t(T));
        KVCache c1, c2;
        const Tensor exact = cpu_logits(*model_, ids, c1, false);
        const Tensor naive = cpu_logits(*model_, ids, c2, true);
        CudaKVCache cache = gpu.new_cache();
        const Tensor got = gpu_logits(gpu, ids, cache);
        EXPECT_EQ(cache.n_past(), T);
        expect_bf16_close(got, naive, exact, fmt::format("{} prefill T={}", GetParam().name, T));
    }
}

// Prefill of N, then decode steps of 1 token and one chunk of 5, against the CPU doing the
// same; then the cache is consistent with a single prefill of everything.
TEST_P(ArchTest, Bf16DecodeMatchesCpuAndPrefill) {
    if (!GetParam().bf16_emulable) GTEST_SKIP() << "no pre-norms: the bf16 emulation does not apply (F32 tests cover it)";
    const CudaModel gpu(*model_, {CudaPrecision::BF16});
    const int64_t V = model_->config().vocab_size;
    const std::vector<int32_t> ids = random_ids(37 + 20 + 5, V, 99);
    KVCache exact_cache, naive_cache;
    CudaKVCache cache = gpu.new_cache();
    std::vector<Tensor> steps;  // the GPU's logits of every position, step by step
    auto run = [&](int64_t begin, int64_t end) {
        const std::span<const int32_t> part(ids.data() + begin, static_cast<size_t>(end - begin));
        const Tensor exact = cpu_logits(*model_, part, exact_cache, false);
        const Tensor naive = cpu_logits(*model_, part, naive_cache, true);
        const Tensor got = gpu_logits(gpu, part, cache);
        expect_bf16_close(got, naive, exact, fmt::format("{} positions {}..{}", GetParam().name, begin, end - 1));
        steps.push_back(got);
    };
    run(0, 37);
    for (int64_t p = 37; p < 57; ++p) run(p, p + 1);
    run(57, 62);
    EXPECT_EQ(cache.n_past(), 62);

    // One prefill of all 62 positions: its rows are the step-by-step rows, up to bf16 noise
    // (the chunks round the same values; attention tiles split differently).
    CudaKVCache fresh = gpu.new_cache();
    const Tensor all = gpu_logits(gpu, ids, fresh);
    KVCache c1, c2;
    const Tensor exact = cpu_logits(*model_, ids, c1, false);
    const Tensor naive = cpu_logits(*model_, ids, c2, true);
    std::vector<float> stitched;
    for (const Tensor& t : steps) stitched.insert(stitched.end(), t.data<float>(), t.data<float>() + t.numel());
    ASSERT_EQ(static_cast<int64_t>(stitched.size()), all.numel());
    const double e_naive = relative_error(naive.data<float>(), exact.data<float>(), exact.numel());
    const double e_cache = relative_error(stitched.data(), all.data<float>(), all.numel());
    std::printf("[cuda-check] %s cache vs prefill: %.3g (naive bf16 err %.3g)\n", GetParam().name.c_str(), e_cache, e_naive);
    EXPECT_LE(e_cache, 2 * e_naive + 1e-4);

    // truncate() re-runs a suffix: the same logits again.
    cache.truncate(57);
    const Tensor again = gpu_logits(gpu, std::span<const int32_t>(ids.data() + 57, 5), cache);
    EXPECT_LE(relative_error(again.data<float>(), steps.back().data<float>(), again.numel()), 1e-6);
}

// Greedy generation on the GPU agrees with the CPU's greedy choices wherever the CPU's top-2
// margin is wider than the bf16 tolerance; after the first closer call the paths may diverge.
TEST_P(ArchTest, Bf16GreedyAgreesWithCpuWhereMarginsAreClear) {
    if (!GetParam().bf16_emulable) GTEST_SKIP() << "no pre-norms: the bf16 emulation does not apply (F32 tests cover it)";
    const CudaModel gpu(*model_, {CudaPrecision::BF16});
    const int64_t V = model_->config().vocab_size;
    const std::vector<int32_t> prompt = random_ids(19, V, 5);
    GenerateOptions options;
    options.max_new_tokens = 24;
    options.sampling.temperature = 0;
    options.stop_at_eos = false;
    std::vector<int32_t> streamed;
    options.on_token = [&](int32_t id) { streamed.push_back(id); };
    CudaKVCache cache = gpu.new_cache();
    const std::vector<int32_t> got = generate(gpu, prompt, options, cache);
    ASSERT_EQ(got.size(), 24u);
    EXPECT_EQ(streamed, got);
    EXPECT_EQ(cache.n_past(), 19 + 23);

    // The device's argmax is the argmax of the GPU's own logits, step by step (same kernels,
    // same shapes: exactly).
    CudaKVCache replay = gpu.new_cache();
    std::vector<int32_t> input = prompt;
    for (size_t step = 0; step < got.size(); ++step) {
        const Tensor logits = gpu.forward(input, replay);  // (1, V)
        const float* row = logits.data<float>();
        EXPECT_EQ(got[step], static_cast<int32_t>(std::max_element(row, row + V) - row)) << "step " << step;
        input = {got[step]};
    }

    // The CPU's greedy path, with its margins and the bf16 tolerance of each step.
    KVCache exact_cache, naive_cache;
    std::vector<int32_t> seq = prompt;
    size_t checked = 0;
    for (size_t step = 0; step < got.size(); ++step) {
        const std::span<const int32_t> part = step == 0 ? std::span<const int32_t>(seq) : std::span<const int32_t>(&seq.back(), 1);
        const Tensor exact = cpu_logits(*model_, part, exact_cache, false);
        const Tensor naive = cpu_logits(*model_, part, naive_cache, true);
        const float* row = exact.data<float>() + (exact.size(0) - 1) * V;
        const float* naive_row = naive.data<float>() + (naive.size(0) - 1) * V;
        std::vector<float> sorted(row, row + V);
        std::partial_sort(sorted.begin(), sorted.begin() + 2, sorted.end(), std::greater<float>());
        const int32_t best = static_cast<int32_t>(std::max_element(row, row + V) - row);
        double scale = 0, naive_err = 0;
        for (int64_t v = 0; v < V; ++v) {
            scale = std::max(scale, std::fabs(double(row[v])));
            naive_err = std::max(naive_err, std::fabs(double(naive_row[v]) - row[v]));
        }
        // Each of the two logits may move by the GPU's tolerance: 2 · (2 naive + 1e-4 scale).
        if (sorted[0] - sorted[1] <= 2 * (2 * naive_err + 1e-4 * scale)) break;
        EXPECT_EQ(got[step], best) << "step " << step;
        if (got[step] != best) break;
        seq.push_back(best);
        ++checked;
    }
    std::printf("[cuda-check] %s greedy: %zu of 24 steps had clear margins and agree\n", GetParam().name.c_str(), checked);
}

// F32 mode: the CPU engine's numbers (needs the GPU attention operator's f32 inputs).
TEST_P(ArchTest, F32MatchesCpu) {
    const CudaModel gpu(*model_, {CudaPrecision::F32});
    const std::vector<int32_t> ids = random_ids(70, model_->config().vocab_size, 3);
    KVCache cpu_cache;
    CudaKVCache cache = gpu.new_cache();
    for (auto [begin, end] : {std::pair<int64_t, int64_t>{0, 65}, {65, 66}, {66, 67}, {67, 70}}) {
        const std::span<const int32_t> part(ids.data() + begin, static_cast<size_t>(end - begin));
        const Tensor exact = cpu_logits(*model_, part, cpu_cache, false);
        const Tensor got = gpu_logits(gpu, part, cache);
        const double err = relative_error(got.data<float>(), exact.data<float>(), exact.numel());
        std::printf("[cuda-check] %s f32 positions %ld..%ld: err %.3g\n", GetParam().name.c_str(), long(begin),
                    long(end - 1), err);
        EXPECT_LT(err, 1e-4);
    }
}

// Per-head specs that differ between layers (several plans in one call), segments for
// `document` and caller position ids, prefill then decode, F32 against the CPU.
TEST(CudaModelOptions, PerHeadSpecsSegmentsAndPositionIds) {
    TempDir dir;
    const auto model = make_model(arch_cases()[0], dir);
    model->set_attention(parse_attention_heads("0-:0-1:causal+document;1:2-3:causal+window(size=16)"));
    if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
    const CudaModel gpu(*model, {CudaPrecision::F32});
    const TokenSegments segments = TokenSegments::parse({"a=0:20", "b=20:45", "c=45:"});
    const std::vector<int32_t> ids = random_ids(58, model->config().vocab_size, 8);
    std::vector<int64_t> positions(ids.size());
    for (size_t t = 0; t < positions.size(); ++t) positions[t] = 3 + 2 * int64_t(t);  // stretched RoPE positions
    KVCache cpu_cache;
    CudaKVCache cache = gpu.new_cache();
    for (auto [begin, end] : {std::pair<int64_t, int64_t>{0, 50}, {50, 51}, {51, 52}, {52, 58}}) {
        const std::span<const int32_t> part(ids.data() + begin, static_cast<size_t>(end - begin));
        const std::vector<int64_t> part_positions(positions.begin() + begin, positions.begin() + end);
        ForwardOptions options;
        options.all_logits = true;
        options.segments = &segments;
        options.position_ids = &part_positions;
        const Tensor exact = model->forward(part, cpu_cache, options);
        const Tensor got = gpu.forward(part, cache, options);
        const double err = relative_error(got.data<float>(), exact.data<float>(), exact.numel());
        std::printf("[cuda-check] per-head specs + segments + position ids, positions %ld..%ld: f32 err %.3g\n",
                    long(begin), long(end - 1), err);
        EXPECT_LT(err, 1e-4);
    }
}

// Every setting picks on the device (forward_sample, TokenSelector). Two oracles, in F32 mode:
// - exact: the ids the host's Sampler draws from the GPU's own logits (forward() per step, the
//   same seed): every setting must agree, token for token;
// - the CPU model's generate() with the same seed: its logits differ from the GPU's by f32
//   rounding (~1e-6), which can reorder near-tied candidates or move a cumulative boundary past
//   u. With top-k off over a near-uniform distribution (a tiny random model at temperature >= 1,
//   32000 candidates ~3e-5 apart) that happens within 16 tokens (seen on llama-tiny), so the
//   CPU model must agree exactly only for greedy and top-k settings; the rest are counted.
std::vector<SamplingParams> sampling_settings() {
    auto make = [](double temperature, int64_t top_k, double top_p, double min_p, double penalty, uint64_t seed) {
        SamplingParams p;
        p.temperature = temperature, p.top_k = top_k, p.top_p = top_p, p.min_p = min_p;
        p.repetition_penalty = penalty, p.seed = seed;
        return p;
    };
    return {make(0.8, 40, 0.95, 0.05, 1.0, 5), make(0.0, 40, 0.95, 0.05, 1.3, 5), make(1.0, 0, 0.9, 0.0, 1.0, 6),
            make(1.2, 0, 1.0, 0.1, 1.2, 7),    make(2.0, 0, 1.0, 0.0, 0.8, 8),    make(0.5, 5, 1.0, 0.0, 1.5, 9)};
}

// generate()'s loop with the GPU's logits copied to the host and the CPU's Sampler.
std::vector<int32_t> host_sampled(const CudaModel& gpu, const std::vector<int32_t>& prompt,
                                  const SamplingParams& sampling, int64_t n) {
    const int64_t V = gpu.host().config().vocab_size;
    CudaKVCache cache = gpu.new_cache();
    Sampler sampler(sampling);
    std::vector<int32_t> history = prompt, ids;
    Tensor logits = gpu.forward(prompt, cache);  // (1, V)
    for (int64_t i = 0; i < n; ++i) {
        const int32_t next = sampler.sample({logits.data<float>(), size_t(V)}, history);
        ids.push_back(next);
        history.push_back(next);
        if (i + 1 < n) logits = gpu.forward(std::vector<int32_t>{next}, cache);
    }
    return ids;
}

void expect_generate_matches_cpu(const Model& model, const std::vector<int32_t>& prompt, const char* what) {
    const CudaModel gpu(model, {CudaPrecision::F32});
    int same_as_host = 0, same_as_cpu = 0;
    for (const SamplingParams& sampling : sampling_settings()) {
        GenerateOptions options;
        options.max_new_tokens = 16;
        options.stop_at_eos = false;
        options.sampling = sampling;
        KVCache cpu_cache;
        CudaKVCache cache = gpu.new_cache();
        const std::vector<int32_t> got = generate(gpu, prompt, options, cache);
        const std::vector<int32_t> host = host_sampled(gpu, prompt, sampling, options.max_new_tokens);
        const std::vector<int32_t> cpu = generate(model, prompt, options, cpu_cache);
        const std::string setting = fmt::format("{}: temperature {} top-k {} top-p {} min-p {} penalty {}", what,
                                                sampling.temperature, sampling.top_k, sampling.top_p, sampling.min_p,
                                                sampling.repetition_penalty);
        EXPECT_EQ(got, host) << setting;
        if (sampling.temperature == 0 || sampling.top_k > 0) {
            EXPECT_EQ(got, cpu) << setting << " (CPU model)";
        }
        same_as_host += got == host;
        same_as_cpu += got == cpu;
    }
    std::printf("[cuda-check] %s: GPU generate() = host sampling of the GPU's logits for %d of %zu settings, = the "
                "CPU model for %d\n",
                what, same_as_host, sampling_settings().size(), same_as_cpu);
}

TEST(CudaModelOptions, DeviceSamplingMatchesCpu) {
    TempDir dir;
    const auto model = make_model(arch_cases()[0], dir);
    if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
    expect_generate_matches_cpu(*model, random_ids(23, model->config().vocab_size, 21), "random llama");
}

// forward_sample picks what select_token picks from the logits forward() returns for the same
// call (the same device logits, so exact), the history growing and replaced between calls.
TEST(CudaModelOptions, ForwardSampleMatchesSelectTokenOnItsLogits) {
    TempDir dir;
    const auto model = make_model(arch_cases()[2], dir);
    if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
    const CudaModel gpu(*model, {CudaPrecision::BF16});
    const int64_t V = model->config().vocab_size;
    std::mt19937_64 rng(4);
    int checked = 0;
    for (const SamplingParams& sampling : sampling_settings()) {
        std::vector<int32_t> history = random_ids(9, V, uint32_t(checked + 1));
        for (int step = 0; step < 4; ++step) {
            const std::vector<int32_t> ids = random_ids(3 + step, V, uint32_t(100 + checked));
            history.insert(history.end(), ids.begin(), ids.end());
            const double u = std::generate_canonical<double, 53>(rng);
            CudaKVCache a = gpu.new_cache(), b = gpu.new_cache();
            const Tensor logits = gpu.forward(ids, a);  // (1, V)
            const int32_t expected = select_token({logits.data<float>(), size_t(V)}, history, sampling, u);
            EXPECT_EQ(gpu.forward_sample(ids, b, sampling, history, u), expected) << "setting " << checked;
            EXPECT_EQ(b.n_past(), int64_t(ids.size()));
        }
        ++checked;
    }
    SamplingParams bad;
    bad.top_k = -1;
    CudaKVCache c = gpu.new_cache();
    const std::vector<int32_t> ids = {1, 2};
    EXPECT_THROW(gpu.forward_sample(ids, c, bad, {}, 0.5), InvalidArgument);
    EXPECT_THROW(gpu.forward_sample(ids, c, SamplingParams{}, {}, 1.0), InvalidArgument);
    EXPECT_EQ(c.n_past(), 0);  // checked before the forward pass
}

INSTANTIATE_TEST_SUITE_P(Architectures, ArchTest, ::testing::ValuesIn(arch_cases()),
                         [](const ::testing::TestParamInfo<ArchCase>& info) { return info.param.name; });

// ---------------------------------------------------------------------------------------------
// The transformers fixtures (small head dims: the GPU attention operator's general kernel).

struct FixtureCase {
    std::string model;
    int index = 0;
};

std::vector<FixtureCase> fixture_cases() {
    std::vector<FixtureCase> cases;
    for (const char* model : {"gpt2-tiny", "llama-tiny", "llama3-tiny", "qwen2-tiny", "qwen3-tiny", "mistral-tiny", "tinylm"})
        for (int i = 0; i < 3; ++i) cases.push_back({model, i});
    return cases;
}

class FixtureTest : public ::testing::TestWithParam<FixtureCase> {
protected:
    void SetUp() override {
        const auto dir = test::fixtures_dir() / "models" / GetParam().model;
        const json ref = json::parse(test::read_file(dir / "reference.json"));
        ASSERT_LT(size_t(GetParam().index), ref["cases"].size());
        const json& c = ref["cases"][GetParam().index];
        reference_ = load_safetensors((dir / c["file"].get<std::string>()).string());
        for (int64_t id : reference_.tensors.at("input_ids").to_ints()) ids_.push_back(static_cast<int32_t>(id));
        model_ = Model::load(dir.string());
        if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
    }
    SafetensorsFile reference_;
    std::vector<int32_t> ids_;
    std::unique_ptr<Model> model_;
};

TEST_P(FixtureTest, F32MatchesTransformers) {
    const CudaModel gpu(*model_, {CudaPrecision::F32});
    CudaKVCache cache = gpu.new_cache();
    const Tensor logits = gpu.forward(ids_, cache);  // (1, V)
    const std::vector<float> ref = reference_.tensors.at("logits_last").to_floats();
    ASSERT_EQ(logits.numel(), static_cast<int64_t>(ref.size()));
    const double err = relative_error(logits.data<float>(), ref.data(), logits.numel());
    std::printf("[cuda-check] %s case %d f32 logits_last err %.3g\n", GetParam().model.c_str(), GetParam().index, err);
    EXPECT_LT(err, 1e-4);

    GenerateOptions options;
    options.max_new_tokens = 16;
    options.sampling.temperature = 0;
    options.stop_at_eos = false;
    CudaKVCache gen_cache = gpu.new_cache();
    const std::vector<int32_t> got = generate(gpu, ids_, options, gen_cache);
    const std::vector<int64_t> expected = reference_.tensors.at("greedy_ids").to_ints();
    // tinylm's fixture stores zeros for greedy_ids (docs/testing.md): its first token must be
    // the reference's top-1 instead.
    if (std::any_of(expected.begin(), expected.end(), [](int64_t v) { return v != 0; })) {
        EXPECT_EQ(std::vector<int64_t>(got.begin(), got.end()), expected);
    } else {
        const Tensor& top = reference_.tensors.at("top8_ids");
        EXPECT_EQ(got.front(), static_cast<int32_t>(top.item({top.size(0) - 1, 0})));
    }
}

TEST_P(FixtureTest, SampledGenerateMatchesCpu) {
    expect_generate_matches_cpu(*model_, ids_, GetParam().model.c_str());
}

TEST_P(FixtureTest, Bf16WithinTolerance) {
    if (model_->weights().embed.dtype() != DType::BF16)
        GTEST_SKIP() << "f32 checkpoint: the GPU rounds the weights, which the CPU emulation does not";
    const CudaModel gpu(*model_, {CudaPrecision::BF16});
    CudaKVCache cache = gpu.new_cache();
    const Tensor got = gpu.forward(ids_, cache);
    KVCache naive_cache;
    RoundLikeGpu round(model_->config());
    ForwardOptions options;
    options.hooks = &round;
    const Tensor naive = model_->forward(ids_, naive_cache, options);
    const Tensor exact = Tensor::from_vector(reference_.tensors.at("logits_last").to_floats(), naive.shape());
    expect_bf16_close(got, naive, exact, fmt::format("{} case {}", GetParam().model, GetParam().index));
}

INSTANTIATE_TEST_SUITE_P(Fixtures, FixtureTest, ::testing::ValuesIn(fixture_cases()),
                         [](const ::testing::TestParamInfo<FixtureCase>& info) {
                             std::string name = info.param.model + "_case" + std::to_string(info.param.index);
                             std::replace(name.begin(), name.end(), '-', '_');
                             return name;
                         });

// ---------------------------------------------------------------------------------------------
// Pieces: the GEMM precisions, argmax ties, errors.

// f32 GEMM (T, K)·(N, K)ᵀ against float64: f32 accumulation errs ~1e-7·sqrt(K) relative to
// Σ|x||w|; TF32 (10-bit mantissa inputs) would err ~1e-3. bf16: exact products of the rounded
// inputs, f32 sums.
TEST(CudaModelPieces, GemmPrecisions) {
    if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
    const int64_t T = 33, N = 77, K = 1000;
    std::mt19937 rng(1);
    std::normal_distribution<float> normal;
    std::vector<float> x(size_t(T * K)), w(size_t(N * K));
    for (float& v : x) v = normal(rng);
    for (float& v : w) v = normal(rng);
    cudaStream_t stream;
    ASSERT_EQ(cudaStreamCreate(&stream), cudaSuccess);
    {
        cuda::Cublas blas(stream);
        for (bool bf16 : {false, true}) {
            std::vector<float> xr = x, wr = w;
            if (bf16) {
                for (float& v : xr) v = bf16_to_f32(f32_to_bf16(v));
                for (float& v : wr) v = bf16_to_f32(f32_to_bf16(v));
            }
            cuda::DeviceBuffer<float> dy(size_t(T * N));
            if (bf16) {
                std::vector<uint16_t> xb(x.size()), wb(w.size());
                for (size_t i = 0; i < x.size(); ++i) xb[i] = f32_to_bf16(x[i]);
                for (size_t i = 0; i < w.size(); ++i) wb[i] = f32_to_bf16(w[i]);
                cuda::DeviceBuffer<__nv_bfloat16> dx(x.size()), dw(w.size());
                dx.upload(reinterpret_cast<const __nv_bfloat16*>(xb.data()), xb.size());
                dw.upload(reinterpret_cast<const __nv_bfloat16*>(wb.data()), wb.size());
                blas.linear<__nv_bfloat16>(dx.get(), K, dw.get(), dy.get(), N, T, N, K);
            } else {
                cuda::DeviceBuffer<float> dx(x.size()), dw(w.size());
                dx.upload(x.data(), x.size());
                dw.upload(w.data(), w.size());
                blas.linear<float>(dx.get(), K, dw.get(), dy.get(), N, T, N, K);
            }
            std::vector<float> y(size_t(T * N));
            ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
            ASSERT_EQ(cudaMemcpy(y.data(), dy.get(), y.size() * 4, cudaMemcpyDeviceToHost), cudaSuccess);
            double worst = 0;
            for (int64_t t = 0; t < T; ++t)
                for (int64_t n = 0; n < N; ++n) {
                    double ref = 0, mag = 0;
                    for (int64_t k = 0; k < K; ++k) {
                        ref += double(xr[t * K + k]) * wr[n * K + k];
                        mag += std::fabs(double(xr[t * K + k]) * wr[n * K + k]);
                    }
                    worst = std::max(worst, std::fabs(y[t * N + n] - ref) / mag);
                }
            std::printf("[cuda-check] %s GEMM: max error / sum|x||w| = %.3g\n", bf16 ? "bf16" : "f32", worst);
            EXPECT_LT(worst, 1e-5) << (bf16 ? "bf16" : "f32 (TF32 would be ~1e-3)");
        }
    }
    cudaStreamDestroy(stream);
}

TEST(CudaModelPieces, ArgmaxTakesTheLowestIdOnTies) {
    if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
    for (int64_t n : {1, 5, 1023, 1024, 1025, 151936}) {
        std::mt19937 rng{uint32_t(n)};
        std::uniform_real_distribution<float> uniform(-5.0f, 5.0f);
        std::vector<float> x(static_cast<size_t>(n));
        for (float& v : x) v = uniform(rng);
        // A maximum at three places, the lowest one last-ish, so strides and ties both matter.
        const int64_t a = n - 1, b = n / 2, c = n / 3;
        for (int64_t i : {a, b, c}) x[i] = 7.0f;
        const int32_t expected = static_cast<int32_t>(std::min({a, b, c}));
        cuda::DeviceBuffer<float> dx(x.size());
        dx.upload(x.data(), x.size());
        cuda::DeviceBuffer<int32_t> out(1);
        const int32_t poison = -7;
        out.upload(&poison, 1);
        cuda::argmax(dx.get(), n, out.get(), nullptr);
        int32_t got = 0;
        ASSERT_EQ(cudaMemcpy(&got, out.get(), 4, cudaMemcpyDeviceToHost), cudaSuccess);
        EXPECT_EQ(got, expected) << "n = " << n;
    }
}

TEST(CudaModelPieces, UnsupportedUsesSayWhy) {
    TempDir dir;
    test::RandomModelShape shape;
    shape.head_dim = 64;
    shape.width = 128;
    const auto model = test::random_model(dir, shape);
    if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
    const CudaModel gpu(*model, {CudaPrecision::BF16});
    CudaKVCache cache = gpu.new_cache();
    const std::vector<int32_t> ids = {1, 2, 3};
    ActivationCache hooks("hook_embed");
    ForwardOptions with_hooks;
    with_hooks.hooks = &hooks;
    EXPECT_THROW(gpu.forward(ids, cache, with_hooks), NotSupported);
    ForwardOptions early;
    early.stop_at_layer = 1;
    EXPECT_THROW(gpu.forward(ids, cache, early), NotSupported);
    const std::vector<int32_t> bad = {1, 64};
    EXPECT_THROW(gpu.forward(bad, cache), InvalidArgument);
    EXPECT_EQ(cache.n_past(), 0);
    gpu.forward(ids, cache);
    EXPECT_EQ(cache.n_past(), 3);
    EXPECT_GT(cache.bytes(), 0u);
    // A cache with positions belongs to its model.
    const CudaModel other(*model, {CudaPrecision::BF16});
    EXPECT_THROW(other.forward(ids, cache), InvalidArgument);
    cache.clear();
    EXPECT_NO_THROW(other.forward(ids, cache));
    GenerateOptions gen;
    gen.hooks = &hooks;
    EXPECT_THROW(generate(gpu, ids, gen, cache), NotSupported);
}

}  // namespace
}  // namespace attnlab
