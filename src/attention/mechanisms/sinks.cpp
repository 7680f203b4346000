// sinks: a learned per-head sink logit joins every softmax row's denominator (gpt-oss): the
// probabilities of real keys sum to 1 - e^{sink - lse}, the rest "goes nowhere".
// Input `sinks` (H). A row with no kept key still outputs 0 with lse = -inf.
#include "attention/mechanism_params.h"
#include "attention/mechanisms/span_util.h"

namespace attnlab::mech {
namespace {

class Sinks final : public Mechanism {
public:
    bool uses_distance() const override { return false; }
    std::string text() const override { return "sinks"; }
    bool has_extra_logit() const override { return true; }
    double extra_logit(int64_t h, const AttentionContext& ctx) const override { return ctx.sinks[h]; }
    void check(const AttentionContext& ctx, int64_t) const override {
        ATTNLAB_CHECK(ctx.sinks != nullptr, InvalidArgument, "[attention] `sinks` needs a sink logit per head (H)");
    }
};

}  // namespace

std::shared_ptr<const Mechanism> make_sinks(MechanismParams&) { return std::make_shared<Sinks>(); }

}  // namespace attnlab::mech
