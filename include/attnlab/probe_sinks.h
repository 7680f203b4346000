// The `sinks` probe: primary and secondary attention sinks (papers-analysis §2), value-norm
// drain and residual-norm peak (§6). Everything comes from the in-kernel attention statistics
// (column sums, mass at the BOS key) and per-layer norms and cosines taken inside the hook
// callbacks, so memory stays O(T·(C + H)) per layer plus O(L·T) cosines: nothing T×T, and no
// layer's (T, C) residual is kept. Exact definitions: docs/probes.md#sinks.
#pragma once

#include <attnlab/probes.h>

#include <cstdint>
#include <string>
#include <vector>

namespace attnlab {

struct SinkProbeOptions {
    int64_t bos_index = 0;        // b: the primary sink's position
    int64_t top_sinks = 5;        // positions with the largest received mass listed per layer
    double cos_threshold = 0.9;   // flag (i, l) when |cos(h^l_i, h^l_b)| > this
    // Lifetime thresholds of the labels (-1: default, see sink_label_thresholds).
    int64_t bos_lifetime = -1;        // lifetime >= this: bos_sink
    int64_t secondary_lifetime = -1;  // this < lifetime < bos_lifetime: secondary
    int64_t max_sink_tokens = 32;     // per sequence, at most this many labelled tokens listed
};

// ---- pure pieces of the secondary-sink rule (unit-testable) ----

struct SinkLabelThresholds {
    int64_t bos_lifetime = 0, secondary_lifetime = 0;
};
// The paper's thresholds (bos_sink: lifetime >= L - 15; secondary: 4 < lifetime < L - 15) for
// L >= 32 layers. Below 32 layers "L - 15" is meaningless, so the defaults are fractions of L:
// bos_sink at lifetime >= ceil(0.6·L), secondary above floor(0.15·L). Options >= 0 override.
// Throws InvalidArgument unless 0 <= secondary < bos.
SinkLabelThresholds sink_label_thresholds(int64_t n_layer, int64_t bos_option = -1, int64_t secondary_option = -1);
// "bos_sink", "secondary" or "noise".
const char* sink_label(int64_t lifetime, const SinkLabelThresholds& t);

// The BOS norm window: with n_l the BOS residual norm after layer l (L values) and
// Δ_l = n_{l+1} - n_l, start = argmax Δ + 1 and end = start + argmin(Δ_{start:}) + 1, first
// index on ties. Layers [start, end) are scanned. Edge cases: L < 2 (no Δ): empty window [0, 0);
// start = L - 1 (the jump is into the last layer, Δ_{start:} is empty): end = L.
struct SinkWindow {
    int64_t start = 0, end = 0;
};
SinkWindow sink_window(const std::vector<double>& bos_norms);  // (L)

struct SinkToken {
    int64_t position = 0;
    int32_t token = -1;
    int64_t lifetime = 0;     // flagged layers
    int64_t first_layer = -1; // first flagged layer (the creation layer), -1 if none
    std::string label;
};

struct SinkDetection {
    SinkWindow window;
    std::vector<int64_t> lifetime;          // (T) flagged layers per position (0 for i <= b)
    std::vector<int64_t> first_layer;       // (T) first flagged layer, -1 if none
    std::vector<int64_t> flagged_per_layer; // (L) tokens flagged at each layer
};
// Flags (i, l) for l in the window and i > b when |cos_to_bos[l][i]| > cos_threshold.
// bos_norms (L), cos_to_bos (L, T).
SinkDetection detect_sinks(const std::vector<double>& bos_norms, const std::vector<std::vector<double>>& cos_to_bos,
                           int64_t bos_index, double cos_threshold);

// ---- the probe ----

struct SinkPosition {
    int64_t position = 0;
    double mass = 0;     // α_k
    int32_t token = -1;  // the token there if every sequence has the same one, else -1
};

struct LayerSinkScores {
    int64_t layer = 0;
    // (S_max) α_k = mean over heads of mean_{q >= k} A[q, k], averaged over the sequences that
    // reach position k.
    std::vector<double> received_mass;
    std::vector<SinkPosition> top_sinks;  // largest α_k first
    std::vector<double> primary_mass;     // (H) mean over rows i > b of A[i, b]
    double bos_norm = 0;                  // ‖h^l_b‖ at blocks.l.hook_resid_post, mean over sequences
    double residual_peak = 0;             // ‖h^l_b‖ / mean_{i>b} ‖h^l_i‖, mean over sequences
    std::vector<double> value_drain;      // (Hkv) ‖v_b‖ / mean_{i>b} ‖v_i‖ (attn.hook_v), mean over sequences
    double flagged_tokens = 0;            // tokens flagged at this layer, mean over sequences
};

struct SequenceSinks {
    int64_t index = 0, length = 0;
    SinkWindow window;
    int64_t bos_sinks = 0, secondary = 0, noise = 0;  // label counts over positions i > b
    std::vector<SinkToken> tokens;  // non-noise tokens, longest lifetime first (capped)
};

struct SinkScores {
    std::vector<LayerSinkScores> layers;
    std::vector<SequenceSinks> per_sequence;
    SinkLabelThresholds thresholds;
    SinkProbeOptions options;
    int64_t sequences = 0;  // sequences averaged (fewer than given when interrupted)
    bool interrupted = false;
    // {"probe": "sinks", "bos_index", "cos_threshold", "thresholds": {"bos_lifetime",
    //  "secondary_lifetime"}, "sequences", "interrupted",
    //  "layers": [{"layer", "received_mass", "top_sinks": [{"position", "mass", "token"}],
    //              "primary_mass", "bos_norm", "residual_peak", "value_drain", "flagged_tokens"}],
    //  "per_sequence": [{"index", "length", "window": [start, end], "counts": {"bos_sink",
    //   "secondary", "noise"}, "sink_tokens": [{"position", "token", "lifetime", "first_layer",
    //   "label"}]}]}
    std::string to_json() const;
};

SinkScores probe_sinks(const Model& model, const std::vector<std::vector<int32_t>>& sequences,
                       const SinkProbeOptions& options = {}, const ProbeControl& control = {});

}  // namespace attnlab
