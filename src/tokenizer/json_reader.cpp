#include "tokenizer/json_reader.h"

#include "attnlab/error.h"
#include "tokenizer/unicode.h"

namespace attnlab::tok {

namespace {

// Nesting beyond this is hostile input, not a tokenizer (real files nest 4-6 levels); the
// limit keeps the recursive builders and destructors off the stack edge.
constexpr size_t kMaxDepth = 128;

class Sax {
public:
    explicit Sax(TokenizerJson& out) : out_(out) {}

    std::string error;

    bool null() { return value(Json(nullptr)); }
    bool boolean(bool v) { return value(Json(v)); }
    bool number_integer(int64_t v) {
        if (mode_ == Mode::Vocab) return vocab_id(v);
        return value(Json(v));
    }
    bool number_unsigned(uint64_t v) {
        if (mode_ == Mode::Vocab)
            return v > static_cast<uint64_t>(INT64_MAX) ? vocab_id(-1) : vocab_id(static_cast<int64_t>(v));
        return value(Json(v));
    }
    bool number_float(double v, const std::string&) {
        if (mode_ == Mode::Vocab) return fail(fmt::format("model.vocab['{}'] must be an integer id", key_));
        return value(Json(v));
    }
    bool string(std::string& s) {
        if (mode_ == Mode::Merges) return legacy_merge(s);
        if (mode_ == Mode::MergePair) {
            if (pair_count_ >= 2) return fail(fmt::format("model.merges[{}] must be a pair of tokens", out_.merges.size()));
            pair_[pair_count_++] = append(out_.merges_text, s);
            return true;
        }
        if (mode_ == Mode::Vocab) return fail(fmt::format("model.vocab['{}'] must be an integer id", key_));
        return value(Json(std::move(s)));
    }
    bool binary(Json::binary_t&) { return fail("binary values are not JSON"); }

    bool start_object(size_t) {
        if (mode_ != Mode::Tree) return bad_capture();
        if (++depth_ > kMaxDepth) return fail("nesting too deep");
        if (at_model_field("vocab")) {
            mode_ = Mode::Vocab;
            out_.vocab_captured = true;
            out_.vocab.clear();
            out_.vocab_text.clear();
            return true;
        }
        return open(Json::object());
    }
    bool key(std::string& k) {
        key_ = k;
        return true;
    }
    bool end_object() {
        --depth_;
        if (mode_ == Mode::Vocab) {
            mode_ = Mode::Tree;
            return true;
        }
        return close();
    }
    bool start_array(size_t) {
        if (++depth_ > kMaxDepth) return fail("nesting too deep");
        if (mode_ == Mode::Merges) {
            mode_ = Mode::MergePair;
            pair_count_ = 0;
            return true;
        }
        if (mode_ != Mode::Tree) return bad_capture();
        if (at_model_field("merges")) {
            mode_ = Mode::Merges;
            out_.merges_captured = true;
            out_.merges.clear();
            out_.merges_text.clear();
            return true;
        }
        return open(Json::array());
    }
    bool end_array() {
        --depth_;
        if (mode_ == Mode::MergePair) {
            if (pair_count_ != 2) return fail(fmt::format("model.merges[{}] must be a pair of tokens", out_.merges.size()));
            out_.merges.push_back({pair_[0].first, pair_[0].second, pair_[1].first, pair_[1].second});
            mode_ = Mode::Merges;
            return true;
        }
        if (mode_ == Mode::Merges) {
            mode_ = Mode::Tree;
            return true;
        }
        return close();
    }
    bool parse_error(size_t position, const std::string&, const nlohmann::detail::exception& ex) {
        if (error.empty()) error = fmt::format("invalid JSON at byte {}: {}", position, ex.what());
        return false;
    }

private:
    enum class Mode { Tree, Vocab, Merges, MergePair };

    bool fail(std::string msg) {
        if (error.empty()) error = std::move(msg);
        return false;
    }
    bool bad_capture() {
        if (mode_ == Mode::Vocab) return fail(fmt::format("model.vocab['{}'] must be an integer id", key_));
        return fail(fmt::format("model.merges[{}] must be a pair of tokens or a \"a b\" string", out_.merges.size()));
    }
    // True when the container about to open is root["model"][name].
    bool at_model_field(const char* name) const {
        return stack_.size() == 2 && stack_[1]->is_object() && key_ == name && model_key_ == "model";
    }
    static std::pair<uint32_t, uint32_t> append(std::string& arena, const std::string& s) {
        auto off = static_cast<uint32_t>(arena.size());
        arena.append(s);
        return {off, static_cast<uint32_t>(s.size())};
    }
    bool vocab_id(int64_t id) {
        auto [off, len] = append(out_.vocab_text, key_);
        out_.vocab.push_back({off, len, id});
        return true;
    }
    bool legacy_merge(const std::string& s) {
        // tokenizers splits legacy merges on every space and wants exactly two parts.
        size_t sp = s.find(' ');
        if (sp == std::string::npos || s.find(' ', sp + 1) != std::string::npos)
            return fail(fmt::format("model.merges[{}] '{}' is not a \"left right\" pair", out_.merges.size(), s));
        auto off = static_cast<uint32_t>(out_.merges_text.size());
        out_.merges_text.append(s);
        out_.merges.push_back({off, static_cast<uint32_t>(sp), off + static_cast<uint32_t>(sp) + 1,
                               static_cast<uint32_t>(s.size() - sp - 1)});
        return true;
    }
    bool value(Json&& v) {
        if (mode_ == Mode::Vocab || mode_ == Mode::Merges || mode_ == Mode::MergePair) return bad_capture();
        insert(std::move(v));
        return true;
    }
    Json* insert(Json&& v) {
        if (stack_.empty()) {
            out_.root = std::move(v);
            return &out_.root;
        }
        Json& top = *stack_.back();
        if (top.is_array()) {
            top.push_back(std::move(v));
            return &top.back();
        }
        Json& slot = top[key_];
        slot = std::move(v);
        return &slot;
    }
    bool open(Json&& container) {
        if (stack_.size() == 1) model_key_ = key_;
        stack_.push_back(insert(std::move(container)));
        return true;
    }
    bool close() {
        stack_.pop_back();
        return true;
    }

