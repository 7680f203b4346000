// The model's final norm and unembedding on their own, for probes that read the residual stream
// as logits (logit lens) or split a logit into per-component terms (direct logit attribution).
//
// decoder.cpp's apply_norm is file-local to the forward pass, so this calls the same kernels it
// does (cpu::norm, cpu::linear, cpu::softcap_inplace) with the same arguments: unembed() of the
// last layer's residual reproduces forward()'s logits to float rounding (the matmul may block
// its sums differently for a different number of rows).
#include "kernels/cpu/elementwise.h"
#include "kernels/cpu/matmul.h"
#include "model/weights.h"

#include <attnlab/error.h>

#include <cmath>

namespace attnlab {

Tensor Model::unembed(const float* residual, int64_t T, bool softcap) const {  // residual (T, C)
    const ModelConfig& c = config_;
    const ModelWeights& w = *weights_;
    const int64_t C = c.hidden_size, V = c.vocab_size;
    ATTNLAB_CHECK(T > 0 && residual != nullptr, InvalidArgument, "[unembed] no residual rows (T = {})", T);
    std::vector<float> normed(static_cast<size_t>(T * C));  // (T, C)
    const NormWeights& n = w.final_norm;
    cpu::norm(c.norm_kind, residual, C, n.weight.data<float>(), n.bias.defined() ? n.bias.data<float>() : nullptr,
              static_cast<float>(c.norm_eps), normed.data(), C, T, C);
    Tensor logits = Tensor::empty({T, V});  // (T, V)
    cpu::linear(normed.data(), C, w.lm_head, nullptr, logits.data<float>(), V, T);
    if (softcap && c.final_softcap > 0)
        cpu::softcap_inplace(logits.data<float>(), static_cast<float>(c.final_softcap), T * V);
    return logits;
}

std::vector<Model::FrozenFinalNorm> Model::freeze_final_norm(const float* residual, int64_t T) const {  // (T, C)
    const ModelConfig& c = config_;
    const NormWeights& n = weights_->final_norm;
    const int64_t C = c.hidden_size;
    // The per-channel parameters are the same for every row.
    FrozenFinalNorm shared;
    shared.centered = c.norm_kind == NormKind::LayerNorm;
    shared.weight.resize(static_cast<size_t>(C));
    const float* wt = n.weight.data<float>();
    for (int64_t i = 0; i < C; ++i)
        shared.weight[i] = c.norm_kind == NormKind::RMSNormPlusOne ? 1.0f + wt[i] : wt[i];
    if (shared.centered && n.bias.defined()) {
        const float* b = n.bias.data<float>();
        shared.bias.assign(b, b + C);
    }
    std::vector<FrozenFinalNorm> rows(static_cast<size_t>(T), shared);
    for (int64_t t = 0; t < T; ++t) {
        // The same float64 statistics as cpu::norm, so the frozen map is the real one.
        const float* x = residual + t * C;
        double mean = 0.0;
        if (shared.centered) {
            for (int64_t i = 0; i < C; ++i) mean += x[i];
            mean /= static_cast<double>(C);
        }
        double sq = 0.0;
        for (int64_t i = 0; i < C; ++i) sq += (x[i] - mean) * (x[i] - mean);
        rows[t].scale = 1.0 / std::sqrt(sq / static_cast<double>(C) + static_cast<float>(c.norm_eps));
    }
    return rows;
}

std::vector<float> Model::unembedding_rows(std::span<const int32_t> tokens) const {
    const int64_t C = config_.hidden_size, V = config_.vocab_size;
    std::vector<float> out;
    out.reserve(tokens.size() * static_cast<size_t>(C));
    for (int32_t id : tokens) {
        ATTNLAB_CHECK(id >= 0 && id < V, InvalidArgument, "[unembed] token id {} is out of range for vocabulary size {}",
                      id, V);
        // lm_head may be a strided (transposed) view; to_floats() widens any dtype and layout.
        const std::vector<float> row = weights_->lm_head.select(0, id).to_floats();  // (C)
        out.insert(out.end(), row.begin(), row.end());
    }
    return out;
}

}  // namespace attnlab
