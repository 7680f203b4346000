// The attention statistics (AttentionStats) on the GPU: a pass after the attention kernel.
//
// The attention kernel leaves each row's lse (natural log of the softmax denominator, sinks
// included), so every probability is known exactly without a running max: softmax
// p = e^{s - lse} (a sink's share is in lse, so Σ p < 1 with a sink), sigmoid p = σ(s + bias),
// relu p = relu(s) / kept keys (the kept count comes from a small mask-only kernel first).
// With p absolute, every statistic is a plain sum over keys (entropy −Σ p ln p with
// ln p = s − lse for softmax) plus a top-1 by (score, lowest key); sums over key ranges add,
// so a row's keys can be split over several CTAs whose partial sums meet in a float workspace
// through atomics — a decode step (T = 1, 32k keys) is spread over the whole GPU.
//
// The stats kernel has the general kernel's shape (attention_general.cuh): one CTA = 8 warps
// over the (t, h) rows of one (batch, kv head, 64-query block), here also one of `splits` key
// ranges of the block map; K tiles are converted to f32 in shared memory and each score is the
// general kernel's own final_score(), so for f32 inputs the statistics see the scores the
// general kernel normalised. Per row a lane keeps its keys' partial mass, entropy, Σ p², best
// score; chosen keys / offsets / segments / distance bins go to a shared per-row table; column
// sums to a shared (head, key) table flushed to the f32 output with atomics after each tile
// (so they are f32-accumulated, in no fixed order). A finalize kernel turns the workspace into
// the caller's outputs for the call's heads only.
//
// Tensor cores: for bf16/f16 inputs with D ∈ {64, 128, 256} (unless ATTNLAB_STATS_KERNEL=fma)
// the CTA's dot products come from mma.sync.m16n8k16 (f32 accumulate) instead of f32 FMAs:
// the f32 tiles in shared memory hold the inputs' values exactly, so each warp packs its Q
// fragments once and its K fragments per tile back to bf16/f16 (lossless) and writes its
// (16 rows × 8·n keys) of the CTA's (rows × 64 keys) dot products to a shared score table;
// every row's warp then reads its scores from there and the rest of the pass is unchanged
// (final_score's scale, modifiers and masks per element, the same sums).
#include "kernels/cuda/attention_general.cuh"
#include "kernels/cuda/cuda_util.cuh"

#include <attnlab/attention.h>

#include <algorithm>
#include <climits>
#include <cstdlib>
#include <string_view>

