// relu: the normalizer p = relu(s) / (number of kept keys of the row) instead of softmax
// (ReLU attention with length scaling). lse reports log Σ_j p_j.
#include "attention/mechanism_params.h"
#include "attention/mechanisms/span_util.h"

namespace attnlab::mech {
namespace {

class Relu final : public Mechanism {
public:
    bool uses_distance() const override { return false; }
    std::string text() const override { return "relu"; }
    std::optional<Normalizer> normalizer() const override { return Normalizer{NormalizerKind::Relu, 0.0}; }
};

}  // namespace

std::shared_ptr<const Mechanism> make_relu(MechanismParams&) { return std::make_shared<Relu>(); }

}  // namespace attnlab::mech
