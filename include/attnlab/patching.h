// Patching: causal experiments that run a model several times and move activations between the
// runs (papers-analysis §3 path patching, §5/§6 head ablation, primitives P3 and P6;
// papers-multimodal §9 causal tracing). Everything here is built from hook points
// (include/attnlab/hooks.h) and the `ablate` intervention, one concern per file in
// src/interp/patching/; docs/patching.md gives every definition and formula.
//
//   - A Metric turns a batch's logits into numbers: logit difference answer − distractor at a
//     position (averaged over the batch), the answer's probability, or next-token accuracy and
//     mean loss over loss-masked positions.
//   - A clean/corrupted RunPair and cached runs (per sequence, the activations of chosen points).
//   - Activation patching over (layer, head, position) of a per-head point (hook_z, q, k, v) or
//     over (layer, position) of a residual point, with the normalised score
//     (M_patched − M_base)/(M_source − M_base).
//   - Path patching exactly as §3 (three runs per sender head).
//   - Causal tracing (ROME / FCCT): Gaussian noise on the input embeddings, one clean state
//     restored at a time, recovery score.
//   - Ablation sweeps: every single head and every whole layer under the `ablate` modes.
// Every sweep reports progress after each unit and stops early with partial results (ProbeControl).
#pragma once

#include <attnlab/head_mask.h>
#include <attnlab/hooks.h>
#include <attnlab/model.h>
#include <attnlab/probes.h>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace attnlab {

using Sequences = std::vector<std::vector<int32_t>>;

// ---- Metrics (src/interp/patching/metrics.cpp) ----

// The numbers a metric measured on a batch: values[k] is called names[k]; values[0] is the
// primary one (what patch scores and head searches use).
struct MetricValues {
    std::vector<std::string> names;
    std::vector<double> values;
    double primary() const { return values.at(0); }
    double at(std::string_view name) const;  // InvalidArgument if the metric has no such value
    std::string to_json() const;             // {"name": value, ...}
};

// What one sequence adds to a batch metric: a sum per value and the weight it counts for. The
// batch value is Σ sums / Σ weights, so averages are over sequences (weight 1 each) or over
// scored positions (weight = their count), whichever the metric defines.
struct MetricSums {
    std::vector<double> sums;
    double weight = 0;
};

class Metric {
public:
    virtual ~Metric() = default;
    virtual std::vector<std::string> names() const = 0;
    // Whether the metric reads every position's logits (else the last position's only).
    virtual bool needs_all_logits() const = 0;
    // Throws InvalidArgument ("[where] ...") if the metric does not fit these sequences (count,
    // lengths, positions, token ids outside the vocabulary V).
    virtual void check(const Sequences& sequences, int64_t V, const char* where) const = 0;
    // Sequence i's contribution from its logits (R, V): R = T with needs_all_logits(), else 1.
    virtual MetricSums score(size_t i, std::span<const int32_t> ids, const Tensor& logits) const = 0;
};

// What a logit metric reads in one sequence: the logits at `position` (−1: the last position).
struct LogitTarget {
    int32_t answer = 0;
    int32_t distractor = -1;  // −1: none (the metric is the answer's logit itself)
    int64_t position = -1;
};

// LD = logit[answer] − logit[distractor] at the target position, averaged over the batch (§3's
// logits_to_ave_logit_diff). Value name "logit_diff" ("logit" without a distractor).
// `targets` holds one target per sequence, or a single one shared by all.
std::unique_ptr<Metric> logit_diff_metric(std::vector<LogitTarget> targets);
// softmax(logits)[answer] at the target position, averaged over the batch (ROME / FCCT's P(y)).
// Value name "probability"; distractors are ignored.
std::unique_ptr<Metric> answer_probability_metric(std::vector<LogitTarget> targets);
// Next-token prediction over loss-masked positions: loss_mask[i][t] != 0 scores the prediction of
// token t of sequence i by the logits at position t − 1 (so t = 0 can never be scored), as a
// causal LM's labels shifted by one. Values "accuracy" (argmax == token; the first maximum wins
// ties) and "loss" (−log softmax, float64), both averaged over every scored position of the
// batch. An empty loss_mask scores every t >= 1.
std::unique_ptr<Metric> next_token_metric(std::vector<std::vector<float>> loss_mask = {});

