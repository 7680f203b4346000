// Flat hash maps for the tokenizer's hot paths: token string -> id (vocab, word cache) and
// (left id, right id) -> merge. Open addressing over one arena, so a 150k-entry vocabulary
// loads without 150k small allocations and lookups take a string_view.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

namespace attnlab::tok {

uint64_t hash_bytes(std::string_view s);

class StringIdMap {
public:
    static constexpr int32_t kMissing = -1;

    void reserve(size_t n);
    // Inserts key -> value, or overwrites the value of an existing key.
    void assign(std::string_view key, int32_t value);
    int32_t find(std::string_view key) const;
    size_t size() const { return count_; }
    size_t arena_bytes() const { return arena_.size(); }
    void clear();

private:
    struct Slot {
        uint64_t hash = 0;
        uint32_t offset = 0;
        uint32_t len = kEmpty;
        int32_t value = 0;
    };
    static constexpr uint32_t kEmpty = 0xFFFFFFFFu;
    void grow();
    size_t probe(std::string_view key, uint64_t h) const;

    std::vector<Slot> slots_;
    std::string arena_;
    size_t count_ = 0;
};

struct MergeValue {
    uint32_t rank;
    int32_t new_id;
};

class PairMap {
public:
    void reserve(size_t n);
    void assign(int32_t a, int32_t b, MergeValue v);
    const MergeValue* find(int32_t a, int32_t b) const {
        if (slots_.empty()) return nullptr;
        uint64_t key = pack(a, b);
        size_t mask = slots_.size() - 1;
        for (size_t i = mix(key) & mask;; i = (i + 1) & mask) {
            const Slot& s = slots_[i];
            if (s.key == key) return &s.value;
            if (s.key == kEmpty) return nullptr;
        }
    }
    size_t size() const { return count_; }

private:
    struct Slot {
        uint64_t key = kEmpty;
        MergeValue value{};
    };
    static constexpr uint64_t kEmpty = ~uint64_t{0};
    static uint64_t pack(int32_t a, int32_t b) {
        return uint64_t{static_cast<uint32_t>(a)} << 32 | static_cast<uint32_t>(b);
    }
    static uint64_t mix(uint64_t k) {
        k ^= k >> 33;
        k *= 0xff51afd7ed558ccdULL;
        k ^= k >> 33;
        return k;
    }
    void grow();

    std::vector<Slot> slots_;
    size_t count_ = 0;
};

}  // namespace attnlab::tok
