// Sampler (repetition penalty, temperature, top-k, top-p, min-p) and the generation loop.
#include <attnlab/cuda_model.h>
#include <attnlab/error.h>
#include <attnlab/generate.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <unordered_set>

namespace attnlab {

void check_sampling_params(const SamplingParams& params) {
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

int32_t select_token(std::span<const float> logits_in, std::span<const int32_t> history, const SamplingParams& params,
                     double u) {
    check_sampling_params(params);
    std::vector<float> logits(logits_in.begin(), logits_in.end());  // (V), penalised below
    const int64_t V = static_cast<int64_t>(logits.size());
    ATTNLAB_CHECK(V > 0, InvalidArgument, "[sampler] empty logits");
    if (params.repetition_penalty != 1.0) {
        std::unordered_set<int32_t> seen(history.begin(), history.end());
        const float p = static_cast<float>(params.repetition_penalty);
        for (int32_t id : seen)
            if (id >= 0 && id < V) logits[id] = logits[id] > 0 ? logits[id] / p : logits[id] * p;
    }
    if (params.temperature == 0.0)
        return static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
    ATTNLAB_CHECK(u >= 0 && u < 1, InvalidArgument, "[sampler] the uniform draw must be in [0, 1), got {}", u);
    ATTNLAB_CHECK(std::none_of(logits.begin(), logits.end(), [](float x) { return std::isnan(x); }), InvalidArgument,
                  "[sampler] the logits hold NaN");

    // Candidates (k) by (logit descending, id ascending), cut by top-k.
    std::vector<int32_t> order(static_cast<size_t>(V));
    std::iota(order.begin(), order.end(), 0);
    const int64_t k = params.top_k > 0 ? std::min(params.top_k, V) : V;
    auto by_logit = [&](int32_t a, int32_t b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); };
    std::partial_sort(order.begin(), order.begin() + k, order.end(), by_logit);
    order.resize(static_cast<size_t>(k));
    const double top = logits[order[0]];
    ATTNLAB_CHECK(std::isfinite(top), InvalidArgument, "[sampler] the top logit is {}", top);

    // Weights relative to the top candidate at the temperature (k), and their running sums (k).
    std::vector<double> weight(order.size()), running(order.size());
    double sum = 0;
    for (size_t i = 0; i < order.size(); ++i) {
        weight[i] = std::exp((logits[order[i]] - top) / params.temperature);
        sum += weight[i];
        running[i] = sum;
    }
    const double total = running.back();
    // top-p: the shortest prefix whose mass reaches top_p (at least one candidate).
    size_t keep = order.size();
    if (params.top_p < 1.0) {
        keep = 1;
        while (keep < order.size() && running[keep - 1] / total < params.top_p) ++keep;
    }
    // min-p: the prefix of candidates at least min_p × the top probability.
    if (params.min_p > 0) {
        const double threshold = params.min_p * (weight[0] / total);
        size_t n = 1;
        while (n < keep && weight[n] / total >= threshold) ++n;
        keep = n;
    }
    // The first kept candidate whose share of the kept mass reaches u.
    const double kept = running[keep - 1];
    size_t pick = 0;
    while (pick + 1 < keep && running[pick] / kept < u) ++pick;
    return order[pick];
}

Sampler::Sampler(const SamplingParams& params) : params_(params), rng_(params.seed) { check_sampling_params(params); }

double Sampler::next_uniform() { return std::generate_canonical<double, std::numeric_limits<double>::digits>(rng_); }

int32_t Sampler::sample(std::span<const float> logits, std::span<const int32_t> history) {
    return select_token(logits, history, params_, greedy() ? 0.0 : next_uniform());
}

namespace {

// The generation loop both backends share: `step(ids, history, sampler)` runs ids through the
// model on its cache and returns the next token (sampled on the host, or picked on the device);
// `n_past()` is the cache's length.
template <typename Step, typename NPast>
std::vector<int32_t> generation_loop(const ModelConfig& c, std::span<const int32_t> prompt,
                                     const GenerateOptions& options, Step step, NPast n_past) {
    ATTNLAB_CHECK(!prompt.empty(), InvalidArgument, "[generate] the prompt is empty");
    ATTNLAB_CHECK(options.max_new_tokens >= 0, InvalidArgument,
                  "[generate] number of tokens to generate must be >= 0");
    const int64_t context = options.context_length > 0 ? options.context_length : c.max_position_embeddings;
    ATTNLAB_CHECK(n_past() + static_cast<int64_t>(prompt.size()) <= context, InvalidArgument,
                  "[generate] prompt of {} tokens does not fit the context of {} tokens (see --ctx-size)",
                  n_past() + static_cast<int64_t>(prompt.size()), context);
    Sampler sampler(options.sampling);
    std::vector<int32_t> history(prompt.begin(), prompt.end());
    std::vector<int32_t> generated;
    if (options.max_new_tokens == 0) return generated;
    int32_t next = step(prompt, history, sampler);
    for (int64_t i = 0; i < options.max_new_tokens; ++i) {
        generated.push_back(next);
        history.push_back(next);
        if (options.on_token) options.on_token(next);
        const bool is_eos = std::find(c.eos_token_ids.begin(), c.eos_token_ids.end(), next) !=
                            c.eos_token_ids.end();
        if ((options.stop_at_eos && is_eos) || i + 1 == options.max_new_tokens) break;
        if (n_past() >= context) break;  // the context is full
        const int32_t one[1] = {next};
        next = step(one, history, sampler);
    }
    return generated;
}

}  // namespace

std::vector<int32_t> generate(const Model& model, std::span<const int32_t> prompt,
                              const GenerateOptions& options, KVCache& cache) {
    HookChain hooks;  // interventions first, so observers see their effect
    ForwardOptions forward;
    forward.hooks = options.interventions || options.hooks ? &hooks : nullptr;
    forward.segments = options.segments;
    bool begun = false;
    auto step = [&](std::span<const int32_t> ids, const std::vector<int32_t>& history, Sampler& sampler) {
        if (!begun) {  // once per generate() call, and only when a token is wanted
            begun = true;
            if (options.interventions) {
                options.interventions->begin_sequence();
                hooks.add(options.interventions);
            }
            if (options.hooks) hooks.add(options.hooks);
        }
        const Tensor logits = model.forward(ids, cache, forward);
        return sampler.sample({logits.data<float>(), static_cast<size_t>(model.config().vocab_size)}, history);
    };
    return generation_loop(model.config(), prompt, options, step, [&] { return cache.n_past(); });
}

std::vector<int32_t> generate(const CudaModel& model, std::span<const int32_t> prompt, const GenerateOptions& options,
                              CudaKVCache& cache) {
    ATTNLAB_CHECK(!options.interventions && !options.hooks, NotSupported,
                  "[cuda] interventions and hooks are not on the GPU yet (generate on the CPU model)");
    ForwardOptions forward;
    forward.segments = options.segments;
    // Every setting picks on the device: only the id crosses back (the host draws u).
    auto step = [&](std::span<const int32_t> ids, const std::vector<int32_t>& history, Sampler& sampler) {
        const double u = sampler.greedy() ? 0.0 : sampler.next_uniform();
        return model.forward_sample(ids, cache, sampler.params(), history, u, forward);
    };
    return generation_loop(model.host().config(), prompt, options, step, [&] { return cache.n_past(); });
}

}  // namespace attnlab
