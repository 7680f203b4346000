// CPU linear layers: a packed, register-blocked GEMM for prefill (M > kGemvMaxRows) and a
// dot-product GEMV for decode (small M), both with f32 accumulation.
//
// SIMD: Highway with dynamic dispatch. This file is compiled once per x86 target
// (SSE4, AVX2, AVX-512, plus the scalar fallback) through hwy/foreach_target.h and the best
// target the CPU supports is picked at the first call, so one binary runs AVX-512 on Intel and
// Zen 4/5 and AVX2 elsewhere, without -march=native. Highway was enough here: the kernels need
// only loads, broadcasts, FMAs and integer widening, and it lets the micro-kernel shape follow
// the register file of the target (see kMR below).
//
// Exactness: weights are widened to f32 exactly (bf16 is a 16-bit shift, f16 goes through
// F16C or Highway's exact emulation); activations are never rounded. Each output element is
// accumulated in the same order (K blocks in ascending order, one FMA chain per element within
// a block) whatever the thread count, because threads split N and never K.

#include "kernels/cpu/matmul.h"
#include "kernels/cpu/scratch_buffer.h"

#include <attnlab/error.h>
#include <attnlab/half.h>
#include <attnlab/threads.h>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>
#include <type_traits>
#include <utility>

#ifndef ATTNLAB_MATMUL_SHARED_DEFS
#define ATTNLAB_MATMUL_SHARED_DEFS

namespace attnlab::cpu::detail {

enum class WeightType : int { F32, BF16, F16 };

// One call of linear(), with the weight reduced to a pointer and element strides.
struct LinearArgs {
    const float* x = nullptr;  // (M, K), row stride ldx
    int64_t ldx = 0;
    const void* w = nullptr;  // (N, K): element (n, k) at w[n * w_stride_n + k * w_stride_k]
    WeightType wtype = WeightType::F32;
    int64_t w_stride_n = 0;
    int64_t w_stride_k = 0;
    const float* bias = nullptr;  // (N) or nullptr
    float* y = nullptr;           // (M, N), row stride ldy
    int64_t ldy = 0;
    int64_t M = 0, N = 0, K = 0;
    bool accumulate = false;
};

// Thread-local ScratchBuffers (kernels/cpu/scratch_buffer.h) hold the packed panels, so the
// pool's persistent workers allocate once and then reuse their buffers on every call.

// Slot 0: the packed activations (owned by the calling thread, read by all threads).
// Slot 1: the packed weight block of the current thread.
inline float* scratch(int slot, size_t count) {
    thread_local ScratchBuffer buffers[2];
    return buffers[slot].get(count);
}

// Largest M handled by the GEMV path. Up to M = 8 each weight element feeds at most 8 FMAs, and
// the GEMV (no packing, weights read once) beats the packed GEMM, whose transpose-and-widen
// pack costs ~1 cycle per weight element: bf16 gate/up at M = 8 took 2.2 ms through the GEMM
// and ~0.5 ms at M = 4 through the GEMV (bench/matmul_bench --m 4,8 --threads 1).
constexpr int64_t kGemvMaxRows = 8;

}  // namespace attnlab::cpu::detail

#endif  // ATTNLAB_MATMUL_SHARED_DEFS

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/cpu/matmul.cpp"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/cache_control.h>
#include <hwy/highway.h>

