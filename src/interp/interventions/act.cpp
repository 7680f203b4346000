// act: ACT's attention calibration (Yu et al., ICML 2024; papers-analysis §7, the rule of
// `atten_process_cal` in GATECH-EIC/ACT), per chosen head:
//   s_k = Σ_q A[q,k] / (T − k)           mean attention key k receives from the queries that see it
//   S   = {k : s_k > threshold} minus its first element (the first sink, normally BOS, is kept)
//   rows q ≥ 1:  A'[q,k] = β·A[q,k] (k ∈ S);  A'[q,j] = A[q,j]·(1 + f_q / Σ_{j'∉S} A[q,j']) (j ∉ S),
//                with f_q = (1 − β)·Σ_{k∈S} A[q,k], so rows still sum to 1.
// The column sums come from the kernel's statistics of the prefill pass (the call at position
// 0), never from a T×S pattern; decode steps keep the prefill's sink set. The edit of z uses the
// row's mass m_S and value mix m_S·out_S on S from one restricted kernel run per head:
//   z' = z − (1 − β)·m_S·out_S + ((1 − β)·m_S / (1 − m_S))·(z − m_S·out_S).
// z − m_S·out_S is the non-sink mix found by cancellation; divided by a small non-sink mass it
// loses digits (error ~1e-7 / m_rest of |v|), so a head with rows whose non-sink mass is below
// kCancellationMass gets a second restricted run over the non-sinks (out_rest, m_rest) and
//   z' = β·m_S·out_S + (m_rest + (1 − β)·m_S)·out_rest.
// β = 1 is no calibration: z is left as it is. Rows whose non-sink mass is below
// kMinReceivingMass are left unchanged (nothing to redistribute to; the reference code divides
// by zero there).
#include "interp/interventions/attention_edit_util.h"

namespace attnlab::intervention_util {

namespace {

// Below this non-sink mass in some row, a head's non-sink output gets its own kernel run.
constexpr double kCancellationMass = 0.05;

class Act final : public Intervention {
public:
    Act(std::vector<HeadRef> heads, double threshold, double beta, std::string where)
        : heads_(std::move(heads)), threshold_(threshold), beta_(beta), by_layer_(heads_by_layer(heads_)),
          where_(std::move(where)), sink_set_(AttentionSpec::parse("segment(id=1)")),
          rest_set_(AttentionSpec::parse("segment(id=0)")) {}

    std::string describe() const override {
        return fmt::format("act {} threshold {} beta {}", heads_text(heads_), threshold_, beta_);
    }
    void begin_sequence() override { sinks_.clear(); }

    bool wants(const std::string&) const override { return false; }
    void on(const std::string&, Tensor&) override {}

    // Column sums on every pass of a target layer: only the prefill's are used, but a pass does
    // not know here whether it is the prefill, and a decode step's cost one row.
    std::optional<AttentionStatsRequest> attention_stats(int64_t layer, int64_t) const override {
        if (!by_layer_.count(layer)) return std::nullopt;
        AttentionStatsRequest request;
        request.column_sum = true;
        return request;
    }
    void on_attention_stats(const LayerAttentionStats& stats) override {
        const auto it = by_layer_.find(stats.layer);
        if (it == by_layer_.end() || stats.pos0 != 0) return;  // decode steps keep the prefill's sinks
        const int64_t S = stats.S, T = stats.T;
        const float* column_sum = stats.column_sum.data<float>();  // (H, S)
        std::map<int64_t, std::vector<int64_t>>& layer_sinks = sinks_[stats.layer];
        layer_sinks.clear();
        for (int64_t h : it->second) {
            std::vector<int64_t> sinks;
            for (int64_t k = 0; k < S; ++k) {
                const double seen_by = double(std::min(T, S - k));  // queries at positions >= k
                if (double(column_sum[h * S + k]) / seen_by > threshold_) sinks.push_back(k);
            }
            if (!sinks.empty()) sinks.erase(sinks.begin());  // the first sink is kept
            layer_sinks[h] = std::move(sinks);
        }
    }

