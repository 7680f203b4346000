// Mistral: Llama's layout with a sliding window on every layer (keys with i - j < window).
#include "model/architecture.h"
#include "model/config_json.h"
#include "model/decoder_layout.h"

namespace attnlab {

static void configure_mistral(const nlohmann::json& j, ModelConfig& c) {
    parse_decoder_common(j, c);
    int64_t window = config_json::get_int(j, "sliding_window").value_or(0);
    ATTNLAB_CHECK(window >= 0, FormatError, "[config] sliding_window must be >= 0, got {}", window);
    if (!parse_layer_types(j, c, window)) c.layer_window.assign(c.n_layer, window);
}

static void load_mistral(const WeightStore& store, const ModelConfig& c, ModelWeights& w) {
    load_decoder_layout(store, c, DecoderLayout{}, w);
}

const Architecture kMistral{"mistral", configure_mistral, load_mistral};

}  // namespace attnlab
