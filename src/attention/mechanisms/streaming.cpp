// streaming(sink=N,window=W): keep j < N or |i - j| < W (StreamingLLM: attention sinks plus a
// rolling window; combine with `causal`).
#include "attention/mechanism_params.h"
#include "attention/mechanisms/span_util.h"

namespace attnlab::mech {
namespace {

class Streaming final : public Mechanism {
public:
    Streaming(int64_t sink, int64_t window) : sink_(sink), window_(window) {}
    std::string text() const override { return fmt::format("streaming(sink={},window={})", sink_, window_); }
    bool is_mask() const override { return true; }
    bool keep(const ScoreCoord& c) const override { return c.j < sink_ || std::llabs(c.i - c.j) < window_; }
    TileVisit visit(const TileCoord& t) const override {
        const bool all_sink = t.j_hi < sink_, no_sink = t.j_lo >= sink_;
        if (all_sink || max_distance(t) < window_) return TileVisit::Full;
        if (no_sink && min_distance(t) >= window_) return TileVisit::Skip;
        return TileVisit::Partial;
    }
    void mask_span(const RowSpan& row, float* scores) const override {
        keep_two_intervals(row, 0, sink_ - 1, row.i - window_ + 1, row.i + window_ - 1, scores);
    }

private:
    int64_t sink_, window_;
};

}  // namespace

std::shared_ptr<const Mechanism> make_streaming(MechanismParams& p) {
    const int64_t sink = p.integer("sink", 4, 0);
    return std::make_shared<Streaming>(sink, p.integer("window", std::nullopt, 1));
}

}  // namespace attnlab::mech