    bool edits_attention(int64_t layer) const override { return by_layer_.count(layer) > 0; }
    void edit_attention(AttentionEditContext& ctx) override {
        const auto found = sinks_.find(ctx.layer);
        ATTNLAB_CHECK(found != sinks_.end(), InvalidArgument,
                      "[{}] layer {}: no sink set — the sequence's prefill (position 0) did not run with this "
                      "intervention",
                      where_, ctx.layer);
        const double drop = 1.0 - beta_;  // share of the sink mass moved to the other keys
        if (drop == 0.0) return;           // β = 1: no calibration
        for (int64_t h : by_layer_.at(ctx.layer)) {
            const std::vector<int64_t>& sinks = found->second.at(h);
            if (sinks.empty()) continue;
            const std::vector<int32_t> labels = label_positions(ctx.S, sinks);  // (S) 1 on S, 0 elsewhere
            attend_restricted(ctx, {h, h + 1}, sink_set_, labels.data(), on_sinks_, where_);
            bool small_rest = false;
            for (int64_t t = 0; t < ctx.T; ++t) small_rest |= 1.0 - on_sinks_.mass_of(ctx, t, h) < kCancellationMass;
            if (small_rest) attend_restricted(ctx, {h, h + 1}, rest_set_, labels.data(), on_rest_, where_);
            for (int64_t t = 0; t < ctx.T; ++t) {
                if (ctx.pos0 + t < 1) continue;  // row 0 sees only key 0: A'[0,0] = 1
                const double m_sinks = on_sinks_.mass_of(ctx, t, h);
                const double m_rest = small_rest ? on_rest_.mass_of(ctx, t, h) : 1.0 - m_sinks;
                if (m_sinks == 0.0 || m_rest <= kMinReceivingMass) continue;
                const float* out_sinks = on_sinks_.out_row(ctx, t, h);
                float* z = ctx.z + (t * ctx.H + h) * ctx.D;  // (D)
                if (small_rest) {
                    const float* out_rest = on_rest_.out_row(ctx, t, h);
                    const double w_sinks = beta_ * m_sinks, w_rest = m_rest + drop * m_sinks;
                    for (int64_t d = 0; d < ctx.D; ++d) z[d] = static_cast<float>(w_sinks * out_sinks[d] + w_rest * out_rest[d]);
                } else {
                    const double gain = drop * m_sinks / m_rest;  // growth factor of the non-sinks, minus 1
                    for (int64_t d = 0; d < ctx.D; ++d) {
                        const double mix_sinks = m_sinks * out_sinks[d];
                        z[d] = static_cast<float>(double(z[d]) + gain * (double(z[d]) - mix_sinks) - drop * mix_sinks);
                    }
                }
                if (float* row = pattern_row(ctx, h, t)) calibrate_row(row, ctx.S, labels, drop);
            }
        }
    }

private:
    // The rule on a materialised row, with the row's own sums (so it sums to 1 to rounding).
    void calibrate_row(float* row, int64_t S, const std::vector<int32_t>& labels, double drop) const {
        double m_sinks = 0, m_rest = 0;
        for (int64_t k = 0; k < S; ++k) (labels[k] ? m_sinks : m_rest) += row[k];
        if (m_rest <= 0) return;
        const double grow = 1.0 + drop * m_sinks / m_rest;
        for (int64_t k = 0; k < S; ++k) row[k] = static_cast<float>(row[k] * (labels[k] ? beta_ : grow));
    }

    std::vector<HeadRef> heads_;
    double threshold_, beta_;
    std::map<int64_t, std::vector<int64_t>> by_layer_;
    std::string where_;
    AttentionSpec sink_set_, rest_set_;  // segment(id=1) / segment(id=0): the sinks / the other keys
    std::map<int64_t, std::map<int64_t, std::vector<int64_t>>> sinks_;  // layer -> head -> S (ascending)
    KeySetAttention on_sinks_, on_rest_;
};

}  // namespace

std::unique_ptr<Intervention> make_act(const Fields& f) {
    f.only({"heads", "threshold", "beta"});
    return std::make_unique<Act>(f.heads(), f.number_in("threshold", 0.0, 1.0, 0.1), f.number_in("beta", 0.0, 1.0, 0.4),
                                 f.where());
}

}  // namespace attnlab::intervention_util
