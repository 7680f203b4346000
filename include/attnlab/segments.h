// Token segments: named position ranges of a prompt ("system", "image", "question", ...), the
// first-class input that masks (`document`, `segment(id=N)`), statistics (segment_mass) and
// interventions (VAR, PAINT, patching positions) refer to by name.
//
// Segment names get ids 1, 2, ... in order of first appearance; positions no range covers have
// id 0. Ranges are half-open [begin, end) token positions; a later range wins where two overlap.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace attnlab {

struct TokenRange {
    int64_t begin = 0, end = 0;  // [begin, end); end = kOpenEnd: to the last position
};

class TokenSegments {
public:
    static constexpr int64_t kOpenEnd = INT64_MAX;

    // Items "NAME=A:B" (`A:` runs to the end, `:B` starts at 0); a name may repeat to add ranges.
    // Throws InvalidArgument naming `where` and the bad item.
    static TokenSegments parse(const std::vector<std::string>& items, const char* where = "segments");
    // A JSON file {"NAME": "A:B", "OTHER": ["A:B", "C:D"], ...}. Throws IoError / FormatError.
    static TokenSegments load(const std::string& path);

    void add(std::string_view name, TokenRange range, const char* where = "segments");
    bool empty() const { return names_.empty(); }
    const std::vector<std::string>& names() const { return names_; }
    bool has(std::string_view name) const;
    int32_t id(std::string_view name, const char* where = "segments") const;  // throws for an unknown name
    int32_t n_ids() const { return static_cast<int32_t>(names_.size()) + 1; }   // including 0 (unlabelled)
    // The ranges of one name, open ends cut at n_positions.
    std::vector<TokenRange> ranges(std::string_view name, int64_t n_positions) const;
    // Segment id of positions 0 .. n_positions-1.
    std::vector<int32_t> ids(int64_t n_positions) const;
    // Positions of one name in [0, n_positions), ascending.
    std::vector<int64_t> positions(std::string_view name, int64_t n_positions) const;

private:
    std::vector<std::string> names_;
    struct Labelled {
        int32_t id;
        TokenRange range;
    };
    std::vector<Labelled> ranges_;
};

}  // namespace attnlab
