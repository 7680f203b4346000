// What the general attention kernel (attention_general.cu) and the statistics kernel
// (attention_stats.cu) share: the CTA shape (8 warps over the (t, h) rows of one batch, kv
// head and 64-query block), the f32 shared-memory tiles, and the score of one (row, key) —
// dot product, scale, modifiers, masks — so the statistics see exactly the scores the general
// kernel normalises.
#pragma once

#include "kernels/cuda/attention_common.cuh"

#include <algorithm>

namespace attnlab::cuda::general {

inline constexpr int kWarps = 8;
inline constexpr int kThreads = kWarps * 32;
inline constexpr int kN = gpu::kBlockN;  // keys per tile
inline constexpr int kMaxDim = gpu::kMaxHeadDim;
inline constexpr int kMaxDimChunks = kMaxDim / 32;  // value dims per lane at Dv = 256

template <typename Elem>
__device__ __forceinline__ float to_float(Elem x) {
    if constexpr (std::is_same_v<Elem, float>) return x;
    else if constexpr (std::is_same_v<Elem, __nv_bfloat16>) return __bfloat162float(x);
    else return __half2float(x);
}

__device__ __forceinline__ float warp_sum(float x) {
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) x += __shfl_xor_sync(0xffffffffu, x, off);
    return x;
}
__device__ __forceinline__ float warp_max(float x) {
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, off));
    return x;
}

// Odd K row stride in shared memory: 32 lanes reading 32 keys at one dim hit 32 banks.
__host__ __device__ constexpr int k_row_stride(int D) { return D | 1; }

__device__ __forceinline__ bool keep_all(const gpu::Spec& spec, int i, int j, const int32_t* seg, const uint8_t* tables) {
    for (int k = 0; k < spec.n_masks; ++k)
        if (!keep_one(spec.masks[k], i, j, seg, tables)) return false;
    return true;
}

// Rows of f32 copies of `rows` rows of a (rows, dims) matrix with `stride` elements per row,
// starting at row `row0`, into shared memory with `dst_stride` floats per row; rows >= limit
// are zeros (keys past the end: their V must be 0, never NaN·0).
template <typename Elem>
__device__ __forceinline__ void load_rows(float* dst, int dst_stride, const Elem* base, int64_t stride, int row0,
                                          int rows, int limit, int dims) {
    for (int idx = threadIdx.x; idx < rows * dims; idx += kThreads) {
        const int r = idx / dims, d = idx - r * dims;
        dst[r * dst_stride + d] = row0 + r < limit ? to_float(base[int64_t(row0 + r) * stride + d]) : 0.0f;
    }
}

// How the rows of a (query block, kv head) — its queries × the group's heads in the call's
// range — are spread over CTAs: each warp owns R ∈ {1, 2, 4} rows (R from the rows there are,
// so a decode step with 8 rows gives every warp one row), `chunks` CTAs of 8·R rows each.
struct RowSplit {
    int R = 1, chunks = 1;
};
inline RowSplit row_split(int64_t T, int64_t group, int64_t n_heads) {
    const int64_t rows = std::min<int64_t>(gpu::kBlockM, T) * std::min(group, n_heads);
    RowSplit s;
    s.R = rows <= kWarps ? 1 : rows <= 2 * kWarps ? 2 : 4;
    s.chunks = int((rows + kWarps * s.R - 1) / (kWarps * s.R));
    return s;
}
inline RowSplit row_split(const AttentionParams& p) { return row_split(p.T, p.group, p.head_end - p.head_begin); }

// The rows of one CTA: row r (0 .. n_rows-1) is query t = row_t(r) of head h = row_h(r). A
// warp's rows past n_rows repeat the last row (so warps stay converged) and are not written.
struct CtaRows {
    int hk, h_first, n_h, t0, row0, n_rows;

