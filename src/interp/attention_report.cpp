// The attention report (attention_report.h): probes -> figures -> one HTML page + JSON + PNGs.
#include <attnlab/attention_report.h>
#include <attnlab/error.h>
#include <attnlab/hooks.h>
#include <attnlab/probe_position_bias.h>
#include <attnlab/probe_sinks.h>
#include <attnlab/report.h>
#include <attnlab/tokenizer.h>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <random>

namespace attnlab {

namespace {

namespace fs = std::filesystem;
using report::Heatmap;

// A (layers, heads) heatmap of one score.
Heatmap head_heatmap(const std::string& id, const std::string& title, const std::string& caption,
                     const HeadScores& scores, const std::function<double(const LayerHeadScores&, size_t)>& value) {
    Heatmap h;
    h.id = id;
    h.title = title;
    h.caption = caption;
    h.rows = static_cast<int64_t>(scores.layers.size());
    h.cols = scores.layers.empty() ? 0 : static_cast<int64_t>(scores.layers[0].bos_mass.size());
    h.row_label = "layer";
    h.col_label = "head";
    h.value_label = title;
    for (const LayerHeadScores& l : scores.layers)
        for (size_t head = 0; head < static_cast<size_t>(h.cols); ++head) h.values.push_back(value(l, head));
    return h;
}

// Readable labels of the prompt's tokens (the tokenizer's pieces, else the ids).
std::vector<std::string> token_labels(const Model& model, const std::vector<int32_t>& ids) {
    std::vector<std::string> labels;
    for (int32_t id : ids) {
        std::string label = std::to_string(id);
        if (model.tokenizer()) label = model.tokenizer()->decode(std::span<const int32_t>(&id, 1));
        labels.push_back(label);
    }
    return labels;
}

// Keeps each layer's (H, T, T) pattern of the prompt, for the last `keep` query and key positions.
class PatternCapture : public Hooks {
public:
    explicit PatternCapture(int64_t keep) : keep_(keep) {}
    bool wants(const std::string& name) const override { return name.ends_with(".attn.hook_pattern"); }
    void on(const std::string& name, Tensor& pattern) override {  // (H, T, S)
        const int64_t H = pattern.size(0), T = pattern.size(1), S = pattern.size(2);
        const int64_t n = std::min(keep_, T), t0 = T - n, j0 = S - n;
        std::vector<float> kept(static_cast<size_t>(H * n * n));  // (H, n, n)
        const float* p = pattern.data<float>();
        for (int64_t h = 0; h < H; ++h)
            for (int64_t t = 0; t < n; ++t)
                std::copy_n(p + (h * T + t0 + t) * S + j0, n, kept.data() + (h * n + t) * n);
        layers_.push_back(std::move(kept));
        n_ = n;
        H_ = H;
        (void)name;
    }
    const std::vector<std::vector<float>>& layers() const { return layers_; }
    int64_t tokens() const { return n_; }
    int64_t heads() const { return H_; }

private:
    int64_t keep_, n_ = 0, H_ = 0;
    std::vector<std::vector<float>> layers_;
};

// 0, 1, ..., n-1 as an x axis.
std::vector<double> indices(size_t n) {
    std::vector<double> x(n);
    for (size_t k = 0; k < n; ++k) x[k] = double(k);
    return x;
}

// One line per layer over a shared x axis.
report::LinePlot layer_lines(const std::string& id, const std::string& title, const std::string& caption,
                             const std::string& x_label, const std::string& y_label, const std::vector<double>& x,
                             const std::vector<std::vector<double>>& per_layer) {
    report::LinePlot plot;
    plot.id = id;
    plot.title = title;
    plot.caption = caption;
    plot.x_label = x_label;
    plot.y_label = y_label;
    for (size_t l = 0; l < per_layer.size(); ++l)
        plot.series.push_back({fmt::format("layer {}", l), x, per_layer[l]});
    return plot;
}

// Sink and position-bias figures of one prompt.
void add_sink_sections(report::Page& page, const SinkScores& sinks, const PositionBias& bias,
                       const std::vector<std::string>& token_text) {
    const size_t L = sinks.layers.size();
    const std::vector<double> layers_x = indices(L);
    page.add_section("Attention sinks",
                     "Received mass α_k (mean over heads of the mean attention key k gets from the queries that see "
                     "it), the BOS residual norm across layers, value drain and residual peak (docs/probes.md, sinks).");
    std::vector<std::vector<double>> alpha;
    for (const LayerSinkScores& l : sinks.layers) alpha.push_back(l.received_mass);
    page.add(layer_lines("received-mass", "received mass by position", "α_k per layer", "key position", "α_k",
                         indices(alpha.empty() ? 0 : alpha[0].size()),
                         alpha));
    report::LinePlot norms;
    norms.id = "bos-norms";
    norms.title = "BOS residual norm and peak";
    norms.caption = "||h_BOS|| after each layer, and ||h_BOS|| / mean ||h_i>0|| (residual peak)";
    norms.x_label = "layer";
    norms.y_label = "value";
    norms.log_y = true;
    std::vector<double> bos, peak, drain;
    for (const LayerSinkScores& l : sinks.layers) {
        bos.push_back(l.bos_norm);
        peak.push_back(l.residual_peak);
        double lowest = l.value_drain.empty() ? NAN : *std::min_element(l.value_drain.begin(), l.value_drain.end());
        drain.push_back(lowest);
    }
    norms.series = {{"||h_BOS||", layers_x, bos}, {"residual peak", layers_x, peak}, {"value drain (min kv head)", layers_x, drain}};
    page.add(norms);
    report::Table table;
    table.id = "top-sinks";
    table.title = "strongest sinks per layer";
    table.header = {"layer", "position", "token", "α_k"};
    for (const LayerSinkScores& l : sinks.layers)
        for (const SinkPosition& p : l.top_sinks)
            table.rows.push_back({std::to_string(l.layer), std::to_string(p.position),
                                  p.position < static_cast<int64_t>(token_text.size()) ? token_text[p.position] : "",
                                  fmt::format("{:.4f}", p.mass)});
    page.add(table);

    page.add_section("Position bias",
                     "Attention mass against relative distance (log2 bins), the first token's mass per layer, and "
                     "attention rollout across layers (docs/probes.md, position-bias).");
    std::vector<std::vector<double>> distance;
    for (const LayerPositionBias& l : bias.layers) distance.push_back(l.distance_mass);
    page.add(layer_lines("distance-mass", "mass by distance", "bin 0: d < 0, 1: d = 0, 2: d = 1, b: d in [2^(b-2), 2^(b-1))",
                         "distance bin", "mean mass", indices(distance.empty() ? 0 : distance[0].size()), distance));
    report::LinePlot depth;
    depth.id = "first-token-mass";
    depth.title = "first-token mass by depth";
    depth.caption = "mean A[i, 0] per layer; rollout: mean P[i, 0] of the product of head-averaged maps";
    depth.x_label = "layer";
    depth.y_label = "mass";
    std::vector<double> first;
    for (const LayerPositionBias& l : bias.layers) first.push_back(l.first_token_mass);
    depth.series.push_back({"A[i, 0]", layers_x, first});
    if (bias.rollout) depth.series.push_back({"rollout P[i, 0]", layers_x, bias.rollout->first_token_mass});
    page.add(depth);
}

// The pattern grid cell of one head (PNG next to the page, heatmap on it).
Heatmap pattern_heatmap(const std::string& id, const std::string& title, const float* p, int64_t n,
                        const std::vector<std::string>& labels, double vmin, double vmax, const std::string& value_label) {
    Heatmap hm;
    hm.id = id;
    hm.title = title;
    hm.rows = hm.cols = n;
    hm.values.assign(p, p + n * n);
    hm.row_label = "query";
    hm.col_label = "key";
    hm.value_label = value_label;
    hm.vmin = vmin;
    hm.vmax = vmax;
    if (n <= 64) hm.row_names = hm.col_names = labels;
    return hm;
}

// The prompt's patterns and last-position logits with `hooks` attached (null: plain).
struct CapturedRun {
    PatternCapture patterns;
    Tensor logits;  // (1, V)
};
void capture_run(const Model& model, const std::vector<int32_t>& prompt, const AttentionReportOptions& options,
                 Hooks* intervention, CapturedRun& run) {
    HookChain chain;  // the intervention first, so the capture sees the edited pattern
    if (intervention) chain.add(intervention);
    chain.add(&run.patterns);
    KVCache cache = model.new_cache();
    ForwardOptions fo;
    fo.hooks = &chain;
    fo.segments = options.segments;
    run.logits = model.forward(prompt, cache, fo);
}

// "Intervention" section: before / after / difference of every head the intervention changes.
void add_intervention_section(report::Page& page, const Model& model, const std::vector<int32_t>& prompt,
                              const AttentionReportOptions& options, const std::vector<std::string>& labels,
                              nlohmann::json& all) {
    CapturedRun before{PatternCapture(options.max_pattern_tokens), Tensor()};
    CapturedRun after{PatternCapture(options.max_pattern_tokens), Tensor()};
    capture_run(model, prompt, options, nullptr, before);
    capture_run(model, prompt, options, options.intervention, after);
    const int64_t n = before.patterns.tokens(), H = before.patterns.heads();
    auto top = [&](const Tensor& logits) {
        const float* x = logits.data<float>();
        const int64_t V = logits.size(1);
        const int64_t id = std::max_element(x, x + V) - x;
        const int32_t id32 = static_cast<int32_t>(id);
        const std::string text = model.tokenizer() ? model.tokenizer()->decode(std::span<const int32_t>(&id32, 1)) : "";
        return std::make_pair(id, text);
    };
    const auto [id_before, text_before] = top(before.logits);
    const auto [id_after, text_after] = top(after.logits);
    std::string lines;
    for (const std::string& line : options.intervention_lines) lines += (lines.empty() ? "" : "; ") + line;
    page.add_section("Intervention",
                     fmt::format("{}. Next token after the prompt: {} '{}' before, {} '{}' after. The heatmap shows how "
                                 "much each head's pattern on the last {} tokens changed (the heads edited and every "
                                 "head downstream of them); below it the most changed heads: before, after, and "
                                 "after − before.",
                                 lines.empty() ? "an intervention" : lines, id_before, text_before, id_after, text_after, n));
    struct Change {
        size_t layer;
        int64_t head;
        double max_diff, mean_l1, bos_before, bos_after;
    };
    std::vector<Change> changes;
    Heatmap overview;
    overview.id = "intervention-change";
    overview.title = "pattern change";
    overview.caption = "mean over query rows of Σ_j |p_after − p_before|";
    overview.rows = static_cast<int64_t>(before.patterns.layers().size());
    overview.cols = H;
    overview.row_label = "layer";
    overview.col_label = "head";
    overview.value_label = "mean row L1 change";
    for (size_t l = 0; l < before.patterns.layers().size(); ++l)
        for (int64_t h = 0; h < H; ++h) {
            const float* a = before.patterns.layers()[l].data() + h * n * n;
            const float* b = after.patterns.layers()[l].data() + h * n * n;
            Change c{l, h, 0, 0, 0, 0};
            for (int64_t k = 0; k < n * n; ++k) {
                c.max_diff = std::max(c.max_diff, std::fabs(double(b[k]) - a[k]));
                c.mean_l1 += std::fabs(double(b[k]) - a[k]);
            }
            c.mean_l1 /= double(n);
            for (int64_t t = 0; t < n; ++t) c.bos_before += a[t * n] / double(n), c.bos_after += b[t * n] / double(n);
            overview.values.push_back(c.mean_l1);
            if (c.max_diff > 1e-7) changes.push_back(c);
        }
    page.add(overview);
    std::stable_sort(changes.begin(), changes.end(), [](const Change& x, const Change& y) { return x.mean_l1 > y.mean_l1; });
    report::Table table;
    table.id = "intervention-heads";
    table.title = "most changed heads";
    table.header = {"layer", "head", "max |Δp|", "mean row L1 change", "BOS mass before", "BOS mass after"};
    nlohmann::json changed = nlohmann::json::array();
    for (const Change& c : changes) {
        if (table.rows.size() < 16)
            table.rows.push_back({std::to_string(c.layer), std::to_string(c.head), fmt::format("{:.4f}", c.max_diff),
                                  fmt::format("{:.4f}", c.mean_l1), fmt::format("{:.4f}", c.bos_before),
                                  fmt::format("{:.4f}", c.bos_after)});
        changed.push_back({{"layer", c.layer}, {"head", c.head}, {"max_abs_change", c.max_diff},
                           {"mean_row_l1_change", c.mean_l1}, {"bos_mass_before", c.bos_before},
                           {"bos_mass_after", c.bos_after}});
    }
    page.add(table);
    const int scale = static_cast<int>(std::max<int64_t>(1, 160 / std::max<int64_t>(n, 1)));
    for (size_t k = 0; k < std::min<size_t>(changes.size(), 6); ++k) {
        const size_t l = changes[k].layer;
        const int64_t h = changes[k].head;
        const float* a = before.patterns.layers()[l].data() + h * n * n;
        const float* b = after.patterns.layers()[l].data() + h * n * n;
        std::vector<float> diff(static_cast<size_t>(n * n));
        double extent = 1e-12;
        for (int64_t i = 0; i < n * n; ++i) extent = std::max(extent, std::fabs(double(diff[i] = b[i] - a[i])));
        const std::string tag = fmt::format("{}-{}", l, h);
        page.add(pattern_heatmap("before-" + tag, fmt::format("layer {} head {}: before", l, h), a, n, labels, 0, 1, "probability"), scale);
        page.add(pattern_heatmap("after-" + tag, fmt::format("layer {} head {}: after", l, h), b, n, labels, 0, 1, "probability"), scale);
        page.add(pattern_heatmap("diff-" + tag, fmt::format("layer {} head {}: after − before", l, h), diff.data(), n, labels,
                                 -extent, extent, "change"),
                 scale);
    }
    all["intervention"] = {{"description", options.intervention_lines},
                           {"next_token_before", {{"id", id_before}, {"text", text_before}}},
                           {"next_token_after", {{"id", id_after}, {"text", text_after}}},
                           {"changed_heads", changed}};
}

}  // namespace

AttentionReportFiles write_attention_report(const Model& model, const std::vector<int32_t>& prompt,
                                            const fs::path& out_dir, const AttentionReportOptions& options,
                                            const ProbeControl& control) {
    ATTNLAB_CHECK(!prompt.empty(), InvalidArgument, "[report] the prompt has no tokens");
    std::error_code ec;
    fs::create_directories(out_dir / "patterns", ec);
    ATTNLAB_CHECK(!ec, IoError, "[report] cannot create {}: {}", (out_dir / "patterns").string(), ec.message());
    const ModelConfig& c = model.config();
    AttentionReportFiles files;
    nlohmann::json all;

    // 1. Head scores on the prompt, and induction on repeated random tokens.
    const HeadScores prompt_scores = probe_heads(model, {prompt}, {}, control);
    all["heads_prompt"] = nlohmann::json::parse(prompt_scores.to_json());
    HeadScores repeat_scores;
    if (options.repeat_block > 0 && !control.cancelled()) {
        std::mt19937_64 rng(options.seed);
        const int32_t bos = static_cast<int32_t>(c.bos_token_id.value_or(0));
        std::uniform_int_distribution<int32_t> pick(0, static_cast<int32_t>(c.vocab_size - 1));
        std::vector<std::vector<int32_t>> batch;
        for (int64_t n = 0; n < options.repeat_sequences; ++n) {
            std::vector<int32_t> block;
            for (int64_t k = 0; k < options.repeat_block; ++k) block.push_back(pick(rng));
            std::vector<int32_t> seq{bos};
            seq.insert(seq.end(), block.begin(), block.end());
            seq.insert(seq.end(), block.begin(), block.end());
            batch.push_back(std::move(seq));
        }
        HeadProbeOptions ho;
        ho.repeat = options.repeat_block;
        repeat_scores = probe_heads(model, batch, ho, control);
        all["heads_repeated_random"] = nlohmann::json::parse(repeat_scores.to_json());
    }

    // 2. Sinks and position bias on the prompt.
    const SinkScores sinks = probe_sinks(model, {prompt}, {}, control);
    const PositionBias bias = probe_position_bias(model, {prompt}, {}, control);
    all["sinks"] = nlohmann::json::parse(sinks.to_json());
    all["position_bias"] = nlohmann::json::parse(bias.to_json());

    // 3. Each head's pattern on the prompt.
    PatternCapture capture(options.max_pattern_tokens);
    {
        KVCache cache = model.new_cache();
        ForwardOptions fo;
        fo.hooks = &capture;
        fo.segments = options.segments;
        model.forward(prompt, cache, fo);
    }

    report::Page page(fmt::format("attnlab report: {}", fs::path(model.directory()).filename().string()));
    const std::string shown = options.prompt_label.empty() ? fmt::format("{} token ids", prompt.size()) : options.prompt_label;
    page.add_section("Model and prompt",
                     fmt::format("{} ({} layers, {} heads, {} kv heads, head dim {}), {} prompt tokens: {}",
                                 c.model_type, c.n_layer, c.n_head, c.n_head_kv, c.head_dim, prompt.size(), shown));

    page.add_section("Head scores on the prompt",
                     "Per layer and head, averaged over the prompt's positions >= 1 (docs/probes.md, heads).");
    page.add(head_heatmap("bos-mass", "BOS mass", "attention to position 0", prompt_scores,
                          [](const LayerHeadScores& l, size_t h) { return l.bos_mass[h]; }));
    page.add(head_heatmap("prev-token", "previous-token score", "attention from i to i-1", prompt_scores,
                          [](const LayerHeadScores& l, size_t h) { return l.prev_token[h]; }));
    page.add(head_heatmap("entropy", "entropy (nats)", "mean row entropy", prompt_scores,
                          [](const LayerHeadScores& l, size_t h) { return l.entropy[h]; }));
    page.add(head_heatmap("local-focus", "local focus (distance 0)", "attention to the query's own position",
                          prompt_scores, [](const LayerHeadScores& l, size_t h) { return l.local_focus[h][0]; }));
    page.add(head_heatmap("frobenius", "||A||_F", "Frobenius norm of the head's attention map", prompt_scores,
                          [](const LayerHeadScores& l, size_t h) { return l.frobenius[h]; }));
    if (!repeat_scores.layers.empty()) {
        page.add_section("Induction",
                         fmt::format("On {} sequences of BOS + {} random tokens repeated once: attention from i to "
                                     "the token after its previous occurrence.",
                                     repeat_scores.sequences, options.repeat_block));
        page.add(head_heatmap("induction", "induction score", "mean attention from i >= N+1 to i-N+1", repeat_scores,
                              [](const LayerHeadScores& l, size_t h) { return l.induction[h]; }));
    }

    // Per-head patterns: files, and a grid on the page.
    const int64_t n = capture.tokens();
    const std::vector<std::string> labels = [&] {
        std::vector<int32_t> last(prompt.end() - n, prompt.end());
        return token_labels(model, last);
    }();
    add_sink_sections(page, sinks, bias, token_labels(model, prompt));
    page.add_section("Attention patterns",
                     fmt::format("Each head's attention on the last {} prompt tokens (rows: queries, columns: keys; "
                                 "colour: probability, 0..1). The PNG files are in patterns/.",
                                 n));
    for (size_t l = 0; l < capture.layers().size(); ++l)
        for (int64_t h = 0; h < capture.heads(); ++h) {
            const Heatmap hm = pattern_heatmap(fmt::format("pattern-{}-{}", l, h), fmt::format("layer {} head {}", l, h),
                                               capture.layers()[l].data() + h * n * n, n, labels, 0.0, 1.0, "probability");
            const fs::path png = out_dir / "patterns" / fmt::format("{}_{}.png", l, h);
            report::write_png(png, hm, std::max<int>(1, static_cast<int>(256 / std::max<int64_t>(n, 1))));
            files.patterns.push_back(png);
            page.add(hm, static_cast<int>(std::max<int64_t>(1, 160 / std::max<int64_t>(n, 1))));
        }

    if (options.intervention && !control.cancelled()) add_intervention_section(page, model, prompt, options, labels, all);

    all["prompt_ids"] = prompt;
    all["model"] = {{"directory", model.directory()}, {"model_type", c.model_type}, {"layers", c.n_layer},
                    {"heads", c.n_head}, {"kv_heads", c.n_head_kv}};
    all["interrupted"] = control.cancelled();
    const std::string json_text = all.dump(1);
    page.add_section("Data", "Every number behind the figures.");
    page.add_json("report", json_text);

    files.html = out_dir / "report.html";
    files.json = out_dir / "report.json";
    page.write(files.html);
    std::FILE* f = std::fopen(files.json.c_str(), "wb");
    ATTNLAB_CHECK(f != nullptr, IoError, "[report] cannot write {}", files.json.string());
    const size_t written = std::fwrite(json_text.data(), 1, json_text.size(), f);
    const bool ok = std::fclose(f) == 0 && written == json_text.size();
    ATTNLAB_CHECK(ok, IoError, "[report] cannot write {}", files.json.string());
    return files;
}

}  // namespace attnlab
