// decay(gamma=g): s += |i - j|·ln g — RetNet / RMT-style distance decay written as a log bias
// inside the softmax (equal to renormalising e^s·g^|i-j|).
#include "attention/mechanism_params.h"
#include "attention/mechanisms/span_util.h"

#include <cmath>

namespace attnlab::mech {
namespace {

class Decay final : public Mechanism {
public:
    explicit Decay(double gamma) : gamma_(gamma), log_gamma_(std::log(gamma)) {}
    std::string text() const override { return fmt::format("decay(gamma={})", format_param(gamma_)); }
    bool is_score_mod() const override { return true; }
    double modify(double s, const ScoreCoord& c) const override {
        return s + double(std::llabs(c.i - c.j)) * log_gamma_;
    }
    void modify_span(const RowSpan& row, float* scores) const override {
        const float log_gamma = static_cast<float>(log_gamma_);
        const float i = static_cast<float>(row.i - row.j0);
#pragma omp simd
        for (int64_t k = 0; k < row.n; ++k) scores[k] += std::fabs(i - float(k)) * log_gamma;
    }

private:
    double gamma_, log_gamma_;
};

}  // namespace

std::shared_ptr<const Mechanism> make_decay(MechanismParams& p) {
    return std::make_shared<Decay>(p.positive("gamma"));
}

}  // namespace attnlab::mech
