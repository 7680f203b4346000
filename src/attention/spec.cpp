// AttentionSpec: parsing the spec grammar, canonical text, and the default (element-wise)
// span hooks of Mechanism.
#include <attnlab/attention.h>
#include <attnlab/error.h>

#include "attention/mechanism_params.h"

#include <cctype>
#include <charconv>
#include <cmath>
#include <limits>

namespace attnlab {

void Mechanism::mask_span(const RowSpan& row, float* scores) const {
    ScoreCoord c{row.b, row.h, row.h_kv, row.i, 0, row.ctx};
    for (int64_t k = 0; k < row.n; ++k) {
        c.j = row.j0 + k;
        if (!keep(c)) scores[k] = -std::numeric_limits<float>::infinity();
    }
}

void Mechanism::modify_span(const RowSpan& row, float* scores) const {
    ScoreCoord c{row.b, row.h, row.h_kv, row.i, 0, row.ctx};
    for (int64_t k = 0; k < row.n; ++k) {
        c.j = row.j0 + k;
        scores[k] = static_cast<float>(modify(scores[k], c));
    }
}

std::string format_param(double value) {
    if (value == std::floor(value) && std::fabs(value) < 1e15) return fmt::format("{}", int64_t(value));
    return fmt::format("{}", value);  // shortest round-trip form
}

namespace {

// A recursive-descent reader over the spec text; every error names the position.
class SpecReader {
public:
    explicit SpecReader(std::string_view text) : text_(text) {}

    bool done() {
        skip_space();
        return pos_ >= text_.size();
    }
    bool accept(char c) {
        skip_space();
        if (pos_ < text_.size() && text_[pos_] == c) {
            ++pos_;
            return true;
        }
        return false;
    }
    void expect(char c, const char* what) {
        if (!accept(c)) fail(fmt::format("expected {}", what));
    }
    std::string identifier(const char* what) {
        skip_space();
        size_t start = pos_;
        while (pos_ < text_.size() && (std::isalnum(static_cast<unsigned char>(text_[pos_])) || text_[pos_] == '_'))
            ++pos_;
        if (pos_ == start || std::isdigit(static_cast<unsigned char>(text_[start]))) fail(fmt::format("expected {}", what));
        return std::string(text_.substr(start, pos_ - start));
    }
    double number() {
        skip_space();
        const char* first = text_.data() + pos_;
        const char* last = text_.data() + text_.size();
        if (pos_ < text_.size() && text_[pos_] == '+') ++first;  // from_chars rejects a leading '+'
        double value = 0;
        auto [ptr, ec] = std::from_chars(first, last, value);
        if (ec != std::errc() || ptr == first) fail("expected a number");
        pos_ = static_cast<size_t>(ptr - text_.data());
        if (!std::isfinite(value)) fail("expected a finite number");
        return value;
    }
    [[noreturn]] void fail(const std::string& what) const {
        throw InvalidArgument(fmt::format("[attention spec] {} at column {} of \"{}\"", what, pos_ + 1, text_));
    }

private:
    void skip_space() {
        while (pos_ < text_.size() && std::isspace(static_cast<unsigned char>(text_[pos_]))) ++pos_;
    }
    std::string_view text_;
    size_t pos_ = 0;
};

const MechanismInfo& find_mechanism(const std::string& name, const SpecReader& reader) {
    for (const MechanismInfo& info : mechanism_registry())
        if (info.name == name) return info;
    std::string known;
    for (const MechanismInfo& info : mechanism_registry()) known += (known.empty() ? "" : ", ") + info.name;
    reader.fail(fmt::format("unknown mechanism '{}' (known: {})", name, known));
}

// Whether the registry's parameter list ("sink=N=4,window=W") names `key`.
bool accepts_key(std::string_view params, std::string_view key) {
    size_t start = 0;
    while (start < params.size()) {
        size_t comma = params.find(',', start);
        std::string_view item = params.substr(start, comma == std::string_view::npos ? std::string_view::npos : comma - start);
        if (item.substr(0, item.find('=')) == key) return true;
        if (comma == std::string_view::npos) break;
        start = comma + 1;
    }
    return false;
}

}  // namespace

AttentionSpec AttentionSpec::parse(std::string_view text, const AttentionSpec* native) {
    AttentionSpec spec;
    SpecReader reader(text);
    if (reader.done()) reader.fail("empty spec");
    do {
        const std::string name = reader.identifier("a mechanism name");
        if (name == "native" && native != nullptr) {
            spec.scale = native->scale;
            spec.mechanisms.insert(spec.mechanisms.end(), native->mechanisms.begin(), native->mechanisms.end());
            continue;
        }
        const MechanismInfo& info = find_mechanism(name, reader);
        MechanismParams params;
        params.mechanism = name;
        if (reader.accept('(')) {
            if (!reader.accept(')')) {
                do {
                    std::string key = reader.identifier("a parameter name");
                    for (const auto& kv : params.values)
                        if (kv.first == key) reader.fail(fmt::format("parameter '{}' given twice", key));
                    reader.expect('=', "'='");
                    params.values.emplace_back(std::move(key), reader.number());
                } while (reader.accept(','));
                reader.expect(')', "',' or ')'");
            }
        }
        params.used.assign(params.values.size(), false);
        // Unknown keys first: "window(sz=4)" should say sz is unknown, not that size is missing.
        for (const auto& kv : params.values)
            if (!accepts_key(info.params, kv.first))
                reader.fail(fmt::format("{} has no parameter '{}' (parameters: {})", name, kv.first,
                                        info.params.empty() ? "none" : info.params));
        spec.mechanisms.push_back(info.make(params));
        params.finish(info.params);
    } while (reader.accept('+'));
    if (!reader.done()) reader.fail("expected '+' or the end of the spec");
    (void)spec.normalizer();  // two normalizers are an error
    return spec;
}

std::string AttentionSpec::text() const {
    std::string s;
    for (const auto& m : mechanisms) s += (s.empty() ? "" : "+") + m->text();
    return s;
}

Normalizer AttentionSpec::normalizer() const {
    std::optional<Normalizer> found;
    for (const auto& m : mechanisms) {
        if (auto n = m->normalizer()) {
            ATTNLAB_CHECK(!found, InvalidArgument, "[attention spec] more than one normalizer in \"{}\"", text());
            found = n;
        }
    }
    return found.value_or(Normalizer{});
}

bool AttentionSpec::has_masks() const {
    for (const auto& m : mechanisms)
        if (m->is_mask()) return true;
    return false;
}

}  // namespace attnlab
