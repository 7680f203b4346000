// The attention report (attention_report.h): probes -> figures -> one HTML page + JSON + PNGs.
#include <attnlab/attention_report.h>
#include <attnlab/error.h>
#include <attnlab/hooks.h>
#include <attnlab/report.h>
#include <attnlab/tokenizer.h>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
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

    // 2. Each head's pattern on the prompt.
    PatternCapture capture(options.max_pattern_tokens);
    {
        KVCache cache = model.new_cache();
        ForwardOptions fo;
        fo.hooks = &capture;
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
    page.add_section("Attention patterns",
                     fmt::format("Each head's attention on the last {} prompt tokens (rows: queries, columns: keys; "
                                 "colour: probability, 0..1). The PNG files are in patterns/.",
                                 n));
    for (size_t l = 0; l < capture.layers().size(); ++l)
        for (int64_t h = 0; h < capture.heads(); ++h) {
            Heatmap hm;
            hm.id = fmt::format("pattern-{}-{}", l, h);
            hm.title = fmt::format("layer {} head {}", l, h);
            hm.rows = hm.cols = n;
            const float* p = capture.layers()[l].data() + h * n * n;
            hm.values.assign(p, p + n * n);
            hm.row_label = "query";
            hm.col_label = "key";
            hm.value_label = "p";
            hm.vmin = 0.0;
            hm.vmax = 1.0;
            if (n <= 64) hm.row_names = hm.col_names = labels;
            const fs::path png = out_dir / "patterns" / fmt::format("{}_{}.png", l, h);
            report::write_png(png, hm, std::max<int>(1, static_cast<int>(256 / std::max<int64_t>(n, 1))));
            files.patterns.push_back(png);
            page.add(hm, static_cast<int>(std::max<int64_t>(1, 160 / std::max<int64_t>(n, 1))));
        }

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
