// The `logit-lens` probe: the residual stream after every layer read through the final norm and
// unembedding (Model::unembed), and direct logit attribution of target tokens through the final
// norm frozen at the real final residual (Model::freeze_final_norm). One forward pass; only the
// rows of the chosen positions are kept from each hook point. Definitions: probe_logit_lens.h.
#include <attnlab/error.h>
#include <attnlab/hooks.h>
#include <attnlab/probe_logit_lens.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <fmt/format.h>
#include <map>
#include <numeric>

namespace attnlab {

namespace {

// Keeps, for each wanted point, only the rows (token axis = dim 0) of the chosen positions: the
// probe reads a few positions, so long sequences cost O(P·H·C) per layer, not O(T·H·C).
class RowPicker : public Hooks {
public:
    RowPicker(std::vector<std::string> names, std::vector<int64_t> positions)
        : names_(std::move(names)), positions_(std::move(positions)) {
        std::sort(names_.begin(), names_.end());
    }
    bool wants(const std::string& name) const override { return std::binary_search(names_.begin(), names_.end(), name); }
    void on(const std::string& name, Tensor& value) override {  // (T, ...) contiguous f32
        const int64_t T = value.size(0), row = value.numel() / T;
        const float* src = value.data<float>();
        std::vector<float>& dst = rows_[name];  // (P, row)
        dst.resize(positions_.size() * static_cast<size_t>(row));
        for (size_t p = 0; p < positions_.size(); ++p)
            std::copy_n(src + positions_[p] * row, row, dst.begin() + static_cast<int64_t>(p) * row);
    }
    bool has(const std::string& name) const { return rows_.count(name) > 0; }
    // Row p of a kept point, or null when the model did not offer it (e.g. no learned positions).
    const float* row(const std::string& name, size_t p, int64_t row_size) const {
        auto it = rows_.find(name);
        return it == rows_.end() ? nullptr : it->second.data() + p * static_cast<size_t>(row_size);
    }
    const std::vector<float>& all(const std::string& name) const { return rows_.at(name); }

private:
    std::vector<std::string> names_;
    std::vector<int64_t> positions_;
    std::map<std::string, std::vector<float>> rows_;
};

// The linear functional a -> DLA(a) of one target at one position: d_c = scale·u_c·weight_c,
// minus the row mean's share for LayerNorm (centering is linear in a).
class Attributor {
public:
    Attributor(const Model::FrozenFinalNorm& norm, const float* u, int64_t C) : centered_(norm.centered), C_(C) {  // u (C)
        d_.resize(static_cast<size_t>(C));
        for (int64_t c = 0; c < C; ++c) {
            d_[c] = norm.scale * double(u[c]) * double(norm.weight[c]);
            d_sum_ += d_[c];
            if (!norm.bias.empty()) bias_term_ += double(u[c]) * double(norm.bias[c]);
        }
    }
    double operator()(const float* a) const {  // (C), or null for an absent component
        if (!a) return 0.0;
        double dot = 0, mean = 0;
        for (int64_t c = 0; c < C_; ++c) dot += d_[c] * a[c], mean += a[c];
        return centered_ ? dot - d_sum_ * mean / double(C_) : dot;
    }
    double bias_term() const { return bias_term_; }

private:
    bool centered_;
    int64_t C_;
    std::vector<double> d_;
    double d_sum_ = 0, bias_term_ = 0;
};

std::string token_text(const Model& model, int32_t id) {
    const Tokenizer* tok = model.tokenizer();
    if (!tok) return {};
    const int32_t one[] = {id};
    return tok->decode(one);
}

// One layer's lens at one position from its logits row (V).
LensLayer lens_layer(const Model& model, int64_t layer, const float* logits, int64_t V, int64_t top_k,
                     const std::vector<int32_t>& targets) {
    LensLayer out;
    out.layer = layer;
    const double max = *std::max_element(logits, logits + V);
    double z = 0;
    for (int64_t v = 0; v < V; ++v) z += std::exp(double(logits[v]) - max);
    auto prob = [&](int32_t v) { return std::exp(double(logits[v]) - max) / z; };
    std::vector<int32_t> order(static_cast<size_t>(V));
    std::iota(order.begin(), order.end(), 0);
    const int64_t k = std::min(top_k, V);
    std::partial_sort(order.begin(), order.begin() + k, order.end(), [&](int32_t a, int32_t b) {
        return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
    });
    for (int64_t i = 0; i < k; ++i)
        out.top.push_back({order[i], double(logits[order[i]]), prob(order[i]), token_text(model, order[i])});
    for (int32_t t : targets) {
        out.target_logit.push_back(logits[t]);
        out.target_prob.push_back(prob(t));
        out.target_rank.push_back(std::count_if(logits, logits + V, [&](float x) { return x > logits[t]; }));
    }
    return out;
}

}  // namespace

LogitLensResult probe_logit_lens(const Model& model, const std::vector<int32_t>& ids, const LogitLensOptions& options,
                                 const ProbeControl& control) {
    const ModelConfig& c = model.config();
    const int64_t T = static_cast<int64_t>(ids.size()), L = c.n_layer, H = c.n_head, C = c.hidden_size,
                  V = c.vocab_size;
    ATTNLAB_CHECK(T > 0, InvalidArgument, "[probe logit-lens] no tokens to probe");
    ATTNLAB_CHECK(options.top_k >= 1, InvalidArgument, "[probe logit-lens] --top-k must be >= 1, got {}", options.top_k);
    for (int32_t t : options.targets)
        ATTNLAB_CHECK(t >= 0 && t < V, InvalidArgument,
                      "[probe logit-lens] target id {} is out of range for vocabulary size {}", t, V);
    std::vector<int64_t> positions;
    for (int64_t p : options.positions.empty() ? std::vector<int64_t>{-1} : options.positions) {
        const int64_t q = p < 0 ? T + p : p;
        ATTNLAB_CHECK(q >= 0 && q < T, InvalidArgument,
                      "[probe logit-lens] position {} is outside the sequence of {} tokens", p, T);
        positions.push_back(q);
    }
    const size_t P = positions.size();

    // Heads add up to the attention output only when no norm follows attention (not Gemma-2/3,
    // OLMo-2): there, DLA stops at the layer's whole attention output.
    const bool per_head = options.attribution && !c.post_norms;
    std::vector<std::string> names = {"hook_embed", "hook_pos_embed"};
    for (int64_t l = 0; l < L; ++l) {
        names.push_back(fmt::format("blocks.{}.hook_resid_post", l));
        if (options.attribution) {
            names.push_back(fmt::format("blocks.{}.hook_attn_out", l));
            names.push_back(fmt::format("blocks.{}.hook_mlp_out", l));
        }
        if (per_head) names.push_back(fmt::format("blocks.{}.attn.hook_result", l));
    }
    RowPicker picker(names, positions);
    KVCache cache = model.new_cache();
    ForwardOptions fo;
    fo.hooks = &picker;
    model.forward(ids, cache, fo);
    control.report(1, 1);

    LogitLensResult result;
    result.tokens = T;
    result.top_k = options.top_k;
    result.n_layer = L;
    result.n_head = H;
    result.final_softcap = c.final_softcap;
    const std::string final_name = fmt::format("blocks.{}.hook_resid_post", L - 1);
    const float* final_rows = picker.all(final_name).data();  // (P, C)
    const Tensor final_logits = model.unembed(final_rows, static_cast<int64_t>(P));        // (P, V)
    const Tensor raw_logits = model.unembed(final_rows, static_cast<int64_t>(P), false);  // (P, V) pre-softcap
    for (size_t p = 0; p < P; ++p) {
        LensPosition pos;
        pos.position = positions[p];
        pos.token = ids[positions[p]];
        pos.next_token = positions[p] + 1 < T ? ids[positions[p] + 1] : -1;
        if (options.targets.empty()) {
            const float* row = final_logits.data<float>() + p * V;
            pos.targets = {static_cast<int32_t>(std::max_element(row, row + V) - row)};  // lowest id on ties
        } else {
            pos.targets = options.targets;
        }
        if (model.tokenizer())
            for (int32_t t : pos.targets) pos.target_text.push_back(token_text(model, t));
        result.positions.push_back(std::move(pos));
    }
    for (int64_t l = 0; l < L; ++l) {
        const Tensor lens = model.unembed(picker.all(fmt::format("blocks.{}.hook_resid_post", l)).data(),
                                          static_cast<int64_t>(P));  // (P, V)
        for (size_t p = 0; p < P; ++p)
            result.positions[p].layers.push_back(
                lens_layer(model, l, lens.data<float>() + p * V, V, options.top_k, result.positions[p].targets));
    }
    if (!options.attribution) return result;

    const std::vector<Model::FrozenFinalNorm> norms = model.freeze_final_norm(final_rows, static_cast<int64_t>(P));
    for (size_t p = 0; p < P; ++p) {
        LensPosition& pos = result.positions[p];
        const std::vector<float> u = model.unembedding_rows(pos.targets);  // (K, C)
        for (size_t k = 0; k < pos.targets.size(); ++k) {
            const Attributor dla(norms[p], u.data() + k * C, C);
            LogitAttribution a;
            a.target = pos.targets[k];
            a.logit = raw_logits.data<float>()[p * V + a.target];
            a.embed = dla(picker.row("hook_embed", p, C));
            a.pos_embed = dla(picker.row("hook_pos_embed", p, C));
            a.norm_bias = dla.bias_term();
            a.total = a.embed + a.pos_embed + a.norm_bias;
            for (int64_t l = 0; l < L; ++l) {
                const double attn = dla(picker.row(fmt::format("blocks.{}.hook_attn_out", l), p, C));
                const double mlp = dla(picker.row(fmt::format("blocks.{}.hook_mlp_out", l), p, C));
                a.attn.push_back(attn);
                a.mlp.push_back(mlp);
                a.total += attn + mlp;
                if (!per_head) continue;
                const float* heads = picker.row(fmt::format("blocks.{}.attn.hook_result", l), p, H * C);  // (H, C)
                std::vector<double> per(static_cast<size_t>(H));
                for (int64_t h = 0; h < H; ++h) per[h] = dla(heads + h * C);
                a.attn_bias.push_back(attn - std::accumulate(per.begin(), per.end(), 0.0));
                a.heads.push_back(std::move(per));
            }
            pos.attribution.push_back(std::move(a));
        }
    }
    return result;
}

std::string LogitLensResult::to_json() const {
    using nlohmann::json;
    json out;
    out["probe"] = "logit-lens";
    out["tokens"] = tokens;
    out["top_k"] = top_k;
    out["layers"] = n_layer;
    out["heads"] = n_head;
    out["final_softcap"] = final_softcap;
    json ps = json::array();
    for (const LensPosition& p : positions) {
        json jp;
        jp["position"] = p.position;
        jp["token"] = p.token;
        jp["next_token"] = p.next_token >= 0 ? json(p.next_token) : json(nullptr);
        jp["targets"] = p.targets;
        if (!p.target_text.empty()) jp["target_text"] = p.target_text;
        json lens = json::array();
        for (const LensLayer& l : p.layers) {
            json top = json::array();
            for (const LensToken& t : l.top) {
                json jt = {{"id", t.id}, {"logit", t.logit}, {"prob", t.prob}};
                if (!t.text.empty()) jt["text"] = t.text;
                top.push_back(jt);
            }
            lens.push_back({{"layer", l.layer},
                            {"top", top},
                            {"target_logit", l.target_logit},
                            {"target_prob", l.target_prob},
                            {"target_rank", l.target_rank}});
        }
        jp["lens"] = lens;
        json attr = json::array();
        for (const LogitAttribution& a : p.attribution)
            attr.push_back({{"target", a.target},
                            {"logit", a.logit},
                            {"total", a.total},
                            {"embed", a.embed},
                            {"pos_embed", a.pos_embed},
                            {"norm_bias", a.norm_bias},
                            {"heads", a.heads},
                            {"attn_bias", a.attn_bias},
                            {"attn", a.attn},
                            {"mlp", a.mlp}});
        jp["attribution"] = attr;
        ps.push_back(jp);
    }
    out["positions"] = ps;
    return out.dump(1);
}

}  // namespace attnlab
