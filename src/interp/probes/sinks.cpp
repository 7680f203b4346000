// The `sinks` probe (papers-analysis §2 and §6): received mass per key from the kernel's column
// sums, the mass each head puts on the BOS key, the secondary-sink rule (BOS norm window,
// cosine to BOS, lifetime labels) and the value-norm drain / residual-norm peak. Residuals
// (blocks.l.hook_resid_post) and values (blocks.l.attn.hook_v) are reduced to norms and cosines
// inside the hook callback, so no layer's (T, C) tensor outlives its callback.
// Definitions: include/attnlab/probe_sinks.h, docs/probes.md#sinks.
#include "probe_util.h"

#include <attnlab/error.h>
#include <attnlab/probe_sinks.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <numeric>

namespace attnlab {

using probe_util::Mean;

SinkLabelThresholds sink_label_thresholds(int64_t n_layer, int64_t bos_option, int64_t secondary_option) {
    SinkLabelThresholds t;
    // The paper's constants were tuned on 32+ layer models; for smaller ones the same shape as a
    // fraction of depth (papers-analysis §2 "Small check").
    const bool deep = n_layer >= 32;
    t.bos_lifetime = bos_option >= 0 ? bos_option : deep ? n_layer - 15 : static_cast<int64_t>(std::ceil(0.6 * double(n_layer)));
    t.secondary_lifetime = secondary_option >= 0 ? secondary_option
                           : deep                ? 4
                                                 : static_cast<int64_t>(std::floor(0.15 * double(n_layer)));
    ATTNLAB_CHECK(t.bos_lifetime >= 1 && t.secondary_lifetime >= 0 && t.secondary_lifetime < t.bos_lifetime,
                  InvalidArgument,
                  "[probe sinks] lifetime thresholds need 0 <= secondary ({}) < bos ({}) and bos >= 1 ({} layers)",
                  t.secondary_lifetime, t.bos_lifetime, n_layer);
    return t;
}

const char* sink_label(int64_t lifetime, const SinkLabelThresholds& t) {
    if (lifetime >= t.bos_lifetime) return "bos_sink";
    if (lifetime > t.secondary_lifetime) return "secondary";
    return "noise";
}

SinkWindow sink_window(const std::vector<double>& bos_norms) {  // (L)
    const int64_t L = static_cast<int64_t>(bos_norms.size());
    if (L < 2) return {0, 0};
    std::vector<double> delta(static_cast<size_t>(L - 1));  // (L-1) Δ_l = n_{l+1} - n_l
    for (int64_t l = 0; l + 1 < L; ++l) delta[l] = bos_norms[l + 1] - bos_norms[l];
    // max_element/min_element return the first extreme, as numpy's argmax/argmin do.
    const int64_t start = (std::max_element(delta.begin(), delta.end()) - delta.begin()) + 1;
    if (start >= L - 1) return {start, L};  // the jump is into the last layer: nothing left to collapse
    const int64_t m = std::min_element(delta.begin() + start, delta.end()) - (delta.begin() + start);
    return {start, start + m + 1};
}

SinkDetection detect_sinks(const std::vector<double>& bos_norms, const std::vector<std::vector<double>>& cos_to_bos,
                           int64_t bos_index, double cos_threshold) {
    const int64_t L = static_cast<int64_t>(bos_norms.size());
    ATTNLAB_CHECK(static_cast<int64_t>(cos_to_bos.size()) == L, InvalidArgument,
                  "[probe sinks] {} layers of cosines for {} BOS norms", cos_to_bos.size(), L);
    const int64_t T = L > 0 ? static_cast<int64_t>(cos_to_bos[0].size()) : 0;
    for (const auto& row : cos_to_bos)
        ATTNLAB_CHECK(static_cast<int64_t>(row.size()) == T, InvalidArgument,
                      "[probe sinks] cosine rows of different lengths ({} and {})", row.size(), T);
    SinkDetection d;
    d.window = sink_window(bos_norms);
    d.lifetime.assign(static_cast<size_t>(T), 0);
    d.first_layer.assign(static_cast<size_t>(T), -1);
    d.flagged_per_layer.assign(static_cast<size_t>(L), 0);
    for (int64_t l = d.window.start; l < d.window.end; ++l)
        for (int64_t i = bos_index + 1; i < T; ++i)
            if (std::abs(cos_to_bos[l][i]) > cos_threshold) {
                d.lifetime[i] += 1;
                if (d.first_layer[i] < 0) d.first_layer[i] = l;
                d.flagged_per_layer[l] += 1;
            }
    return d;
}

namespace {

double row_norm(const float* x, int64_t n) {
    double s = 0;
    for (int64_t c = 0; c < n; ++c) s += double(x[c]) * double(x[c]);
    return std::sqrt(s);
}

// ‖x_b‖ / mean_{i>b} ‖x_i‖ over rows of `width` values `stride` apart: the drain (values) and
// peak (residuals) of §6 are the same ratio on different tensors.
double bos_norm_ratio(const float* x, int64_t T, int64_t stride, int64_t width, int64_t b) {
    double others = 0;
    for (int64_t i = b + 1; i < T; ++i) others += row_norm(x + i * stride, width);
    others /= double(T - b - 1);
    return others > 0 ? row_norm(x + b * stride, width) / others : NAN;
}

class SinkHook : public Hooks {
public:
    SinkHook(const ModelConfig& c, const SinkProbeOptions& options)
        : L_(c.n_layer), H_(c.n_head), Hkv_(c.n_head_kv), options_(options), received_(L_), primary_(L_),
          bos_norm_(L_), peak_(L_), drain_(L_), flagged_(L_) {
        for (auto& p : primary_) p.assign(static_cast<size_t>(H_), Mean{});
        for (auto& d : drain_) d.assign(static_cast<size_t>(Hkv_), Mean{});
    }

