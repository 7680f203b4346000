// Storage: aligned heap buffers and read-only file mappings.
#include <attnlab/error.h>
#include <attnlab/tensor.h>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>

namespace attnlab {

namespace {

constexpr size_t kHugePage = size_t{2} << 20;
constexpr size_t kHugeBufferBytes = size_t{32} << 20;

class HeapStorage : public Storage {
public:
    explicit HeapStorage(size_t bytes) : size_(bytes) {
        // 64-byte alignment: one cache line, and the widest SIMD load (AVX-512). Large buffers
        // (KV caches, activations of long prompts) are 2 MiB-aligned and asked to be backed by
        // transparent huge pages: kernels that stream them (decode reads one 4 KiB page per
        // cached position) then walk the page tables 512 times less often. The rounding costs
        // under 2 MiB of address space per buffer, under 1/16 of its size.
        const size_t align = bytes >= kHugeBufferBytes ? kHugePage : 64;
        const size_t rounded = std::max<size_t>((bytes + align - 1) / align * align, align);
        data_ = static_cast<std::byte*>(std::aligned_alloc(align, rounded));
        ATTNLAB_CHECK(data_ != nullptr, Error, "[storage] out of memory allocating {} bytes", bytes);
        if (align == kHugePage) (void)::madvise(data_, rounded, MADV_HUGEPAGE);  // a hint: failure is fine
    }
    ~HeapStorage() override { std::free(data_); }
    std::byte* data() override { return data_; }
    size_t size() const override { return size_; }
    bool writable() const override { return true; }

private:
    std::byte* data_ = nullptr;
    size_t size_ = 0;
};

}  // namespace

std::shared_ptr<Storage> Storage::allocate(size_t bytes) {
    return std::make_shared<HeapStorage>(bytes);
}

MappedFile::MappedFile(const std::string& path) : path_(path) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    ATTNLAB_CHECK(fd >= 0, IoError, "[mmap] cannot open {}: {}", path, std::strerror(errno));
    struct stat st {};
    if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        ::close(fd);
        throw IoError(fmt::format("[mmap] {} is not a regular file", path));
    }
    size_ = static_cast<size_t>(st.st_size);
    if (size_ > 0) {
        void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            int e = errno;
            ::close(fd);
            throw IoError(fmt::format("[mmap] cannot map {}: {}", path, std::strerror(e)));
        }
        data_ = static_cast<std::byte*>(p);
    }
    ::close(fd);
}

MappedFile::~MappedFile() {
    if (data_) ::munmap(data_, size_);
}

}  // namespace attnlab
