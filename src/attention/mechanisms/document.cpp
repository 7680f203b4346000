// document: keep seg[i] = seg[j] — packed sequences that must not see each other (input
// `segments`, one id per position 0 .. S-1; combine with `causal` for decoders).
#include "attention/mechanism_params.h"
#include "attention/mechanisms/span_util.h"

namespace attnlab::mech {
namespace {

class Document final : public Mechanism {
public:
    bool uses_distance() const override { return false; }
    std::string text() const override { return "document"; }
    bool is_mask() const override { return true; }
    bool keep(const ScoreCoord& c) const override {
        return c.ctx->segments[c.i] == c.ctx->segments[c.j];
    }
    TileVisit visit(const TileCoord& t) const override {
        const int32_t* seg = t.ctx->segments;
        const int32_t first = seg[t.i_lo];
        bool one_query_segment = true;
        for (int64_t i = t.i_lo; i <= t.i_hi && one_query_segment; ++i) one_query_segment = seg[i] == first;
        if (!one_query_segment) return TileVisit::Partial;
        VisitAccumulator acc;
        for (int64_t j = t.j_lo; j <= t.j_hi; ++j) acc.add(seg[j] == first ? TileVisit::Full : TileVisit::Skip);
        return acc.result();
    }
    void mask_span(const RowSpan& row, float* scores) const override {
        const int32_t* seg = row.ctx->segments + row.j0;
        const int32_t mine = row.ctx->segments[row.i];
        for (int64_t k = 0; k < row.n; ++k)
            if (seg[k] != mine) scores[k] = kDropped;
    }
    void check(const AttentionContext& ctx, int64_t max_query_pos) const override {
        ATTNLAB_CHECK(ctx.segments != nullptr, InvalidArgument,
                      "[attention] `document` needs segments (one id per key position)");
        ATTNLAB_CHECK(max_query_pos < ctx.S, InvalidArgument,
                      "[attention] `document`: query position {} has no segment (segments cover 0..{})",
                      max_query_pos, ctx.S - 1);
    }
};

}  // namespace

std::shared_ptr<const Mechanism> make_document(MechanismParams&) { return std::make_shared<Document>(); }

}  // namespace attnlab::mech
