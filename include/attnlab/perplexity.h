// Perplexity of a model on a token sequence, by (optionally overlapping) fixed-size windows.
//
// Each window runs from an empty KV cache, so every token is predicted from at most `context`
// tokens of its own window; with stride < context, windows overlap and each scores only the
// tokens the previous one did not (the Hugging Face perplexity guide's sliding-window method),
// so every token is scored once, with more left context than non-overlapping windows give.
#pragma once

#include <attnlab/model.h>

#include <cstdint>
#include <functional>
#include <span>

namespace attnlab {

struct PerplexityOptions {
    // Tokens per window, BOS included; 0 = min(max_position_embeddings, 1024).
    int64_t context = 0;
    // Text tokens each window advances by, 1 ... context; 0 = non-overlapping windows. With BOS a
    // window holds context - 1 text tokens, and the stride is capped there.
    int64_t stride = 0;
    // Start every window with the model's bos_token_id (if its config has one), as models are
    // trained; then the first token of a window is scored too.
    bool add_bos = true;
    // Called after each window with (windows done, windows in total).
    std::function<void(int64_t done, int64_t total)> progress;
};

struct PerplexityResult {
    double ppl = 0;         // exp(mean_nll)
    double ppl_stderr = 0;  // ppl · nll_stderr (first-order delta method)
    double mean_nll = 0;    // nats per scored token
    double nll_stderr = 0;  // sample std of the per-token NLL / sqrt(n); 0 when n < 2
    int64_t tokens_scored = 0;
    int64_t windows = 0;
    int64_t context = 0;  // as resolved: tokens per window, BOS included
    int64_t stride = 0;   // as resolved: text tokens per step
};

// `ids` (N) are text tokens without BOS. Throws InvalidArgument for N < 2, context < 2 or a
// stride outside [1, context]; forward() errors (ids out of the vocabulary, a context beyond what
// the model's positions allow) pass through.
PerplexityResult perplexity(const Model& model, std::span<const int32_t> ids,
                            const PerplexityOptions& options = {});

}  // namespace attnlab
