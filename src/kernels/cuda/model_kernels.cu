// The decoder's element-wise and row-wise kernels (model_kernels.cuh). Rows are short (C, D, I
// of at most a few thousand floats), so one block (or one warp, for heads) owns a row and
// re-reads it from L1/L2 instead of staging it; every launch is checked where it happens.
#include "kernels/cuda/cuda_util.cuh"
#include "kernels/cuda/model_kernels.cuh"

#include <cub/device/device_radix_sort.cuh>
#include <cub/device/device_scan.cuh>

#include <algorithm>
#include <cfloat>
#include <type_traits>

namespace attnlab::cuda {

namespace {

constexpr int kRowThreads = 256;  // threads per row-wise block
constexpr int kHeadWarps = 8;     // warps per block of finish_qkv (one (t, head) each)
constexpr int kMaxHeadDim = 256;

template <typename T>
__device__ __forceinline__ float load_f32(const T* p, int64_t i) {
    if constexpr (std::is_same_v<T, float>) return p[i];
    else return __bfloat162float(p[i]);
}

template <typename T>
__device__ __forceinline__ T from_f32(float v) {
    if constexpr (std::is_same_v<T, float>) return v;
    else return __float2bfloat16_rn(v);  // round to nearest even, as f32_to_bf16 on the host
}

__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

// Sum over the block; every thread gets it. `scratch` holds 32 floats.
__device__ float block_sum(float v, float* scratch) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = (blockDim.x + 31) >> 5;
    v = warp_sum(v);
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    v = threadIdx.x < warps ? scratch[threadIdx.x] : 0.0f;
    if (warp == 0) v = warp_sum(v);
    if (threadIdx.x == 0) scratch[0] = v;
    __syncthreads();
    const float total = scratch[0];
    __syncthreads();  // scratch is reused by the next call
    return total;
}

struct RowStats {
    float mean = 0.0f;  // 0 unless LayerNorm
    float inv = 1.0f;   // 1 / sqrt(mean((x - mean)²) + eps)
};

// The statistics of one row of n values load(i), summed by `sum` (block- or warp-wide). Two
// passes for LayerNorm (centred variance), as the CPU kernel computes it.
template <typename Load, typename Sum>
__device__ RowStats row_stats(Load load, int64_t n, int64_t first, int64_t step, const NormParams& p, Sum sum) {
    RowStats s;
    if (p.kind == NormType::Layer) {
        float acc = 0.0f;
        for (int64_t i = first; i < n; i += step) acc += load(i);
        s.mean = sum(acc) / float(n);
    }
    float sq = 0.0f;
    for (int64_t i = first; i < n; i += step) {
        const float d = load(i) - s.mean;
        sq += d * d;
    }
    s.inv = 1.0f / sqrtf(sum(sq) / float(n) + p.eps);
    return s;
}

__device__ __forceinline__ float normalize(float v, const RowStats& s, const NormParams& p, int64_t i) {
    const float y = (v - s.mean) * s.inv;
    switch (p.kind) {
        case NormType::RMS: return y * p.weight[i];
        case NormType::RMSPlusOne: return y * (1.0f + p.weight[i]);
        case NormType::Layer: return y * p.weight[i] + (p.bias ? p.bias[i] : 0.0f);
    }
    return y;
}

template <typename Table>
__global__ void embed_kernel(const int32_t* ids, const Table* table, const Table* pos_table, int64_t pos0, int64_t C,
                             float scale, float* x) {
    const int64_t t = blockIdx.x;
    const Table* row = table + int64_t(ids[t]) * C;
    const Table* pos = pos_table ? pos_table + (pos0 + t) * C : nullptr;
    for (int64_t i = threadIdx.x; i < C; i += blockDim.x) {
        float v = load_f32(row, i);
        if (scale != 1.0f) v *= scale;
        if (pos) v += load_f32(pos, i);
        x[t * C + i] = v;
    }
}

template <typename Out>
__global__ void residual_norm_kernel(ResidualNormArgs a) {
    __shared__ float scratch[32];
    auto sum = [&](float v) { return block_sum(v, scratch); };
    const int64_t r = blockIdx.x, first = threadIdx.x, step = blockDim.x;
    float* x = a.x + r * a.ldx;
    if (a.delta) {
        const float* d = a.delta + r * a.ld_delta;
        const float* b = a.delta_bias;
        auto load = [&](int64_t i) { return b ? d[i] + b[i] : d[i]; };
        if (a.delta_norm.weight) {
            const RowStats s = row_stats(load, a.n, first, step, a.delta_norm, sum);
            for (int64_t i = first; i < a.n; i += step) x[i] += normalize(load(i), s, a.delta_norm, i);
        } else {
            for (int64_t i = first; i < a.n; i += step) x[i] += load(i);
        }
    }
    if (!a.y) return;
    // Each thread reads back only the elements it wrote (same first/step), so no barrier.
    Out* y = static_cast<Out*>(a.y) + r * a.ldy;
    if (a.out_norm.weight) {
        const RowStats s = row_stats([&](int64_t i) { return x[i]; }, a.n, first, step, a.out_norm, sum);
        for (int64_t i = first; i < a.n; i += step) y[i] = from_f32<Out>(normalize(x[i], s, a.out_norm, i));
    } else {
        for (int64_t i = first; i < a.n; i += step) y[i] = from_f32<Out>(x[i]);
    }
}

__global__ void add_bias_kernel(float* x, int64_t ldx, const float* bias, int64_t rows, int64_t n) {
    const int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
    if (idx >= rows * n) return;
    x[(idx / n) * ldx + idx % n] += bias[idx % n];
}

template <typename Att>
__global__ void finish_qkv_kernel(QkvArgs a) {
    __shared__ float head[kHeadWarps][kMaxHeadDim];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int slots = a.H + 2 * a.Hkv;
    const int64_t item = int64_t(blockIdx.x) * kHeadWarps + warp;  // (t, slot)
    if (item >= int64_t(a.T) * slots) return;  // whole warps only: no block barrier below
    const int64_t t = item / slots;
    const int slot = int(item % slots);
    const int D = a.D;
    float* h = head[warp];
    const float* src = a.qkv + t * a.ld + int64_t(slot) * D;
    for (int i = lane; i < D; i += 32) h[i] = src[i] + (a.bias ? a.bias[slot * D + i] : 0.0f);
    __syncwarp();

    const bool is_q = slot < a.H, is_k = !is_q && slot < a.H + a.Hkv;
    if (is_q || is_k) {
        const NormParams& np = is_q ? a.q_norm : a.k_norm;
        if (np.weight) {
            const RowStats s = row_stats([&](int64_t i) { return h[i]; }, D, lane, 32, np, [](float v) { return warp_sum(v); });
            __syncwarp();
            for (int i = lane; i < D; i += 32) h[i] = normalize(h[i], s, np, i);
            __syncwarp();
        }
        if (a.cos) {  // rotate-half on pairs (i, i + half); each lane owns whole pairs
            const float* c = a.cos + t * a.half;
            const float* sn = a.sin + t * a.half;
            for (int i = lane; i < a.half; i += 32) {
                const float x1 = h[i], x2 = h[i + a.half];
                h[i] = x1 * c[i] - x2 * sn[i];
                h[i + a.half] = x2 * c[i] + x1 * sn[i];
            }
            __syncwarp();
        }
    }
    Att* dst;
    if (is_q) dst = static_cast<Att*>(a.q_out) + (t * a.H + slot) * D;
    else if (is_k) dst = static_cast<Att*>(a.k_out) + (t * a.Hkv + (slot - a.H)) * D;
    else dst = static_cast<Att*>(a.v_out) + (t * a.Hkv + (slot - a.H - a.Hkv)) * D;
    for (int i = lane; i < D; i += 32) dst[i] = from_f32<Att>(h[i]);
}

__device__ __forceinline__ float activate(ActType act, float g) {
    switch (act) {
        case ActType::SiLU: return g / (1.0f + expf(-g));
        case ActType::GELU: return 0.5f * g * (1.0f + erff(g * 0.70710678118654752f));
        case ActType::GELUTanh: return 0.5f * g * (1.0f + tanhf(0.7978845608028654f * (g + 0.044715f * g * g * g)));
        case ActType::ReLU: return g > 0.0f ? g : 0.0f;
    }
    return g;
}

template <typename Out>
__global__ void activation_kernel(ActType act, bool gated, const float* gu, int64_t ld_gu, const float* bias,
                                  int64_t rows, int64_t I, Out* out) {
    const int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
    if (idx >= rows * I) return;
    const int64_t r = idx / I, i = idx % I;
    const float* row = gu + r * ld_gu;
    float y = activate(act, row[i] + (bias ? bias[i] : 0.0f));
    if (gated) y *= row[I + i] + (bias ? bias[I + i] : 0.0f);
    out[idx] = from_f32<Out>(y);
}

template <typename Out>
__global__ void convert_kernel(const float* in, Out* out, int64_t count) {
    const int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
    if (idx < count) out[idx] = from_f32<Out>(in[idx]);
}

__global__ void softcap_kernel(float* x, int64_t count, float cap) {
    const int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
    if (idx < count) x[idx] = cap * tanhf(x[idx] / cap);
}

// One block: each thread scans a strided slice in ascending order (so its first maximum is its
// lowest index), then the block reduces (value, index) pairs, the lower index winning ties.
constexpr int kArgmaxThreads = 1024;
__global__ void argmax_kernel(const float* x, int64_t n, int32_t* out) {
    __shared__ float best_value[kArgmaxThreads / 32];
    __shared__ int32_t best_index[kArgmaxThreads / 32];
    float value = -FLT_MAX;
    int32_t index = INT32_MAX;
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x)
        if (x[i] > value || index == INT32_MAX) value = x[i], index = int32_t(i);
    auto better = [](float v, int32_t i, float bv, int32_t bi) { return v > bv || (v == bv && i < bi); };
    for (int o = 16; o > 0; o >>= 1) {
        const float v = __shfl_xor_sync(0xffffffffu, value, o);
        const int32_t i = __shfl_xor_sync(0xffffffffu, index, o);
        if (better(v, i, value, index)) value = v, index = i;
    }
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    if (lane == 0) best_value[warp] = value, best_index[warp] = index;
    __syncthreads();
    if (warp != 0) return;
    value = lane < int(blockDim.x >> 5) ? best_value[lane] : -FLT_MAX;
    index = lane < int(blockDim.x >> 5) ? best_index[lane] : INT32_MAX;
    for (int o = 16; o > 0; o >>= 1) {
        const float v = __shfl_xor_sync(0xffffffffu, value, o);
        const int32_t i = __shfl_xor_sync(0xffffffffu, index, o);
        if (better(v, i, value, index)) value = v, index = i;
    }
    if (lane == 0) *out = index;
}


