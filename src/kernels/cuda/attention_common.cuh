// Shared by the GPU attention kernels: the launch parameters, the mechanisms evaluated per
// element (masks on Partial tiles, score modifiers everywhere), the end of a softmax row (sinks,
// empty rows) and the PTX wrappers (mma.sync, ldmatrix, cp.async).
#pragma once

#include "attention/cuda_plan.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <memory>
#include <type_traits>

namespace attnlab {
struct AttentionStats;
}

namespace attnlab::cuda {

inline constexpr float kLog2e = 1.4426950408889634f;
inline constexpr float kLn2 = 0.6931471805599453f;

// Device pointers and sizes of one launch; strides in elements.
struct AttentionParams {
    const void* q = nullptr;  // (B, T, H, D)
    const void* k = nullptr;  // (B, S, Hkv, D)
    const void* v = nullptr;  // (B, S, Hkv, D)
    int64_t q_stride = 0, k_stride = 0, v_stride = 0;
    int64_t q_bstride = 0, k_bstride = 0, v_bstride = 0;
    float* out = nullptr;  // (B, T, H, D) f32
    int64_t out_stride = 0, out_bstride = 0;
    float* lse = nullptr;  // (B, T, H) or null
    int32_t B = 1, T = 0, S = 0, H = 0, Hkv = 0, group = 1, head_begin = 0, head_end = 0;
    const int32_t* offsets = nullptr;    // (n_qblocks + 1)
    const int32_t* entries = nullptr;    // kept key blocks | kPartialBit
    const int32_t* order = nullptr;      // (n_qblocks) launch order
    const int32_t* positions = nullptr;  // (T)
    const int32_t* segments = nullptr;   // (S) or null
    const float* sinks = nullptr;        // (H) or null
    const uint8_t* keep_tables = nullptr;  // radial_blocks' cell tables (HostPlan::keep_tables) or null
    int32_t D = 0, Dv = 0;                 // head dims (the general kernel; the others have them as templates)
    // Split-KV decode: partial results per (split, b, t, h) row, merged by the merge kernel.
    int32_t splits = 1;
    float* ws_out = nullptr;  // (splits, B, T, H, D): each split's normalised output
    float* ws_lse = nullptr;  // (splits, B, T, H): its log2-sum-exp (-inf: nothing kept)
};

// Host launchers, one per (input type, head dim D ∈ {64, 128, 256}); defined in
// attention_prefill.cu and attention_decode.cu. `Elem` is __nv_bfloat16 or __half.
template <typename Elem, int D>
void launch_prefill(const AttentionParams& p, const gpu::Spec& spec, int64_t n_qblocks, cudaStream_t stream);
template <typename Elem, int D>
void launch_decode(const AttentionParams& p, const gpu::Spec& spec, cudaStream_t stream);
// How many decode CTAs fit on one multiprocessor at once (for choosing the split count).
template <typename Elem, int D>
int decode_ctas_per_sm();
// The general kernel (attention_general.cu): any head dims, every mechanism and normalizer.
// `Elem` is float, __nv_bfloat16 or __half.
template <typename Elem>
void launch_general(const AttentionParams& p, const gpu::Spec& spec, int64_t n_qblocks, cudaStream_t stream);
// The statistics pass (attention_stats.cu), after one of the kernels above has written p.lse:
// the plan's device copy of an AttentionStats' chosen keys, offsets and segments with its
// workspaces (an lse buffer for callers that pass none: stats_lse_workspace), and the launch.
struct StatsDevice;
std::shared_ptr<StatsDevice> make_stats_device(const gpu::HostPlan& plan, const AttentionStats& stats);
float* stats_lse_workspace(const StatsDevice& dev);
// Whether a plan built now with bf16/f16 inputs of this head dim computes the statistics' dot
// products with mma.sync (D ∈ {64, 128, 256}; ATTNLAB_STATS_KERNEL=fma|mma, default mma).
bool stats_tensor_cores(int64_t head_dim);
template <typename Elem>
void launch_stats(const StatsDevice& dev, const AttentionParams& p, const gpu::Spec& spec, int64_t n_qblocks,
                  const AttentionStats& stats, cudaStream_t stream);

// ---- mechanisms, per element ------------------------------------------------------------

__device__ __forceinline__ int bit_length(long long v) { return 64 - __clzll(v); }

// Radial Attention's token-level rule, exactly as RadialRule::keep (src/attention/mechanisms/
// radial_rule.h) computes it, in the same double arithmetic so the band widths agree.
__device__ __forceinline__ bool radial_keep(int i, int j, int frame, int block, double decay) {
    const int t_i = i / frame, t_j = j / frame, dt = abs(t_i - t_j);
    if (t_j == 0 || dt <= 1) return true;
    const double w0 = ldexp(1.0, bit_length(frame) - bit_length(dt));
    if (w0 < double(block)) {
        const long long split = static_cast<long long>(floor(double(block) / w0));
        if (dt % split != 0) return false;
    }
    const long long width = static_cast<long long>(floor(fmax(w0 * decay, double(block))));
    return width >= frame - 1 || abs(i % frame - j % frame) <= width;
}

// `tables`: radial_blocks' keep tables (AttentionParams::keep_tables); only the general kernel
// gets specs with segment, radial or radial_blocks masks.
__device__ __forceinline__ bool keep_one(const gpu::Mask& m, int i, int j, const int32_t* seg,
                                         const uint8_t* tables = nullptr) {
    switch (m.kind) {
        case gpu::MaskKind::Causal: return j <= i;
        case gpu::MaskKind::Window: return abs(i - j) < m.a;
        case gpu::MaskKind::Streaming: return j < m.a || abs(i - j) < m.b;
        case gpu::MaskKind::Chunked: return i / m.a == j / m.a;  // positions are >= 0
        case gpu::MaskKind::Prefix: return j < m.a || j <= i;
        case gpu::MaskKind::Document: return seg[i] == seg[j];
        case gpu::MaskKind::Power: {
            const int qb = i / m.a, kb = j / m.a, d = qb - kb;
            return d < m.b || kb < m.c || (d >= 0 && (d & (d - 1)) == 0);
        }
        case gpu::MaskKind::Segment: return seg[j] == m.a;
        case gpu::MaskKind::Radial: return radial_keep(i, j, m.a, m.b, m.real);
        case gpu::MaskKind::RadialBlocks: return tables[m.table + int64_t(i / m.a - m.b) * m.c + j / m.a] != 0;
    }
    return true;
}

// Keys [lo, hi] (inclusive) as bits of the 64-key tile starting at j0 (bit k: key j0 + k).
__device__ __forceinline__ uint64_t key_bits(long long lo, long long hi, int j0) {
    lo = lo - j0 < 0 ? 0 : lo - j0;
    hi = hi - j0 > 63 ? 63 : hi - j0;
    if (lo > hi) return 0;
    const uint64_t upto = hi == 63 ? ~0ull : (1ull << (hi + 1)) - 1;
    return upto & (~0ull << lo);
}

// The keys of tile j0 .. j0+63 that row i keeps (every mask, and j < S), restricted to the
// columns in `cols`. Interval masks cost a few operations per row instead of a mask loop per
// element; document and power test only the requested columns.
__device__ __forceinline__ uint64_t keep_bits(const gpu::Spec& spec, int i, int j0, int S, const int32_t* seg,
                                              uint64_t cols) {
    uint64_t keep = cols & key_bits(0, S - 1, j0);
    for (int k = 0; k < spec.n_masks && keep; ++k) {
        const gpu::Mask& m = spec.masks[k];
        switch (m.kind) {
            case gpu::MaskKind::Causal: keep &= key_bits(0, i, j0); break;
            case gpu::MaskKind::Window: keep &= key_bits((long long)i - m.a + 1, (long long)i + m.a - 1, j0); break;
            case gpu::MaskKind::Streaming:
                keep &= key_bits(0, (long long)m.a - 1, j0) | key_bits((long long)i - m.b + 1, (long long)i + m.b - 1, j0);
                break;
            case gpu::MaskKind::Chunked: {
                const long long c0 = (long long)(i / m.a) * m.a;
                keep &= key_bits(c0, c0 + m.a - 1, j0);
                break;
            }
            case gpu::MaskKind::Prefix: keep &= key_bits(0, max((long long)m.a - 1, (long long)i), j0); break;
            default:  // per column: document, power
                for (uint64_t c = keep; c; c &= c - 1) {
                    const int bit = __ffsll(static_cast<long long>(c)) - 1;
                    if (!keep_one(m, i, j0 + bit, seg)) keep &= ~(1ull << bit);
                }
        }
    }
    return keep;
}

// The score modifiers in spec order on a scaled score x (natural units). `seg` (S) is read by
// boost only, which only the general kernel gets.
__device__ __forceinline__ float apply_mods(const gpu::Spec& spec, float x, int i, int j, float alibi_slope,
                                            const int32_t* seg = nullptr) {
    const float dist = static_cast<float>(abs(i - j));  // exact below 2^24
    for (int k = 0; k < spec.n_mods; ++k) {
        const gpu::Mod& m = spec.mods[k];
        switch (m.kind) {
            case gpu::ModKind::Alibi: x -= alibi_slope * dist; break;
            case gpu::ModKind::Softcap: x = m.value * tanhf(x / m.value); break;  // accurate tanh: cap·error matters
            case gpu::ModKind::Decay: x += dist * m.value; break;
            case gpu::ModKind::Temperature: x *= m.value; break;
            case gpu::ModKind::Boost:
                if (seg[j] == m.segment) x += m.value * fabsf(x);
                break;
        }
    }
    return x;
}

// ALiBi's slope of head h (the paper's rule, as the CPU mechanism computes it).
__device__ __forceinline__ float alibi_slope(int h, int pow2_heads) {
    const float p = static_cast<float>(pow2_heads);
    return h < pow2_heads ? exp2f(-8.0f * float(h + 1) / p) : exp2f(-8.0f * float(2 * (h - pow2_heads) + 1) / (2.0f * p));
}

__device__ __forceinline__ float fast_exp2(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
    return y;
}

// End of a softmax row from its running max (log2 units) and sum: the factor that turns the
// accumulated Σ p·v into out, and lse (natural). A sink logit joins the denominator. A row
// with no kept key gives factor 0 and lse -inf (also with a sink).
__device__ __forceinline__ void finish_row(float m2, float l, bool has_sink, float sink, float* factor, float* lse) {
    if (!(l > 0.0f)) {
        *factor = 0.0f;
        *lse = -INFINITY;
        return;
    }
    const float lse_keys = (m2 + __log2f(l)) * kLn2;
    if (!has_sink) {
        *factor = 1.0f / l;
        *lse = lse_keys;
        return;
    }
    const float hi = fmaxf(lse_keys, sink);
    const float total = hi + logf(expf(lse_keys - hi) + expf(sink - hi));
    *factor = expf(lse_keys - total) / l;
    *lse = total;
}

// The epilogue of the tensor-core prefill kernels: a thread holds two rows (t_first and
// t_first + 8) of an (m16n8) accumulator layout — o[nt][2r], o[nt][2r + 1] are columns
// nt·8 + quad·2 + {0, 1} of row r — and a quarter of each row's sum l (the other quarters are
// in the lanes of the same quad). Writes out (f32) and lse, sinks included.
template <int D>
__device__ __forceinline__ void write_output_rows(const AttentionParams& p, const gpu::Spec& spec,
                                                  const float (&o)[D / 8][4], const float (&m)[2], const float (&l)[2],
                                                  int b, int h, int t_first, int quad) {
#pragma unroll
    for (int r = 0; r < 2; ++r) {
        float sum = l[r];
        sum += __shfl_xor_sync(0xffffffffu, sum, 1);
        sum += __shfl_xor_sync(0xffffffffu, sum, 2);
        const int t = t_first + r * 8;
        float factor, lse;
        finish_row(m[r], sum, spec.has_sinks, spec.has_sinks ? p.sinks[h] : 0.0f, &factor, &lse);
        if (t >= p.T) continue;
        float* out = p.out + b * p.out_bstride + int64_t(t) * p.out_stride + int64_t(h) * D;
#pragma unroll
        for (int nt = 0; nt < D / 8; ++nt)
            *reinterpret_cast<float2*>(out + nt * 8 + quad * 2) = make_float2(o[nt][2 * r] * factor, o[nt][2 * r + 1] * factor);
        if (p.lse && quad == 0) p.lse[(int64_t(b) * p.T + t) * p.H + h] = lse;
    }
}

// ---- PTX wrappers -------------------------------------------------------------------------

template <typename Elem>
__device__ __forceinline__ uint32_t pack2(float a, float b);
template <>
__device__ __forceinline__ uint32_t pack2<__nv_bfloat16>(float a, float b) {
    const __nv_bfloat162 v = __floats2bfloat162_rn(a, b);
    return *reinterpret_cast<const uint32_t*>(&v);
}
template <>
__device__ __forceinline__ uint32_t pack2<__half>(float a, float b) {
    const __half2 v = __floats2half2_rn(a, b);
    return *reinterpret_cast<const uint32_t*>(&v);
}

template <typename Elem>
__device__ __forceinline__ float2 unpack2(uint32_t v);
template <>
__device__ __forceinline__ float2 unpack2<__nv_bfloat16>(uint32_t v) {
    return __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&v));
}
template <>
__device__ __forceinline__ float2 unpack2<__half>(uint32_t v) {
    return __half22float2(*reinterpret_cast<const __half2*>(&v));
}

