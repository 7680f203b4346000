// The tiled CPU attention kernel (flash-style online normalisation) for every spec.
//
// Work item = (batch, kv head, block of query positions). The query rows of every head that
// reads the kv head are stacked into one (R, D) matrix (R ≈ 224 rows: 16 micro-panels of the
// AVX-512 GEMM), pre-multiplied by the scale and packed for the GEMM once per item, so each key
// tile is loaded once for the whole GQA group. For each key tile of kKeyTile positions the masks
// `visit` the tile first:
//   Skip    -> the tile costs nothing (block-sparse masks cost ∝ the tiles they keep);
//   Full    -> no per-element mask work;
//   Partial -> only the masks that said Partial run `mask_span` on the tile's rows.
// Scores S = Q·Kᵀ and the update O += P·V run through the matmul kernel on K/V tiles packed
// once per thread and kv head (cpu::linear_prepacked, cpu::linear_packed). Decode (<= 8
// stacked rows per kv head) splits the keys across threads instead (split-KV: each item walks
// 64-position tiles for every kv head, see decode_tile) and merges the partial (m, l, O) at
// the end; a single short tile goes through the GEMV and a register-blocked P·V. The running
// row max m and sum l are kept per row; nothing T×S is allocated unless the caller asked for
// scores or pattern.
#include "attention/call.h"
#include "attention/families/tile_kernels.h"
#include "attention/families/tile_stats.h"

#include <attnlab/error.h>
#include <attnlab/half.h>
#include <attnlab/tensor.h>
#include <attnlab/threads.h>

#include "kernels/cpu/matmul.h"
#include "kernels/cpu/scratch_buffer.h"
#include "kernels/cpu/vec_math.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <cstdlib>
#include <limits>
#include <mutex>
#include <new>
#include <vector>

namespace attnlab::detail {

namespace {

constexpr int64_t kKeyTile = 256;      // keys per tile
constexpr int64_t kTargetRows = 224;   // stacked query rows per work item
constexpr int64_t kSmallRows = 8;      // up to this many rows P·V streams V (decode)
constexpr int64_t kDecodeTile = 64;    // split-KV tile: 64 positions of K and V (all kv heads) stay in L2
// Column sums keep a work item's unnormalised probabilities (R, S) while it runs when they fit
// in this many bytes per thread (S up to ~70k at 224 rows); longer rows recompute instead.
constexpr int64_t kColumnStoreBytes = int64_t(64) << 20;
constexpr float kNegInf = -std::numeric_limits<float>::infinity();


// ---- work items ----

// The query rows of one (batch, kv head, block of queries) stacked into one matrix — row r is
// head first_head + r / rows at query t0 + r % rows — and their running state.
struct RowGroup {
    int64_t b = 0, hk = 0, t0 = 0, rows = 0, first_head = 0, n_heads = 0, R = 0;
    int64_t i_lo = 0, i_hi = 0;  // bounds of the rows' query positions
    float* q = nullptr;          // (R, D) scaled queries
    float* o = nullptr;          // (R, Dv) unnormalised output
    float* m = nullptr;          // (R) running max (softmax)
    float* l = nullptr;          // (R) running sum of p
    int64_t* kept = nullptr;     // (R) kept keys (relu)
    float* acc = nullptr;        // (R, stats width) statistics accumulators (see tile_stats.h)
    float* top_s = nullptr;      // (R) best score so far (statistics)
    int64_t* top_j = nullptr;    // (R) its key
};

struct Workspace {
    // State of the row groups a work item carries (one, or every kv head for split keys).
    std::vector<float> q, o, m, l;
    // The group's scaled queries packed once for the GEMM (stacked groups, R > kSmallRows): every
    // key tile's Q·Kᵀ reads them instead of repacking Q.
    cpu::ScratchBuffer q_packed;           // (cpu::packed_rows_size(R, D))
    std::vector<int64_t> kept;
    std::vector<float> acc, top_s;         // statistics (see RowGroup)
    std::vector<int64_t> top_j;
    std::vector<float> columns;            // (heads, S) column sums of one work item
    std::vector<float> s;                  // (R, kKeyTile) scores, then probabilities
    // Column sums by storing (see reduce_stored_columns): the item's p̃ rows, which tiles were
    // kept, and each row's running max after each tile (softmax: p̃ is relative to it).
    cpu::ScratchBuffer p_store;            // (R, ld_store) scores, then p̃, written tile by tile
    std::vector<uint8_t> tile_kept;        // (tiles)
    std::vector<float> tile_m;             // (tiles, R)
    std::vector<TileVisit> head_visit;     // (heads)
    std::vector<uint8_t> mask_partial;     // (heads, masks)
    // K and V tiles of one (batch, kv head) packed for the GEMM, each once per thread and
    // reused by every query block the thread runs for that head.
    cpu::ScratchBuffer packed_k;  // per tile: (kKeyTile / w, D, w) panels
    cpu::ScratchBuffer packed_v;  // per tile: (ceil(Dv / w), n, w) panels
    std::vector<uint8_t> tile_packed;
    int64_t packed_b = -1, packed_hk = -1;
    // Split keys: per kv head whether the tile is kept, and the per-head visits of all groups.
    std::vector<uint8_t> group_active, group_partial;
    std::vector<TileVisit> group_visit;
};

class TiledAttention {
public:
    explicit TiledAttention(const AttentionCall& call)
        : c_(call), in_(*call.in), out_(*call.out), esize_(in_.dtype == DType::BF16 ? 2 : 4),
          stats_(out_.stats, in_, call.normalizer) {
        kv_begin_ = c_.head_begin / c_.group;
        kv_end_ = (c_.head_end - 1) / c_.group + 1;
        n_kv_ = kv_end_ - kv_begin_;
        // Heads per kv head actually computed (all of the group unless a head range cuts it).
        heads_ = std::min<int64_t>(c_.group, c_.head_end - c_.head_begin);
        block_ = std::max<int64_t>(1, std::min(in_.T, (kTargetRows + heads_ - 1) / heads_));
        n_blocks_ = (in_.T + block_ - 1) / block_;
        want_rows_ = out_.scores != nullptr || out_.pattern != nullptr;
        want_columns_ = out_.stats != nullptr && out_.stats->column_sum != nullptr;
        panel_ = cpu::packed_panel_width();
        dv_padded_ = (in_.Dv + panel_ - 1) / panel_ * panel_;
        // Decode-sized calls (every group fits the streaming path) split the keys instead of
        // the queries: each item streams a contiguous range of positions for all kv heads. The
        // split path lays the groups out with one row count, so a head range that cuts GQA
        // groups unevenly (per-head specs) takes the query-block path instead.
        const int64_t tiles = (in_.S + kKeyTile - 1) / kKeyTile;
        const bool even_groups = n_kv_ == 1 || (c_.head_begin % c_.group == 0 && c_.head_end % c_.group == 0);
        split_ = even_groups && heads_ * in_.T <= kSmallRows && tiles >= 2;
        chunks_ = split_ ? std::min<int64_t>(tiles, std::max<int64_t>(4 * num_threads(), 2)) : 1;
        // Column sums: keeping each item's p̃ costs one read of it at the end instead of a
        // second Q·Kᵀ and exponential per score.
        ld_store_ = (in_.S + 15) / 16 * 16;
        store_columns_ = want_columns_ && !split_ && heads_ * block_ * ld_store_ * int64_t(sizeof(float)) <= kColumnStoreBytes;
    }

