// Qwen2 / Qwen2.5: Llama's layout with q/k/v biases (o_proj has none); sliding windows only
// when use_sliding_window is set, on layers >= max_window_layers.
#include "model/architecture.h"
#include "model/config_json.h"
#include "model/decoder_layout.h"

namespace attnlab {

static void configure_qwen2(const nlohmann::json& j, ModelConfig& c) {
    parse_decoder_common(j, c);
    c.attention_bias = true;
    c.o_bias = false;
    const bool use_window = config_json::get_bool(j, "use_sliding_window").value_or(false);
    const int64_t window = config_json::get_int(j, "sliding_window").value_or(0);
    if (!use_window) return;  // layer_types, if written, then says full_attention everywhere
    if (!parse_layer_types(j, c, window)) {
        const int64_t first = config_json::get_int(j, "max_window_layers").value_or(c.n_layer);
        for (int64_t l = first; l < c.n_layer; ++l) c.layer_window[l] = window;
    }
}

static void load_qwen2(const WeightStore& store, const ModelConfig& c, ModelWeights& w) {
    load_decoder_layout(store, c, DecoderLayout{}, w);
}

const Architecture kQwen2{"qwen2", configure_qwen2, load_qwen2};

}  // namespace attnlab
