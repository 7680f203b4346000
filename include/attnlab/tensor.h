// Tensor: a typed, strided view over owned or memory-mapped storage.
//
// Shapes and strides are in elements (not bytes). A Tensor is a cheap handle: copies share
// the storage. Weights loaded from safetensors are views into an mmap'd file and are never
// copied when used in their stored dtype.
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace attnlab {

enum class DType : uint8_t { F32, F64, BF16, F16, I32, I64 };

size_t dtype_size(DType dtype);
std::string_view dtype_name(DType dtype);  // "f32", "bf16", ...

// Bytes backing one or more tensors: an aligned heap buffer or a read-only file mapping.
class Storage {
public:
    virtual ~Storage() = default;
    virtual std::byte* data() = 0;
    virtual size_t size() const = 0;
    virtual bool writable() const = 0;

    // Uninitialised, 64-byte aligned; from 32 MiB on 2 MiB aligned and backed by transparent huge
    // pages where the kernel grants them (streaming kernels then walk far fewer page tables).
    static std::shared_ptr<Storage> allocate(size_t bytes);
};

// A read-only memory mapping of a whole file.
class MappedFile : public Storage {
public:
    explicit MappedFile(const std::string& path);
    ~MappedFile() override;
    MappedFile(const MappedFile&) = delete;
    MappedFile& operator=(const MappedFile&) = delete;

    std::byte* data() override { return data_; }
    size_t size() const override { return size_; }
    bool writable() const override { return false; }
    const std::string& path() const { return path_; }

private:
    std::string path_;
    std::byte* data_ = nullptr;
    size_t size_ = 0;
};

using Shape = std::vector<int64_t>;

class Tensor {
public:
    Tensor() = default;
    // A view of `storage` starting at `byte_offset`; strides default to contiguous.
    Tensor(std::shared_ptr<Storage> storage, size_t byte_offset, DType dtype, Shape shape,
           Shape strides = {});

    static Tensor empty(Shape shape, DType dtype = DType::F32);
    static Tensor zeros(Shape shape, DType dtype = DType::F32);
    static Tensor full(Shape shape, double value, DType dtype = DType::F32);
    static Tensor from_vector(const std::vector<float>& values, Shape shape);
    static Tensor from_ids(const std::vector<int32_t>& ids);  // (T) i32
    // A non-owning view of memory the caller keeps alive (scratch buffers shown to hooks,
    // kernel operands). Strides default to contiguous.
    static Tensor wrap(void* data, DType dtype, Shape shape, Shape strides = {});

    bool defined() const { return storage_ != nullptr; }
    DType dtype() const { return dtype_; }
    const Shape& shape() const { return shape_; }
    const Shape& strides() const { return strides_; }
    int64_t dim() const { return static_cast<int64_t>(shape_.size()); }
    int64_t size(int64_t d) const;    // negative d counts from the end
    int64_t stride(int64_t d) const;  // in elements
    int64_t numel() const;
    size_t nbytes() const { return static_cast<size_t>(numel()) * dtype_size(dtype_); }
    bool is_contiguous() const;
    bool writable() const { return storage_ && storage_->writable(); }
    const std::shared_ptr<Storage>& storage() const { return storage_; }
    size_t byte_offset() const { return offset_; }

    std::byte* raw() const { return storage_->data() + offset_; }
    template <typename T>
    T* data() const { return reinterpret_cast<T*>(raw()); }

    // Views (share storage).
    Tensor slice(int64_t d, int64_t start, int64_t end) const;  // [start, end) along d
    Tensor select(int64_t d, int64_t index) const;              // drops dimension d
    Tensor transpose(int64_t d0, int64_t d1) const;
    Tensor reshape(Shape shape) const;  // contiguous tensors only; one -1 allowed
    Tensor unsqueeze(int64_t d) const;

    // Copies.
    Tensor contiguous() const;     // self if already contiguous
    Tensor clone() const;          // always a fresh contiguous copy
    Tensor to(DType dtype) const;  // converted contiguous copy (self if same dtype and contiguous)
    void copy_from(const Tensor& src);  // same shape; converts dtype

    // Element access for tests and small tools (slow; converts to double).
    double item(std::initializer_list<int64_t> index) const;
    std::vector<float> to_floats() const;
    std::vector<int64_t> to_ints() const;

    std::string shape_string() const;  // "(2, 3, 4)"

private:
    std::shared_ptr<Storage> storage_;
    size_t offset_ = 0;
    DType dtype_ = DType::F32;
    Shape shape_;
    Shape strides_;
};

std::string shape_string(const Shape& shape);

}  // namespace attnlab
