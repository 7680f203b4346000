// Small helpers shared by the mask mechanisms: dropping everything outside kept key intervals
// of a row span, and the distance bounds of a tile.
#pragma once

#include <attnlab/attention.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <limits>

namespace attnlab::mech {

inline constexpr float kDropped = -std::numeric_limits<float>::infinity();

// Drops keys j0 + [a, b) of the span (clamped to the span).
inline void drop_range(const RowSpan& row, int64_t a, int64_t b, float* scores) {
    a = std::clamp<int64_t>(a, 0, row.n);
    b = std::clamp<int64_t>(b, 0, row.n);
    std::fill(scores + a, scores + std::max(a, b), kDropped);
}

// Keeps only key positions in [lo, hi] (inclusive; empty if lo > hi).
inline void keep_interval(const RowSpan& row, int64_t lo, int64_t hi, float* scores) {
    if (lo > hi) return drop_range(row, 0, row.n, scores);
    drop_range(row, 0, lo - row.j0, scores);
    drop_range(row, hi + 1 - row.j0, row.n, scores);
}

// Keeps key positions in [lo1, hi1] ∪ [lo2, hi2].
inline void keep_two_intervals(const RowSpan& row, int64_t lo1, int64_t hi1, int64_t lo2, int64_t hi2,
                               float* scores) {
    if (lo1 > hi1) return keep_interval(row, lo2, hi2, scores);
    if (lo2 > hi2) return keep_interval(row, lo1, hi1, scores);
    if (lo2 < lo1) {
        std::swap(lo1, lo2);
        std::swap(hi1, hi2);
    }
    if (lo2 <= hi1 + 1) return keep_interval(row, lo1, std::max(hi1, hi2), scores);
    drop_range(row, 0, lo1 - row.j0, scores);
    drop_range(row, hi1 + 1 - row.j0, lo2 - row.j0, scores);
    drop_range(row, hi2 + 1 - row.j0, row.n, scores);
}

// min and max of |i - j| over the tile's rectangle.
inline int64_t min_distance(const TileCoord& t) {
    if (t.j_hi < t.i_lo) return t.i_lo - t.j_hi;
    if (t.j_lo > t.i_hi) return t.j_lo - t.i_hi;
    return 0;
}
inline int64_t max_distance(const TileCoord& t) {
    return std::max(std::llabs(t.i_hi - t.j_lo), std::llabs(t.j_hi - t.i_lo));
}

// Combines per-part verdicts of a tile split into parts: all Skip -> Skip, all Full -> Full.
struct VisitAccumulator {
    bool any_kept = false, any_dropped = false;
    void add(TileVisit v) {
        any_kept |= v != TileVisit::Skip;
        any_dropped |= v != TileVisit::Full;
    }
    TileVisit result() const {
        if (!any_kept) return TileVisit::Skip;
        return any_dropped ? TileVisit::Partial : TileVisit::Full;
    }
};

// Masks decided per cell of a grid (blocks of B positions, video frames): the tile's verdict
// combines verdict(query cell, key cell) over the cells it covers; more than 64 cell pairs is
// simply Partial (the per-row work then decides).
template <typename CellVerdict>
TileVisit visit_cells(const TileCoord& t, int64_t cell, CellVerdict verdict) {
    const int64_t q_lo = t.i_lo / cell, q_hi = t.i_hi / cell, k_lo = t.j_lo / cell, k_hi = t.j_hi / cell;
    if ((q_hi - q_lo + 1) * (k_hi - k_lo + 1) > 64) return TileVisit::Partial;
    VisitAccumulator acc;
    for (int64_t qc = q_lo; qc <= q_hi; ++qc)
        for (int64_t kc = k_lo; kc <= k_hi; ++kc) acc.add(verdict(qc, kc));
    return acc.result();
}

// Walks a row span cell by cell: fn(key cell, first position, one past the last) per cell.
template <typename PerCell>
void for_each_cell(const RowSpan& row, int64_t cell, PerCell fn) {
    for (int64_t j = row.j0; j < row.j0 + row.n;) {
        const int64_t kc = j / cell, next = (kc + 1) * cell;
        fn(kc, j, next);
        j = next;
    }
}

}  // namespace attnlab::mech
