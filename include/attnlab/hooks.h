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
#pragma once

#include <attnlab/tensor.h>

#include <map>
#include <memory>
#include <regex>
#include <string>
#include <vector>

namespace attnlab {

class Hooks {
public:
    virtual ~Hooks() = default;
    virtual bool wants(const std::string& name) const = 0;
    // Called with each wanted point; `value` may be modified in place.
    virtual void on(const std::string& name, Tensor& value) = 0;
};

// Keeps a copy (f32, contiguous) of every point whose full name matches a regex, or of an
// explicit list of names. Nothing else is stored.
class ActivationCache : public Hooks {
public:
    explicit ActivationCache(const std::string& name_regex);
    explicit ActivationCache(std::vector<std::string> names);

    bool wants(const std::string& name) const override;
    void on(const std::string& name, Tensor& value) override;

    const std::map<std::string, Tensor>& entries() const { return entries_; }
    const Tensor& at(const std::string& name) const;
    void clear() { entries_.clear(); }

private:
    std::unique_ptr<std::regex> regex_;
    std::vector<std::string> names_;
    std::map<std::string, Tensor> entries_;
};

// Sends every point to each of several hooks in order (e.g. a cache and an intervention).
class HookChain : public Hooks {
public:
    void add(Hooks* hooks) { chain_.push_back(hooks); }
    bool wants(const std::string& name) const override;
    void on(const std::string& name, Tensor& value) override;

private:
    std::vector<Hooks*> chain_;
};

}  // namespace attnlab
