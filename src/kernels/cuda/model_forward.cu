// CudaModel and CudaKVCache (include/attnlab/cuda_model.h): Model::forward (src/model/decoder.cpp)
// on the GPU. Host code: weights uploaded once, one workspace reused between calls, the KV
// cache grown by doubling, and per call a few small uploads (ids, RoPE tables), cuBLAS for
// the matmuls, model_kernels.cuh for the rest and the GPU attention operator for attention.
// Everything is queued on one stream; the only waits are for the results a call returns.
//
// Per layer (T rows, f32 residual stream x):
//   h = attn_norm(x)                               [fused into the previous residual add]
//   qkv = h · [Wq; Wk; Wv]ᵀ                        one GEMM over the stacked weights
//   q, cache k/v = rope(qk_norm(qkv + b))          finish_qkv, one warp per (t, head)
//   z = attention(q, cache)                        one plan per distinct spec per call
//   x += post_norm(z · Woᵀ + bo); h = mlp_norm(x)  residual_norm
//   h = act(h · [Wgate; Wup]ᵀ + b)                 one GEMM, activation
//   x += post_norm(h · Wdownᵀ + b); h = next attn_norm(x)
#include "kernels/cuda/cublas_util.cuh"
#include "kernels/cuda/cuda_util.cuh"
#include "kernels/cuda/model_kernels.cuh"
#include "model/rope.h"
#include "model/weights.h"

#include <attnlab/cuda.h>
#include <attnlab/cuda_model.h>
#include <attnlab/error.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <string>
#include <tuple>
#include <type_traits>
#include <vector>

