// boost(segment=N,alpha=a): s ← s + a·|s| for keys whose segment id is N — PAINT's pre-softmax
// logit boost of informative image tokens (papers-multimodal §2: α = 0.7 on its local set, 0.3
// on its summary set). A multiplicative push away from 0 rather than an additive bias, so it
// scales with the logit's own size: positive logits grow, negative ones move towards 0 (a > 0).
#include "attention/mechanism_params.h"
#include "attention/mechanisms/span_util.h"

#include <cmath>

namespace attnlab::mech {
namespace {

class Boost final : public Mechanism {
public:
    Boost(int64_t segment, double alpha) : segment_(static_cast<int32_t>(segment)), alpha_(alpha) {}
    std::string text() const override {
        return fmt::format("boost(segment={},alpha={})", segment_, format_param(alpha_));
    }
    bool is_score_mod() const override { return true; }
    double modify(double s, const ScoreCoord& c) const override {
        return c.ctx->segments[c.j] == segment_ ? s + alpha_ * std::fabs(s) : s;
    }
    void modify_span(const RowSpan& row, float* scores) const override {
        const int32_t* seg = row.ctx->segments + row.j0;  // (n) segment id of each key of the span
        const float alpha = static_cast<float>(alpha_);
        for (int64_t k = 0; k < row.n; ++k)
            if (seg[k] == segment_) scores[k] += alpha * std::fabs(scores[k]);
    }
    void check(const AttentionContext& ctx, int64_t) const override {
        ATTNLAB_CHECK(ctx.segments != nullptr, InvalidArgument,
                      "[attention] `{}` needs segments (one id per key position)", text());
    }

private:
    int32_t segment_;
    double alpha_;
};

}  // namespace

std::shared_ptr<const Mechanism> make_boost(MechanismParams& p) {
    const int64_t segment = p.integer("segment", std::nullopt, 0);
    ATTNLAB_CHECK(segment <= INT32_MAX, InvalidArgument, "[attention spec] boost: segment {} is not a segment id", segment);
    return std::make_shared<Boost>(segment, p.number("alpha"));
}

}  // namespace attnlab::mech