    void start_sequence(const std::vector<int32_t>& ids) {
        T_ = static_cast<int64_t>(ids.size());
        seq_bos_norm_.assign(static_cast<size_t>(L_), NAN);
        seq_cos_.assign(static_cast<size_t>(L_), std::vector<double>(static_cast<size_t>(T_), 0.0));
        for (int64_t p = 0; p < T_; ++p) {
            if (p >= static_cast<int64_t>(common_tokens_.size())) common_tokens_.push_back(ids[p]);
            else if (common_tokens_[p] != ids[p]) common_tokens_[p] = -1;
        }
    }

    bool wants(const std::string& name) const override {
        return name.ends_with(".hook_resid_post") || name.ends_with(".attn.hook_v");
    }

    void on(const std::string& name, Tensor& value) override {
        const int64_t l = probe_util::hook_layer(name);
        const int64_t b = options_.bos_index;
        const float* x = value.data<float>();
        if (name.ends_with(".attn.hook_v")) {  // (T, Hkv, D)
            const int64_t D = value.size(2);
            for (int64_t g = 0; g < Hkv_; ++g) drain_[l][g].add(bos_norm_ratio(x + g * D, T_, Hkv_ * D, D, b));
            return;
        }
        const int64_t C = value.size(1);  // (T, C) residual after block l
        const float* hb = x + b * C;
        const double nb = row_norm(hb, C);
        seq_bos_norm_[l] = nb;
        for (int64_t i = 0; i < T_; ++i) {
            const float* hi = x + i * C;
            double dot = 0;
            for (int64_t c = 0; c < C; ++c) dot += double(hi[c]) * double(hb[c]);
            const double denom = row_norm(hi, C) * nb;
            seq_cos_[l][i] = denom > 0 ? dot / denom : 0.0;  // a zero vector points nowhere
        }
        bos_norm_[l].add(nb);
        peak_[l].add(bos_norm_ratio(x, T_, C, C, b));
    }

    std::optional<AttentionStatsRequest> attention_stats(int64_t, int64_t) const override {
        AttentionStatsRequest r;
        r.column_sum = true;
        r.keys = {options_.bos_index};
        return r;
    }

