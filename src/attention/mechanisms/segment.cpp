// segment(id=N): keep only keys whose segment id is N (input `segments`, one id per key
// position). Restricts a head to one labelled span of the prompt — "attend only to the image"
// — and is how post-softmax interventions get a row's attention mass and value mix on a key
// set without materialising the pattern (see docs/interventions.md).
#include "attention/mechanism_params.h"
#include "attention/mechanisms/span_util.h"

namespace attnlab::mech {
namespace {

class Segment final : public Mechanism {
public:
    explicit Segment(int64_t id) : id_(static_cast<int32_t>(id)) {}
    bool uses_distance() const override { return false; }
    std::string text() const override { return fmt::format("segment(id={})", id_); }
    bool is_mask() const override { return true; }
    bool keep(const ScoreCoord& c) const override { return c.ctx->segments[c.j] == id_; }
    TileVisit visit(const TileCoord& t) const override {
        VisitAccumulator acc;
        for (int64_t j = t.j_lo; j <= t.j_hi; ++j) acc.add(t.ctx->segments[j] == id_ ? TileVisit::Full : TileVisit::Skip);
        return acc.result();
    }
    void mask_span(const RowSpan& row, float* scores) const override {
        const int32_t* seg = row.ctx->segments + row.j0;
        for (int64_t k = 0; k < row.n; ++k)
            if (seg[k] != id_) scores[k] = kDropped;
    }
    void check(const AttentionContext& ctx, int64_t) const override {
        ATTNLAB_CHECK(ctx.segments != nullptr, InvalidArgument,
                      "[attention] `segment(id={})` needs segments (one id per key position)", id_);
    }

private:
    int32_t id_;
};

}  // namespace

std::shared_ptr<const Mechanism> make_segment(MechanismParams& p) {
    return std::make_shared<Segment>(p.integer("id", std::nullopt, 0));
}

}  // namespace attnlab::mech
