// Added tokens of tokenizer.json (specials such as <|endoftext|>, <s>, and user-added words):
// found in the text before the model runs, leftmost-longest like tokenizers' Aho-Corasick
// matcher, with single_word / lstrip / rstrip, never split by the model.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace attnlab::tok {

struct AddedToken {
    std::string content;
    int32_t id = -1;
    bool single_word = false;
    bool lstrip = false;
    bool rstrip = false;
    bool normalized = false;
    bool special = false;
};

// A segment of the text: an added token (id >= 0) or the text between them (id < 0).
struct Segment {
    size_t begin;
    size_t end;
    int32_t id;
};

class AddedTokenMatcher {
public:
    // `patterns[k]` is the text to look for (the content, normalized for normalized tokens).
    void add(std::string_view pattern, const AddedToken& token);
    bool empty() const { return entries_.empty(); }
    // Splits `text` into segments covering all of it (none for an empty text).
    void split(std::string_view text, std::vector<Segment>& out) const;

private:
    struct Node {
        std::vector<std::pair<unsigned char, int32_t>> children;
        int32_t entry = -1;  // index into entries_ when a pattern ends here
    };
    struct Entry {
        int32_t id;
        bool single_word, lstrip, rstrip;
    };
    int32_t child(int32_t node, unsigned char b) const;

    std::vector<Node> nodes_{Node{}};
    std::vector<Entry> entries_;
    bool first_byte_[256] = {};
};

}  // namespace attnlab::tok