    // The same walk as run() without computing anything: which tiles are kept.
    AttentionWork count() {
        AttentionWork work;
        const double row_flops = 2.0 * double(in_.D + in_.Dv);
        work.dense_flops = row_flops * double(in_.B) * double(c_.head_end - c_.head_begin) * double(in_.T) * double(in_.S);
        const int64_t tile = split_ ? kDecodeTile : kKeyTile;  // the tiles run() visits
        Workspace w;
        for (int64_t b = 0; b < in_.B; ++b)
            for (int64_t hk = kv_begin_; hk < kv_end_; ++hk)
                for (int64_t t0 = 0; t0 < in_.T; t0 += block_) {
                    const RowGroup g = describe_group(b, hk, t0, std::min(block_, in_.T - t0));
                    for (int64_t j0 = 0; j0 < in_.S; j0 += tile) {
                        const int64_t n = std::min(tile, in_.S - j0);
                        ++work.tiles;
                        if (!visit_tile(w, g, j0, n)) continue;
                        ++work.kept_tiles;
                        work.partial_tiles += std::any_of(w.head_visit.begin(), w.head_visit.end(),
                                                          [](TileVisit v) { return v == TileVisit::Partial; });
                        work.flops += row_flops * double(g.R) * double(n);
                        work.kv_bytes += double(n) * double(in_.D + in_.Dv) * double(esize_);
                    }
                }
        return work;
    }

