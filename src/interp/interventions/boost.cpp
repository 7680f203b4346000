// boost: PAINT's pre-softmax logit boost on a token segment (papers-multimodal §2): the chosen
// heads run their spec plus `boost(segment=N,alpha=α)`, so for keys j of the segment
//   s_j ← s_j + α·|s_j|
// after the spec's own score modifiers, then the softmax as usual (α = 0 is the identity).
// PAINT boosts two key sets (α = 0.7 and 0.3) in layers 2–31, all heads, on the last query row
// only; here every row of the chosen heads is boosted (a decode step has only the last row), and
// two sets are two `boost` items. The forward pass needs the segments (--segment NAME=A:B).
#include "interp/interventions/attention_edit_util.h"

namespace attnlab::intervention_util {

namespace {

class Boost final : public Intervention {
public:
    Boost(std::vector<HeadRef> heads, std::string segment, int32_t segment_id, double alpha)
        : heads_(std::move(heads)), segment_(std::move(segment)), alpha_(alpha), by_layer_(heads_by_layer(heads_)),
          boost_(AttentionSpec::parse(fmt::format("boost(segment={},alpha={})", segment_id, alpha))) {}

    std::string describe() const override {
        return fmt::format("boost {} segment {} alpha {}", heads_text(heads_), segment_, alpha_);
    }

    bool wants(const std::string&) const override { return false; }
    void on(const std::string&, Tensor&) override {}

    bool rewrites_attention(int64_t layer) const override { return by_layer_.count(layer) > 0; }
    void rewrite_attention(int64_t layer, std::vector<AttentionSpec>& head_specs) override {
        for (int64_t h : by_layer_.at(layer)) head_specs[h] = with_mechanisms(head_specs[h], boost_);
    }

private:
    std::vector<HeadRef> heads_;
    std::string segment_;
    double alpha_;
    std::map<int64_t, std::vector<int64_t>> by_layer_;
    AttentionSpec boost_;  // boost(segment=N,alpha=α)
};

}  // namespace

std::unique_ptr<Intervention> make_boost(const Fields& f) {
    f.only({"heads", "segment", "alpha"});
    const double alpha = f.number("alpha");
    ATTNLAB_CHECK(std::isfinite(alpha), InvalidArgument, "[{}] \"alpha\" must be finite", f.where());
    return std::make_unique<Boost>(f.heads(), f.string("segment"), f.segment_id("segment"), alpha);
}

}  // namespace attnlab::intervention_util
