// softpag: SoftPAG (Ahn et al. 2025; papers-analysis §14), per chosen head
//   A' = (1 − α)·A + α·I,   so   z' = (1 − α)·z + α·v_i
// where v_i is the query's own value (position i, the head's kv head). α = 1 is PAG's identity
// map, α = 0 the identity edit (z unchanged bit for bit). Rows keep their sum: (1 − α) + α = 1.
// No kernel re-run is needed: the self key's value is in the cache.
#include "interp/interventions/attention_edit_util.h"

namespace attnlab::intervention_util {

namespace {

class SoftPag final : public Intervention {
public:
    SoftPag(std::vector<HeadRef> heads, double alpha, const ModelConfig& c)
        : heads_(std::move(heads)), alpha_(alpha), by_layer_(heads_by_layer(heads_)), group_(c.n_head / c.n_head_kv) {}

    std::string describe() const override { return fmt::format("softpag {} alpha {}", heads_text(heads_), alpha_); }

    bool wants(const std::string&) const override { return false; }
    void on(const std::string&, Tensor&) override {}

    bool edits_attention(int64_t layer) const override { return by_layer_.count(layer) > 0; }
    void edit_attention(AttentionEditContext& ctx) override {
        const float keep = static_cast<float>(1.0 - alpha_), self = static_cast<float>(alpha_);
        for (int64_t h : by_layer_.at(ctx.layer))
            for (int64_t t = 0; t < ctx.T; ++t) {
                const int64_t i = ctx.pos0 + t;                                     // the query's position
                const float* v_self = ctx.v + (i * ctx.Hkv + h / group_) * ctx.D;  // (D)
                float* z = ctx.z + (t * ctx.H + h) * ctx.D;                         // (D)
                for (int64_t d = 0; d < ctx.D; ++d) z[d] = keep * z[d] + self * v_self[d];
                if (float* row = pattern_row(ctx, h, t)) {
                    for (int64_t j = 0; j < ctx.S; ++j) row[j] *= keep;
                    row[i] += self;
                }
            }
    }

private:
    std::vector<HeadRef> heads_;
    double alpha_;
    std::map<int64_t, std::vector<int64_t>> by_layer_;
    int64_t group_;  // query heads per kv head
};

}  // namespace

std::unique_ptr<Intervention> make_softpag(const Fields& f) {
    f.only({"heads", "alpha"});
    return std::make_unique<SoftPag>(f.heads(), f.number_in("alpha", 0.0, 1.0), f.model().config());
}

}  // namespace attnlab::intervention_util
