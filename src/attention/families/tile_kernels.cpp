// Row and decode kernels of the tiled CPU attention (families/tile_kernels.h): each a
// target_clones function (AVX-512 / AVX2 / baseline picked at load time) over one row or one
// small block of rows, so softmax_tiled.cpp holds the algorithm and this file the inner loops.
#include "attention/families/tile_kernels.h"

// The 64-byte GCC vectors below are passed between always-inline helpers only; GCC's note that
// their ABI differs without AVX-512 concerns calls that never happen.
#pragma GCC diagnostic ignored "-Wpsabi"

#include <attnlab/half.h>

#include "kernels/cpu/vec_math.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace attnlab::detail {

namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// Inlined into each target_clones caller, so the helpers get that clone's instruction set.
#define ATTNLAB_ALWAYS_INLINE inline __attribute__((always_inline))

inline __attribute__((always_inline)) float to_float(float x) { return x; }
inline __attribute__((always_inline)) float to_float(uint16_t x) { return bf16_to_f32(x); }

}  // namespace
// ---- row helpers (target_clones picks AVX-512 / AVX2 at load time) ----

// (16 explicit lanes: GCC does not vectorise a float max reduction, even under omp simd.)
__attribute__((target_clones("avx512f", "avx2", "default")))
float row_max(const float* s, int64_t n) {
    float lanes[16];
    std::fill_n(lanes, 16, kNegInf);
    int64_t k = 0;
    for (; k + 16 <= n; k += 16)
#pragma omp simd
        for (int l = 0; l < 16; ++l) lanes[l] = s[k + l] > lanes[l] ? s[k + l] : lanes[l];
    float m = kNegInf;
    for (int l = 0; l < 16; ++l) m = lanes[l] > m ? lanes[l] : m;
    for (; k < n; ++k) m = s[k] > m ? s[k] : m;
    return m;
}

// s = e^(s - m) (0 where s = -inf); returns Σ s. The softmax's exponentials are ~8% of a dense
// tile's time, so AVX-512 CPUs take exp_shift_sum_avx512 below; others this loop.
__attribute__((target_clones("avx2", "default")))
float exp_shift_sum_vectorised(float* s, int64_t n, float m) {
    float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
    for (int64_t k = 0; k < n; ++k) {
        s[k] = cpu::exp_approx(s[k] - m);
        sum += s[k];
    }
    return sum;
}

