// temperature(t=τ): s = s/τ (sharpen with τ < 1, flatten with τ > 1).
#include "attention/mechanism_params.h"
#include "attention/mechanisms/span_util.h"

namespace attnlab::mech {
namespace {

class Temperature final : public Mechanism {
public:
    explicit Temperature(double t) : t_(t) {}
    bool uses_distance() const override { return false; }
    std::string text() const override { return fmt::format("temperature(t={})", format_param(t_)); }
    bool is_score_mod() const override { return true; }
    double modify(double s, const ScoreCoord&) const override { return s / t_; }
    void modify_span(const RowSpan& row, float* scores) const override {
        const float t = static_cast<float>(t_);
#pragma omp simd
        for (int64_t k = 0; k < row.n; ++k) scores[k] /= t;
    }

private:
    double t_;
};

}  // namespace

std::shared_ptr<const Mechanism> make_temperature(MechanismParams& p) {
    return std::make_shared<Temperature>(p.positive("t"));
}

}  // namespace attnlab::mech
