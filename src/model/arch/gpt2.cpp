// GPT-2: learned absolute positions, LayerNorm with bias, fused c_attn, GELU-tanh MLP with
// biases, tied lm_head. Its Conv1D layers store weights as (in, out); we use transposed views
// of them, never copies.
#include "model/architecture.h"
#include "model/config_json.h"
#include "model/decoder_layout.h"

namespace attnlab {

using namespace config_json;

static void configure_gpt2(const nlohmann::json& j, ModelConfig& c) {
    c.vocab_size = require_size(j, "vocab_size");
    c.hidden_size = require_size(j, "n_embd");
    c.n_layer = require_size(j, "n_layer");
    c.n_head = require_size(j, "n_head");
    c.n_head_kv = c.n_head;
    ATTNLAB_CHECK(c.hidden_size % c.n_head == 0, FormatError,
                  "[config] n_embd ({}) must be a multiple of n_head ({})", c.hidden_size, c.n_head);
    c.head_dim = c.hidden_size / c.n_head;
    c.intermediate_size = get_int(j, "n_inner").value_or(4 * c.hidden_size);
    ATTNLAB_CHECK(c.intermediate_size > 0, FormatError, "[config] n_inner must be positive");
    c.max_position_embeddings = require_size(j, "n_positions");
    c.norm_eps = get_number(j, "layer_norm_epsilon").value_or(1e-5);
    c.norm_kind = NormKind::LayerNorm;
    c.activation = parse_activation(get_string(j, "activation_function").value_or("gelu_new"));
    c.gated_mlp = false;
    c.tie_word_embeddings = get_bool(j, "tie_word_embeddings").value_or(true);
    ATTNLAB_CHECK(c.tie_word_embeddings, NotSupported, "[config] untied GPT-2 is not supported yet");
    c.attention_bias = true;
    c.o_bias = true;
    c.mlp_bias = true;
    c.learned_positions = true;
    if (!get_bool(j, "scale_attn_weights").value_or(true)) c.attn_scale = 1.0;
    c.scale_attn_by_inverse_layer_idx = get_bool(j, "scale_attn_by_inverse_layer_idx").value_or(false);
    c.rope.type = "none";
    c.layer_window.assign(c.n_layer, 0);
}

static void load_gpt2(const WeightStore& store, const ModelConfig& c, ModelWeights& w) {
    // Hub checkpoints name tensors with or without the "transformer." prefix.
    const std::string root = store.contains("transformer.wte.weight") ? "transformer." : "";
    const int64_t C = c.hidden_size, I = c.intermediate_size;
    w.embed = store.get(root + "wte.weight", {c.vocab_size, C});
    w.pos_embed = store.get(root + "wpe.weight", {c.max_position_embeddings, C});
    w.final_norm = load_norm(store, root + "ln_f", C, true);
    w.lm_head = w.embed;
    store.find("lm_head.weight");
    // Conv1D (in, out) -> the (out, in) view linear() expects.
    auto conv1d = [&](const std::string& name, int64_t in, int64_t out) {
        return store.get(name, {in, out}).transpose(0, 1);
    };
    w.layers.resize(c.n_layer);
    for (int64_t l = 0; l < c.n_layer; ++l) {
        const std::string p = fmt::format("{}h.{}.", root, l);
        LayerWeights& L = w.layers[l];
        store.find(p + "attn.bias");         // causal-mask buffers of old checkpoints
        store.find(p + "attn.masked_bias");
        L.attn_norm = load_norm(store, p + "ln_1", C, true);
        L.mlp_norm = load_norm(store, p + "ln_2", C, true);
        Tensor qkv = conv1d(p + "attn.c_attn.weight", C, 3 * C);  // (3C, C)
        L.wq = qkv.slice(0, 0, C);
        L.wk = qkv.slice(0, C, 2 * C);
        L.wv = qkv.slice(0, 2 * C, 3 * C);
        Tensor bqkv = load_vector(store, p + "attn.c_attn.bias", 3 * C);
        L.bq = bqkv.slice(0, 0, C);
        L.bk = bqkv.slice(0, C, 2 * C);
        L.bv = bqkv.slice(0, 2 * C, 3 * C);
        L.wo = conv1d(p + "attn.c_proj.weight", C, C);
        L.bo = load_vector(store, p + "attn.c_proj.bias", C);
        L.w_up = conv1d(p + "mlp.c_fc.weight", C, I);
        L.b_up = load_vector(store, p + "mlp.c_fc.bias", I);
        L.w_down = conv1d(p + "mlp.c_proj.weight", I, C);
        L.b_down = load_vector(store, p + "mlp.c_proj.bias", C);
    }
}

const Architecture kGpt2{"gpt2", configure_gpt2, load_gpt2};

}  // namespace attnlab
