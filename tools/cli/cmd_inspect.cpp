// attnlab inspect: what a checkpoint is and what running it costs.
#include "cli_common.h"

#include <cstdio>
#include <map>

namespace attnlab::cli {

static std::string human_bytes(double b) {
    const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int u = 0;
    while (b >= 1024 && u < 4) {
        b /= 1024;
        ++u;
    }
    return fmt::format("{:.2f} {}", b, units[u]);
}

Command add_inspect(CLI::App& root) {
    auto o = std::make_shared<ModelOptions>();
    CLI::App* app = root.add_subcommand("inspect", "Describe a model: architecture, sizes, rope, memory");
    o->add_to(*app);
    return {app, [o] {
        auto model = o->load();
        const ModelConfig& c = model->config();
        std::string dtypes;
        for (const auto& [d, n] : model->parameters_by_dtype()) dtypes += fmt::format("{}{} ({} params)", dtypes.empty() ? "" : ", ", d, n);
        std::string windows;
        int64_t sliding = 0;
        for (int64_t w : c.layer_window) sliding += w > 0;
        if (sliding == 0) windows = "all full attention";
        else {
            for (size_t l = 0; l < c.layer_window.size(); ++l)
                windows += c.layer_window[l] > 0 ? fmt::format("S{}", c.layer_window[l]) + " " : "F ";
            windows = fmt::format("{} sliding / {} full: {}", sliding, c.n_layer - sliding, windows);
        }
        const double kv_per_token = 2.0 * c.n_layer * c.n_head_kv * c.head_dim * 4.0;  // f32 K and V
        std::printf("model          %s\n", model->directory().c_str());
        std::printf("architecture   %s (model_type %s)\n", c.architecture.c_str(), c.model_type.c_str());
        std::printf("parameters     %lld (%.1f M)\n", static_cast<long long>(model->parameter_count()),
                    model->parameter_count() / 1e6);
        std::printf("dtypes         %s (config dtype %s)\n", dtypes.c_str(), c.dtype.c_str());
        std::printf("layers         %lld, hidden %lld, ffn %lld, vocab %lld\n", (long long)c.n_layer,
                    (long long)c.hidden_size, (long long)c.intermediate_size, (long long)c.vocab_size);
        std::printf("attention      %lld heads, %lld kv heads (GQA %lld), head_dim %lld%s%s\n",
                    (long long)c.n_head, (long long)c.n_head_kv, (long long)(c.n_head / c.n_head_kv),
                    (long long)c.head_dim, c.attn_softcap > 0 ? fmt::format(", softcap {}", c.attn_softcap).c_str() : "",
                    c.qk_norm != QKNorm::None ? ", q/k norm" : "");
        std::printf("layer types    %s\n", windows.c_str());
        if (c.learned_positions)
            std::printf("positions      learned, %lld\n", (long long)c.max_position_embeddings);
        else
            std::printf("rope           %s, theta %g, factor %g, partial %g%s; context %lld\n", c.rope.type.c_str(),
                        c.rope.theta, c.rope.factor, c.rope.partial_rotary_factor,
                        c.rope_local ? fmt::format(", local theta {}", c.rope_local->theta).c_str() : "",
                        (long long)c.max_position_embeddings);
        std::printf("embeddings     %s\n", c.tie_word_embeddings ? "tied" : "untied");
        std::printf("tokenizer      %s\n", model->tokenizer() ? "tokenizer.json" : "none (use --ids)");
        std::printf("memory         weights %s (mmap'd); KV cache %s per token, %s at full context\n",
                    human_bytes(static_cast<double>(model->weight_bytes())).c_str(), human_bytes(kv_per_token).c_str(),
                    human_bytes(kv_per_token * c.max_position_embeddings).c_str());
        return 0;
    }};
}

}  // namespace attnlab::cli
