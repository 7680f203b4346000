// attnlab probe position-bias: attention mass vs absolute position and relative distance,
// first-token mass per depth, attention rollout (see include/attnlab/probe_position_bias.h,
// docs/probes.md#position-bias).
#include "probe_common.h"

#include <attnlab/probe_position_bias.h>

#include <fmt/format.h>

#include <cmath>
#include <cstdio>

namespace attnlab::cli {

Command add_probe_position_bias(CLI::App& probe) {
    struct Options {
        ModelOptions model;
        ProbeInputOptions input;
        PositionBiasOptions bias;
        std::string json;
    };
    auto o = std::make_shared<Options>();
    CLI::App* app = probe.add_subcommand("position-bias", "Attention mass vs absolute key position and relative distance, "
                                                          "first-token mass per depth, attention rollout");
    o->model.add_to(*app);
    o->input.add_to(*app);
    app->add_option("--bins", o->bias.bins, "Equal-width bins of absolute key position")->check(CLI::PositiveNumber);
    app->add_option("--rollout-max-tokens", o->bias.rollout_max_tokens,
                    "Roll out attention (T x T) only for sequences up to this length (0: never)")
        ->check(CLI::NonNegativeNumber);
    app->add_flag("--rollout-residual", o->bias.rollout_residual, "Roll out 0.5 A + 0.5 I instead of the plain product");
    app->add_option("--json", o->json, "Write the result as JSON (layout: docs/probes.md#position-bias)");
    return {app, [o] {
        auto model = o->model.load();
        const auto sequences = o->input.resolve(*model);
        PositionBias result;
        {
            ProgressBar bar("probe position-bias");
            result = probe_position_bias(*model, sequences, o->bias, bar.control());
        }
        auto num = [](double v) { return std::isnan(v) ? std::string("-") : fmt::format("{:.4f}", v); };
        // Distance bins 1.. (bin 0, keys after the query, is empty under causal masks).
        const size_t n_bins = result.layers.empty() ? 0 : result.layers[0].distance_mass.size();
        std::string labels;
        for (size_t b = 1; b < n_bins; ++b) {
            const int64_t lo = b == 1 ? 0 : int64_t{1} << (b - 2), hi = b == 1 ? 0 : (int64_t{1} << (b - 1)) - 1;
            labels += b + 1 == n_bins ? fmt::format(" >={}", lo) : lo == hi ? fmt::format(" {}", lo) : fmt::format(" {}-{}", lo, hi);
        }
        std::printf("| layer | first-token mass | alpha(0) | alpha(last) | distance mass (d =%s) | rollout P[:,0] |\n", labels.c_str());
        std::printf("| ---: | ---: | ---: | ---: | --- | ---: |\n");
        for (const LayerPositionBias& l : result.layers) {
            std::string dist;
            for (size_t b = 1; b < l.distance_mass.size(); ++b) {
                if (b > 1) dist += ' ';
                dist += fmt::format("{:.3f}", l.distance_mass[b]);
            }
            const std::string rollout =
                result.rollout ? num(result.rollout->first_token_mass[l.layer]) : std::string("-");
            std::printf("| %lld | %s | %s | %s | %s | %s |\n", (long long)l.layer, num(l.first_token_mass).c_str(),
                        num(l.received_mass.empty() ? NAN : l.received_mass.front()).c_str(),
                        num(l.received_mass.empty() ? NAN : l.received_mass.back()).c_str(), dist.c_str(), rollout.c_str());
        }
        if (!result.rollout)
            std::printf("rollout: skipped (no sequence of at most %lld tokens; see --rollout-max-tokens)\n",
                        (long long)result.rollout_max_tokens);
        else
            std::printf("rollout: %s product over %lld sequence(s)\n", result.rollout->residual ? "0.5 A + 0.5 I" : "plain",
                        (long long)result.rollout->sequences);
        std::printf("%lld sequence(s)%s\n", (long long)result.sequences,
                    result.interrupted ? " (interrupted: partial averages)" : "");
        if (!o->json.empty()) {
            write_text_file(o->json, result.to_json(), "probe position-bias");
            std::printf("wrote %s\n", o->json.c_str());
        }
        return result.interrupted ? 130 : 0;
    }};
}

}  // namespace attnlab::cli