HWY_BEFORE_NAMESPACE();
namespace attnlab::cpu::detail {
namespace HWY_NAMESPACE {

namespace hn = hwy::HWY_NAMESPACE;

using DF = hn::ScalableTag<float>;
using VF = hn::Vec<DF>;
constexpr size_t kLanes = hn::MaxLanes(DF());

// Complete unrolling of the micro-kernel's register loops. GCC otherwise unrolls the epilogue
// late, after it has decided to keep `acc` in a stack array, and the 28 accumulators then go
// through memory around the FMA loop.
#define ATTNLAB_UNROLL_ALL _Pragma("GCC unroll 64")

// Micro-kernel shape: kMR rows of x (broadcast operands) times kNV vectors of N (kNR columns).
// Accumulators use kMR * kNV registers; one register holds the broadcast and kNV hold the
// weight row, so the tile must fit the register file with 2-3 to spare:
//   AVX-512 (32 zmm): 14 x 2 = 28 accumulators + 2 weights + 1 broadcast = 31.
//   AVX2 / SSE4 (16 registers): 6 x 2 = 12 accumulators + 3 = 15.
// 28 independent FMA chains also cover FMA latency x ports (4 x 2 = 8) with a wide margin, and
// the tile does 28 FMAs per 2 weight loads + 14 broadcasts, well within two loads per cycle.
#if HWY_TARGET <= HWY_AVX3
constexpr size_t kMR = 14;
#elif HWY_TARGET <= HWY_SSE4
constexpr size_t kMR = 6;
#else
constexpr size_t kMR = 4;  // scalar / emulated fallback: correctness, not speed
#endif
constexpr size_t kNV = 2;
constexpr size_t kNR = kNV * kLanes;

// K block: the x micro-panel (kMR x kKC floats = 14 KiB on AVX-512) stays in L1 (48 KiB on
// Sapphire Rapids and Zen 5) while the weight micro-panels (kKC x kNR = 32 KiB) stream past it.
constexpr int64_t kKC = 256;
// N block: the packed weight block (kNC x kKC floats = 512 KiB) stays in L2 (1 MiB on Zen 5,
// 2 MiB on Sapphire Rapids) while every x panel of the call is multiplied with it; each weight
// element is then packed once per call and reused by all M rows.
constexpr int64_t kNC = 512;

// ---------------------------------------------------------------------------------------------
// Weight loading: n consecutive weight elements (along the contiguous axis) widened to f32.

// One vector of f32 from kLanes contiguous weight elements of type `wtype`.
HWY_INLINE VF load_weights(WeightType wtype, const void* p /* (kLanes) */) {
    const DF df;
    if (wtype == WeightType::F32) return hn::LoadU(df, static_cast<const float*>(p));
    const hn::Rebind<uint16_t, DF> d16;
    const hn::RebindToUnsigned<DF> du32;
    const auto* p16 = static_cast<const uint16_t*>(p);
    if (wtype == WeightType::BF16) {
        // bf16 is the top half of an f32: widening is a zero-extend and a shift, exactly.
        return hn::BitCast(df, hn::ShiftLeft<16>(hn::PromoteTo(du32, hn::LoadU(d16, p16))));
    }
    const hn::Rebind<hwy::float16_t, DF> dh;
    return hn::PromoteTo(df, hn::LoadU(dh, reinterpret_cast<const hwy::float16_t*>(p16)));
}

HWY_INLINE float weight_scalar(WeightType wtype, const void* w, int64_t index) {
    switch (wtype) {
        case WeightType::F32: return static_cast<const float*>(w)[index];
        case WeightType::BF16: return bf16_to_f32(static_cast<const uint16_t*>(w)[index]);
        case WeightType::F16: return f16_to_f32(static_cast<const uint16_t*>(w)[index]);
    }
    return 0.0f;
}

HWY_INLINE const void* weight_at(const LinearArgs& a, int64_t index) {
    size_t bytes = a.wtype == WeightType::F32 ? 4 : 2;
    return static_cast<const char*>(a.w) + index * static_cast<int64_t>(bytes);
}

// ---------------------------------------------------------------------------------------------
// GEMM (prefill).

// Asks for the cache lines of `bytes` bytes at p (weights about to be packed).
HWY_INLINE void prefetch_bytes(const void* p, int64_t bytes) {
    const char* c = static_cast<const char*>(p);
    for (int64_t b = 0; b < bytes; b += 64) hwy::Prefetch(c + b);
    hwy::Prefetch(c + bytes - 1);
}

// How many k rows ahead the transposed-layout pack prefetches. The block is read as short runs
// (kNR elements) N' apart, which the hardware prefetchers follow poorly; without prefetching
// the pack waits on DRAM latency (it was ~15% of a prefill matmul). 8 runs ahead keep 8-16
// misses in flight.
constexpr int64_t kPrefetchRuns = 8;

#if HWY_TARGET <= HWY_AVX3
// Transposes 16 rows of 16 floats in registers: r[i] lane k -> r[k] lane i. Four shuffle
// stages (64 shuffles for 256 floats) instead of 256 scalar strided stores: the row-major pack
// is a transpose, and done scalar it cost ~10% of a prefill matmul.
HWY_INLINE void transpose16x16(__m512 r[16]) {
    __m512 t[16], u[16];
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
    // u[4i + c], 128-bit block l = rows 4i..4i+3 of column 4l + c.
    for (int i = 0; i < 16; i += 4) {
        const __m512d a0 = _mm512_castps_pd(t[i]), a1 = _mm512_castps_pd(t[i + 1]);
        const __m512d a2 = _mm512_castps_pd(t[i + 2]), a3 = _mm512_castps_pd(t[i + 3]);
        u[i] = _mm512_castpd_ps(_mm512_unpacklo_pd(a0, a2));
        u[i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a0, a2));
        u[i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(a1, a3));
        u[i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(a1, a3));
    }
    for (int c = 0; c < 4; ++c) {
        const __m512 v0 = _mm512_shuffle_f32x4(u[c], u[4 + c], 0x88);
        const __m512 w0 = _mm512_shuffle_f32x4(u[c], u[4 + c], 0xDD);
        const __m512 v1 = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0x88);
        const __m512 w1 = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0xDD);
        r[c] = _mm512_shuffle_f32x4(v0, v1, 0x88);
        r[8 + c] = _mm512_shuffle_f32x4(v0, v1, 0xDD);
        r[4 + c] = _mm512_shuffle_f32x4(w0, w1, 0x88);
        r[12 + c] = _mm512_shuffle_f32x4(w0, w1, 0xDD);
    }
}

// The row-major pack of one micro-panel for k in [0, kc16), kc16 a multiple of 16: blocks of
// 16 rows x 16 k are widened, transposed and stored as 16 panel rows. Returns kc16.
HWY_INLINE int64_t pack_rows_transposed(const LinearArgs& a, int64_t n, int64_t cols, int64_t k0,
                                        int64_t kc, float* HWY_RESTRICT panel /* (kc, kNR) */) {
    static_assert(kLanes == 16 && kNR == 32, "AVX-512 layout");
    const int64_t kc16 = kc / 16 * 16;
    for (int64_t jb = 0; jb < 32; jb += 16) {
        for (int64_t k = 0; k < kc16; k += 16) {
            __m512 r[16];
            for (int64_t i = 0; i < 16; ++i) {
                r[i] = jb + i < cols ? load_weights(a.wtype, weight_at(a, (n + jb + i) * a.w_stride_n + k0 + k)).raw
                                     : _mm512_setzero_ps();
            }
            transpose16x16(r);
            for (int64_t i = 0; i < 16; ++i) _mm512_store_ps(panel + (k + i) * 32 + jb, r[i]);
        }
    }
    return kc16;
}
#endif

