// In-pass attention statistics for the tiled kernel (AttentionStats, per-row part).
//
// The kernel only ever holds a tile's unnormalised probabilities p̃_j = e^{s_j - m} (softmax,
// m = the row's running max), σ(s_j + b) (sigmoid) or relu(s_j) (relu). Every per-row
// statistic is linear in p, so each row keeps a small accumulator vector of sums over p̃ that
// is rescaled exactly like the running sum l when m grows, and multiplied by the row's final
// factor f (p = f·p̃) at the end:
//   [0] Σ p̃             -> mass = f·[0]
//   [1] Σ p̃·(s - m)     -> entropy = (lse - m)·mass - f·[1]      (softmax: ln p = s - lse)
//       Σ p̃·ln p̃        -> entropy = -f·[1] - mass·ln f           (sigmoid, relu)
//   [2] Σ p̃²            -> sum_sq = f²·[2]
//   [3 ...] p̃ at chosen keys, at chosen offsets, per segment, per distance bin -> f·[k]
// Entry [1] is kept relative to the running max (not as Σ p̃·s) so that the entropy does not
// cancel catastrophically when the scores are large. The top-1 key is the argmax of the
// score (every normalizer is monotone), the lowest key on ties.
#pragma once

#include <attnlab/attention.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

namespace attnlab::detail {

// How a row's unnormalised probabilities become p, known once the row has seen every key.
struct RowFinal {
    bool empty = true;  // no kept key
    float factor = 0;   // p = factor·p̃
    double lse = -std::numeric_limits<double>::infinity();
    float m = 0;        // softmax: the max p̃ is relative to
};

class TileStats {
public:
    static constexpr int kMass = 0, kEntropy = 1, kSumSq = 2, kFirstChosen = 3;

    TileStats(const AttentionStats* stats, const AttentionInputs& in, Normalizer normalizer)
        : st_(stats), in_(in), norm_(normalizer) {
        if (!st_ || !st_->wants_rows()) return;
        active_ = true;
        want_top_ = st_->top_key || st_->top_prob;
        n_keys_ = st_->key_mass ? static_cast<int64_t>(st_->keys.size()) : 0;
        n_offsets_ = st_->offset_mass ? static_cast<int64_t>(st_->offsets.size()) : 0;
        n_segments_ = st_->segment_mass ? st_->n_segments : 0;
        n_bins_ = st_->distance_mass ? st_->n_distance_bins : 0;
        width_ = kFirstChosen + n_keys_ + n_offsets_ + n_segments_ + n_bins_;
        if (n_segments_ > 0) {  // runs of equal ids, so a tile adds contiguous slices
            for (int64_t j = 0; j < in.S; ++j) {
                if (runs_.empty() || runs_.back().id != st_->segments[j]) runs_.push_back({j, j + 1, st_->segments[j]});
                else runs_.back().end = j + 1;
            }
        }
    }

    bool active() const { return active_; }
    bool wants_top() const { return want_top_; }
    int64_t width() const { return width_; }  // accumulator floats per row

    static void reset(float* acc, float* top_score, int64_t* top_key, int64_t rows, int64_t width) {
        std::fill_n(acc, rows * width, 0.0f);
        std::fill_n(top_score, rows, -std::numeric_limits<float>::infinity());
        std::fill_n(top_key, rows, -1);
    }

    // The running max moved from m_old to m_new (softmax): p̃ scales by alpha = e^{m_old-m_new}.
    void rescale(float* acc, float alpha, float m_old, float m_new) const {
        if (m_old == -std::numeric_limits<float>::infinity()) return;  // nothing accumulated yet
        rebase(acc, acc, 0.0f, alpha, m_old - m_new);
    }

    // Adds a partial accumulator (another key chunk, relative to its own max m_src) to `acc`
    // (relative to m_dst >= m_src).
    void merge(float* acc, const float* src, float m_src, float m_dst) const {
        if (norm_.kind != NormalizerKind::Softmax) return rebase(acc, src, 1.0f, 1.0f, 0.0f);
        if (m_src == -std::numeric_limits<float>::infinity()) return;  // the chunk kept nothing
        rebase(acc, src, 1.0f, std::exp(m_src - m_dst), m_src - m_dst);
    }

    // Before the normaliser: the tile's best score and its key (s: the tile's final scores).
    void see_scores(float* top_score, int64_t* top_key, const float* s, int64_t j0, int64_t n, float tile_max) const {
        if (!(tile_max > *top_score)) return;  // ties keep the earlier (lower) key
        const int64_t k = std::find(s, s + n, tile_max) - s;
        *top_score = tile_max;
        *top_key = j0 + k;
    }