namespace attnlab {

namespace {

using Bytes = cuda::DeviceBuffer<std::byte>;

template <typename E>
constexpr DType dtype_of() {
    return std::is_same_v<E, float> ? DType::F32 : DType::BF16;
}

size_t element_size(CudaPrecision p) { return p == CudaPrecision::F32 ? 4 : 2; }

template <typename E>
E* as(const Bytes& b) {
    return reinterpret_cast<E*>(b.get());
}

constexpr size_t kAlign = 256;  // cuBLAS and the attention kernels want aligned operands
size_t align_up(size_t n) { return (n + kAlign - 1) / kAlign * kAlign; }

// Page-locked host memory, so the per-call uploads and the greedy id copy are asynchronous.
class PinnedBuffer {
public:
    PinnedBuffer() = default;
    ~PinnedBuffer() {
        if (ptr_) cudaFreeHost(ptr_);
    }
    PinnedBuffer(const PinnedBuffer&) = delete;
    PinnedBuffer& operator=(const PinnedBuffer&) = delete;
    // Grows to at least `bytes`; the old contents are dropped (callers refill it per call).
    std::byte* reserve(size_t bytes) {
        if (bytes > size_) {
            if (ptr_) cudaFreeHost(ptr_);
            ptr_ = nullptr;
            size_ = 0;
            ATTNLAB_CUDA_CHECK(cudaMallocHost(reinterpret_cast<void**>(&ptr_), bytes));
            size_ = bytes;
        }
        return ptr_;
    }

private:
    std::byte* ptr_ = nullptr;
    size_t size_ = 0;
};

// Device copy of the rows of `parts` stacked: each part (N_i, K) in any dtype and layout
// (GPT-2's Conv1D weights are transposed views), converted to `dtype` and made contiguous.
Bytes upload_matrix(std::initializer_list<const Tensor*> parts, DType dtype) {
    size_t total = 0;
    for (const Tensor* t : parts) total += static_cast<size_t>(t->numel()) * dtype_size(dtype);
    Bytes buf(total);
    size_t offset = 0;
    for (const Tensor* t : parts) {
        const Tensor host = t->to(dtype);  // a no-op view when already contiguous in `dtype`
        ATTNLAB_CUDA_CHECK(cudaMemcpy(buf.get() + offset, host.raw(), host.nbytes(), cudaMemcpyHostToDevice));
        offset += host.nbytes();
    }
    return buf;
}

// Concatenated f32 biases of `parts` (sizes `lengths`), zeros where a part has none; empty
// when none has one.
cuda::DeviceBuffer<float> upload_biases(std::initializer_list<std::pair<const Tensor*, int64_t>> parts) {
    bool any = false;
    for (const auto& [t, n] : parts) any = any || t->defined();
    if (!any) return {};
    std::vector<float> host;
    for (const auto& [t, n] : parts) {
        if (t->defined()) {
            const std::vector<float> v = t->to_floats();
            ATTNLAB_CHECK(static_cast<int64_t>(v.size()) == n, FormatError, "[cuda] a bias has {} values, expected {}",
                          v.size(), n);
            host.insert(host.end(), v.begin(), v.end());
        } else {
            host.insert(host.end(), static_cast<size_t>(n), 0.0f);
        }
    }
    cuda::DeviceBuffer<float> buf(host.size());
    buf.upload(host.data(), host.size());
    return buf;
}

cuda::DeviceBuffer<float> upload_vector(const Tensor& t) {
    if (!t.defined()) return {};
    const std::vector<float> v = t.to_floats();
    cuda::DeviceBuffer<float> buf(v.size());
    buf.upload(v.data(), v.size());
    return buf;
}

struct DeviceNorm {
    cuda::DeviceBuffer<float> weight, bias;
    cuda::NormParams params;  // weight null when the model has no such norm
};

DeviceNorm upload_norm(const NormWeights& w, const ModelConfig& c) {
    DeviceNorm n;
    if (!w.defined()) return n;
    n.weight = upload_vector(w.weight);
    n.bias = upload_vector(w.bias);
    n.params.weight = n.weight.get();
    n.params.bias = n.bias.get();
    n.params.kind = static_cast<cuda::NormType>(static_cast<int32_t>(c.norm_kind));
    n.params.eps = static_cast<float>(c.norm_eps);
    return n;
}

struct DeviceLayer {
    Bytes w_qkv;       // ((H + 2·Hkv)·D, C): Wq; Wk; Wv
    Bytes wo;          // (C, H·D)
    Bytes w_gate_up;   // (2I, C): Wgate; Wup (gated) or (I, C): Wup
    Bytes w_down;      // (C, I)
    cuda::DeviceBuffer<float> b_qkv, bo, b_gate_up, b_down;  // f32 or empty
    DeviceNorm attn_norm, post_attn_norm, mlp_norm, post_mlp_norm, q_norm, k_norm;
};

}  // namespace

// ---------------------------------------------------------------------------------------------
// The KV cache

struct CudaKVCache::Impl {
    const void* owner = nullptr;  // the CudaModel::Impl whose shapes the buffers have
    int64_t capacity = 0;         // positions per layer buffer
    size_t row_bytes = 0;         // one position: Hkv·D elements
    std::vector<Bytes> k, v;      // per layer (capacity, Hkv, D)
    double dynamic_rope_seq_len = 0;  // dynamic NTK: the longest sequence seen (as KVCache)

