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

// Pre-packed weights, for callers that multiply many row blocks by the same W (attention's K
// and V tiles): pack_weight_panels widens W (N, K) to f32 micro-panels — panel p holds columns
// p·w .. p·w+w-1 (w = packed_panel_width(), zero-padded) as (K, w) floats, panels K·w apart;
// packed_size(W) floats in all. linear_packed computes y (M, N) (+)= x (M, K) · Wᵀ reading rows
// k_offset .. k_offset+K-1 of panels `panel_stride` floats apart. Serial (one thread). The
// panels are stored and read with aligned vector accesses: dst must be 64-byte aligned
// (cpu::ScratchBuffer is).
int64_t packed_panel_width();
int64_t packed_size(const Tensor& weight);
void pack_weight_panels(const Tensor& weight, float* dst);
void linear_packed(const float* x, int64_t ldx, const float* panels, int64_t panel_stride, int64_t k_offset,
                   int64_t N, int64_t K, float* y, int64_t ldy, int64_t M, bool accumulate);
// The same product with x packed beforehand, for callers that multiply the same rows by many
// packed W (attention's queries by every key tile): pack_rows writes x (M, K; rows ldx apart)
// into packed_rows_size(M, K) floats of micro-panels, which linear_prepacked then reads instead
// of x. The layout belongs to the GEMM target chosen at run time; use it only with these calls.
int64_t packed_rows_size(int64_t M, int64_t K);
void pack_rows(const float* x, int64_t ldx, int64_t M, int64_t K, float* dst);
void linear_prepacked(const float* x_packed, const float* panels, int64_t panel_stride, int64_t k_offset, int64_t N,
                      int64_t K, float* y, int64_t ldy, int64_t M, bool accumulate);

// A straightforward float64-accumulating version of linear() for tests.
void linear_reference(const float* x, int64_t ldx, const Tensor& weight, const float* bias,
                      float* y, int64_t ldy, int64_t M, bool accumulate = false);

}  // namespace attnlab::cpu
