#include "tokenizer/string_map.h"

#include "attnlab/error.h"

namespace attnlab::tok {

namespace {
inline uint64_t load64(const char* p) {
    uint64_t v;
    std::memcpy(&v, p, 8);
    return v;
}
inline uint64_t mix64(uint64_t a, uint64_t b) {
    __uint128_t r = static_cast<__uint128_t>(a) * b;
    return static_cast<uint64_t>(r) ^ static_cast<uint64_t>(r >> 64);
}
}  // namespace

uint64_t hash_bytes(std::string_view s) {
    // Multiply-fold over 8-byte words: tokens are short, so speed matters more than strength.
    constexpr uint64_t k0 = 0x9E3779B97F4A7C15ULL, k1 = 0xC2B2AE3D27D4EB4FULL;
    uint64_t h = k0 ^ (s.size() * k1);
    const char* p = s.data();
    size_t n = s.size();
    while (n >= 8) {
        h = mix64(h ^ load64(p), k1);
        p += 8;
        n -= 8;
    }
    if (n > 0) {
        uint64_t tail = 0;
        std::memcpy(&tail, p, n);
        h = mix64(h ^ tail, k0);
    }
    return mix64(h, k1) ^ (h >> 29);
}

void StringIdMap::reserve(size_t n) {
    size_t cap = 16;
    while (cap < n * 2) cap *= 2;
    if (cap <= slots_.size()) return;
    std::vector<Slot> old = std::move(slots_);
    slots_.assign(cap, Slot{});
    size_t mask = cap - 1;
    for (const Slot& s : old) {
        if (s.len == kEmpty) continue;
        size_t i = s.hash & mask;
        while (slots_[i].len != kEmpty) i = (i + 1) & mask;
        slots_[i] = s;
    }
}

void StringIdMap::grow() { reserve(slots_.empty() ? 8 : slots_.size()); }

size_t StringIdMap::probe(std::string_view key, uint64_t h) const {
    size_t mask = slots_.size() - 1;
    for (size_t i = h & mask;; i = (i + 1) & mask) {
        const Slot& s = slots_[i];
        if (s.len == kEmpty) return i;
        if (s.hash == h && s.len == key.size() &&
            std::memcmp(arena_.data() + s.offset, key.data(), key.size()) == 0)
            return i;
    }
}

void StringIdMap::assign(std::string_view key, int32_t value) {
    if ((count_ + 1) * 2 > slots_.size()) grow();
    ATTNLAB_CHECK(arena_.size() + key.size() < kEmpty, InvalidArgument,
                  "[tokenizer] string table over 4 GiB");
    uint64_t h = hash_bytes(key);
    size_t i = probe(key, h);
    Slot& s = slots_[i];
    if (s.len == kEmpty) {
        s.hash = h;
        s.offset = static_cast<uint32_t>(arena_.size());
        s.len = static_cast<uint32_t>(key.size());
        arena_.append(key);
        ++count_;
    }
    s.value = value;
}

int32_t StringIdMap::find(std::string_view key) const {
    if (count_ == 0) return kMissing;
    const Slot& s = slots_[probe(key, hash_bytes(key))];
    return s.len == kEmpty ? kMissing : s.value;
}

void StringIdMap::clear() {
    slots_.clear();
    arena_.clear();
    count_ = 0;
}

void PairMap::reserve(size_t n) {
    size_t cap = 16;
    while (cap < n * 2) cap *= 2;
    if (cap <= slots_.size()) return;
    std::vector<Slot> old = std::move(slots_);
    slots_.assign(cap, Slot{});
    size_t mask = cap - 1;
    for (const Slot& s : old) {
        if (s.key == kEmpty) continue;
        size_t i = mix(s.key) & mask;
        while (slots_[i].key != kEmpty) i = (i + 1) & mask;
        slots_[i] = s;
    }
}

void PairMap::grow() { reserve(slots_.empty() ? 8 : slots_.size()); }

void PairMap::assign(int32_t a, int32_t b, MergeValue v) {
    if ((count_ + 1) * 2 > slots_.size()) grow();
    uint64_t key = pack(a, b);
    size_t mask = slots_.size() - 1;
    size_t i = mix(key) & mask;
    while (slots_[i].key != kEmpty && slots_[i].key != key) i = (i + 1) & mask;
    if (slots_[i].key == kEmpty) {
        slots_[i].key = key;
        ++count_;
    }
    slots_[i].value = v;
}

}  // namespace attnlab::tok
