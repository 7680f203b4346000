// Phi-3 / Phi-3.5 / Phi-4-mini: fused qkv_proj and gate_up_proj (gate rows first), optional
// partial rotary embedding and sliding window. LongRoPE scaling is not supported yet.
#include "model/architecture.h"
#include "model/config_json.h"
#include "model/decoder_layout.h"

namespace attnlab {

static void configure_phi3(const nlohmann::json& j, ModelConfig& c) {
    c.norm_eps = 1e-5;  // transformers' default for this config class
    parse_decoder_common(j, c);
    const int64_t window = config_json::get_int(j, "sliding_window").value_or(0);
    ATTNLAB_CHECK(window >= 0, FormatError, "[config] sliding_window must be >= 0");
    if (!parse_layer_types(j, c, window)) c.layer_window.assign(c.n_layer, window);
}

static void load_phi3(const WeightStore& store, const ModelConfig& c, ModelWeights& w) {
    DecoderLayout layout;
    layout.fused_qkv = true;
    layout.fused_gate_up = true;
    load_decoder_layout(store, c, layout, w);
}

const Architecture kPhi3{"phi3", configure_phi3, load_phi3};

}  // namespace attnlab