    __device__ CtaRows(const AttentionParams& p, int qb, int chunk, int kv_index, int rows_per_cta) {
        hk = p.head_begin / p.group + kv_index;
        h_first = max(hk * p.group, p.head_begin);
        n_h = min(hk * p.group + p.group, p.head_end) - h_first;
        t0 = qb * gpu::kBlockM;
        const int n_t = min(gpu::kBlockM, p.T - t0);
        row0 = chunk * rows_per_cta;
        n_rows = min(rows_per_cta, n_t * n_h - row0);
    }
    __device__ int row_t(int r) const { return t0 + (row0 + min(r, n_rows - 1)) / n_h; }
    __device__ int row_h(int r) const { return h_first + (row0 + min(r, n_rows - 1)) % n_h; }
};

// The CTA's query rows as f32 into sQ [n_rows][D].
template <typename Elem>
__device__ __forceinline__ void load_query_rows(float* sQ, const AttentionParams& p, int b, const CtaRows& rows) {
    const Elem* q = static_cast<const Elem*>(p.q) + b * p.q_bstride;
    for (int idx = threadIdx.x; idx < rows.n_rows * p.D; idx += kThreads) {
        const int r = idx / p.D, d = idx - r * p.D;
        sQ[r * p.D + d] = to_float(q[int64_t(rows.row_t(r)) * p.q_stride + int64_t(rows.row_h(r)) * p.D + d]);
    }
}

// q·k of keys lane and lane + 32 of the tile in sK ([kN][ks]) for the warp's R rows
// (sQ rows my_first .. my_first + R - 1, clamped to the CTA's last row): s[r][c] for key lane + 32·c.
// When D % 4 == 0 the Q rows (16-byte aligned then) are read as broadcast float4s, half the
// shared-memory load instructions of the scalar loop; the FMAs run in the same order either way
// (same results). Measured gain is small: the statistics pass at T = S = 4096, D = 128 went from
// 11.7 to 11.0 ms (H200), the general kernel's causal attention there stays at 22 ms.
template <int R>
__device__ __forceinline__ void tile_dots(float (&s)[R][2], const float* sQ, const float* sK, int D, int ks, int lane,
                                          int my_first, int n_rows) {
#pragma unroll
    for (int r = 0; r < R; ++r) s[r][0] = s[r][1] = 0.0f;
    const float* k0 = sK + lane * ks;
    const float* k1 = sK + (lane + 32) * ks;
    const float* qr[R];
#pragma unroll
    for (int r = 0; r < R; ++r) qr[r] = sQ + min(my_first + r, n_rows - 1) * D;
    auto step = [&](int d, const float (&q)[R]) {
        const float a = k0[d], c = k1[d];
#pragma unroll
        for (int r = 0; r < R; ++r) {
            s[r][0] = fmaf(q[r], a, s[r][0]);
            s[r][1] = fmaf(q[r], c, s[r][1]);
        }
    };
    if (D % 4 == 0) {
        for (int d = 0; d < D; d += 4) {
            float4 q4[R];
#pragma unroll
            for (int r = 0; r < R; ++r) q4[r] = *reinterpret_cast<const float4*>(qr[r] + d);
            float q[R];
#pragma unroll
            for (int r = 0; r < R; ++r) q[r] = q4[r].x;
            step(d, q);
#pragma unroll
            for (int r = 0; r < R; ++r) q[r] = q4[r].y;
            step(d + 1, q);
#pragma unroll
            for (int r = 0; r < R; ++r) q[r] = q4[r].z;
            step(d + 2, q);
#pragma unroll
            for (int r = 0; r < R; ++r) q[r] = q4[r].w;
            step(d + 3, q);
        }
    } else {
        for (int d = 0; d < D; ++d) {
            float q[R];
#pragma unroll
            for (int r = 0; r < R; ++r) q[r] = qr[r][d];
            step(d, q);
        }
    }
}

// The final score of key j for the row at position i from its dot product: scaled, modified
// (kept keys only) and masked (`keep`; Full tiles keep every key, Partial ones ask the masks).
__device__ __forceinline__ float final_score(const AttentionParams& p, const gpu::Spec& spec, float dot, bool partial,
                                             int i, int j, float slope, bool* keep) {
    *keep = !partial || (j < p.S && keep_all(spec, i, j, p.segments, p.keep_tables));
    float x = dot * spec.scale;
    if (spec.n_mods && *keep) x = apply_mods(spec, x, i, j, slope, p.segments);
    return x;
}

}  // namespace attnlab::cuda::general
