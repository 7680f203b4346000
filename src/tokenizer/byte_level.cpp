#include "tokenizer/byte_level.h"

#include <array>

#include "tokenizer/unicode.h"

namespace attnlab::tok {

namespace {

struct ByteMap {
    std::array<char32_t, 256> to_char{};
    std::array<std::array<char, 2>, 256> utf8{};  // 1 or 2 bytes; utf8_len says which
    std::array<unsigned char, 256> utf8_len{};
    std::array<int16_t, 324> to_byte{};

    ByteMap() {
        to_byte.fill(-1);
        auto printable = [](int b) {
            return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
        };
        int next = 256;
        for (int b = 0; b < 256; ++b) {
            char32_t c = printable(b) ? static_cast<char32_t>(b) : static_cast<char32_t>(next++);
            to_char[b] = c;
            to_byte[c] = static_cast<int16_t>(b);
            std::string enc;
            append_utf8(enc, c);
            utf8_len[b] = static_cast<unsigned char>(enc.size());
            for (size_t k = 0; k < enc.size(); ++k) utf8[b][k] = enc[k];
        }
    }
};

const ByteMap& byte_map() {
    static const ByteMap map;
    return map;
}

}  // namespace

void append_byte_level(std::string& out, std::string_view bytes) {
    const ByteMap& m = byte_map();
    size_t pos = out.size();
    out.resize(pos + bytes.size() * 2);
    char* p = out.data() + pos;
    for (char ch : bytes) {
        auto b = static_cast<unsigned char>(ch);
        p[0] = m.utf8[b][0];
        p[1] = m.utf8[b][1];
        p += m.utf8_len[b];
    }
    out.resize(static_cast<size_t>(p - out.data()));
}

int byte_of_char(char32_t c) { return c < 324 ? byte_map().to_byte[c] : -1; }

bool append_byte_level_decoded(std::string& out, std::string_view token) {
    size_t start = out.size();
    size_t i = 0;
    while (i < token.size()) {
        int b = byte_of_char(next_char(token, i));
        if (b < 0) {
            out.resize(start);
            return false;
        }
        out.push_back(static_cast<char>(b));
    }
    return true;
}

}  // namespace attnlab::tok