    // Buffers for `needed` positions, keeping the first n_past (amortised doubling).
    void reserve(int64_t n_past, int64_t needed, int64_t layers, cudaStream_t stream) {
        if (needed <= capacity && static_cast<int64_t>(k.size()) == layers) return;
        const int64_t grown = std::max<int64_t>({needed, 2 * capacity, 64});
        for (std::vector<Bytes>* side : {&k, &v}) {
            side->resize(static_cast<size_t>(layers));
            for (Bytes& buf : *side) {
                Bytes next(static_cast<size_t>(grown) * row_bytes);
                if (buf.get() && n_past > 0)
                    ATTNLAB_CUDA_CHECK(cudaMemcpyAsync(next.get(), buf.get(), static_cast<size_t>(n_past) * row_bytes,
                                                       cudaMemcpyDeviceToDevice, stream));
                // The copy must be done before the old buffer goes (rare: doubling).
                ATTNLAB_CUDA_CHECK(cudaStreamSynchronize(stream));
                buf = std::move(next);
            }
        }
        capacity = grown;
    }
};

CudaKVCache::CudaKVCache() : impl_(std::make_unique<Impl>()) {}
CudaKVCache::~CudaKVCache() = default;
CudaKVCache::CudaKVCache(CudaKVCache&&) noexcept = default;
CudaKVCache& CudaKVCache::operator=(CudaKVCache&&) noexcept = default;

// CudaKVCache::truncate: src/model/cuda_model_stub.cpp (it does not touch the device).

size_t CudaKVCache::bytes() const {
    size_t n = 0;
    if (!impl_) return n;
    for (const auto* side : {&impl_->k, &impl_->v})
        for (const Bytes& b : *side) n += b.size();
    return n;
}

// ---------------------------------------------------------------------------------------------
// The model

struct CudaModel::Impl {
    const Model& model;
    CudaPrecision precision;
    cudaStream_t stream = nullptr;
    std::unique_ptr<cuda::Cublas> blas;
    std::vector<DeviceLayer> layers;
    Bytes embed, pos_embed, lm_head_own;  // (V, C), (P, C) or empty, (V, C) unless tied
    const std::byte* lm_head = nullptr;   // lm_head_own or embed (tied)
    DeviceNorm final_norm;
    size_t weight_bytes = 0;

    // Reused between calls (one forward at a time per model): grown, never shrunk.
    Bytes workspace;
    PinnedBuffer pinned;
    CallTiming timing;

    Impl(const Model& m, CudaPrecision p) : model(m), precision(p) {}
    ~Impl() {
        if (stream) cudaStreamDestroy(stream);
    }

    cuda::TokenSelector selector;  // the sampler's device state (history mask, candidates)

    template <typename E>
    RunResult run(std::span<const int32_t> ids, CudaKVCache::Impl& cache, int64_t pos0, const ForwardOptions& options,
                  const TokenPick* pick);
};

namespace {

// The rows of the buffers of one call, carved out of the workspace (sizes for T tokens).
template <typename E>
struct CallBuffers {
    // Uploaded from the pinned buffer in one copy: [ids | cos/sin global | cos/sin local].
    int32_t* ids = nullptr;  // (T)
    float* cos_global = nullptr;  // (T, half_global), and the rest likewise
    float* sin_global = nullptr;
    float* cos_local = nullptr;
    float* sin_local = nullptr;
    size_t upload_bytes = 0;
    // Computed.
    float* x = nullptr;       // (T, C) residual stream
    E* h = nullptr;           // (T, max(C, H·D, I)) the next matmul's input
    float* qkv = nullptr;     // (T, (H + 2·Hkv)·D)
    E* q = nullptr;           // (T, H, D) attention queries
    float* z = nullptr;       // (T, H, D) attention output
    float* sub = nullptr;     // (T, C) a sublayer's output
    float* gate_up = nullptr; // (T, 2I) or (T, I)
    float* logits = nullptr;  // (rows, V)
    int32_t* token = nullptr; // (1) argmax
    size_t total_bytes = 0;