// --- The sampler's token choice (TokenSelector) ---

__global__ void mark_history_kernel(const int32_t* ids, int64_t n, int64_t V, uint8_t* seen) {
    const int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
    if (idx < n && ids[idx] >= 0 && ids[idx] < V) seen[ids[idx]] = 1;
}

// keys (V) = logits after the repetition penalty (ids marked in `seen`, when given), ids (V) =
// 0..V-1; *bad = 1 on a NaN. -0 becomes +0, so the keys tie as the CPU's comparison ties them
// (and the stable sort breaks the tie by id) whatever the sort does with signed zeros.
__global__ void prepare_candidates_kernel(const float* logits, int64_t V, const uint8_t* seen, float penalty, float* keys,
                                          int32_t* ids, int32_t* bad) {
    for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < V; i += int64_t(gridDim.x) * blockDim.x) {
        float x = logits[i];
        if (seen && seen[i]) x = x > 0.0f ? x / penalty : x * penalty;
        if (isnan(x)) *bad = 1;
        if (x == 0.0f) x = 0.0f;
        keys[i] = x;
        ids[i] = int32_t(i);
    }
}

// weights (k) = exp((key_i − key_0) / temperature) in f64, the CPU's expression.
__global__ void candidate_weights_kernel(const float* sorted_keys, int64_t k, double temperature, double* weights) {
    const double top = sorted_keys[0];
    for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < k; i += int64_t(gridDim.x) * blockDim.x)
        weights[i] = exp((double(sorted_keys[i]) - top) / temperature);
}