    void run() {
        if (want_rows_) {  // masked entries stay -inf; kept tiles overwrite theirs
            float* rows = out_.scores ? out_.scores : out_.pattern;
            for (int64_t b = 0; b < in_.B; ++b)
                for (int64_t h = c_.head_begin; h < c_.head_end; ++h)
                    std::fill_n(rows + ((b * in_.H + h) * in_.T) * in_.S, in_.T * in_.S, kNegInf);
        }
        if (want_columns_) columns_.assign(static_cast<size_t>(in_.B * in_.H * in_.S), 0.0);
        if (split_) run_split_keys();
        else run_query_blocks();
        if (want_columns_)
            for (int64_t b = 0; b < in_.B; ++b)
                for (int64_t h = c_.head_begin; h < c_.head_end; ++h)
                    for (int64_t j = 0; j < in_.S; ++j) {
                        const int64_t k = (b * in_.H + h) * in_.S + j;
                        out_.stats->column_sum[k] = static_cast<float>(columns_[k]);
                    }
    }

private:
    void run_query_blocks() {
        const int64_t items = in_.B * n_kv_ * n_blocks_;
        parallel_for(items, [&](int64_t begin, int64_t end, int) {
            thread_local Workspace w;  // the pool's threads persist: buffers are reused across calls
            w.packed_b = w.packed_hk = -1;  // K and V are new in every call
            for (int64_t item = begin; item < end; ++item) {
                const int64_t b = item / (n_kv_ * n_blocks_);
                const int64_t hk = kv_begin_ + item / n_blocks_ % n_kv_;
                // Blocks from both ends alternate, so contiguous chunks of items carry equal
                // causal work.
                const int64_t k = item % n_blocks_;
                const int64_t blk = k % 2 == 0 ? k / 2 : n_blocks_ - 1 - k / 2;
                RowGroup g = start_group(w, 0, b, hk, blk * block_, std::min(block_, in_.T - blk * block_));
                if (store_columns_) {
                    const size_t tiles = static_cast<size_t>((in_.S + kKeyTile - 1) / kKeyTile);
                    w.p_store.get(static_cast<size_t>(g.R * ld_store_));
                    w.tile_kept.assign(tiles, 0);
                    w.tile_m.resize(tiles * g.R);
                }
                for (int64_t j0 = 0; j0 < in_.S; j0 += kKeyTile) run_tile(w, g, j0, std::min(kKeyTile, in_.S - j0));
                finish_group(g);
                if (store_columns_) reduce_stored_columns(w, g);
                else if (want_columns_) column_pass(w, g);
            }
        });
    }

    const char* at(const void* base, int64_t element) const {
        return static_cast<const char*>(base) + element * esize_;
    }

    RowGroup describe_group(int64_t b, int64_t hk, int64_t t0, int64_t rows) const {
        RowGroup g;
        g.b = b;
        g.hk = hk;
        g.t0 = t0;
        g.rows = rows;
        g.first_head = std::max(hk * c_.group, c_.head_begin);
        g.n_heads = std::min((hk + 1) * c_.group, c_.head_end) - g.first_head;
        g.R = g.n_heads * rows;
        auto [lo, hi] = std::minmax_element(c_.positions.begin() + t0, c_.positions.begin() + t0 + rows);
        g.i_lo = *lo;
        g.i_hi = *hi;
        return g;
    }

    // Group number `slot` of the workspace: stacks and scales its queries, resets its state.
    RowGroup start_group(Workspace& w, int64_t slot, int64_t b, int64_t hk, int64_t t0, int64_t rows) {
        RowGroup g = describe_group(b, hk, t0, rows);
        const int64_t R = g.R, D = in_.D, Dv = in_.Dv, base = slot * R;
        if (slot == 0) {
            const size_t slots = static_cast<size_t>(split_ ? n_kv_ : 1);
            w.q.resize(slots * R * D);
            w.o.resize(slots * R * Dv);
            w.m.resize(slots * R);
            w.l.resize(slots * R);
            w.kept.resize(slots * R);
            w.s.resize(static_cast<size_t>(R * kKeyTile));
            if (stats_.active()) {
                w.acc.resize(slots * R * stats_.width());
                w.top_s.resize(slots * R);
                w.top_j.resize(slots * R);
            }
        }
        g.q = w.q.data() + base * D;
        g.o = w.o.data() + base * Dv;
        g.m = w.m.data() + base;
        g.l = w.l.data() + base;
        g.kept = w.kept.data() + base;
        std::fill_n(g.o, R * Dv, 0.0f);
        std::fill_n(g.m, R, kNegInf);
        std::fill_n(g.l, R, 0.0f);
        std::fill_n(g.kept, R, 0);
        if (stats_.active()) {
            g.acc = w.acc.data() + base * stats_.width();
            g.top_s = w.top_s.data() + base;
            g.top_j = w.top_j.data() + base;
            TileStats::reset(g.acc, g.top_s, g.top_j, R, stats_.width());
        }
        const float scale = static_cast<float>(c_.scale);
        for (int64_t r = 0; r < R; ++r) {
            const int64_t h = g.first_head + r / rows, t = t0 + r % rows;
            const char* src = at(in_.q, b * in_.q_batch_stride + t * in_.q_stride + h * D);
            float* dst = g.q + r * D;
            if (in_.dtype == DType::BF16) {
                for (int64_t d = 0; d < D; ++d) dst[d] = bf16_to_f32(reinterpret_cast<const uint16_t*>(src)[d]) * scale;
            } else {
                for (int64_t d = 0; d < D; ++d) dst[d] = reinterpret_cast<const float*>(src)[d] * scale;
            }
        }
        if (R > kSmallRows)
            cpu::pack_rows(g.q, D, R, D, w.q_packed.get(static_cast<size_t>(cpu::packed_rows_size(R, D))));
        return g;
    }