// `loss_mask` (N, T) of a safetensors file (any float or integer dtype), or empty if the file
// has none; the shape must match the sequences. FormatError on a bad tensor.
std::vector<std::vector<float>> load_loss_mask(const std::string& safetensors_file, const Sequences& sequences);

// The normalised patch score (patched − base)/(source − base): 0 when patching changed nothing,
// 1 when it moved the metric all the way to the source run's. NaN when source == base.
double patch_score(double patched, double base, double source);

// ---- Runs (src/interp/patching/runs.cpp) ----

// Runs every sequence (each from an empty KV cache) with the hooks `hooks_for(i)` returns (null or
// an empty function: none) and measures `metric` over the batch.
MetricValues measure(const Model& model, const Sequences& sequences, const Metric& metric,
                     const std::function<Hooks*(size_t)>& hooks_for = {});

// A run that kept the activations of some hook points, per sequence.
struct CachedRun {
    std::vector<std::map<std::string, Tensor>> activations;  // [sequence][full point name] -> tensor
    MetricValues metric;
};
CachedRun cached_run(const Model& model, const Sequences& sequences, const Metric& metric,
                     const std::vector<std::string>& points, const std::function<Hooks*(size_t)>& hooks_for = {});

// Aligned clean and corrupted inputs: the same number of sequences, pair i of equal length (a
// position means the same slot in both).
struct RunPair {
    Sequences clean, corrupted;
    void check(const char* where) const;  // InvalidArgument naming the first misaligned pair
};

// The points patching moves: per-head points "z" (blocks.L.attn.hook_z (T, H, D)), "q" (T, H, D),
// "k", "v" (T, Hkv, D: their heads are the kv heads); per-layer residual points "resid_pre",
// "resid_mid", "resid_post", "attn_out", "mlp_out" (T, C).
bool is_head_point(std::string_view kind);
// The full hook name of `kind` in layer `layer`; InvalidArgument for an unknown kind.
std::string patch_point_name(int64_t layer, std::string_view kind, const char* where = "patching");
// How many heads a per-head point has in this model (H, or Hkv for k and v); 0 for residual points.
int64_t point_heads(const ModelConfig& config, std::string_view kind);

// Overwrites parts of hook points with given values: each rule replaces, at one point, the rows
// `positions` (empty: all) of the heads `heads` (empty: the whole row), taking them from
// `source`, a tensor of the point's shape (e.g. a cached run's). Rules apply in the order added.
class ActivationPatch : public Hooks {
public:
    void add(const std::string& point, Tensor source, std::vector<int64_t> positions = {},
             std::vector<int64_t> heads = {});
    bool empty() const { return rules_.empty(); }
    bool wants(const std::string& name) const override { return rules_.count(name) != 0; }
    void on(const std::string& name, Tensor& value) override;

private:
    struct Rule {
        Tensor source;
        std::vector<int64_t> positions, heads;
    };
    std::map<std::string, std::vector<Rule>> rules_;
};

// ---- Activation patching (src/interp/patching/activation_patching.cpp) ----

enum class PatchDirection {
    CleanIntoCorrupted,  // run the corrupted input with clean activations ("denoising"): score 1 = restored
    CorruptedIntoClean,  // run the clean input with corrupted activations ("noising"): score 1 = fully broken
};
const char* direction_name(PatchDirection d);  // "clean->corrupted", "corrupted->clean"

struct ActivationPatchingOptions {
    std::string point = "z";
    PatchDirection direction = PatchDirection::CleanIntoCorrupted;
    bool per_position = true;      // one unit per position; false: all positions at once
    std::vector<int64_t> layers;     // empty: every layer
    std::vector<int64_t> positions;  // swept positions when per_position (empty: all; the
                                     // sequences must then all have the same length)
};

