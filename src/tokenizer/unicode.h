// UTF-8 and Unicode helpers for the tokenizer: decoding, validation, the lossy repair that
// Hugging Face applies to decoded bytes, Rust's char classes, case mapping and normalisation.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace attnlab::tok {

// Byte length of the UTF-8 sequence that starts with `lead` (1 for invalid leads).
inline size_t utf8_seq_len(unsigned char lead) {
    if (lead < 0x80) return 1;
    if (lead >= 0xF0) return 4;
    if (lead >= 0xE0) return 3;
    if (lead >= 0xC0) return 2;
    return 1;
}

// Decodes the character at s[i] and advances i. `s` must be valid UTF-8.
char32_t next_char(std::string_view s, size_t& i);
void append_utf8(std::string& out, char32_t c);

// Length of the longest valid UTF-8 sequence at s[i] (0 when s[i] cannot start one); the
// "maximal subpart" rule that Rust's String::from_utf8_lossy follows.
size_t valid_seq_at(std::string_view s, size_t i, size_t* subpart = nullptr);
// Offset of the first byte that is not part of valid UTF-8, or npos.
size_t find_invalid_utf8(std::string_view s);
bool is_ascii(std::string_view s);
// String::from_utf8_lossy: each maximal invalid subpart becomes U+FFFD.
std::string utf8_lossy(std::string_view bytes);

// Rust char predicates as tokenizers uses them.
bool is_whitespace(char32_t c);   // char::is_whitespace (White_Space)
bool is_numeric(char32_t c);      // char::is_numeric (general category N*)
bool is_word_char(char32_t c);    // regex \w: alphanumeric, marks, connector punctuation
bool is_punctuation(char32_t c);  // ASCII punctuation or general category P*
bool is_nonspacing_mark(char32_t c);

// str::to_lowercase applied char by char (full mapping, no context rules).
std::string to_lower(std::string_view s);

enum class NormForm { NFC, NFD, NFKC, NFKD };
std::string unicode_normalize(std::string_view s, NormForm form);

}  // namespace attnlab::tok