    // One key tile [j0, j0+n) for a group: visit, S = Q·Kᵀ, modifiers and masks, the online
    // normaliser, O += P·V.
    void run_tile(Workspace& w, RowGroup& g, int64_t j0, int64_t n) {
        if (!visit_tile(w, g, j0, n)) return;
        const int64_t R = g.R, Dv = in_.Dv;
        const size_t n_masks = c_.masks.size();
        const bool packed = R > kSmallRows;
        const char* v_tile = at(in_.v, g.b * in_.v_batch_stride + j0 * in_.v_stride + g.hk * Dv);
        // The tile's scores (R, n): in the item's store when column sums keep them, else in w.s.
        float* s = store_columns_ ? w.p_store.data() + j0 : w.s.data();
        const int64_t ld = store_columns_ ? ld_store_ : kKeyTile;
        tile_scores(w, g, j0, n, s, ld);
        for (int64_t r = 0; r < R; ++r) {
            const int64_t gh = r / g.rows;
            score_row(g, r, s + r * ld, j0, n, w.head_visit[gh], w.mask_partial.data() + gh * n_masks);
        }
        if (store_columns_) {
            w.tile_kept[j0 / kKeyTile] = 1;
            std::copy_n(g.m, R, w.tile_m.data() + j0 / kKeyTile * R);
        }
        // O (R, Dv) += P (R, n) · V[j0 : j0+n] (n, Dv)
        if (packed) {
            cpu::linear_packed(s, ld, packed_v(w, j0), n * panel_, 0, Dv, n, g.o, Dv, R, true);
        } else if (in_.dtype == DType::BF16) {
            pv_small_bf16(R, n, s, ld, reinterpret_cast<const uint16_t*>(v_tile), in_.v_stride, Dv, g.o);
        } else {
            pv_small_f32(R, n, s, ld, reinterpret_cast<const float*>(v_tile), in_.v_stride, Dv, g.o);
        }
    }

    // s (R, n; rows ld apart) = Q (R, D) · K[j0 : j0+n]ᵀ: stacked rows through the GEMM (Q as
    // start_group packed it) on the K tile packed once per thread and kv head (V is packed with
    // it for P·V), a few rows through the GEMV.
    void tile_scores(Workspace& w, const RowGroup& g, int64_t j0, int64_t n, float* s, int64_t ld) {
        const int64_t D = in_.D;
        const char* k_tile = at(in_.k, g.b * in_.k_batch_stride + j0 * in_.k_stride + g.hk * D);
        if (g.R > kSmallRows) {
            const char* v_tile = at(in_.v, g.b * in_.v_batch_stride + j0 * in_.v_stride + g.hk * in_.Dv);
            pack_tile(w, g.b, g.hk, j0, n, k_tile, v_tile);
            cpu::linear_prepacked(w.q_packed.data(), packed_k(w, j0), D * panel_, 0, n, D, s, ld, g.R, false);
        } else {
            Tensor k_view = Tensor::wrap(const_cast<char*>(k_tile), in_.dtype, {n, D}, {in_.k_stride, 1});
            cpu::linear(g.q, D, k_view, nullptr, s, ld, g.R);
        }
    }

