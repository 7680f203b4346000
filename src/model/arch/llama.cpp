// Llama (Llama-1/2/3.x, SmolLM, TinyLlama, Vicuna...): pre-norm RMSNorm decoder, RoPE
// (default / linear / dynamic / llama3 / yarn), SiLU-gated MLP, optional q/k/v/o and MLP biases.
#include "model/architecture.h"
#include "model/decoder_layout.h"

namespace attnlab {

static void configure_llama(const nlohmann::json& j, ModelConfig& c) { parse_decoder_common(j, c); }

static void load_llama(const WeightStore& store, const ModelConfig& c, ModelWeights& w) {
    load_decoder_layout(store, c, DecoderLayout{}, w);
}

const Architecture kLlama{"llama", configure_llama, load_llama};

}  // namespace attnlab
