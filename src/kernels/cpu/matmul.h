// Dense matrix products for the model's linear layers (CPU).
//
// Weights are used in their stored dtype (f32, bf16 or f16, straight from the mmap'd
// checkpoint); activations and accumulation are f32, so results match a float32 reference.
#pragma once

#include <attnlab/tensor.h>

#include <cstdint>

namespace attnlab::cpu {

// y (M, N) = x (M, K) · Wᵀ (+ bias), i.e. torch.nn.functional.linear.
//   x: f32 rows with leading dimension ldx (>= K).
//   weight: (N, K) f32 / bf16 / f16, either row-major (strides (K', 1), K' >= K) or the transposed
//           view of a row-major (K, N) matrix (strides (1, N')) as GPT-2's Conv1D stores it.
//   bias: (N) f32 or nullptr.
//   y: f32 rows with leading dimension ldy (>= N). If accumulate, y += x·Wᵀ (+ bias).
// Multithreaded over the thread pool (attnlab::parallel_for).
void linear(const float* x, int64_t ldx, const Tensor& weight, const float* bias, float* y,
            int64_t ldy, int64_t M, bool accumulate = false);

// A straightforward float64-accumulating version of linear() for tests.
void linear_reference(const float* x, int64_t ldx, const Tensor& weight, const float* bias,
                      float* y, int64_t ldy, int64_t M, bool accumulate = false);

}  // namespace attnlab::cpu