// Packs rows [m0, m0 + rows) of x into a panel laid out (K, kMR): the micro-kernel then reads
// the kMR broadcasts of one k from one cache line instead of kMR rows ldx apart.
void pack_x_panel(const LinearArgs& a, int64_t m0, int64_t rows, float* HWY_RESTRICT dst /* (K, kMR) */) {
    int64_t k_done = 0;
#if HWY_TARGET <= HWY_AVX3
    // 16 k at a time through the register transpose: 16 row loads, 64 shuffles and kMR-lane
    // masked stores per 16 x 16 block, instead of one scalar store per element (the scalar
    // pack cost ~4% of a prefill, three times per layer for q, k and v).
    static_assert(kMR <= 16, "one transpose covers the panel's rows");
    const __mmask16 lanes = static_cast<__mmask16>((1u << kMR) - 1);
    for (; k_done + 16 <= a.K; k_done += 16) {
        __m512 r[16];
        for (int64_t i = 0; i < 16; ++i) {
            r[i] = i < rows ? _mm512_loadu_ps(a.x + (m0 + i) * a.ldx + k_done) : _mm512_setzero_ps();
        }
        transpose16x16(r);
        for (int64_t i = 0; i < 16; ++i) _mm512_mask_storeu_ps(dst + (k_done + i) * kMR, lanes, r[i]);
    }
#endif
    // Scalar: blocks of 64 k keep the kMR source rows' lines in L1 while the panel is written.
    constexpr int64_t kBlock = 64;
    for (int64_t k0 = k_done; k0 < a.K; k0 += kBlock) {
        int64_t k1 = std::min(a.K, k0 + kBlock);
        for (int64_t i = 0; i < rows; ++i) {
            const float* src = a.x + (m0 + i) * a.ldx;
            for (int64_t k = k0; k < k1; ++k) dst[k * kMR + i] = src[k];
        }
    }
}

// Packs W[n0 : n0 + nc, k0 : k0 + kc] widened to f32 as ceil(nc / kNR) micro-panels, each laid
// out (kc, kNR); columns past N are zero.
void pack_w_block(const LinearArgs& a, int64_t n0, int64_t nc, int64_t k0, int64_t kc,
                  float* HWY_RESTRICT dst /* (ceil(nc / kNR), kc, kNR) */) {
    const DF df;
    const int64_t nr = static_cast<int64_t>(kNR);
    const int64_t esize = a.wtype == WeightType::F32 ? 4 : 2;
    for (int64_t g = 0; g * nr < nc; ++g) {
        float* panel = dst + g * kc * nr;
        const int64_t cols = std::min(nr, nc - g * nr);
        const int64_t n = n0 + g * nr;
        if (a.w_stride_n == 1) {
            // Transposed (Conv1D) layout: the kNR columns of one k are contiguous in memory.
            for (int64_t k = 0; k < kc; ++k) {
                if (k + kPrefetchRuns < kc) {
                    prefetch_bytes(weight_at(a, (k0 + k + kPrefetchRuns) * a.w_stride_k + n), cols * esize);
                }
                float* out = panel + k * nr;
                const int64_t base = (k0 + k) * a.w_stride_k + n;
                int64_t j = 0;
                for (; j + static_cast<int64_t>(kLanes) <= cols; j += kLanes) {
                    hn::Store(load_weights(a.wtype, weight_at(a, base + j)), df, out + j);
                }
                for (; j < cols; ++j) out[j] = weight_scalar(a.wtype, a.w, base + j);
                for (; j < nr; ++j) out[j] = 0.0f;
            }
        } else {
            // Row-major layout: a transpose. Prefetch the next group's rows first (the pack
            // reads them as kc-element runs K' apart).
            const int64_t next_end = std::min(a.N, std::min(n0 + nc, n + 2 * nr));
            for (int64_t r = n + nr; r < next_end; ++r) {
                prefetch_bytes(weight_at(a, r * a.w_stride_n + k0), kc * esize);
            }
            int64_t k_done = 0;
#if HWY_TARGET <= HWY_AVX3
            k_done = pack_rows_transposed(a, n, cols, k0, kc, panel);
#endif
            // Scalar for what the vector transpose did not cover: each weight row is read
            // contiguously and its values written kNR floats apart into the panel.
            for (int64_t j = 0; j < nr; ++j) {
                if (j >= cols) {
                    for (int64_t k = k_done; k < kc; ++k) panel[k * nr + j] = 0.0f;
                    continue;
                }
                const int64_t base = (n + j) * a.w_stride_n + k0;
                for (int64_t k = k_done; k < kc; ++k) panel[k * nr + j] = weight_scalar(a.wtype, a.w, base + k);
            }
        }
    }
}