    // After the normaliser: p (n) holds the tile's p̃ for the row at query position i;
    // `tile_sum` is Σ p̃, `entropy_part` the normaliser's [1] contribution and `tile_sum_sq`
    // Σ p̃² when the normaliser computed it (< 0: computed here).
    void add_tile(float* acc, const float* p, int64_t i, int64_t j0, int64_t n, float tile_sum, float entropy_part,
                  float tile_sum_sq) const {
        acc[kMass] += tile_sum;
        acc[kEntropy] += entropy_part;
        acc[kSumSq] += tile_sum_sq >= 0.0f ? tile_sum_sq : sum_squares(p, n);
        float* chosen = acc + kFirstChosen;
        for (int64_t k = 0; k < n_keys_; ++k) chosen[k] += at(p, j0, n, st_->keys[k]);
        chosen += n_keys_;
        for (int64_t r = 0; r < n_offsets_; ++r) chosen[r] += at(p, j0, n, i - st_->offsets[r]);
        chosen += n_offsets_;
        if (n_segments_ > 0) {
            // the first run ending after j0
            auto run = std::upper_bound(runs_.begin(), runs_.end(), j0, [](int64_t j, const Run& r) { return j < r.end; });
            for (; run != runs_.end() && run->begin < j0 + n; ++run) {
                const int64_t lo = std::max(run->begin, j0) - j0, hi = std::min(run->end, j0 + n) - j0;
                chosen[run->id] += span_sum(p + lo, hi - lo);
            }
            chosen += n_segments_;
        }
        if (n_bins_ > 0) {
            // d = i - j falls as k grows; each bin is a contiguous run of keys
            for (int64_t k = 0; k < n;) {
                const int64_t d = i - (j0 + k);
                const int64_t bin = std::min(AttentionStats::distance_bin(d), n_bins_ - 1);
                const int64_t lowest = bin == 0 ? std::numeric_limits<int64_t>::min() / 2
                                                : (bin == 1 ? 0 : int64_t(1) << (bin - 2));
                const int64_t end = std::min<int64_t>(n, k + (d - lowest) + 1);
                chosen[bin] += span_sum(p + k, end - k);
                k = end;
            }
        }
    }

    // Writes row (b, t, h)'s statistics.
    void finish_row(const float* acc, float top_score, int64_t top_key, const RowFinal& f, int64_t b, int64_t t,
                    int64_t h) const {
        const int64_t row = (b * in_.T + t) * in_.H + h;
        const double factor = f.empty ? 0.0 : f.factor;
        const double mass = factor * acc[kMass];
        double entropy = 0, top_prob = 0;
        if (!f.empty) {
            if (norm_.kind == NormalizerKind::Softmax) {
                entropy = (f.lse - f.m) * mass - factor * acc[kEntropy];
                top_prob = std::exp(double(top_score) - f.lse);
            } else {
                entropy = -factor * acc[kEntropy] - mass * std::log(factor);
                top_prob = norm_.kind == NormalizerKind::Sigmoid ? 1.0 / (1.0 + std::exp(-(double(top_score) + norm_.bias)))
                                                                 : std::max(double(top_score), 0.0) * factor;
            }
        }
        if (top_prob <= 0) top_key = -1;  // (relu rows whose scores are all <= 0 put no mass anywhere)
        if (st_->mass) st_->mass[row] = static_cast<float>(mass);
        if (st_->entropy) st_->entropy[row] = static_cast<float>(entropy);
        if (st_->sum_sq) st_->sum_sq[row] = static_cast<float>(factor * factor * acc[kSumSq]);
        if (st_->top_key) st_->top_key[row] = top_key;
        if (st_->top_prob) st_->top_prob[row] = static_cast<float>(top_prob);
        const float* chosen = acc + kFirstChosen;
        auto write = [&](float* dst, int64_t count) {
            for (int64_t k = 0; k < count; ++k) dst[row * count + k] = static_cast<float>(factor * chosen[k]);
            chosen += count;
        };
        if (n_keys_) write(st_->key_mass, n_keys_);
        if (n_offsets_) write(st_->offset_mass, n_offsets_);
        if (n_segments_) write(st_->segment_mass, n_segments_);
        if (n_bins_) write(st_->distance_mass, n_bins_);
    }

private:
    // dst = keep·dst + src with p̃ scaled by alpha = e^{dm} (dm: old max − new max); src may be dst.
    void rebase(float* dst, const float* src, float keep, float alpha, float dm) const {
        dst[kEntropy] = keep * dst[kEntropy] + alpha * (src[kEntropy] + dm * src[kMass]);
        dst[kMass] = keep * dst[kMass] + alpha * src[kMass];
        dst[kSumSq] = keep * dst[kSumSq] + alpha * alpha * src[kSumSq];
        for (int64_t k = kFirstChosen; k < width_; ++k) dst[k] = keep * dst[k] + alpha * src[k];
    }

    struct Run {
        int64_t begin, end;
        int32_t id;
    };

    static float at(const float* p, int64_t j0, int64_t n, int64_t j) { return j >= j0 && j < j0 + n ? p[j - j0] : 0.0f; }

    static float span_sum(const float* p, int64_t n) {
        float sum = 0;
#pragma omp simd reduction(+ : sum)
        for (int64_t k = 0; k < n; ++k) sum += p[k];
        return sum;
    }
    static float sum_squares(const float* p, int64_t n) {
        float sum = 0;
#pragma omp simd reduction(+ : sum)
        for (int64_t k = 0; k < n; ++k) sum += p[k] * p[k];
        return sum;
    }

    const AttentionStats* st_;
    const AttentionInputs& in_;
    Normalizer norm_;
    bool active_ = false, want_top_ = false;
    int64_t n_keys_ = 0, n_offsets_ = 0, n_segments_ = 0, n_bins_ = 0, width_ = 0;
    std::vector<Run> runs_;
};

}  // namespace attnlab::detail
