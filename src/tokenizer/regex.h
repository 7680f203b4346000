// Patterns of tokenizer.json (Split, Replace): PCRE2 in UTF + UCP mode, which handles the
// \p{L}/\p{N} classes, lookahead and inline case-insensitive groups of the GPT-2, Llama-3 and
// Qwen pre-tokenizers. Iteration follows the Oniguruma binding that `tokenizers` uses, so
// empty matches split text at the same places.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace attnlab::tok {

// A piece of a split text: [begin, end) and whether the pattern matched it.
struct Span {
    size_t begin;
    size_t end;
    bool is_match;
};

class Pattern {
public:
    // `literal`: match the text as is (a JSON {"String": ...} pattern). Throws FormatError
    // naming `where` when the regex does not compile.
    Pattern(std::string_view pattern, bool literal, const std::string& where);
    ~Pattern();
    Pattern(Pattern&&) noexcept;
    Pattern& operator=(Pattern&&) noexcept;

    // Calls on_match(begin, end) for each match, non-overlapping, left to right. `text` must
    // be valid UTF-8.
    void for_each_match(std::string_view text, const std::function<void(size_t, size_t)>& on_match) const;
    void find_matches(std::string_view text, std::vector<std::pair<size_t, size_t>>& out) const;
    // tokenizers' `Pattern::find_matches`: the matches plus the gaps, covering all of `text`
    // (one non-match span for an empty text).
    void find_spans(std::string_view text, std::vector<Span>& out) const;

private:
    struct Compiled;
    std::string literal_;
    std::unique_ptr<Compiled> compiled_;  // null for a non-empty literal (plain search)
};

}  // namespace attnlab::tok