// D (16×8 f32) += A (16×16, row) · B (16×8, col). Not volatile: the compiler must be free to
// interleave independent MMAs (volatile asm keeps program order, exposing MMA latency).
template <typename Elem>
__device__ __forceinline__ void mma16816(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
    if constexpr (std::is_same_v<Elem, __nv_bfloat16>) {
        asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                     : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                     : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
    } else {
        asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                     : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                     : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
    }
}

__device__ __forceinline__ uint32_t smem_addr(const void* p) { return static_cast<uint32_t>(__cvta_generic_to_shared(p)); }

__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const void* p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_addr(p)));
}

__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], const void* p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_addr(p)));
}

// 16-byte global -> shared copy; `valid` false writes zeros (rows past the end).
__device__ __forceinline__ void cp_async16(void* dst, const void* src, bool valid) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_addr(dst)), "l"(src), "r"(valid ? 16 : 0));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

// Element offset of (row, col) in a swizzled [rows][D] tile: 16-byte chunks are XOR-ed with
// the row so ldmatrix reads of 8 rows at one column hit 8 different bank groups.
template <int D>
__device__ __forceinline__ int swz(int row, int col) {
    return row * D + ((((col >> 3) ^ (row & 7))) << 3) + (col & 7);
}

// Copies rows [row0, row0 + kRows) of a (rows, D) matrix with `stride` elements per row into a
// swizzled tile with kThreads threads; rows >= limit are zero-filled (so masked keys' V is 0,
// never NaN·0).
template <typename Elem, int D, int kRows, int kThreads>
__device__ __forceinline__ void load_tile(Elem* tile, const Elem* base, int row0, int limit, int64_t stride) {
    constexpr int kChunks = D / 8;
    for (int idx = threadIdx.x; idx < kRows * kChunks; idx += kThreads) {
        const int r = idx / kChunks, c = idx % kChunks;
        const bool valid = row0 + r < limit;
        const Elem* src = valid ? base + int64_t(row0 + r) * stride + c * 8 : base;
        cp_async16(tile + swz<D>(r, c * 8), src, valid);
    }
}