#if defined(__x86_64__)
// exp_approx's algorithm (the same Cody-Waite split and Cephes polynomial, so the same ~2 ulp)
// in AVX-512 instructions: vrndscaleps rounds n and vscalefps applies 2^n, which replaces the
// clamps, the float-to-int conversion, the exponent shift and the two range selects of the
// portable version (17 vector operations per 16 exponentials instead of ~24). As there,
// x < -87.3 (masked scores: -inf) gives exactly 0 through the store mask, and the arguments are
// clamped at -87.3 so that no lane ever computes a denormal: a tiny result takes a microcode
// assist of ~150 cycles per instruction (letting vscalefps underflow the masked entries of
// causal diagonal tiles made this loop slower than the portable one). Inputs here are s - m <= 0,
// so there is no overflow.
__attribute__((target("avx512f"))) float exp_shift_sum_avx512(float* s, int64_t n, float m) {
    const __m512 vm = _mm512_set1_ps(m), lowest = _mm512_set1_ps(-87.3f), log2e = _mm512_set1_ps(1.44269504088896341f);
    const __m512 ln2_hi = _mm512_set1_ps(0.693359375f), ln2_lo = _mm512_set1_ps(-2.12194440e-4f);
    const __m512 c0 = _mm512_set1_ps(1.9875691500e-4f), c1 = _mm512_set1_ps(1.3981999507e-3f),
                 c2 = _mm512_set1_ps(8.3334519073e-3f), c3 = _mm512_set1_ps(4.1665795894e-2f),
                 c4 = _mm512_set1_ps(1.6666665459e-1f), c5 = _mm512_set1_ps(5.0000001201e-1f),
                 one = _mm512_set1_ps(1.0f);
    const __mmask16 all = 0xFFFF;
    __m512 sum = _mm512_setzero_ps();
    for (int64_t k = 0; k < n; k += 16) {
        const __mmask16 lanes = n - k >= 16 ? all : __mmask16((1u << (n - k)) - 1);
        // (maskz forms: GCC 12 warns inside the unmasked ones' _mm512_undefined_ps. vmaxps returns
        // its second operand when one is NaN, so a NaN score stays NaN, as in exp_approx.)
        const __m512 shifted = _mm512_sub_ps(_mm512_maskz_loadu_ps(lanes, s + k), vm);
        const __mmask16 kept = _mm512_mask_cmp_ps_mask(lanes, shifted, lowest, _CMP_NLT_UQ);  // (NaN: kept)
        const __m512 x = _mm512_maskz_max_ps(all, lowest, shifted);
        const __m512 nf =
            _mm512_maskz_roundscale_ps(all, _mm512_mul_ps(x, log2e), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        __m512 r = _mm512_fnmadd_ps(nf, ln2_hi, x);  // |r| <= ln2/2
        r = _mm512_fnmadd_ps(nf, ln2_lo, r);
        __m512 p = _mm512_fmadd_ps(c0, r, c1);
        p = _mm512_fmadd_ps(p, r, c2);
        p = _mm512_fmadd_ps(p, r, c3);
        p = _mm512_fmadd_ps(p, r, c4);
        p = _mm512_fmadd_ps(p, r, c5);
        p = _mm512_add_ps(_mm512_fmadd_ps(_mm512_mul_ps(p, r), r, r), one);
        const __m512 e = _mm512_maskz_scalef_ps(kept, p, nf);
        _mm512_mask_storeu_ps(s + k, lanes, e);
        sum = _mm512_add_ps(sum, e);
    }
    alignas(64) float lanes[16];  // (not _mm512_reduce_add_ps: GCC 12 warns inside it, see matmul_peak.h)
    _mm512_store_ps(lanes, sum);
    float total = 0.0f;
    for (float v : lanes) total += v;
    return total;
}
#endif

float exp_shift_sum(float* s, int64_t n, float m) {
#if defined(__x86_64__)
    static const bool avx512 = __builtin_cpu_supports("avx512f");
    if (avx512) return exp_shift_sum_avx512(s, n, m);
#endif
    return exp_shift_sum_vectorised(s, n, m);
}

// exp_shift_sum that also returns the statistics' sums in the same pass: Σ e^(s-m)·(s-m) over
// the kept entries (the entropy part; masked entries contribute 0, not 0·-inf) and Σ e^(2(s-m)).
__attribute__((target_clones("avx512f", "avx2", "default")))
float exp_shift_sum_stats(float* s, int64_t n, float m, float* entropy_part, float* sum_sq) {
    float sum = 0.0f, dot = 0.0f, sq = 0.0f;
#pragma omp simd reduction(+ : sum, dot, sq)
    for (int64_t k = 0; k < n; ++k) {
        const float x = s[k] - m;
        const float p = cpu::exp_approx(x);
        s[k] = p;
        sum += p;
        sq += p * p;
        dot += p > 0.0f ? p * x : 0.0f;
    }
    *entropy_part = dot;
    *sum_sq = sq;
    return sum;
}

// Σ p·ln p over a row of final probabilities (sigmoid, relu statistics; rare, so scalar logs).
float p_log_p_sum(const float* p, int64_t n) {
    float sum = 0.0f;
    for (int64_t k = 0; k < n; ++k)
        if (p[k] > 0.0f) sum += p[k] * std::log(p[k]);
    return sum;
}

// col[k] += e^(s[k] - lse) for the kept entries (column sums of softmax rows).
__attribute__((target_clones("avx512f", "avx2", "default")))
void add_softmax_probabilities(float* col, const float* s, int64_t n, float lse) {
#pragma omp simd
    for (int64_t k = 0; k < n; ++k) col[k] += cpu::exp_approx(s[k] - lse);
}

// s = σ(s + bias); returns Σ s.
__attribute__((target_clones("avx512f", "avx2", "default")))
float sigmoid_sum(float* s, int64_t n, float bias) {
    float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
    for (int64_t k = 0; k < n; ++k) {
        s[k] = 1.0f / (1.0f + cpu::exp_approx(-(s[k] + bias)));
        sum += s[k];
    }
    return sum;
}

// s = max(s, 0); returns Σ s and counts the kept (finite) entries.
__attribute__((target_clones("avx512f", "avx2", "default")))
float relu_sum(float* s, int64_t n, int64_t* kept) {
    float sum = 0.0f;
    int64_t count = 0;
#pragma omp simd reduction(+ : sum, count)
    for (int64_t k = 0; k < n; ++k) {
        count += s[k] != kNegInf;
        s[k] = std::max(s[k], 0.0f);
        sum += s[k];
    }
    *kept += count;
    return sum;
}

__attribute__((target_clones("avx512f", "avx2", "default")))
void scale_row(float* x, int64_t n, float f) {
#pragma omp simd
    for (int64_t k = 0; k < n; ++k) x[k] *= f;
}

__attribute__((target_clones("avx512f", "avx2", "default")))
void add_scaled_row(float* y, const float* x, int64_t n, float a) {
#pragma omp simd
    for (int64_t k = 0; k < n; ++k) y[k] += a * x[k];
}

// O (R, Dv) += P (R, n) · V (n, Dv) for few rows (decode): each V row is read once and used
// by all R rows, and the outputs of a 32-column strip stay in registers over the whole tile
// (accumulating in memory chained every FMA through a store and a reload).
// 16 floats as one GCC vector (a zmm register on AVX-512, split in two or four elsewhere).
using Vec16 = float __attribute__((vector_size(64)));
using Vec16u16 = uint16_t __attribute__((vector_size(32)));
using Vec16u32 = uint32_t __attribute__((vector_size(64)));

ATTNLAB_ALWAYS_INLINE Vec16 load16(const float* p) {
    Vec16 v;
    std::memcpy(&v, p, sizeof v);
    return v;
}
ATTNLAB_ALWAYS_INLINE Vec16 load16(const uint16_t* p) {  // bf16 -> f32 is a 16-bit shift
    Vec16u16 h;
    std::memcpy(&h, p, sizeof h);
    const Vec16u32 w = __builtin_convertvector(h, Vec16u32) << 16;
    Vec16 v;
    std::memcpy(&v, &w, sizeof v);
    return v;
}

// Columns [d0, d0 + 16·NV) of O for R rows: R·NV accumulator registers over the whole tile.
template <typename E, int R, int NV>
ATTNLAB_ALWAYS_INLINE void pv_strip(int64_t n, const float* P, int64_t ldp, const E* V, int64_t ldv, int64_t Dv,
                                    int64_t d0, float* O) {
    Vec16 acc[R][NV];
    for (int r = 0; r < R; ++r)
        for (int c = 0; c < NV; ++c) acc[r][c] = Vec16{};
    for (int64_t j = 0; j < n; ++j) {
        Vec16 v[NV];
        for (int c = 0; c < NV; ++c) v[c] = load16(V + j * ldv + d0 + 16 * c);
        for (int r = 0; r < R; ++r) {
            const float p = P[r * ldp + j];
            for (int c = 0; c < NV; ++c) acc[r][c] += p * v[c];
        }
    }
    for (int r = 0; r < R; ++r)
        for (int c = 0; c < NV; ++c)
            for (int l = 0; l < 16; ++l) O[r * Dv + d0 + 16 * c + l] += acc[r][c][l];
}

template <typename E, int R>
ATTNLAB_ALWAYS_INLINE void pv_rows(int64_t n, const float* P, int64_t ldp, const E* V, int64_t ldv, int64_t Dv,
                                   float* O) {
    // Wide strips (16 accumulators) mean fewer passes over P and V; then 16-column strips.
    constexpr int kNV = R <= 4 ? 4 : 2;
    int64_t d0 = 0;
    for (; d0 + 16 * kNV <= Dv; d0 += 16 * kNV) pv_strip<E, R, kNV>(n, P, ldp, V, ldv, Dv, d0, O);
    for (; d0 + 16 <= Dv; d0 += 16) pv_strip<E, R, 1>(n, P, ldp, V, ldv, Dv, d0, O);
    for (; d0 < Dv; ++d0)  // leftover columns (Dv not a multiple of 16)
        for (int r = 0; r < R; ++r) {
            float acc = 0.0f;
            for (int64_t j = 0; j < n; ++j) acc += P[r * ldp + j] * to_float(V[j * ldv + d0]);
            O[r * Dv + d0] += acc;
        }
}

template <typename E>
ATTNLAB_ALWAYS_INLINE void pv_small(int64_t R, int64_t n, const float* P, int64_t ldp, const E* V, int64_t ldv, int64_t Dv,
                              float* O) {
    switch (R) {
        case 1: return pv_rows<E, 1>(n, P, ldp, V, ldv, Dv, O);
        case 2: return pv_rows<E, 2>(n, P, ldp, V, ldv, Dv, O);
        case 3: return pv_rows<E, 3>(n, P, ldp, V, ldv, Dv, O);
        case 4: return pv_rows<E, 4>(n, P, ldp, V, ldv, Dv, O);
        case 5: return pv_rows<E, 5>(n, P, ldp, V, ldv, Dv, O);
        case 6: return pv_rows<E, 6>(n, P, ldp, V, ldv, Dv, O);
        case 7: return pv_rows<E, 7>(n, P, ldp, V, ldv, Dv, O);
        default: return pv_rows<E, 8>(n, P, ldp, V, ldv, Dv, O);
    }
}

__attribute__((target_clones("avx512f", "avx2", "default")))
void pv_small_f32(int64_t R, int64_t n, const float* P, int64_t ldp, const float* V, int64_t ldv, int64_t Dv,
                  float* O) {
    pv_small<float>(R, n, P, ldp, V, ldv, Dv, O);
}
__attribute__((target_clones("avx512f", "avx2", "default")))
void pv_small_bf16(int64_t R, int64_t n, const float* P, int64_t ldp, const uint16_t* V, int64_t ldv, int64_t Dv,
                   float* O) {
    pv_small<uint16_t>(R, n, P, ldp, V, ldv, Dv, O);
}

// Decode over a tile of positions for every kv head, position by position: all heads of a
// position are adjacent in the cache, so the reads walk whole rows in address order and the
// hardware prefetchers keep streaming (per-head loops read 1/Hkv of each row and run at memory
// latency instead). heads: (kv head index, rows) pairs; q rows are (R, D) per kv head,
// S is (n_kv·R, ld_s), O is (n_kv·R, Dv).
// The lane sums of 16 vectors at once: lane i of the result is the sum of a[i]'s lanes.
// Four levels halve the group width while keeping the groups in order; 30 shuffles and 15 adds
// for 16 sums instead of 4 + 4 each.
ATTNLAB_ALWAYS_INLINE Vec16 sum_lanes16(const Vec16* a) {
    Vec16 c[8], d[4], e[2];
    for (int k = 0; k < 8; ++k)
        c[k] = __builtin_shufflevector(a[2 * k], a[2 * k + 1], 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23) +
               __builtin_shufflevector(a[2 * k], a[2 * k + 1], 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31);
    for (int k = 0; k < 4; ++k)
        d[k] = __builtin_shufflevector(c[2 * k], c[2 * k + 1], 0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27) +
               __builtin_shufflevector(c[2 * k], c[2 * k + 1], 4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23, 28, 29, 30, 31);
    for (int k = 0; k < 2; ++k)
        e[k] = __builtin_shufflevector(d[2 * k], d[2 * k + 1], 0, 1, 4, 5, 8, 9, 12, 13, 16, 17, 20, 21, 24, 25, 28, 29) +
               __builtin_shufflevector(d[2 * k], d[2 * k + 1], 2, 3, 6, 7, 10, 11, 14, 15, 18, 19, 22, 23, 26, 27, 30, 31);
    return __builtin_shufflevector(e[0], e[1], 0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30) +
           __builtin_shufflevector(e[0], e[1], 1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
}

// Keys scored per step for R query rows: R·P <= 16 dot products share one sum_lanes16.
template <int R>
constexpr int keys_per_step() { return R == 1 ? 8 : 16 / R; }

// out[r·ld_out + p] = q_r · k_p for the R query rows and P key rows: each key vector is loaded
// once for all rows and each query vector once for all keys.
template <typename E, int R, int P>
ATTNLAB_ALWAYS_INLINE void dot_rows(const float* q, int64_t D, const E* const* k, float* out, int64_t ld_out) {
    Vec16 acc[16];
    for (int i = 0; i < 16; ++i) acc[i] = Vec16{};  // (an `= {}` initialiser became a rep stos)
    int64_t d = 0;
    for (; d + 16 <= D; d += 16) {
        Vec16 kv[P];
        for (int p = 0; p < P; ++p) kv[p] = load16(k[p] + d);
        for (int r = 0; r < R; ++r) {
            const Vec16 qv = load16(q + r * D + d);
            for (int p = 0; p < P; ++p) acc[p * R + r] += qv * kv[p];
        }
    }
    const Vec16 sums = sum_lanes16(acc);
    for (int p = 0; p < P; ++p)
        for (int r = 0; r < R; ++r) {
            float sum = sums[p * R + r];
            for (int64_t e = d; e < D; ++e) sum += q[r * D + e] * to_float(k[p][e]);
            out[r * ld_out + p] = sum;
        }
}

template <typename E, int R>
ATTNLAB_ALWAYS_INLINE void decode_scores_rows(int64_t n, int64_t n_kv, const uint8_t* active, const float* q, int64_t D,
                                              const E* k, int64_t k_stride, float* S, int64_t ld_s,
                                              const char* prefetch, int64_t prefetch_stride, int64_t prefetch_bytes) {
    constexpr int P = keys_per_step<R>();
    for (int64_t j = 0; j < n;) {
        const int64_t keys = std::min<int64_t>(P, n - j);
        // Meanwhile these positions' V rows are requested, in address order, for the per-head
        // P·V that follows (which then reads them from cache instead of at 4 KiB strides).
        // (One request per 128 bytes: the L2's adjacent-line prefetcher completes the pair.)
        for (int64_t p = 0; p < keys; ++p)
            for (int64_t b = 0; b < prefetch_bytes; b += 128) __builtin_prefetch(prefetch + (j + p) * prefetch_stride + b);
        for (int64_t g = 0; g < n_kv; ++g) {
            if (!active[g]) continue;
            const E* rows[P];
            for (int p = 0; p < P; ++p) rows[p] = k + (j + std::min<int64_t>(p, keys - 1)) * k_stride + g * D;
            float* out = S + g * R * ld_s + j;
            if (keys == P) {
                dot_rows<E, R, P>(q + g * R * D, D, rows, out, ld_s);
            } else {
                for (int64_t p = 0; p < keys; ++p) dot_rows<E, R, 1>(q + g * R * D, D, rows + p, out + p, ld_s);
            }
        }
        j += keys;
    }
}

template <typename E>
ATTNLAB_ALWAYS_INLINE void decode_scores(int64_t n, int64_t n_kv, const uint8_t* active, int64_t R, const float* q,
                                         int64_t D, const E* k, int64_t k_stride, float* S, int64_t ld_s,
                                         const char* pf, int64_t pf_stride, int64_t pf_bytes) {
    switch (R) {
        case 1: return decode_scores_rows<E, 1>(n, n_kv, active, q, D, k, k_stride, S, ld_s, pf, pf_stride, pf_bytes);
        case 2: return decode_scores_rows<E, 2>(n, n_kv, active, q, D, k, k_stride, S, ld_s, pf, pf_stride, pf_bytes);
        case 3: return decode_scores_rows<E, 3>(n, n_kv, active, q, D, k, k_stride, S, ld_s, pf, pf_stride, pf_bytes);
        case 4: return decode_scores_rows<E, 4>(n, n_kv, active, q, D, k, k_stride, S, ld_s, pf, pf_stride, pf_bytes);
        case 5: return decode_scores_rows<E, 5>(n, n_kv, active, q, D, k, k_stride, S, ld_s, pf, pf_stride, pf_bytes);
        case 6: return decode_scores_rows<E, 6>(n, n_kv, active, q, D, k, k_stride, S, ld_s, pf, pf_stride, pf_bytes);
        case 7: return decode_scores_rows<E, 7>(n, n_kv, active, q, D, k, k_stride, S, ld_s, pf, pf_stride, pf_bytes);
        default: return decode_scores_rows<E, 8>(n, n_kv, active, q, D, k, k_stride, S, ld_s, pf, pf_stride, pf_bytes);
    }
}

__attribute__((target_clones("avx512f", "avx2", "default")))
void decode_scores_f32(int64_t n, int64_t n_kv, const uint8_t* active, int64_t R, const float* q, int64_t D,
                       const float* k, int64_t k_stride, float* S, int64_t ld_s, const char* pf, int64_t pf_stride,
                       int64_t pf_bytes) {
    decode_scores<float>(n, n_kv, active, R, q, D, k, k_stride, S, ld_s, pf, pf_stride, pf_bytes);
}
__attribute__((target_clones("avx512f", "avx2", "default")))
void decode_scores_bf16(int64_t n, int64_t n_kv, const uint8_t* active, int64_t R, const float* q, int64_t D,
                        const uint16_t* k, int64_t k_stride, float* S, int64_t ld_s, const char* pf, int64_t pf_stride,
                        int64_t pf_bytes) {
    decode_scores<uint16_t>(n, n_kv, active, R, q, D, k, k_stride, S, ld_s, pf, pf_stride, pf_bytes);
}
}  // namespace attnlab::detail
