// Text hygiene for the HTML report: UTF-8 repair, HTML escaping, numbers and JSON literals.
// Everything that reaches the page from data (titles, token strings, prompts) goes through here,
// because prompts routinely hold '<', '&', quotes and byte-level tokens that are not valid UTF-8.
#include "render.h"

#include <fmt/format.h>

#include <cmath>

namespace attnlab::report {

namespace {

constexpr std::string_view kReplacement = "\xEF\xBF\xBD";  // U+FFFD

// Length of the valid UTF-8 sequence at s[i], or 0 with `bad` = how many bytes form the maximal
// invalid prefix (Unicode's "maximal subpart" rule: each such prefix becomes one U+FFFD).
size_t utf8_sequence(std::string_view s, size_t i, size_t& bad) {
    const auto byte = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
    const unsigned char c = byte(i);
    size_t len = 0;
    unsigned char lo = 0x80, hi = 0xBF;  // allowed range of the second byte
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        if (c == 0xE0) lo = 0xA0;  // overlong
        if (c == 0xED) hi = 0x9F;  // UTF-16 surrogates
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        if (c == 0xF0) lo = 0x90;  // overlong
        if (c == 0xF4) hi = 0x8F;  // above U+10FFFF
    } else {
        bad = 1;
        return 0;
    }
    for (size_t k = 1; k < len; ++k) {
        const bool ok = i + k < s.size() &&
                        (k == 1 ? byte(i + k) >= lo && byte(i + k) <= hi
                                : byte(i + k) >= 0x80 && byte(i + k) <= 0xBF);
        if (!ok) {
            bad = k;
            return 0;
        }
    }
    return len;
}

}  // namespace

std::string valid_utf8(std::string_view text) {
    std::string out;
    out.reserve(text.size());
    size_t i = 0;
    while (i < text.size()) {
        const unsigned char c = static_cast<unsigned char>(text[i]);
        if (c < 0x80) {
            // C0 controls (but tab and newlines) and DEL are not allowed in HTML text.
            const bool control = (c < 0x20 && c != '\t' && c != '\n' && c != '\r') || c == 0x7F;
            if (control) {
                out += kReplacement;
            } else {
                out += char(c);
            }
            ++i;
            continue;
        }
        size_t bad = 0;
        if (const size_t len = utf8_sequence(text, i, bad); len > 0) {
            out.append(text.substr(i, len));
            i += len;
        } else {
            out += kReplacement;
            i += bad;
        }
    }
    return out;
}

std::string escape_html(std::string_view text) {
    const std::string clean = valid_utf8(text);
    std::string out;
    out.reserve(clean.size() + clean.size() / 8);
    for (char c : clean) {
        switch (c) {
            case '&': out += "&amp;"; break;
            case '<': out += "&lt;"; break;
            case '>': out += "&gt;"; break;
            case '"': out += "&quot;"; break;
            case '\'': out += "&#39;"; break;
            default: out += c;
        }
    }
    return out;
}

namespace detail {

std::string format_number(double v) {
    if (std::isnan(v)) return "NaN";
    if (std::isinf(v)) return v > 0 ? "\xE2\x88\x9E" : "-\xE2\x88\x9E";
    std::string s = fmt::format("{:.4g}", v);
    return s == "-0" ? "0" : s;
}

std::string json_number(double v) {
    if (!std::isfinite(v)) return "null";
    std::string s = fmt::format("{:.4g}", v);
    return s == "-0" ? "0" : s;
}

std::string json_string(std::string_view text) {
    const std::string clean = valid_utf8(text);
    std::string out = "\"";
    for (char ch : clean) {
        const unsigned char c = static_cast<unsigned char>(ch);
        if (c == '"' || c == '\\') {
            out += '\\';
            out += ch;
        } else if (c < 0x20) {
            out += fmt::format("\\u{:04x}", c);
        } else {
            out += ch;
        }
    }
    out += '"';
    return out;
}

std::string json_for_script(std::string_view json_text) {
    std::string out;
    out.reserve(json_text.size());
    for (char c : json_text) {
        switch (c) {
            case '<': out += "\\u003c"; break;
            case '>': out += "\\u003e"; break;
            case '&': out += "\\u0026"; break;
            default: out += c;
        }
    }
    return out;
}

size_t utf8_length(std::string_view text) {
    size_t n = 0;
    for (char c : text) n += (static_cast<unsigned char>(c) & 0xC0) != 0x80;
    return n;
}

std::string truncate_utf8(std::string_view text, size_t max_chars) {
    if (utf8_length(text) <= max_chars) return std::string(text);
    if (max_chars == 0) return "";
    size_t chars = 0, i = 0;
    for (; i < text.size(); ++i) {
        if ((static_cast<unsigned char>(text[i]) & 0xC0) != 0x80 && chars++ == max_chars - 1) break;
    }
    return std::string(text.substr(0, i)) + "\xE2\x80\xA6";
}

std::string colormap_gradient_css() {
    std::string css = "linear-gradient(to top";
    constexpr int kStops = 20;
    for (int i = 0; i <= kStops; ++i) {
        const Rgb c = colormap(double(i) / kStops);
        css += fmt::format(", rgb({},{},{}) {}%", c.r, c.g, c.b, i * 100 / kStops);
    }
    return css + ")";
}

}  // namespace detail

}  // namespace attnlab::report
