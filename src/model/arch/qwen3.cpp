// Qwen3: Llama's layout plus per-head RMSNorm on queries and keys (before RoPE); head_dim is
// independent of hidden_size / heads; attention_bias covers q/k/v/o.
#include "model/architecture.h"
#include "model/config_json.h"
#include "model/decoder_layout.h"

namespace attnlab {

static void configure_qwen3(const nlohmann::json& j, ModelConfig& c) {
    parse_decoder_common(j, c);
    c.qk_norm = QKNorm::PerHead;
    const bool use_window = config_json::get_bool(j, "use_sliding_window").value_or(false);
    const int64_t window = config_json::get_int(j, "sliding_window").value_or(0);
    if (!use_window) return;
    if (!parse_layer_types(j, c, window)) {
        const int64_t first = config_json::get_int(j, "max_window_layers").value_or(c.n_layer);
        for (int64_t l = first; l < c.n_layer; ++l) c.layer_window[l] = window;
    }
}

static void load_qwen3(const WeightStore& store, const ModelConfig& c, ModelWeights& w) {
    load_decoder_layout(store, c, DecoderLayout{}, w);
}

const Architecture kQwen3{"qwen3", configure_qwen3, load_qwen3};

}  // namespace attnlab
