// attnlab probe heads: per layer × head attention scores (see probes.h, docs/probes.md).
#include "probe_common.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstdio>

namespace attnlab::cli {

Command add_probe_heads(CLI::App& probe) {
    struct Options {
        ModelOptions model;
        ProbeInputOptions input;
        int64_t repeat = 0;
        bool no_diversity = false;
        std::string json;
    };
    auto o = std::make_shared<Options>();
    CLI::App* app = probe.add_subcommand("heads", "Per layer x head: BOS mass, previous-token and induction scores, "
                                                  "entropy, local focus, ||A||_F, head diversity");
    o->model.add_to(*app);
    o->input.add_to(*app);
    app->add_option("--repeat", o->repeat, "The sequences repeat a block of N tokens after BOS: score induction")
        ->check(CLI::NonNegativeNumber);
    app->add_flag("--no-diversity", o->no_diversity, "Skip head diversity (it reads the T x T pattern)");
    app->add_option("--json", o->json, "Write the scores as JSON (the layout of the fixtures' mechanisms.json)");
    return {app, [o] {
        auto model = o->model.load();
        const auto sequences = o->input.resolve(*model);
        HeadProbeOptions options;
        options.repeat = o->repeat;
        if (o->no_diversity) options.diversity_max_tokens = 0;
        HeadScores scores;
        {
            ProgressBar bar("probe heads");
            scores = probe_heads(*model, sequences, options, bar.control());
        }
        // Per layer: the mean over heads and the strongest head of each score.
        std::printf("| layer | BOS mass (max head) | prev-token (max head) | entropy (min head) |%s diversity |\n",
                    o->repeat > 0 ? " induction (max head) |" : "");
        std::printf("| ---: | ---: | ---: | ---: |%s ---: |\n", o->repeat > 0 ? " ---: |" : "");
        auto best = [](const std::vector<double>& v, bool lowest) {
            const auto it = lowest ? std::min_element(v.begin(), v.end()) : std::max_element(v.begin(), v.end());
            return fmt::format("{:.4f} (h{})", *it, it - v.begin());
        };
        for (const LayerHeadScores& l : scores.layers)
            std::printf("| %lld | %s | %s | %s |%s %s |\n", (long long)l.layer, best(l.bos_mass, false).c_str(),
                        best(l.prev_token, false).c_str(), best(l.entropy, true).c_str(),
                        o->repeat > 0 ? (" " + best(l.induction, false) + " |").c_str() : "",
                        std::isnan(l.diversity) ? "-" : fmt::format("{:.4f}", l.diversity).c_str());
        std::printf("%lld sequence(s)%s\n", (long long)scores.sequences,
                    scores.interrupted ? " (interrupted: partial averages)" : "");
        if (!o->json.empty()) {
            write_text_file(o->json, scores.to_json(), "probe heads");
            std::printf("wrote %s\n", o->json.c_str());
        }
        return scores.interrupted ? 130 : 0;
    }};
}

}  // namespace attnlab::cli