    // Assigns the pointers from `base` (null: only measures total_bytes).
    void carve(std::byte* base, const ModelConfig& c, int64_t T, int64_t rows, int64_t half_global, int64_t half_local) {
        size_t offset = 0;
        auto take = [&](auto*& ptr, int64_t count) {
            using P = std::remove_reference_t<decltype(*ptr)>;
            ptr = base ? reinterpret_cast<P*>(base + offset) : nullptr;
            offset += align_up(static_cast<size_t>(std::max<int64_t>(count, 1)) * sizeof(P));
        };
        const int64_t C = c.hidden_size, H = c.n_head, Hkv = c.n_head_kv, D = c.head_dim, I = c.intermediate_size;
        take(ids, T);
        take(cos_global, T * half_global);
        take(sin_global, T * half_global);
        take(cos_local, T * half_local);
        take(sin_local, T * half_local);
        upload_bytes = offset;
        take(x, T * C);
        take(h, T * std::max({C, H * D, I}));
        take(qkv, T * (H + 2 * Hkv) * D);
        take(q, T * H * D);
        take(z, T * H * D);
        take(sub, T * C);
        take(gate_up, T * (c.gated_mlp ? 2 : 1) * I);
        take(logits, rows * c.vocab_size);
        take(token, 1);
        total_bytes = offset;
    }
};

// One plan per distinct (spec, heads) of this call, shared by every layer that runs it.
struct PlannedRun {
    int64_t head_begin = 0, head_end = 0;
    const CudaAttentionPlan* plan = nullptr;
};

}  // namespace

CudaModel::CudaModel(const Model& model, const CudaModelOptions& options)
    : model_(model), options_(options), impl_(std::make_unique<Impl>(model, options.precision)) {
    ATTNLAB_CHECK(cuda_available(), NotSupported, "[cuda] no CUDA device is available");
    const ModelConfig& c = model.config();
    const ModelWeights& w = model.weights();
    ATTNLAB_CHECK(c.head_dim <= 256, NotSupported, "[cuda] head dim {} is not on the GPU yet (at most 256)", c.head_dim);
    Impl& m = *impl_;
    ATTNLAB_CUDA_CHECK(cudaStreamCreate(&m.stream));
    // A blocking stream on purpose: the attention plans upload with cudaMemcpy on the legacy
    // default stream, which a blocking stream orders its later kernels after.
    m.blas = std::make_unique<cuda::Cublas>(m.stream);
    const DType dt = options.precision == CudaPrecision::F32 ? DType::F32 : DType::BF16;
    const int64_t H = c.n_head, Hkv = c.n_head_kv, D = c.head_dim, I = c.intermediate_size;
    m.layers.resize(static_cast<size_t>(c.n_layer));
    for (int64_t l = 0; l < c.n_layer; ++l) {
        const LayerWeights& L = w.layers[l];
        DeviceLayer& d = m.layers[l];
        d.w_qkv = upload_matrix({&L.wq, &L.wk, &L.wv}, dt);
        d.wo = upload_matrix({&L.wo}, dt);
        d.w_gate_up = c.gated_mlp ? upload_matrix({&L.w_gate, &L.w_up}, dt) : upload_matrix({&L.w_up}, dt);
        d.w_down = upload_matrix({&L.w_down}, dt);
        d.b_qkv = upload_biases({{&L.bq, H * D}, {&L.bk, Hkv * D}, {&L.bv, Hkv * D}});
        d.bo = upload_vector(L.bo);
        d.b_gate_up = c.gated_mlp ? upload_biases({{&L.b_gate, I}, {&L.b_up, I}}) : upload_vector(L.b_up);
        d.b_down = upload_vector(L.b_down);
        d.attn_norm = upload_norm(L.attn_norm, c);
        d.post_attn_norm = upload_norm(L.post_attn_norm, c);
        d.mlp_norm = upload_norm(L.mlp_norm, c);
        d.post_mlp_norm = upload_norm(L.post_mlp_norm, c);
        d.q_norm = upload_norm(L.q_norm, c);
        d.k_norm = upload_norm(L.k_norm, c);
        for (const Bytes* b : {&d.w_qkv, &d.wo, &d.w_gate_up, &d.w_down}) m.weight_bytes += b->size();
    }
    m.embed = upload_matrix({&w.embed}, dt);
    if (w.pos_embed.defined()) m.pos_embed = upload_matrix({&w.pos_embed}, dt);
    // Tied: lm_head is the embedding tensor itself (same memory, same layout): upload it once.
    const bool tied = w.lm_head.defined() && w.lm_head.raw() == w.embed.raw() && w.lm_head.dtype() == w.embed.dtype() &&
                      w.lm_head.shape() == w.embed.shape() && w.lm_head.strides() == w.embed.strides();
    if (!tied) m.lm_head_own = upload_matrix({&w.lm_head}, dt);
    m.lm_head = tied ? m.embed.get() : m.lm_head_own.get();
    m.final_norm = upload_norm(w.final_norm, c);
    m.weight_bytes += m.embed.size() + m.pos_embed.size() + m.lm_head_own.size();
}

CudaModel::~CudaModel() = default;

size_t CudaModel::weight_bytes() const { return impl_->weight_bytes; }

void CudaModel::synchronize() const { ATTNLAB_CUDA_CHECK(cudaStreamSynchronize(impl_->stream)); }

CudaModel::CallTiming CudaModel::last_call_timing() const { return impl_->timing; }

template <typename E>
CudaModel::RunResult CudaModel::Impl::run(std::span<const int32_t> tokens, CudaKVCache::Impl& cache, int64_t pos0,
                                          const ForwardOptions& options, const TokenPick* pick) {
    const auto start = std::chrono::steady_clock::now();
    const ModelConfig& c = model.config();
    const int64_t T = static_cast<int64_t>(tokens.size());
    const int64_t C = c.hidden_size, H = c.n_head, Hkv = c.n_head_kv, D = c.head_dim, I = c.intermediate_size;
    const int64_t V = c.vocab_size, total = pos0 + T;
    const cudaStream_t s = stream;

    // RoPE tables for this call's positions, built as the CPU decoder builds them.
    CallRope rope;
    const bool has_rope = !c.learned_positions;
    if (has_rope)
        rope = call_rope(c, total, call_position_ids(pos0, T, options.position_ids), cache.dynamic_rope_seq_len);
    const int64_t half_global = rope.half_global(), half_local = rope.half_local();

    // Workspace (the previous call has finished: every call ends with a wait).
    const int64_t rows = options.all_logits ? T : 1;
    CallBuffers<E> b;
    b.carve(nullptr, c, T, rows, half_global, half_local);
    if (workspace.size() < b.total_bytes) workspace = Bytes(b.total_bytes + b.total_bytes / 4);
    b.carve(workspace.get(), c, T, rows, half_global, half_local);

    // Inputs: one copy from pinned memory.
    std::byte* staging = pinned.reserve(b.upload_bytes);
    auto stage = [&](const void* device_ptr, const void* host, size_t bytes) {
        if (bytes) std::memcpy(staging + (static_cast<const std::byte*>(device_ptr) - workspace.get()), host, bytes);
    };
    stage(b.ids, tokens.data(), tokens.size_bytes());
    stage(b.cos_global, rope.cos_global.data(), rope.cos_global.size() * 4);
    stage(b.sin_global, rope.sin_global.data(), rope.sin_global.size() * 4);
    stage(b.cos_local, rope.cos_local.data(), rope.cos_local.size() * 4);
    stage(b.sin_local, rope.sin_local.data(), rope.sin_local.size() * 4);

    // Attention plans, all built before any kernel is queued (their uploads are synchronous).
    std::vector<int32_t> segment_ids;
    if (options.segments) segment_ids = options.segments->ids(total);
    const DType att_dtype = dtype_of<E>();
    const auto plans_start = std::chrono::steady_clock::now();
    std::vector<std::pair<std::string, std::unique_ptr<CudaAttentionPlan>>> plans;
    std::vector<std::vector<PlannedRun>> layer_runs(static_cast<size_t>(c.n_layer));
    auto layer_inputs = [&](int64_t l) {
        AttentionInputs in = AttentionInputs::contiguous(att_dtype, b.q, cache.k[l].get(), cache.v[l].get(), 1, T, total,
                                                         H, Hkv, D, D);
        in.segments = options.segments ? segment_ids.data() : nullptr;
        return in;
    };
    const AttentionOutputs out = AttentionOutputs::contiguous(b.z, nullptr, T, H, D);
    for (int64_t l = 0; l < c.n_layer; ++l) {
        for (const HeadRun& run : model.layer_attention(l)) {
            const std::string key = fmt::format("{}#{}-{}", run.spec.text(), run.head_begin, run.head_end);
            auto it = std::find_if(plans.begin(), plans.end(), [&](const auto& p) { return p.first == key; });
            if (it == plans.end()) {
                AttentionInputs in = layer_inputs(l);
                in.head_begin = run.head_begin;
                in.head_end = run.head_end;
                plans.emplace_back(key, std::make_unique<CudaAttentionPlan>(run.spec, in, out));
                it = plans.end() - 1;
            }
            layer_runs[l].push_back({run.head_begin, run.head_end, it->second.get()});
        }
    }

    timing.plans_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - plans_start).count();

