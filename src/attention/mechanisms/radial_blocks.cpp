// radial_blocks(frame=F,decay=d,block=128): Radial Attention in the block-sparse form its
// kernels run (the reference code's shrinkMaskStrict): a (query block, key block) pair of
// B×B positions is kept whole iff more than 60% of its non-empty key columns have a density of
// kept token pairs above 1/3 under the token-level rule (radial_rule.h); otherwise dropped.
#include "attention/mechanism_params.h"
#include "attention/mechanisms/radial_rule.h"
#include "attention/mechanisms/span_util.h"

#include <mutex>
#include <map>
#include <utility>

namespace attnlab::mech {

RadialRule parse_radial_rule(MechanismParams& p);

namespace {

class RadialBlocks final : public Mechanism {
public:
    explicit RadialBlocks(RadialRule rule) : rule_(rule) {}
    std::string text() const override {
        return fmt::format("radial_blocks(frame={},decay={},block={})", rule_.frame, format_param(rule_.decay),
                           rule_.block);
    }
    bool is_mask() const override { return true; }

    // The definition, by brute force over the block's B×B token pairs (once per block pair).
    bool keep(const ScoreCoord& c) const override {
        const int64_t B = rule_.block, qb = c.i / B, kb = c.j / B;
        return cached(brute_cache_, qb, kb, [&] {
            int64_t nonzero = 0, dense = 0;
            for (int64_t col = kb * B; col < kb * B + B; ++col) {
                int64_t kept = 0;
                for (int64_t r = qb * B; r < qb * B + B; ++r) kept += rule_.keep(r, col);
                nonzero += kept > 0;
                dense += 3 * kept > B;  // density > 1/3
            }
            return 10 * dense > 6 * nonzero && nonzero > 0;
        });
    }
    TileVisit visit(const TileCoord& t) const override {
        return visit_cells(t, rule_.block, [&](int64_t qb, int64_t kb) {
            return keep_block(qb, kb) ? TileVisit::Full : TileVisit::Skip;
        });
    }
    void mask_span(const RowSpan& row, float* scores) const override {
        const int64_t qb = row.i / rule_.block;
        for_each_cell(row, rule_.block, [&](int64_t kb, int64_t j, int64_t next) {
            if (!keep_block(qb, kb)) drop_range(row, j - row.j0, next - row.j0, scores);
        });
    }

private:
    // The same criterion counting each column's kept rows frame run by frame run:
    // O(B·(1 + B/F)) instead of O(B²), once per block pair (rows ask for the same pairs).
    bool keep_block(int64_t qb, int64_t kb) const {
        return cached(fast_cache_, qb, kb, [&] { return count_block(qb, kb); });
    }
    bool count_block(int64_t qb, int64_t kb) const {
        const int64_t B = rule_.block, F = rule_.frame, r0 = qb * B;
        int64_t nonzero = 0, dense = 0;
        for (int64_t col = kb * B; col < kb * B + B; ++col) {
            const int64_t t_j = col / F, x_j = col % F;
            int64_t kept = 0;
            for (int64_t r = r0; r < r0 + B;) {
                const int64_t t_i = r / F, run_end = std::min((t_i + 1) * F, r0 + B);
                const RadialRule::Pair p = rule_.pair(t_i, t_j);
                if (p.kind == RadialRule::Kind::All) {
                    kept += run_end - r;
                } else if (p.kind == RadialRule::Kind::Band) {
                    const int64_t xa = r % F, xb = xa + (run_end - r) - 1;
                    kept += std::max<int64_t>(0, std::min(xb, x_j + p.width) - std::max(xa, x_j - p.width) + 1);
                }
                r = run_end;
            }
            nonzero += kept > 0;
            dense += 3 * kept > B;
        }
        return 10 * dense > 6 * nonzero && nonzero > 0;
    }
    using Cache = std::map<std::pair<int64_t, int64_t>, bool>;
    template <typename Fn>
    bool cached(Cache& cache, int64_t qb, int64_t kb, Fn compute) const {
        const std::pair<int64_t, int64_t> key(qb, kb);
        {
            std::lock_guard<std::mutex> lock(mutex_);
            auto it = cache.find(key);
            if (it != cache.end()) return it->second;
        }
        const bool keep = compute();
        std::lock_guard<std::mutex> lock(mutex_);
        cache.emplace(key, keep);
        return keep;
    }

    RadialRule rule_;
    // Block decisions depend only on the positions: computed once, shared by threads and calls.
    mutable std::mutex mutex_;
    mutable Cache brute_cache_, fast_cache_;
};

}  // namespace

std::shared_ptr<const Mechanism> make_radial_blocks(MechanismParams& p) {
    const RadialRule rule = parse_radial_rule(p);
    // A block decision costs O(B·(1 + B/F)) (O(B²) in the reference): bound B.
    ATTNLAB_CHECK(rule.block <= 4096, InvalidArgument, "[attention spec] radial_blocks: block must be <= 4096, got {}",
                  rule.block);
    return std::make_shared<RadialBlocks>(rule);
}

}  // namespace attnlab::mech
