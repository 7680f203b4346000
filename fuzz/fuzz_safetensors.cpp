// libFuzzer target: load_safetensors on arbitrary bytes. Only attnlab::Error may come out;
// every tensor of a file that loads is read end to end, so a view reaching outside the
// mapping is caught by AddressSanitizer.
#include <attnlab/error.h>
#include <attnlab/safetensors.h>

#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

namespace {

// One scratch file per fuzzing process (libFuzzer -jobs/-workers run separate processes).
const std::string& scratch_path() {
    static const std::string path = [] {
        char tmpl[] = "/tmp/attnlab-fuzz-safetensors-XXXXXX";
        int fd = ::mkstemp(tmpl);
        if (fd < 0) std::abort();
        ::close(fd);
        return std::string(tmpl);
    }();
    return path;
}

struct RemoveScratch {
    ~RemoveScratch() { std::remove(scratch_path().c_str()); }
} remove_scratch;

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string& path = scratch_path();
    FILE* f = std::fopen(path.c_str(), "wb");
    if (!f) std::abort();
    if (size > 0 && std::fwrite(data, 1, size, f) != size) std::abort();
    std::fclose(f);
    try {
        attnlab::SafetensorsFile file = attnlab::load_safetensors(path);
        uint64_t sum = 0;
        for (const auto& [name, t] : file.tensors) {
            const auto* p = reinterpret_cast<const uint8_t*>(t.raw());
            for (size_t i = 0; i < t.nbytes(); ++i) sum += p[i];
            if (t.numel() <= 4096) sum += static_cast<uint64_t>(t.to(attnlab::DType::F32).numel());
        }
        for (const auto& [k, v] : file.metadata) sum += k.size() + v.size();
        volatile uint64_t sink = sum;
        (void)sink;
    } catch (const attnlab::Error&) {
        // Rejected cleanly: the expected outcome for almost every input.
    }
    return 0;
}
