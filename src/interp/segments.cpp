// TokenSegments: parsing "NAME=A:B" items and JSON files, and per-position ids.
#include <attnlab/segments.h>

#include <attnlab/error.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <charconv>
#include <fstream>
#include <sstream>

namespace attnlab {

namespace {

// "A:B", "A:", ":B" -> [A, B).
TokenRange parse_range(std::string_view text, std::string_view item, const char* where) {
    const size_t colon = text.find(':');
    ATTNLAB_CHECK(colon != std::string_view::npos, InvalidArgument,
                  "[{}] bad range in '{}': expected A:B (token positions, B exclusive)", where, item);
    auto number = [&](std::string_view s, int64_t fallback) {
        if (s.empty()) return fallback;
        int64_t v = 0;
        const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
        ATTNLAB_CHECK(ec == std::errc() && end == s.data() + s.size() && v >= 0, InvalidArgument,
                      "[{}] bad position '{}' in '{}': expected a non-negative integer", where, s, item);
        return v;
    };
    TokenRange r{number(text.substr(0, colon), 0), number(text.substr(colon + 1), TokenSegments::kOpenEnd)};
    ATTNLAB_CHECK(r.begin < r.end, InvalidArgument, "[{}] empty range in '{}'", where, item);
    return r;
}

}  // namespace

TokenSegments TokenSegments::parse(const std::vector<std::string>& items, const char* where) {
    TokenSegments segments;
    for (const std::string& item : items) {
        const size_t eq = item.find('=');
        ATTNLAB_CHECK(eq != std::string::npos && eq > 0, InvalidArgument,
                      "[{}] bad segment '{}': expected NAME=A:B, e.g. image=35:611", where, item);
        segments.add(std::string_view(item).substr(0, eq), parse_range(std::string_view(item).substr(eq + 1), item, where),
                     where);
    }
    return segments;
}

TokenSegments TokenSegments::load(const std::string& path) {
    std::ifstream file(path);
    if (!file) throw IoError(fmt::format("[segments] cannot open {}", path));
    std::stringstream text;
    text << file.rdbuf();
    nlohmann::json j;
    try {
        j = nlohmann::json::parse(text.str());
    } catch (const nlohmann::json::exception& e) {
        throw FormatError(fmt::format("[segments] {} is not JSON: {}", path, e.what()));
    }
    if (!j.is_object()) throw FormatError(fmt::format("[segments] {}: expected an object NAME -> \"A:B\" or [\"A:B\", ...]", path));
    TokenSegments segments;
    const std::string where = "segments " + path;
    for (const auto& [name, value] : j.items()) {
        std::vector<std::string> ranges;
        if (value.is_string()) ranges.push_back(value.get<std::string>());
        else if (value.is_array() && std::all_of(value.begin(), value.end(), [](const auto& v) { return v.is_string(); }))
            for (const auto& v : value) ranges.push_back(v.get<std::string>());
        else
            throw FormatError(fmt::format("[{}] segment '{}': expected \"A:B\" or a list of them", where, name));
        for (const std::string& r : ranges) segments.add(name, parse_range(r, name + "=" + r, where.c_str()), where.c_str());
    }
    return segments;
}

void TokenSegments::add(std::string_view name, TokenRange range, const char* where) {
    ATTNLAB_CHECK(!name.empty(), InvalidArgument, "[{}] a segment needs a name", where);
    ATTNLAB_CHECK(range.begin >= 0 && range.begin < range.end, InvalidArgument, "[{}] segment '{}': empty range", where,
                  name);
    auto it = std::find(names_.begin(), names_.end(), name);
    if (it == names_.end()) it = names_.insert(names_.end(), std::string(name));
    ranges_.push_back({static_cast<int32_t>(it - names_.begin()) + 1, range});
}

bool TokenSegments::has(std::string_view name) const {
    return std::find(names_.begin(), names_.end(), name) != names_.end();
}

int32_t TokenSegments::id(std::string_view name, const char* where) const {
    const auto it = std::find(names_.begin(), names_.end(), name);
    ATTNLAB_CHECK(it != names_.end(), InvalidArgument, "[{}] no segment named '{}'{}", where, name,
                  names_.empty() ? " (none defined: use --segment NAME=A:B)" : "");
    return static_cast<int32_t>(it - names_.begin()) + 1;
}

std::vector<TokenRange> TokenSegments::ranges(std::string_view name, int64_t n_positions) const {
    const int32_t wanted = id(name);
    std::vector<TokenRange> out;
    for (const Labelled& l : ranges_)
        if (l.id == wanted && l.range.begin < n_positions)
            out.push_back({l.range.begin, std::min(l.range.end, n_positions)});
    return out;
}

std::vector<int32_t> TokenSegments::ids(int64_t n_positions) const {
    std::vector<int32_t> out(static_cast<size_t>(std::max<int64_t>(n_positions, 0)), 0);
    for (const Labelled& l : ranges_)
        for (int64_t p = l.range.begin; p < std::min(l.range.end, n_positions); ++p) out[p] = l.id;
    return out;
}

std::vector<int64_t> TokenSegments::positions(std::string_view name, int64_t n_positions) const {
    const int32_t wanted = id(name);
    const std::vector<int32_t> all = ids(n_positions);
    std::vector<int64_t> out;
    for (int64_t p = 0; p < n_positions; ++p)
        if (all[p] == wanted) out.push_back(p);
    return out;
}

}  // namespace attnlab
