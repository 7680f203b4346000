// The `position-bias` probe (papers-analysis §1, primitive P13): where attention mass goes as a
// function of absolute key position and of relative distance, the first token's share per
// depth, and attention rollout across layers. Everything but rollout comes from in-kernel
// statistics (column sums, distance bins, mass at key 0) and works at any T; rollout is a T×T
// product, computed from the pattern only for sequences up to a length limit.
// Exact definitions: docs/probes.md#position-bias.
#pragma once

#include <attnlab/probes.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace attnlab {

struct PositionBiasOptions {
    int64_t bins = 64;                   // equal-width bins of absolute key position
    int64_t rollout_max_tokens = 2048;   // rollout only for sequences this long or shorter (0: never)
    bool rollout_residual = false;       // use 0.5·A + 0.5·I per layer instead of the plain product
};

// ---- rollout (pure, unit-testable) ----

// One layer of rollout: P ← A'·P with A' = A, or 0.5·A + 0.5·I when `residual`. A and P are
// (T, T) row-major; P starts as the identity. Rows of A' sum to 1 when A's do, so no
// renormalisation is applied.
void rollout_step(std::vector<double>& P, const std::vector<double>& A, int64_t T, bool residual);
// P^(t) = A'^(t) ⋯ A'^(1) for t = 1 .. L: each `layers[l]` is a (T, T) row-major head-averaged
// attention matrix. Returns the L products, (L, T, T).
std::vector<std::vector<double>> attention_rollout(const std::vector<std::vector<double>>& layers, int64_t T,
                                                   bool residual = false);

// ---- the probe ----

struct LayerPositionBias {
    int64_t layer = 0;
    // (S_max) α_k = mean over heads of mean_{q >= k} A[q, k] (as the sinks probe), averaged over
    // the sequences that reach position k.
    std::vector<double> received_mass;
    std::vector<double> received_mass_binned;  // (bins) mean of α_k over each bin's positions
    // (n_distance_bins) mean over rows and heads of the mass in each distance bin
    // (AttentionStats::distance_bin: 0: d < 0, 1: d = 0, 2: d = 1, 3: d in [2, 3], ...).
    std::vector<double> distance_mass;
    double first_token_mass = 0;  // mean over rows i >= 1 and heads of A[i, 0]
};

struct RolloutResult {
    bool residual = false;
    int64_t sequences = 0;                     // sequences short enough to be rolled out
    std::vector<double> first_token_mass;      // (L) per depth t: mean over i of P^(t)[i, 0]
    std::vector<std::vector<double>> last_row; // (L, T_max) per depth: P^(t)[T-1, :], mean over sequences
};

struct PositionBias {
    std::vector<LayerPositionBias> layers;
    std::vector<int64_t> bin_edges;      // (bins + 1) bin b covers positions [edges[b], edges[b+1])
    int64_t rollout_max_tokens = 0;
    std::optional<RolloutResult> rollout;  // nullopt: no sequence was short enough
    int64_t sequences = 0;
    bool interrupted = false;
    // {"probe": "position-bias", "sequences", "interrupted", "bin_edges",
    //  "distance_bins": [{"bin", "min", "max"}] (max null: unbounded),
    //  "layers": [{"layer", "received_mass", "received_mass_binned", "distance_mass",
    //              "first_token_mass"}],
    //  "rollout_max_tokens", "rollout": null | {"residual", "sequences", "first_token_mass",
    //  "last_row"}}
    std::string to_json() const;
};

PositionBias probe_position_bias(const Model& model, const std::vector<std::vector<int32_t>>& sequences,
                                 const PositionBiasOptions& options = {}, const ProbeControl& control = {});

}  // namespace attnlab
