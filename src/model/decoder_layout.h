// Loading the tensors of llama-style checkpoints ("model.layers.{l}.self_attn.q_proj.weight").
//
// Most decoder families share this naming and differ only in which norms exist and whether
// q/k/v and gate/up are fused; an architecture describes that with a DecoderLayout.
#pragma once

#include "model/weights.h"

#include <nlohmann/json.hpp>

namespace attnlab {

struct DecoderLayout {
    // Norm tensor names under model.layers.{l}.; nullptr when the architecture has no such norm.
    const char* attn_norm = "input_layernorm";
    const char* post_attn_norm = nullptr;
    const char* mlp_norm = "post_attention_layernorm";
    const char* post_mlp_norm = nullptr;
    bool fused_qkv = false;      // self_attn.qkv_proj (Phi-3)
    bool fused_gate_up = false;  // mlp.gate_up_proj (Phi-3)
};

void load_decoder_layout(const WeightStore& store, const ModelConfig& config,
                         const DecoderLayout& layout, ModelWeights& weights);

// A norm weight (and bias for LayerNorm) widened to f32; `required` false allows absence.
NormWeights load_norm(const WeightStore& store, const std::string& prefix, int64_t width,
                      bool with_bias);
// A vector (N) widened to f32.
Tensor load_vector(const WeightStore& store, const std::string& name, int64_t n);

// Fields shared by the llama family of configs; see config.cpp.
void parse_decoder_common(const nlohmann::json& j, ModelConfig& c);
bool parse_layer_types(const nlohmann::json& j, ModelConfig& c, int64_t window);
// Qwen2/Qwen3: windows only when use_sliding_window, on layers >= max_window_layers (or as
// layer_types says). Returns whether windows are in use.
bool parse_qwen_windows(const nlohmann::json& j, ModelConfig& c);

}  // namespace attnlab
