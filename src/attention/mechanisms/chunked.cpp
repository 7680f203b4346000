// chunked(size=C): keep ⌊i/C⌋ = ⌊j/C⌋ (Llama-4-style chunked local attention; with `causal`,
// each query sees the earlier keys of its own chunk).
#include "attention/mechanism_params.h"
#include "attention/mechanisms/span_util.h"

namespace attnlab::mech {
namespace {

class Chunked final : public Mechanism {
public:
    explicit Chunked(int64_t size) : size_(size) {}
    std::string text() const override { return fmt::format("chunked(size={})", size_); }
    bool is_mask() const override { return true; }
    bool keep(const ScoreCoord& c) const override { return c.i / size_ == c.j / size_; }
    TileVisit visit(const TileCoord& t) const override {
        const int64_t q_lo = t.i_lo / size_, q_hi = t.i_hi / size_;
        const int64_t k_lo = t.j_lo / size_, k_hi = t.j_hi / size_;
        if (q_hi < k_lo || k_hi < q_lo) return TileVisit::Skip;
        return q_lo == q_hi && k_lo == k_hi ? TileVisit::Full : TileVisit::Partial;
    }
    void mask_span(const RowSpan& row, float* scores) const override {
        const int64_t start = row.i / size_ * size_;
        keep_interval(row, start, start + size_ - 1, scores);
    }

private:
    int64_t size_;
};

}  // namespace

std::shared_ptr<const Mechanism> make_chunked(MechanismParams& p) {
    return std::make_shared<Chunked>(p.integer("size", std::nullopt, 1));
}

}  // namespace attnlab::mech
