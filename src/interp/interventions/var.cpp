// var: VAR, visual attention redistribution (Kang et al., ICLR 2025, "See What You Are Told";
// papers-multimodal §5, the rules of MICV-yonsei/VisAttnSink), on the chosen heads:
//   sink tokens  the residual entering the layer, RMS-normalised without its weight,
//                x̃ = x / sqrt(mean(x²) + 1e-6); token t is a sink if max_{d∈D} |x̃[t,d]| > τ
//                (D: the model's massive-activation dimensions, "dims"; all dimensions when not
//                given). Screened on the prefill pass (position 0) only, as in the code; decode
//                positions are never sinks.
//   rows         query positions after the segment I's last token (the text after the image;
//                every decode step), where the head is image-centric:
//                summ = Σ_{j∈I} A[q,j] ≥ s_min and portion = Σ_{j∈I∩sink} A[q,j] / summ ≤ ρ.
//   edit         B = (1 − p)·Σ_{j∈sink} A[q,j] (visual and text sinks);
//                A'[q,j] = p·A[q,j] on sinks; A'[q,j] = A[q,j] + B·A[q,j] / Σ_{k∈I\sink} A[q,k] on I\sink.
// The mass moved out of the sinks is exactly the mass added to I\sink: each row keeps its budget.
// Without T×S: keys labelled 1 = I∩sink, 2 = sink\I, 3 = I\sink, one restricted kernel run per
// label and span of heads sharing a spec; with m_n, out_n the mass and output on label n,
//   z' = z − (1 − p)·(m_1·out_1 + m_2·out_2) + (1 − p)·(m_1 + m_2)·out_3.
#include "interp/interventions/attention_edit_util.h"

namespace attnlab::intervention_util {

namespace {

enum KeyLabel : int32_t { kOther = 0, kImageSink = 1, kTextSink = 2, kImage = 3 };

struct VarParams {
    double p = 0.6, tau = 20, rho = 0.5, s_min = 0.2;
    std::vector<int64_t> dims;  // massive-activation dimensions (empty: all)
};

class Var final : public Intervention {
public:
    Var(std::vector<HeadRef> heads, std::string segment, int32_t segment_id, VarParams params, std::string where)
        : heads_(std::move(heads)), segment_(std::move(segment)), segment_id_(segment_id), params_(std::move(params)),
          by_layer_(heads_by_layer(heads_)), where_(std::move(where)) {
        for (const auto& [layer, list] : by_layer_) resid_points_[fmt::format("blocks.{}.hook_resid_pre", layer)] = layer;
        for (int32_t label : {kImageSink, kTextSink, kImage})
            only_label_[label] = AttentionSpec::parse(fmt::format("segment(id={})", label));
    }

    std::string describe() const override {
        return fmt::format("var {} segment {} p {} tau {} rho {} s_min {}", heads_text(heads_), segment_, params_.p,
                           params_.tau, params_.rho, params_.s_min);
    }
    void begin_sequence() override { sinks_.clear(); }

    bool wants(const std::string& name) const override { return resid_points_.count(name) > 0; }
    void on(const std::string& name, Tensor& x) override {  // x (T, C): the residual entering the layer
        const int64_t T = x.size(0), C = x.size(1);
        const float* data = x.data<float>();
        std::vector<uint8_t>& flags = screened_[resid_points_.at(name)];
        flags.assign(static_cast<size_t>(T), 0);
        for (int64_t t = 0; t < T; ++t) {
            const float* row = data + t * C;  // (C)
            double sum_sq = 0;
            for (int64_t c = 0; c < C; ++c) sum_sq += double(row[c]) * row[c];
            const double inv_rms = 1.0 / std::sqrt(sum_sq / double(C) + 1e-6);
            double peak = 0;
            if (params_.dims.empty()) {
                for (int64_t c = 0; c < C; ++c) peak = std::max(peak, std::fabs(double(row[c])));
            } else {
                for (int64_t d : params_.dims) peak = std::max(peak, std::fabs(double(row[d])));  // d < C: checked
            }
            flags[t] = peak * inv_rms > params_.tau;
        }
    }

