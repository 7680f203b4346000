// cuBLAS for the model's matmuls: an owning handle bound to one stream and the one product the
// decoder needs, y (T, N) = x (T, K) · W (N, K)ᵀ with row-major operands, in bf16 (f32
// accumulation and output) or f32 (SGEMM arithmetic, never TF32). Failures throw CudaError
// naming the call: "[cuda] cublasGemmEx(...) failed: CUBLAS_STATUS_...".
#pragma once

#include "kernels/cuda/cuda_util.cuh"

#include <cublas_v2.h>
#include <cuda_bf16.h>

#include <cstdint>
#include <type_traits>

namespace attnlab::cuda {

[[noreturn]] inline void throw_cublas(cublasStatus_t status, const char* call, const char* file, int line) {
    throw CudaError(fmt::format("[cuda] {} failed: {} ({}:{})", call, cublasGetStatusName(status), file, line));
}

}  // namespace attnlab::cuda

#define ATTNLAB_CUBLAS_CHECK(call)                                                  \
    do {                                                                            \
        const cublasStatus_t attnlab_status_ = (call);                              \
        if (attnlab_status_ != CUBLAS_STATUS_SUCCESS)                               \
            ::attnlab::cuda::throw_cublas(attnlab_status_, #call, __FILE__, __LINE__); \
    } while (0)

namespace attnlab::cuda {

template <typename T>
constexpr cudaDataType_t cuda_data_type() {
    static_assert(std::is_same_v<T, float> || std::is_same_v<T, __nv_bfloat16>, "bf16 or f32 operands");
    return std::is_same_v<T, float> ? CUDA_R_32F : CUDA_R_16BF;
}

class Cublas {
public:
    explicit Cublas(cudaStream_t stream) {
        ATTNLAB_CUBLAS_CHECK(cublasCreate(&handle_));
        ATTNLAB_CUBLAS_CHECK(cublasSetStream(handle_, stream));
        // DEFAULT math never lowers the requested precision: with CUBLAS_COMPUTE_32F an f32 GEMM
        // stays f32 (TF32 needs CUBLAS_TF32_TENSOR_OP_MATH or the _FAST_TF32 compute type), while
        // bf16 operands still get tensor cores. The F32 tests check the error is f32's.
        ATTNLAB_CUBLAS_CHECK(cublasSetMathMode(handle_, CUBLAS_DEFAULT_MATH));
    }
    ~Cublas() {
        if (handle_) cublasDestroy(handle_);
    }
    Cublas(const Cublas&) = delete;
    Cublas& operator=(const Cublas&) = delete;

    // y (T, N), row stride ldy, = x (T, K), row stride ldx, · w (N, K) contiguous, transposed.
    // Column-major cuBLAS reads the same memory as yᵀ (N, T), xᵀ (K, T) and wᵀ (K, N), so
    // yᵀ = (wᵀ)ᵀ · xᵀ is one GEMM with w as the transposed "A" operand and no copies.
    template <typename T>
    void linear(const T* x, int64_t ldx, const T* w, float* y, int64_t ldy, int64_t rows, int64_t N, int64_t K) const {
        const float one = 1.0f, zero = 0.0f;
        ATTNLAB_CUBLAS_CHECK(cublasGemmEx(handle_, CUBLAS_OP_T, CUBLAS_OP_N, int(N), int(rows), int(K), &one, w,
                                          cuda_data_type<T>(), int(K), x, cuda_data_type<T>(), int(ldx), &zero, y,
                                          CUDA_R_32F, int(ldy), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    }

private:
    cublasHandle_t handle_ = nullptr;
};

}  // namespace attnlab::cuda
