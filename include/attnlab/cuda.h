// The attention operator on an NVIDIA GPU (the CUDA backend, src/kernels/cuda/).
//
// Same call and same meaning as attention() in attention.h, with these differences:
// - q, k, v (AttentionInputs) and out, lse (AttentionOutputs) are DEVICE pointers; q, k, v are
//   f32, bf16 or f16 (dtype F32, BF16 or F16), out is f32 (B, T, H, Dv) with the given strides
//   and lse f32 (B, T, H) contiguous, as on the CPU. Accumulation is f32.
// - segments (S), sinks (H) and q_pos (T) stay HOST pointers: the block map is computed on the
//   host from them (the mechanisms' own visit()), and the plan uploads what the kernels read.
// - The whole spec grammar runs: every mask, score modifier, sinks and the softmax, sigmoid and
//   relu normalizers, head dims 1 ≤ D, Dv ≤ 256, GQA, batches, head ranges. Two kinds of
//   kernel share the work: the tensor-core kernels take bf16/f16 with D = Dv ∈ {64, 128, 256},
//   softmax, the masks causal, window, streaming, chunked, prefix, document, power, the
//   modifiers alibi, softcap, decay, temperature, at most one `sinks`, position strides a
//   multiple of 8 elements and 16-byte aligned pointers (they round P to the input type before
//   P·V, as every flash-attention kernel does); the general kernel takes everything else (P
//   stays f32). Pointers must be aligned to their element size.
// - AttentionOutputs::stats (AttentionStats) runs, as a second pass over the kept tiles: its
//   output pointers (mass ... column_sum) are DEVICE pointers, while `keys`, `offsets` and
//   `segments` are host data the plan uploads (a plan's runs must ask for the same chosen keys,
//   offsets, segments and bins). Column sums are accumulated in f32 with atomics (no fixed order).
// - The `scores`/`pattern` outputs and head dims above 256 throw NotSupported ("not on the GPU
//   yet"); bad calls throw InvalidArgument, CUDA failures throw CudaError. Nothing exits.
// With ATTNLAB_CUDA=OFF the same declarations exist: cuda_available() is false and the rest
// throws NotSupported, so callers need no #ifdef.
#pragma once

#include <attnlab/attention.h>
#include <attnlab/error.h>

#include <cstdint>
#include <memory>

struct CUstream_st;  // cudaStream_t without the CUDA headers

namespace attnlab {

// A CUDA runtime call failed: the message names the call, the error and file:line.
class CudaError : public Error {
public:
    using Error::Error;
};

// True when attnlab was built with CUDA and a device is usable.
bool cuda_available();

// One attention call on the current device: plans, uploads the block map, runs on `stream`
// (null: the default stream) and waits for it, so the plan's buffers can be freed.
void attention_cuda(const AttentionSpec& spec, const AttentionInputs& in, const AttentionOutputs& out,
                    CUstream_st* stream = nullptr);

// A planned call, for repeated runs over the same shapes, positions, segments and sinks (a
// layer's prefill, a benchmark): the host work and uploads happen once, here.
class CudaAttentionPlan {
public:
    CudaAttentionPlan(const AttentionSpec& spec, const AttentionInputs& in, const AttentionOutputs& out);
    ~CudaAttentionPlan();
    CudaAttentionPlan(CudaAttentionPlan&&) noexcept;
    CudaAttentionPlan& operator=(CudaAttentionPlan&&) noexcept;

    // Runs on the given device pointers; shapes must be the plan's (positions, segments and
    // sinks are the plan's). Asynchronous on `stream`. One run at a time per plan: decode
    // runs share the plan's split-KV workspace.
    void run(const AttentionInputs& in, const AttentionOutputs& out, CUstream_st* stream = nullptr) const;

    struct Stats {
        int64_t q_blocks = 0, k_blocks = 0;          // per head: ceil(T/64) × ceil(S/64) tiles
        int64_t kept_blocks = 0, partial_blocks = 0;  // per head
        double kept_flops = 0;                        // all heads, whole kept 64×64 tiles, 2·(D + Dv) per score
        bool decode = false;                          // the split-KV decode kernel runs it
        int64_t splits = 1;                           // key splits of the decode kernel
        bool general = false;                         // the general kernel runs it (else a tensor-core kernel)
    };
    Stats stats() const;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace attnlab