// The first i in [lo, hi) where pred(i) holds, hi when none; pred is false then true.
template <typename Pred>
__device__ int64_t first_where(int64_t lo, int64_t hi, Pred pred) {
    while (lo < hi) {
        const int64_t mid = lo + (hi - lo) / 2;
        if (pred(mid)) hi = mid;
        else lo = mid + 1;
    }
    return lo;
}

// One thread: top-p, min-p and the pick by u, each a binary search where select_token scans
// (the running sums only grow, the weights only shrink, so the first hit is the same).
__global__ void choose_candidate_kernel(const float* sorted_keys, const int32_t* sorted_ids, const double* weights,
                                        const double* running, int64_t k, double top_p, double min_p, double u,
                                        const int32_t* bad, int32_t* out) {
    if (*bad || !isfinite(sorted_keys[0])) {
        *out = -1;
        return;
    }
    const double total = running[k - 1];
    int64_t keep = k;
    if (top_p < 1.0) {
        const int64_t reached = first_where(0, k, [&](int64_t i) { return running[i] / total >= top_p; });
        keep = reached < k ? reached + 1 : k;
    }
    if (min_p > 0.0) {
        const double threshold = min_p * (weights[0] / total);
        keep = first_where(1, keep, [&](int64_t i) { return weights[i] / total < threshold; });
    }
    const double kept = running[keep - 1];
    *out = sorted_ids[first_where(0, keep - 1, [&](int64_t i) { return running[i] / kept >= u; })];
}

