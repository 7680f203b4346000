// Gemma-2: (1+w) RMSNorm before and after both attention and MLP, embeddings scaled by
// sqrt(C), GELU-tanh gated MLP, scores scaled by query_pre_attn_scalar^-1/2 and soft-capped,
// final logits soft-capped, sliding window on even layers (layer_types when given), tied.
#include "model/arch/gemma_common.h"
#include "model/config_json.h"
#include "model/decoder_layout.h"

#include <cmath>

namespace attnlab {


// A soft-cap field: absent -> the config class default; explicit null -> off.
static double softcap_field(const nlohmann::json& j, const char* key, double class_default) {
    if (!j.contains(key)) return class_default;
    return config_json::get_number(j, key).value_or(0.0);
}

// Shared by Gemma-3 (gemma3.cpp): the parts both Gemma generations configure alike. The
// defaults are those of transformers' config classes, used when a field is absent.
void configure_gemma_common(const nlohmann::json& j, ModelConfig& c, const GemmaDefaults& d) {
    c.tie_word_embeddings = true;
    c.rope.theta = d.rope_theta;
    parse_decoder_common(j, c);
    // Gemma's MLP reads hidden_activation only (hidden_act is ignored by transformers).
    c.activation = config_json::parse_activation(
        config_json::get_string(j, "hidden_activation").value_or("gelu_pytorch_tanh"));
    c.norm_kind = NormKind::RMSNormPlusOne;
    c.post_norms = true;
    c.embedding_scale = std::sqrt(static_cast<double>(c.hidden_size));
    const double query_scalar =
        config_json::get_number(j, "query_pre_attn_scalar").value_or(d.query_pre_attn_scalar);
    ATTNLAB_CHECK(query_scalar > 0, FormatError, "[config] query_pre_attn_scalar must be positive");
    c.attn_scale = 1.0 / std::sqrt(query_scalar);
    c.attn_softcap = softcap_field(j, "attn_logit_softcapping", d.attn_softcap);
    c.final_softcap = softcap_field(j, "final_logit_softcapping", d.final_softcap);
}

void load_gemma_common(const WeightStore& store, const ModelConfig& c, ModelWeights& w) {
    DecoderLayout layout;
    layout.post_attn_norm = "post_attention_layernorm";
    layout.mlp_norm = "pre_feedforward_layernorm";
    layout.post_mlp_norm = "post_feedforward_layernorm";
    load_decoder_layout(store, c, layout, w);
}

static void configure_gemma2(const nlohmann::json& j, ModelConfig& c) {
    configure_gemma_common(j, c, GemmaDefaults{256.0, 50.0, 30.0, 10000.0});
    const int64_t window = config_json::get_int(j, "sliding_window").value_or(4096);
    if (!parse_layer_types(j, c, window))
        for (int64_t l = 0; l < c.n_layer; l += 2) c.layer_window[l] = window;
}

const Architecture kGemma2{"gemma2", configure_gemma2, load_gemma_common};

}  // namespace attnlab
