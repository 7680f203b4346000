// Qwen2 / Qwen2.5: Llama's layout with q/k/v biases (o_proj has none); sliding windows only
// when use_sliding_window is set, on layers >= max_window_layers.
#include "model/architecture.h"
#include "model/decoder_layout.h"

namespace attnlab {

static void configure_qwen2(const nlohmann::json& j, ModelConfig& c) {
    parse_decoder_common(j, c);
    c.attention_bias = true;
    c.o_bias = false;
    parse_qwen_windows(j, c);
}

static void load_qwen2(const WeightStore& store, const ModelConfig& c, ModelWeights& w) {
    load_decoder_layout(store, c, DecoderLayout{}, w);
}

const Architecture kQwen2{"qwen2", configure_qwen2, load_qwen2};

}  // namespace attnlab