unsigned blocks_for(int64_t count, int threads) { return unsigned((count + threads - 1) / threads); }

}  // namespace

template <typename Table>
void embed(const int32_t* ids, int64_t T, const Table* table, const Table* pos_table, int64_t pos0, int64_t C,
           float scale, float* x, cudaStream_t stream) {
    embed_kernel<<<unsigned(T), kRowThreads, 0, stream>>>(ids, table, pos_table, pos0, C, scale, x);
    ATTNLAB_CUDA_CHECK_LAUNCH("embed_kernel");
}

template <typename Out>
void residual_norm(const ResidualNormArgs& args, int64_t rows, cudaStream_t stream) {
    if (rows == 0) return;
    residual_norm_kernel<Out><<<unsigned(rows), kRowThreads, 0, stream>>>(args);
    ATTNLAB_CUDA_CHECK_LAUNCH("residual_norm_kernel");
}

void add_bias(float* x, int64_t ldx, const float* bias, int64_t rows, int64_t n, cudaStream_t stream) {
    if (rows * n == 0) return;
    add_bias_kernel<<<blocks_for(rows * n, 256), 256, 0, stream>>>(x, ldx, bias, rows, n);
    ATTNLAB_CUDA_CHECK_LAUNCH("add_bias_kernel");
}

template <typename Att>
void finish_qkv(const QkvArgs& args, cudaStream_t stream) {
    if (args.D > kMaxHeadDim)
        throw NotSupported(fmt::format("[cuda] head dim {} is over the model kernels' {}", args.D, kMaxHeadDim));
    const int64_t items = int64_t(args.T) * (args.H + 2 * args.Hkv);
    if (items == 0) return;
    finish_qkv_kernel<Att><<<blocks_for(items, kHeadWarps), kHeadWarps * 32, 0, stream>>>(args);
    ATTNLAB_CUDA_CHECK_LAUNCH("finish_qkv_kernel");
}