    // Split keys (decode): item = (batch, key chunk) over every kv head, tile by tile, so
    // each thread streams whole rows of the cache (all heads of a position are adjacent) and
    // the cache lines the hardware prefetches for the next head are used. The chunks' partial
    // (m, l, O) are then merged per row: O = Σ_c e^{m_c-M}·O_c, l = Σ_c e^{m_c-M}·l_c.
    void run_split_keys() {
        const int64_t tiles = (in_.S + kDecodeTile - 1) / kDecodeTile;
        const int64_t R = heads_ * in_.T, Dv = in_.Dv;
        const int64_t slots = in_.B * chunks_ * n_kv_;
        std::vector<float> part_o(static_cast<size_t>(slots * R * Dv)), part_m(static_cast<size_t>(slots * R)),
            part_l(static_cast<size_t>(slots * R));
        std::vector<int64_t> part_kept(static_cast<size_t>(slots * R));
        const int64_t W = stats_.width();  // statistics accumulators per row (0 without)
        std::vector<float> part_acc(static_cast<size_t>(slots * R * W)), part_top_s(stats_.active() ? slots * R : 0);
        std::vector<int64_t> part_top_j(part_top_s.size());
        parallel_for(in_.B * chunks_, [&](int64_t begin, int64_t end, int) {
            thread_local Workspace w;
            for (int64_t item = begin; item < end; ++item) {
                const int64_t b = item / chunks_, chunk = item % chunks_;
                const int64_t tile_lo = tiles * chunk / chunks_, tile_hi = tiles * (chunk + 1) / chunks_;
                std::vector<RowGroup> groups;
                for (int64_t k = 0; k < n_kv_; ++k) groups.push_back(start_group(w, k, b, kv_begin_ + k, 0, in_.T));
                for (int64_t tile = tile_lo; tile < tile_hi; ++tile)
                    decode_tile(w, groups, tile * kDecodeTile, std::min(kDecodeTile, in_.S - tile * kDecodeTile));
                const int64_t slot0 = item * n_kv_;
                std::copy_n(w.o.data(), n_kv_ * R * Dv, part_o.data() + slot0 * R * Dv);
                std::copy_n(w.m.data(), n_kv_ * R, part_m.data() + slot0 * R);
                std::copy_n(w.l.data(), n_kv_ * R, part_l.data() + slot0 * R);
                std::copy_n(w.kept.data(), n_kv_ * R, part_kept.data() + slot0 * R);
                if (stats_.active()) {
                    std::copy_n(w.acc.data(), n_kv_ * R * W, part_acc.data() + slot0 * R * W);
                    std::copy_n(w.top_s.data(), n_kv_ * R, part_top_s.data() + slot0 * R);
                    std::copy_n(w.top_j.data(), n_kv_ * R, part_top_j.data() + slot0 * R);
                }
            }
        });
        // Merge the chunks of each (batch, kv head) into chunk 0's slot and finish it there.
        const bool softmax = c_.normalizer.kind == NormalizerKind::Softmax;
        Workspace column_w;  // column sums: the merged groups' queries and the second pass
        std::vector<float> acc(static_cast<size_t>(W));
        for (int64_t b = 0; b < in_.B; ++b)
            for (int64_t k = 0; k < n_kv_; ++k) {
                auto slot = [&](int64_t chunk) { return (b * chunks_ + chunk) * n_kv_ + k; };
                RowGroup g = describe_group(b, kv_begin_ + k, 0, in_.T);
                const int64_t s0 = slot(0);
                g.o = part_o.data() + s0 * R * Dv;
                g.m = part_m.data() + s0 * R;
                g.l = part_l.data() + s0 * R;
                g.kept = part_kept.data() + s0 * R;
                if (stats_.active()) {
                    g.acc = part_acc.data() + s0 * R * W;
                    g.top_s = part_top_s.data() + s0 * R;
                    g.top_j = part_top_j.data() + s0 * R;
                }
                for (int64_t r = 0; r < R; ++r) {
                    float M = kNegInf;
                    for (int64_t c = 0; c < chunks_; ++c) M = std::max(M, part_m[slot(c) * R + r]);
                    float l = 0.0f;
                    int64_t kept = 0;
                    std::vector<float> o(static_cast<size_t>(Dv), 0.0f);
                    for (int64_t c = 0; c < chunks_; ++c) {
                        const int64_t sc = slot(c) * R + r;
                        const float mc = part_m[sc];
                        // softmax: weight e^{m_c - M} (0 for chunks that kept nothing)
                        const float weight = softmax ? (mc == kNegInf ? 0.0f : std::exp(mc - M)) : 1.0f;
                        l += weight * part_l[sc];
                        kept += part_kept[sc];
                        const float* oc = part_o.data() + sc * Dv;
                        for (int64_t d = 0; d < Dv; ++d) o[d] += weight * oc[d];
                    }
                    if (stats_.active()) {  // accumulators rebased to M; the best score of all chunks
                        std::fill(acc.begin(), acc.end(), 0.0f);
                        float top_s = kNegInf;
                        int64_t top_j = -1;
                        for (int64_t c = 0; c < chunks_; ++c) {  // in key order: ties keep the lower key
                            const int64_t sc = slot(c) * R + r;
                            stats_.merge(acc.data(), part_acc.data() + sc * W, softmax ? part_m[sc] : 0.0f,
                                         softmax ? M : 0.0f);
                            if (part_top_s[sc] > top_s) top_s = part_top_s[sc], top_j = part_top_j[sc];
                        }
                        std::copy(acc.begin(), acc.end(), g.acc + r * W);
                        g.top_s[r] = top_s;
                        g.top_j[r] = top_j;
                    }
                    g.m[r] = M;
                    g.l[r] = l;
                    g.kept[r] = kept;
                    std::copy(o.begin(), o.end(), g.o + r * Dv);
                }
                finish_group(g);
                if (want_columns_) {
                    g.q = start_group(column_w, 0, b, kv_begin_ + k, 0, in_.T).q;
                    column_pass(column_w, g);
                }
            }
    }

