// Hook points: TransformerLens names and shapes for every intermediate of a forward pass.
//
// A Hooks object is asked, per forward pass, which points it wants; the model computes
// expensive points (hook_pattern, hook_attn_scores, hook_result) only when asked, and calls
// on() with each wanted tensor, which the hook may read or modify in place (same shape).
// Shapes (one sequence; T queries, S keys): hook_embed (T,C); blocks.{l}.hook_resid_pre (T,C);
// blocks.{l}.ln1.hook_normalized (T,C); blocks.{l}.attn.hook_q / hook_rot_q (T,H,D);
// hook_k / hook_v / hook_rot_k (T,Hkv,D); hook_attn_scores / hook_pattern (H,T,S);
// hook_z (T,H,Dv); hook_result (T,H,C); hook_lse (T,H); blocks.{l}.hook_attn_out (T,C);
// hook_resid_mid (T,C); blocks.{l}.mlp.hook_pre / hook_pre_linear / hook_post (T,I);
// hook_mlp_out (T,C); hook_resid_post (T,C); ln_final.hook_normalized (T,C);
// unembed.hook_out (T,V).
//
// Attention statistics (blocks.{l}.attn.hook_stats) never materialise T×S: a hook asks for
// them per layer with attention_stats(), the kernel computes them in its own pass, and the
// hook receives them in on_attention_stats().
//
// Interventions on attention itself (include/attnlab/intervention.h) use two more points per
// layer: rewrite_attention() changes the spec each head runs in this pass (pre-softmax edits:
// score modifiers, masks, temperatures), and edit_attention() edits the layer's attention output
// after the kernel (post-softmax edits, computed from the output, lse and restricted re-runs of
// the kernel, never from a T×S pattern unless a hook materialised it anyway).
#pragma once

#include <attnlab/attention.h>
#include <attnlab/tensor.h>

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <regex>
#include <string>
#include <vector>

namespace attnlab {

// What to measure in one layer's attention (see AttentionStats for the definitions).
struct AttentionStatsRequest {
    bool mass = false, entropy = false, sum_sq = false, top = false, column_sum = false;
    std::vector<int64_t> keys;      // key_mass at these key positions (when not empty)
    std::vector<int64_t> offsets;   // offset_mass at key i - offset (when not empty)
    std::vector<int32_t> segments;  // segment_mass: id per key position (size >= S), ids < n_segments
    int64_t n_segments = 0;
    int64_t n_distance_bins = 0;    // distance_mass when > 0
};

// One layer's statistics for the T queries at positions pos0 .. pos0+T-1 over S keys; each
// tensor is f32 (top_key i64) and undefined unless requested: mass, entropy, sum_sq, top_key,
// top_prob (T, H); key_mass (T, H, K); offset_mass (T, H, R); segment_mass (T, H, n_segments);
// distance_mass (T, H, n_distance_bins); column_sum (H, S).
struct LayerAttentionStats {
    int64_t layer = 0, T = 0, S = 0, H = 0, pos0 = 0;
    Tensor mass, entropy, sum_sq, top_key, top_prob, key_mass, offset_mass, segment_mass, distance_mass, column_sum;
};

// What a post-softmax edit of one layer sees (Hooks::edit_attention). The layer has just run
// its attention for T queries at positions pos0 .. pos0+T-1 over S keys.
struct AttentionEditContext {
    int64_t layer = 0, T = 0, S = 0, H = 0, Hkv = 0, D = 0, pos0 = 0;
    const float* q = nullptr;    // (T, H, D) the queries as attended (after norms, RoPE, hooks)
    const float* k = nullptr;    // (S, Hkv, D) keys of every position so far (the KV cache)
    const float* v = nullptr;    // (S, Hkv, D) values
    float* z = nullptr;          // (T, H, D) the attention output: edit in place
    const float* lse = nullptr;  // (T, H) each row's natural-log normaliser (softmax heads)
    // (H, T, S) probabilities when a hook asked for blocks.{l}.attn.hook_pattern in this pass,
    // else null; an edit that changes the output must rewrite these rows the same way.
    float* pattern = nullptr;
    const std::vector<AttentionSpec>* head_specs = nullptr;  // (H) the spec each head ran
    const int32_t* segments = nullptr;  // (S) the forward pass's segment id per position, or null
    // Runs heads [h0, h1) of this layer again with `spec` and key segment ids `segments` (S
    // entries; may be null when the spec needs none), writing their rows of out (T, H, D) and
    // lse (T, H). With a head's own spec plus `segment(id=N)` this gives each row's normalised
    // output over one key set and, through exp(lse_set - lse), the row's mass on it.
    std::function<void(const AttentionSpec& spec, int64_t h0, int64_t h1, const int32_t* segments, float* out,
                       float* lse)>
        run;
};

class Hooks {
public:
    virtual ~Hooks() = default;
    // Called first in every forward pass: its T tokens sit at sequence positions pos0 .. pos0+T-1
    // (tensor hooks see only the call's rows; this says where they are).
    virtual void begin_forward(int64_t pos0, int64_t T) {}
    // Called before the first forward pass of a new sequence by drivers that run several
    // (generate, patching sweeps): hooks that gather per-sequence state (ACT's sinks) reset it.
    virtual void begin_sequence() {}
    virtual bool wants(const std::string& name) const = 0;
    // Called with each wanted point; `value` may be modified in place.
    virtual void on(const std::string& name, Tensor& value) = 0;
    // The statistics wanted from layer `layer` whose attention sees S keys (nullopt: none).
    virtual std::optional<AttentionStatsRequest> attention_stats(int64_t layer, int64_t S) const { return std::nullopt; }
    virtual void on_attention_stats(const LayerAttentionStats& stats) {}
    // Pre-softmax edits: true if rewrite_attention() may change layer `layer`'s specs.
    virtual bool rewrites_attention(int64_t layer) const { return false; }
    // head_specs (H): the spec each head of the layer runs in this pass; edit any of them.
    virtual void rewrite_attention(int64_t layer, std::vector<AttentionSpec>& head_specs) {}
    // Post-softmax edits: true if edit_attention() edits layer `layer`'s output.
    virtual bool edits_attention(int64_t layer) const { return false; }
    virtual void edit_attention(AttentionEditContext& ctx) {}
    // RoPE position ids (CCA-style remapping): `positions` (T) holds this call's ids (pos0 ..
    // pos0+T-1 unless the caller gave others); edit them in place. Masks keep the sequence order.
    virtual bool remaps_positions() const { return false; }
    virtual void remap_positions(int64_t pos0, std::vector<int64_t>& positions) {}
    // Token dropping (SGL / FastV): before layer `layer` runs, the rows to remove from the
    // residual stream, as ascending indices into `positions` (the sequence positions of the
    // current rows). Dropped tokens keep no state in later layers; the others keep their
    // positions (RoPE ids), and later layers' KV caches hold only the kept rows.
    virtual bool drops_tokens(int64_t layer) const { return false; }
    virtual std::vector<int64_t> drop_tokens(int64_t layer, const std::vector<int64_t>& positions) { return {}; }
};

// Keeps a copy (f32, contiguous) of every point whose full name matches a regex, or of an
// explicit list of names. Nothing else is stored.
class ActivationCache : public Hooks {
public:
    explicit ActivationCache(const std::string& name_regex);
    explicit ActivationCache(std::vector<std::string> names);
    // Keep only query positions [begin, end) of each point (the token axis: dim 0, or dim 1 of
    // (H, T, S) points; relative to the forward pass's own tokens, clamped to them).
    void keep_positions(int64_t begin, int64_t end);

