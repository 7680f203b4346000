// Gemma-3 (text): Gemma-2's sandwich norms and scaling, plus per-head (1+w) RMSNorm on q and k,
// no soft-capping by default, and a 5:1 pattern of sliding-window to global layers
// (sliding_window_pattern, or layer_types) where sliding layers use their own RoPE base
// (rope_local_base_freq, default 10000) and global layers rope_theta with rope_scaling.
#include "model/arch/gemma_common.h"
#include "model/config_json.h"
#include "model/decoder_layout.h"

namespace attnlab {


static void configure_gemma3(const nlohmann::json& j, ModelConfig& c) {
    configure_gemma_common(j, c, GemmaDefaults{256.0, 0.0, 0.0, 1000000.0});
    c.qk_norm = QKNorm::PerHead;
    const int64_t window = config_json::get_int(j, "sliding_window").value_or(4096);
    if (!parse_layer_types(j, c, window)) {
        const int64_t pattern = config_json::get_int(j, "sliding_window_pattern").value_or(6);
        ATTNLAB_CHECK(pattern > 0, FormatError, "[config] sliding_window_pattern must be positive");
        for (int64_t l = 0; l < c.n_layer; ++l)
            c.layer_window[l] = ((l + 1) % pattern) != 0 ? window : 0;
    }
    if (!c.rope_local) {  // classic spelling: a separate base for local layers, no scaling
        RopeConfig local;
        local.theta = config_json::get_number(j, "rope_local_base_freq").value_or(10000.0);
        local.partial_rotary_factor = c.rope.partial_rotary_factor;
        c.rope_local = local;
    }
}

const Architecture kGemma3{"gemma3_text", configure_gemma3, load_gemma_common};

}  // namespace attnlab
