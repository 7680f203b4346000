// Reading tokenizer.json: a streaming parse that builds a JSON tree for the small parts and
// captures model.vocab / model.merges straight into flat arrays (a 150k-entry vocabulary as
// a tree costs more than the rest of loading), plus typed accessors whose errors name the
// file and the field at fault.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace attnlab::tok {

using Json = nlohmann::json;

struct VocabEntry {
    uint32_t offset;
    uint32_t len;
    int64_t id;
};

struct MergeEntry {
    uint32_t a_offset, a_len, b_offset, b_len;
};

struct TokenizerJson {
    Json root;  // model.vocab and model.merges are absent here when captured below
    bool vocab_captured = false;
    std::string vocab_text;
    std::vector<VocabEntry> vocab;  // in file order
    bool merges_captured = false;
    std::string merges_text;
    std::vector<MergeEntry> merges;  // in file order (= rank)

    std::string_view vocab_token(const VocabEntry& e) const { return {vocab_text.data() + e.offset, e.len}; }
    std::string_view merge_left(const MergeEntry& m) const { return {merges_text.data() + m.a_offset, m.a_len}; }
    std::string_view merge_right(const MergeEntry& m) const { return {merges_text.data() + m.b_offset, m.b_len}; }
};

// Throws FormatError "[tokenizer] <origin>: ..." on malformed JSON or a malformed vocab/merges.
TokenizerJson parse_tokenizer_json(std::string_view text, const std::string& origin);

// A position in the tokenizer.json tree, for error messages and typed reads.
class Where {
public:
    Where(const std::string& origin, std::string path) : origin_(&origin), path_(std::move(path)) {}
    Where field(std::string_view key) const;
    Where index(size_t i) const;
    const std::string& path() const { return path_; }
    const std::string& origin() const { return *origin_; }

    [[noreturn]] void fail(std::string_view what) const;  // FormatError
    [[noreturn]] void unsupported(std::string_view what) const;  // NotSupported

    // `obj` must be an object; these read obj[key] with type checks.
    const Json& object(const Json& j) const;  // checks that j (at this path) is an object
    const Json* find(const Json& obj, std::string_view key) const;  // null if absent or null
    const Json& require(const Json& obj, std::string_view key) const;
    std::string get_string(const Json& obj, std::string_view key) const;
    std::string get_string(const Json& obj, std::string_view key, std::string_view fallback) const;
    std::optional<std::string> get_optional_string(const Json& obj, std::string_view key) const;
    bool get_bool(const Json& obj, std::string_view key, bool fallback) const;
    int64_t get_int(const Json& obj, std::string_view key, int64_t fallback) const;
    int64_t get_int(const Json& obj, std::string_view key) const;
    char32_t get_char(const Json& obj, std::string_view key) const;  // one-character string
    const Json& get_array(const Json& obj, std::string_view key) const;

private:
    const std::string* origin_;
    std::string path_;
};

}  // namespace attnlab::tok