// y tile (R, kNR) = xp · wp over kc steps [+ y (if kLoadC)] [+ bias (if kBias)].
// Full tiles only: partial column tiles go through a bounce buffer in the caller. The y tile
// is prefetched first and read only after the FMA loop, so its cache misses (y is 2-10 MiB for
// the prefill shapes, beyond L2) overlap with the ~kc x 14 cycles of arithmetic. kLoadC and
// kBias are template parameters so that the epilogue is straight-line code: with run-time
// flags GCC kept the 28 accumulators in a stack array around the branches (28 stores and 28
// reloads per call).
template <size_t R, bool kLoadC, bool kBias>
HWY_NOINLINE void micro_kernel(int64_t kc, const float* HWY_RESTRICT xp /* (kc, kMR) */,
                               const float* HWY_RESTRICT wp /* (kc, kNR) */,
                               float* HWY_RESTRICT y /* (R, kNR), row stride ldy */, int64_t ldy,
                               const float* HWY_RESTRICT bias /* (kNR) or nullptr */) {
    const DF d;
    ATTNLAB_UNROLL_ALL
    for (size_t i = 0; i < R; ++i) {
        ATTNLAB_UNROLL_ALL
        for (size_t j = 0; j < kNR * sizeof(float); j += 64) hwy::Prefetch(reinterpret_cast<const char*>(y + i * ldy) + j);
    }
    VF acc[R][kNV];
    ATTNLAB_UNROLL_ALL
    for (size_t i = 0; i < R; ++i) {
        ATTNLAB_UNROLL_ALL
        for (size_t j = 0; j < kNV; ++j) acc[i][j] = hn::Zero(d);
    }
    for (int64_t k = 0; k < kc; ++k) {
        const float* wk = wp + k * static_cast<int64_t>(kNR);
        const float* xk = xp + k * static_cast<int64_t>(kMR);
        VF w[kNV];
        ATTNLAB_UNROLL_ALL
        for (size_t j = 0; j < kNV; ++j) w[j] = hn::Load(d, wk + j * kLanes);
        ATTNLAB_UNROLL_ALL
        for (size_t i = 0; i < R; ++i) {
            const VF xi = hn::Set(d, xk[i]);
            ATTNLAB_UNROLL_ALL
            for (size_t j = 0; j < kNV; ++j) acc[i][j] = hn::MulAdd(xi, w[j], acc[i][j]);
        }
    }
    VF b[kNV];
    if constexpr (kBias) {
        ATTNLAB_UNROLL_ALL
        for (size_t j = 0; j < kNV; ++j) b[j] = hn::LoadU(d, bias + j * kLanes);
    }
    ATTNLAB_UNROLL_ALL
    for (size_t i = 0; i < R; ++i) {
        ATTNLAB_UNROLL_ALL
        for (size_t j = 0; j < kNV; ++j) {
            VF v = acc[i][j];
            if constexpr (kLoadC) v = hn::Add(v, hn::LoadU(d, y + i * ldy + j * kLanes));
            if constexpr (kBias) v = hn::Add(v, b[j]);
            hn::StoreU(v, d, y + i * ldy + j * kLanes);
        }
    }
}

using MicroKernel = void (*)(int64_t, const float*, const float*, float*, int64_t, const float*);

template <bool kLoadC, bool kBias, size_t... I>
constexpr std::array<MicroKernel, sizeof...(I)> make_kernels(std::index_sequence<I...>) {
    return {&micro_kernel<I + 1, kLoadC, kBias>...};
}

// kKernels[load_c][bias][r - 1] handles an x panel of r rows (the last panel of M may be short).
constexpr std::array<MicroKernel, kMR> kKernels[2][2] = {
    {make_kernels<false, false>(std::make_index_sequence<kMR>()),
     make_kernels<false, true>(std::make_index_sequence<kMR>())},
    {make_kernels<true, false>(std::make_index_sequence<kMR>()),
     make_kernels<true, true>(std::make_index_sequence<kMR>())},
};

// One (rows, cols) output tile; cols < kNR goes through a bounce buffer so that the
// micro-kernel only ever touches full vectors and never reads or writes past N.
HWY_INLINE void run_tile(int64_t rows, int64_t cols, int64_t kc, const float* xp, const float* wp,
                         float* y /* (rows, cols), row stride ldy */, int64_t ldy,
                         const float* bias /* (cols) or nullptr */, bool load_c) {
    MicroKernel kernel = kKernels[load_c][bias != nullptr][rows - 1];
    if (cols == static_cast<int64_t>(kNR)) {
        kernel(kc, xp, wp, y, ldy, bias);
        return;
    }
    HWY_ALIGN float tile[kMR * kNR] = {};
    HWY_ALIGN float tile_bias[kNR] = {};
    const int64_t nr = static_cast<int64_t>(kNR);
    if (load_c) {
        for (int64_t i = 0; i < rows; ++i) std::memcpy(tile + i * nr, y + i * ldy, cols * sizeof(float));
    }
    if (bias != nullptr) std::memcpy(tile_bias, bias, cols * sizeof(float));
    kernel(kc, xp, wp, tile, nr, bias != nullptr ? tile_bias : nullptr);
    for (int64_t i = 0; i < rows; ++i) std::memcpy(y + i * ldy, tile + i * nr, cols * sizeof(float));
}

