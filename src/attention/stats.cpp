// Attention statistics from whole probability rows, in float64 (see stats.h).
#include "attention/stats.h"

#include <attnlab/error.h>

#include <cmath>

namespace attnlab {
namespace detail {

void validate_stats(const AttentionStats& st, const AttentionInputs& in) {
    ATTNLAB_CHECK(!st.segment_mass || (st.segments && st.n_segments > 0), InvalidArgument,
                  "[attention] segment_mass needs the statistics' segments and n_segments > 0");
    if (st.segment_mass)
        for (int64_t j = 0; j < in.S; ++j)
            ATTNLAB_CHECK(st.segments[j] >= 0 && st.segments[j] < st.n_segments, InvalidArgument,
                          "[attention] statistics segment id {} at position {} is not in [0, {})", st.segments[j], j,
                          st.n_segments);
    ATTNLAB_CHECK(!st.distance_mass || st.n_distance_bins > 0, InvalidArgument,
                  "[attention] distance_mass needs n_distance_bins > 0");
    ATTNLAB_CHECK(!st.key_mass || !st.keys.empty(), InvalidArgument, "[attention] key_mass needs chosen keys");
    ATTNLAB_CHECK(!st.offset_mass || !st.offsets.empty(), InvalidArgument,
                  "[attention] offset_mass needs chosen offsets");
}

RowStatsWriter::RowStatsWriter(AttentionStats& stats, const AttentionInputs& in) : stats_(stats), in_(in) {
    if (stats.column_sum) columns_.assign(static_cast<size_t>(in.B * in.H * in.S), 0.0);
}

void RowStatsWriter::add_row(int64_t b, int64_t t, int64_t h, int64_t i, const double* p) {
    const AttentionStats& st = stats_;
    const int64_t S = in_.S, row = (b * in_.T + t) * in_.H + h;
    double mass = 0, entropy = 0, sum_sq = 0, top = 0;
    int64_t top_key = -1;
    for (int64_t j = 0; j < S; ++j) {
        const double x = p[j];
        if (x <= 0) continue;
        mass += x;
        entropy -= x * std::log(x);
        sum_sq += x * x;
        if (x > top) top = x, top_key = j;
    }
    if (st.mass) st.mass[row] = static_cast<float>(mass);
    if (st.entropy) st.entropy[row] = static_cast<float>(entropy);
    if (st.sum_sq) st.sum_sq[row] = static_cast<float>(sum_sq);
    if (st.top_key) st.top_key[row] = top_key;
    if (st.top_prob) st.top_prob[row] = static_cast<float>(top);
    auto at = [&](int64_t j) { return j >= 0 && j < S ? p[j] : 0.0; };
    const int64_t K = static_cast<int64_t>(st.keys.size()), R = static_cast<int64_t>(st.offsets.size());
    if (st.key_mass)
        for (int64_t k = 0; k < K; ++k) st.key_mass[row * K + k] = static_cast<float>(at(st.keys[k]));
    if (st.offset_mass)
        for (int64_t r = 0; r < R; ++r) st.offset_mass[row * R + r] = static_cast<float>(at(i - st.offsets[r]));
    if (st.segment_mass) {
        std::vector<double> seg(static_cast<size_t>(st.n_segments), 0.0);
        for (int64_t j = 0; j < S; ++j) seg[st.segments[j]] += p[j];
        for (int64_t s = 0; s < st.n_segments; ++s) st.segment_mass[row * st.n_segments + s] = static_cast<float>(seg[s]);
    }
    if (st.distance_mass) {
        const int64_t nb = st.n_distance_bins;
        std::vector<double> bins(static_cast<size_t>(nb), 0.0);
        for (int64_t j = 0; j < S; ++j) bins[std::min(AttentionStats::distance_bin(i - j), nb - 1)] += p[j];
        for (int64_t k = 0; k < nb; ++k) st.distance_mass[row * nb + k] = static_cast<float>(bins[k]);
    }
    if (!columns_.empty()) {
        double* col = columns_.data() + (b * in_.H + h) * S;
        for (int64_t j = 0; j < S; ++j) col[j] += p[j];
    }
}

void RowStatsWriter::finish(int64_t head_begin, int64_t head_end) {
    if (columns_.empty()) return;
    for (int64_t b = 0; b < in_.B; ++b)
        for (int64_t h = head_begin; h < head_end; ++h)
            for (int64_t j = 0; j < in_.S; ++j) {
                const int64_t k = (b * in_.H + h) * in_.S + j;
                stats_.column_sum[k] = static_cast<float>(columns_[k]);
            }
}

}  // namespace detail

void attention_stats_from_pattern(const AttentionInputs& in, const float* pattern, AttentionStats& stats) {
    detail::validate_stats(stats, in);
    const int64_t head_begin = in.head_begin, head_end = in.head_end < 0 ? in.H : in.head_end;
    detail::RowStatsWriter writer(stats, in);
    std::vector<double> p(static_cast<size_t>(in.S));
    for (int64_t b = 0; b < in.B; ++b)
        for (int64_t h = head_begin; h < head_end; ++h)
            for (int64_t t = 0; t < in.T; ++t) {
                const float* row = pattern + ((b * in.H + h) * in.T + t) * in.S;
                std::copy(row, row + in.S, p.begin());
                writer.add_row(b, t, h, in.q_pos ? in.q_pos[t] : in.q_pos0 + t, p.data());
            }
    writer.finish(head_begin, head_end);
}

}  // namespace attnlab