    ATTNLAB_CUDA_CHECK(cudaMemcpyAsync(workspace.get(), staging, b.upload_bytes, cudaMemcpyHostToDevice, s));
    cuda::embed<E>(b.ids, T, as<E>(embed), pos_embed.get() ? as<E>(pos_embed) : nullptr, pos0, C,
                   static_cast<float>(c.embedding_scale), b.x, s);

    const cuda::NormParams no_norm{};
    auto pre_norm = [&](const DeviceNorm& n) { return c.pre_norms ? n.params : no_norm; };
    auto post_norm = [&](const DeviceNorm& n) { return c.post_norms ? n.params : no_norm; };
    cuda::ResidualNormArgs first;  // h = attn_norm(x) for layer 0; later layers get it fused
    first.x = b.x, first.ldx = C, first.n = C, first.y = b.h, first.ldy = C, first.out_norm = pre_norm(layers[0].attn_norm);
    cuda::residual_norm<E>(first, T, s);

    const int64_t n_qkv = (H + 2 * Hkv) * D;
    const int64_t n_gate_up = (c.gated_mlp ? 2 : 1) * I;
    const size_t cache_offset = static_cast<size_t>(pos0) * cache.row_bytes;
    for (int64_t l = 0; l < c.n_layer; ++l) {
        const DeviceLayer& L = layers[l];
        // --- attention ---
        blas->linear<E>(b.h, C, as<E>(L.w_qkv), b.qkv, n_qkv, T, n_qkv, C);
        cuda::QkvArgs qa;
        qa.qkv = b.qkv, qa.ld = n_qkv, qa.bias = L.b_qkv.get();
        if (c.qk_norm == QKNorm::PerHead) {
            qa.q_norm = L.q_norm.params;
            qa.k_norm = L.k_norm.params;
        } else if (c.qk_norm == QKNorm::FullWidth) {  // bias, then a norm over all heads, in place
            if (qa.bias) cuda::add_bias(b.qkv, n_qkv, qa.bias, T, n_qkv, s);
            qa.bias = nullptr;
            for (const auto& [offset, width, norm] : {std::tuple{int64_t(0), H * D, &L.q_norm},
                                                      std::tuple{H * D, Hkv * D, &L.k_norm}}) {
                cuda::ResidualNormArgs na;
                na.x = b.qkv + offset, na.ldx = n_qkv, na.n = width;
                na.y = b.qkv + offset, na.ldy = n_qkv, na.out_norm = norm->params;
                cuda::residual_norm<float>(na, T, s);
            }
        }
        if (has_rope) {
            const bool local = c.layer_window[l] > 0 && c.rope_local.has_value();
            qa.cos = local ? b.cos_local : b.cos_global;
            qa.sin = local ? b.sin_local : b.sin_global;
            qa.half = static_cast<int32_t>(local ? half_local : half_global);
        }
        qa.T = static_cast<int32_t>(T), qa.H = static_cast<int32_t>(H), qa.Hkv = static_cast<int32_t>(Hkv);
        qa.D = static_cast<int32_t>(D);
        qa.q_out = b.q;
        qa.k_out = cache.k[l].get() + cache_offset;
        qa.v_out = cache.v[l].get() + cache_offset;
        cuda::finish_qkv<E>(qa, s);

        const AttentionInputs in = layer_inputs(l);
        for (const PlannedRun& run : layer_runs[l]) {
            AttentionInputs heads = in;
            heads.head_begin = run.head_begin;
            heads.head_end = run.head_end;
            run.plan->run(heads, out, s);
        }
        const E* wo_in;
        if constexpr (std::is_same_v<E, float>) {
            wo_in = b.z;
        } else {
            cuda::convert<E>(b.z, b.h, T * H * D, s);
            wo_in = b.h;
        }
        blas->linear<E>(wo_in, H * D, as<E>(L.wo), b.sub, C, T, C, H * D);
        cuda::ResidualNormArgs ra;
        ra.x = b.x, ra.ldx = C, ra.n = C;
        ra.delta = b.sub, ra.ld_delta = C, ra.delta_bias = L.bo.get(), ra.delta_norm = post_norm(L.post_attn_norm);
        ra.y = b.h, ra.ldy = C, ra.out_norm = pre_norm(L.mlp_norm);
        cuda::residual_norm<E>(ra, T, s);

        // --- MLP ---
        blas->linear<E>(b.h, C, as<E>(L.w_gate_up), b.gate_up, n_gate_up, T, n_gate_up, C);
        cuda::activation<E>(static_cast<cuda::ActType>(static_cast<int32_t>(c.activation)), c.gated_mlp, b.gate_up,
                            n_gate_up, L.b_gate_up.get(), T, I, b.h, s);
        blas->linear<E>(b.h, I, as<E>(L.w_down), b.sub, C, T, C, I);
        cuda::ResidualNormArgs rm;
        rm.x = b.x, rm.ldx = C, rm.n = C;
        rm.delta = b.sub, rm.ld_delta = C, rm.delta_bias = L.b_down.get(), rm.delta_norm = post_norm(L.post_mlp_norm);
        if (l + 1 < c.n_layer) rm.y = b.h, rm.ldy = C, rm.out_norm = pre_norm(layers[l + 1].attn_norm);
        cuda::residual_norm<E>(rm, T, s);
    }