// Output columns [n_begin, n_end) of rows [m_begin, m_end) (m_begin a multiple of kMR), given
// x packed into panels.
void gemm_block(const LinearArgs& a, const float* xpack /* (P, K, kMR) */, int64_t m_begin,
                int64_t m_end, int64_t n_begin, int64_t n_end) {
    const int64_t nr = static_cast<int64_t>(kNR);
    const int64_t mr = static_cast<int64_t>(kMR);
    // Equal K blocks (rounded to 8 for aligned panel offsets) so no block is a sliver.
    const int64_t k_blocks = (a.K + kKC - 1) / kKC;
    const int64_t kc_step = ((a.K + k_blocks - 1) / k_blocks + 7) / 8 * 8;
    float* wpack = scratch(1, static_cast<size_t>(kNC * kc_step));
    // Equal N blocks of at most kNC, in whole micro-panels: a short last block would reuse each
    // x panel for only a few weight micro-panels.
    const int64_t n_blocks = (n_end - n_begin + kNC - 1) / kNC;
    const int64_t nc_step = ((n_end - n_begin + n_blocks - 1) / n_blocks + nr - 1) / nr * nr;
    for (int64_t n0 = n_begin; n0 < n_end; n0 += nc_step) {
        const int64_t nc = std::min(nc_step, n_end - n0);
        for (int64_t k0 = 0; k0 < a.K; k0 += kc_step) {
            const int64_t kc = std::min(kc_step, a.K - k0);
            pack_w_block(a, n0, nc, k0, kc, wpack);
            const bool first = k0 == 0;
            const bool load_c = !first || a.accumulate;
            const int64_t tiles = (nc + nr - 1) / nr;
            const int64_t panel_bytes = kc * mr * static_cast<int64_t>(sizeof(float));
            for (int64_t m0 = m_begin; m0 < m_end; m0 += mr) {
                const int64_t rows = std::min(mr, m_end - m0);
                const float* xp = xpack + (m0 / mr) * a.K * mr + k0 * mr;
                // The next x panel comes from L3 or DRAM (x is 1.8-10 MiB packed for the prefill
                // shapes): each tile of this panel prefetches its share of the next one, so the
                // next panel's first FMAs do not wait on memory.
                const char* next_xp = m0 + mr < m_end ? reinterpret_cast<const char*>(xp + a.K * mr) : nullptr;
                for (int64_t j = 0; j < nc; j += nr) {
                    const int64_t cols = std::min(nr, nc - j);
                    if (next_xp != nullptr) {
                        const int64_t t = j / nr;
                        for (int64_t b = panel_bytes * t / tiles / 64 * 64; b < panel_bytes * (t + 1) / tiles; b += 64) {
                            hwy::Prefetch(next_xp + b);
                        }
                    }
                    const float* bias = first && a.bias != nullptr ? a.bias + n0 + j : nullptr;
                    run_tile(rows, cols, kc, xp, wpack + (j / nr) * kc * nr,
                             a.y + m0 * a.ldy + n0 + j, a.ldy, bias, load_c);
                }
            }
        }
    }
}

void linear_gemm(const LinearArgs& a) {
    const int64_t mr = static_cast<int64_t>(kMR);
    const int64_t panels = (a.M + mr - 1) / mr;
    float* xpack = scratch(0, static_cast<size_t>(panels * a.K * mr));
    parallel_for(panels, [&](int64_t begin, int64_t end, int) {
        for (int64_t p = begin; p < end; ++p) {
            pack_x_panel(a, p * mr, std::min(mr, a.M - p * mr), xpack + p * a.K * mr);
        }
    });
    // Threads split N in whole micro-panels: each weight is read from memory and packed by one
    // thread only. When N is too narrow for that (k/v projections: N = 128 is 4 micro-panels)
    // they split M instead and each packs all of W, which is then small. Either way an output
    // element is summed in the same order, so results do not depend on the split.
    const int64_t nr = static_cast<int64_t>(kNR);
    const int64_t units = (a.N + nr - 1) / nr;
    if (units >= 8 * num_threads() || panels < 2 * num_threads()) {
        parallel_for(units, [&](int64_t begin, int64_t end, int) {
            gemm_block(a, xpack, 0, a.M, begin * nr, std::min(a.N, end * nr));
        });
    } else {
        parallel_for(panels, [&](int64_t begin, int64_t end, int) {
            gemm_block(a, xpack, begin * mr, std::min(a.M, end * mr), 0, a.N);
        });
    }
}

// ---------------------------------------------------------------------------------------------
// GEMV (decode): y[m, n] = dot(x[m, :], W[n, :]) for row-major W, M <= kGemvMaxRows.

template <WeightType WT>
struct WeightTraits {
    using Elem = std::conditional_t<WT == WeightType::F32, float, uint16_t>;
    // Elements per 64-byte cache line; the GEMV issues one prefetch per line.
    static constexpr int64_t kPerLine = 64 / static_cast<int64_t>(sizeof(Elem));
};

// Rows [n0, n0 + G) of W against MM rows of x. One FMA chain per (row of x, row of W), always
// in ascending k, so a row's result does not depend on G (nor on the thread split). G rows in
// flight give MM * G independent chains. Rows are only K * 2 bytes long (1.8 KiB for K = 896),
// too short for the hardware prefetchers to ramp up, so each line step prefetches the same
// line of the next group's rows (`prefetch_rows` of them, 0 at the end of the range).
template <WeightType WT, size_t MM, size_t G>
HWY_INLINE void gemv_rows(const LinearArgs& a, int64_t n0, int64_t prefetch_rows) {
    using Elem = typename WeightTraits<WT>::Elem;
    constexpr int64_t kPerLine = WeightTraits<WT>::kPerLine;
    constexpr int64_t kLanesI = static_cast<int64_t>(kLanes);
    const DF d;
    const Elem* w = static_cast<const Elem*>(a.w);
    VF acc[MM][G];
    for (size_t m = 0; m < MM; ++m) {
        for (size_t g = 0; g < G; ++g) acc[m][g] = hn::Zero(d);
    }
    auto step = [&](int64_t k) {
        VF xv[MM];
        for (size_t m = 0; m < MM; ++m) xv[m] = hn::LoadU(d, a.x + m * a.ldx + k);
        for (size_t g = 0; g < G; ++g) {
            const VF wv = load_weights(WT, w + (n0 + static_cast<int64_t>(g)) * a.w_stride_n + k);
            for (size_t m = 0; m < MM; ++m) acc[m][g] = hn::MulAdd(xv[m], wv, acc[m][g]);
        }
    };
    int64_t k = 0;
    if constexpr (kPerLine >= kLanesI) {
        for (; k + kPerLine <= a.K; k += kPerLine) {
            for (int64_t r = 0; r < prefetch_rows; ++r) {
                hwy::Prefetch(w + (n0 + static_cast<int64_t>(G) + r) * a.w_stride_n + k);
            }
            for (int64_t v = 0; v < kPerLine; v += kLanesI) step(k + v);
        }
    }
    for (; k + kLanesI <= a.K; k += kLanesI) step(k);
    for (size_t m = 0; m < MM; ++m) {
        for (size_t g = 0; g < G; ++g) {
            const int64_t n = n0 + static_cast<int64_t>(g);
            float sum = hn::GetLane(hn::SumOfLanes(d, acc[m][g]));
            for (int64_t kk = k; kk < a.K; ++kk) {
                sum += a.x[m * a.ldx + kk] * weight_scalar(WT, a.w, n * a.w_stride_n + kk);
            }
            float* out = a.y + m * a.ldy + n;
            float init = a.accumulate ? *out : 0.0f;
            if (a.bias != nullptr) init += a.bias[n];
            *out = init + sum;
        }
    }
}

