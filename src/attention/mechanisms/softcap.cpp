// softcap(cap=c): s = c·tanh(s/c) — Gemma-2's logit soft-capping.
#include "attention/mechanism_params.h"
#include "attention/mechanisms/span_util.h"
#include "kernels/cpu/vec_math.h"

#include <cmath>

namespace attnlab::mech {
namespace {

class Softcap final : public Mechanism {
public:
    explicit Softcap(double cap) : cap_(cap) {}
    bool uses_distance() const override { return false; }
    std::string text() const override { return fmt::format("softcap(cap={})", format_param(cap_)); }
    bool is_score_mod() const override { return true; }
    double modify(double s, const ScoreCoord&) const override { return cap_ * std::tanh(s / cap_); }
    void modify_span(const RowSpan& row, float* scores) const override {
        const float cap = static_cast<float>(cap_), inv = static_cast<float>(1.0 / cap_);
#pragma omp simd
        for (int64_t k = 0; k < row.n; ++k) scores[k] = cap * cpu::tanh_approx(scores[k] * inv);
    }

private:
    double cap_;
};

}  // namespace

std::shared_ptr<const Mechanism> make_softcap(MechanismParams& p) {
    return std::make_shared<Softcap>(p.positive("cap"));
}

}  // namespace attnlab::mech
