// Sampler (repetition penalty, temperature, top-k, top-p, min-p) and the generation loop.
#include <attnlab/error.h>
#include <attnlab/generate.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <unordered_set>

namespace attnlab {

Sampler::Sampler(const SamplingParams& params) : params_(params), rng_(params.seed) {
    ATTNLAB_CHECK(params.temperature >= 0, InvalidArgument, "[sampler] temperature must be >= 0, got {}",
                  params.temperature);
    ATTNLAB_CHECK(params.top_k >= 0, InvalidArgument, "[sampler] top-k must be >= 0, got {}", params.top_k);
    ATTNLAB_CHECK(params.top_p > 0 && params.top_p <= 1, InvalidArgument,
                  "[sampler] top-p must be in (0, 1], got {}", params.top_p);
    ATTNLAB_CHECK(params.min_p >= 0 && params.min_p <= 1, InvalidArgument,
                  "[sampler] min-p must be in [0, 1], got {}", params.min_p);
    ATTNLAB_CHECK(params.repetition_penalty > 0, InvalidArgument,
                  "[sampler] repetition penalty must be > 0, got {}", params.repetition_penalty);
}

int32_t Sampler::sample(std::span<const float> logits_in, std::span<const int32_t> history) {
    std::vector<float> logits(logits_in.begin(), logits_in.end());
    const int64_t V = static_cast<int64_t>(logits.size());
    ATTNLAB_CHECK(V > 0, InvalidArgument, "[sampler] empty logits");
    if (params_.repetition_penalty != 1.0) {
        std::unordered_set<int32_t> seen(history.begin(), history.end());
        const float p = static_cast<float>(params_.repetition_penalty);
        for (int32_t id : seen)
            if (id >= 0 && id < V) logits[id] = logits[id] > 0 ? logits[id] / p : logits[id] * p;
    }
    if (params_.temperature == 0.0)
        return static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());

    // Candidates sorted by logit (descending), cut by top-k.
    std::vector<int32_t> order(static_cast<size_t>(V));
    std::iota(order.begin(), order.end(), 0);
    const int64_t k = params_.top_k > 0 ? std::min(params_.top_k, V) : V;
    auto by_logit = [&](int32_t a, int32_t b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); };
    std::partial_sort(order.begin(), order.begin() + k, order.end(), by_logit);
    order.resize(static_cast<size_t>(k));
    // Softmax at the temperature.
    std::vector<double> probs(order.size());
    const double max_logit = logits[order[0]];
    double sum = 0;
    for (size_t i = 0; i < order.size(); ++i) {
        probs[i] = std::exp((logits[order[i]] - max_logit) / params_.temperature);
        sum += probs[i];
    }
    for (double& p : probs) p /= sum;
    // top-p: the smallest prefix whose mass reaches top_p (at least one token).
    size_t keep = probs.size();
    if (params_.top_p < 1.0) {
        double cumulative = 0;
        for (size_t i = 0; i < probs.size(); ++i) {
            cumulative += probs[i];
            if (cumulative >= params_.top_p) {
                keep = i + 1;
                break;
            }
        }
    }
    // min-p: drop tokens below min_p × the top probability.
    if (params_.min_p > 0) {
        const double threshold = params_.min_p * probs[0];
        size_t n = 1;
        while (n < keep && probs[n] >= threshold) ++n;
        keep = n;
    }
    std::discrete_distribution<size_t> pick(probs.begin(), probs.begin() + static_cast<int64_t>(keep));
    return order[pick(rng_)];
}

std::vector<int32_t> generate(const Model& model, std::span<const int32_t> prompt,
                              const GenerateOptions& options, KVCache& cache) {
    const ModelConfig& c = model.config();
    ATTNLAB_CHECK(!prompt.empty(), InvalidArgument, "[generate] the prompt is empty");
    ATTNLAB_CHECK(options.max_new_tokens >= 0, InvalidArgument,
                  "[generate] number of tokens to generate must be >= 0");
    const int64_t context = options.context_length > 0 ? options.context_length : c.max_position_embeddings;
    ATTNLAB_CHECK(cache.n_past() + static_cast<int64_t>(prompt.size()) <= context, InvalidArgument,
                  "[generate] prompt of {} tokens does not fit the context of {} tokens (see --ctx-size)",
                  cache.n_past() + static_cast<int64_t>(prompt.size()), context);
    Sampler sampler(options.sampling);
    std::vector<int32_t> history(prompt.begin(), prompt.end());
    std::vector<int32_t> generated;
    if (options.max_new_tokens == 0) return generated;
    HookChain hooks;  // interventions first, so observers see their effect
    if (options.interventions) {
        options.interventions->begin_sequence();
        hooks.add(options.interventions);
    }
    if (options.hooks) hooks.add(options.hooks);
    ForwardOptions forward;
    forward.hooks = options.interventions || options.hooks ? &hooks : nullptr;
    forward.segments = options.segments;
    Tensor logits = model.forward(prompt, cache, forward);
    for (int64_t step = 0; step < options.max_new_tokens; ++step) {
        std::span<const float> row(logits.data<float>(), static_cast<size_t>(c.vocab_size));
        const int32_t next = sampler.sample(row, history);
        generated.push_back(next);
        history.push_back(next);
        if (options.on_token) options.on_token(next);
        const bool is_eos = std::find(c.eos_token_ids.begin(), c.eos_token_ids.end(), next) !=
                            c.eos_token_ids.end();
        if ((options.stop_at_eos && is_eos) || step + 1 == options.max_new_tokens) break;
        if (cache.n_past() >= context) break;  // the context is full
        const int32_t one[1] = {next};
        logits = model.forward(one, cache, forward);
    }
    return generated;
}

}  // namespace attnlab