namespace attnlab::cuda {

// Per-row workspace layout: [0] mass, [1] entropy, [2] Σ p², then the chosen entries.
inline constexpr int kRowMass = 0, kRowEntropy = 1, kRowSumSq = 2, kRowFirstChosen = 3;

struct StatsDevice {
    int64_t n_keys = 0, n_offsets = 0, n_segments = 0, n_bins = 0;  // the chosen widths the plan was built for
    int64_t width = kRowFirstChosen;                                 // floats per workspace row
    DeviceBuffer<long long> keys, offsets;  // (K), (R)
    DeviceBuffer<int32_t> segments;         // (S) statistics' segment ids, or empty
    DeviceBuffer<float> rows;               // (B, T, H, width) partial sums
    DeviceBuffer<unsigned long long> top;   // (B, T, H) max of (ordered score << 32 | ~key), 0: nothing
    DeviceBuffer<float> lse;                // (B, T, H) when the caller passed no lse
    DeviceBuffer<float> kept;               // (T) kept keys per query (relu)
    int splits = 1;
    general::RowSplit split;            // rows per warp and row chunks (as the general kernel)
    bool tensor_cores = false;          // bf16/f16 inputs take the mma.sync kernel (stats_tensor_cores)
};

bool stats_tensor_cores(int64_t head_dim) {
    const char* env = std::getenv("ATTNLAB_STATS_KERNEL");
    const std::string_view choice = env ? env : "mma";
    ATTNLAB_CHECK(choice == "mma" || choice == "fma", InvalidArgument,
                  "[cuda] ATTNLAB_STATS_KERNEL is \"{}\", expected \"mma\" (tensor cores, the default) or \"fma\"", choice);
    return choice == "mma" && (head_dim == 64 || head_dim == 128 || head_dim == 256);
}

namespace {

using namespace general;

// What the stats kernel reads and writes (device pointers), by value.
struct StatsArgs {
    float* rows = nullptr;                // (B, T, H, width)
    unsigned long long* top = nullptr;    // (B, T, H)
    const float* kept = nullptr;          // (T) relu: kept keys per query
    const long long* keys = nullptr;      // (n_keys)
    const long long* offsets = nullptr;   // (n_offsets)
    const int32_t* segments = nullptr;    // (S)
    int n_keys = 0, n_offsets = 0, n_segments = 0, n_bins = 0, n_chosen = 0, width = 0;
    float* column_sum = nullptr;          // (B, H, S) or null
    int splits = 1;
};

// The caller's outputs (AttentionStats without its vectors), by value.
struct StatsOutputs {
    float *mass, *entropy, *sum_sq, *top_prob, *key_mass, *offset_mass, *segment_mass, *distance_mass;
    int64_t* top_key;
};

__device__ __forceinline__ int distance_bin(int d) { return d < 0 ? 0 : 1 + bit_length(d); }

// Floats ordered as unsigned integers (for the 64-bit atomicMax of the top-1).
__device__ __forceinline__ uint32_t ordered_bits(float x) {
    const uint32_t u = __float_as_uint(x);
    return u & 0x80000000u ? ~u : u | 0x80000000u;
}
__device__ __forceinline__ float from_ordered_bits(uint32_t u) {
    return __uint_as_float(u & 0x80000000u ? u & 0x7fffffffu : ~u);
}

// acc[slot] += v over the warp (every lane calls it). Keys of one tile mostly share their
// segment or distance bin: then one warp sum and one add instead of 32 contended atomics.
__device__ __forceinline__ void add_to_slot(float* acc, int slot, float v) {
    const int first = __shfl_sync(0xffffffffu, slot, 0);
    if (__all_sync(0xffffffffu, slot == first)) {
        const float sum = warp_sum(v);
        if ((threadIdx.x & 31) == 0 && sum != 0.0f) atomicAdd(acc + first, sum);
    } else if (v != 0.0f) {
        atomicAdd(acc + slot, v);
    }
}

// Row stride of the mma kernel's score table: 8 floats past kN, so the float2 stores of a
// fragment's 4 rows × 8 columns (one 16-lane phase) fall on 32 different banks.
inline constexpr int kScoreStride = kN + 8;

// Shared memory of a stats CTA with R rows per warp: Q rows, the K tile (f32), the chosen
// table [kRows][n_chosen], the column table [kRows][kN] and, for tensor cores, the score
// table [kRows][kScoreStride].
__host__ __device__ constexpr size_t stats_smem_bytes(int D, int n_chosen, int R, bool tensor_cores) {
    return sizeof(float) * (size_t(kWarps) * R * (D + n_chosen + kN + (tensor_cores ? kScoreStride : 0)) +
                            size_t(kN) * k_row_stride(D));
}

// The tensor-core dot products of a CTA with kRows rows: kMTiles m16 tiles × 8 n8 tiles of
// keys, kMTiles of them per warp (warp w: m tile w % kMTiles, n tiles from w / kMTiles · kMTiles).
template <int kRows>
struct MmaTiles {
    static constexpr int kMTiles = (kRows + 15) / 16;
    static_assert(kMTiles * 8 % kWarps == 0 && kMTiles <= 2, "8 n8 tiles × kMTiles over the warps");
    int m_row, n_first;  // this lane's first fragment row, the warp's first n8 tile
    __device__ explicit MmaTiles(int warp, int lane)
        : m_row(warp % kMTiles * 16 + lane / 4), n_first(warp / kMTiles * kMTiles) {}
};

// The CTA's dot products of the Q rows in sQ ([kRows][kDim] f32) with the K tile in sK
// ([kN][ks] f32) into sScore ([kRows][kScoreStride]): each warp its kMTiles n8 tiles of its m16
// tile. The f32 tiles hold bf16/f16 values, so packing them back into fragments is exact. Q
// rows past n_rows repeat the last row; rows past kRows (R = 1: 8 rows) are not stored. (The
// Q fragments are re-read per tile: held in registers over the tiles they spill at D = 128.)
template <typename Elem, int kDim, int kRows>
__device__ __forceinline__ void tile_dots_mma(float* sScore, const float* sQ, const float* sK, int ks,
                                              const MmaTiles<kRows>& t, int lane, int n_rows) {
    constexpr int kMTiles = MmaTiles<kRows>::kMTiles;
    const float* q0 = sQ + min(t.m_row, n_rows - 1) * kDim + 2 * (lane % 4);
    const float* q1 = sQ + min(t.m_row + 8, n_rows - 1) * kDim + 2 * (lane % 4);
    float acc[kMTiles][4];
#pragma unroll
    for (int i = 0; i < kMTiles; ++i) acc[i][0] = acc[i][1] = acc[i][2] = acc[i][3] = 0.0f;
#pragma unroll
    for (int step = 0; step < kDim / 16; ++step) {
        // A fragment (row-major 16 × 16): rows m_row, m_row + 8; dims 2·(lane % 4) (+1, +8, +9).
        const int d = step * 16;
        const float2 a0 = *reinterpret_cast<const float2*>(q0 + d), a1 = *reinterpret_cast<const float2*>(q1 + d);
        const float2 a2 = *reinterpret_cast<const float2*>(q0 + d + 8), a3 = *reinterpret_cast<const float2*>(q1 + d + 8);
        const uint32_t qa[4] = {pack2<Elem>(a0.x, a0.y), pack2<Elem>(a1.x, a1.y), pack2<Elem>(a2.x, a2.y),
                                pack2<Elem>(a3.x, a3.y)};
#pragma unroll
        for (int i = 0; i < kMTiles; ++i) {
            // B fragment (col-major 16 × 8 = K rows): key n8·8 + lane / 4, dims 2·(lane % 4) (+1, +8, +9).
            const float* kr = sK + ((t.n_first + i) * 8 + lane / 4) * ks + step * 16 + 2 * (lane % 4);
            mma16816<Elem>(acc[i], qa, pack2<Elem>(kr[0], kr[1]), pack2<Elem>(kr[8], kr[9]));
        }
    }
#pragma unroll
    for (int i = 0; i < kMTiles; ++i) {
        float* out = sScore + (t.n_first + i) * 8 + 2 * (lane % 4);
        if (t.m_row < kRows) *reinterpret_cast<float2*>(out + t.m_row * kScoreStride) = make_float2(acc[i][0], acc[i][1]);
        if (t.m_row + 8 < kRows)
            *reinterpret_cast<float2*>(out + (t.m_row + 8) * kScoreStride) = make_float2(acc[i][2], acc[i][3]);
    }
}

// The K tile of the mma kernel: kN rows of kDim bf16/f16 values (row stride `stride`, 16-byte
// aligned) from row `row0` as f32 into sK ([kN][ks]); rows >= limit are zeros. Every thread
// issues all its 16-byte loads before its first store: load_rows' scalar loop keeps each load
// behind the previous store (the compiler cannot tell global from shared there), one L2 latency
// per element, which made the K load the pass's cost (T = S = 4096: ~10.7 ms with either QKᵀ).
// Lanes run over rows (row = idx % kN), so with the odd stride ks their stores hit 32 banks.
template <typename Elem, int kDim>
__device__ __forceinline__ void load_k_tile(float* sK, int ks, const Elem* base, int64_t stride, int row0, int limit) {
    constexpr int kChunks = kN * kDim / 8, kPerThread = kChunks / kThreads;  // 8 values per 16-byte chunk
    static_assert(kChunks % kThreads == 0, "whole chunks per thread");
    uint4 raw[kPerThread];
#pragma unroll
    for (int i = 0; i < kPerThread; ++i) {
        const int idx = int(threadIdx.x) + i * kThreads, r = idx % kN, c = idx / kN;
        raw[i] = row0 + r < limit ? __ldg(reinterpret_cast<const uint4*>(base + int64_t(row0 + r) * stride + c * 8))
                                  : make_uint4(0u, 0u, 0u, 0u);
    }
#pragma unroll
    for (int i = 0; i < kPerThread; ++i) {
        const int idx = int(threadIdx.x) + i * kThreads, r = idx % kN, c = idx / kN;
        float* dst = sK + r * ks + c * 8;
        const uint32_t words[4] = {raw[i].x, raw[i].y, raw[i].z, raw[i].w};
#pragma unroll
        for (int w = 0; w < 4; ++w) {
            const float2 v = unpack2<Elem>(words[w]);
            dst[2 * w] = v.x, dst[2 * w + 1] = v.y;
        }
    }
}

// kMmaDim: 0 = f32 FMAs (any D), else the tensor-core dot products for D = kMmaDim (bf16/f16).
template <typename Elem, int R, int kMmaDim>
__global__ void __launch_bounds__(kThreads) attention_stats_kernel(const AttentionParams p, const gpu::Spec spec,
                                                                   const StatsArgs a, int chunks) {
    extern __shared__ __align__(16) float smem[];  // sQ first: float4 reads of its rows
    const int D = kMmaDim ? kMmaDim : p.D, ks = k_row_stride(D);
    constexpr int kRows = kWarps * R;
    float* sQ = smem;                      // [kRows][D]
    float* sK = sQ + kRows * D;            // [kN][ks]
    float* sAcc = sK + kN * ks;            // [kRows][n_chosen]
    float* sCol = sAcc + kRows * a.n_chosen;  // [kRows][kN]: per head slot, this tile's Σ_rows p
    float* sScore = sCol + kRows * kN;     // [kRows][kScoreStride] (tensor cores): this tile's q·k (8-byte aligned: all sizes even)

    const int qb = p.order[blockIdx.x / a.splits], split = int(blockIdx.x) % a.splits;
    const int b = blockIdx.z;
    const CtaRows rows(p, qb, int(blockIdx.y) % chunks, int(blockIdx.y) / chunks, kRows);
    const int n_rows = rows.n_rows;
    if (n_rows <= 0) return;  // whole CTA
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int my_first = warp * R;
    const bool active = my_first < n_rows;  // warp-uniform
    // Column slot of a row: its head's index among the CTA's heads (rows run t-major, h-minor,
    // so a CTA's rows touch at most min(n_h, kRows) heads, starting at head index row0 % n_h).
    const int slot_base = rows.row0 % rows.n_h;
    const int n_slots = min(rows.n_h, kRows);

    load_query_rows<Elem>(sQ, p, b, rows);
    for (int idx = threadIdx.x; idx < kRows * (a.n_chosen + kN); idx += kThreads) sAcc[idx] = 0.0f;
    __syncthreads();  // (a split with no kept block still reads its zeroed table at the end)
    const MmaTiles<kRows> mma_tiles(warp, lane);

    const Elem* k = static_cast<const Elem*>(p.k) + b * p.k_bstride + int64_t(rows.hk) * D;
    const bool softmax = spec.normalizer == gpu::NormKind::Softmax;
    const bool sigmoid = spec.normalizer == gpu::NormKind::Sigmoid;
    int pos[R], slot[R];
    bool valid[R];
    float slope[R], norm[R];  // norm: softmax the row's lse, relu 1 / kept keys
    float mass[R], entropy[R], sum_sq[R], top_score[R];
    int top_key[R];
#pragma unroll
    for (int r = 0; r < R; ++r) {
        const int t = rows.row_t(my_first + r), h = rows.row_h(my_first + r);
        valid[r] = my_first + r < n_rows;
        pos[r] = p.positions[t];
        slope[r] = alibi_slope(h, spec.pow2_heads);
        slot[r] = (h - rows.h_first - slot_base + rows.n_h) % rows.n_h;
        norm[r] = softmax ? p.lse[(int64_t(b) * p.T + t) * p.H + h] : (sigmoid ? 0.0f : 1.0f / fmaxf(a.kept[t], 1.0f));
        mass[r] = entropy[r] = sum_sq[r] = 0.0f;
        top_score[r] = -INFINITY, top_key[r] = INT_MAX;
    }
    const int seg_offset = a.n_keys + a.n_offsets, bin_offset = seg_offset + a.n_segments;

    // This split's share of the query block's kept key blocks.
    const int e_first = p.offsets[qb], n_e = p.offsets[qb + 1] - e_first;
    const int per_split = (n_e + a.splits - 1) / a.splits;
    const int e0 = e_first + min(n_e, split * per_split), e1 = e_first + min(n_e, split * per_split + per_split);
    for (int e = e0; e < e1; ++e) {
        const int entry = p.entries[e];
        const int kb = entry & ~gpu::kPartialBit;
        const bool partial = entry & gpu::kPartialBit;
        __syncthreads();  // the previous tile's K and column table are done with
        if constexpr (kMmaDim != 0) load_k_tile<Elem, kMmaDim>(sK, ks, k, p.k_stride, kb * kN, p.S);
        else load_rows(sK, ks, k, p.k_stride, kb * kN, kN, p.S, D);
        __syncthreads();
        if constexpr (kMmaDim != 0) {
            tile_dots_mma<Elem, kMmaDim>(sScore, sQ, sK, ks, mma_tiles, lane, n_rows);
            __syncthreads();
        }
        if (active) {
            float s[R][2];
            if constexpr (kMmaDim != 0) {
#pragma unroll
                for (int r = 0; r < R; ++r)
                    s[r][0] = sScore[(my_first + r) * kScoreStride + lane], s[r][1] = sScore[(my_first + r) * kScoreStride + lane + 32];
            } else {
                tile_dots<R>(s, sQ, sK, D, ks, lane, my_first, n_rows);
            }
#pragma unroll
            for (int r = 0; r < R; ++r) {
                float* acc = sAcc + (my_first + r) * a.n_chosen;
                float pr[2];
#pragma unroll
                for (int c = 0; c < 2; ++c) {
                    const int j = kb * kN + lane + 32 * c;
                    bool keep;
                    const float x = final_score(p, spec, s[r][c], partial, pos[r], j, slope[r], &keep);
                    keep = keep && valid[r];
                    float ln_p = 0.0f;
                    pr[c] = 0.0f;
                    if (keep) {
                        if (softmax) pr[c] = expf(x - norm[r]), ln_p = x - norm[r];
                        else if (sigmoid) pr[c] = 1.0f / (1.0f + expf(-(x + spec.norm_bias)));
                        else pr[c] = fmaxf(x, 0.0f) * norm[r];
                        if (!softmax && pr[c] > 0.0f) ln_p = logf(pr[c]);
                        // Keys arrive in ascending order per lane: a strict > keeps the lowest on ties.
                        if (x > top_score[r]) top_score[r] = x, top_key[r] = j;
                    }
                    mass[r] += pr[c];
                    entropy[r] -= pr[c] * ln_p;
                    sum_sq[r] += pr[c] * pr[c];
                    if (pr[c] > 0.0f) {
                        for (int q = 0; q < a.n_keys; ++q)
                            if (a.keys[q] == j) atomicAdd(acc + q, pr[c]);
                        for (int q = 0; q < a.n_offsets; ++q)
                            if (int64_t(pos[r]) - a.offsets[q] == j) atomicAdd(acc + a.n_keys + q, pr[c]);
                        if (a.column_sum) atomicAdd(sCol + slot[r] * kN + lane + 32 * c, pr[c]);
                    }
                }
#pragma unroll
                for (int c = 0; c < 2; ++c) {
                    const int j = kb * kN + lane + 32 * c;
                    if (a.n_segments) add_to_slot(acc + seg_offset, a.segments[min(j, p.S - 1)], pr[c]);
                    if (a.n_bins) add_to_slot(acc + bin_offset, min(distance_bin(pos[r] - j), a.n_bins - 1), pr[c]);
                }
            }
        }
        if (a.column_sum) {
            __syncthreads();
            for (int idx = threadIdx.x; idx < n_slots * kN; idx += kThreads) {
                const float v = sCol[idx];
                const int j = kb * kN + idx % kN;
                if (v == 0.0f || j >= p.S) continue;
                const int h = rows.h_first + (slot_base + idx / kN) % rows.n_h;
                atomicAdd(a.column_sum + (int64_t(b) * p.H + h) * p.S + j, v);
                sCol[idx] = 0.0f;
            }
        }
    }
    if (!active) return;
    __syncwarp();  // the warp's chosen-table adds are visible to every lane
#pragma unroll
    for (int r = 0; r < R; ++r) {
        const float row_mass = warp_sum(mass[r]), row_entropy = warp_sum(entropy[r]), row_sq = warp_sum(sum_sq[r]);
        unsigned long long best = top_key[r] == INT_MAX ? 0ull
                                                        : (static_cast<unsigned long long>(ordered_bits(top_score[r])) << 32) |
                                                              (0xffffffffu - static_cast<uint32_t>(top_key[r]));
#pragma unroll
        for (int off = 16; off > 0; off >>= 1) {
            const unsigned long long other = __shfl_xor_sync(0xffffffffu, best, off);
            best = other > best ? other : best;
        }
        if (!valid[r]) continue;
        const int t = rows.row_t(my_first + r), h = rows.row_h(my_first + r);
        const int64_t row = (int64_t(b) * p.T + t) * p.H + h;
        float* ws = a.rows + row * a.width;
        if (lane == 0) {
            if (row_mass != 0.0f) atomicAdd(ws + kRowMass, row_mass);
            if (row_entropy != 0.0f) atomicAdd(ws + kRowEntropy, row_entropy);
            if (row_sq != 0.0f) atomicAdd(ws + kRowSumSq, row_sq);
            if (best) atomicMax(a.top + row, best);
        }
        const float* acc = sAcc + (my_first + r) * a.n_chosen;
        for (int q = lane; q < a.n_chosen; q += 32)
            if (acc[q] != 0.0f) atomicAdd(ws + kRowFirstChosen + q, acc[q]);
    }
}

// relu: the kept keys of each query (masks only), one warp per query.
__global__ void __launch_bounds__(kThreads) kept_count_kernel(const AttentionParams p, const gpu::Spec spec, float* kept) {
    const int t = blockIdx.x * kWarps + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (t >= p.T) return;
    const int qb = t / gpu::kBlockM, i = p.positions[t];
    float count = 0.0f;
    for (int e = p.offsets[qb]; e < p.offsets[qb + 1]; ++e) {
        const int kb = p.entries[e] & ~gpu::kPartialBit;
        const bool partial = p.entries[e] & gpu::kPartialBit;
        for (int c = 0; c < 2; ++c) {
            const int j = kb * kN + lane + 32 * c;
            count += !partial || (j < p.S && keep_all(spec, i, j, p.segments, p.keep_tables));
        }
    }
    count = warp_sum(count);
    if (lane == 0) kept[t] = count;
}

// The workspace rows of the call's heads -> the caller's outputs.
__global__ void finalize_kernel(const AttentionParams p, const gpu::Spec spec, const StatsArgs a, const StatsOutputs o) {
    const int n_h = p.head_end - p.head_begin;
    const int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
    if (idx >= int64_t(p.B) * p.T * n_h) return;
    const int h = p.head_begin + int(idx % n_h), t = int(idx / n_h % p.T), b = int(idx / n_h / p.T);
    const int64_t row = (int64_t(b) * p.T + t) * p.H + h;
    const float* ws = a.rows + row * a.width;
    if (o.mass) o.mass[row] = ws[kRowMass];
    if (o.entropy) o.entropy[row] = ws[kRowEntropy];
    if (o.sum_sq) o.sum_sq[row] = ws[kRowSumSq];
    if (o.top_key || o.top_prob) {
        const unsigned long long best = a.top[row];
        int64_t key = -1;
        float prob = 0.0f;
        if (best) {
            const float score = from_ordered_bits(uint32_t(best >> 32));
            key = int64_t(0xffffffffu - uint32_t(best & 0xffffffffu));
            if (spec.normalizer == gpu::NormKind::Softmax) prob = expf(score - p.lse[row]);
            else if (spec.normalizer == gpu::NormKind::Sigmoid) prob = 1.0f / (1.0f + expf(-(score + spec.norm_bias)));
            else prob = fmaxf(score, 0.0f) / fmaxf(a.kept[t], 1.0f);
            if (!(prob > 0.0f)) key = -1, prob = 0.0f;  // (relu rows whose scores are all <= 0 put no mass anywhere)
        }
        if (o.top_key) o.top_key[row] = key;
        if (o.top_prob) o.top_prob[row] = prob;
    }
    const float* chosen = ws + kRowFirstChosen;
    auto write = [&](float* dst, int count) {
        if (dst)
            for (int q = 0; q < count; ++q) dst[row * count + q] = chosen[q];
        chosen += count;
    };
    write(o.key_mass, a.n_keys);
    write(o.offset_mass, a.n_offsets);
    write(o.segment_mass, a.n_segments);
    write(o.distance_mass, a.n_bins);
}

template <typename Elem, int R, int kMmaDim>
void launch_stats_rows(const AttentionParams& p, const gpu::Spec& spec, const StatsArgs& a, int64_t n_qblocks,
                       int n_kv, int chunks, cudaStream_t stream) {
    const size_t smem = stats_smem_bytes(p.D, a.n_chosen, R, kMmaDim != 0);
    ATTNLAB_CUDA_CHECK(cudaFuncSetAttribute(attention_stats_kernel<Elem, R, kMmaDim>,
                                            cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)));
    const dim3 grid(unsigned(n_qblocks * a.splits), unsigned(n_kv * chunks), unsigned(p.B));
    attention_stats_kernel<Elem, R, kMmaDim><<<grid, kThreads, smem, stream>>>(p, spec, a, chunks);
    ATTNLAB_CUDA_CHECK_LAUNCH("attention_stats_kernel");
}

// The kernel for the plan's rows per warp (R).
template <typename Elem, int kMmaDim>
void launch_stats_kernel(const AttentionParams& p, const gpu::Spec& spec, const StatsArgs& a, int64_t n_qblocks,
                         int n_kv, const RowSplit& split, cudaStream_t stream) {
    if (split.R == 1) launch_stats_rows<Elem, 1, kMmaDim>(p, spec, a, n_qblocks, n_kv, split.chunks, stream);
    else if (split.R == 2) launch_stats_rows<Elem, 2, kMmaDim>(p, spec, a, n_qblocks, n_kv, split.chunks, stream);
    else launch_stats_rows<Elem, 4, kMmaDim>(p, spec, a, n_qblocks, n_kv, split.chunks, stream);
}

}  // namespace

