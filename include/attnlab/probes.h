// Probes of attention: each runs a model over token sequences, reads what it needs through the
// hook points and the in-kernel attention statistics (nothing T×S unless a probe says so), and
// returns plain results with a JSON form. One probe per file in src/interp/probes/; the CLI is
// `attnlab probe NAME` (docs/probes.md gives each probe's exact definitions).
#pragma once

#include <attnlab/model.h>

#include <array>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace attnlab {

// How a long probe reports progress and is stopped early.
struct ProbeControl {
    std::function<void(int64_t done, int64_t total)> progress;  // after each unit of work
    const std::atomic<bool>* cancel = nullptr;  // once true, the probe stops after the current unit
                                                // and returns what it has (interrupted = true)
    bool cancelled() const { return cancel && cancel->load(); }
    void report(int64_t done, int64_t total) const {
        if (progress) progress(done, total);
    }
};

// Token sequences of an `input_ids` tensor (N, T) or (T), i64 or i32, in a safetensors file.
std::vector<std::vector<int32_t>> load_input_ids(const std::string& safetensors_file);

// ---- heads: per layer × head scores (papers-analysis §5/§6, papers-efficiency E1) ----
struct HeadProbeOptions {
    // N > 0: the sequences repeat a block of N tokens after BOS, and `induction` is scored.
    int64_t repeat = 0;
    // Head diversity compares whole attention maps across heads: computed from the pattern only
    // for sequences up to this length (0: never).
    int64_t diversity_max_tokens = 2048;
};

struct LayerHeadScores {
    int64_t layer = 0;
    // (H) each, averaged over every scored row of every sequence (float64):
    std::vector<double> bos_mass;    // attention to position 0 from positions >= 1
    std::vector<double> prev_token;  // attention from i to i - 1 (i >= 1)
    std::vector<double> entropy;     // row entropy in nats (positions >= 1)
    std::vector<double> induction;   // attention from i >= N+1 to i - N + 1 (empty unless repeat)
    std::vector<std::array<double, 4>> local_focus;  // attention at distance 0..3 (rows i >= d)
    std::vector<double> frobenius;   // ‖A_h‖_F of each sequence's map, mean over sequences
    double diversity = NAN;          // mean over j <= i of the std across heads of A_h[i, j]
};

struct HeadScores {
    std::vector<LayerHeadScores> layers;
    int64_t sequences = 0;  // sequences averaged (fewer than given when interrupted)
    int64_t repeat = 0;
    bool interrupted = false;
    // {"head_scores": [{"layer", "bos_mass", "prev_token", "entropy", "induction"?, "local_focus",
    //   "frobenius", "diversity"?}, ...], "sequences", "repeat", "interrupted"} — the layout of
    // the fixtures' mechanisms.json plus the extra scores.
    std::string to_json() const;
};

HeadScores probe_heads(const Model& model, const std::vector<std::vector<int32_t>>& sequences,
                       const HeadProbeOptions& options = {}, const ProbeControl& control = {});

}  // namespace attnlab
