// The tiled CPU attention kernel (flash-style online normalisation) for every spec.
//
// Work item = (batch, kv head, block of query positions). The query rows of every head that
// reads the kv head are stacked into one (R, D) matrix (R ≈ 112 rows: 8 micro-panels of the
// AVX-512 GEMM), pre-multiplied by the scale, so each key tile is loaded once for the whole
// GQA group. For each key tile of kKeyTile positions the masks `visit` the tile first:
//   Skip    -> the tile costs nothing (block-sparse masks cost ∝ the tiles they keep);
//   Full    -> no per-element mask work;
//   Partial -> only the masks that said Partial run `mask_span` on the tile's rows.
// Scores S = Q·Kᵀ and the update O += P·V run through the matmul kernel (cpu::linear); decode
// (R <= 8) takes the GEMV path for S and a streaming axpy for P·V, since both are bound by
// reading K and V once. The running row max m and sum l are kept per row; nothing T×S is
// allocated unless the caller asked for scores or pattern.
#include "attention/call.h"

#include <attnlab/error.h>
#include <attnlab/half.h>
#include <attnlab/tensor.h>
#include <attnlab/threads.h>

#include "kernels/cpu/matmul.h"
#include "kernels/cpu/vec_math.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <cstdlib>
#include <limits>
#include <new>
#include <vector>

