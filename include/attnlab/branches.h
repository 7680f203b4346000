// Multi-branch decoding (papers-multimodal "The primitives" item 4; papers-analysis P8): several
// branches, each with its own prompt (e.g. with and without a segment's tokens), its own
// interventions and its own KV cache, are fed the same chosen token every step; their next-token
// logits are combined by a rule and the result is sampled as generate() does.
//
// Rules (branch 0 is the main branch m; l_k are the other branches' logits, all (V)):
//   contrastive  VCD / RVD-style: l = m + α·(m − o) = (1+α)·m − α·o, with VCD's adaptive
//                plausibility cut-off: tokens with p_m(y) < β·max p_m get −inf (β = 0: off).
//                Exactly two branches. Written as m + α·(m − o) so identical branches give m
//                exactly.
//   guidance     CFG / PAG / SoftPAG: l = m + Σ_k (s_k − 1)·(m − l_k); one term is
//                l_k + s_k·(m − l_k). diffusers' PAG scale s_pag is s = 1 + s_pag, so CFG + PAG
//                is terms (uncond, w), (perturbed, 1 + s_pag). s = 1 gives m exactly.
//   rvd          RVD (§10): branches full (m), residual-visual r and blind b:
//                  p_r = softmax(r), p_b = softmax(b), M = ½(p_r + p_b),
//                  JSD = ½ KL(p_b‖M) + ½ KL(p_r‖M), s = min(β·JSD, 1)   (β = 2)
//                  l = (1 − s)·m + s·r
//                With two branches a fixed s = α replaces the JSD weight.
//   vista_sla    VISTA's self-logits augmentation (§6), one branch:
//                  l = α·mean_{l ∈ layers} lm_head(h_l) + (1 − α)·m      (α = 0.3)
//                with h_l the last position's blocks.l.hook_resid_post, read without the final
//                norm as VISTA's code does (or through it: a standard logit lens).
#pragma once

#include <attnlab/generate.h>
#include <attnlab/intervention.h>
#include <attnlab/model.h>
#include <attnlab/segments.h>

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace attnlab {

enum class BranchRuleKind { Contrastive, Guidance, Rvd, VistaSla };

struct BranchRule {
    BranchRuleKind kind = BranchRuleKind::Contrastive;
    // contrastive: α (VCD 1); rvd: the fixed weight without a blind branch; vista_sla: α (0.3).
    double alpha = 1.0;
    // contrastive: the plausibility cut-off (VCD 0.1; 0 = off); rvd: the JSD multiplier (2).
    double beta = 0.1;
    std::vector<double> scales;   // guidance: s_k for branches 1 .. N-1
    std::vector<int64_t> layers;  // vista_sla: the layers read through the logit lens (ascending)
    bool final_norm = false;      // vista_sla: apply the final norm before lm_head
};

struct Branch {
    std::string name;
    const Model* model = nullptr;    // every branch's model has the main branch's vocabulary
    std::vector<int32_t> prompt;     // (T) its own prompt
    TokenSegments segments;          // its own labelled positions
    InterventionSet interventions;   // its own edits, begun once per decode
};

// A parsed --branches spec: the rule and the branches (branch 0 is the main one).
struct BranchDecoding {
    BranchRule rule;
    std::vector<std::unique_ptr<Branch>> branches;  // owned by pointer: interventions may keep &segments
    std::vector<std::unique_ptr<Model>> owned_models;  // models loaded for a branch's "model"

    // JSON: {"rule": "contrastive" | "guidance" | "rvd" | "vista_sla",
    //        "branches": [{"name": ..., "prompt": TEXT | "ids": [...], "drop_segment": NAME,
    //                      "segments": {NAME: "A:B", ...}, "interventions": [...], "model": DIR}, ...],
    //        rule parameters ("alpha", "beta", "scale" | "scales", "layers", "final_norm")}
    // A branch without "prompt"/"ids" uses `prompt`; its segments default to `segments`.
    // Throws InvalidArgument / FormatError naming `where`.
    static BranchDecoding from_json(std::string_view json_text, const Model& model, std::span<const int32_t> prompt,
                                    const TokenSegments& segments, const std::string& where = "branches");
    static BranchDecoding from_file(const std::string& path, const Model& model, std::span<const int32_t> prompt,
                                    const TokenSegments& segments);
};

// One step's combination. `logits`: each branch's (V) logits, in branch order; `lens` (V): for
// vista_sla, the mean logit lens of the main branch's layers (ignored by the other rules).
// Returns the combined logits (V); `weight` (if given) receives rvd's s (0 for other rules).
std::vector<float> combine_branch_logits(const BranchRule& rule, const std::vector<std::span<const float>>& logits,
                                         std::span<const float> lens = {}, double* weight = nullptr);

struct BranchGeneration {
    std::vector<int32_t> ids;     // the new tokens (the EOS that stopped it included)
    std::vector<double> weights;  // rvd: s per step (empty for other rules)
};

// Prefills every branch, then repeats: combine, sample (options.sampling, with the main branch's
// prompt as the repetition history), feed the token to every branch. options.hooks observe the
// main branch; options.interventions and options.segments must be null (each branch has its own).
BranchGeneration generate_branches(BranchDecoding& decoding, const GenerateOptions& options);

}  // namespace attnlab