    void on_attention_stats(const LayerAttentionStats& st) override {
        received_[st.layer].add(probe_util::received_mass(st));
        const float* bos = st.key_mass.data<float>();  // (T, H, 1)
        for (int64_t t = 0; t < st.T; ++t)
            if (st.pos0 + t > options_.bos_index)
                for (int64_t h = 0; h < H_; ++h) primary_[st.layer][h].add(bos[t * H_ + h]);
    }

    // The secondary-sink rule on this sequence's norms and cosines.
    SequenceSinks finish_sequence(int64_t index, const std::vector<int32_t>& ids, const SinkLabelThresholds& th) {
        const SinkDetection d = detect_sinks(seq_bos_norm_, seq_cos_, options_.bos_index, options_.cos_threshold);
        SequenceSinks s;
        s.index = index;
        s.length = T_;
        s.window = d.window;
        for (int64_t l = 0; l < L_; ++l) flagged_[l].add(double(d.flagged_per_layer[l]));
        for (int64_t i = options_.bos_index + 1; i < T_; ++i) {
            const std::string label = sink_label(d.lifetime[i], th);
            if (label == "noise") {
                ++s.noise;
                continue;
            }
            ++(label == "bos_sink" ? s.bos_sinks : s.secondary);
            s.tokens.push_back({i, ids[i], d.lifetime[i], d.first_layer[i], label});
        }
        std::stable_sort(s.tokens.begin(), s.tokens.end(),
                         [](const SinkToken& a, const SinkToken& b) { return a.lifetime > b.lifetime; });
        if (static_cast<int64_t>(s.tokens.size()) > options_.max_sink_tokens) s.tokens.resize(options_.max_sink_tokens);
        return s;
    }

