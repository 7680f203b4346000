// attnlab generate: prefill the prompt, then sample token by token, streaming text.
#include "cli_common.h"

#include <attnlab/generate.h>

#include <nlohmann/json.hpp>

#include <cstdio>

namespace attnlab::cli {

Command add_generate(CLI::App& root) {
    struct Options {
        ModelOptions model;
        PromptOptions prompt;
        int64_t n = 128;
        SamplingParams sampling;
        bool json = false;
        bool ignore_eos = false;
    };
    auto o = std::make_shared<Options>();
    CLI::App* app = root.add_subcommand("generate", "Generate text from a prompt");
    o->model.add_to(*app);
    o->prompt.add_to(*app);
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
        std::vector<int32_t> prompt = o->prompt.resolve(*model);
        GenerateOptions g;
        g.max_new_tokens = o->n;
        g.context_length = o->model.context_length(*model);
        g.sampling = o->sampling;
        // With --ids the caller controls the sequence exactly: no EOS stop either.
        g.stop_at_eos = !o->ignore_eos && !o->prompt.has_ids();
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
        KVCache cache = model->new_cache();
        std::vector<int32_t> ids = generate(*model, prompt, g, cache);
        if (o->json) {
            nlohmann::json out;
            out["ids"] = ids;
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