struct PatchEntry {
    int64_t layer = 0;
    int64_t head = -1;      // −1: a residual point (the whole row)
    int64_t position = -1;  // −1: every position at once
    double metric = 0;      // the primary metric of the patched run
    double score = 0;       // patch_score(metric, base, source)
};

struct ActivationPatchingResult {
    std::string point, direction, metric_name;
    MetricValues clean, corrupted;
    std::vector<PatchEntry> entries;  // in sweep order: layer, head, position
    int64_t total = 0;                // units planned
    bool interrupted = false;
    std::string to_json() const;
};

// Sweeps every (layer, head, position) unit: the base run (corrupted input for
// CleanIntoCorrupted) with that unit's slice of the point replaced by the source run's.
ActivationPatchingResult activation_patching(const Model& model, const RunPair& pair, const Metric& metric,
                                             const ActivationPatchingOptions& options = {},
                                             const ProbeControl& control = {});

// ---- Path patching (src/interp/patching/path_patching.cpp) ----

// What path patching measures the sender's effect through: a head's "q", "k", "v" or "z" in
// `layer` (head >= 0), or a residual point of `layer` (head = −1: "resid_pre", "resid_mid",
// "resid_post", ...; "resid_post" of the last layer is the path to the logits).
struct PathReceiver {
    int64_t layer = 0;
    int64_t head = -1;
    std::string point = "resid_post";
};
// "L:H:q" (H an index, A-B or *), "L:resid_pre", or "logits"; comma separated.
std::vector<PathReceiver> parse_path_receivers(std::string_view text, const ModelConfig& config, const char* where);

struct PathPatchingOptions {
    std::vector<PathReceiver> receivers;  // empty: the logits (resid_post of the last layer)
    // The positions where the sender's z is taken from the corrupted run (§3's END); empty: the
    // last position of each sequence.
    std::vector<int64_t> positions;
    bool freeze_mlps = false;  // also freeze every MLP output to the clean run (§3's option)
    // Senders to sweep; empty: every head of every layer before the deepest receiver (up to and
    // including its layer for resid_mid / resid_post / attn_out / mlp_out receivers).
    std::vector<HeadRef> senders;
};

struct PathPatchEntry {
    int64_t layer = 0, head = 0;
    double metric = 0;  // LD_p
    double score = 0;   // (LD_p − LD_c)/(LD_x − LD_c)
};

struct PathPatchingResult {
    std::string metric_name, receivers;
    MetricValues clean, corrupted;
    std::vector<PathPatchEntry> entries;
    int64_t total = 0;
    bool interrupted = false;
    std::string to_json() const;
};

// For each sender head (l, h), §3's three runs (the clean and corrupted caches are shared):
//   1. clean run C and corrupted run X, cached;
//   2. the clean input with the sender's z at the END positions taken from X and every other
//      head's z (every position) frozen to C — receivers excepted when they are z — recording
//      the receivers' activations;
//   3. the clean input with only the receivers patched to the recorded values: LD_p.
// Score (LD_p − LD_c)/(LD_x − LD_c). Freezing other heads at every position (not only END) equals
// §3 when END is the last position (earlier positions are unchanged either way) and keeps the
// effect on the direct path otherwise.
PathPatchingResult path_patching(const Model& model, const RunPair& pair, const Metric& metric,
                                 const PathPatchingOptions& options = {}, const ProbeControl& control = {});

// ---- Causal tracing (src/interp/patching/causal_tracing.cpp) ----

struct CausalTracingOptions {
    // Positions whose input embeddings (hook_embed) get noise, e.g. the subject's tokens; empty: all.
    std::vector<int64_t> noise_positions;
    // Noise std = noise_multiplier × the std of every element of the clean runs' input embeddings
    // (ROME's 3 × the embedding std), unless noise_std > 0 gives it directly.
    double noise_multiplier = 3.0;
    double noise_std = 0.0;
    uint64_t seed = 0;  // sequence i's noise comes from seed + i; the same noise in every run
    std::string point = "resid_post";  // the restored state: a residual point (see is_head_point)
    std::vector<int64_t> layers, positions;  // the restored (layer, position) grid; empty: all
};

