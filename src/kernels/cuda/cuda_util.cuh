// CUDA plumbing shared by the kernels' host code: checked runtime calls that throw CudaError
// naming the call and file:line, an owning device buffer and an owning stream.
#pragma once

#include <attnlab/cuda.h>

#include <cuda_runtime.h>
#include <fmt/format.h>

#include <cstddef>
#include <utility>

namespace attnlab::cuda {

// Also resets the runtime's last-error state (a no-op for sticky errors, which end the
// context anyway): an error the caller catches, such as an allocation that did not fit, must not
// resurface at the next unrelated launch check.
[[noreturn]] inline void throw_cuda(cudaError_t err, const char* call, const char* file, int line) {
    (void)cudaGetLastError();
    throw CudaError(fmt::format("[cuda] {} failed: {} ({}:{})", call, cudaGetErrorString(err), file, line));
}

}  // namespace attnlab::cuda

// Runs a CUDA runtime call; on failure throws CudaError "[cuda] cudaMalloc(...) failed: ...".
#define ATTNLAB_CUDA_CHECK(call)                                                      \
    do {                                                                              \
        const cudaError_t attnlab_err_ = (call);                                      \
        if (attnlab_err_ != cudaSuccess)                                              \
            ::attnlab::cuda::throw_cuda(attnlab_err_, #call, __FILE__, __LINE__);     \
    } while (0)

// After a kernel launch: a bad configuration surfaces here, named, not at the next unrelated call.
#define ATTNLAB_CUDA_CHECK_LAUNCH(name)                                                         \
    do {                                                                                        \
        const cudaError_t attnlab_err_ = cudaPeekAtLastError();                                 \
        if (attnlab_err_ != cudaSuccess)                                                        \
            ::attnlab::cuda::throw_cuda(attnlab_err_, "launch of " name, __FILE__, __LINE__);   \
    } while (0)

namespace attnlab::cuda {

// Device memory owned by the object (cudaMalloc / cudaFree); movable, not copyable.
template <typename T>
class DeviceBuffer {
public:
    DeviceBuffer() = default;
    explicit DeviceBuffer(size_t count) : count_(count) {
        if (count > 0) ATTNLAB_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&ptr_), count * sizeof(T)));
    }
    ~DeviceBuffer() {
        if (ptr_) cudaFree(ptr_);  // no throw from a destructor; a failed free leaks
    }
    DeviceBuffer(DeviceBuffer&& o) noexcept : ptr_(std::exchange(o.ptr_, nullptr)), count_(std::exchange(o.count_, 0)) {}
    DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {
        std::swap(ptr_, o.ptr_);
        std::swap(count_, o.count_);
        return *this;
    }
    DeviceBuffer(const DeviceBuffer&) = delete;
    DeviceBuffer& operator=(const DeviceBuffer&) = delete;

    T* get() const { return ptr_; }
    size_t size() const { return count_; }
    // Synchronous host -> device copy of `count` elements (count <= size()).
    void upload(const T* host, size_t count) {
        if (count > 0) ATTNLAB_CUDA_CHECK(cudaMemcpy(ptr_, host, count * sizeof(T), cudaMemcpyHostToDevice));
    }

private:
    T* ptr_ = nullptr;
    size_t count_ = 0;
};

// A non-blocking stream owned by the object.
class Stream {
public:
    Stream() { ATTNLAB_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking)); }
    ~Stream() {
        if (stream_) cudaStreamDestroy(stream_);
    }
    Stream(const Stream&) = delete;
    Stream& operator=(const Stream&) = delete;
    cudaStream_t get() const { return stream_; }
    void synchronize() const { ATTNLAB_CUDA_CHECK(cudaStreamSynchronize(stream_)); }

private:
    cudaStream_t stream_ = nullptr;
};

}  // namespace attnlab::cuda
