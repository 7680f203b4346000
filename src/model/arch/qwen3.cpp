// Qwen3: Llama's layout plus per-head RMSNorm on queries and keys (before RoPE); head_dim is
// independent of hidden_size / heads; attention_bias covers q/k/v/o.
#include "model/architecture.h"
#include "model/decoder_layout.h"

namespace attnlab {

static void configure_qwen3(const nlohmann::json& j, ModelConfig& c) {
    parse_decoder_common(j, c);
    c.qk_norm = QKNorm::PerHead;
    parse_qwen_windows(j, c);
}

static void load_qwen3(const WeightStore& store, const ModelConfig& c, ModelWeights& w) {
    load_decoder_layout(store, c, DecoderLayout{}, w);
}

const Architecture kQwen3{"qwen3", configure_qwen3, load_qwen3};

}  // namespace attnlab
