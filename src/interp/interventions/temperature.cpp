// temperature: a per-head softmax temperature, pre-softmax: the chosen heads run their spec plus
// `temperature(t=τ)` (s ← s/τ after the spec's own score modifiers), so the kernel does it and
// nothing else changes. τ < 1 sharpens a head's attention, τ > 1 flattens it; τ = 1 is the
// identity.
#include "interp/interventions/attention_edit_util.h"

namespace attnlab::intervention_util {

namespace {

class Temperature final : public Intervention {
public:
    Temperature(std::vector<HeadRef> heads, double t)
        : heads_(std::move(heads)), t_(t), by_layer_(heads_by_layer(heads_)),
          temperature_(AttentionSpec::parse(fmt::format("temperature(t={})", t))) {}  // shortest round-trip form

    std::string describe() const override { return fmt::format("temperature {} t {}", heads_text(heads_), t_); }

    bool wants(const std::string&) const override { return false; }
    void on(const std::string&, Tensor&) override {}

    bool rewrites_attention(int64_t layer) const override { return by_layer_.count(layer) > 0; }
    void rewrite_attention(int64_t layer, std::vector<AttentionSpec>& head_specs) override {
        for (int64_t h : by_layer_.at(layer)) head_specs[h] = with_mechanisms(head_specs[h], temperature_);
    }

private:
    std::vector<HeadRef> heads_;
    double t_;
    std::map<int64_t, std::vector<int64_t>> by_layer_;
    AttentionSpec temperature_;  // temperature(t=τ)
};

}  // namespace

std::unique_ptr<Intervention> make_temperature(const Fields& f) {
    f.only({"heads", "t"});
    const double t = f.number("t");
    ATTNLAB_CHECK(std::isfinite(t) && t > 0, InvalidArgument, "[{}] \"t\" must be > 0, got {}", f.where(), t);
    return std::make_unique<Temperature>(f.heads(), t);
}

}  // namespace attnlab::intervention_util