template <WeightType WT, size_t MM>
void gemv_range(const LinearArgs& a, int64_t n_begin, int64_t n_end) {
    // At least 8 independent chains (FMA latency x ports on AVX-512 = 8) and at least 2 rows
    // of W per group; MM * kG + MM + 1 <= 25 vector registers.
    constexpr int64_t kG = MM >= 3 ? 2 : 8 / MM;
    int64_t n = n_begin;
    for (; n + kG <= n_end; n += kG) gemv_rows<WT, MM, kG>(a, n, std::min(kG, n_end - n - kG));
    for (; n < n_end; ++n) gemv_rows<WT, MM, 1>(a, n, 0);
}

template <WeightType WT>
void gemv_range_m(const LinearArgs& a, int64_t n_begin, int64_t n_end) {
    switch (a.M) {
        case 1: gemv_range<WT, 1>(a, n_begin, n_end); break;
        case 2: gemv_range<WT, 2>(a, n_begin, n_end); break;
        case 3: gemv_range<WT, 3>(a, n_begin, n_end); break;
        case 4: gemv_range<WT, 4>(a, n_begin, n_end); break;
        case 5: gemv_range<WT, 5>(a, n_begin, n_end); break;
        case 6: gemv_range<WT, 6>(a, n_begin, n_end); break;
        case 7: gemv_range<WT, 7>(a, n_begin, n_end); break;
        case 8: gemv_range<WT, 8>(a, n_begin, n_end); break;
        default: HWY_ASSERT(false);
    }
}

void linear_gemv(const LinearArgs& a) {
    // Each thread should stream at least ~256 KiB of weights, or the pool's wake-up costs more
    // than it saves.
    const int64_t row_bytes = a.K * (a.wtype == WeightType::F32 ? 4 : 2);
    const int64_t grain = std::max<int64_t>(1, (int64_t{256} << 10) / std::max<int64_t>(1, row_bytes));
    parallel_for(a.N, [&](int64_t begin, int64_t end, int) {
        switch (a.wtype) {
            case WeightType::F32: gemv_range_m<WeightType::F32>(a, begin, end); break;
            case WeightType::BF16: gemv_range_m<WeightType::BF16>(a, begin, end); break;
            case WeightType::F16: gemv_range_m<WeightType::F16>(a, begin, end); break;
        }
    }, grain);
}

// ---------------------------------------------------------------------------------------------
// Pre-packed weights: callers that multiply many x blocks by the same W (attention's K and V
// tiles, one per query block) pack W once with pack_panels and call gemm_packed per block.

int64_t panel_width() { return static_cast<int64_t>(kNR); }

void pack_panels(const LinearArgs& a, float* dst) {
    // One K block covering all of K: the panels are (K, kNR) each.
    pack_w_block(a, 0, a.N, 0, a.K, dst);
}

// x packed on its own, once for many products with the same rows (attention's queries against
// every key tile): ceil(M / kMR) panels of (K, kMR), K·kMR floats apart.
int64_t rows_packed_size(int64_t M, int64_t K) {
    const int64_t mr = static_cast<int64_t>(kMR);
    return (M + mr - 1) / mr * K * mr;
}

void pack_rows(const LinearArgs& a, float* dst /* (ceil(M / kMR), K, kMR) */) {
    const int64_t mr = static_cast<int64_t>(kMR);
    for (int64_t m0 = 0; m0 < a.M; m0 += mr) pack_x_panel(a, m0, std::min(mr, a.M - m0), dst + m0 * a.K);
}

