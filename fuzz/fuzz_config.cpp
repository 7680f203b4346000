// libFuzzer target: parse_model_config on arbitrary text. Only attnlab::Error may come out, and
// a config that parses must satisfy the invariants the model builder relies on.
#include <attnlab/error.h>
#include <attnlab/model.h>

#include <cstdint>
#include <cstdlib>
#include <string>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string text(reinterpret_cast<const char*>(data), size);
    try {
        attnlab::ModelConfig c = attnlab::parse_model_config(text, "fuzz/config.json");
        const bool ok = c.vocab_size > 0 && c.hidden_size > 0 && c.n_layer > 0 && c.n_head > 0 &&
                        c.n_head_kv > 0 && c.n_head % c.n_head_kv == 0 && c.head_dim > 0 &&
                        c.head_dim % 2 == 0 && c.max_position_embeddings > 0 &&
                        static_cast<int64_t>(c.layer_window.size()) == c.n_layer;
        if (!ok) std::abort();
        for (int64_t w : c.layer_window)
            if (w < 0) std::abort();
    } catch (const attnlab::Error&) {
        // Rejected cleanly.
    }
    return 0;
}
