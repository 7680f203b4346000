// Sampling and text generation on top of Model::forward (prefill, then one token per step
// against the KV cache), optionally with interventions and hooks on every forward pass.
#pragma once

#include <attnlab/model.h>
#include <attnlab/segments.h>

#include <cstdint>
#include <functional>
#include <random>
#include <span>
#include <vector>

namespace attnlab {

// llama.cpp's defaults; temperature 0 means greedy (argmax, ties to the lowest id).
struct SamplingParams {
    double temperature = 0.8;
    int64_t top_k = 40;         // 0 = off
    double top_p = 0.95;        // 1 = off
    double min_p = 0.05;        // 0 = off
    double repetition_penalty = 1.0;  // CTRL-style, over the prompt and generated tokens; 1 = off
    uint64_t seed = 0;
};

// The choice of one token from logits (V), a pure function of its inputs (the GPU implements the
// same rule: CudaModel::forward_sample), in order:
//   1. repetition penalty: each id in `history` (once, however often it occurs; ids outside
//      [0, V) ignored) gets logit / p when positive, logit · p otherwise (p as float);
//   2. temperature 0: the argmax, ties to the lowest id (`u` unused);
//   3. candidates ordered by (logit descending, id ascending), the first top_k of them;
//   4. weights w_i = exp((logit_i − logit_0) / temperature) in double and their running sums
//      S_i; top-p keeps the shortest prefix with S_i / S_last >= top_p, min-p the prefix with
//      w_i / S_last >= min_p · w_0 / S_last;
//   5. the first kept candidate whose share of the kept mass reaches u: S_i / S_keep-1 >= u
//      (the last kept one when none does). u in [0, 1).
// Throws InvalidArgument for NaN logits or a top logit of ±inf (the weights would be NaN).
// This is std::discrete_distribution's rule (libstdc++: lower_bound of u on the normalised
// running sums) over the kept candidates, so a Sampler's seed picks the tokens it picked when it
// used one, up to the rounding of the sums.
int32_t select_token(std::span<const float> logits, std::span<const int32_t> history, const SamplingParams& params,
                     double u);

// Throws InvalidArgument unless `params` are in range (see SamplingParams).
void check_sampling_params(const SamplingParams& params);

// select_token with the randomness: a mt19937_64 seeded with params.seed draws one u per
// sampled token (none when greedy).
class Sampler {
public:
    explicit Sampler(const SamplingParams& params);
    // Picks the next token from logits (V); `history` feeds the repetition penalty.
    int32_t sample(std::span<const float> logits, std::span<const int32_t> history);
    // The u of the next sampled token: generate_canonical<double, 53>, the draw libstdc++'s
    // discrete_distribution makes (one 64-bit output / 2^64).
    double next_uniform();
    bool greedy() const { return params_.temperature == 0.0; }
    const SamplingParams& params() const { return params_; }

private:
    SamplingParams params_;
    std::mt19937_64 rng_;
};

struct GenerateOptions {
    int64_t max_new_tokens = 128;
    SamplingParams sampling;
    bool stop_at_eos = true;
    // Longest sequence (prompt + generated); 0 = the model's max_position_embeddings.
    int64_t context_length = 0;
    // Called with each new token as soon as it is chosen (for streaming).
    std::function<void(int32_t)> on_token;
    // Edits of every forward pass (the prefill and each decode step): `interventions` run first
    // and get begin_sequence() once per generate() call; `hooks` (caches, probes) run after them,
    // so they see the edited activations. Either may be null.
    Hooks* interventions = nullptr;
    Hooks* hooks = nullptr;
    // Labelled positions of the sequence (prompt and generated tokens; see ForwardOptions).
    const TokenSegments* segments = nullptr;
};

// Runs the prompt through the model on `cache` (which may already hold a prefix) and
// generates up to max_new_tokens. Returns the new ids (the EOS that stopped it included).
std::vector<int32_t> generate(const Model& model, std::span<const int32_t> prompt,
                              const GenerateOptions& options, KVCache& cache);

}  // namespace attnlab
