// Architectures: one file each in src/model/arch/, listed in arch/registry.cpp.
//
// An architecture reads its quirks from config.json (after the fields every architecture
// shares have been parsed) and maps its checkpoint's tensor names onto ModelWeights. The
// forward pass itself is the shared decoder (src/model/decoder.cpp), driven by the
// ModelConfig fields an architecture sets (norm kind, pre/post norms, q/k norms, softcaps,
// per-layer windows and rope).
#pragma once

#include "model/weights.h"

#include <nlohmann/json.hpp>

#include <string_view>

namespace attnlab {

struct Architecture {
    std::string_view model_type;  // config.json "model_type"
    void (*configure)(const nlohmann::json& config_json, ModelConfig& config);
    void (*load_weights)(const WeightStore& store, const ModelConfig& config,
                         ModelWeights& weights);
};

const Architecture* find_architecture(std::string_view model_type);
std::vector<std::string_view> architecture_names();

// The architectures (each defined in its own file under arch/).
extern const Architecture kLlama, kMistral, kQwen2, kQwen3, kGemma2, kGemma3, kPhi3, kOlmo2,
    kGpt2;

}  // namespace attnlab
