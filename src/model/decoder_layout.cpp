#include "model/decoder_layout.h"

#include <attnlab/error.h>

namespace attnlab {

Tensor load_vector(const WeightStore& store, const std::string& name, int64_t n) {
    return store.get(name, {n}).to(DType::F32);
}

NormWeights load_norm(const WeightStore& store, const std::string& prefix, int64_t width,
                      bool with_bias) {
    NormWeights norm;
    norm.weight = load_vector(store, prefix + ".weight", width);
    if (with_bias) norm.bias = load_vector(store, prefix + ".bias", width);
    return norm;
}

void load_decoder_layout(const WeightStore& store, const ModelConfig& c, const DecoderLayout& layout,
                         ModelWeights& w) {
    const int64_t C = c.hidden_size, D = c.head_dim, I = c.intermediate_size;
    const int64_t q_width = c.n_head * D, kv_width = c.n_head_kv * D;
    w.embed = store.get("model.embed_tokens.weight", {c.vocab_size, C});
    w.final_norm = load_norm(store, "model.norm", C, false);
    if (c.tie_word_embeddings) {
        w.lm_head = w.embed;
        store.find("lm_head.weight");  // some tied checkpoints still store a copy: accept it
    } else {
        w.lm_head = store.get("lm_head.weight", {c.vocab_size, C});
    }
    w.layers.resize(static_cast<size_t>(c.n_layer));
    for (int64_t l = 0; l < c.n_layer; ++l) {
        const std::string p = fmt::format("model.layers.{}.", l);
        LayerWeights& L = w.layers[static_cast<size_t>(l)];
        if (layout.attn_norm) L.attn_norm = load_norm(store, p + layout.attn_norm, C, false);
        if (layout.post_attn_norm) L.post_attn_norm = load_norm(store, p + layout.post_attn_norm, C, false);
        if (layout.mlp_norm) L.mlp_norm = load_norm(store, p + layout.mlp_norm, C, false);
        if (layout.post_mlp_norm) L.post_mlp_norm = load_norm(store, p + layout.post_mlp_norm, C, false);
        if (layout.fused_qkv) {
            // Rows of the fused (q; k; v) matrix: row slices of a row-major matrix are views.
            Tensor qkv = store.get(p + "self_attn.qkv_proj.weight", {q_width + 2 * kv_width, C});
            L.wq = qkv.slice(0, 0, q_width);
            L.wk = qkv.slice(0, q_width, q_width + kv_width);
            L.wv = qkv.slice(0, q_width + kv_width, q_width + 2 * kv_width);
        } else {
            L.wq = store.get(p + "self_attn.q_proj.weight", {q_width, C});
            L.wk = store.get(p + "self_attn.k_proj.weight", {kv_width, C});
            L.wv = store.get(p + "self_attn.v_proj.weight", {kv_width, C});
        }
        if (c.attention_bias) {
            L.bq = load_vector(store, p + "self_attn.q_proj.bias", q_width);
            L.bk = load_vector(store, p + "self_attn.k_proj.bias", kv_width);
            L.bv = load_vector(store, p + "self_attn.v_proj.bias", kv_width);
        }
        L.wo = store.get(p + "self_attn.o_proj.weight", {C, q_width});
        if (c.o_bias) L.bo = load_vector(store, p + "self_attn.o_proj.bias", C);
        if (c.qk_norm == QKNorm::PerHead) {
            L.q_norm = load_norm(store, p + "self_attn.q_norm", D, false);
            L.k_norm = load_norm(store, p + "self_attn.k_norm", D, false);
        } else if (c.qk_norm == QKNorm::FullWidth) {
            L.q_norm = load_norm(store, p + "self_attn.q_norm", q_width, false);
            L.k_norm = load_norm(store, p + "self_attn.k_norm", kv_width, false);
        }
        if (layout.fused_gate_up) {
            Tensor gate_up = store.get(p + "mlp.gate_up_proj.weight", {2 * I, C});
            L.w_gate = gate_up.slice(0, 0, I);
            L.w_up = gate_up.slice(0, I, 2 * I);
        } else {
            L.w_gate = store.get(p + "mlp.gate_proj.weight", {I, C});
            L.w_up = store.get(p + "mlp.up_proj.weight", {I, C});
        }
        L.w_down = store.get(p + "mlp.down_proj.weight", {C, I});
        if (c.mlp_bias) {
            L.b_gate = load_vector(store, p + "mlp.gate_proj.bias", I);
            L.b_up = load_vector(store, p + "mlp.up_proj.bias", I);
            L.b_down = load_vector(store, p + "mlp.down_proj.bias", C);
        }
    }
}

}  // namespace attnlab
