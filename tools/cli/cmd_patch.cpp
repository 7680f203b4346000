// attnlab patch: causal experiments on a model (patching.h, head_search.h, docs/patching.md):
//   ablate      every head and every layer ablated (zero, uniform, mean, bos): JSON in the layout
//               of the fixtures' ablations.json, and an HTML report;
//   activation  activation patching over (layer, head, position) of a clean/corrupted pair;
//   path        path patching (three runs per sender head);
//   trace       causal tracing (noise on input embeddings, restore one state at a time);
//   search      the smallest head set whose ablation crosses a target (greedy), or a per-head screen.
// Every sweep has a progress bar on a terminal; Ctrl-C stops it and writes the partial results
// (exit 130).
#include "probe_common.h"

#include <attnlab/head_search.h>
#include <attnlab/patching.h>
#include <attnlab/safetensors.h>

#include <fmt/format.h>

#include <cmath>
#include <cstdio>
#include <filesystem>

namespace attnlab::cli {

namespace {

// "3,5-7" -> {3, 5, 6, 7}.
std::vector<int64_t> parse_index_list(const std::string& text, const char* where, const char* what) {
    std::vector<int64_t> out;
    if (text.empty()) return out;
    size_t start = 0;
    while (start <= text.size()) {
        const size_t comma = std::min(text.find(',', start), text.size());
        const std::string item = text.substr(start, comma - start);
        start = comma + 1;
        const size_t dash = item.find('-', 1);
        auto number = [&](const std::string& s) {
            size_t used = 0;
            int64_t v = -1;
            try {
                v = std::stoll(s, &used);
            } catch (const std::logic_error&) {
                used = 0;
            }
            ATTNLAB_CHECK(used == s.size() && !s.empty() && v >= 0, InvalidArgument,
                          "[{}] bad {} '{}' in '{}' (expected indices like 3,5-7)", where, what, item, text);
            return v;
        };
        const int64_t lo = number(item.substr(0, dash)), hi = dash == std::string::npos ? lo : number(item.substr(dash + 1));
        ATTNLAB_CHECK(lo <= hi, InvalidArgument, "[{}] bad {} range '{}'", where, what, item);
        for (int64_t v = lo; v <= hi; ++v) out.push_back(v);
    }
    return out;
}

// One token: an id, or a text that must tokenise to exactly one token.
int32_t single_token(const Model& model, const std::string& text, const std::string& id, const char* where,
                     const char* what) {
    if (!id.empty()) {
        const std::vector<int32_t> ids = parse_ids(id);
        ATTNLAB_CHECK(ids.size() == 1, InvalidArgument, "[{}] {} must be one token id, got '{}'", where, what, id);
        return ids[0];
    }
    const std::vector<int32_t> ids = require_tokenizer(model).encode(text, false);
    ATTNLAB_CHECK(ids.size() == 1, InvalidArgument, "[{}] {} '{}' is {} tokens, not one (use --{}-id)", where, what, text,
                  ids.size(), what);
    return ids[0];
}

// Which metric an experiment measures: next-token accuracy / loss, or logit difference /
// probability of an answer (against a distractor) at a position.
struct MetricOptions {
    std::string metric;  // "", "logit_diff", "probability", "next_token"
    std::string answer, answer_id, distractor, distractor_id;
    int64_t position = -1;
    void add_to(CLI::App& app, const char* default_metric) {
        app.add_option("--metric", metric, fmt::format("logit_diff, probability or next_token (default {})", default_metric))
            ->check(CLI::IsMember({"logit_diff", "probability", "next_token"}));
        app.add_option("--answer", answer, "The answer token, as text (one token)");
        app.add_option("--answer-id", answer_id, "The answer token id");
        app.add_option("--distractor", distractor, "The distractor token of the logit difference, as text");
        app.add_option("--distractor-id", distractor_id, "The distractor token id");
        app.add_option("--position", position, "Position whose logits the metric reads (default: the last)");
    }
    // `loss_mask` is used by next_token; per-sequence answers (N) may come from the input file.
    std::unique_ptr<Metric> build(const Model& model, const char* where, const std::string& fallback,
                                  std::vector<std::vector<float>> loss_mask = {},
                                  const std::vector<LogitTarget>& file_targets = {}) const {
        const std::string kind = metric.empty() ? fallback : metric;
        if (kind == "next_token") {
            ATTNLAB_CHECK(answer.empty() && answer_id.empty(), InvalidArgument,
                          "[{}] --answer does not apply to the next_token metric", where);
            return next_token_metric(std::move(loss_mask));
        }
        std::vector<LogitTarget> targets = file_targets;
        if (targets.empty()) {
            ATTNLAB_CHECK(!answer.empty() || !answer_id.empty(), InvalidArgument,
                          "[{}] the {} metric needs --answer TEXT or --answer-id ID", where, kind);
            LogitTarget t;
            t.answer = single_token(model, answer, answer_id, where, "answer");
            if (!distractor.empty() || !distractor_id.empty())
                t.distractor = single_token(model, distractor, distractor_id, where, "distractor");
            targets.push_back(t);
        }
        for (LogitTarget& t : targets) t.position = position;
        return kind == "probability" ? answer_probability_metric(std::move(targets)) : logit_diff_metric(std::move(targets));
    }
};

// Per-sequence answers of an input file: `answer_ids` (N) and optionally `distractor_ids` (N).
std::vector<LogitTarget> file_targets(const std::string& file, size_t n, const char* where) {
    if (file.empty()) return {};
    const SafetensorsFile st = load_safetensors(file);
    const auto answers = st.tensors.find("answer_ids");
    if (answers == st.tensors.end()) return {};
    const std::vector<int64_t> a = answers->second.to_ints();
    ATTNLAB_CHECK(a.size() == n, FormatError, "[{}] {}: answer_ids has {} entries for {} sequences", where, file, a.size(), n);
    std::vector<int64_t> d(n, -1);
    if (const auto it = st.tensors.find("distractor_ids"); it != st.tensors.end()) {
        d = it->second.to_ints();
        ATTNLAB_CHECK(d.size() == n, FormatError, "[{}] {}: distractor_ids has {} entries for {} sequences", where, file,
                      d.size(), n);
    }
    std::vector<LogitTarget> out;
    for (size_t i = 0; i < n; ++i) {
        ATTNLAB_CHECK(a[i] >= 0 && a[i] <= INT32_MAX && d[i] >= -1 && d[i] <= INT32_MAX, FormatError,
                      "[{}] {}: a bad answer or distractor id in entry {}", where, file, i);
        out.push_back({static_cast<int32_t>(a[i]), static_cast<int32_t>(d[i]), -1});
    }
    return out;
}

// The clean and corrupted inputs of a pair.
struct PairOptions {
    std::string clean, corrupted, clean_ids, corrupted_ids, clean_input, corrupted_input;
    bool no_special = false;
    void add_to(CLI::App& app) {
        app.add_option("--clean", clean, "The clean prompt (text)");
        app.add_option("--corrupted", corrupted, "The corrupted prompt (text; the same number of tokens)");
        app.add_option("--clean-ids", clean_ids, "The clean prompt as token ids");
        app.add_option("--corrupted-ids", corrupted_ids, "The corrupted prompt as token ids");
        app.add_option("--clean-input", clean_input,
                       "safetensors with input_ids (N, T) of clean prompts (and optional answer_ids, distractor_ids (N))");
        app.add_option("--corrupted-input", corrupted_input, "safetensors with input_ids (N, T) of corrupted prompts");
        app.add_flag("--no-special", no_special, "Do not add the tokenizer's special tokens (BOS) to text prompts");
    }
    Sequences side(const Model& model, const std::string& text, const std::string& ids, const std::string& file,
                   const char* which, const char* where) const {
        const int given = !text.empty() + !ids.empty() + !file.empty();
        ATTNLAB_CHECK(given == 1, InvalidArgument, "[{0}] give exactly one of --{1}, --{1}-ids, --{1}-input (got {2})", where,
                      which, given);
        if (!file.empty()) return load_input_ids(file);
        if (!ids.empty()) return {parse_ids(ids)};
        std::vector<int32_t> tokens = require_tokenizer(model).encode(text, !no_special);
        ATTNLAB_CHECK(!tokens.empty(), InvalidArgument, "[{}] the {} prompt has no tokens", where, which);
        return {tokens};
    }
    RunPair resolve(const Model& model, const char* where) const {
        RunPair pair{side(model, clean, clean_ids, clean_input, "clean", where),
                     side(model, corrupted, corrupted_ids, corrupted_input, "corrupted", where)};
        pair.check(where);
        return pair;
    }
};

void write_json(const std::string& path, const std::string& text, const char* where) {
    if (path.empty()) return;
    write_text_file(path, text, where);
    std::printf("wrote %s\n", path.c_str());
}

std::string values_text(const MetricValues& v) {
    std::string out;
    for (size_t k = 0; k < v.names.size(); ++k) out += fmt::format("{}{} {:.6g}", k ? ", " : "", v.names[k], v.values[k]);
    return out;
}

std::vector<std::string> split_modes(const std::string& text) {
    std::vector<std::string> out;
    size_t start = 0;
    while (start <= text.size()) {
        const size_t comma = std::min(text.find(',', start), text.size());
        out.push_back(text.substr(start, comma - start));
        start = comma + 1;
    }
    return out;
}

// Runs a sweep under a progress bar (Ctrl-C stops it; the sweep returns its partial results).
template <typename Sweep>
auto with_progress(const char* title, Sweep&& sweep) {
    ProgressBar bar(title);
    return sweep(bar.control());
}

// The end of every sweep: how far an interrupted one got, the JSON file, the exit code (130
// when interrupted, like a shell's Ctrl-C).
int finish_sweep(bool interrupted, const std::string& progress, const std::string& json_text,
                 const std::string& json_path, const char* where) {
    if (interrupted) std::printf("interrupted after %s\n", progress.c_str());
    write_json(json_path, json_text, where);
    return interrupted ? 130 : 0;
}

// The metric of a sweep over an input (--input): its loss mask for next_token, its per-sequence
// answers for the others.
std::unique_ptr<Metric> input_metric(const MetricOptions& metric, const Model& model, const ProbeInputOptions& input,
                                     const Sequences& sequences, const char* where, const std::string& fallback) {
    return metric.build(model, where, fallback,
                        input.input.empty() ? std::vector<std::vector<float>>{} : load_loss_mask(input.input, sequences),
                        file_targets(input.input, sequences.size(), where));
}

Command add_patch_ablate(CLI::App& patch) {
    struct Options {
        ModelOptions model;
        ProbeInputOptions input;
        MetricOptions metric;
        std::string modes = "zero,uniform", mean_reference, json, report;
        bool heads_only = false, layers_only = false;
    };
    auto o = std::make_shared<Options>();
    CLI::App* app = patch.add_subcommand("ablate", "Ablate every head, and every layer's heads together: metric per "
                                                   "ablation (the layout of ablations.json)");
    o->model.add_to(*app);
    o->input.add_to(*app);
    o->metric.add_to(*app, "next_token");
    app->add_option("--modes", o->modes, "Ablation modes, comma separated: zero, uniform, mean, bos (default zero,uniform)");
    app->add_option("--mean-reference", o->mean_reference, "safetensors input_ids whose mean z mean mode uses "
                                                           "(default: the swept sequences)");
    app->add_flag("--heads-only", o->heads_only, "Only single heads");
    app->add_flag("--layers-only", o->layers_only, "Only whole layers");
    app->add_option("--json", o->json, "Write the results as JSON");
    app->add_option("--report", o->report, "Write an HTML report (and the JSON) into this directory");
    return {app, [o] {
        const char* where = "patch ablate";
        ATTNLAB_CHECK(!(o->heads_only && o->layers_only), InvalidArgument, "[{}] --heads-only and --layers-only exclude "
                                                                          "each other", where);
        AblationSweepOptions options;
        options.modes = split_modes(o->modes);
        for (const std::string& m : options.modes) ablation_result_key(m);
        options.single_heads = !o->layers_only;
        options.whole_layers = !o->heads_only;
        auto model = o->model.load();
        const Sequences sequences = o->input.resolve(*model);
        if (!o->mean_reference.empty()) options.mean_reference = load_input_ids(o->mean_reference);
        auto metric = input_metric(o->metric, *model, o->input, sequences, where, "next_token");
        const AblationSweepResult result =
            with_progress(where, [&](const ProbeControl& p) { return ablation_sweep(*model, sequences, *metric, options, p); });
        std::printf("baseline: %s\n", values_text(result.baseline).c_str());
        std::printf("| ablated |");
        for (const std::string& m : result.modes) std::printf(" %s |", ablation_result_key(m).c_str());
        std::printf("\n| --- |");
        for (size_t m = 0; m < result.modes.size(); ++m) std::printf(" --- |");
        std::printf("\n");
        auto print = [&](const AblationEntry& e) {
            std::printf("| %s |", e.head < 0 ? fmt::format("layer {}", e.layer).c_str()
                                             : fmt::format("{}:{}", e.layer, e.head).c_str());
            for (const MetricValues& v : e.by_mode) std::printf(" %s |", values_text(v).c_str());
            std::printf("\n");
        };
        for (const AblationEntry& e : result.heads) print(e);
        for (const AblationEntry& e : result.layers) print(e);
        if (!o->report.empty()) {
            const auto html = write_ablation_report(result, std::filesystem::path(model->directory()).filename().string(),
                                                    o->report);
            std::printf("wrote %s\n", html.c_str());
        }
        return finish_sweep(result.interrupted, fmt::format("{} of {} ablations", result.done, result.total),
                            result.to_json(), o->json, where);
    }};
}

Command add_patch_activation(CLI::App& patch) {
    struct Options {
        ModelOptions model;
        PairOptions pair;
        MetricOptions metric;
        std::string point = "z", direction = "clean-into-corrupted", layers, positions, json;
        bool all_positions = false;
    };
    auto o = std::make_shared<Options>();
    CLI::App* app = patch.add_subcommand("activation", "Activation patching over (layer, head, position) of a "
                                                       "clean/corrupted pair");
    o->model.add_to(*app);
    o->pair.add_to(*app);
    o->metric.add_to(*app, "logit_diff");
    app->add_option("--point", o->point, "z, q, k, v (per head) or resid_pre, resid_mid, resid_post, attn_out, mlp_out");
    app->add_option("--direction", o->direction, "clean-into-corrupted (default) or corrupted-into-clean")
        ->check(CLI::IsMember({"clean-into-corrupted", "corrupted-into-clean"}));
    app->add_option("--layers", o->layers, "Layers to sweep, e.g. 0,2-3 (default all)");
    app->add_option("--positions", o->positions, "Positions to sweep (default all)");
    app->add_flag("--all-positions", o->all_positions, "Patch every position at once (one unit per layer and head)");
    app->add_option("--json", o->json, "Write the results as JSON");
    return {app, [o] {
        const char* where = "patch activation";
        ActivationPatchingOptions options;
        options.point = o->point;
        options.direction = o->direction == "clean-into-corrupted" ? PatchDirection::CleanIntoCorrupted
                                                                   : PatchDirection::CorruptedIntoClean;
        options.per_position = !o->all_positions;
        options.layers = parse_index_list(o->layers, where, "layer");
        options.positions = parse_index_list(o->positions, where, "position");
        auto model = o->model.load();
        const RunPair pair = o->pair.resolve(*model, where);
        auto metric = o->metric.build(*model, where, "logit_diff", {},
                                      file_targets(o->pair.clean_input, pair.clean.size(), where));
        const ActivationPatchingResult result =
            with_progress(where, [&](const ProbeControl& p) { return activation_patching(*model, pair, *metric, options, p); });
        std::printf("clean: %s\ncorrupted: %s\n", values_text(result.clean).c_str(), values_text(result.corrupted).c_str());
        std::printf("| layer | head | position | %s | score |\n| ---: | ---: | ---: | ---: | ---: |\n",
                    result.metric_name.c_str());
        for (const PatchEntry& e : result.entries)
            std::printf("| %lld | %s | %s | %.6g | %.4f |\n", (long long)e.layer,
                        e.head < 0 ? "-" : std::to_string(e.head).c_str(),
                        e.position < 0 ? "all" : std::to_string(e.position).c_str(), e.metric, e.score);
        return finish_sweep(result.interrupted, fmt::format("{} of {} units", result.entries.size(), result.total),
                            result.to_json(), o->json, where);
    }};
}

Command add_patch_path(CLI::App& patch) {
    struct Options {
        ModelOptions model;
        PairOptions pair;
        MetricOptions metric;
        std::string receivers = "logits", senders, positions, json;
        bool freeze_mlps = false;
    };
    auto o = std::make_shared<Options>();
    CLI::App* app = patch.add_subcommand("path", "Path patching: each sender head's effect through chosen receivers "
                                                 "(papers-analysis §3)");
    o->model.add_to(*app);
    o->pair.add_to(*app);
    o->metric.add_to(*app, "logit_diff");
    app->add_option("--receivers", o->receivers, "logits (default), L:H:q|k|v|z, L:resid_pre|resid_mid|resid_post|"
                                                 "attn_out|mlp_out; comma separated");
    app->add_option("--senders", o->senders, "Sender heads, e.g. 0:*,1:2 (default: every head before the receivers)");
    app->add_option("--positions", o->positions, "Positions where the sender is patched (default: the last)");
    app->add_flag("--freeze-mlps", o->freeze_mlps, "Also freeze every MLP output to the clean run");
    app->add_option("--json", o->json, "Write the results as JSON");
    return {app, [o] {
        const char* where = "patch path";
        auto model = o->model.load();
        const ModelConfig& c = model->config();
        PathPatchingOptions options;
        options.receivers = parse_path_receivers(o->receivers, c, where);
        if (!o->senders.empty()) options.senders = parse_head_targets(o->senders, c.n_layer, c.n_head, where);
        options.positions = parse_index_list(o->positions, where, "position");
        options.freeze_mlps = o->freeze_mlps;
        const RunPair pair = o->pair.resolve(*model, where);
        auto metric = o->metric.build(*model, where, "logit_diff", {},
                                      file_targets(o->pair.clean_input, pair.clean.size(), where));
        const PathPatchingResult result =
            with_progress(where, [&](const ProbeControl& p) { return path_patching(*model, pair, *metric, options, p); });
        std::printf("clean: %s\ncorrupted: %s\nreceivers: %s\n", values_text(result.clean).c_str(),
                    values_text(result.corrupted).c_str(), result.receivers.c_str());
        std::printf("| sender | %s | score |\n| ---: | ---: | ---: |\n", result.metric_name.c_str());
        for (const PathPatchEntry& e : result.entries)
            std::printf("| %lld:%lld | %.6g | %.4f |\n", (long long)e.layer, (long long)e.head, e.metric, e.score);
        return finish_sweep(result.interrupted, fmt::format("{} of {} senders", result.entries.size(), result.total),
                            result.to_json(), o->json, where);
    }};
}

Command add_patch_trace(CLI::App& patch) {
    struct Options {
        ModelOptions model;
        ProbeInputOptions input;
        MetricOptions metric;
        std::string noise_positions, layers, positions, point = "resid_post", json;
        double noise_multiplier = 3.0, noise_std = 0.0;
        uint64_t seed = 0;
    };
    auto o = std::make_shared<Options>();
    CLI::App* app = patch.add_subcommand("trace", "Causal tracing: noise the input embeddings, restore one clean state "
                                                  "(layer, position) at a time");
    o->model.add_to(*app);
    o->input.add_to(*app);
    o->metric.add_to(*app, "probability");
    app->add_option("--noise-positions", o->noise_positions, "Positions whose embeddings get noise, e.g. 1-3 (default all)");
    app->add_option("--noise-multiplier", o->noise_multiplier, "Noise std = this x the std of the input embeddings "
                                                              "(default 3, as ROME)")->check(CLI::NonNegativeNumber);
    app->add_option("--noise-std", o->noise_std, "The noise std itself (overrides --noise-multiplier)")
        ->check(CLI::NonNegativeNumber);
    app->add_option("--seed", o->seed, "Noise seed (default 0)");
    app->add_option("--point", o->point, "The restored state: resid_post (default), resid_pre, resid_mid, attn_out, mlp_out");
    app->add_option("--layers", o->layers, "Layers to restore (default all)");
    app->add_option("--positions", o->positions, "Positions to restore (default all)");
    app->add_option("--json", o->json, "Write the results as JSON");
    return {app, [o] {
        const char* where = "patch trace";
        CausalTracingOptions options;
        options.noise_positions = parse_index_list(o->noise_positions, where, "position");
        options.noise_multiplier = o->noise_multiplier;
        options.noise_std = o->noise_std;
        options.seed = o->seed;
        options.point = o->point;
        options.layers = parse_index_list(o->layers, where, "layer");
        options.positions = parse_index_list(o->positions, where, "position");
        auto model = o->model.load();
        const Sequences prompts = o->input.resolve(*model);
        auto metric = o->metric.build(*model, where, "probability", {},
                                      file_targets(o->input.input, prompts.size(), where));
        const CausalTracingResult result =
            with_progress(where, [&](const ProbeControl& p) { return causal_tracing(*model, prompts, *metric, options, p); });
        std::printf("clean: %s\ncorrupted: %s (noise std %.6g)\n", values_text(result.clean).c_str(),
                    values_text(result.corrupted).c_str(), result.noise_std);
        std::printf("| layer | position | %s | recovery |\n| ---: | ---: | ---: | ---: |\n", result.metric_name.c_str());
        for (const TraceEntry& e : result.entries)
            std::printf("| %lld | %lld | %.6g | %.4f |\n", (long long)e.layer, (long long)e.position, e.metric, e.score);
        return finish_sweep(result.interrupted, fmt::format("{} of {} states", result.entries.size(), result.total),
                            result.to_json(), o->json, where);
    }};
}

Command add_patch_search(CLI::App& patch) {
    struct Options {
        ModelOptions model;
        ProbeInputOptions input;
        MetricOptions metric;
        std::string mode = "uniform", value, candidates, json;
        std::optional<double> below, above;
        int64_t max_heads = 0;
        bool screen = false, maximise = false;
    };
    auto o = std::make_shared<Options>();
    CLI::App* app = patch.add_subcommand("search", "Greedy head-set search: the heads whose ablation moves a metric "
                                                   "the most, until a target (or a per-head screen)");
    o->model.add_to(*app);
    o->input.add_to(*app);
    o->metric.add_to(*app, "next_token");
    app->add_option("--mode", o->mode, "Ablation mode: uniform (default), zero, mean, bos")
        ->check(CLI::IsMember({"zero", "uniform", "mean", "bos"}));
    app->add_option("--value", o->value, "The metric value to optimise (default: the metric's first, e.g. accuracy)");
    app->add_option("--below", o->below, "Stop once the value is below this (e.g. 0.5); the search minimises");
    app->add_option("--above", o->above, "Stop once the value is above this; the search maximises");
    app->add_flag("--maximise", o->maximise, "Maximise the value (default: minimise, unless --above)");
    app->add_option("--max-heads", o->max_heads, "Stop at this many heads (default: no limit)")->check(CLI::NonNegativeNumber);
    app->add_option("--candidates", o->candidates, "Candidate heads, e.g. 1:*,2:0-3 (default all)");
    app->add_flag("--screen", o->screen, "Evaluate every candidate alone instead (ACT-style per-head screen)");
    app->add_option("--json", o->json, "Write the results as JSON");
    return {app, [o] {
        const char* where = "patch search";
        ATTNLAB_CHECK(!(o->below && o->above), InvalidArgument, "[{}] give --below or --above, not both", where);
        auto model = o->model.load();
        const ModelConfig& c = model->config();
        const Sequences sequences = o->input.resolve(*model);
        auto metric = input_metric(o->metric, *model, o->input, sequences, where, "next_token");
        const std::vector<std::string> names = metric->names();
        const std::string value = o->value.empty() ? names.front() : o->value;
        HeadSearchOptions options;
        options.minimise = !(o->maximise || o->above);
        options.stop_below = o->below;
        options.stop_above = o->above;
        options.max_heads = o->max_heads;
        if (!o->candidates.empty()) options.candidates = parse_head_targets(o->candidates, c.n_layer, c.n_head, where);
        // Accuracy ties (common on small batches) go to the head that also moves the loss most.
        std::vector<std::string> tie_breakers;
        if (value == "accuracy") tie_breakers.push_back(options.minimise ? "-loss" : "loss");
        const HeadObjective objective = ablation_objective(*model, sequences, *metric, o->mode, value, tie_breakers);
        std::string text;
        bool interrupted = false;
        {
            ProgressBar bar(o->screen ? "patch search (screen)" : "patch search");
            if (o->screen) {
                const HeadScreenResult r = screen_heads(objective, c, options, bar.control());
                std::printf("nothing ablated: %s %.6g\n| head | %s |\n| ---: | ---: |\n", value.c_str(), r.initial[0],
                            value.c_str());
                for (const HeadScreenEntry& e : r.entries)
                    std::printf("| %lld:%lld | %.6g |\n", (long long)e.head.layer, (long long)e.head.head, e.objective[0]);
                text = r.to_json();
                interrupted = r.interrupted;
            } else {
                const HeadSearchResult r = greedy_head_search(objective, c, options, bar.control());
                std::printf("nothing ablated: %s %.6g\n| round | head added | %s |\n| ---: | ---: | ---: |\n",
                            value.c_str(), r.initial[0], value.c_str());
                for (size_t k = 0; k < r.rounds.size(); ++k)
                    std::printf("| %zu | %lld:%lld | %.6g |\n", k + 1, (long long)r.rounds[k].head.layer,
                                (long long)r.rounds[k].head.head, r.rounds[k].objective[0]);
                std::string set;
                for (const HeadRef& h : r.heads()) set += fmt::format("{}{}:{}", set.empty() ? "" : ",", h.layer, h.head);
                std::printf("heads (%s %s): %s%s\n", o->mode.c_str(), value.c_str(), set.empty() ? "none" : set.c_str(),
                            r.reached_target ? " (target reached)"
                                             : (o->below || o->above ? " (target not reached)" : ""));
                text = r.to_json();
                interrupted = r.interrupted;
            }
        }
        return finish_sweep(interrupted, "a partial search", text, o->json, where);
    }};
}

}  // namespace

Command add_patch(CLI::App& root) {
    CLI::App* app = root.add_subcommand("patch", "Causal experiments: ablation sweeps, activation and path patching, "
                                                 "causal tracing, head search (docs/patching.md)");
    app->require_subcommand(1);
    const std::vector<Command> commands = {add_patch_ablate(*app), add_patch_activation(*app), add_patch_path(*app),
                                           add_patch_trace(*app), add_patch_search(*app)};
    return {app, [commands] {
        for (const Command& c : commands)
            if (c.app->parsed()) return c.run();
        return 2;
    }};
}

}  // namespace attnlab::cli
