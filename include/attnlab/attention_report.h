// `attnlab report`: one self-contained HTML page of what a model's attention does on a prompt —
// layer × head heatmaps of every head score, each head's attention pattern on the prompt, sink
// and position-bias plots — with the JSON behind every figure (report.json) and the pattern
// PNGs (patterns/) next to it. Built from the probes (probes.h and probe_*.h) and the generic
// page builder (report.h).
#pragma once

#include <attnlab/hooks.h>
#include <attnlab/model.h>
#include <attnlab/probes.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace attnlab {

struct AttentionReportOptions {
    std::string prompt_label;         // shown as the prompt (e.g. the text); ids are shown when empty
    int64_t repeat_block = 50;        // induction scores on BOS + this many random tokens, twice (0: skip)
    int64_t repeat_sequences = 4;     // ... over this many such sequences
    uint64_t seed = 1;
    int64_t max_pattern_tokens = 256; // per-head pattern images for at most this many prompt tokens (the last ones)
    // Labelled positions of the prompt (segments reach the kernel and the interventions).
    const TokenSegments* segments = nullptr;
    // An intervention to show (e.g. an InterventionSet): the page gains a section with, for every
    // head whose pattern it changes, the attention before, after and their difference, and the
    // next-token prediction before and after. The probes above it run without it.
    Hooks* intervention = nullptr;
    std::vector<std::string> intervention_lines;  // its description, one line per intervention
};

struct AttentionReportFiles {
    std::filesystem::path html, json;
    std::vector<std::filesystem::path> patterns;  // one PNG per (layer, head)
};

// Runs the probes on `prompt` (token ids) and writes OUT_DIR/report.html, report.json and
// patterns/LAYER_HEAD.png. Throws IoError if OUT_DIR cannot be written.
AttentionReportFiles write_attention_report(const Model& model, const std::vector<int32_t>& prompt,
                                            const std::filesystem::path& out_dir,
                                            const AttentionReportOptions& options = {},
                                            const ProbeControl& control = {});

}  // namespace attnlab
