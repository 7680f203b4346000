// Attention for the model path: exact two-pass softmax per query row over the kept key range.
//
// Each (head, query) row needs only its kept range [lo, hi] of keys (causal and window masks
// are intervals), so sliding-window layers cost O(window), and nothing T×S is allocated
// unless scores/pattern are requested. Work is split over heads × query rows.
#include <attnlab/attention.h>
#include <attnlab/error.h>
#include <attnlab/threads.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

namespace attnlab {

namespace {

struct KeyRange {
    int64_t lo, hi;  // inclusive; empty when lo > hi
};

KeyRange kept_keys(const AttentionSpec& spec, int64_t pos, int64_t S) {
    int64_t hi = spec.causal ? std::min(S - 1, pos) : S - 1;
    int64_t lo = spec.window > 0 ? std::max<int64_t>(0, pos - spec.window + 1) : 0;
    if (!spec.causal && spec.window > 0) hi = std::min(S - 1, pos + spec.window - 1);
    return {lo, hi};
}

void validate(const AttentionInputs& in, const AttentionOutputs& out) {
    ATTNLAB_CHECK(in.T >= 0 && in.S >= 0 && in.H > 0 && in.Hkv > 0 && in.D > 0 && in.Dv > 0,
                  InvalidArgument, "[attention] invalid sizes T={} S={} H={} Hkv={} D={} Dv={}",
                  in.T, in.S, in.H, in.Hkv, in.D, in.Dv);
    ATTNLAB_CHECK(in.H % in.Hkv == 0, InvalidArgument,
                  "[attention] H ({}) must be a multiple of Hkv ({})", in.H, in.Hkv);
    ATTNLAB_CHECK(in.q && in.k && in.v && out.out, InvalidArgument,
                  "[attention] q, k, v and out are required");
}

// Scores of one query row against keys [lo, hi] -> row[0 .. hi-lo].
// target_clones: the hot loops are compiled for AVX-512 and AVX2 and picked at load time.
__attribute__((target_clones("avx512f", "avx2", "default")))
void row_scores(const float* q, const float* k, int64_t k_stride, int64_t D, int64_t lo,
                int64_t hi, float scale, float softcap, float* row) {
    for (int64_t j = lo; j <= hi; ++j) {
        const float* kj = k + j * k_stride;
        float acc = 0.0f;
#pragma omp simd reduction(+ : acc)
        for (int64_t d = 0; d < D; ++d) acc += q[d] * kj[d];
        float s = acc * scale;
        if (softcap > 0.0f) s = softcap * std::tanh(s / softcap);
        row[j - lo] = s;
    }
}

__attribute__((target_clones("avx512f", "avx2", "default")))
void row_weighted_sum(const float* p, const float* v, int64_t v_stride, int64_t Dv, int64_t lo,
                      int64_t hi, float* out) {
    for (int64_t d = 0; d < Dv; ++d) out[d] = 0.0f;
    for (int64_t j = lo; j <= hi; ++j) {
        const float w = p[j - lo];
        const float* vj = v + j * v_stride;
#pragma omp simd
        for (int64_t d = 0; d < Dv; ++d) out[d] += w * vj[d];
    }
}

}  // namespace

void attention(const AttentionSpec& spec, const AttentionInputs& in, const AttentionOutputs& out) {
    validate(in, out);
    const float scale = static_cast<float>(spec.scale > 0 ? spec.scale : 1.0 / std::sqrt(double(in.D)));
    const float softcap = static_cast<float>(spec.softcap);
    const int64_t group = in.H / in.Hkv;
    const float neg_inf = -std::numeric_limits<float>::infinity();
    const int64_t rows = in.H * in.T;
    parallel_for(rows, [&](int64_t begin, int64_t end, int) {
        std::vector<float> row(static_cast<size_t>(std::max<int64_t>(in.S, 1)));
        for (int64_t r = begin; r < end; ++r) {
            const int64_t h = r / in.T, t = r % in.T, hk = h / group;
            const int64_t pos = in.q_pos0 + t;
            const KeyRange range = kept_keys(spec, pos, in.S);
            float* o = out.out + t * out.out_stride + h * in.Dv;
            float* scores_row = out.scores ? out.scores + (h * in.T + t) * in.S : nullptr;
            float* pattern_row = out.pattern ? out.pattern + (h * in.T + t) * in.S : nullptr;
            if (scores_row) std::fill(scores_row, scores_row + in.S, neg_inf);
            if (pattern_row) std::fill(pattern_row, pattern_row + in.S, 0.0f);
            if (range.lo > range.hi) {
                std::fill(o, o + in.Dv, 0.0f);
                if (out.lse) out.lse[t * in.H + h] = neg_inf;
                continue;
            }
            const int64_t n = range.hi - range.lo + 1;
            row_scores(in.q + t * in.q_stride + h * in.D, in.k + hk * in.D, in.k_stride, in.D,
                       range.lo, range.hi, scale, softcap, row.data());
            if (scores_row) std::copy(row.begin(), row.begin() + n, scores_row + range.lo);
            float max_score = neg_inf;
            for (int64_t j = 0; j < n; ++j) max_score = std::max(max_score, row[j]);
            double sum = 0.0;
            for (int64_t j = 0; j < n; ++j) {
                row[j] = std::exp(row[j] - max_score);
                sum += row[j];
            }
            const float inv = static_cast<float>(1.0 / sum);
            for (int64_t j = 0; j < n; ++j) row[j] *= inv;
            if (pattern_row) std::copy(row.begin(), row.begin() + n, pattern_row + range.lo);
            row_weighted_sum(row.data(), in.v + hk * in.Dv, in.v_stride, in.Dv, range.lo, range.hi, o);
            if (out.lse) out.lse[t * in.H + h] = max_score + static_cast<float>(std::log(sum));
        }
    });
}

void attention_reference(const AttentionSpec& spec, const AttentionInputs& in,
                         const AttentionOutputs& out) {
    validate(in, out);
    const double scale = spec.scale > 0 ? spec.scale : 1.0 / std::sqrt(double(in.D));
    const int64_t group = in.H / in.Hkv;
    const double neg_inf = -std::numeric_limits<double>::infinity();
    std::vector<double> s(static_cast<size_t>(std::max<int64_t>(in.S, 1)));
    for (int64_t h = 0; h < in.H; ++h) {
        for (int64_t t = 0; t < in.T; ++t) {
            const int64_t hk = h / group, i = in.q_pos0 + t;
            double max_score = neg_inf;
            for (int64_t j = 0; j < in.S; ++j) {
                bool keep = (!spec.causal || j <= i) &&
                            (spec.window <= 0 || std::llabs(i - j) < spec.window);
                if (!keep) {
                    s[j] = neg_inf;
                    continue;
                }
                double acc = 0;
                for (int64_t d = 0; d < in.D; ++d)
                    acc += double(in.q[t * in.q_stride + h * in.D + d]) *
                           double(in.k[j * in.k_stride + hk * in.D + d]);
                acc *= scale;
                if (spec.softcap > 0) acc = spec.softcap * std::tanh(acc / spec.softcap);
                s[j] = acc;
                max_score = std::max(max_score, acc);
            }
            float* o = out.out + t * out.out_stride + h * in.Dv;
            if (max_score == neg_inf) {
                for (int64_t d = 0; d < in.Dv; ++d) o[d] = 0.0f;
                if (out.lse) out.lse[t * in.H + h] = static_cast<float>(neg_inf);
                for (int64_t j = 0; j < in.S; ++j) {
                    if (out.scores) out.scores[(h * in.T + t) * in.S + j] = static_cast<float>(neg_inf);
                    if (out.pattern) out.pattern[(h * in.T + t) * in.S + j] = 0.0f;
                }
                continue;
            }
            double sum = 0;
            for (int64_t j = 0; j < in.S; ++j) sum += s[j] == neg_inf ? 0.0 : std::exp(s[j] - max_score);
            std::vector<double> acc(static_cast<size_t>(in.Dv), 0.0);
            for (int64_t j = 0; j < in.S; ++j) {
                double p = s[j] == neg_inf ? 0.0 : std::exp(s[j] - max_score) / sum;
                if (out.scores) out.scores[(h * in.T + t) * in.S + j] = static_cast<float>(s[j]);
                if (out.pattern) out.pattern[(h * in.T + t) * in.S + j] = static_cast<float>(p);
                for (int64_t d = 0; d < in.Dv; ++d)
                    acc[d] += p * double(in.v[j * in.v_stride + hk * in.Dv + d]);
            }
            for (int64_t d = 0; d < in.Dv; ++d) o[d] = static_cast<float>(acc[d]);
            if (out.lse) out.lse[t * in.H + h] = static_cast<float>(max_score + std::log(sum));
        }
    }
}

}  // namespace attnlab