    std::vector<LayerSinkScores> result() const {
        std::vector<LayerSinkScores> out;
        for (int64_t l = 0; l < L_; ++l) {
            LayerSinkScores s;
            s.layer = l;
            s.received_mass = received_[l].mean();
            std::vector<int64_t> order(s.received_mass.size());
            std::iota(order.begin(), order.end(), 0);
            const size_t k = std::min(order.size(), static_cast<size_t>(options_.top_sinks));
            std::partial_sort(order.begin(), order.begin() + k, order.end(), [&](int64_t a, int64_t b) {
                const double ma = s.received_mass[a], mb = s.received_mass[b];
                return ma > mb || (ma == mb && a < b);
            });
            for (size_t r = 0; r < k; ++r)
                s.top_sinks.push_back({order[r], s.received_mass[order[r]], common_tokens_[order[r]]});
            s.primary_mass = probe_util::means(primary_[l]);
            s.bos_norm = bos_norm_[l].mean();
            s.residual_peak = peak_[l].mean();
            s.value_drain = probe_util::means(drain_[l]);
            s.flagged_tokens = flagged_[l].mean();
            out.push_back(std::move(s));
        }
        return out;
    }

private:
    int64_t L_, H_, Hkv_, T_ = 0;
    SinkProbeOptions options_;
    // Batch accumulators, per layer.
    std::vector<probe_util::PositionMean> received_;
    std::vector<std::vector<Mean>> primary_;  // (L, H) pooled over rows i > b of every sequence
    std::vector<Mean> bos_norm_, peak_;       // (L) per-sequence values, averaged
    std::vector<std::vector<Mean>> drain_;    // (L, Hkv)
    std::vector<Mean> flagged_;               // (L)
    std::vector<int32_t> common_tokens_;      // (S_max) the token at p if every sequence agrees, else -1
    // This sequence: BOS norm per layer (L) and cosine to BOS (L, T).
    std::vector<double> seq_bos_norm_;
    std::vector<std::vector<double>> seq_cos_;
};

}  // namespace

SinkScores probe_sinks(const Model& model, const std::vector<std::vector<int32_t>>& sequences,
                       const SinkProbeOptions& options, const ProbeControl& control) {
    ATTNLAB_CHECK(!sequences.empty(), InvalidArgument, "[probe sinks] no sequences");
    ATTNLAB_CHECK(options.bos_index >= 0, InvalidArgument, "[probe sinks] --bos-index must be >= 0, got {}", options.bos_index);
    ATTNLAB_CHECK(options.top_sinks >= 0 && options.max_sink_tokens >= 0, InvalidArgument,
                  "[probe sinks] --top and --max-tokens must be >= 0, got {} and {}", options.top_sinks,
                  options.max_sink_tokens);
    ATTNLAB_CHECK(options.cos_threshold >= 0 && options.cos_threshold <= 1, InvalidArgument,
                  "[probe sinks] --cos-threshold must be in [0, 1], got {}", options.cos_threshold);
    for (size_t s = 0; s < sequences.size(); ++s)
        ATTNLAB_CHECK(static_cast<int64_t>(sequences[s].size()) >= options.bos_index + 2, InvalidArgument,
                      "[probe sinks] sequence {} has {} tokens: the BOS index {} needs at least one token after it",
                      s, sequences[s].size(), options.bos_index);
    const ModelConfig& c = model.config();
    SinkScores scores;
    scores.options = options;
    scores.thresholds = sink_label_thresholds(c.n_layer, options.bos_lifetime, options.secondary_lifetime);
    SinkHook hook(c, options);
    scores.sequences = probe_util::run_sequences(
        model, sequences, hook, control, [&](size_t s) { hook.start_sequence(sequences[s]); },
        [&](size_t s) {
            scores.per_sequence.push_back(hook.finish_sequence(static_cast<int64_t>(s), sequences[s], scores.thresholds));
        });
    scores.layers = hook.result();
    scores.interrupted = scores.sequences < static_cast<int64_t>(sequences.size());
    return scores;
}

std::string SinkScores::to_json() const {
    using nlohmann::json;
    using probe_util::json_number;
    json layers_json = json::array();
    for (const LayerSinkScores& l : layers) {
        json top = json::array();
        for (const SinkPosition& p : l.top_sinks)
            top.push_back({{"position", p.position}, {"mass", json_number(p.mass)},
                           {"token", p.token >= 0 ? json(p.token) : json(nullptr)}});
        layers_json.push_back({{"layer", l.layer},
                               {"received_mass", probe_util::json_numbers(l.received_mass)},
                               {"top_sinks", top},
                               {"primary_mass", probe_util::json_numbers(l.primary_mass)},
                               {"bos_norm", json_number(l.bos_norm)},
                               {"residual_peak", json_number(l.residual_peak)},
                               {"value_drain", probe_util::json_numbers(l.value_drain)},
                               {"flagged_tokens", json_number(l.flagged_tokens)}});
    }
    json seqs = json::array();
    for (const SequenceSinks& s : per_sequence) {
        json tokens = json::array();
        for (const SinkToken& t : s.tokens)
            tokens.push_back({{"position", t.position}, {"token", t.token}, {"lifetime", t.lifetime},
                              {"first_layer", t.first_layer}, {"label", t.label}});
        seqs.push_back({{"index", s.index},
                        {"length", s.length},
                        {"window", {s.window.start, s.window.end}},
                        {"counts", {{"bos_sink", s.bos_sinks}, {"secondary", s.secondary}, {"noise", s.noise}}},
                        {"sink_tokens", tokens}});
    }
    json root;
    root["probe"] = "sinks";
    root["bos_index"] = options.bos_index;
    root["cos_threshold"] = options.cos_threshold;
    root["thresholds"] = {{"bos_lifetime", thresholds.bos_lifetime}, {"secondary_lifetime", thresholds.secondary_lifetime}};
    root["sequences"] = sequences;
    root["interrupted"] = interrupted;
    root["layers"] = layers_json;
    root["per_sequence"] = seqs;
    return root.dump(1);
}

}  // namespace attnlab
