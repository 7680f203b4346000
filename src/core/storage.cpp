// Storage: aligned heap buffers and read-only file mappings.
#include <attnlab/error.h>
#include <attnlab/tensor.h>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

namespace attnlab {

namespace {

class HeapStorage : public Storage {
public:
    explicit HeapStorage(size_t bytes) : size_(bytes) {
        // 64-byte alignment: one cache line, and the widest SIMD load (AVX-512).
        size_t rounded = (bytes + 63) / 64 * 64;
        data_ = static_cast<std::byte*>(std::aligned_alloc(64, rounded == 0 ? 64 : rounded));
        ATTNLAB_CHECK(data_ != nullptr, Error, "[storage] out of memory allocating {} bytes", bytes);
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
