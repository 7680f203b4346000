// Whole-model inference on an NVIDIA GPU: the decoder of a loaded Model with its weights,
// activations and KV cache in device memory (the CUDA backend, src/kernels/cuda/).
//
// CudaModel runs the same forward pass as Model::forward for every architecture the CPU
// decoder runs (the ModelConfig fields: norms, biases, q/k norms, RoPE variants, learned
// positions, softcaps, per-layer windows, tied embeddings), with the model's current attention
// plan (Model::set_attention: per-layer / per-head specs) on the GPU attention operator.
// Two precisions:
// - BF16: matrices in bf16 (cuBLAS, f32 accumulation), activations between kernels f32, the
//   inputs of each matmul and of attention rounded to bf16, KV cache bf16. Logits f32.
// - F32: everything f32 (cuBLAS SGEMM without TF32, an f32 attention kernel): the mode that
//   reproduces the CPU engine (and so the float64 fixtures) to f32 rounding.
// Not on the GPU (NotSupported, one clear line): hooks, stop_at_layer, token dropping.
// With ATTNLAB_CUDA=OFF the declarations exist and the constructor throws NotSupported.
#pragma once

#include <attnlab/generate.h>
#include <attnlab/model.h>

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

namespace attnlab {

enum class CudaPrecision { BF16, F32 };

struct CudaModelOptions {
    CudaPrecision precision = CudaPrecision::BF16;
};

// Keys and values of one sequence in device memory: per layer (capacity, Hkv, D) in the
// model's precision, grown by doubling.
class CudaKVCache {
public:
    CudaKVCache();
    ~CudaKVCache();
    CudaKVCache(CudaKVCache&&) noexcept;
    CudaKVCache& operator=(CudaKVCache&&) noexcept;

    int64_t n_past() const { return n_past_; }
    void clear() { n_past_ = 0; }
    // Drops everything after the first n positions (n <= n_past()).
    void truncate(int64_t n);
    size_t bytes() const;  // device memory held

private:
    friend class CudaModel;
    struct Impl;
    std::unique_ptr<Impl> impl_;
    int64_t n_past_ = 0;
};

class CudaModel {
public:
    // Uploads the weights of `model` (converted to the precision's dtype). `model` must outlive
    // this object: its config, attention plan (read at each forward) and tokenizer are used.
    explicit CudaModel(const Model& model, const CudaModelOptions& options = {});
    ~CudaModel();
    CudaModel(const CudaModel&) = delete;
    CudaModel& operator=(const CudaModel&) = delete;

    const Model& host() const { return model_; }
    CudaPrecision precision() const { return options_.precision; }
    size_t weight_bytes() const;  // device memory the weights take
    CudaKVCache new_cache() const { return CudaKVCache(); }

    // Model::forward on the GPU: runs `ids` at positions cache.n_past() ... and appends them to
    // the cache. Returns host logits (rows, V) f32, rows = T if options.all_logits else 1.
    // options.segments and options.position_ids are honoured; hooks and stop_at_layer throw.
    Tensor forward(std::span<const int32_t> ids, CudaKVCache& cache, const ForwardOptions& options = {}) const;

    // forward() of the last position followed by argmax on the device (ties: the lowest id);
    // only the token id comes back to the host.
    int32_t forward_greedy(std::span<const int32_t> ids, CudaKVCache& cache, const ForwardOptions& options = {}) const;

    // forward() of the last position followed by select_token(logits, history, params, u)
    // (generate.h) on the device: the token the CPU's rule picks from these logits. Only the id
    // comes back; the history's ids are uploaded incrementally (a history extending the previous
    // call's uploads only its new ids). params.seed is unused: the caller draws u
    // (Sampler::next_uniform; any value when greedy).
    int32_t forward_sample(std::span<const int32_t> ids, CudaKVCache& cache, const SamplingParams& params,
                           std::span<const int32_t> history, double u, const ForwardOptions& options = {}) const;

    // Waits for the GPU work queued so far (for timing).
    void synchronize() const;

    // Where the last forward call's time went (benchmarks): the host's part up to queueing the
    // last kernel (checks, RoPE tables, attention plans, launches), of which building the
    // attention plans, and the wait for the GPU after it. enqueue ≈ total: the host bounds it.
    struct CallTiming {
        double enqueue_s = 0, plans_s = 0, wait_s = 0;
    };
    CallTiming last_call_timing() const;

private:
    // The token a forward call picks from its last row (see forward_sample).
    struct TokenPick {
        const SamplingParams* params = nullptr;
        std::span<const int32_t> history;
        double u = 0;
    };
    // One forward call; the logits (rows, V) stay on the device (valid until the next call)
    // and, when `pick` is given, the token it picks comes back.
    struct RunResult {
        const float* logits = nullptr;
        int64_t rows = 0;
        int32_t token = -1;
    };
    RunResult run(std::span<const int32_t> ids, CudaKVCache& cache, const ForwardOptions& options,
                  const TokenPick* pick) const;

    const Model& model_;
    CudaModelOptions options_;
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

// generate() on the GPU: prefill, then one token per step, each picked on the device by
// forward_sample (the host's Sampler only draws u): with the same seed, the tokens the CPU
// model's generate() picks from the same logits. Interventions and hooks are not on the GPU
// (NotSupported when set).
std::vector<int32_t> generate(const CudaModel& model, std::span<const int32_t> prompt, const GenerateOptions& options,
                              CudaKVCache& cache);

}  // namespace attnlab