    // Final norm and logits of the last `rows` positions.
    cuda::ResidualNormArgs fa;
    fa.x = b.x + (T - rows) * C, fa.ldx = C, fa.n = C, fa.y = b.h, fa.ldy = C, fa.out_norm = final_norm.params;
    cuda::residual_norm<E>(fa, rows, s);
    blas->linear<E>(b.h, C, reinterpret_cast<const E*>(lm_head), b.logits, V, rows, V, C);
    if (c.final_softcap > 0) cuda::softcap(b.logits, rows * V, static_cast<float>(c.final_softcap), s);
    RunResult result{b.logits, rows, -1};
    int32_t* token_host = reinterpret_cast<int32_t*>(staging);  // the inputs were copied out by now
    if (pick) {
        selector.pick(b.logits + (rows - 1) * V, V, *pick->params, pick->history, pick->u, b.token, s);
        ATTNLAB_CUDA_CHECK(cudaMemcpyAsync(token_host, b.token, sizeof(int32_t), cudaMemcpyDeviceToHost, s));
    }
    // The plans' buffers are freed on return: their kernels must be done first.
    const auto queued = std::chrono::steady_clock::now();
    ATTNLAB_CUDA_CHECK(cudaStreamSynchronize(s));
    timing.enqueue_s = std::chrono::duration<double>(queued - start).count();
    timing.wait_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - queued).count();
    if (pick) {
        result.token = *token_host;
        ATTNLAB_CHECK(result.token >= 0, InvalidArgument, "[sampler] the logits hold NaN, or the top logit is ±inf");
    }
    return result;
}