    // One key tile for every kv head's group at once (split keys; see decode_scores).
    void decode_tile(Workspace& w, std::vector<RowGroup>& groups, int64_t j0, int64_t n) {
        const int64_t n_kv = static_cast<int64_t>(groups.size()), R = groups[0].R, D = in_.D, Dv = in_.Dv;
        const size_t n_masks = c_.masks.size();
        // Visits: which groups keep anything, and per head which masks need element work.
        std::vector<uint8_t>& active = w.group_active;
        std::vector<TileVisit>& head_visit = w.group_visit;
        std::vector<uint8_t>& partial = w.group_partial;
        active.assign(static_cast<size_t>(n_kv), 0);
        head_visit.resize(static_cast<size_t>(n_kv * heads_));
        partial.resize(static_cast<size_t>(n_kv * heads_) * n_masks);
        bool any = false;
        for (int64_t k = 0; k < n_kv; ++k) {
            active[k] = visit_tile(w, groups[k], j0, n);
            any |= active[k] != 0;
            std::copy(w.head_visit.begin(), w.head_visit.end(), head_visit.begin() + k * heads_);
            std::copy(w.mask_partial.begin(), w.mask_partial.end(), partial.begin() + k * heads_ * n_masks);
        }
        if (!any) return;
        w.s.resize(static_cast<size_t>(n_kv * R * kKeyTile));
        const int64_t b = groups[0].b, hk0 = groups[0].hk;
        const char* k_tile = at(in_.k, b * in_.k_batch_stride + j0 * in_.k_stride + hk0 * D);
        const char* v_tile = at(in_.v, b * in_.v_batch_stride + j0 * in_.v_stride + hk0 * Dv);
        // The groups' queries and outputs are adjacent in the workspace (slots 0 .. n_kv-1).
        const float* q = groups[0].q;
        float* o = groups[0].o;
        const int64_t v_row_bytes = n_kv * Dv * esize_, v_stride_bytes = in_.v_stride * esize_;
        if (in_.dtype == DType::BF16)
            decode_scores_bf16(n, n_kv, active.data(), R, q, D, reinterpret_cast<const uint16_t*>(k_tile), in_.k_stride,
                               w.s.data(), kKeyTile, v_tile, v_stride_bytes, v_row_bytes);
        else
            decode_scores_f32(n, n_kv, active.data(), R, q, D, reinterpret_cast<const float*>(k_tile), in_.k_stride,
                              w.s.data(), kKeyTile, v_tile, v_stride_bytes, v_row_bytes);
        for (int64_t k = 0; k < n_kv; ++k) {
            RowGroup& g = groups[k];
            for (int64_t r = 0; r < R; ++r) {
                const int64_t gh = r / g.rows;
                const TileVisit v = active[k] ? head_visit[k * heads_ + gh] : TileVisit::Skip;
                score_row(g, r, w.s.data() + (k * R + r) * kKeyTile, j0, n, v, partial.data() + (k * heads_ + gh) * n_masks);
            }
        }
        // O += P·V per kv head, outputs in registers over the tile (the V rows are in cache now).
        for (int64_t k = 0; k < n_kv; ++k) {
            if (!active[k]) continue;
            const char* v_head = v_tile + k * Dv * esize_;
            const float* p = w.s.data() + k * R * kKeyTile;
            if (in_.dtype == DType::BF16)
                pv_small_bf16(R, n, p, kKeyTile, reinterpret_cast<const uint16_t*>(v_head), in_.v_stride, Dv, o + k * R * Dv);
            else
                pv_small_f32(R, n, p, kKeyTile, reinterpret_cast<const float*>(v_head), in_.v_stride, Dv, o + k * R * Dv);
        }
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
            w.packed_k.get(static_cast<size_t>(n_tiles * kKeyTile * in_.D));
            w.packed_v.get(static_cast<size_t>(n_tiles * kKeyTile * dv_padded_));
        }
        if (w.tile_packed[tile]) return;
        w.tile_packed[tile] = 1;
        cpu::pack_weight_panels(Tensor::wrap(const_cast<char*>(k_tile), in_.dtype, {n, in_.D}, {in_.k_stride, 1}),
                                packed_k(w, j0));
        cpu::pack_weight_panels(Tensor::wrap(const_cast<char*>(v_tile), in_.dtype, {in_.Dv, n}, {1, in_.v_stride}),
                                packed_v(w, j0));
    }

