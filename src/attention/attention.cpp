// Attention for the model path: exact softmax over the kept key range of each query block.
//
// Causal and window masks keep an interval [lo, hi] of keys per query, so a block of queries
// needs only the union of its intervals: sliding-window layers cost O(window) and nothing T×S
// is allocated unless scores/pattern are requested. Scores and P·V run through the matmul
// kernel; work is split over heads × query blocks. (The programmable, flash-style operator
// replaces this in the attention-operator issue.)
#include <attnlab/attention.h>
#include <attnlab/error.h>
#include <attnlab/tensor.h>
#include <attnlab/threads.h>

#include "kernels/cpu/matmul.h"
#include "kernels/cpu/vec_math.h"

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

// Query positions per block: with the GQA group stacked (e.g. 7 heads x 32 rows) the score and
// P·V products are GEMMs of a few hundred rows, and a block's scores (group x 32 x S floats)
// stay in L2 for S up to a few thousand.
constexpr int64_t kQueryBlock = 32;

// Row helpers of the softmax, vectorised (target_clones picks AVX-512 / AVX2 at load time).
// x = softcap·tanh(scale·x / softcap) (or scale·x); returns max(x).
__attribute__((target_clones("avx512f", "avx2", "default")))
float scale_and_max(float* x, int64_t n, float scale, float softcap) {
    if (softcap > 0.0f) {
        for (int64_t i = 0; i < n; ++i) x[i] = softcap * std::tanh(x[i] * scale / softcap);
    } else {
#pragma omp simd
        for (int64_t i = 0; i < n; ++i) x[i] *= scale;
    }
    float m = -std::numeric_limits<float>::infinity();
#pragma omp simd reduction(max : m)
    for (int64_t i = 0; i < n; ++i) m = std::max(m, x[i]);
    return m;
}

// x = e^(x - shift); returns the sum (accumulated in double over float partial sums).
__attribute__((target_clones("avx512f", "avx2", "default")))
double exp_shifted_sum(float* x, int64_t n, float shift) {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) x[i] = cpu::exp_approx(x[i] - shift);
    double sum = 0.0;
#pragma omp simd reduction(+ : sum)
    for (int64_t i = 0; i < n; ++i) sum += x[i];
    return sum;
}

__attribute__((target_clones("avx512f", "avx2", "default")))
void scale_inplace(float* x, int64_t n, float s) {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) x[i] *= s;
}

}  // namespace

void attention(const AttentionSpec& spec, const AttentionInputs& in, const AttentionOutputs& out) {
    validate(in, out);
    const float scale = static_cast<float>(spec.scale > 0 ? spec.scale : 1.0 / std::sqrt(double(in.D)));
    const float softcap = static_cast<float>(spec.softcap);
    const int64_t group = in.H / in.Hkv;
    const float neg_inf = -std::numeric_limits<float>::infinity();
    const int64_t n_blocks = (in.T + kQueryBlock - 1) / kQueryBlock;
    // Work items: (kv head, query block). The query rows of every head that reads this kv
    // head are stacked into one matrix (group · rows, D), so K and V are packed once per item
    // for all of them: S = Q·K[lo..hi]ᵀ and O = P·V[lo..hi] run through the matmul kernel
    // (serially inside this parallel loop). [lo, hi] is the union of the block's kept key
    // ranges: they are intervals, monotone in position.
    parallel_for(in.Hkv * n_blocks, [&](int64_t begin, int64_t end, int) {
        std::vector<float> q_rows, scores, o_rows;  // (group·rows, D), (group·rows, n), (group·rows, Dv)
        for (int64_t item = begin; item < end; ++item) {
            const int64_t hk = item / n_blocks;
            const int64_t t0 = (item % n_blocks) * kQueryBlock;
            const int64_t rows = std::min(kQueryBlock, in.T - t0);
            const int64_t stacked = group * rows;  // row g·rows + r is head hk·group + g, query t0 + r
            const KeyRange first = kept_keys(spec, in.q_pos0 + t0, in.S);
            const KeyRange last = kept_keys(spec, in.q_pos0 + t0 + rows - 1, in.S);
            const int64_t lo = std::max<int64_t>(0, first.lo), hi = std::min(in.S - 1, last.hi);
            const int64_t n = std::max<int64_t>(0, hi - lo + 1);
            if (n > 0) {
                q_rows.resize(static_cast<size_t>(stacked * in.D));
                for (int64_t g = 0; g < group; ++g)
                    for (int64_t r = 0; r < rows; ++r)
                        std::copy_n(in.q + (t0 + r) * in.q_stride + (hk * group + g) * in.D, in.D,
                                    q_rows.data() + (g * rows + r) * in.D);
                scores.resize(static_cast<size_t>(stacked * n));
                Tensor k_view = Tensor::wrap(const_cast<float*>(in.k + lo * in.k_stride + hk * in.D), DType::F32,
                                             {n, in.D}, {in.k_stride, 1});  // (n, D)
                cpu::linear(q_rows.data(), in.D, k_view, nullptr, scores.data(), n, stacked);
            }
            for (int64_t g = 0; g < group; ++g) {
                const int64_t h = hk * group + g;
                for (int64_t r = 0; r < rows; ++r) {
                    const int64_t t = t0 + r;
                    const KeyRange range = kept_keys(spec, in.q_pos0 + t, in.S);
                    float* row = scores.data() + (g * rows + r) * n;
                    float* scores_row = out.scores ? out.scores + (h * in.T + t) * in.S : nullptr;
                    float* pattern_row = out.pattern ? out.pattern + (h * in.T + t) * in.S : nullptr;
                    if (scores_row) std::fill(scores_row, scores_row + in.S, neg_inf);
                    if (pattern_row) std::fill(pattern_row, pattern_row + in.S, 0.0f);
                    const int64_t a = std::max(range.lo, lo) - lo, b = std::min(range.hi, hi) - lo;  // kept, in row
                    if (n == 0 || a > b) {
                        if (n > 0) std::fill(row, row + n, 0.0f);
                        if (out.lse) out.lse[t * in.H + h] = neg_inf;
                        continue;
                    }
                    const float max_score = scale_and_max(row + a, b - a + 1, scale, softcap);
                    if (scores_row) std::copy(row + a, row + b + 1, scores_row + lo + a);
                    const double sum = exp_shifted_sum(row + a, b - a + 1, max_score);
                    std::fill(row, row + a, 0.0f);
                    std::fill(row + b + 1, row + n, 0.0f);
                    scale_inplace(row + a, b - a + 1, static_cast<float>(1.0 / sum));
                    if (pattern_row) std::copy(row + a, row + b + 1, pattern_row + lo + a);
                    if (out.lse) out.lse[t * in.H + h] = max_score + static_cast<float>(std::log(sum));
                }
            }
            o_rows.assign(static_cast<size_t>(stacked * in.Dv), 0.0f);
            if (n > 0) {
                // O (stacked, Dv) = P (stacked, n) · V[lo..hi] (n, Dv); V as the transposed (Dv, n) weight.
                Tensor v_view = Tensor::wrap(const_cast<float*>(in.v + lo * in.v_stride + hk * in.Dv), DType::F32,
                                             {in.Dv, n}, {1, in.v_stride});
                cpu::linear(scores.data(), n, v_view, nullptr, o_rows.data(), in.Dv, stacked);
            }
            for (int64_t g = 0; g < group; ++g)
                for (int64_t r = 0; r < rows; ++r)
                    std::copy_n(o_rows.data() + (g * rows + r) * in.Dv, in.Dv,
                                out.out + (t0 + r) * out.out_stride + (hk * group + g) * in.Dv);
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
