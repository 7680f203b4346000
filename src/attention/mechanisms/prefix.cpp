// prefix(len=P): keep j < P or j <= i — a prefix-LM: the first P positions see each other
// bidirectionally, the rest is causal. It replaces `causal` rather than combining with it.
#include "attention/mechanism_params.h"
#include "attention/mechanisms/span_util.h"

namespace attnlab::mech {
namespace {

class Prefix final : public Mechanism {
public:
    explicit Prefix(int64_t len) : len_(len) {}
    std::string text() const override { return fmt::format("prefix(len={})", len_); }
    bool is_mask() const override { return true; }
    bool keep(const ScoreCoord& c) const override { return c.j < len_ || c.j <= c.i; }
    TileVisit visit(const TileCoord& t) const override {
        if (t.j_hi < len_ || t.j_hi <= t.i_lo) return TileVisit::Full;
        if (t.j_lo >= len_ && t.j_lo > t.i_hi) return TileVisit::Skip;
        return TileVisit::Partial;
    }
    void mask_span(const RowSpan& row, float* scores) const override {
        keep_interval(row, 0, std::max(len_ - 1, row.i), scores);
    }

private:
    int64_t len_;
};

}  // namespace

std::shared_ptr<const Mechanism> make_prefix(MechanismParams& p) {
    return std::make_shared<Prefix>(p.integer("len", std::nullopt, 0));
}

}  // namespace attnlab::mech
