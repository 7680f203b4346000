// OLMo-2: norms after attention and MLP only (no pre-norms), RMSNorm on the full q and k
// projections (H*D and Hkv*D wide) before RoPE.
#include "model/architecture.h"
#include "model/decoder_layout.h"

namespace attnlab {

static void configure_olmo2(const nlohmann::json& j, ModelConfig& c) {
    c.norm_eps = 1e-5;  // transformers' default for this config class
    parse_decoder_common(j, c);
    c.qk_norm = QKNorm::FullWidth;
    c.pre_norms = false;
    c.post_norms = true;
}

static void load_olmo2(const WeightStore& store, const ModelConfig& c, ModelWeights& w) {
    DecoderLayout layout;
    layout.attn_norm = nullptr;
    layout.post_attn_norm = "post_attention_layernorm";
    layout.mlp_norm = nullptr;
    layout.post_mlp_norm = "post_feedforward_layernorm";
    load_decoder_layout(store, c, layout, w);
}

const Architecture kOlmo2{"olmo2", configure_olmo2, load_olmo2};

}  // namespace attnlab
