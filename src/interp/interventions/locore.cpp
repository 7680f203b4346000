// locore: LocoRE's local coherence reinforcement (Zhang et al., ICLR 2026, "Hallucination Begins
// Where Saliency Drops"; papers-multimodal §3), per chosen head: the attention from each query
// to its W most recent predecessors is multiplied by (1 + γ), then the row is renormalised:
//   R_i = [i − W, i − 1] (keys before the query, the query itself excluded)
//   A'[i,j] = A[i,j]·(1 + γ·[j ∈ R_i]) / (1 + γ·m_R),   m_R = Σ_{j∈R_i} A[i,j]
// The paper gives this form but not γ, W or the layers, and the released code has no LocoRE
// (papers-multimodal §3); the defaults γ = 0.5, W = 4 are this library's choice, and R excludes
// the query's own key as in the §3 form ("the most recent W predecessors").
// Without T×S: the head's spec plus `causal+window(size=W+1)` gives the mass and mix over
// [i − W, i], and plus `window(size=1)` the mass on the self key (whose value is v_i), so
//   m_R = m_{W+1} − m_self,  mix_R = m_{W+1}·out_{W+1} − m_self·v_i,  z' = (z + γ·mix_R) / (1 + γ·m_R).
#include "interp/interventions/attention_edit_util.h"

namespace attnlab::intervention_util {

namespace {

class Locore final : public Intervention {
public:
    Locore(std::vector<HeadRef> heads, double gamma, int64_t window, const ModelConfig& c, std::string where)
        : heads_(std::move(heads)), gamma_(gamma), window_(window), by_layer_(heads_by_layer(heads_)),
          group_(c.n_head / c.n_head_kv), where_(std::move(where)),
          recent_and_self_(AttentionSpec::parse(fmt::format("causal+window(size={})", window + 1))),
          self_only_(AttentionSpec::parse("window(size=1)")) {}

    std::string describe() const override {
        return fmt::format("locore {} gamma {} window {}", heads_text(heads_), gamma_, window_);
    }

    bool wants(const std::string&) const override { return false; }
    void on(const std::string&, Tensor&) override {}

    bool edits_attention(int64_t layer) const override { return by_layer_.count(layer) > 0; }
    void edit_attention(AttentionEditContext& ctx) override {
        const int64_t T = ctx.T, H = ctx.H, D = ctx.D;
        for (const HeadSpan& span : spans_sharing_spec(ctx, by_layer_.at(ctx.layer))) {
            // The self key's mass first: its value is v_i, so only the masses are kept, and the
            // one output buffer is reused for the window run.
            attend_restricted(ctx, span, self_only_, nullptr, window_run_, where_);
            std::vector<double> m_self(window_run_.mass);  // (T, H)
            attend_restricted(ctx, span, recent_and_self_, nullptr, window_run_, where_);
            for (int64_t h = span.begin; h < span.end; ++h)
                for (int64_t t = 0; t < T; ++t) {
                    const int64_t i = ctx.pos0 + t;
                    const double self = m_self[t * H + h];
                    const double recent = std::max(0.0, window_run_.mass_of(ctx, t, h) - self);
                    const double norm = 1.0 + gamma_ * recent;
                    const float* out_window = window_run_.out_row(ctx, t, h);
                    const float* v_self = ctx.v + (i * ctx.Hkv + h / group_) * D;  // (D)
                    float* z = ctx.z + (t * H + h) * D;                           // (D)
                    for (int64_t d = 0; d < D; ++d) {
                        const double mix_recent = window_run_.mass_of(ctx, t, h) * out_window[d] - self * v_self[d];
                        z[d] = static_cast<float>((double(z[d]) + gamma_ * mix_recent) / norm);
                    }
                    if (float* row = pattern_row(ctx, h, t)) boost_row(row, ctx.S, i);
                }
        }
    }

private:
    // The rule on a materialised row, with the row's own sum over R (so it sums to 1 to rounding).
    void boost_row(float* row, int64_t S, int64_t i) const {
        const int64_t first = std::max<int64_t>(0, i - window_);
        double recent = 0;
        for (int64_t j = first; j < i; ++j) recent += row[j];
        const double norm = 1.0 + gamma_ * recent;
        for (int64_t j = 0; j < S; ++j) row[j] = static_cast<float>(row[j] * (j >= first && j < i ? 1.0 + gamma_ : 1.0) / norm);
    }

    std::vector<HeadRef> heads_;
    double gamma_;
    int64_t window_;
    std::map<int64_t, std::vector<int64_t>> by_layer_;
    int64_t group_;  // query heads per kv head
    std::string where_;
    AttentionSpec recent_and_self_, self_only_;  // restrictions to [i − W, i] and to {i}
    KeySetAttention window_run_;
};

}  // namespace

std::unique_ptr<Intervention> make_locore(const Fields& f) {
    f.only({"heads", "gamma", "window"});
    const double gamma = f.number("gamma", 0.5);
    ATTNLAB_CHECK(std::isfinite(gamma) && gamma >= 0, InvalidArgument, "[{}] \"gamma\" must be >= 0, got {}", f.where(),
                  gamma);
    return std::make_unique<Locore>(f.heads(), gamma, f.integer("window", 4, 1), f.model().config(), f.where());
}

}  // namespace attnlab::intervention_util
