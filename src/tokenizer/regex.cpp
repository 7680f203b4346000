#define PCRE2_CODE_UNIT_WIDTH 8
#include "tokenizer/regex.h"

#include <pcre2.h>

#include "attnlab/error.h"
#include "tokenizer/unicode.h"

namespace attnlab::tok {

struct Pattern::Compiled {
    pcre2_code* code = nullptr;
    ~Compiled() { pcre2_code_free(code); }
};

namespace {

// Match state is per thread: a Tokenizer is shared by threads that encode concurrently, and
// PCRE2 match data / JIT stacks must not be.
struct MatchScratch {
    pcre2_match_data* data = nullptr;
    pcre2_match_context* context = nullptr;
    pcre2_jit_stack* jit_stack = nullptr;
    MatchScratch() {
        data = pcre2_match_data_create(1, nullptr);
        context = pcre2_match_context_create(nullptr);
        // Long whitespace runs backtrack through `\s+(?!\S)`; the default 32 KiB JIT stack is
        // too small for multi-megabyte inputs.
        jit_stack = pcre2_jit_stack_create(32 * 1024, 8 * 1024 * 1024, nullptr);
        if (context && jit_stack) pcre2_jit_stack_assign(context, nullptr, jit_stack);
    }
    ~MatchScratch() {
        pcre2_match_data_free(data);
        pcre2_match_context_free(context);
        pcre2_jit_stack_free(jit_stack);
    }
};

MatchScratch& scratch() {
    thread_local MatchScratch s;
    return s;
}

std::string pcre2_message(int code) {
    PCRE2_UCHAR buf[256];
    int n = pcre2_get_error_message(code, buf, sizeof(buf));
    return n < 0 ? fmt::format("PCRE2 error {}", code) : std::string(reinterpret_cast<char*>(buf));
}

}  // namespace

Pattern::Pattern(std::string_view pattern, bool literal, const std::string& where) {
    if (literal && !pattern.empty()) {
        literal_ = std::string(pattern);
        return;
    }
    ATTNLAB_CHECK(find_invalid_utf8(pattern) == std::string_view::npos, FormatError,
                  "[tokenizer] {}: pattern is not valid UTF-8", where);
    int err = 0;
    PCRE2_SIZE err_off = 0;
    uint32_t options = PCRE2_UTF | PCRE2_UCP | (literal ? PCRE2_LITERAL : 0);
    pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                                     options, &err, &err_off, nullptr);
    if (!code)
        throw FormatError(fmt::format("[tokenizer] {}: regex '{}' does not compile: {} at offset {}",
                                      where, pattern, pcre2_message(err), err_off));
    compiled_ = std::make_unique<Compiled>();
    compiled_->code = code;
    // JIT is an optimisation: a pattern JIT cannot handle still runs in the interpreter.
    pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);
}

Pattern::~Pattern() = default;
Pattern::Pattern(Pattern&&) noexcept = default;
Pattern& Pattern::operator=(Pattern&&) noexcept = default;

void Pattern::find_matches(std::string_view text,
                           std::vector<std::pair<size_t, size_t>>& out) const {
    for_each_match(text, [&out](size_t b, size_t e) { out.emplace_back(b, e); });
}

void Pattern::for_each_match(std::string_view text, const std::function<void(size_t, size_t)>& on_match) const {
    if (!compiled_) {
        for (size_t pos = text.find(literal_); pos != std::string_view::npos;
             pos = text.find(literal_, pos + literal_.size()))
            on_match(pos, pos + literal_.size());
        return;
    }
    MatchScratch& s = scratch();
    ATTNLAB_CHECK(s.data && s.context, Error, "[tokenizer] out of memory for regex matching");
    // Oniguruma's find_iter: search from the end of the last match; an empty match right
    // where the previous match ended is skipped by moving on one character.
    size_t last_end = 0;
    size_t last_match_end = std::string_view::npos;
    while (last_end <= text.size()) {
        int rc = pcre2_match(compiled_->code, reinterpret_cast<PCRE2_SPTR>(text.data()), text.size(),
                             last_end, PCRE2_NO_UTF_CHECK, s.data, s.context);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0)
            throw InvalidArgument(fmt::format("[tokenizer] regex matching failed: {}", pcre2_message(rc)));
        PCRE2_SIZE* ov = pcre2_get_ovector_pointer(s.data);
        size_t begin = ov[0], end = ov[1];
        if (begin == end && last_match_end == end) {
            if (last_end >= text.size()) break;
            last_end += utf8_seq_len(static_cast<unsigned char>(text[last_end]));
            continue;
        }
        last_end = end;
        last_match_end = end;
        on_match(begin, end);
    }
}

void Pattern::find_spans(std::string_view text, std::vector<Span>& out) const {
    if (text.empty()) {
        out.push_back({0, 0, false});
        return;
    }
    size_t prev = 0;
    for_each_match(text, [&](size_t b, size_t e) {
        if (prev != b) out.push_back({prev, b, false});
        out.push_back({b, e, true});
        prev = e;
    });
    if (prev != text.size()) out.push_back({prev, text.size(), false});
}

}  // namespace attnlab::tok
