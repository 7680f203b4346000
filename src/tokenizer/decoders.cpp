#include "tokenizer/decoders.h"

#include "attnlab/error.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/normalizers.h"
#include "tokenizer/pre_tokenizers.h"
#include "tokenizer/regex.h"
#include "tokenizer/unicode.h"

namespace attnlab::tok {

namespace {

constexpr std::string_view kReplacementChar = "\xEF\xBF\xBD";

// All tokens become one string of their bytes; invalid UTF-8 is repaired as
// String::from_utf8_lossy does.
class ByteLevel final : public Decoder {
public:
    void decode_chain(std::vector<std::string>& tokens) const override {
        std::string bytes;
        for (const std::string& t : tokens)
            if (!append_byte_level_decoded(bytes, t)) bytes.append(t);
        tokens.assign(1, utf8_lossy(bytes));
    }
};

class Metaspace final : public Decoder {
public:
    Metaspace(char32_t replacement, PrependScheme scheme) : replacement_(replacement), scheme_(scheme) {}
    void decode_chain(std::vector<std::string>& tokens) const override {
        for (size_t k = 0; k < tokens.size(); ++k) {
            std::string out;
            const std::string& t = tokens[k];
            size_t i = 0;
            while (i < t.size()) {
                size_t b = i;
                char32_t c = next_char(t, i);
                if (c != replacement_) out.append(t, b, i - b);
                else if (k != 0 || scheme_ == PrependScheme::Never) out.push_back(' ');
            }
            tokens[k] = std::move(out);
        }
    }

private:
    char32_t replacement_;
    PrependScheme scheme_;
};

class Replace final : public Decoder {
public:
    Replace(Pattern pattern, std::string content) : pattern_(std::move(pattern)), content_(std::move(content)) {}
    void decode_chain(std::vector<std::string>& tokens) const override {
        std::vector<std::pair<size_t, size_t>> matches;
        for (std::string& t : tokens) {
            matches.clear();
            pattern_.find_matches(t, matches);
            if (matches.empty()) continue;
            std::string out;
            size_t prev = 0;
            for (auto [b, e] : matches) {
                out.append(t, prev, b - prev);
                out.append(content_);
                prev = e;
            }
            out.append(t, prev, std::string::npos);
            t = std::move(out);
        }
    }

private:
    Pattern pattern_;
    std::string content_;
};

// Runs of <0xNN> tokens become the text of their bytes, or one U+FFFD per byte when the
// run is not valid UTF-8.
class ByteFallback final : public Decoder {
public:
    void decode_chain(std::vector<std::string>& tokens) const override {
        std::vector<std::string> out;
        out.reserve(tokens.size());
        std::string bytes;
        auto flush = [&] {
            if (bytes.empty()) return;
            if (find_invalid_utf8(bytes) == std::string::npos) out.push_back(bytes);
            else
                for (size_t k = 0; k < bytes.size(); ++k) out.emplace_back(kReplacementChar);
            bytes.clear();
        };
        for (std::string& t : tokens) {
            int byte = parse_byte_token(t);
            if (byte >= 0) {
                bytes.push_back(static_cast<char>(byte));
                continue;
            }
            flush();
            out.push_back(std::move(t));
        }
        flush();
        tokens = std::move(out);
    }

private:
    static int hex(char c) {
        if (c >= '0' && c <= '9') return c - '0';
        if (c >= 'a' && c <= 'f') return c - 'a' + 10;
        if (c >= 'A' && c <= 'F') return c - 'A' + 10;
        return -1;
    }
    // "<0xNN>" -> NN (u8::from_str_radix also takes a leading '+'), else -1.
    static int parse_byte_token(std::string_view t) {
        if (t.size() != 6 || t.substr(0, 3) != "<0x" || t[5] != '>') return -1;
        if (t[3] == '+') return hex(t[4]);
        int hi = hex(t[3]), lo = hex(t[4]);
        return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
    }
};

class Fuse final : public Decoder {
public:
    void decode_chain(std::vector<std::string>& tokens) const override {
        std::string all;
        for (const std::string& t : tokens) all.append(t);
        tokens.assign(1, std::move(all));
    }
};

// Removes up to `start` leading and `stop` trailing copies of `content` from each token.
class Strip final : public Decoder {
public:
    Strip(char32_t content, size_t start, size_t stop) : content_(content), start_(start), stop_(stop) {}
    void decode_chain(std::vector<std::string>& tokens) const override {
        for (std::string& t : tokens) {
            std::vector<std::pair<size_t, char32_t>> chars;  // (byte offset, char)
            size_t i = 0;
            while (i < t.size()) {
                size_t b = i;
                chars.emplace_back(b, next_char(t, i));
            }
            size_t first = 0;
            while (first < start_ && first < chars.size() && chars[first].second == content_) ++first;
            size_t last = chars.size();
            for (size_t k = 0; k < stop_ && last > first && chars[last - 1].second == content_; ++k) --last;
            size_t begin = first < chars.size() ? chars[first].first : t.size();
            size_t end = last < chars.size() ? chars[last].first : t.size();
            t = t.substr(begin, end - begin);
        }
    }

private:
    char32_t content_;
    size_t start_, stop_;
};

// Classic BPE: the end-of-word suffix becomes a space (nothing after the last token).
class BpeDecoder final : public Decoder {
public:
    explicit BpeDecoder(std::string suffix) : suffix_(std::move(suffix)) {}
    void decode_chain(std::vector<std::string>& tokens) const override {
        if (suffix_.empty()) return;
        for (size_t k = 0; k < tokens.size(); ++k) {
            std::string& t = tokens[k];
            std::string_view rep = k + 1 == tokens.size() ? "" : " ";
            std::string out;
            size_t prev = 0;
            for (size_t pos = t.find(suffix_); pos != std::string::npos; pos = t.find(suffix_, prev)) {
                out.append(t, prev, pos - prev);
                out.append(rep);
                prev = pos + suffix_.size();
            }
            out.append(t, prev, std::string::npos);
            t = std::move(out);
        }
    }

private:
    std::string suffix_;
};

class Sequence final : public Decoder {
public:
    explicit Sequence(std::vector<std::unique_ptr<Decoder>> parts) : parts_(std::move(parts)) {}
    void decode_chain(std::vector<std::string>& tokens) const override {
        for (const auto& p : parts_) p->decode_chain(tokens);
    }

private:
    std::vector<std::unique_ptr<Decoder>> parts_;
};

size_t get_count(const Json& j, std::string_view key, const Where& where) {
    int64_t v = where.get_int(j, key, 0);
    if (v < 0) where.field(key).fail("expected a count >= 0");
    return static_cast<size_t>(v);
}

}  // namespace

std::unique_ptr<Decoder> build_decoder(const Json& j, const Where& where, int depth) {
    if (j.is_null()) return nullptr;
    where.object(j);
    if (depth > 32) where.fail("decoders nested too deeply");
    std::string type = where.get_string(j, "type");
    if (type == "ByteLevel") return std::make_unique<ByteLevel>();
    if (type == "Metaspace")
        return std::make_unique<Metaspace>(where.get_char(j, "replacement"), parse_prepend_scheme(j, where));
    if (type == "Replace")
        return std::make_unique<Replace>(build_pattern(j, "pattern", where), where.get_string(j, "content"));
    if (type == "ByteFallback") return std::make_unique<ByteFallback>();
    if (type == "Fuse") return std::make_unique<Fuse>();
    if (type == "Strip")
        return std::make_unique<Strip>(where.get_char(j, "content"), get_count(j, "start", where),
                                       get_count(j, "stop", where));
    if (type == "BPEDecoder") return std::make_unique<BpeDecoder>(where.get_string(j, "suffix", "</w>"));
    if (type == "Sequence") {
        const Json& list = where.get_array(j, "decoders");
        std::vector<std::unique_ptr<Decoder>> parts;
        for (size_t i = 0; i < list.size(); ++i) {
            auto d = build_decoder(list[i], where.field("decoders").index(i), depth + 1);
            if (d) parts.push_back(std::move(d));
        }
        return std::make_unique<Sequence>(std::move(parts));
    }
    where.field("type").unsupported(fmt::format("decoder type '{}' is not supported", type));
}

}  // namespace attnlab::tok
