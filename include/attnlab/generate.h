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

class Sampler {
public:
    explicit Sampler(const SamplingParams& params);
    // Picks the next token from logits (V); `history` feeds the repetition penalty.
    int32_t sample(std::span<const float> logits, std::span<const int32_t> history);

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
