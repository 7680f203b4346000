// The Hopper (sm_90a) prefill kernel's launcher and the PTX it is built from: wgmma (warpgroup
// matrix multiply-accumulate, operands in shared memory through 64-bit descriptors or A in
// registers), mbarrier (arrive / expect-tx / parity wait), the bulk tensor copy (TMA) and
// setmaxnreg. attention_hopper.cu has the kernel; attention.cu calls launch_prefill_dispatch.
#pragma once

#include "kernels/cuda/attention_common.cuh"

#include <cstdint>
#include <type_traits>

namespace attnlab::cuda {

// Runs a prefill on the wgmma kernel and returns true, or returns false and launches nothing
// when it cannot: the environment variable ATTNLAB_CUDA_KERNEL is "mma" (A/B against the
// mma.sync kernel), or the inputs' addresses or strides do not suit the tensor copy engine
// (16-byte aligned rows and batches). Defined in attention_hopper.cu for bf16/f16, D 64/128.
template <typename Elem, int D>
bool launch_prefill_hopper(const AttentionParams& p, const gpu::Spec& spec, int64_t n_qblocks, cudaStream_t stream);

// The prefill launch attention.cu makes: the wgmma kernel where it runs, else mma.sync.
template <typename Elem, int D>
void launch_prefill_dispatch(const AttentionParams& p, const gpu::Spec& spec, int64_t n_qblocks, cudaStream_t stream) {
    if (!launch_prefill_hopper<Elem, D>(p, spec, n_qblocks, stream)) launch_prefill<Elem, D>(p, spec, n_qblocks, stream);
}

// ---- mbarrier and the tensor copy engine ------------------------------------------------

__device__ __forceinline__ void mbar_init(uint64_t* bar, uint32_t count) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(smem_addr(bar)), "r"(count) : "memory");
}
// Makes the initialised barriers visible to the copy engine (the async proxy) as well.
__device__ __forceinline__ void mbar_fence_init() { asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory"); }
// One arrival that also announces `bytes` of copies completing on this phase.
__device__ __forceinline__ void mbar_arrive_expect_tx(uint64_t* bar, uint32_t bytes) {
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(smem_addr(bar)), "r"(bytes) : "memory");
}
__device__ __forceinline__ void mbar_arrive(uint64_t* bar) {
    asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(smem_addr(bar)) : "memory");
}
// Waits until the phase of parity `phase` has completed.
__device__ __forceinline__ void mbar_wait(uint64_t* bar, uint32_t phase) {
    uint32_t done = 0;
    do {
        asm volatile(
            "{\n.reg .pred p;\nmbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\nselp.u32 %0, 1, 0, p;\n}\n"
            : "=r"(done)
            : "r"(smem_addr(bar)), "r"(phase)
            : "memory");
    } while (!done);
}

// One box of a 4-d tensor map (coordinates innermost first) into shared memory; completes
// its bytes on `bar`. Out-of-range rows arrive as zeros.
__device__ __forceinline__ void tma_load_4d(void* dst, const void* tensor_map, int c0, int c1, int c2, int c3, uint64_t* bar) {
    asm volatile(
        "cp.async.bulk.tensor.4d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3, %4, %5}], [%6];\n" ::"r"(
            smem_addr(dst)),
        "l"(reinterpret_cast<uint64_t>(tensor_map)), "r"(c0), "r"(c1), "r"(c2), "r"(c3), "r"(smem_addr(bar))
        : "memory");
}

// ---- named barriers (ids 1.., 0 is __syncthreads) -----------------------------------------

__device__ __forceinline__ void named_barrier_sync(int id, int threads) {
    asm volatile("bar.sync %0, %1;\n" ::"r"(id), "r"(threads) : "memory");
}
__device__ __forceinline__ void named_barrier_arrive(int id, int threads) {
    asm volatile("bar.arrive %0, %1;\n" ::"r"(id), "r"(threads) : "memory");
}

// ---- warpgroup registers ------------------------------------------------------------------

template <int kRegs>
__device__ __forceinline__ void setmaxnreg_dec() {
    asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(kRegs));
}
template <int kRegs>
__device__ __forceinline__ void setmaxnreg_inc() {
    asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(kRegs));
}

// ---- wgmma -----------------------------------------------------------------------------------

// Shared-memory matrix descriptor for a tile written with the 128-byte swizzle (rows of 128
// bytes, 16-byte chunks XOR-ed with row % 8, tiles 1024-byte aligned): start address, leading
// byte offset (MN-major: from one 64-element column block to the next; K-major: unused),
// stride byte offset (8 rows to the next 8), layout 1 = 128-byte swizzle. Fields drop the low
// 4 bits; adding bytes >> 4 to a descriptor moves its start address (shared addresses < 256 KB).
__device__ __forceinline__ uint64_t sw128_desc(uint32_t addr, uint32_t leading_bytes, uint32_t stride_bytes) {
    return uint64_t((addr & 0x3FFFF) >> 4) | uint64_t((leading_bytes & 0x3FFFF) >> 4) << 16 |
           uint64_t((stride_bytes & 0x3FFFF) >> 4) << 32 | uint64_t(1) << 62;
}

// Hides a value from the optimiser, so descriptors are rebuilt per tile (one add each) rather
// than hoisted out of the loop into registers the accumulators need.
__device__ __forceinline__ void opaque(uint64_t& x) { asm volatile("" : "+l"(x)); }

__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
template <int N>
__device__ __forceinline__ void wgmma_wait() {
    asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}