Tensor CudaModel::forward(std::span<const int32_t> ids, CudaKVCache& cache, const ForwardOptions& options) const {
    const RunResult r = run(ids, cache, options, nullptr);
    Tensor logits = Tensor::empty({r.rows, model_.config().vocab_size});  // (rows, V)
    ATTNLAB_CUDA_CHECK(cudaMemcpy(logits.raw(), r.logits, logits.nbytes(), cudaMemcpyDeviceToHost));
    return logits;
}

int32_t CudaModel::forward_greedy(std::span<const int32_t> ids, CudaKVCache& cache, const ForwardOptions& options) const {
    SamplingParams greedy;
    greedy.temperature = 0;
    return forward_sample(ids, cache, greedy, {}, 0.0, options);
}

int32_t CudaModel::forward_sample(std::span<const int32_t> ids, CudaKVCache& cache, const SamplingParams& params,
                                  std::span<const int32_t> history, double u, const ForwardOptions& options) const {
    // Checked before anything is queued: a throw between the launches and the wait would free
    // the attention plans under running kernels.
    check_sampling_params(params);
    ATTNLAB_CHECK(params.temperature == 0.0 || (u >= 0.0 && u < 1.0), InvalidArgument,
                  "[sampler] the uniform draw must be in [0, 1), got {}", u);
    ForwardOptions last_only = options;
    last_only.all_logits = false;
    const TokenPick pick{&params, history, u};
    return run(ids, cache, last_only, &pick).token;
}