    // Asks each mask about the tile for every head of the group; false if every head skips it.
    bool visit_tile(Workspace& w, const RowGroup& g, int64_t j0, int64_t n) {
        const size_t n_masks = c_.masks.size();
        w.head_visit.resize(static_cast<size_t>(g.n_heads));
        w.mask_partial.resize(static_cast<size_t>(g.n_heads) * n_masks);
        bool any = false;
        for (int64_t gh = 0; gh < g.n_heads; ++gh) {
            const TileCoord tile{g.b, g.first_head + gh, g.i_lo, g.i_hi, j0, j0 + n - 1, &c_.ctx};
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

    // Row r of a group on the key tile [j0, j0+n): score modifiers, the masks that said Partial
    // (`partial`, one flag per mask), the stored score row if asked for, then the online
    // normaliser. A skipped head's row becomes zeros (no weight in P·V).
    void score_row(RowGroup& g, int64_t r, float* s, int64_t j0, int64_t n, TileVisit visit, const uint8_t* partial) {
        if (!prepare_row(g, r, s, j0, n, visit, partial)) {
            std::fill_n(s, n, 0.0f);
            return;
        }
        const int64_t h = g.first_head + r / g.rows, t = g.t0 + r % g.rows;
        if (want_rows_) std::copy_n(s, n, row_buffer(g.b, h, t) + j0);
        normalise_tile_row(g, r, s, c_.positions[t], j0, n);
    }

    // Row r's final scores on the tile: modifiers, then the masks that said Partial. False if
    // the row's head skips the tile.
    bool prepare_row(const RowGroup& g, int64_t r, float* s, int64_t j0, int64_t n, TileVisit visit,
                     const uint8_t* partial) const {
        if (visit == TileVisit::Skip) return false;
        const int64_t h = g.first_head + r / g.rows, t = g.t0 + r % g.rows;
        const RowSpan span{g.b, h, g.hk, c_.positions[t], j0, n, &c_.ctx};
        for (const Mechanism* m : c_.score_mods) m->modify_span(span, s);
        for (size_t mi = 0; mi < c_.masks.size(); ++mi)
            if (partial[mi]) c_.masks[mi]->mask_span(span, s);
        return true;
    }

    // Turns row r's scores (query position i, keys j0 ..) into this tile's probabilities,
    // rescaling the row's running state and statistics.
    void normalise_tile_row(RowGroup& g, int64_t r, float* s, int64_t i, int64_t j0, int64_t n) {
        const bool stats = stats_.active();
        float* acc = stats ? g.acc + r * stats_.width() : nullptr;
        float tile_max = kNegInf;
        if (c_.normalizer.kind == NormalizerKind::Softmax || (stats && stats_.wants_top())) {
            tile_max = row_max(s, n);
            if (stats && stats_.wants_top()) stats_.see_scores(g.top_s + r, g.top_j + r, s, j0, n, tile_max);
        }
        float sum = 0.0f, entropy_part = 0.0f, sum_sq = -1.0f;  // sum_sq < 0: add_tile computes it
        switch (c_.normalizer.kind) {
            case NormalizerKind::Softmax: {
                if (tile_max == kNegInf) {  // nothing kept in this tile
                    std::fill_n(s, n, 0.0f);
                    return;
                }
                const float m_new = std::max(g.m[r], tile_max);
                if (g.m[r] != m_new) {
                    const float alpha = cpu::exp_approx(g.m[r] - m_new);  // 0 on the first kept tile
                    g.l[r] *= alpha;
                    scale_row(g.o + r * in_.Dv, in_.Dv, alpha);
                    if (stats) stats_.rescale(acc, alpha, g.m[r], m_new);
                    g.m[r] = m_new;
                }
                sum = stats ? exp_shift_sum_stats(s, n, m_new, &entropy_part, &sum_sq) : exp_shift_sum(s, n, m_new);
                break;
            }
            case NormalizerKind::Sigmoid:
                sum = sigmoid_sum(s, n, static_cast<float>(c_.normalizer.bias));
                if (stats) entropy_part = p_log_p_sum(s, n);
                break;
            case NormalizerKind::Relu:
                sum = relu_sum(s, n, &g.kept[r]);
                if (stats) entropy_part = p_log_p_sum(s, n);
                break;
        }
        g.l[r] += sum;
        if (stats) stats_.add_tile(acc, s, i, j0, n, sum, entropy_part, sum_sq);
    }

    // The row's normalisation once every key is seen: out = factor·o, p = factor·p̃.
    RowFinal final_of(const RowGroup& g, int64_t r, int64_t h) const {
        RowFinal f;
        switch (c_.normalizer.kind) {
            case NormalizerKind::Softmax: {
                if (g.m[r] == kNegInf) break;
                double m = g.m[r];
                const std::vector<double> extra = c_.extra_logits_of(h);
                for (double e : extra) m = std::max(m, e);
                double z = double(g.l[r]) * std::exp(double(g.m[r]) - m);
                for (double e : extra) z += std::exp(e - m);
                f = {false, static_cast<float>(std::exp(double(g.m[r]) - m) / z), m + std::log(z), g.m[r]};
                break;
            }
            case NormalizerKind::Sigmoid:
                f = {false, 1.0f, std::log(double(g.l[r])), 0.0f};
                break;
            case NormalizerKind::Relu:
                if (g.kept[r] == 0) break;
                f = {false, 1.0f / float(g.kept[r]), std::log(double(g.l[r]) / double(g.kept[r])), 0.0f};
                break;
        }
        return f;
    }

    // Normalises the outputs, writes out / lse, and turns stored score rows into probabilities.
    void finish_group(const RowGroup& g) {
        for (int64_t r = 0; r < g.R; ++r) {
            const int64_t h = g.first_head + r / g.rows, t = g.t0 + r % g.rows;
            const float* o = g.o + r * in_.Dv;
            const RowFinal f = final_of(g, r, h);
            float* dst = out_.out + g.b * out_.out_batch_stride + t * out_.out_stride + h * in_.Dv;
            for (int64_t d = 0; d < in_.Dv; ++d) dst[d] = f.empty ? 0.0f : o[d] * f.factor;
            if (out_.lse) out_.lse[(g.b * in_.T + t) * in_.H + h] = static_cast<float>(f.lse);
            if (want_rows_) finish_rows(g.b, h, t, f.lse, g.kept[r]);
            if (stats_.active())
                stats_.finish_row(g.acc + r * stats_.width(), g.top_s[r], g.top_j[r], f, g.b, t, h);
        }
    }

    // Column sums (received mass per key): a second pass over the group's kept tiles, now that
    // each row's normalisation is known. The item's sums are added to the call's under a lock,
    // over the key range its tiles touched only.
    void column_pass(Workspace& w, const RowGroup& g) {
        const int64_t R = g.R, S = in_.S;
        const size_t n_masks = c_.masks.size();
        std::vector<RowFinal> finals(static_cast<size_t>(R));
        for (int64_t r = 0; r < R; ++r) finals[r] = final_of(g, r, g.first_head + r / g.rows);
        w.columns.assign(static_cast<size_t>(g.n_heads * S), 0.0f);
        w.s.resize(std::max(w.s.size(), static_cast<size_t>(R * kKeyTile)));
        int64_t lo = S, hi = 0;
        for (int64_t j0 = 0; j0 < S; j0 += kKeyTile) {
            const int64_t n = std::min(kKeyTile, S - j0);
            if (!visit_tile(w, g, j0, n)) continue;
            lo = std::min(lo, j0);
            hi = j0 + n;
            tile_scores(w, g, j0, n, w.s.data(), kKeyTile);  // (the first pass packed these tiles already)
            for (int64_t r = 0; r < R; ++r) {
                const int64_t gh = r / g.rows;
                float* s = w.s.data() + r * kKeyTile;
                const RowFinal& f = finals[r];
                if (f.empty || !prepare_row(g, r, s, j0, n, w.head_visit[gh], w.mask_partial.data() + gh * n_masks))
                    continue;
                float* col = w.columns.data() + gh * S + j0;
                if (c_.normalizer.kind == NormalizerKind::Softmax) {
                    add_softmax_probabilities(col, s, n, static_cast<float>(f.lse));
                    continue;
                }
                for (int64_t k = 0; k < n; ++k) {
                    if (s[k] == kNegInf) continue;
                    col[k] += c_.normalizer.kind == NormalizerKind::Sigmoid
                                  ? 1.0f / (1.0f + std::exp(-(s[k] + float(c_.normalizer.bias))))
                                  : std::max(s[k], 0.0f) * f.factor;
                }
            }
        }
        add_item_columns(w, g, lo, hi);
    }

    // Column sums from the item's stored p̃ (store_columns_): p = w·p̃ with the row's weight for
    // the tile, w = e^{m_tile - lse} (softmax: p̃ was taken relative to the running max m_tile
    // of that tile) or the final factor (sigmoid: 1, relu: 1/kept), so each kept tile costs one
    // read of its p̃ and a multiply-add per score, no second Q·Kᵀ or exponential.
    void reduce_stored_columns(Workspace& w, const RowGroup& g) {
        const int64_t R = g.R, S = in_.S;
        const bool softmax = c_.normalizer.kind == NormalizerKind::Softmax;
        std::vector<RowFinal> finals(static_cast<size_t>(R));
        for (int64_t r = 0; r < R; ++r) finals[r] = final_of(g, r, g.first_head + r / g.rows);
        w.columns.assign(static_cast<size_t>(g.n_heads * S), 0.0f);
        int64_t lo = S, hi = 0;
        for (int64_t j0 = 0; j0 < S; j0 += kKeyTile) {
            const int64_t tile = j0 / kKeyTile, n = std::min(kKeyTile, S - j0);
            if (!w.tile_kept[tile]) continue;
            lo = std::min(lo, j0);
            hi = j0 + n;
            const float* tile_m = w.tile_m.data() + tile * R;
            for (int64_t r = 0; r < R; ++r) {
                const RowFinal& f = finals[r];
                if (f.empty || (softmax && tile_m[r] == kNegInf)) continue;  // (p̃ rows that kept nothing are 0)
                const float weight = softmax ? static_cast<float>(std::exp(double(tile_m[r]) - f.lse)) : f.factor;
                add_scaled_row(w.columns.data() + r / g.rows * S + j0, w.p_store.data() + r * ld_store_ + j0, n, weight);
            }
        }
        add_item_columns(w, g, lo, hi);
    }

    // Adds a work item's column sums over [lo, hi) (w.columns, (heads, S)) to the call's.
    void add_item_columns(const Workspace& w, const RowGroup& g, int64_t lo, int64_t hi) {
        const int64_t S = in_.S;
        std::lock_guard<std::mutex> lock(columns_mutex_);
        for (int64_t gh = 0; gh < g.n_heads; ++gh) {
            double* dst = columns_.data() + (g.b * in_.H + g.first_head + gh) * S;
            const float* src = w.columns.data() + gh * S;
            for (int64_t j = lo; j < hi; ++j) dst[j] += src[j];
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
    int64_t kv_begin_ = 0, kv_end_ = 0, n_kv_ = 0, heads_ = 1, block_ = 1, n_blocks_ = 1;
    bool want_rows_ = false;
    TileStats stats_;          // per-row statistics, in the same pass
    bool want_columns_ = false;   // column sums: from stored p̃ (store_columns_) or a second pass (column_pass)
    bool store_columns_ = false;  // keep each query-block item's p̃ (see reduce_stored_columns)
    int64_t ld_store_ = 0;        // row stride of the store: S rounded up to 16
    std::vector<double> columns_;  // (B, H, S) column sums of the call
    std::mutex columns_mutex_;
    bool split_ = false;     // decode: split keys into chunks instead of queries into blocks
    int64_t chunks_ = 1;
    int64_t panel_ = 1, dv_padded_ = 0;  // GEMM panel width; Dv rounded up to it
};

}  // namespace

void attention_tiled_cpu(const AttentionCall& call) { TiledAttention(call).run(); }
AttentionWork attention_tiled_cpu_work(const AttentionCall& call) { return TiledAttention(call).count(); }

}  // namespace attnlab::detail