// y (+)= x · Wᵀ with x already packed by pack_rows (xpack) and W by pack_panels.
// Loop order: each W micro-panel (kc x kNR: 16 KiB for attention's Q·Kᵀ, 32 KiB for P·V) stays
// in L1 while every x micro-panel (kc x kMR, 7-14 KiB) streams past it from L2 in address order:
// per micro-kernel step that is 56 bytes of x from L2 instead of 128 bytes of W. Holding the x
// panel and streaming W instead, the micro-kernel's first W load was its hottest instruction;
// the swap made the dense causal bench (T = 4096, D = 128) ~14 % faster (docs/performance.md).
void gemm_prepacked(const LinearArgs& a, const float* xpack, const float* panels, int64_t panel_stride,
                    int64_t k_offset) {
    const int64_t mr = static_cast<int64_t>(kMR), nr = static_cast<int64_t>(kNR);
    const int64_t n_panels = (a.M + mr - 1) / mr;
    for (int64_t k0 = 0; k0 < a.K; k0 += kKC) {
        const int64_t kc = std::min(kKC, a.K - k0);
        const bool load_c = k0 > 0 || a.accumulate;
        for (int64_t j = 0; j < a.N; j += nr) {
            const float* wp = panels + (j / nr) * panel_stride + (k_offset + k0) * nr;
            const int64_t cols = std::min(nr, a.N - j);
            for (int64_t p = 0; p < n_panels; ++p) {
                const int64_t m0 = p * mr, rows = std::min(mr, a.M - m0);
                const float* xp = xpack + p * a.K * mr + k0 * mr;
                run_tile(rows, cols, kc, xp, wp, a.y + m0 * a.ldy + j, a.ldy, nullptr, load_c);
            }
        }
    }
}

void gemm_packed(const LinearArgs& a, const float* panels, int64_t panel_stride, int64_t k_offset) {
    float* xpack = scratch(0, static_cast<size_t>(rows_packed_size(a.M, a.K)));
    pack_rows(a, xpack);
    gemm_prepacked(a, xpack, panels, panel_stride, k_offset);
}

}  // namespace HWY_NAMESPACE
}  // namespace attnlab::cpu::detail
HWY_AFTER_NAMESPACE();

#if HWY_ONCE

