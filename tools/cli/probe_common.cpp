// Shared pieces of the probe subcommands (see probe_common.h).
#include "probe_common.h"

#include <fmt/format.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <fstream>
#include <sstream>

namespace attnlab::cli {

namespace {

std::atomic<bool> g_cancel{false};

extern "C" void on_sigint(int) {
    if (g_cancel.load()) std::_Exit(130);  // second Ctrl-C: stop now
    g_cancel.store(true);
}

}  // namespace

void ProbeInputOptions::add_to(CLI::App& app) {
    app.add_option("--input", input, "safetensors file with input_ids (N, T): the sequences to probe");
    app.add_option("-p,--prompt", text, "One prompt to probe");
    app.add_option("-f,--file", file, "A text file to probe (one sequence)");
    app.add_option("--ids", ids, "Token ids to probe, e.g. 1,2,3");
    app.add_flag("--no-special", no_special, "Do not add the tokenizer's special tokens (BOS) to -p / -f");
}

std::vector<std::vector<int32_t>> ProbeInputOptions::resolve(const Model& model) const {
    const int given = !input.empty() + !text.empty() + !file.empty() + !ids.empty();
    ATTNLAB_CHECK(given == 1, InvalidArgument, "[probe] give exactly one of --input, -p, -f, --ids (got {})", given);
    if (!input.empty()) return load_input_ids(input);
    if (!ids.empty()) return {parse_ids(ids)};
    std::string prompt = text;
    if (!file.empty()) {
        std::ifstream in(file, std::ios::binary);
        ATTNLAB_CHECK(in.good(), IoError, "[probe] cannot read {}", file);
        std::ostringstream s;
        s << in.rdbuf();
        prompt = s.str();
        ATTNLAB_CHECK(!prompt.empty(), InvalidArgument, "[probe] {} is empty", file);
    }
    std::vector<int32_t> tokens = require_tokenizer(model).encode(prompt, !no_special);
    ATTNLAB_CHECK(!tokens.empty(), InvalidArgument, "[probe] the prompt has no tokens");
    return {tokens};
}

ProgressBar::ProgressBar(std::string label) : label_(std::move(label)), terminal_(::isatty(2) != 0) {
    start_ = last_draw_ = std::chrono::steady_clock::now();
    g_cancel.store(false);
    std::signal(SIGINT, on_sigint);
}

ProgressBar::~ProgressBar() {
    std::signal(SIGINT, SIG_DFL);
    if (terminal_) std::fprintf(stderr, "\n");
}

ProbeControl ProgressBar::control() {
    ProbeControl c;
    c.cancel = &g_cancel;
    c.progress = [this](int64_t done, int64_t total) { update(done, total); };
    return c;
}

void ProgressBar::update(int64_t done, int64_t total) {
    if (!terminal_) return;
    const auto now = std::chrono::steady_clock::now();
    if (done < total && now - last_draw_ < std::chrono::milliseconds(100)) return;
    last_draw_ = now;
    const double elapsed = std::chrono::duration<double>(now - start_).count();
    const double frac = total > 0 ? double(done) / double(total) : 1.0;
    const int width = 30, filled = static_cast<int>(frac * width);
    const double eta = done > 0 ? elapsed * double(total - done) / double(done) : 0.0;
    std::fprintf(stderr, "\r%s [%s%s] %lld/%lld  %.0fs elapsed, ~%.0fs left%s", label_.c_str(),
                 std::string(filled, '#').c_str(), std::string(width - filled, '.').c_str(), (long long)done,
                 (long long)total, elapsed, eta, g_cancel.load() ? "  (stopping: Ctrl-C again to abort)" : "");
    std::fflush(stderr);
}

void write_text_file(const std::string& path, const std::string& text, const char* where) {
    std::ofstream out(path, std::ios::binary);
    out << text << "\n";
    ATTNLAB_CHECK(out.good(), IoError, "[{}] cannot write {}", where, path);
}

Command add_probe(CLI::App& root) {
    CLI::App* app = root.add_subcommand("probe", "Probe what attention does (heads, sinks, ...); see docs/probes.md");
    app->require_subcommand(1);
    const std::vector<Command> probes = {add_probe_heads(*app), add_probe_logit_lens(*app), add_probe_retrieval_heads(*app),
                                         add_probe_sinks(*app), add_probe_position_bias(*app)};
    return {app, [probes] {
        for (const Command& p : probes)
            if (p.app->parsed()) return p.run();
        return 2;
    }};
}

}  // namespace attnlab::cli
