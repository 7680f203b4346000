// Pieces the `attnlab probe` subcommands share: where the token sequences come from, the
// terminal progress bar with Ctrl-C to stop early (partial results are still written), and
// writing the JSON result.
#pragma once

#include "cli_common.h"

#include <attnlab/probes.h>

#include <atomic>
#include <chrono>
#include <string>
#include <vector>

namespace attnlab::cli {

// The sequences a probe runs over: --input FILE.safetensors (input_ids (N, T)), or one prompt
// from -p TEXT / -f FILE (tokenised with the model's tokenizer) / --ids.
struct ProbeInputOptions {
    std::string input, text, file, ids;
    bool no_special = false;
    void add_to(CLI::App& app);
    std::vector<std::vector<int32_t>> resolve(const Model& model) const;
};

// While alive: a progress bar on stderr when it is a terminal, and SIGINT sets the cancel flag
// (a second Ctrl-C exits at once, as usual).
class ProgressBar {
public:
    explicit ProgressBar(std::string label);
    ~ProgressBar();
    ProgressBar(const ProgressBar&) = delete;
    ProgressBar& operator=(const ProgressBar&) = delete;
    ProbeControl control();
    void update(int64_t done, int64_t total);

private:
    std::string label_;
    bool terminal_ = false;
    std::chrono::steady_clock::time_point start_, last_draw_;
};

// Writes text to a file (IoError on failure) — the probes' --json.
void write_text_file(const std::string& path, const std::string& text, const char* where);

Command add_probe(CLI::App& root);
Command add_report(CLI::App& root);
// One function per probe, each in cmd_probe_NAME.cpp: registers its subcommand of `probe`.
Command add_probe_heads(CLI::App& probe);
Command add_probe_logit_lens(CLI::App& probe);
Command add_probe_retrieval_heads(CLI::App& probe);
Command add_probe_sinks(CLI::App& probe);
Command add_probe_position_bias(CLI::App& probe);

}  // namespace attnlab::cli
