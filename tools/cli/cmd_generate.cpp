// attnlab generate: prefill the prompt, then sample token by token, streaming text; optionally
// with interventions on every forward pass (--intervene) or as a multi-branch decode (--branches).
#include "cli_common.h"

#include <attnlab/branches.h>
#include <attnlab/generate.h>

#include <nlohmann/json.hpp>

#include <cstdio>

namespace attnlab::cli {

Command add_generate(CLI::App& root) {
    struct Options {
        ModelOptions model;
        DeviceOptions device;
        PromptOptions prompt;
        InterventionOptions intervene;
        std::string branches;
        int64_t n = 128;
        SamplingParams sampling;
        bool json = false;
        bool ignore_eos = false;
    };
    auto o = std::make_shared<Options>();
    CLI::App* app = root.add_subcommand("generate", "Generate text from a prompt");
    o->model.add_to(*app);
    o->device.add_to(*app);
    o->prompt.add_to(*app);
    o->intervene.add_to(*app);
    // Each branch carries its own interventions, so the two forms do not combine.
    app->add_option("--branches", o->branches,
                    "Multi-branch decoding spec JSON (rule and branches; see docs/interventions.md)")
        ->excludes(app->get_option("--intervene"));
    app->add_option("-n,--n-predict", o->n, "Tokens to generate")->check(CLI::NonNegativeNumber);
    app->add_option("--temp", o->sampling.temperature, "Temperature (0 = greedy)")->check(CLI::NonNegativeNumber);
    app->add_option("--top-k", o->sampling.top_k, "Top-k (0 = off)")->check(CLI::NonNegativeNumber);
    app->add_option("--top-p", o->sampling.top_p, "Top-p (1 = off)")->check(CLI::Range(0.0, 1.0));
    app->add_option("--min-p", o->sampling.min_p, "Min-p (0 = off)")->check(CLI::Range(0.0, 1.0));
    app->add_option("--repeat-penalty", o->sampling.repetition_penalty, "Repetition penalty (1 = off)")
        ->check(CLI::PositiveNumber);
    app->add_option("-s,--seed", o->sampling.seed, "Random seed");
    app->add_flag("--ignore-eos", o->ignore_eos, "Do not stop at the end-of-sequence token");
    app->add_flag("--json", o->json, "Print one JSON line {\"ids\": [...], \"text\": \"...\"}");
    return {app, [o] {
        auto model = o->model.load();
        o->device.refuse("generate", !o->intervene.intervene.empty(), "--intervene");
        o->device.refuse("generate", !o->branches.empty(), "--branches");
        std::unique_ptr<CudaModel> gpu = o->device.cuda() ? o->device.load(*model) : nullptr;
        std::vector<int32_t> prompt = o->prompt.resolve(*model);
        GenerateOptions g;
        g.max_new_tokens = o->n;
        g.context_length = o->model.context_length(*model);
        g.sampling = o->sampling;
        // With --ids the caller controls the sequence exactly: no EOS stop either.
        g.stop_at_eos = !o->ignore_eos && !o->prompt.has_ids();
        // Specs are read before anything is printed, so a bad one fails with its error alone.
        const TokenSegments segments = o->intervene.segments();
        std::unique_ptr<BranchDecoding> decoding;
        InterventionSet interventions;
        if (!o->branches.empty()) {
            decoding = std::make_unique<BranchDecoding>(BranchDecoding::from_file(o->branches, *model, prompt, segments));
        } else {
            interventions = o->intervene.interventions(*model, segments);
            g.interventions = interventions.empty() ? nullptr : &interventions;  // (the GPU refuses any)
            g.segments = segments.empty() ? nullptr : &segments;
        }
        const Tokenizer* tok = model->tokenizer();
        std::unique_ptr<DetokenizeStream> stream;
        if (tok && !o->json) {
            // The console shows text, not control tokens such as </s> (--json keeps every id).
            stream = std::make_unique<DetokenizeStream>(*tok, /*skip_special_tokens=*/true);
            if (!o->prompt.has_ids()) std::fputs(o->prompt.text.c_str(), stdout);
            g.on_token = [&](int32_t id) {
                std::string piece = stream->push(id);
                std::fputs(piece.c_str(), stdout);
                std::fflush(stdout);
            };
        }
        std::vector<int32_t> ids;
        std::vector<double> weights;  // rvd's weight per step
        if (decoding) {
            BranchGeneration result = generate_branches(*decoding, g);
            ids = std::move(result.ids);
            weights = std::move(result.weights);
        } else if (gpu) {
            CudaKVCache cache = gpu->new_cache();
            ids = generate(*gpu, prompt, g, cache);
        } else {
            KVCache cache = model->new_cache();
            ids = generate(*model, prompt, g, cache);
        }
        if (o->json) {
            nlohmann::json out;
            out["ids"] = ids;
            if (!weights.empty()) out["weights"] = weights;
            out["text"] = tok ? tok->decode(ids) : std::string();
            std::puts(out.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
        } else if (stream) {
            std::fputs(stream->finish().c_str(), stdout);
            std::fputs("\n", stdout);
        } else {
            for (size_t i = 0; i < ids.size(); ++i) std::printf("%s%d", i ? "," : "", ids[i]);
            std::puts("");
        }
        return 0;
    }};
}

}  // namespace attnlab::cli