    bool edits_attention(int64_t layer) const override { return by_layer_.count(layer) > 0; }
    void edit_attention(AttentionEditContext& ctx) override {
        ATTNLAB_CHECK(ctx.segments != nullptr, InvalidArgument,
                      "[{}] needs the token segments of the forward pass (--segment {}=A:B)", where_, segment_);
        const std::vector<uint8_t>& sinks = sinks_of(ctx);  // (S)
        std::vector<int32_t> labels(static_cast<size_t>(ctx.S), kOther);  // (S) KeyLabel of each key
        int64_t last_image = -1;
        bool present[4] = {false, false, false, false};  // which KeyLabels some key has
        for (int64_t j = 0; j < ctx.S; ++j) {
            const bool image = ctx.segments[j] == segment_id_;
            if (image) last_image = j;
            labels[j] = sinks[j] ? (image ? kImageSink : kTextSink) : (image ? kImage : kOther);
            present[labels[j]] = true;
        }
        // Unchanged without a query after the image, a key to receive or a sink to move from.
        if (ctx.pos0 + ctx.T - 1 <= last_image || !present[kImage] || !(present[kImageSink] || present[kTextSink]))
            return;
        const int64_t T = ctx.T, H = ctx.H;
        const double moved = 1.0 - params_.p;  // share of the sink mass moved to the image
        for (const HeadSpan& span : spans_sharing_spec(ctx, by_layer_.at(ctx.layer))) {
            attend_restricted(ctx, span, only_label_.at(kImage), labels.data(), image_, where_);
            // Visual sinks: decide the rows (image-centric heads), then take their share out.
            if (present[kImageSink]) attend_restricted(ctx, span, only_label_.at(kImageSink), labels.data(), sink_, where_);
            std::vector<uint8_t> selected(static_cast<size_t>(T * H), 0);  // (T, H)
            std::vector<double> m_image_sinks(static_cast<size_t>(T * H), 0.0);  // (T, H)
            for (int64_t h = span.begin; h < span.end; ++h)
                for (int64_t t = 0; t < T; ++t) {
                    const double m1 = present[kImageSink] ? sink_.mass_of(ctx, t, h) : 0.0;
                    const double m3 = image_.mass_of(ctx, t, h), summ = m1 + m3;
                    const bool centric = summ >= params_.s_min && summ > 0 && m1 / summ <= params_.rho;
                    if (ctx.pos0 + t <= last_image || !centric || m3 <= kMinReceivingMass) continue;
                    selected[t * H + h] = 1;
                    m_image_sinks[t * H + h] = m1;
                    if (m1 > 0) add_mix(ctx, t, h, -moved * m1, sink_.out_row(ctx, t, h));
                }
            // Text sinks: their share out, and the whole moved mass onto I\sink.
            if (present[kTextSink]) attend_restricted(ctx, span, only_label_.at(kTextSink), labels.data(), sink_, where_);
            for (int64_t h = span.begin; h < span.end; ++h)
                for (int64_t t = 0; t < T; ++t) {
                    if (!selected[t * H + h]) continue;
                    const double m2 = present[kTextSink] ? sink_.mass_of(ctx, t, h) : 0.0;
                    if (m2 > 0) add_mix(ctx, t, h, -moved * m2, sink_.out_row(ctx, t, h));
                    add_mix(ctx, t, h, moved * (m_image_sinks[t * H + h] + m2), image_.out_row(ctx, t, h));
                    if (float* row = pattern_row(ctx, h, t)) redistribute_row(row, ctx.S, labels);
                }
        }
    }

private:
    // z_(t,h) += weight · out (D).
    static void add_mix(AttentionEditContext& ctx, int64_t t, int64_t h, double weight, const float* out) {
        if (weight == 0.0) return;
        float* z = ctx.z + (t * ctx.H + h) * ctx.D;  // (D)
        for (int64_t d = 0; d < ctx.D; ++d) z[d] = static_cast<float>(double(z[d]) + weight * out[d]);
    }

