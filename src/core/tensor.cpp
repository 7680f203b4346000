// Tensor views, copies and dtype conversion.
#include <attnlab/error.h>
#include <attnlab/half.h>
#include <attnlab/tensor.h>

#include <cstring>

namespace attnlab {

size_t dtype_size(DType dtype) {
    switch (dtype) {
        case DType::F32: return 4;
        case DType::F64: return 8;
        case DType::BF16: return 2;
        case DType::F16: return 2;
        case DType::I32: return 4;
        case DType::I64: return 8;
    }
    return 0;
}

std::string_view dtype_name(DType dtype) {
    switch (dtype) {
        case DType::F32: return "f32";
        case DType::F64: return "f64";
        case DType::BF16: return "bf16";
        case DType::F16: return "f16";
        case DType::I32: return "i32";
        case DType::I64: return "i64";
    }
    return "?";
}

std::string shape_string(const Shape& shape) {
    std::string s = "(";
    for (size_t i = 0; i < shape.size(); ++i) {
        if (i) s += ", ";
        s += std::to_string(shape[i]);
    }
    if (shape.size() == 1) s += ",";
    return s + ")";
}

static Shape contiguous_strides(const Shape& shape) {
    Shape strides(shape.size());
    int64_t s = 1;
    for (size_t i = shape.size(); i-- > 0;) {
        strides[i] = s;
        s *= shape[i];
    }
    return strides;
}

Tensor::Tensor(std::shared_ptr<Storage> storage, size_t byte_offset, DType dtype, Shape shape,
               Shape strides)
    : storage_(std::move(storage)), offset_(byte_offset), dtype_(dtype), shape_(std::move(shape)),
      strides_(strides.empty() ? contiguous_strides(shape_) : std::move(strides)) {
    ATTNLAB_ASSERT(strides_.size() == shape_.size());
    for (int64_t d : shape_)
        ATTNLAB_CHECK(d >= 0, InvalidArgument, "[tensor] negative dimension in shape {}",
                      attnlab::shape_string(shape_));
}

Tensor Tensor::empty(Shape shape, DType dtype) {
    int64_t n = 1;
    for (int64_t d : shape) {
        ATTNLAB_CHECK(d >= 0, InvalidArgument, "[tensor] negative dimension in shape {}",
                      attnlab::shape_string(shape));
        n *= d;
    }
    auto storage = Storage::allocate(static_cast<size_t>(n) * dtype_size(dtype));
    return Tensor(std::move(storage), 0, dtype, std::move(shape));
}

Tensor Tensor::zeros(Shape shape, DType dtype) {
    Tensor t = empty(std::move(shape), dtype);
    std::memset(t.raw(), 0, t.nbytes());
    return t;
}

Tensor Tensor::full(Shape shape, double value, DType dtype) {
    Tensor t = empty(std::move(shape), DType::F64);
    double* p = t.data<double>();
    for (int64_t i = 0; i < t.numel(); ++i) p[i] = value;
    return t.to(dtype);
}

Tensor Tensor::from_vector(const std::vector<float>& values, Shape shape) {
    Tensor t = empty(std::move(shape), DType::F32);
    ATTNLAB_CHECK(t.numel() == static_cast<int64_t>(values.size()), InvalidArgument,
                  "[tensor] {} values do not fill shape {}", values.size(), t.shape_string());
    std::memcpy(t.raw(), values.data(), values.size() * sizeof(float));
    return t;
}

Tensor Tensor::from_ids(const std::vector<int32_t>& ids) {
    Tensor t = empty({static_cast<int64_t>(ids.size())}, DType::I32);
    std::memcpy(t.raw(), ids.data(), ids.size() * sizeof(int32_t));
    return t;
}

namespace {
// Storage over memory owned by someone else; see Tensor::wrap.
class BorrowedStorage : public Storage {
public:
    BorrowedStorage(std::byte* p, size_t n) : p_(p), n_(n) {}
    std::byte* data() override { return p_; }
    size_t size() const override { return n_; }
    bool writable() const override { return true; }

private:
    std::byte* p_;
    size_t n_;
};
}  // namespace

Tensor Tensor::wrap(void* data, DType dtype, Shape shape, Shape strides) {
    // The extent is what the largest index reaches, so strided views are covered too.
    int64_t extent = 1;
    for (size_t i = 0; i < shape.size(); ++i)
        extent += (shape[i] - 1) * (strides.empty() ? 0 : strides[i]);
    if (strides.empty()) {
        extent = 1;
        for (int64_t d : shape) extent *= d;
    }
    auto storage = std::make_shared<BorrowedStorage>(static_cast<std::byte*>(data),
                                                     static_cast<size_t>(extent) * dtype_size(dtype));
    return Tensor(std::move(storage), 0, dtype, std::move(shape), std::move(strides));
}

static int64_t normalise_dim(int64_t d, int64_t rank, const char* where) {
    int64_t nd = d < 0 ? d + rank : d;
    ATTNLAB_CHECK(nd >= 0 && nd < rank, InvalidArgument, "[{}] dimension {} out of range for rank {}",
                  where, d, rank);
    return nd;
}

int64_t Tensor::size(int64_t d) const { return shape_[normalise_dim(d, dim(), "tensor.size")]; }
int64_t Tensor::stride(int64_t d) const {
    return strides_[normalise_dim(d, dim(), "tensor.stride")];
}

int64_t Tensor::numel() const {
    int64_t n = 1;
    for (int64_t d : shape_) n *= d;
    return n;
}

bool Tensor::is_contiguous() const {
    int64_t expected = 1;
    for (size_t i = shape_.size(); i-- > 0;) {
        if (shape_[i] != 1 && strides_[i] != expected) return false;
        expected *= shape_[i];
    }
    return true;
}

std::string Tensor::shape_string() const { return attnlab::shape_string(shape_); }

Tensor Tensor::slice(int64_t d, int64_t start, int64_t end) const {
    d = normalise_dim(d, dim(), "slice");
    ATTNLAB_CHECK(0 <= start && start <= end && end <= shape_[d], InvalidArgument,
                  "[slice] range [{}, {}) out of bounds for dimension {} of size {}", start, end, d,
                  shape_[d]);
    Tensor t = *this;
    t.offset_ += static_cast<size_t>(start * strides_[d]) * dtype_size(dtype_);
    t.shape_[d] = end - start;
    return t;
}

Tensor Tensor::select(int64_t d, int64_t index) const {
    d = normalise_dim(d, dim(), "select");
    ATTNLAB_CHECK(0 <= index && index < shape_[d], InvalidArgument,
                  "[select] index {} out of bounds for dimension {} of size {}", index, d,
                  shape_[d]);
    Tensor t = slice(d, index, index + 1);
    t.shape_.erase(t.shape_.begin() + d);
    t.strides_.erase(t.strides_.begin() + d);
    return t;
}

Tensor Tensor::transpose(int64_t d0, int64_t d1) const {
    d0 = normalise_dim(d0, dim(), "transpose");
    d1 = normalise_dim(d1, dim(), "transpose");
    Tensor t = *this;
    std::swap(t.shape_[d0], t.shape_[d1]);
    std::swap(t.strides_[d0], t.strides_[d1]);
    return t;
}

Tensor Tensor::reshape(Shape shape) const {
    ATTNLAB_CHECK(is_contiguous(), InvalidArgument, "[reshape] tensor {} is not contiguous",
                  shape_string());
    int64_t known = 1, infer = -1;
    for (size_t i = 0; i < shape.size(); ++i) {
        if (shape[i] == -1) {
            ATTNLAB_CHECK(infer < 0, InvalidArgument, "[reshape] more than one -1 in {}",
                          attnlab::shape_string(shape));
            infer = static_cast<int64_t>(i);
        } else {
            known *= shape[i];
        }
    }
    if (infer >= 0 && known > 0) shape[infer] = numel() / known;
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    ATTNLAB_CHECK(n == numel(), InvalidArgument, "[reshape] cannot view {} as {}", shape_string(),
                  attnlab::shape_string(shape));
    return Tensor(storage_, offset_, dtype_, std::move(shape));
}

Tensor Tensor::unsqueeze(int64_t d) const {
    ATTNLAB_CHECK(d >= 0 && d <= dim(), InvalidArgument, "[unsqueeze] dimension {} out of range", d);
    Tensor t = *this;
    int64_t stride = d < dim() ? strides_[d] * shape_[d] : 1;
    t.shape_.insert(t.shape_.begin() + d, 1);
    t.strides_.insert(t.strides_.begin() + d, stride);
    return t;
}

namespace {

double load_as_double(const std::byte* p, DType dtype) {
    switch (dtype) {
        case DType::F32: { float v; std::memcpy(&v, p, 4); return v; }
        case DType::F64: { double v; std::memcpy(&v, p, 8); return v; }
        case DType::BF16: { uint16_t v; std::memcpy(&v, p, 2); return bf16_to_f32(v); }
        case DType::F16: { uint16_t v; std::memcpy(&v, p, 2); return f16_to_f32(v); }
        case DType::I32: { int32_t v; std::memcpy(&v, p, 4); return v; }
        case DType::I64: { int64_t v; std::memcpy(&v, p, 8); return static_cast<double>(v); }
    }
    return 0;
}

void store_from_double(std::byte* p, DType dtype, double value) {
    switch (dtype) {
        case DType::F32: { float v = static_cast<float>(value); std::memcpy(p, &v, 4); break; }
        case DType::F64: std::memcpy(p, &value, 8); break;
        case DType::BF16: { uint16_t v = f32_to_bf16(static_cast<float>(value)); std::memcpy(p, &v, 2); break; }
        case DType::F16: { uint16_t v = f32_to_f16(static_cast<float>(value)); std::memcpy(p, &v, 2); break; }
        case DType::I32: { int32_t v = static_cast<int32_t>(value); std::memcpy(p, &v, 4); break; }
        case DType::I64: { int64_t v = static_cast<int64_t>(value); std::memcpy(p, &v, 8); break; }
    }
}

// Visits every element of a strided tensor in row-major order; fn(linear_index, byte_offset).
template <typename Fn>
void for_each_offset(const Shape& shape, const Shape& strides, size_t elem, Fn&& fn) {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    if (n == 0) return;
    std::vector<int64_t> index(shape.size(), 0);
    int64_t offset = 0;
    for (int64_t i = 0; i < n; ++i) {
        fn(i, static_cast<int64_t>(offset * static_cast<int64_t>(elem)));
        for (size_t d = shape.size(); d-- > 0;) {
            if (++index[d] < shape[d]) {
                offset += strides[d];
                break;
            }
            offset -= strides[d] * (shape[d] - 1);
            index[d] = 0;
        }
    }
}

}  // namespace

void Tensor::copy_from(const Tensor& src) {
    ATTNLAB_CHECK(shape_ == src.shape_, InvalidArgument, "[copy] shape {} does not match {}",
                  src.shape_string(), shape_string());
    ATTNLAB_CHECK(writable(), InvalidArgument, "[copy] destination is read-only");
    if (dtype_ == src.dtype_ && is_contiguous() && src.is_contiguous()) {
        std::memmove(raw(), src.raw(), nbytes());
        return;
    }
    const size_t src_elem = dtype_size(src.dtype_), dst_elem = dtype_size(dtype_);
    std::vector<int64_t> dst_offsets(static_cast<size_t>(numel()));
    for_each_offset(shape_, strides_, dst_elem,
                    [&](int64_t i, int64_t off) { dst_offsets[static_cast<size_t>(i)] = off; });
    std::byte* dst_base = raw();
    const std::byte* src_base = src.raw();
    if (dtype_ == src.dtype_) {
        for_each_offset(src.shape_, src.strides_, src_elem, [&](int64_t i, int64_t off) {
            std::memcpy(dst_base + dst_offsets[static_cast<size_t>(i)], src_base + off, src_elem);
        });
    } else if (dtype_ == DType::F32 && src.dtype_ == DType::BF16) {
        // Hot path for widening weights: exact, no double round trip.
        for_each_offset(src.shape_, src.strides_, src_elem, [&](int64_t i, int64_t off) {
            uint16_t h;
            std::memcpy(&h, src_base + off, 2);
            float f = bf16_to_f32(h);
            std::memcpy(dst_base + dst_offsets[static_cast<size_t>(i)], &f, 4);
        });
    } else {
        for_each_offset(src.shape_, src.strides_, src_elem, [&](int64_t i, int64_t off) {
            store_from_double(dst_base + dst_offsets[static_cast<size_t>(i)], dtype_,
                              load_as_double(src_base + off, src.dtype_));
        });
    }
}

Tensor Tensor::contiguous() const {
    if (is_contiguous()) return *this;
    return clone();
}

Tensor Tensor::clone() const {
    Tensor t = empty(shape_, dtype_);
    t.copy_from(*this);
    return t;
}

Tensor Tensor::to(DType dtype) const {
    if (dtype == dtype_ && is_contiguous()) return *this;
    Tensor t = empty(shape_, dtype);
    t.copy_from(*this);
    return t;
}

double Tensor::item(std::initializer_list<int64_t> index) const {
    ATTNLAB_CHECK(static_cast<int64_t>(index.size()) == dim(), InvalidArgument,
                  "[item] {} indices for a tensor of rank {}", index.size(), dim());
    int64_t offset = 0, d = 0;
    for (int64_t i : index) {
        ATTNLAB_CHECK(i >= 0 && i < shape_[d], InvalidArgument, "[item] index {} out of range",
                      i);
        offset += i * strides_[d++];
    }
    return load_as_double(raw() + offset * static_cast<int64_t>(dtype_size(dtype_)), dtype_);
}

std::vector<float> Tensor::to_floats() const {
    Tensor t = to(DType::F32);
    const float* p = t.data<float>();
    return std::vector<float>(p, p + t.numel());
}

std::vector<int64_t> Tensor::to_ints() const {
    Tensor t = to(DType::I64);
    const int64_t* p = t.data<int64_t>();
    return std::vector<int64_t>(p, p + t.numel());
}

}  // namespace attnlab
