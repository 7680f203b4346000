// Row-wise and element-wise kernels of the decoder (CPU, f32): norms, RoPE, activations.
#pragma once

#include <attnlab/model.h>

#include <cstdint>

namespace attnlab::cpu {

// y (rows, n) = norm(x (rows, n)) with weight (n) [and bias (n)]; x and y may alias.
// RMSNorm: x / sqrt(mean(x²) + eps) · w; RMSNormPlusOne: · (1 + w); LayerNorm: centred, + b.
// Accumulates in double: rows are short and this keeps f32 results within an ulp or two
// of a float64 reference.
void norm(NormKind kind, const float* x, int64_t ldx, const float* weight, const float* bias,
          float eps, float* y, int64_t ldy, int64_t rows, int64_t n);

// Applies rotate-half RoPE in place to the first rot_dim dims of each head of x (T, heads, D)
// (row stride ldx floats between positions): cos/sin are (T, rot_dim/2).
void rope_rotate_half(float* x, int64_t ldx, int64_t T, int64_t heads, int64_t D, int64_t rot_dim,
                      const float* cos, const float* sin);

// gate (rows, n) := act(gate) * up, in place (gated MLPs); up may be null for plain act.
void activate(Activation act, float* gate, const float* up, int64_t count);

// x (count) += y (count)
void add_inplace(float* x, const float* y, int64_t count);
// x (count) *= s
void scale_inplace(float* x, float s, int64_t count);
// x (rows, n) += bias (n)
void add_bias(float* x, int64_t ldx, const float* bias, int64_t rows, int64_t n);
// x = c·tanh(x/c)
void softcap_inplace(float* x, float cap, int64_t count);

}  // namespace attnlab::cpu
