// causal: keep j <= i (decoder self-attention).
#include "attention/mechanism_params.h"
#include "attention/mechanisms/span_util.h"

namespace attnlab::mech {
namespace {

class Causal final : public Mechanism {
public:
    bool uses_distance() const override { return false; }
    std::string text() const override { return "causal"; }
    bool is_mask() const override { return true; }
    bool keep(const ScoreCoord& c) const override { return c.j <= c.i; }
    TileVisit visit(const TileCoord& t) const override {
        if (t.j_lo > t.i_hi) return TileVisit::Skip;
        return t.j_hi <= t.i_lo ? TileVisit::Full : TileVisit::Partial;
    }
    void mask_span(const RowSpan& row, float* scores) const override {
        drop_range(row, row.i + 1 - row.j0, row.n, scores);
    }
};

}  // namespace

std::shared_ptr<const Mechanism> make_causal(MechanismParams&) { return std::make_shared<Causal>(); }

}  // namespace attnlab::mech