// The compiler sees a wgmma's accumulators as written when the instruction issues, while the
// tensor cores write them until wgmma_wait: after the wait, pass them through an empty asm
// so no read is scheduled before it and no register (A fragments too) is reused early.
template <int R, int C>
__device__ __forceinline__ void hold_registers(float (&x)[R][C]) {
#pragma unroll
    for (int i = 0; i < R; ++i)
#pragma unroll
        for (int j = 0; j < C; ++j) asm volatile("" : "+f"(x[i][j])::"memory");
}
template <int R, int C>
__device__ __forceinline__ void hold_registers(uint32_t (&x)[R][C]) {
#pragma unroll
    for (int i = 0; i < R; ++i)
#pragma unroll
        for (int j = 0; j < C; ++j) asm volatile("" : "+r"(x[i][j])::"memory");
}

// Accumulator operand lists: d[n8][c] is the f32 accumulator layout of m64nNk16 (per warp of
// the warpgroup: rows 16·warp + lane/4 (+8 for c >= 2), columns 8·n8 + 2·(lane%4) + c%2).
#define ATTNLAB_ACC8(i) "+f"(d[i][0]), "+f"(d[i][1]), "+f"(d[i][2]), "+f"(d[i][3])
#define ATTNLAB_ACC_N64 \
    ATTNLAB_ACC8(0), ATTNLAB_ACC8(1), ATTNLAB_ACC8(2), ATTNLAB_ACC8(3), ATTNLAB_ACC8(4), ATTNLAB_ACC8(5), ATTNLAB_ACC8(6), ATTNLAB_ACC8(7)
#define ATTNLAB_ACC_N128                                                                                             \
    ATTNLAB_ACC_N64, ATTNLAB_ACC8(8), ATTNLAB_ACC8(9), ATTNLAB_ACC8(10), ATTNLAB_ACC8(11), ATTNLAB_ACC8(12), ATTNLAB_ACC8(13), \
        ATTNLAB_ACC8(14), ATTNLAB_ACC8(15)
#define ATTNLAB_REGS_N64                                                                                                  \
    "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, " \
    "%25, %26, %27, %28, %29, %30, %31}"
#define ATTNLAB_REGS_N128                                                                                                  \
    "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, "  \
    "%25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, "   \
    "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}"

// D (64×N, f32) = A·Bᵀ (+ D when `accumulate`): A (64×16) and B (N×16) both K-major in shared
// memory (descriptors). TYPE is bf16 or f16; IA is the operand number after the accumulators.
#define ATTNLAB_WGMMA_SS(N, TYPE, REGS, ACC, IA, IB, IP)                                                   \
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %" #IP ", 0;\n"                                          \
                 "wgmma.mma_async.sync.aligned.m64n" #N "k16.f32." TYPE "." TYPE " " REGS ", %" #IA ", %" #IB \
                 ", p, 1, 1, 0, 0;\n}\n"                                                                    \
                 : ACC                                                                                      \
                 : "l"(desc_a), "l"(desc_b), "r"(accumulate))
// D (64×N, f32) += A·B: A (64×16) in registers (4 × 2 elements per thread, mma.sync's A
// layout per warp), B (16×N) N-major in shared memory (rows of 16 keys, N contiguous).
#define ATTNLAB_WGMMA_RS(N, TYPE, REGS, ACC, IA0, IA1, IA2, IA3, IB, IP)                                     \
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %" #IP ", 0;\n"                                              \
                 "wgmma.mma_async.sync.aligned.m64n" #N "k16.f32." TYPE "." TYPE " " REGS ", {%" #IA0 ", %" #IA1 \
                 ", %" #IA2 ", %" #IA3 "}, %" #IB ", p, 1, 1, 1;\n}\n"                                          \
                 : ACC                                                                                            \
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b), "r"(1))

template <typename Elem>
__device__ __forceinline__ void wgmma_ss(float (&d)[16][4], uint64_t desc_a, uint64_t desc_b, int accumulate) {
    if constexpr (std::is_same_v<Elem, __nv_bfloat16>) ATTNLAB_WGMMA_SS(128, "bf16", ATTNLAB_REGS_N128, ATTNLAB_ACC_N128, 64, 65, 66);
    else ATTNLAB_WGMMA_SS(128, "f16", ATTNLAB_REGS_N128, ATTNLAB_ACC_N128, 64, 65, 66);
}
template <typename Elem>
__device__ __forceinline__ void wgmma_rs(float (&d)[16][4], const uint32_t (&a)[4], uint64_t desc_b) {
    if constexpr (std::is_same_v<Elem, __nv_bfloat16>) ATTNLAB_WGMMA_RS(128, "bf16", ATTNLAB_REGS_N128, ATTNLAB_ACC_N128, 64, 65, 66, 67, 68, 69);
    else ATTNLAB_WGMMA_RS(128, "f16", ATTNLAB_REGS_N128, ATTNLAB_ACC_N128, 64, 65, 66, 67, 68, 69);
}
template <typename Elem>
__device__ __forceinline__ void wgmma_rs(float (&d)[8][4], const uint32_t (&a)[4], uint64_t desc_b) {
    if constexpr (std::is_same_v<Elem, __nv_bfloat16>) ATTNLAB_WGMMA_RS(64, "bf16", ATTNLAB_REGS_N64, ATTNLAB_ACC_N64, 32, 33, 34, 35, 36, 37);
    else ATTNLAB_WGMMA_RS(64, "f16", ATTNLAB_REGS_N64, ATTNLAB_ACC_N64, 32, 33, 34, 35, 36, 37);
}

}  // namespace attnlab::cuda

#undef ATTNLAB_WGMMA_RS
#undef ATTNLAB_WGMMA_SS
#undef ATTNLAB_REGS_N128
#undef ATTNLAB_REGS_N64
#undef ATTNLAB_ACC_N128
#undef ATTNLAB_ACC_N64
#undef ATTNLAB_ACC8
