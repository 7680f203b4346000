#include "tokenizer/normalizers.h"

#include <vector>

#include "attnlab/error.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/regex.h"
#include "tokenizer/unicode.h"

namespace attnlab::tok {

namespace {

class UnicodeNormalizer final : public Normalizer {
public:
    explicit UnicodeNormalizer(NormForm form) : form_(form) {}
    void normalize(std::string& text, bool&) const override {
        if (!is_ascii(text)) text = unicode_normalize(text, form_);
    }

private:
    NormForm form_;
};

class Lowercase final : public Normalizer {
public:
    void normalize(std::string& text, bool&) const override { text = to_lower(text); }
};

class Prepend final : public Normalizer {
public:
    explicit Prepend(std::string prefix) : prefix_(std::move(prefix)) {}
    void normalize(std::string& text, bool&) const override {
        if (!text.empty()) text.insert(0, prefix_);
    }

private:
    std::string prefix_;
};

class Replace final : public Normalizer {
public:
    Replace(Pattern pattern, std::string content) : pattern_(std::move(pattern)), content_(std::move(content)) {}
    void normalize(std::string& text, bool& at_start) const override {
        std::vector<std::pair<size_t, size_t>> matches;
        pattern_.find_matches(text, matches);
        if (matches.empty()) return;
        if (content_.empty() && matches.front().first == 0 && matches.front().second > 0) at_start = false;
        std::string out;
        out.reserve(text.size());
        size_t prev = 0;
        for (auto [b, e] : matches) {
            out.append(text, prev, b - prev);
            out.append(content_);
            prev = e;
        }
        out.append(text, prev, std::string::npos);
        text = std::move(out);
    }

private:
    Pattern pattern_;
    std::string content_;
};

class Strip final : public Normalizer {
public:
    Strip(bool left, bool right) : left_(left), right_(right) {}
    void normalize(std::string& text, bool& at_start) const override {
        size_t begin = 0, end = text.size();
        if (left_) {
            size_t i = 0;
            while (i < text.size()) {
                size_t at = i;
                if (!is_whitespace(next_char(text, i))) {
                    i = at;
                    break;
                }
            }
            begin = i;
        }
        if (right_) {
            while (end > begin) {
                size_t k = end - 1;
                while (k > begin && (static_cast<unsigned char>(text[k]) & 0xC0) == 0x80) --k;
                size_t j = k;
                if (!is_whitespace(next_char(text, j))) break;
                end = k;
            }
        }
        if (begin > 0) at_start = false;
        text = text.substr(begin, end - begin);
    }

private:
    bool left_, right_;
};

class StripAccents final : public Normalizer {
public:
    void normalize(std::string& text, bool&) const override {
        if (is_ascii(text)) return;
        std::string out;
        out.reserve(text.size());
        size_t i = 0;
        while (i < text.size()) {
            char32_t c = next_char(text, i);
            if (!is_nonspacing_mark(c)) append_utf8(out, c);
        }
        text = std::move(out);
    }
};

class ByteLevelNormalizer final : public Normalizer {
public:
    void normalize(std::string& text, bool&) const override {
        std::string out;
        append_byte_level(out, text);
        text = std::move(out);
    }
};

class Sequence final : public Normalizer {
public:
    explicit Sequence(std::vector<std::unique_ptr<Normalizer>> parts) : parts_(std::move(parts)) {}
    void normalize(std::string& text, bool& at_start) const override {
        for (const auto& p : parts_) p->normalize(text, at_start);
    }

private:
    std::vector<std::unique_ptr<Normalizer>> parts_;
};

}  // namespace

Pattern build_pattern(const Json& obj, std::string_view key, const Where& where) {
    const Json& p = where.require(obj, key);
    Where w = where.field(key);
    w.object(p);
    if (const Json* s = p.contains("String") ? &p["String"] : nullptr) {
        if (!s->is_string()) w.field("String").fail("expected a string");
        return Pattern(s->get<std::string>(), true, fmt::format("{}: {}", w.origin(), w.path()));
    }
    if (const Json* r = p.contains("Regex") ? &p["Regex"] : nullptr) {
        if (!r->is_string()) w.field("Regex").fail("expected a string");
        return Pattern(r->get<std::string>(), false, fmt::format("{}: {}", w.origin(), w.path()));
    }
    w.fail("expected {\"String\": ...} or {\"Regex\": ...}");
}

std::unique_ptr<Normalizer> build_normalizer(const Json& j, const Where& where, int depth) {
    if (j.is_null()) return nullptr;
    where.object(j);
    if (depth > 32) where.fail("normalizers nested too deeply");
    std::string type = where.get_string(j, "type");
    if (type == "NFC") return std::make_unique<UnicodeNormalizer>(NormForm::NFC);
    if (type == "NFD") return std::make_unique<UnicodeNormalizer>(NormForm::NFD);
    if (type == "NFKC") return std::make_unique<UnicodeNormalizer>(NormForm::NFKC);
    if (type == "NFKD") return std::make_unique<UnicodeNormalizer>(NormForm::NFKD);
    if (type == "Lowercase") return std::make_unique<Lowercase>();
    if (type == "StripAccents") return std::make_unique<StripAccents>();
    if (type == "ByteLevel") return std::make_unique<ByteLevelNormalizer>();
    if (type == "Prepend") return std::make_unique<Prepend>(where.get_string(j, "prepend"));
    if (type == "Replace")
        return std::make_unique<Replace>(build_pattern(j, "pattern", where), where.get_string(j, "content"));
    if (type == "Strip")
        return std::make_unique<Strip>(where.get_bool(j, "strip_left", true), where.get_bool(j, "strip_right", true));
    if (type == "Sequence") {
        const Json& list = where.get_array(j, "normalizers");
        std::vector<std::unique_ptr<Normalizer>> parts;
        for (size_t i = 0; i < list.size(); ++i) {
            auto n = build_normalizer(list[i], where.field("normalizers").index(i), depth + 1);
            if (n) parts.push_back(std::move(n));
        }
        return std::make_unique<Sequence>(std::move(parts));
    }
    where.field("type").unsupported(fmt::format("normalizer type '{}' is not supported", type));
}

}  // namespace attnlab::tok
