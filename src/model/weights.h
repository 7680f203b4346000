// ModelWeights: the tensors of a decoder, under canonical names, filled by an architecture.
//
// Matrices keep their stored dtype and layout (views into the mmap'd checkpoint): linear
// weights are (out, in) = (N, K), or transposed views for GPT-2's Conv1D. Small vectors
// (norm weights, biases) are widened to f32 once at load.
#pragma once

#include <attnlab/model.h>
#include <attnlab/safetensors.h>

#include <vector>

namespace attnlab {

struct NormWeights {
    Tensor weight;  // (C) f32, or undefined when the norm does not exist
    Tensor bias;    // (C) f32, LayerNorm only
    bool defined() const { return weight.defined(); }
};

struct LayerWeights {
    NormWeights attn_norm;       // before attention (pre-norm architectures)
    NormWeights post_attn_norm;  // after attention, before the residual add (Gemma-2/3, OLMo-2)
    NormWeights mlp_norm;        // before the MLP
    NormWeights post_mlp_norm;   // after the MLP (Gemma-2/3, OLMo-2)
    Tensor wq;  // (H*D, C)
    Tensor wk;  // (Hkv*D, C)
    Tensor wv;  // (Hkv*D, C)
    Tensor wo;  // (C, H*D)
    Tensor bq, bk, bv, bo;  // f32 biases or undefined
    NormWeights q_norm;  // (D) per head or (H*D) full width
    NormWeights k_norm;  // (D) per head or (Hkv*D) full width
    Tensor w_gate;  // (I, C), gated MLPs only
    Tensor w_up;    // (I, C)
    Tensor w_down;  // (C, I)
    Tensor b_up, b_down, b_gate;  // f32 biases or undefined
};

struct ModelWeights {
    WeightStore store;  // owns the mappings every view points into
    Tensor embed;       // (V, C)
    Tensor pos_embed;   // (P, C), learned positions (GPT-2) or undefined
    std::vector<LayerWeights> layers;
    NormWeights final_norm;
    Tensor lm_head;  // (V, C); the embedding itself when tied
};

}  // namespace attnlab
