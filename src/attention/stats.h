// Attention statistics (AttentionStats) in float64 from whole probability rows: what the
// reference and attention_stats_from_pattern compute, and the validation every
// implementation shares. The tiled kernel's in-pass version is families/tile_stats.h.
#pragma once

#include <attnlab/attention.h>

#include <cstdint>
#include <vector>

namespace attnlab::detail {

// Throws InvalidArgument for statistics the call cannot compute (segment ids out of range,
// distance bins missing, ...).
void validate_stats(const AttentionStats& stats, const AttentionInputs& in);

// Writes the per-row statistics of one row's probabilities p (S) — batch b, query t, head h
// at position i — and adds p to the column sums (when asked for) kept in float64.
class RowStatsWriter {
public:
    RowStatsWriter(AttentionStats& stats, const AttentionInputs& in);
    void add_row(int64_t b, int64_t t, int64_t h, int64_t i, const double* p);
    // Writes the column sums of heads [head_begin, head_end) (call once, after every row).
    void finish(int64_t head_begin, int64_t head_end);

private:
    AttentionStats& stats_;
    const AttentionInputs& in_;
    std::vector<double> columns_;  // (B, H, S)
};

}  // namespace attnlab::detail
