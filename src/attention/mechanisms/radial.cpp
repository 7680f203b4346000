// radial(frame=F,decay=d,block=128): Radial Attention's token-level mask (see radial_rule.h).
// Bidirectional like the video models it comes from; add `causal` for a decoder.
#include "attention/mechanism_params.h"
#include "attention/mechanisms/radial_rule.h"
#include "attention/mechanisms/span_util.h"

namespace attnlab::mech {
namespace {

class Radial final : public Mechanism {
public:
    explicit Radial(RadialRule rule) : rule_(rule) {}
    std::string text() const override {
        return fmt::format("radial(frame={},decay={},block={})", rule_.frame, format_param(rule_.decay), rule_.block);
    }
    bool is_mask() const override { return true; }
    bool keep(const ScoreCoord& c) const override { return rule_.keep(c.i, c.j); }
    TileVisit visit(const TileCoord& t) const override {
        return visit_cells(t, rule_.frame, [&](int64_t t_i, int64_t t_j) {
            const RadialRule::Kind kind = rule_.pair(t_i, t_j).kind;
            return kind == RadialRule::Kind::All    ? TileVisit::Full
                   : kind == RadialRule::Kind::None ? TileVisit::Skip
                                                    : TileVisit::Partial;
        });
    }
    // Frame by frame along the row: each key frame is kept whole, dropped, or kept on the band
    // |x_i - x_j| <= width.
    void mask_span(const RowSpan& row, float* scores) const override {
        const int64_t f = rule_.frame, t_i = row.i / f, x_i = row.i % f;
        for_each_cell(row, f, [&](int64_t t_j, int64_t j, int64_t next) {
            const RadialRule::Pair p = rule_.pair(t_i, t_j);
            if (p.kind == RadialRule::Kind::None) {
                drop_range(row, j - row.j0, next - row.j0, scores);
            } else if (p.kind == RadialRule::Kind::Band) {
                const int64_t frame_start = t_j * f;
                const int64_t lo = frame_start + std::max<int64_t>(0, x_i - p.width);
                const int64_t hi = frame_start + std::min<int64_t>(f - 1, x_i + p.width);
                drop_range(row, j - row.j0, lo - row.j0, scores);
                drop_range(row, hi + 1 - row.j0, next - row.j0, scores);
            }
        });
    }

private:
    RadialRule rule_;
};

}  // namespace

RadialRule parse_radial_rule(MechanismParams& p) {
    RadialRule rule;
    rule.frame = p.integer("frame", std::nullopt, 1);
    rule.decay = p.positive("decay", 1.0);
    rule.block = p.integer("block", 128, 1);
    return rule;
}

std::shared_ptr<const Mechanism> make_radial(MechanismParams& p) {
    return std::make_shared<Radial>(parse_radial_rule(p));
}

}  // namespace attnlab::mech
