// GPT-2's bytes <-> unicode map: every byte gets a printable code point ('!'..'~', '¡'..'¬',
// '®'..'ÿ' map to themselves, the other 68 bytes to U+0100 upward, so ' ' is 'Ġ'), which lets
// byte-level BPE vocabularies be stored as text.
#pragma once

#include <string>
#include <string_view>

namespace attnlab::tok {

// Appends the mapped form of `bytes` (each byte becomes one code point).
void append_byte_level(std::string& out, std::string_view bytes);
// The byte a mapped code point stands for, or -1 if it is not one of the 256.
int byte_of_char(char32_t c);
// Inverse of append_byte_level for one token; false (and `out` untouched) when a character
// of `token` is not in the map, as tokenizers then keeps the token's own bytes.
bool append_byte_level_decoded(std::string& out, std::string_view token);

}  // namespace attnlab::tok