    bool wants(const std::string& name) const override;
    void on(const std::string& name, Tensor& value) override;

    const std::map<std::string, Tensor>& entries() const { return entries_; }
    const Tensor& at(const std::string& name) const;
    void clear() { entries_.clear(); }

private:
    std::unique_ptr<std::regex> regex_;
    std::vector<std::string> names_;
    std::map<std::string, Tensor> entries_;
    int64_t position_begin_ = 0, position_end_ = -1;
};

// Sends every point to each of several hooks in order (e.g. a cache and an intervention).
class HookChain : public Hooks {
public:
    void add(Hooks* hooks) { chain_.push_back(hooks); }
    void begin_forward(int64_t pos0, int64_t T) override;
    void begin_sequence() override;
    bool wants(const std::string& name) const override;
    void on(const std::string& name, Tensor& value) override;
    // The union of the hooks' requests (flags OR-ed; two hooks asking for different key,
    // offset or segment lists is an InvalidArgument); every hook receives the statistics.
    std::optional<AttentionStatsRequest> attention_stats(int64_t layer, int64_t S) const override;
    void on_attention_stats(const LayerAttentionStats& stats) override;
    // Rewrites and edits run in the order the hooks were added.
    bool rewrites_attention(int64_t layer) const override;
    void rewrite_attention(int64_t layer, std::vector<AttentionSpec>& head_specs) override;
    bool edits_attention(int64_t layer) const override;
    void edit_attention(AttentionEditContext& ctx) override;
    bool remaps_positions() const override;
    void remap_positions(int64_t pos0, std::vector<int64_t>& positions) override;
    // Every hook's drops, merged (a row dropped by any hook is dropped).
    bool drops_tokens(int64_t layer) const override;
    std::vector<int64_t> drop_tokens(int64_t layer, const std::vector<int64_t>& positions) override;

private:
    std::vector<Hooks*> chain_;
};

}  // namespace attnlab