// The mma.sync A fragment of k-step `ks` (dims ks·16 .. ks·16 + 15) for the 16 rows from `row0`
// of a swizzled [rows][D] Q tile.
template <typename Elem, int D>
__device__ __forceinline__ void load_q_fragment(uint32_t (&frag)[4], const Elem* sQ, int row0, int ks, int lane) {
    const int mi = lane / 8, r = lane % 8;
    ldmatrix_x4(frag, sQ + swz<D>(row0 + r + (mi & 1) * 8, ks * 16 + (mi >> 1) * 8));
}

// The A fragments of k-steps 2kk and 2kk + 1: copied from qf when the kernel holds Q in
// registers (qf has D/16 k-steps), else read from the shared Q tile (D = 256: Q's registers
// would crowd out the O accumulator).
template <typename Elem, int D, int KSteps>
__device__ __forceinline__ void q_fragment_pair(uint32_t (&qa)[2][4], const uint32_t (&qf)[KSteps][4], const Elem* sQ,
                                                int row0, int kk, int lane) {
#pragma unroll
    for (int half = 0; half < 2; ++half) {
        if constexpr (KSteps == D / 16) {
#pragma unroll
            for (int i = 0; i < 4; ++i) qa[half][i] = qf[2 * kk + half][i];
        } else {
            load_q_fragment<Elem, D>(qa[half], sQ, row0, 2 * kk + half, lane);
        }
    }
}

}  // namespace attnlab::cuda
