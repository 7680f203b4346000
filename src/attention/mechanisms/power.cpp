// power(block=B,window=W,sink=N): PowerAttention (arXiv 2503.03588). With query block
// qb = ⌊i/B⌋, key block kb = ⌊j/B⌋ and Δ = qb - kb:
//   keep Δ < W  or  kb < N  or  (Δ >= 0 and Δ & (Δ-1) == 0)
// i.e. a window of W blocks, N sink blocks and every block at a power-of-two block distance, so
// L layers reach 2^L blocks back with O(log n) blocks per row. Combine with `causal`.
// Defaults follow the paper's setup: B = 256, ~5 window blocks, 1 sink block.
#include "attention/mechanism_params.h"
#include "attention/mechanisms/span_util.h"

namespace attnlab::mech {
namespace {

class Power final : public Mechanism {
public:
    Power(int64_t block, int64_t window, int64_t sink) : block_(block), window_(window), sink_(sink) {}
    std::string text() const override {
        return fmt::format("power(block={},window={},sink={})", block_, window_, sink_);
    }
    bool is_mask() const override { return true; }
    bool keep(const ScoreCoord& c) const override { return keep_blocks(c.i / block_, c.j / block_); }
    TileVisit visit(const TileCoord& t) const override {
        return visit_cells(t, block_, [&](int64_t qb, int64_t kb) {
            return keep_blocks(qb, kb) ? TileVisit::Full : TileVisit::Skip;
        });
    }
    void mask_span(const RowSpan& row, float* scores) const override {
        const int64_t qb = row.i / block_;
        for_each_cell(row, block_, [&](int64_t kb, int64_t j, int64_t next) {
            if (!keep_blocks(qb, kb)) drop_range(row, j - row.j0, next - row.j0, scores);
        });
    }

private:
    bool keep_blocks(int64_t qb, int64_t kb) const {
        const int64_t delta = qb - kb;
        return delta < window_ || kb < sink_ || (delta >= 0 && (delta & (delta - 1)) == 0);
    }
    int64_t block_, window_, sink_;
};

}  // namespace

std::shared_ptr<const Mechanism> make_power(MechanismParams& p) {
    const int64_t block = p.integer("block", 256, 1);
    const int64_t window = p.integer("window", 5, 0);
    return std::make_shared<Power>(block, window, p.integer("sink", 1, 0));
}

}  // namespace attnlab::mech