    TokenizerJson& out_;
    std::vector<Json*> stack_;
    std::string key_;
    std::string model_key_;  // the key of the depth-1 container currently open
    Mode mode_ = Mode::Tree;
    size_t depth_ = 0;
    std::pair<uint32_t, uint32_t> pair_[2];
    int pair_count_ = 0;
};

}  // namespace

TokenizerJson parse_tokenizer_json(std::string_view text, const std::string& origin) {
    TokenizerJson out;
    Sax sax(out);
    bool ok = false;
    try {
        ok = Json::sax_parse(text.begin(), text.end(), &sax, nlohmann::detail::input_format_t::json, true, false);
    } catch (const std::exception& e) {
        if (sax.error.empty()) sax.error = e.what();
    }
    if (!ok || !sax.error.empty())
        throw FormatError(fmt::format("[tokenizer] {}: {}", origin, sax.error.empty() ? "invalid JSON" : sax.error));
    if (!out.root.is_object()) throw FormatError(fmt::format("[tokenizer] {}: the top level must be a JSON object", origin));
    return out;
}

Where Where::field(std::string_view key) const {
    return Where(*origin_, path_.empty() ? std::string(key) : fmt::format("{}.{}", path_, key));
}

Where Where::index(size_t i) const { return Where(*origin_, fmt::format("{}[{}]", path_, i)); }

void Where::fail(std::string_view what) const {
    throw FormatError(fmt::format("[tokenizer] {}: {}: {}", *origin_, path_.empty() ? "<root>" : path_, what));
}

void Where::unsupported(std::string_view what) const {
    throw NotSupported(fmt::format("[tokenizer] {}: {}: {}", *origin_, path_.empty() ? "<root>" : path_, what));
}

const Json& Where::object(const Json& j) const {
    if (!j.is_object()) fail(fmt::format("expected a JSON object, got {}", j.type_name()));
    return j;
}

const Json* Where::find(const Json& obj, std::string_view key) const {
    object(obj);
    auto it = obj.find(key);
    if (it == obj.end() || it->is_null()) return nullptr;
    return &*it;
}

const Json& Where::require(const Json& obj, std::string_view key) const {
    const Json* v = find(obj, key);
    if (!v) fail(fmt::format("missing field '{}'", key));
    return *v;
}

std::string Where::get_string(const Json& obj, std::string_view key) const {
    const Json& v = require(obj, key);
    if (!v.is_string()) field(key).fail(fmt::format("expected a string, got {}", v.type_name()));
    return v.get<std::string>();
}

std::string Where::get_string(const Json& obj, std::string_view key, std::string_view fallback) const {
    auto v = get_optional_string(obj, key);
    return v ? *v : std::string(fallback);
}

std::optional<std::string> Where::get_optional_string(const Json& obj, std::string_view key) const {
    const Json* v = find(obj, key);
    if (!v) return std::nullopt;
    if (!v->is_string()) field(key).fail(fmt::format("expected a string, got {}", v->type_name()));
    return v->get<std::string>();
}

bool Where::get_bool(const Json& obj, std::string_view key, bool fallback) const {
    const Json* v = find(obj, key);
    if (!v) return fallback;
    if (!v->is_boolean()) field(key).fail(fmt::format("expected true or false, got {}", v->type_name()));
    return v->get<bool>();
}

int64_t Where::get_int(const Json& obj, std::string_view key, int64_t fallback) const {
    const Json* v = find(obj, key);
    if (!v) return fallback;
    if (v->is_number_unsigned()) {
        auto u = v->get<uint64_t>();
        if (u > static_cast<uint64_t>(INT64_MAX)) field(key).fail("integer out of range");
        return static_cast<int64_t>(u);
    }
    if (!v->is_number_integer()) field(key).fail(fmt::format("expected an integer, got {}", v->type_name()));
    return v->get<int64_t>();
}

int64_t Where::get_int(const Json& obj, std::string_view key) const {
    require(obj, key);
    return get_int(obj, key, 0);
}

char32_t Where::get_char(const Json& obj, std::string_view key) const {
    std::string s = get_string(obj, key);
    size_t i = 0;
    if (s.empty()) field(key).fail("expected one character, got an empty string");
    char32_t c = next_char(s, i);
    if (i != s.size()) field(key).fail(fmt::format("expected one character, got '{}'", s));
    return c;
}

const Json& Where::get_array(const Json& obj, std::string_view key) const {
    const Json& v = require(obj, key);
    if (!v.is_array()) field(key).fail(fmt::format("expected an array, got {}", v.type_name()));
    return v;
}

}  // namespace attnlab::tok
