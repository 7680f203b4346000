// The list of architectures: adding one = one file in arch/ + one line here.
#include "model/architecture.h"

#include <array>

namespace attnlab {

static const std::array<const Architecture*, 9> kArchitectures = {
    &kLlama, &kMistral, &kQwen2, &kQwen3, &kGemma2, &kGemma3, &kPhi3, &kOlmo2, &kGpt2,
};

const Architecture* find_architecture(std::string_view model_type) {
    for (const Architecture* a : kArchitectures)
        if (a->model_type == model_type) return a;
    return nullptr;
}

std::vector<std::string_view> architecture_names() {
    std::vector<std::string_view> names;
    for (const Architecture* a : kArchitectures) names.push_back(a->model_type);
    return names;
}

}  // namespace attnlab
