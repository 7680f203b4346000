// sigmoid(bias=b): the normalizer p = σ(s + b) instead of softmax (sigmoid attention, SWAT);
// rows do not sum to 1. lse reports log Σ_j p_j.
#include "attention/mechanism_params.h"
#include "attention/mechanisms/span_util.h"

namespace attnlab::mech {
namespace {

class Sigmoid final : public Mechanism {
public:
    explicit Sigmoid(double bias) : bias_(bias) {}
    bool uses_distance() const override { return false; }
    std::string text() const override { return fmt::format("sigmoid(bias={})", format_param(bias_)); }
    std::optional<Normalizer> normalizer() const override { return Normalizer{NormalizerKind::Sigmoid, bias_}; }

private:
    double bias_;
};

}  // namespace

std::shared_ptr<const Mechanism> make_sigmoid(MechanismParams& p) {
    return std::make_shared<Sigmoid>(p.number("bias", 0.0));
}

}  // namespace attnlab::mech
