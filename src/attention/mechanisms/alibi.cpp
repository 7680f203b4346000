// alibi: s -= m_h·|i - j| with the ALiBi paper's head slopes (Press et al. 2022): for n heads
// a power of two, m_h = 2^(-8(h+1)/n); otherwise the slopes of the closest smaller power of two
// p, followed by every other slope of 2p heads (the paper's reference code), for the first n-p.
#include "attention/mechanism_params.h"
#include "attention/mechanisms/span_util.h"

#include <cmath>

namespace attnlab::mech {
namespace {

double alibi_slope(int64_t h, int64_t n_heads) {
    int64_t p = 1;
    while (p * 2 <= n_heads) p *= 2;
    if (h < p) return std::exp2(-8.0 * double(h + 1) / double(p));
    return std::exp2(-8.0 * double(2 * (h - p) + 1) / double(2 * p));
}

class Alibi final : public Mechanism {
public:
    std::string text() const override { return "alibi"; }
    bool is_score_mod() const override { return true; }
    double modify(double s, const ScoreCoord& c) const override {
        return s - alibi_slope(c.h, c.ctx->H) * double(std::llabs(c.i - c.j));
    }
    void modify_span(const RowSpan& row, float* scores) const override {
        const float slope = static_cast<float>(alibi_slope(row.h, row.ctx->H));
        const float i = static_cast<float>(row.i - row.j0);  // distances are exact in float below 2^24
#pragma omp simd
        for (int64_t k = 0; k < row.n; ++k) scores[k] -= slope * std::fabs(i - float(k));
    }
};

}  // namespace

std::shared_ptr<const Mechanism> make_alibi(MechanismParams&) { return std::make_shared<Alibi>(); }

}  // namespace attnlab::mech
