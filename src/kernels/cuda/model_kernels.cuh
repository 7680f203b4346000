// The decoder's kernels other than matmuls and attention (src/kernels/cuda/model_forward.cu
// runs them): embedding gather, residual add + norm, the q/k/v epilogue (bias, q/k norm, RoPE,
// cache write), MLP activations, logit softcap, argmax and the sampler's token choice. The GPU
// twins of src/kernels/cpu/elementwise.h and select_token (src/runtime/generate.cpp);
// activations are f32 and accumulation is f32 (the sampler's weights: f64, as on the CPU).
//
// Element types: `Out`/`Att` is float (the F32 precision) or __nv_bfloat16 (BF16), the dtype of
// matmul inputs, attention inputs and the KV cache; `Table` is the embedding table's.
#pragma once

#include "kernels/cuda/cuda_util.cuh"

#include <attnlab/generate.h>

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace attnlab::cuda {

// A norm's parameters on the device; `weight` null means "no norm" (a plain copy).
// kind mirrors attnlab::NormKind: RMSNorm, RMSNormPlusOne (x·(1+w)), LayerNorm (centred, + b).
enum class NormType : int32_t { RMS = 0, RMSPlusOne = 1, Layer = 2 };
struct NormParams {
    const float* weight = nullptr;  // (n)
    const float* bias = nullptr;    // (n), LayerNorm only (may be null)
    NormType kind = NormType::RMS;
    float eps = 1e-6f;
};

// Mirrors attnlab::Activation.
enum class ActType : int32_t { SiLU = 0, GELU = 1, GELUTanh = 2, ReLU = 3 };

// x (T, C) f32 = table[ids] · scale (+ pos_table[pos0 + t]); tables (rows, C) of `Table`.
template <typename Table>
void embed(const int32_t* ids, int64_t T, const Table* table, const Table* pos_table, int64_t pos0, int64_t C,
           float scale, float* x, cudaStream_t stream);

// One row per block, in order:
//   x += post_norm(delta + delta_bias)   when delta is given (post_norm: Gemma-2 / OLMo-2)
//   y  = out_norm(x)                      when y is given (a converting copy when out_norm has no weight)
// This fuses the residual add of a sublayer with the norm in front of the next one.
struct ResidualNormArgs {
    float* x = nullptr;  // (rows, n), row stride ldx: the residual stream (or any f32 rows)
    int64_t ldx = 0, n = 0;
    const float* delta = nullptr;       // (rows, n), row stride ld_delta
    int64_t ld_delta = 0;
    const float* delta_bias = nullptr;  // (n)
    NormParams delta_norm;
    void* y = nullptr;  // (rows, n) of Out, row stride ldy; may alias x when Out is float
    int64_t ldy = 0;
    NormParams out_norm;
};
template <typename Out>
void residual_norm(const ResidualNormArgs& args, int64_t rows, cudaStream_t stream);

// x (rows, n), row stride ldx, += bias (n).
void add_bias(float* x, int64_t ldx, const float* bias, int64_t rows, int64_t n, cudaStream_t stream);

// The q/k/v epilogue after the fused projection, one warp per (position, head):
// + bias, per-head q/k norm, rotate-half RoPE on the first 2·half dims of q and k, then q to
// q_out and k, v to the cache rows of this call.
struct QkvArgs {
    const float* qkv = nullptr;  // (T, ld) f32: q (H·D) | k (Hkv·D) | v (Hkv·D)
    int64_t ld = 0;
    const float* bias = nullptr;  // ((H + 2·Hkv)·D) or null
    NormParams q_norm, k_norm;    // per head, (D); no weight: none
    const float* cos = nullptr;   // (T, half); null: no RoPE
    const float* sin = nullptr;   // (T, half)
    int32_t half = 0;             // rotated dims / 2
    int32_t T = 0, H = 0, Hkv = 0, D = 0;  // D <= 256
    void* q_out = nullptr;  // (T, H, D) Att
    void* k_out = nullptr;  // (T, Hkv, D) Att: the cache from this call's first row
    void* v_out = nullptr;  // (T, Hkv, D) Att
};
template <typename Att>
void finish_qkv(const QkvArgs& args, cudaStream_t stream);

// out (rows, I) = act(gu[:, :I] + b[:I]) · (gu[:, I:2I] + b[I:2I]) when gated, act(gu + b)
// otherwise; gu (rows, ld_gu) f32, bias ((1 or 2)·I) or null.
template <typename Out>
void activation(ActType act, bool gated, const float* gu, int64_t ld_gu, const float* bias, int64_t rows, int64_t I,
                Out* out, cudaStream_t stream);

// out (count) = in (count), converted.
template <typename Out>
void convert(const float* in, Out* out, int64_t count, cudaStream_t stream);

// x (count) = cap · tanh(x / cap)
void softcap(float* x, int64_t count, float cap, cudaStream_t stream);

// *out = argmax of x (n), the lowest index on ties.
void argmax(const float* x, int64_t n, int32_t* out, cudaStream_t stream);

// select_token (attnlab/generate.h) on the device for one row of logits: the same rule step by
// step, so given the same logits, history, params and u it picks the CPU's token. The one
// difference is the order in which the running sums of the weights are added (a parallel scan
// here, a loop there): they agree to rounding, so only a u (or top_p) within ~1e-15 of a
// cumulative boundary could split the two. Holds the device state across calls: the mask of
// ids in the history (marked incrementally: a history that extends the previous one uploads
// only its new ids) and scratch for V candidates. One pick at a time per object.
class TokenSelector {
public:
    // Queues the choice on `stream`; *out (a device int32) receives the id, or -1 where
    // select_token throws (NaN logits, a top logit of ±inf; greedy checks neither, as on the
    // CPU). `logits` (V) f32 on the device, left unmodified. Temperature 0 without a penalty is
    // one argmax launch.
    void pick(const float* logits, int64_t V, const SamplingParams& params, std::span<const int32_t> history, double u,
              int32_t* out, cudaStream_t stream);

private:
    void reserve(int64_t V);
    void mark_history(std::span<const int32_t> history, int64_t V, cudaStream_t stream);

    int64_t capacity_ = 0;                         // V the buffers below hold
    DeviceBuffer<float> keys_, sorted_keys_;       // (V) penalised logits, then by (key desc, id asc)
    DeviceBuffer<int32_t> ids_, sorted_ids_;       // (V) 0..V-1, then in the sorted order
    DeviceBuffer<double> weights_, running_;       // (V) exp((key − top) / temperature), running sums
    DeviceBuffer<std::byte> cub_scratch_;          // the radix sort's and the scan's temporary storage
    DeviceBuffer<uint8_t> seen_;                   // (V) 1 where the history holds the id
    DeviceBuffer<int32_t> bad_;                    // (1) set by a NaN logit
    DeviceBuffer<int32_t> new_ids_;                // history ids uploaded by one call
    std::vector<int32_t> marked_;                  // the history seen_ marks (host copy)
    bool mask_ready_ = false;                      // seen_ holds exactly marked_
};

}  // namespace attnlab::cuda