template <typename Out>
void activation(ActType act, bool gated, const float* gu, int64_t ld_gu, const float* bias, int64_t rows, int64_t I,
                Out* out, cudaStream_t stream) {
    if (rows * I == 0) return;
    activation_kernel<Out><<<blocks_for(rows * I, 256), 256, 0, stream>>>(act, gated, gu, ld_gu, bias, rows, I, out);
    ATTNLAB_CUDA_CHECK_LAUNCH("activation_kernel");
}

template <typename Out>
void convert(const float* in, Out* out, int64_t count, cudaStream_t stream) {
    if (count == 0) return;
    convert_kernel<Out><<<blocks_for(count, 256), 256, 0, stream>>>(in, out, count);
    ATTNLAB_CUDA_CHECK_LAUNCH("convert_kernel");
}

void softcap(float* x, int64_t count, float cap, cudaStream_t stream) {
    if (count == 0) return;
    softcap_kernel<<<blocks_for(count, 256), 256, 0, stream>>>(x, count, cap);
    ATTNLAB_CUDA_CHECK_LAUNCH("softcap_kernel");
}

void argmax(const float* x, int64_t n, int32_t* out, cudaStream_t stream) {
    argmax_kernel<<<1, kArgmaxThreads, 0, stream>>>(x, n, out);
    ATTNLAB_CUDA_CHECK_LAUNCH("argmax_kernel");
}

void TokenSelector::reserve(int64_t V) {
    if (V <= capacity_) return;
    keys_ = DeviceBuffer<float>(size_t(V));
    sorted_keys_ = DeviceBuffer<float>(size_t(V));
    ids_ = DeviceBuffer<int32_t>(size_t(V));
    sorted_ids_ = DeviceBuffer<int32_t>(size_t(V));
    weights_ = DeviceBuffer<double>(size_t(V));
    running_ = DeviceBuffer<double>(size_t(V));
    seen_ = DeviceBuffer<uint8_t>(size_t(V));
    if (!bad_.get()) bad_ = DeviceBuffer<int32_t>(1);
    size_t sort_bytes = 0, scan_bytes = 0;
    ATTNLAB_CUDA_CHECK(cub::DeviceRadixSort::SortPairsDescending(nullptr, sort_bytes, keys_.get(), sorted_keys_.get(),
                                                                 ids_.get(), sorted_ids_.get(), int(V)));
    ATTNLAB_CUDA_CHECK(cub::DeviceScan::InclusiveSum(nullptr, scan_bytes, weights_.get(), running_.get(), int(V)));
    cub_scratch_ = DeviceBuffer<std::byte>(std::max(sort_bytes, scan_bytes));
    capacity_ = V;
    mask_ready_ = false;  // a new mask: the next mark_history clears it
}

void TokenSelector::mark_history(std::span<const int32_t> history, int64_t V, cudaStream_t stream) {
    const bool extends = marked_.size() <= history.size() && std::equal(marked_.begin(), marked_.end(), history.begin());
    if (!mask_ready_ || !extends) {
        ATTNLAB_CUDA_CHECK(cudaMemsetAsync(seen_.get(), 0, size_t(capacity_), stream));  // all: V may grow
        marked_.clear();
        mask_ready_ = true;
    }
    const std::span<const int32_t> fresh = history.subspan(marked_.size());
    if (fresh.empty()) return;
    if (new_ids_.size() < fresh.size()) new_ids_ = DeviceBuffer<int32_t>(std::max(fresh.size(), size_t(256)));
    // From pageable memory: the call returns once the ids are staged, so `history` may change.
    ATTNLAB_CUDA_CHECK(
        cudaMemcpyAsync(new_ids_.get(), fresh.data(), fresh.size_bytes(), cudaMemcpyHostToDevice, stream));
    mark_history_kernel<<<blocks_for(int64_t(fresh.size()), 256), 256, 0, stream>>>(new_ids_.get(),
                                                                                   int64_t(fresh.size()), V, seen_.get());
    ATTNLAB_CUDA_CHECK_LAUNCH("mark_history_kernel");
    marked_.insert(marked_.end(), fresh.begin(), fresh.end());
}

