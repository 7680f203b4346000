// What Gemma-2 (gemma2.cpp, which defines these) and Gemma-3 (gemma3.cpp) share: sandwich
// (1+w) RMSNorms, sqrt(C) embedding scale, query_pre_attn_scalar, soft-caps, GELU-tanh MLP.
#pragma once

#include "model/architecture.h"

namespace attnlab {

// transformers' config-class defaults, used when config.json leaves a field out.
struct GemmaDefaults {
    double query_pre_attn_scalar, attn_softcap, final_softcap, rope_theta;
};

void configure_gemma_common(const nlohmann::json& j, ModelConfig& c, const GemmaDefaults& d);
void load_gemma_common(const WeightStore& store, const ModelConfig& c, ModelWeights& w);

}  // namespace attnlab