struct TraceEntry {
    int64_t layer = 0, position = 0;
    double metric = 0;  // the primary metric with this one state restored
    double score = 0;   // recovery (M_restored − M_corrupted)/(M_clean − M_corrupted)
};

struct CausalTracingResult {
    std::string point, metric_name;
    double noise_std = 0;
    MetricValues clean, corrupted;
    std::vector<TraceEntry> entries;  // layer-major
    int64_t total = 0;
    bool interrupted = false;
    std::string to_json() const;
};

// Clean runs (cached), the corrupted runs (noise on the embeddings of noise_positions), then one
// corrupted run per (layer, position) with that state restored to the clean run's. Sequences of
// different lengths are allowed only with explicit `positions` valid in all of them.
CausalTracingResult causal_tracing(const Model& model, const Sequences& prompts, const Metric& metric,
                                   const CausalTracingOptions& options = {}, const ProbeControl& control = {});

// ---- Ablation sweeps (src/interp/patching/ablation_sweep.cpp) ----

// The `ablate` modes a sweep can run and their names in the JSON result (the fixtures' names for
// zero and uniform): zero -> "zero_output", uniform -> "uniform_attention", mean -> "mean_output",
// bos -> "bos_attention".
std::string ablation_result_key(std::string_view mode);

// Measures a metric with a set of heads ablated together under one mode: through the `ablate`
// intervention (zero, uniform, bos), or for mean mode by patching each head's z to its mean over
// every position of `mean_reference` (empty: the sequences), computed once here — the same values
// as `ablate` mean with that reference, without a reference pass per head set. The model and
// metric must outlive it.
class HeadAblator {
public:
    HeadAblator(const Model& model, Sequences sequences, const Metric& metric, std::string mode,
                const Sequences& mean_reference = {});
    MetricValues operator()(const std::vector<HeadRef>& heads) const;  // empty: nothing ablated
    const std::string& mode() const { return mode_; }

private:
    const Model& model_;
    Sequences sequences_;
    const Metric& metric_;
    std::string mode_;
    std::vector<std::vector<float>> means_;  // mean mode: (L) of (H·D)
};

struct AblationSweepOptions {
    std::vector<std::string> modes = {"zero", "uniform"};
    bool single_heads = true, whole_layers = true;
    // Mean mode: the sequences whose mean z (every position) replaces a head's z; empty: the
    // swept sequences themselves. Computed once for every head.
    Sequences mean_reference;
};

struct AblationEntry {
    int64_t layer = 0;
    int64_t head = -1;                  // −1: every head of the layer together
    std::vector<MetricValues> by_mode;  // (modes) in the options' order
};

struct AblationSweepResult {
    std::vector<std::string> modes;
    MetricValues baseline;
    std::vector<AblationEntry> heads, layers;
    int64_t done = 0, total = 0;  // ablations run / planned
    bool interrupted = false;
    // The layout of the fixtures' ablations.json: {"baseline": {metric values}, "heads": [{"layer",
    // "head", "<mode key>": {metric values}, ...}], "all_heads_of_layer": [{"layer", ...}]}, plus
    // "interrupted".
    std::string to_json() const;
};

// The baseline, then each head alone and each layer's heads together under every mode (through
// the `ablate` intervention; mean mode's z means come from one reference pass).
AblationSweepResult ablation_sweep(const Model& model, const Sequences& sequences, const Metric& metric,
                                   const AblationSweepOptions& options = {}, const ProbeControl& control = {});

// ---- Reports (src/interp/patching/patching_report.cpp) ----

// A self-contained HTML page (report.h) of an ablation sweep: per mode and metric value a
// layer × head heatmap, the per-layer table (every head of a layer ablated together) and the
// JSON. Writes DIR/ablations.html and DIR/ablations.json; returns the page's path.
std::filesystem::path write_ablation_report(const AblationSweepResult& result, const std::string& model_name,
                                            const std::filesystem::path& dir);

}  // namespace attnlab