namespace attnlab::detail {

namespace {

constexpr int64_t kKeyTile = 256;      // keys per tile
constexpr int64_t kTargetRows = 224;   // stacked query rows per work item
constexpr int64_t kSmallRows = 8;      // up to this many rows P·V streams V (decode)
constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// Inlined into each target_clones caller, so the helpers get that clone's instruction set.
#define ATTNLAB_ALWAYS_INLINE inline __attribute__((always_inline))

inline __attribute__((always_inline)) float to_float(float x) { return x; }
inline __attribute__((always_inline)) float to_float(uint16_t x) { return bf16_to_f32(x); }

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

// s = e^(s - m) (0 where s = -inf); returns Σ s.
__attribute__((target_clones("avx512f", "avx2", "default")))
float exp_shift_sum(float* s, int64_t n, float m) {
    float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
    for (int64_t k = 0; k < n; ++k) {
        s[k] = cpu::exp_approx(s[k] - m);
        sum += s[k];
    }
    return sum;
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

template <typename E, int R>
ATTNLAB_ALWAYS_INLINE void pv_rows(int64_t n, const float* P, int64_t ldp, const E* V, int64_t ldv, int64_t Dv,
                                   float* O) {
    int64_t d0 = 0;
    for (; d0 + 32 <= Dv; d0 += 32) {  // a 32-column strip: 2·R accumulator registers
        Vec16 acc[R][2] = {};
        for (int64_t j = 0; j < n; ++j) {
            const Vec16 v0 = load16(V + j * ldv + d0), v1 = load16(V + j * ldv + d0 + 16);
            for (int r = 0; r < R; ++r) {
                const float p = P[r * ldp + j];
                acc[r][0] += p * v0;
                acc[r][1] += p * v1;
            }
        }
        for (int r = 0; r < R; ++r)
            for (int l = 0; l < 16; ++l) {
                O[r * Dv + d0 + l] += acc[r][0][l];
                O[r * Dv + d0 + 16 + l] += acc[r][1][l];
            }
    }
    for (; d0 < Dv; ++d0)  // leftover columns (Dv not a multiple of 32)
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

// ---- one work item ----

// A grow-only, 64-byte aligned float buffer (the GEMM's packed panels are read with aligned loads).
class AlignedFloats {
public:
    AlignedFloats() = default;
    AlignedFloats(const AlignedFloats&) = delete;
    AlignedFloats& operator=(const AlignedFloats&) = delete;
    ~AlignedFloats() { std::free(data_); }
    void reserve(size_t count) {
        if (count <= capacity_) return;
        std::free(data_);
        data_ = static_cast<float*>(std::aligned_alloc(64, (count * sizeof(float) + 63) / 64 * 64));
        capacity_ = data_ ? count : 0;
        if (!data_) throw std::bad_alloc();
    }
    float* data() const { return data_; }

private:
    float* data_ = nullptr;
    size_t capacity_ = 0;
};

struct Workspace {
    std::vector<float> q;  // (R, D) stacked, scaled queries
    std::vector<float> s;  // (R, kKeyTile) scores, then probabilities
    std::vector<float> o;  // (R, Dv) unnormalised output
    std::vector<float> m, l;
    std::vector<int64_t> kept;
    std::vector<TileVisit> head_visit;     // (heads)
    std::vector<uint8_t> mask_partial;     // (heads, masks)
    // K and V tiles of one (batch, kv head) packed for the GEMM, each once per thread and
    // reused by every query block the thread runs for that head.
    AlignedFloats packed_k;  // per tile: (kKeyTile / w, D, w) panels
    AlignedFloats packed_v;  // per tile: (ceil(Dv / w), n, w) panels
    std::vector<uint8_t> tile_packed;
    int64_t packed_b = -1, packed_hk = -1;
};

class TiledAttention {
public:
    explicit TiledAttention(const AttentionCall& call)
        : c_(call), in_(*call.in), out_(*call.out), esize_(in_.dtype == DType::BF16 ? 2 : 4) {
        kv_begin_ = c_.head_begin / c_.group;
        kv_end_ = (c_.head_end - 1) / c_.group + 1;
        // Heads per kv head actually computed (all of the group unless a head range cuts it).
        heads_ = std::min<int64_t>(c_.group, c_.head_end - c_.head_begin);
        block_ = std::max<int64_t>(1, std::min(in_.T, (kTargetRows + heads_ - 1) / heads_));
        n_blocks_ = (in_.T + block_ - 1) / block_;
        want_rows_ = out_.scores != nullptr || out_.pattern != nullptr;
        panel_ = cpu::packed_panel_width();
        dv_padded_ = (in_.Dv + panel_ - 1) / panel_ * panel_;
    }

    // The same walk as run() without computing anything: which tiles are kept.
    AttentionWork count() {
        AttentionWork work;
        const double row_flops = 2.0 * double(in_.D + in_.Dv);
        work.dense_flops = row_flops * double(in_.B) * double(c_.head_end - c_.head_begin) * double(in_.T) * double(in_.S);
        Workspace w;
        for (int64_t b = 0; b < in_.B; ++b)
            for (int64_t hk = kv_begin_; hk < kv_end_; ++hk)
                for (int64_t t0 = 0; t0 < in_.T; t0 += block_) {
                    const int64_t rows = std::min(block_, in_.T - t0);
                    const int64_t first_head = std::max(hk * c_.group, c_.head_begin);
                    const int64_t n_heads = std::min((hk + 1) * c_.group, c_.head_end) - first_head;
                    w.head_visit.resize(static_cast<size_t>(n_heads));
                    w.mask_partial.resize(static_cast<size_t>(n_heads) * c_.masks.size());
                    auto [i_lo, i_hi] = std::minmax_element(c_.positions.begin() + t0, c_.positions.begin() + t0 + rows);
                    for (int64_t j0 = 0; j0 < in_.S; j0 += kKeyTile) {
                        const int64_t n = std::min(kKeyTile, in_.S - j0);
                        ++work.tiles;
                        if (!visit_tile(w, b, first_head, n_heads, *i_lo, *i_hi, j0, n)) continue;
                        ++work.kept_tiles;
                        work.partial_tiles += std::any_of(w.head_visit.begin(), w.head_visit.end(),
                                                          [](TileVisit v) { return v == TileVisit::Partial; });
                        work.flops += row_flops * double(n_heads * rows) * double(n);
                        work.kv_bytes += double(n) * double(in_.D + in_.Dv) * double(esize_);
                    }
                }
        return work;
    }

    void run() {
        const int64_t n_kv = kv_end_ - kv_begin_;
        const int64_t items = in_.B * n_kv * n_blocks_;
        parallel_for(items, [&](int64_t begin, int64_t end, int) {
            thread_local Workspace w;  // the pool's threads persist: buffers are reused across calls
            w.packed_b = w.packed_hk = -1;  // K and V are new in every call
            for (int64_t item = begin; item < end; ++item) {
                const int64_t b = item / (n_kv * n_blocks_);
                const int64_t hk = kv_begin_ + item / n_blocks_ % n_kv;
                // Blocks from both ends alternate, so contiguous chunks of items carry equal
                // causal work.
                const int64_t k = item % n_blocks_;
                const int64_t blk = k % 2 == 0 ? k / 2 : n_blocks_ - 1 - k / 2;
                process(w, b, hk, blk * block_, std::min(block_, in_.T - blk * block_));
            }
        });
    }

private:
    const char* at(const void* base, int64_t element) const {
        return static_cast<const char*>(base) + element * esize_;
    }
    // Row r of the stacked matrix is head first_head + r / rows, query t0 + r % rows.
    void process(Workspace& w, int64_t b, int64_t hk, int64_t t0, int64_t rows) {
        const int64_t first_head = std::max(hk * c_.group, c_.head_begin);
        const int64_t last_head = std::min((hk + 1) * c_.group, c_.head_end);  // exclusive
        const int64_t n_heads = last_head - first_head;
        const int64_t R = n_heads * rows, D = in_.D, Dv = in_.Dv;
        const size_t n_masks = c_.masks.size();
        w.q.resize(static_cast<size_t>(R * D));
        w.s.resize(static_cast<size_t>(R * kKeyTile));
        w.o.assign(static_cast<size_t>(R * Dv), 0.0f);
        w.m.assign(static_cast<size_t>(R), kNegInf);
        w.l.assign(static_cast<size_t>(R), 0.0f);
        w.kept.assign(static_cast<size_t>(R), 0);
        w.head_visit.resize(static_cast<size_t>(n_heads));
        w.mask_partial.resize(static_cast<size_t>(n_heads) * n_masks);

        const float scale = static_cast<float>(c_.scale);
        int64_t i_lo = c_.positions[t0], i_hi = i_lo;
        for (int64_t r = 0; r < R; ++r) {
            const int64_t h = first_head + r / rows, t = t0 + r % rows;
            const char* src = at(in_.q, b * in_.q_batch_stride + t * in_.q_stride + h * D);
            float* dst = w.q.data() + r * D;
            if (in_.dtype == DType::BF16) {
                for (int64_t d = 0; d < D; ++d) dst[d] = bf16_to_f32(reinterpret_cast<const uint16_t*>(src)[d]) * scale;
            } else {
                for (int64_t d = 0; d < D; ++d) dst[d] = reinterpret_cast<const float*>(src)[d] * scale;
            }
            i_lo = std::min(i_lo, c_.positions[t]);
            i_hi = std::max(i_hi, c_.positions[t]);
        }
        if (want_rows_) {
            for (int64_t r = 0; r < R; ++r) std::fill_n(row_buffer(b, first_head + r / rows, t0 + r % rows), in_.S, kNegInf);
        }

        const bool packed = R > kSmallRows;
        for (int64_t j0 = 0; j0 < in_.S; j0 += kKeyTile) {
            const int64_t n = std::min(kKeyTile, in_.S - j0);
            if (!visit_tile(w, b, first_head, n_heads, i_lo, i_hi, j0, n)) continue;
            // S (R, n) = Q (R, D) · K[j0 : j0+n]ᵀ
            const char* k_tile = at(in_.k, b * in_.k_batch_stride + j0 * in_.k_stride + hk * D);
            const char* v_tile = at(in_.v, b * in_.v_batch_stride + j0 * in_.v_stride + hk * Dv);
            if (packed) {
                pack_tile(w, b, hk, j0, n, k_tile, v_tile);
                cpu::linear_packed(w.q.data(), D, packed_k(w, j0), D * panel_, 0, n, D, w.s.data(), kKeyTile, R, false);
            } else {
                Tensor k_view = Tensor::wrap(const_cast<char*>(k_tile), in_.dtype, {n, D}, {in_.k_stride, 1});
                cpu::linear(w.q.data(), D, k_view, nullptr, w.s.data(), kKeyTile, R);
            }
            for (int64_t r = 0; r < R; ++r) {
                const int64_t gh = r / rows, h = first_head + gh, t = t0 + r % rows;
                float* s = w.s.data() + r * kKeyTile;
                if (w.head_visit[gh] == TileVisit::Skip) {
                    std::fill_n(s, n, 0.0f);
                    continue;
                }
                const RowSpan span{b, h, hk, c_.positions[t], j0, n, &c_.ctx};
                for (const Mechanism* m : c_.score_mods) m->modify_span(span, s);
                for (size_t mi = 0; mi < n_masks; ++mi)
                    if (w.mask_partial[gh * n_masks + mi]) c_.masks[mi]->mask_span(span, s);
                if (want_rows_) std::copy_n(s, n, row_buffer(b, h, t) + j0);
                normalise_tile_row(w, r, s, n);
            }
            // O (R, Dv) += P (R, n) · V[j0 : j0+n] (n, Dv)
            if (packed) {
                cpu::linear_packed(w.s.data(), kKeyTile, packed_v(w, j0), n * panel_, 0, Dv, n, w.o.data(), Dv, R, true);
            } else if (R <= kSmallRows) {
                if (in_.dtype == DType::BF16)
                    pv_small_bf16(R, n, w.s.data(), kKeyTile, reinterpret_cast<const uint16_t*>(v_tile), in_.v_stride, Dv, w.o.data());
                else
                    pv_small_f32(R, n, w.s.data(), kKeyTile, reinterpret_cast<const float*>(v_tile), in_.v_stride, Dv, w.o.data());
            } else {
                Tensor v_view = Tensor::wrap(const_cast<char*>(v_tile), in_.dtype, {Dv, n}, {1, in_.v_stride});
                cpu::linear(w.s.data(), kKeyTile, v_view, nullptr, w.o.data(), Dv, R, /*accumulate=*/true);
            }
        }
        finish(w, b, first_head, t0, rows, R);
    }

    float* packed_k(Workspace& w, int64_t j0) const { return w.packed_k.data() + j0 / kKeyTile * kKeyTile * in_.D; }
    float* packed_v(Workspace& w, int64_t j0) const { return w.packed_v.data() + j0 / kKeyTile * kKeyTile * dv_padded_; }

    // Packs the K and V tile at j0 unless this thread already did for this (batch, kv head).
    void pack_tile(Workspace& w, int64_t b, int64_t hk, int64_t j0, int64_t n, const char* k_tile, const char* v_tile) {
        const int64_t n_tiles = (in_.S + kKeyTile - 1) / kKeyTile, tile = j0 / kKeyTile;
        if (w.packed_b != b || w.packed_hk != hk) {
            w.packed_b = b;
            w.packed_hk = hk;
            w.tile_packed.assign(static_cast<size_t>(n_tiles), 0);
            const size_t k_size = static_cast<size_t>(n_tiles * kKeyTile * in_.D);
            const size_t v_size = static_cast<size_t>(n_tiles * kKeyTile * dv_padded_);
            w.packed_k.reserve(k_size);
            w.packed_v.reserve(v_size);
        }
        if (w.tile_packed[tile]) return;
        w.tile_packed[tile] = 1;
        cpu::pack_weight_panels(Tensor::wrap(const_cast<char*>(k_tile), in_.dtype, {n, in_.D}, {in_.k_stride, 1}),
                                packed_k(w, j0));
        cpu::pack_weight_panels(Tensor::wrap(const_cast<char*>(v_tile), in_.dtype, {in_.Dv, n}, {1, in_.v_stride}),
                                packed_v(w, j0));
    }

    // Asks each mask about the tile for every head; false if every head skips it.
    bool visit_tile(Workspace& w, int64_t b, int64_t first_head, int64_t n_heads, int64_t i_lo, int64_t i_hi,
                    int64_t j0, int64_t n) {
        const size_t n_masks = c_.masks.size();
        bool any = false;
        for (int64_t gh = 0; gh < n_heads; ++gh) {
            const TileCoord tile{b, first_head + gh, i_lo, i_hi, j0, j0 + n - 1, &c_.ctx};
            TileVisit verdict = TileVisit::Full;
            for (size_t mi = 0; mi < n_masks && verdict != TileVisit::Skip; ++mi) {
                const TileVisit v = c_.masks[mi]->visit(tile);
                w.mask_partial[gh * n_masks + mi] = v == TileVisit::Partial;
                if (v == TileVisit::Skip) verdict = TileVisit::Skip;
                else if (v == TileVisit::Partial) verdict = TileVisit::Partial;
            }
            w.head_visit[gh] = verdict;
            any |= verdict != TileVisit::Skip;
        }
        return any;
    }

    // Turns row r's scores into this tile's probabilities, rescaling the row's running state.
    void normalise_tile_row(Workspace& w, int64_t r, float* s, int64_t n) {
        switch (c_.normalizer.kind) {
            case NormalizerKind::Softmax: {
                const float tile_max = row_max(s, n);
                if (tile_max == kNegInf) {  // nothing kept in this tile
                    std::fill_n(s, n, 0.0f);
                    return;
                }
                const float m_new = std::max(w.m[r], tile_max);
                if (w.m[r] != m_new) {
                    const float alpha = cpu::exp_approx(w.m[r] - m_new);  // 0 on the first kept tile
                    w.l[r] *= alpha;
                    scale_row(w.o.data() + r * in_.Dv, in_.Dv, alpha);
                    w.m[r] = m_new;
                }
                w.l[r] += exp_shift_sum(s, n, m_new);
                return;
            }
            case NormalizerKind::Sigmoid:
                w.l[r] += sigmoid_sum(s, n, static_cast<float>(c_.normalizer.bias));
                return;
            case NormalizerKind::Relu:
                w.l[r] += relu_sum(s, n, &w.kept[r]);
                return;
        }
    }

    // Normalises the outputs, writes out / lse, and turns stored score rows into probabilities.
    void finish(Workspace& w, int64_t b, int64_t first_head, int64_t t0, int64_t rows, int64_t R) {
        for (int64_t r = 0; r < R; ++r) {
            const int64_t h = first_head + r / rows, t = t0 + r % rows;
            float* o = w.o.data() + r * in_.Dv;
            float factor = 1.0f;
            double lse = -std::numeric_limits<double>::infinity();
            bool empty = false;
            switch (c_.normalizer.kind) {
                case NormalizerKind::Softmax: {
                    empty = w.m[r] == kNegInf;
                    if (empty) break;
                    double m = w.m[r];
                    const std::vector<double> extra = c_.extra_logits_of(h);
                    for (double e : extra) m = std::max(m, e);
                    double z = double(w.l[r]) * std::exp(double(w.m[r]) - m);
                    for (double e : extra) z += std::exp(e - m);
                    factor = static_cast<float>(std::exp(double(w.m[r]) - m) / z);
                    lse = m + std::log(z);
                    break;
                }
                case NormalizerKind::Sigmoid:
                    lse = std::log(double(w.l[r]));
                    break;
                case NormalizerKind::Relu:
                    empty = w.kept[r] == 0;
                    if (empty) break;
                    factor = 1.0f / float(w.kept[r]);
                    lse = std::log(double(w.l[r]) / double(w.kept[r]));
                    break;
            }
            float* dst = out_.out + b * out_.out_batch_stride + t * out_.out_stride + h * in_.Dv;
            for (int64_t d = 0; d < in_.Dv; ++d) dst[d] = empty ? 0.0f : o[d] * factor;
            if (out_.lse) out_.lse[(b * in_.T + t) * in_.H + h] = static_cast<float>(lse);
            if (want_rows_) finish_rows(b, h, t, lse, w.kept[r]);
        }
    }

    // The stored (modified, masked) score row -> `scores` and/or probabilities in `pattern`.
    void finish_rows(int64_t b, int64_t h, int64_t t, double lse, int64_t kept) {
        const int64_t offset = ((b * in_.H + h) * in_.T + t) * in_.S;
        const float* s = (out_.scores ? out_.scores : out_.pattern) + offset;
        if (!out_.pattern) return;
        float* p = out_.pattern + offset;
        const float lse_f = static_cast<float>(lse);
        for (int64_t j = 0; j < in_.S; ++j) {
            const float x = s[j];
            float v = 0.0f;
            if (x != kNegInf) {
                switch (c_.normalizer.kind) {
                    case NormalizerKind::Softmax: v = lse_f == kNegInf ? 0.0f : std::exp(x - lse_f); break;
                    case NormalizerKind::Sigmoid: v = 1.0f / (1.0f + std::exp(-(x + float(c_.normalizer.bias)))); break;
                    case NormalizerKind::Relu: v = std::max(x, 0.0f) / float(kept); break;
                }
            }
            p[j] = v;
        }
    }

    float* row_buffer(int64_t b, int64_t h, int64_t t) const {
        float* base = out_.scores ? out_.scores : out_.pattern;
        return base + ((b * in_.H + h) * in_.T + t) * in_.S;
    }

    const AttentionCall& c_;
    const AttentionInputs& in_;
    const AttentionOutputs& out_;
    const int64_t esize_;
    int64_t kv_begin_ = 0, kv_end_ = 0, heads_ = 1, block_ = 1, n_blocks_ = 1;
    bool want_rows_ = false;
    int64_t panel_ = 1, dv_padded_ = 0;  // GEMM panel width; Dv rounded up to it
};

}  // namespace

void attention_tiled_cpu(const AttentionCall& call) { TiledAttention(call).run(); }
AttentionWork attention_tiled_cpu_work(const AttentionCall& call) { return TiledAttention(call).count(); }

}  // namespace attnlab::detail