CudaModel::RunResult CudaModel::run(std::span<const int32_t> ids, CudaKVCache& cache, const ForwardOptions& options,
                                    const TokenPick* pick) const {
    ATTNLAB_CHECK(!options.hooks && options.stop_at_layer < 0, NotSupported,
                  "[cuda] hooks are not on the GPU yet (hooks and stop_at_layer need the CPU model)");
    const ModelConfig& c = model_.config();
    const int64_t T = static_cast<int64_t>(ids.size());
    ATTNLAB_CHECK(T > 0, InvalidArgument, "[forward] no tokens to run");
    for (int32_t id : ids)
        ATTNLAB_CHECK(id >= 0 && id < c.vocab_size, InvalidArgument,
                      "[forward] token id {} is out of range for vocabulary size {}", id, c.vocab_size);
    const int64_t pos0 = cache.n_past_, total = pos0 + T;
    if (c.learned_positions)
        ATTNLAB_CHECK(total <= c.max_position_embeddings, InvalidArgument,
                      "[forward] {} positions exceed the model's context of {} (learned positions)", total,
                      c.max_position_embeddings);
    if (!cache.impl_) cache.impl_ = std::make_unique<CudaKVCache::Impl>();  // a moved-from cache
    CudaKVCache::Impl& kv = *cache.impl_;
    if (kv.owner != impl_.get()) {  // a fresh cache, or a cleared one of another model
        ATTNLAB_CHECK(kv.owner == nullptr || pos0 == 0, InvalidArgument,
                      "[cuda] this KV cache holds positions of another CudaModel (clear() it first)");
        kv = CudaKVCache::Impl();
        kv.owner = impl_.get();
        kv.row_bytes = static_cast<size_t>(c.n_head_kv * c.head_dim) * element_size(options_.precision);
    }
    kv.reserve(pos0, total, c.n_layer, impl_->stream);
    RunResult r = options_.precision == CudaPrecision::F32 ? impl_->run<float>(ids, kv, pos0, options, pick)
                                                           : impl_->run<__nv_bfloat16>(ids, kv, pos0, options, pick);
    cache.n_past_ = total;
    return r;
}

}  // namespace attnlab
