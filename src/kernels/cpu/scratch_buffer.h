// A grow-only, 64-byte aligned float buffer: scratch for packed GEMM panels (read with aligned
// vector loads). Thread-local instances let the pool's persistent workers allocate once.
#pragma once

#include <cstddef>
#include <cstdlib>
#include <new>

namespace attnlab::cpu {

class ScratchBuffer {
public:
    ScratchBuffer() = default;
    ScratchBuffer(const ScratchBuffer&) = delete;
    ScratchBuffer& operator=(const ScratchBuffer&) = delete;
    ~ScratchBuffer() { std::free(data_); }

    // At least `count` floats; the contents are kept only while the buffer does not grow.
    float* get(size_t count) {
        if (count > capacity_) {
            std::free(data_);
            data_ = nullptr;
            capacity_ = 0;
            const size_t bytes = (count * sizeof(float) + 63) / 64 * 64;
            data_ = static_cast<float*>(std::aligned_alloc(64, bytes));
            if (data_ == nullptr) throw std::bad_alloc();
            capacity_ = count;
        }
        return data_;
    }
    float* data() const { return data_; }

private:
    float* data_ = nullptr;
    size_t capacity_ = 0;
};

}  // namespace attnlab::cpu