namespace attnlab::cpu {

namespace detail {

HWY_EXPORT(linear_gemm);
HWY_EXPORT(linear_gemv);
HWY_EXPORT(panel_width);
HWY_EXPORT(pack_panels);
HWY_EXPORT(gemm_packed);
HWY_EXPORT(rows_packed_size);
HWY_EXPORT(pack_rows);
HWY_EXPORT(gemm_prepacked);

// Validates the call and describes the weight layout; throws InvalidArgument on bad input.
LinearArgs make_args(const char* where, const float* x, int64_t ldx, const Tensor& weight,
                     const float* bias, float* y, int64_t ldy, int64_t M, bool accumulate) {
    ATTNLAB_CHECK(weight.defined(), InvalidArgument, "[{}] weight tensor is undefined", where);
    ATTNLAB_CHECK(weight.dim() == 2, InvalidArgument, "[{}] weight must be 2-D (N, K), got shape {}",
                  where, weight.shape_string());
    LinearArgs a;
    switch (weight.dtype()) {
        case DType::F32: a.wtype = WeightType::F32; break;
        case DType::BF16: a.wtype = WeightType::BF16; break;
        case DType::F16: a.wtype = WeightType::F16; break;
        default:
            ATTNLAB_CHECK(false, InvalidArgument,
                          "[{}] weight dtype must be f32, bf16 or f16, got {} (shape {})", where,
                          dtype_name(weight.dtype()), weight.shape_string());
    }
    a.N = weight.size(0);
    a.K = weight.size(1);
    const int64_t s0 = weight.stride(0), s1 = weight.stride(1);
    if (s1 == 1 && s0 >= a.K) {
        a.w_stride_n = s0;
        a.w_stride_k = 1;
    } else if (s0 == 1 && s1 >= a.N) {
        a.w_stride_n = 1;
        a.w_stride_k = s1;
    } else {
        ATTNLAB_CHECK(false, InvalidArgument,
                      "[{}] weight {} has strides ({}, {}): expected row-major (K' >= K, 1) or the "
                      "transpose of a row-major matrix (1, N' >= N)",
                      where, weight.shape_string(), s0, s1);
    }
    ATTNLAB_CHECK(M >= 0, InvalidArgument, "[{}] M must be >= 0, got {}", where, M);
    ATTNLAB_CHECK(ldx >= a.K, InvalidArgument,
                  "[{}] x row stride ldx = {} is smaller than the weight's K = {} (weight {})", where,
                  ldx, a.K, weight.shape_string());
    ATTNLAB_CHECK(ldy >= a.N, InvalidArgument,
                  "[{}] y row stride ldy = {} is smaller than the weight's N = {} (weight {})", where,
                  ldy, a.N, weight.shape_string());
    ATTNLAB_CHECK(M == 0 || a.N == 0 || y != nullptr, InvalidArgument, "[{}] y is null", where);
    ATTNLAB_CHECK(M == 0 || a.K == 0 || x != nullptr, InvalidArgument, "[{}] x is null", where);
    a.x = x;
    a.ldx = ldx;
    a.w = weight.numel() > 0 ? static_cast<const void*>(weight.raw()) : nullptr;
    a.bias = bias;
    a.y = y;
    a.ldy = ldy;
    a.M = M;
    a.accumulate = accumulate;
    return a;
}

}  // namespace detail

void linear(const float* x, int64_t ldx, const Tensor& weight, const float* bias, float* y,
            int64_t ldy, int64_t M, bool accumulate) {
    const detail::LinearArgs a =
        detail::make_args("linear", x, ldx, weight, bias, y, ldy, M, accumulate);
    if (a.M == 0 || a.N == 0) return;
    if (a.K == 0) {
        for (int64_t m = 0; m < a.M; ++m) {
            for (int64_t n = 0; n < a.N; ++n) {
                float init = a.accumulate ? a.y[m * a.ldy + n] : 0.0f;
                a.y[m * a.ldy + n] = init + (a.bias != nullptr ? a.bias[n] : 0.0f);
            }
        }
        return;
    }
    if (a.M <= detail::kGemvMaxRows && a.w_stride_k == 1) {
        HWY_DYNAMIC_DISPATCH(detail::linear_gemv)(a);
    } else {
        HWY_DYNAMIC_DISPATCH(detail::linear_gemm)(a);
    }
}

void linear_reference(const float* x, int64_t ldx, const Tensor& weight, const float* bias,
                      float* y, int64_t ldy, int64_t M, bool accumulate) {
    const detail::LinearArgs a =
        detail::make_args("linear_reference", x, ldx, weight, bias, y, ldy, M, accumulate);
    auto w_at = [&](int64_t n, int64_t k) -> double {
        int64_t index = n * a.w_stride_n + k * a.w_stride_k;
        switch (a.wtype) {
            case detail::WeightType::F32: return static_cast<const float*>(a.w)[index];
            case detail::WeightType::BF16: return bf16_to_f32(static_cast<const uint16_t*>(a.w)[index]);
            case detail::WeightType::F16: return f16_to_f32(static_cast<const uint16_t*>(a.w)[index]);
        }
        return 0.0;
    };
    for (int64_t m = 0; m < a.M; ++m) {
        for (int64_t n = 0; n < a.N; ++n) {
            double sum = a.bias != nullptr ? a.bias[n] : 0.0;
            for (int64_t k = 0; k < a.K; ++k) sum += static_cast<double>(a.x[m * a.ldx + k]) * w_at(n, k);
            float* out = a.y + m * a.ldy + n;
            *out = a.accumulate ? static_cast<float>(*out + sum) : static_cast<float>(sum);
        }
    }
}

int64_t packed_panel_width() { return HWY_DYNAMIC_DISPATCH(detail::panel_width)(); }

int64_t packed_size(const Tensor& weight) {
    const int64_t w = packed_panel_width();
    return (weight.size(0) + w - 1) / w * w * weight.size(1);
}

void pack_weight_panels(const Tensor& weight, float* dst) {
    const detail::LinearArgs a = detail::make_args("pack_weight_panels", nullptr, weight.size(1), weight, nullptr,
                                                   nullptr, weight.size(0), 0, false);
    if (a.N == 0 || a.K == 0) return;
    HWY_DYNAMIC_DISPATCH(detail::pack_panels)(a, dst);
}

namespace {

// The checks and arguments the pre-packed-weight entry points share; false when nothing is left
// to compute (an empty output, or K = 0, where y becomes 0 unless accumulating).
bool packed_weight_args(const char* where, int64_t ldx, int64_t panel_stride, int64_t k_offset, int64_t N, int64_t K,
                        float* y, int64_t ldy, int64_t M, bool accumulate, detail::LinearArgs& a) {
    ATTNLAB_CHECK(M >= 0 && N >= 0 && K >= 0 && ldx >= K && ldy >= N && k_offset >= 0 &&
                      panel_stride >= (k_offset + K) * packed_panel_width(),
                  InvalidArgument, "[{}] inconsistent sizes M={} N={} K={} ldx={} ldy={}", where, M, N, K, ldx, ldy);
    if (M == 0 || N == 0) return false;
    if (K == 0) {
        if (!accumulate)
            for (int64_t m = 0; m < M; ++m) std::fill_n(y + m * ldy, N, 0.0f);
        return false;
    }
    a.ldx = ldx;
    a.y = y;
    a.ldy = ldy;
    a.M = M;
    a.N = N;
    a.K = K;
    a.accumulate = accumulate;
    return true;
}

}  // namespace

void linear_packed(const float* x, int64_t ldx, const float* panels, int64_t panel_stride, int64_t k_offset,
                   int64_t N, int64_t K, float* y, int64_t ldy, int64_t M, bool accumulate) {
    detail::LinearArgs a;
    if (!packed_weight_args("linear_packed", ldx, panel_stride, k_offset, N, K, y, ldy, M, accumulate, a)) return;
    a.x = x;
    HWY_DYNAMIC_DISPATCH(detail::gemm_packed)(a, panels, panel_stride, k_offset);
}

int64_t packed_rows_size(int64_t M, int64_t K) {
    ATTNLAB_CHECK(M >= 0 && K >= 0, InvalidArgument, "[packed_rows_size] negative size M={} K={}", M, K);
    return HWY_DYNAMIC_DISPATCH(detail::rows_packed_size)(M, K);
}

void pack_rows(const float* x, int64_t ldx, int64_t M, int64_t K, float* dst) {
    ATTNLAB_CHECK(M >= 0 && K >= 0 && ldx >= K, InvalidArgument, "[pack_rows] inconsistent sizes M={} K={} ldx={}", M,
                  K, ldx);
    if (M == 0 || K == 0) return;
    detail::LinearArgs a;
    a.x = x;
    a.ldx = ldx;
    a.M = M;
    a.K = K;
    HWY_DYNAMIC_DISPATCH(detail::pack_rows)(a, dst);
}

void linear_prepacked(const float* x_packed, const float* panels, int64_t panel_stride, int64_t k_offset, int64_t N,
                      int64_t K, float* y, int64_t ldy, int64_t M, bool accumulate) {
    detail::LinearArgs a;  // (the packed rows have no stride: ldx = K)
    if (!packed_weight_args("linear_prepacked", K, panel_stride, k_offset, N, K, y, ldy, M, accumulate, a)) return;
    HWY_DYNAMIC_DISPATCH(detail::gemm_prepacked)(a, x_packed, panels, panel_stride, k_offset);
}

}  // namespace attnlab::cpu

#endif  // HWY_ONCE
