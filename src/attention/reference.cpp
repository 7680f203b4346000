// The float64 reference: every score from the mechanisms' definitions (keep / modify), one
// row at a time, no tiling and no online softmax. The oracle the tests hold the kernels to.
#include "attention/call.h"
#include "attention/stats.h"

#include <attnlab/half.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>
#include <vector>

namespace attnlab {

namespace {

double element(const void* base, DType dtype, int64_t index) {
    if (dtype == DType::BF16) return bf16_to_f32(static_cast<const uint16_t*>(base)[index]);
    return static_cast<const float*>(base)[index];
}

}  // namespace

void attention_reference(const AttentionSpec& spec, const AttentionInputs& in, const AttentionOutputs& out) {
    const detail::AttentionCall call(spec, in, out);
    const double neg_inf = -std::numeric_limits<double>::infinity();
    const Normalizer norm = call.normalizer;
    std::vector<double> s(static_cast<size_t>(in.S)), p(static_cast<size_t>(in.S));
    std::optional<detail::RowStatsWriter> stats;
    if (out.stats) stats.emplace(*out.stats, in);
    for (int64_t b = 0; b < in.B; ++b) {
        for (int64_t h = call.head_begin; h < call.head_end; ++h) {
            const int64_t hk = h / call.group;
            for (int64_t t = 0; t < in.T; ++t) {
                const int64_t i = call.positions[t];
                int64_t kept = 0;
                double max_score = neg_inf;
                for (int64_t j = 0; j < in.S; ++j) {
                    const ScoreCoord c{b, h, hk, i, j, &call.ctx};
                    double acc = 0;
                    for (int64_t d = 0; d < in.D; ++d)
                        acc += element(in.q, in.dtype, b * in.q_batch_stride + t * in.q_stride + h * in.D + d) *
                               element(in.k, in.dtype, b * in.k_batch_stride + j * in.k_stride + hk * in.D + d);
                    acc *= call.scale;
                    for (const Mechanism* m : call.score_mods) acc = m->modify(acc, c);
                    bool keep = true;
                    for (const Mechanism* m : call.masks) keep = keep && m->keep(c);
                    s[j] = keep ? acc : neg_inf;
                    kept += keep;
                    if (keep) max_score = std::max(max_score, acc);
                }
                // Probabilities and the log-normaliser of the row.
                double lse = neg_inf;
                if (kept > 0) {
                    if (norm.kind == NormalizerKind::Softmax) {
                        const std::vector<double> extra = call.extra_logits_of(h);
                        double m = max_score;
                        for (double e : extra) m = std::max(m, e);
                        double z = 0;
                        for (int64_t j = 0; j < in.S; ++j) z += s[j] == neg_inf ? 0.0 : std::exp(s[j] - m);
                        for (double e : extra) z += std::exp(e - m);
                        lse = m + std::log(z);
                        for (int64_t j = 0; j < in.S; ++j) p[j] = s[j] == neg_inf ? 0.0 : std::exp(s[j] - lse);
                    } else {
                        double z = 0;
                        for (int64_t j = 0; j < in.S; ++j) {
                            if (s[j] == neg_inf) p[j] = 0.0;
                            else if (norm.kind == NormalizerKind::Sigmoid) p[j] = 1.0 / (1.0 + std::exp(-(s[j] + norm.bias)));
                            else p[j] = std::max(s[j], 0.0) / double(kept);
                            z += p[j];
                        }
                        lse = std::log(z);
                    }
                } else {
                    std::fill(p.begin(), p.end(), 0.0);
                }
                float* o = out.out + b * out.out_batch_stride + t * out.out_stride + h * in.Dv;
                for (int64_t d = 0; d < in.Dv; ++d) {
                    double acc = 0;
                    for (int64_t j = 0; j < in.S; ++j)
                        if (p[j] != 0.0)
                            acc += p[j] * element(in.v, in.dtype, b * in.v_batch_stride + j * in.v_stride + hk * in.Dv + d);
                    o[d] = static_cast<float>(acc);
                }
                if (out.lse) out.lse[(b * in.T + t) * in.H + h] = static_cast<float>(lse);
                if (stats) stats->add_row(b, t, h, i, p.data());
                const int64_t row = ((b * in.H + h) * in.T + t) * in.S;
                for (int64_t j = 0; j < in.S; ++j) {
                    if (out.scores) out.scores[row + j] = static_cast<float>(s[j]);
                    if (out.pattern) out.pattern[row + j] = static_cast<float>(p[j]);
                }
            }
        }
    }
    if (stats) stats->finish(call.head_begin, call.head_end);
}

}  // namespace attnlab
