// attnlab probe sinks: primary and secondary attention sinks, value drain and residual peak
// (see include/attnlab/probe_sinks.h, docs/probes.md#sinks).
#include "probe_common.h"

#include <attnlab/probe_sinks.h>

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace attnlab::cli {

namespace {

// How a token reads in the table: its text when the model has a tokenizer, quoted and escaped.
std::string token_text(const Model& model, int32_t id) {
    if (id < 0) return "(varies)";
    std::string shown = fmt::format("{}", id);
    if (const Tokenizer* tok = model.tokenizer()) {
        std::string text;
        try {
            text = tok->decode(std::vector<int32_t>{id});
        } catch (const Error&) {
            return shown;  // an id the tokenizer does not know: the id alone says it
        }
        std::string escaped;
        for (char ch : text) escaped += ch == '\n' ? std::string("\\n") : ch == '|' ? std::string("\\|") : std::string(1, ch);
        shown += fmt::format(" \"{}\"", escaped);
    }
    return shown;
}

std::string fmt_double(double v, const char* spec = "{:.4f}") { return std::isnan(v) ? "-" : fmt::format(fmt::runtime(spec), v); }

}  // namespace

Command add_probe_sinks(CLI::App& probe) {
    struct Options {
        ModelOptions model;
        ProbeInputOptions input;
        SinkProbeOptions sinks;
        int64_t show_sequences = 4;
        std::string json;
    };
    auto o = std::make_shared<Options>();
    CLI::App* app = probe.add_subcommand("sinks", "Primary and secondary attention sinks (received mass, BOS norm window, "
                                                  "cosine-to-BOS lifetime labels), value drain, residual peak");
    o->model.add_to(*app);
    o->input.add_to(*app);
    app->add_option("--bos-index", o->sinks.bos_index, "Position of the primary sink (BOS)")->check(CLI::NonNegativeNumber);
    app->add_option("--top", o->sinks.top_sinks, "Positions with the largest received mass listed per layer")
        ->check(CLI::NonNegativeNumber);
    app->add_option("--cos-threshold", o->sinks.cos_threshold, "Flag a token at a layer when |cos(h_i, h_BOS)| exceeds this")
        ->check(CLI::Range(0.0, 1.0));
    app->add_option("--bos-lifetime", o->sinks.bos_lifetime,
                    "Label bos_sink at lifetime >= N (default: L-15 for L >= 32 layers, else ceil(0.6 L))");
    app->add_option("--secondary-lifetime", o->sinks.secondary_lifetime,
                    "Label secondary above lifetime N (default: 4 for L >= 32 layers, else floor(0.15 L))");
    app->add_option("--max-tokens", o->sinks.max_sink_tokens, "Sink tokens listed per sequence (longest lifetime first)")
        ->check(CLI::NonNegativeNumber);
    app->add_option("--show", o->show_sequences, "Sequences whose sink tokens are printed")->check(CLI::NonNegativeNumber);
    app->add_option("--json", o->json, "Write the result as JSON (layout: docs/probes.md#sinks)");
    return {app, [o] {
        auto model = o->model.load();
        const auto sequences = o->input.resolve(*model);
        SinkScores scores;
        {
            ProgressBar bar("probe sinks");
            scores = probe_sinks(*model, sequences, o->sinks, bar.control());
        }
        const int64_t b = o->sinks.bos_index;
        std::printf("| layer | alpha(BOS) | top sinks (pos:alpha) | BOS mass (max head) | value drain (min kv head) | "
                    "residual peak | BOS norm | flagged |\n| ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: |\n");
        for (const LayerSinkScores& l : scores.layers) {
            std::string top;
            for (const SinkPosition& p : l.top_sinks) top += fmt::format("{}{}:{:.3f}", top.empty() ? "" : " ", p.position, p.mass);
            const auto max_head = std::max_element(l.primary_mass.begin(), l.primary_mass.end());
            const auto min_kv = std::min_element(l.value_drain.begin(), l.value_drain.end());
            std::printf("| %lld | %s | %s | %s (h%lld) | %s (kv%lld) | %s | %s | %s |\n", (long long)l.layer,
                        fmt_double(b < (int64_t)l.received_mass.size() ? l.received_mass[b] : NAN).c_str(), top.c_str(),
                        fmt_double(*max_head).c_str(), (long long)(max_head - l.primary_mass.begin()),
                        fmt_double(*min_kv).c_str(), (long long)(min_kv - l.value_drain.begin()),
                        fmt_double(l.residual_peak, "{:.2f}").c_str(), fmt_double(l.bos_norm, "{:.2f}").c_str(),
                        fmt_double(l.flagged_tokens, "{:.1f}").c_str());
        }
        std::printf("labels: bos_sink at lifetime >= %lld, secondary above %lld (|cos| > %g in the BOS norm window)\n",
                    (long long)scores.thresholds.bos_lifetime, (long long)scores.thresholds.secondary_lifetime,
                    o->sinks.cos_threshold);
        for (const SequenceSinks& s : scores.per_sequence) {
            if (s.index >= o->show_sequences) break;
            std::printf("sequence %lld (%lld tokens): window [%lld, %lld), %lld bos_sink, %lld secondary\n", (long long)s.index,
                        (long long)s.length, (long long)s.window.start, (long long)s.window.end, (long long)s.bos_sinks,
                        (long long)s.secondary);
            for (const SinkToken& t : s.tokens)
                std::printf("  position %lld token %s: %s, lifetime %lld from layer %lld\n", (long long)t.position,
                            token_text(*model, t.token).c_str(), t.label.c_str(), (long long)t.lifetime,
                            (long long)t.first_layer);
        }
        std::printf("%lld sequence(s)%s\n", (long long)scores.sequences,
                    scores.interrupted ? " (interrupted: partial averages)" : "");
        if (!o->json.empty()) {
            write_text_file(o->json, scores.to_json(), "probe sinks");
            std::printf("wrote %s\n", o->json.c_str());
        }
        return scores.interrupted ? 130 : 0;
    }};
}

}  // namespace attnlab::cli
