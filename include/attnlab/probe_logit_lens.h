// The `logit-lens` probe (papers-analysis primitive P5): what the residual stream "says" after
// each layer when read through the model's own final norm and unembedding, and how much each
// component (embeddings, every attention head, attention output biases, every MLP) writes
// directly into the logit of chosen target tokens. Definitions: docs/probes.md "logit-lens".
#pragma once

#include <attnlab/probes.h>

#include <cstdint>
#include <string>
#include <vector>

namespace attnlab {

struct LogitLensOptions {
    // Query positions to read (negative counts from the end: -1 is the last token). Empty: the last.
    std::vector<int64_t> positions;
    // Target token ids, the same at every position. Empty: at each position, the model's own
    // next token there (the argmax of its final logits).
    std::vector<int32_t> targets;
    int64_t top_k = 5;         // tokens listed per layer and position
    bool attribution = true;   // direct logit attribution (needs per-head results: T·H·C per layer)
};

struct LensToken {
    int32_t id = 0;
    double logit = 0, prob = 0;
    std::string text;  // the token decoded (empty for models without a tokenizer)
};

// The residual after one layer (blocks.l.hook_resid_post) through the final norm, lm_head and
// final softcap: exactly the model's logits for the last layer.
struct LensLayer {
    int64_t layer = 0;
    std::vector<LensToken> top;        // the top_k tokens, by logit (ties: lower id first)
    std::vector<double> target_logit;  // per target
    std::vector<double> target_prob;   // per target, softmax over the whole vocabulary
    std::vector<int64_t> target_rank;  // per target: how many tokens have a larger logit
};

// Direct logit attribution of one target at one position, in pre-softcap logit units, through
// the final norm frozen at the real final residual x = Σ components:
//   DLA(a) = scale · Σ_c u_c · weight_c · (a_c − [LayerNorm] mean(a))   (u = the target's lm_head row)
// so that embed + pos_embed + Σ_l (attn[l] + mlp[l]) + norm_bias = logit exactly (up to float
// rounding), and Σ_h heads[l][h] + attn_bias[l] = attn[l] wherever heads are reported.
struct LogitAttribution {
    int32_t target = 0;
    double logit = 0;      // the model's logit of the target, before the final softcap
    double total = 0;      // the sum of every term below
    double embed = 0;      // hook_embed (scaled where the architecture scales it)
    double pos_embed = 0;  // hook_pos_embed (learned positions; 0 otherwise)
    double norm_bias = 0;  // Σ_c u_c · bias_c (LayerNorm's bias; 0 for RMSNorm)
    std::vector<std::vector<double>> heads;  // (L, H): blocks.l.attn.hook_result; empty for
                                             // architectures with a norm after attention (the
                                             // heads do not add up before it)
    std::vector<double> attn_bias;  // (L): hook_attn_out − Σ_h hook_result (the o_proj bias)
    std::vector<double> attn;       // (L): blocks.l.hook_attn_out
    std::vector<double> mlp;        // (L): blocks.l.hook_mlp_out
};

struct LensPosition {
    int64_t position = 0;
    int32_t token = 0;        // the input token at this position
    int32_t next_token = -1;  // the input's next token (-1 at the last position)
    std::vector<int32_t> targets;
    std::vector<std::string> target_text;        // decoded targets (tokenizer models)
    std::vector<LensLayer> layers;               // (L)
    std::vector<LogitAttribution> attribution;  // per target (empty unless options.attribution)
};

struct LogitLensResult {
    int64_t tokens = 0, top_k = 0, n_layer = 0, n_head = 0;
    double final_softcap = 0;
    std::vector<LensPosition> positions;
    // {"probe": "logit-lens", "tokens", "top_k", "layers", "heads", "final_softcap",
    //  "positions": [{"position", "token", "next_token", "targets", "target_text"?, "lens": [{"layer", "top":
    //  [{"id", "logit", "prob", "text"?}], "target_logit", "target_prob", "target_rank"}],
    //  "attribution": [{"target", "logit", "total", "embed", "pos_embed", "norm_bias", "heads",
    //  "attn_bias", "attn", "mlp"}]}]}
    std::string to_json() const;
};

// One forward pass over `ids` (one sequence). Throws InvalidArgument for empty input, positions
// outside the sequence, target ids outside the vocabulary or top_k < 1.
LogitLensResult probe_logit_lens(const Model& model, const std::vector<int32_t>& ids,
                                 const LogitLensOptions& options = {}, const ProbeControl& control = {});

}  // namespace attnlab