void TokenSelector::pick(const float* logits, int64_t V, const SamplingParams& params,
                         std::span<const int32_t> history, double u, int32_t* out, cudaStream_t stream) {
    check_sampling_params(params);
    if (V <= 0 || V > INT32_MAX)
        throw InvalidArgument(fmt::format("[cuda] the sampler needs 1 to 2^31-1 logits, got {}", V));
    const bool penalty = params.repetition_penalty != 1.0;
    if (params.temperature == 0.0 && !penalty) return argmax(logits, V, out, stream);
    if (params.temperature != 0.0 && !(u >= 0.0 && u < 1.0))
        throw InvalidArgument(fmt::format("[sampler] the uniform draw must be in [0, 1), got {}", u));
    reserve(V);
    if (penalty) mark_history(history, V, stream);
    ATTNLAB_CUDA_CHECK(cudaMemsetAsync(bad_.get(), 0, sizeof(int32_t), stream));
    const unsigned blocks = std::min(blocks_for(V, 256), 1024u);
    prepare_candidates_kernel<<<blocks, 256, 0, stream>>>(logits, V, penalty ? seen_.get() : nullptr,
                                                          float(params.repetition_penalty), keys_.get(), ids_.get(),
                                                          bad_.get());
    ATTNLAB_CUDA_CHECK_LAUNCH("prepare_candidates_kernel");
    if (params.temperature == 0.0) return argmax(keys_.get(), V, out, stream);

    size_t scratch_bytes = cub_scratch_.size();
    ATTNLAB_CUDA_CHECK(cub::DeviceRadixSort::SortPairsDescending(cub_scratch_.get(), scratch_bytes, keys_.get(),
                                                                 sorted_keys_.get(), ids_.get(), sorted_ids_.get(),
                                                                 int(V), 0, 32, stream));
    const int64_t k = params.top_k > 0 ? std::min(params.top_k, V) : V;
    candidate_weights_kernel<<<std::min(blocks_for(k, 256), 1024u), 256, 0, stream>>>(
        sorted_keys_.get(), k, params.temperature, weights_.get());
    ATTNLAB_CUDA_CHECK_LAUNCH("candidate_weights_kernel");
    scratch_bytes = cub_scratch_.size();
    ATTNLAB_CUDA_CHECK(
        cub::DeviceScan::InclusiveSum(cub_scratch_.get(), scratch_bytes, weights_.get(), running_.get(), int(k), stream));
    choose_candidate_kernel<<<1, 1, 0, stream>>>(sorted_keys_.get(), sorted_ids_.get(), weights_.get(), running_.get(),
                                                 k, params.top_p, params.min_p, u, bad_.get(), out);
    ATTNLAB_CUDA_CHECK_LAUNCH("choose_candidate_kernel");
}

// The two element types of the model (model_forward.cu instantiates nothing else).
#define ATTNLAB_MODEL_KERNELS(T)                                                                                     \
    template void embed<T>(const int32_t*, int64_t, const T*, const T*, int64_t, int64_t, float, float*,           \
                           cudaStream_t);                                                                            \
    template void residual_norm<T>(const ResidualNormArgs&, int64_t, cudaStream_t);                                 \
    template void finish_qkv<T>(const QkvArgs&, cudaStream_t);                                                      \
    template void activation<T>(ActType, bool, const float*, int64_t, const float*, int64_t, int64_t, T*,           \
                                cudaStream_t);                                                                       \
    template void convert<T>(const float*, T*, int64_t, cudaStream_t);
ATTNLAB_MODEL_KERNELS(float)
ATTNLAB_MODEL_KERNELS(__nv_bfloat16)
#undef ATTNLAB_MODEL_KERNELS

}  // namespace attnlab::cuda