    // The rule on a materialised row, with the row's own sums (so its budget is kept to rounding).
    void redistribute_row(float* row, int64_t S, const std::vector<int32_t>& labels) const {
        double on_sinks = 0, on_image = 0;
        for (int64_t j = 0; j < S; ++j) {
            if (labels[j] == kImageSink || labels[j] == kTextSink) on_sinks += row[j];
            if (labels[j] == kImage) on_image += row[j];
        }
        if (on_image <= 0) return;
        const double grow = 1.0 + (1.0 - params_.p) * on_sinks / on_image;
        for (int64_t j = 0; j < S; ++j) {
            if (labels[j] == kImageSink || labels[j] == kTextSink) row[j] = static_cast<float>(row[j] * params_.p);
            if (labels[j] == kImage) row[j] = static_cast<float>(row[j] * grow);
        }
    }

    // The sink flags of keys 0 .. S-1: the prefill's screening, decode positions never sinks.
    const std::vector<uint8_t>& sinks_of(const AttentionEditContext& ctx) {
        const auto screened = screened_.find(ctx.layer);
        ATTNLAB_CHECK(screened != screened_.end() && static_cast<int64_t>(screened->second.size()) == ctx.T,
                      InvalidArgument, "[{}] layer {}: the residual stream was not screened for sinks in this pass",
                      where_, ctx.layer);
        std::vector<uint8_t>& sinks = sinks_[ctx.layer];
        if (ctx.pos0 == 0) {
            sinks = screened->second;
        } else {
            ATTNLAB_CHECK(static_cast<int64_t>(sinks.size()) == ctx.pos0, InvalidArgument,
                          "[{}] layer {}: no sink set for positions 0..{} — the sequence's prefill (position 0) did "
                          "not run with this intervention",
                          where_, ctx.layer, ctx.pos0 - 1);
            sinks.resize(static_cast<size_t>(ctx.S), 0);
        }
        return sinks;
    }

    std::vector<HeadRef> heads_;
    std::string segment_;
    int32_t segment_id_;
    VarParams params_;
    std::map<int64_t, std::vector<int64_t>> by_layer_;
    std::string where_;
    std::map<std::string, int64_t> resid_points_;  // "blocks.l.hook_resid_pre" -> l
    std::map<int32_t, AttentionSpec> only_label_;  // label -> segment(id=label)
    std::map<int64_t, std::vector<uint8_t>> screened_;  // layer -> (T) sink flags of this pass's tokens
    std::map<int64_t, std::vector<uint8_t>> sinks_;     // layer -> (S) sink flags of the sequence
    KeySetAttention image_, sink_;                      // rows restricted to I\sink, and to one sink label
};

}  // namespace

std::unique_ptr<Intervention> make_var(const Fields& f) {
    f.only({"heads", "segment", "p", "tau", "rho", "s_min", "dims"});
    VarParams params;
    params.p = f.number_in("p", 0.0, 1.0, 0.6);
    params.tau = f.number("tau", 20.0);
    params.rho = f.number_in("rho", 0.0, 1.0, 0.5);
    params.s_min = f.number_in("s_min", 0.0, 1.0, 0.2);
    if (f.has("dims")) {
        const int64_t C = f.model().config().hidden_size;
        for (double d : f.numbers("dims")) {
            ATTNLAB_CHECK(d == std::floor(d) && d >= 0 && d < double(C), InvalidArgument,
                          "[{}] \"dims\": {} is not a dimension of the model's width {}", f.where(), d, C);
            params.dims.push_back(static_cast<int64_t>(d));
        }
    }
    return std::make_unique<Var>(f.heads(), f.string("segment"), f.segment_id("segment"), std::move(params), f.where());
}

}  // namespace attnlab::intervention_util
