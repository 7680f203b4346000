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

}  // namespace attnlab::mech
