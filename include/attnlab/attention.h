// The attention entry point every architecture calls.
//
// One call computes softmax(scale·q·kᵀ, modified and masked as the spec says)·v for one
// sequence, with queries at positions q_pos0 .. q_pos0+T-1 against keys at 0 .. S-1 (so a
// KV-cache offset is simply q_pos0 = S - T). GQA: query head h reads kv head h / (H / Hkv).
// The scores/pattern outputs are (H, T, S) and are written only when asked for: the
// default path never materialises T×S.
#pragma once

#include <cstdint>

namespace attnlab {

struct AttentionSpec {
    double scale = 0.0;    // 0 = 1/sqrt(D)
    bool causal = true;    // keep j <= i
    int64_t window = 0;    // > 0: keep i - j < window (Mistral / Gemma sliding layers)
    double softcap = 0.0;  // > 0: s = softcap·tanh(s/softcap) before masking (Gemma-2)
};

struct AttentionInputs {
    const float* q = nullptr;  // (T, H, D), row stride q_stride floats between positions
    const float* k = nullptr;  // (S, Hkv, D), row stride k_stride
    const float* v = nullptr;  // (S, Hkv, Dv), row stride v_stride
    int64_t q_stride = 0, k_stride = 0, v_stride = 0;
    int64_t T = 0, S = 0, H = 0, Hkv = 0, D = 0, Dv = 0;
    int64_t q_pos0 = 0;
};

struct AttentionOutputs {
    float* out = nullptr;  // (T, H, Dv), row stride out_stride
    int64_t out_stride = 0;
    float* lse = nullptr;      // (T, H) natural-log normaliser; -inf for rows with no key
    float* scores = nullptr;   // (H, T, S) scaled, modified, masked (-inf) scores
    float* pattern = nullptr;  // (H, T, S) probabilities (0 where masked)
};

// Throws InvalidArgument for inconsistent shapes. Rows with no kept key give out = 0.
void attention(const AttentionSpec& spec, const AttentionInputs& in, const AttentionOutputs& out);

// The same computation in float64, one row at a time: the oracle for tests.
void attention_reference(const AttentionSpec& spec, const AttentionInputs& in,
                         const AttentionOutputs& out);

}  // namespace attnlab
