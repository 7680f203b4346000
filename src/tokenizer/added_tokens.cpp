#include "tokenizer/added_tokens.h"

#include <algorithm>

#include "tokenizer/unicode.h"

namespace attnlab::tok {

namespace {

char32_t last_char(std::string_view s) {
    size_t k = s.size() - 1;
    while (k > 0 && (static_cast<unsigned char>(s[k]) & 0xC0) == 0x80) --k;
    return next_char(s, k);
}

// Start of the run of whitespace that ends `s` (s.size() when there is none).
size_t trailing_space_start(std::string_view s) {
    size_t end = s.size();
    while (end > 0) {
        size_t k = end - 1;
        while (k > 0 && (static_cast<unsigned char>(s[k]) & 0xC0) == 0x80) --k;
        size_t j = k;
        if (!is_whitespace(next_char(s, j))) break;
        end = k;
    }
    return end;
}

size_t leading_space_len(std::string_view s) {
    size_t i = 0;
    while (i < s.size()) {
        size_t at = i;
        if (!is_whitespace(next_char(s, i))) return at;
    }
    return s.size();
}

}  // namespace

int32_t AddedTokenMatcher::child(int32_t node, unsigned char b) const {
    for (const auto& [byte, next] : nodes_[node].children)
        if (byte == b) return next;
    return -1;
}

void AddedTokenMatcher::add(std::string_view pattern, const AddedToken& token) {
    if (pattern.empty()) return;
    int32_t node = 0;
    for (char ch : pattern) {
        auto b = static_cast<unsigned char>(ch);
        int32_t next = child(node, b);
        if (next < 0) {
            next = static_cast<int32_t>(nodes_.size());
            nodes_[node].children.emplace_back(b, next);
            nodes_.emplace_back();
        }
        node = next;
    }
    first_byte_[static_cast<unsigned char>(pattern[0])] = true;
    // A repeated pattern keeps its first token, as the first of equal patterns wins in
    // tokenizers' matcher.
    if (nodes_[node].entry >= 0) return;
    nodes_[node].entry = static_cast<int32_t>(entries_.size());
    entries_.push_back({token.id, token.single_word, token.lstrip, token.rstrip});
}

void AddedTokenMatcher::split(std::string_view text, std::vector<Segment>& out) const {
    if (text.empty()) return;
    size_t start_offset = 0;  // end of the last segment emitted
    size_t pos = 0;           // where the matcher resumes (end of the last raw match)
    while (pos < text.size()) {
        // Leftmost-longest: the first position with any match, the longest match there.
        size_t begin = pos;
        int32_t entry = -1;
        size_t match_end = 0;
        for (; begin < text.size(); ++begin) {
            if (!first_byte_[static_cast<unsigned char>(text[begin])]) continue;
            int32_t node = 0;
            for (size_t k = begin; k < text.size(); ++k) {
                node = child(node, static_cast<unsigned char>(text[k]));
                if (node < 0) break;
                if (nodes_[node].entry >= 0) {
                    entry = nodes_[node].entry;
                    match_end = k + 1;
                }
            }
            if (entry >= 0) break;
        }
        if (entry < 0) break;
        pos = match_end;
        const Entry& e = entries_[entry];
        size_t start = begin, stop = match_end;
        if (e.single_word) {
            bool word_before = start > 0 && is_word_char(last_char(text.substr(0, start)));
            size_t j = stop;
            bool word_after = stop < text.size() && is_word_char(next_char(text, j));
            if (word_before || word_after) continue;
        }
        if (e.lstrip) start = std::max(trailing_space_start(text.substr(0, start)), start_offset);
        if (e.rstrip) stop += leading_space_len(text.substr(stop));
        // A token can begin inside the spaces the previous one stripped on its right (only
        // tokens that start with whitespace); tokenizers then emits overlapping slices. Keep
        // its id but never let segments overlap.
        start = std::max(start, start_offset);
        stop = std::max(stop, start);
        if (start_offset < start) out.push_back({start_offset, start, -1});
        out.push_back({start, stop, e.id});
        start_offset = stop;
    }
    if (start_offset < text.size()) out.push_back({start_offset, text.size(), -1});
}

}  // namespace attnlab::tok