std::shared_ptr<StatsDevice> make_stats_device(const gpu::HostPlan& h, const AttentionStats& st) {
    auto dev = std::make_shared<StatsDevice>();
    dev->n_keys = st.key_mass ? int64_t(st.keys.size()) : 0;
    dev->n_offsets = st.offset_mass ? int64_t(st.offsets.size()) : 0;
    dev->n_segments = st.segment_mass ? st.n_segments : 0;
    dev->n_bins = st.distance_mass ? st.n_distance_bins : 0;
    const int64_t n_chosen = dev->n_keys + dev->n_offsets + dev->n_segments + dev->n_bins;
    dev->width = kRowFirstChosen + n_chosen;
    if (h.T == 0) return dev;

    const int64_t group = h.H / h.Hkv;
    dev->split = row_split(h.T, group, h.head_end - h.head_begin);
    int device = 0, sms = 0, smem_limit = 0;
    ATTNLAB_CUDA_CHECK(cudaGetDevice(&device));
    ATTNLAB_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
    ATTNLAB_CUDA_CHECK(cudaDeviceGetAttribute(&smem_limit, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
    // (used for bf16/f16 inputs only) Decode steps keep the fma path: with a few rows per CTA
    // the score table costs more than it saves (S = 32k: 0.148 ms with mma, 0.131 ms with fma).
    dev->tensor_cores = !h.decode && stats_tensor_cores(h.D);
    const size_t smem = stats_smem_bytes(int(h.D), int(n_chosen), dev->split.R, dev->tensor_cores);
    ATTNLAB_CHECK(smem <= size_t(smem_limit), NotSupported,
                  "[cuda] statistics with {} chosen keys + offsets + segments + distance bins need {} bytes of shared "
                  "memory, more than the GPU's {} (use the CPU operator or fewer segments)",
                  n_chosen, smem, smem_limit);
    // Key splits: enough CTAs for a few waves, at most one kept block each.
    const int64_t n_kv = (h.head_end - 1) / group - h.head_begin / group + 1;
    const int64_t ctas = h.n_qblocks * n_kv * dev->split.chunks * h.B;
    int64_t most_kept = 1;
    for (int64_t qb = 0; qb < h.n_qblocks; ++qb) most_kept = std::max<int64_t>(most_kept, h.offsets[qb + 1] - h.offsets[qb]);
    dev->splits = int(std::clamp<int64_t>((int64_t(4) * sms + ctas - 1) / ctas, 1, most_kept));

    auto upload64 = [](const std::vector<int64_t>& v, int64_t n) {
        DeviceBuffer<long long> buf(size_t(std::max<int64_t>(n, 1)));
        const std::vector<long long> host(v.begin(), v.begin() + n);
        buf.upload(host.data(), host.size());
        return buf;
    };
    dev->keys = upload64(st.keys, dev->n_keys);
    dev->offsets = upload64(st.offsets, dev->n_offsets);
    if (dev->n_segments) {
        dev->segments = DeviceBuffer<int32_t>(size_t(h.S));
        dev->segments.upload(st.segments, size_t(h.S));
    }
    const size_t rows = size_t(h.B * h.T * h.H);
    dev->rows = DeviceBuffer<float>(rows * size_t(dev->width));
    dev->top = DeviceBuffer<unsigned long long>(rows);
    dev->lse = DeviceBuffer<float>(rows);
    if (h.spec.normalizer == gpu::NormKind::Relu) dev->kept = DeviceBuffer<float>(size_t(h.T));
    return dev;
}

float* stats_lse_workspace(const StatsDevice& dev) { return dev.lse.get(); }

template <typename Elem>
void launch_stats(const StatsDevice& dev, const AttentionParams& p, const gpu::Spec& spec, int64_t n_qblocks,
                  const AttentionStats& st, cudaStream_t stream) {
    ATTNLAB_CHECK((st.key_mass ? int64_t(st.keys.size()) : 0) == dev.n_keys &&
                      (st.offset_mass ? int64_t(st.offsets.size()) : 0) == dev.n_offsets &&
                      (st.segment_mass ? st.n_segments : 0) == dev.n_segments &&
                      (st.distance_mass ? st.n_distance_bins : 0) == dev.n_bins,
                  InvalidArgument,
                  "[cuda] run(): the statistics' chosen keys, offsets, segments or distance bins differ from the plan's");
    if (p.T == 0) return;
    const int n_h = p.head_end - p.head_begin;
    StatsArgs a;
    a.rows = dev.rows.get(), a.top = dev.top.get(), a.kept = dev.kept.get();
    a.keys = dev.keys.get(), a.offsets = dev.offsets.get(), a.segments = dev.segments.get();
    a.n_keys = int(dev.n_keys), a.n_offsets = int(dev.n_offsets), a.n_segments = int(dev.n_segments);
    a.n_bins = int(dev.n_bins), a.width = int(dev.width), a.n_chosen = a.width - kRowFirstChosen;
    a.column_sum = st.column_sum;
    a.splits = dev.splits;

    ATTNLAB_CUDA_CHECK(cudaMemsetAsync(a.rows, 0, dev.rows.size() * sizeof(float), stream));
    ATTNLAB_CUDA_CHECK(cudaMemsetAsync(a.top, 0, dev.top.size() * sizeof(unsigned long long), stream));
    if (a.column_sum)  // the call's heads of every batch: (B) runs of n_h·S floats, H·S apart
        ATTNLAB_CUDA_CHECK(cudaMemset2DAsync(a.column_sum + int64_t(p.head_begin) * p.S, size_t(p.H) * p.S * sizeof(float),
                                             0, size_t(n_h) * p.S * sizeof(float), size_t(p.B), stream));
    if (spec.normalizer == gpu::NormKind::Relu) {
        kept_count_kernel<<<unsigned((p.T + kWarps - 1) / kWarps), kThreads, 0, stream>>>(p, spec, dev.kept.get());
        ATTNLAB_CUDA_CHECK_LAUNCH("kept_count_kernel");
    }
    const int n_kv = (p.head_end - 1) / p.group - p.head_begin / p.group + 1;
    const int chunks = dev.split.chunks;
    ATTNLAB_CHECK(int64_t(n_kv) * chunks <= 65535 && n_qblocks * dev.splits < (int64_t(1) << 31), NotSupported,
                  "[cuda] {} kv heads × {} row chunks exceed the statistics kernel's grid", n_kv, chunks);
    bool launched = false;
    if constexpr (!std::is_same_v<Elem, float>) {
        // The mma kernel reads K in 16-byte chunks: an unaligned K (a view at an odd offset) takes the FMA pass.
        const bool k_aligned = reinterpret_cast<uintptr_t>(p.k) % 16 == 0 && p.k_stride % 8 == 0 && p.k_bstride % 8 == 0;
        if (dev.tensor_cores && k_aligned) {
            launched = true;
            if (p.D == 64) launch_stats_kernel<Elem, 64>(p, spec, a, n_qblocks, n_kv, dev.split, stream);
            else if (p.D == 128) launch_stats_kernel<Elem, 128>(p, spec, a, n_qblocks, n_kv, dev.split, stream);
            else launch_stats_kernel<Elem, 256>(p, spec, a, n_qblocks, n_kv, dev.split, stream);
        }
    }
    if (!launched) launch_stats_kernel<Elem, 0>(p, spec, a, n_qblocks, n_kv, dev.split, stream);

    const StatsOutputs o{st.mass,     st.entropy,     st.sum_sq,       st.top_prob, st.key_mass,
                         st.offset_mass, st.segment_mass, st.distance_mass, st.top_key};
    const int64_t total = int64_t(p.B) * p.T * n_h;
    finalize_kernel<<<unsigned((total + 255) / 256), 256, 0, stream>>>(p, spec, a, o);
    ATTNLAB_CUDA_CHECK_LAUNCH("attention_stats_finalize_kernel");
}

template void launch_stats<float>(const StatsDevice&, const AttentionParams&, const gpu::Spec&, int64_t,
                                  const AttentionStats&, cudaStream_t);
template void launch_stats<__nv_bfloat16>(const StatsDevice&, const AttentionParams&, const gpu::Spec&, int64_t,
                                          const AttentionStats&, cudaStream_t);
template void launch_stats<__half>(const StatsDevice&, const AttentionParams&, const gpu::Spec&, int64_t,
                                   const AttentionStats&, cudaStream_t);

}  // namespace attnlab::cuda
