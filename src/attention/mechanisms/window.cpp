// window(size=W): keep |i - j| < W. With `causal` this is Mistral's / Gemma's sliding window
// (the query and the W-1 keys before it).
#include "attention/mechanism_params.h"
#include "attention/mechanisms/span_util.h"

namespace attnlab::mech {
namespace {

class Window final : public Mechanism {
public:
    explicit Window(int64_t size) : size_(size) {}
    std::string text() const override { return fmt::format("window(size={})", size_); }
    bool is_mask() const override { return true; }
    bool keep(const ScoreCoord& c) const override { return std::llabs(c.i - c.j) < size_; }
    TileVisit visit(const TileCoord& t) const override {
        if (min_distance(t) >= size_) return TileVisit::Skip;
        return max_distance(t) < size_ ? TileVisit::Full : TileVisit::Partial;
    }
    void mask_span(const RowSpan& row, float* scores) const override {
        keep_interval(row, row.i - size_ + 1, row.i + size_ - 1, scores);
    }

private:
    int64_t size_;
};

}  // namespace

std::shared_ptr<const Mechanism> make_window(MechanismParams& p) {
    return std::make_shared<Window>(p.integer("size", std::nullopt, 1));
}

}  // namespace attnlab::mech
