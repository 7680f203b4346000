#include "tokenizer/pre_tokenizers.h"

#include <algorithm>

#include "attnlab/error.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/normalizers.h"
#include "tokenizer/regex.h"
#include "tokenizer/unicode.h"

namespace attnlab::tok {

namespace {

// How the matches of a split pattern become pieces (tokenizers' SplitDelimiterBehavior).
enum class Behavior { Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous };

Behavior parse_behavior(const Json& j, const Where& where, Behavior fallback) {
    auto s = where.get_optional_string(j, "behavior");
    if (!s) return fallback;
    if (*s == "Removed") return Behavior::Removed;
    if (*s == "Isolated") return Behavior::Isolated;
    if (*s == "MergedWithPrevious") return Behavior::MergedWithPrevious;
    if (*s == "MergedWithNext") return Behavior::MergedWithNext;
    if (*s == "Contiguous") return Behavior::Contiguous;
    where.field("behavior").fail(fmt::format("unknown split behavior '{}'", *s));
}

// Spans where each character satisfying `pred` is a match of its own (tokenizers' Pattern
// for a char predicate).
template <class Pred>
void char_spans(std::string_view text, Pred pred, std::vector<Span>& out) {
    if (text.empty()) {
        out.push_back({0, 0, false});
        return;
    }
    size_t last = 0, i = 0;
    while (i < text.size()) {
        size_t b = i;
        char32_t c = next_char(text, i);
        if (pred(c)) {
            if (last < b) out.push_back({last, b, false});
            out.push_back({b, i, true});
            last = i;
        }
    }
    if (last < text.size()) out.push_back({last, text.size(), false});
}

Piece sub_piece(const Piece& parent, size_t begin, size_t end) {
    Piece piece;
    piece.text = parent.text.substr(begin, end - begin);
    piece.at_start = parent.at_start && begin == 0;
    return piece;
}

// Turns the spans of `parent.text` into pieces according to `behavior` (NormalizedString::split).
void emit_split(Piece&& parent, std::vector<Span>& spans, Behavior behavior, bool invert, const PieceSink& out) {
    if (invert)
        for (Span& s : spans) s.is_match = !s.is_match;
    // The common case, one piece covering the parent, moves the text instead of copying it.
    if (spans.size() == 1 && behavior != Behavior::Removed) {
        if (!parent.text.empty()) out(std::move(parent));
        return;
    }
    if (behavior == Behavior::Isolated || behavior == Behavior::Removed) {
        for (const Span& s : spans)
            if (s.begin != s.end && !(behavior == Behavior::Removed && s.is_match)) out(sub_piece(parent, s.begin, s.end));
        return;
    }
    std::vector<std::pair<size_t, size_t>> pieces;
    pieces.reserve(spans.size());
    bool prev_match = false;
    if (behavior == Behavior::MergedWithNext) {
        for (size_t k = spans.size(); k-- > 0;) {
            const Span& s = spans[k];
            if (s.is_match && !prev_match && !pieces.empty()) pieces.back().first = s.begin;
            else pieces.emplace_back(s.begin, s.end);
            prev_match = s.is_match;
        }
        std::reverse(pieces.begin(), pieces.end());
    } else {
        for (const Span& s : spans) {
            bool merge = behavior == Behavior::Contiguous ? s.is_match == prev_match : s.is_match && !prev_match;
            if (merge && !pieces.empty()) pieces.back().second = s.end;
            else pieces.emplace_back(s.begin, s.end);
            prev_match = s.is_match;
        }
    }
    for (auto [b, e] : pieces)
        if (b != e) out(sub_piece(parent, b, e));
}

// Isolated split by a regex without a span list: the pieces go out as the matches are found.
void split_isolated(const Pattern& pattern, Piece&& parent, const PieceSink& out) {
    size_t prev = 0;
    bool whole = false;
    pattern.for_each_match(parent.text, [&](size_t b, size_t e) {
        if (b == 0 && e == parent.text.size()) {
            whole = true;
            return;
        }
        if (prev != b) out(sub_piece(parent, prev, b));
        if (b != e) out(sub_piece(parent, b, e));
        prev = e;
    });
    if (whole || prev == 0) {
        if (!parent.text.empty()) out(std::move(parent));
    } else if (prev != parent.text.size()) {
        out(sub_piece(parent, prev, parent.text.size()));
    }
}

class ByteLevel final : public PreTokenizer {
public:
    ByteLevel(bool add_prefix_space, bool use_regex, const std::string& where)
        : add_prefix_space_(add_prefix_space) {
        if (use_regex)
            regex_ = std::make_unique<Pattern>(
                R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)", false, where);
    }
    void split(Piece&& in, const PieceSink& out) const override {
        if (add_prefix_space_ && (in.text.empty() || in.text[0] != ' ')) in.text.insert(in.text.begin(), ' ');
        auto map_out = [&out](Piece&& p) {
            std::string mapped;
            append_byte_level(mapped, p.text);
            p.text.swap(mapped);
            out(std::move(p));
        };
        if (regex_) split_isolated(*regex_, std::move(in), map_out);
        else if (!in.text.empty()) map_out(std::move(in));
    }

private:
    bool add_prefix_space_;
    std::unique_ptr<Pattern> regex_;
};

class Split final : public PreTokenizer {
public:
    Split(Pattern pattern, Behavior behavior, bool invert)
        : pattern_(std::move(pattern)), behavior_(behavior), invert_(invert) {}
    void split(Piece&& in, const PieceSink& out) const override {
        if (behavior_ == Behavior::Isolated && !invert_) {
            split_isolated(pattern_, std::move(in), out);
            return;
        }
        std::vector<Span> spans;
        pattern_.find_spans(in.text, spans);
        emit_split(std::move(in), spans, behavior_, invert_, out);
    }

private:
    Pattern pattern_;
    Behavior behavior_;
    bool invert_;
};

class Metaspace final : public PreTokenizer {
public:
    Metaspace(char32_t replacement, PrependScheme scheme, bool split)
        : replacement_(replacement), scheme_(scheme), split_(split) {
        append_utf8(rep_, replacement);
    }
    void split(Piece&& in, const PieceSink& out) const override {
        std::string text;
        text.reserve(in.text.size() + rep_.size() * 4);
        for (char c : in.text) {
            if (c == ' ') text.append(rep_);
            else text.push_back(c);
        }
        bool starts_with_rep = text.compare(0, rep_.size(), rep_) == 0;
        if (!starts_with_rep && (scheme_ == PrependScheme::Always || (scheme_ == PrependScheme::First && in.at_start)))
            text.insert(0, rep_);
        in.text = std::move(text);
        if (!split_) {
            if (!in.text.empty()) out(std::move(in));
            return;
        }
        std::vector<Span> spans;
        char32_t rep = replacement_;
        char_spans(in.text, [rep](char32_t c) { return c == rep; }, spans);
        emit_split(std::move(in), spans, Behavior::MergedWithNext, false, out);
    }

private:
    char32_t replacement_;
    std::string rep_;
    PrependScheme scheme_;
    bool split_;
};

// Splits on a character class: Digits, WhitespaceSplit, Punctuation, CharDelimiterSplit.
template <class Pred>
class CharSplit final : public PreTokenizer {
public:
    CharSplit(Pred pred, Behavior behavior) : pred_(pred), behavior_(behavior) {}
    void split(Piece&& in, const PieceSink& out) const override {
        std::vector<Span> spans;
        char_spans(in.text, pred_, spans);
        emit_split(std::move(in), spans, behavior_, false, out);
    }

private:
    Pred pred_;
    Behavior behavior_;
};

template <class Pred>
std::unique_ptr<PreTokenizer> make_char_split(Pred pred, Behavior behavior) {
    return std::make_unique<CharSplit<Pred>>(pred, behavior);
}

class Sequence final : public PreTokenizer {
public:
    explicit Sequence(std::vector<std::unique_ptr<PreTokenizer>> parts) : parts_(std::move(parts)) {}
    void split(Piece&& in, const PieceSink& out) const override { run(0, std::move(in), out); }

private:
    // Depth first: each piece of stage k goes through the later stages before the next one.
    void run(size_t stage, Piece&& in, const PieceSink& out) const {
        if (stage == parts_.size()) {
            out(std::move(in));
            return;
        }
        parts_[stage]->split(std::move(in), [&](Piece&& p) { run(stage + 1, std::move(p), out); });
    }

    std::vector<std::unique_ptr<PreTokenizer>> parts_;
};

}  // namespace

PrependScheme parse_prepend_scheme(const Json& j, const Where& where) {
    auto s = where.get_optional_string(j, "prepend_scheme");
    PrependScheme scheme = PrependScheme::Always;
    if (s) {
        if (*s == "first") scheme = PrependScheme::First;
        else if (*s == "never") scheme = PrependScheme::Never;
        else if (*s == "always") scheme = PrependScheme::Always;
        else where.field("prepend_scheme").fail(fmt::format("unknown prepend_scheme '{}'", *s));
    }
    // Files from before prepend_scheme existed say add_prefix_space instead.
    if (const Json* a = where.find(j, "add_prefix_space"); a && a->is_boolean() && !a->get<bool>()) {
        if (s && scheme != PrependScheme::Never)
            where.fail("add_prefix_space does not match declared prepend_scheme");
        scheme = PrependScheme::Never;
    }
    return scheme;
}

std::unique_ptr<PreTokenizer> build_pre_tokenizer(const Json& j, const Where& where, int depth) {
    if (j.is_null()) return nullptr;
    where.object(j);
    if (depth > 32) where.fail("pre-tokenizers nested too deeply");
    std::string type = where.get_string(j, "type");
    std::string where_str = fmt::format("{}: {}", where.origin(), where.path());
    if (type == "ByteLevel")
        return std::make_unique<ByteLevel>(where.get_bool(j, "add_prefix_space", true),
                                           where.get_bool(j, "use_regex", true), where_str);
    if (type == "Split")
        return std::make_unique<Split>(build_pattern(j, "pattern", where),
                                       parse_behavior(j, where, Behavior::Isolated), where.get_bool(j, "invert", false));
    if (type == "Metaspace")
        return std::make_unique<Metaspace>(where.get_char(j, "replacement"), parse_prepend_scheme(j, where),
                                           where.get_bool(j, "split", true));
    if (type == "Digits") {
        bool individual = where.get_bool(j, "individual_digits", false);
        return make_char_split([](char32_t c) { return is_numeric(c); },
                               individual ? Behavior::Isolated : Behavior::Contiguous);
    }
    if (type == "WhitespaceSplit")
        return make_char_split([](char32_t c) { return is_whitespace(c); }, Behavior::Removed);
    if (type == "Punctuation")
        return make_char_split([](char32_t c) { return is_punctuation(c); },
                               parse_behavior(j, where, Behavior::Isolated));
    if (type == "CharDelimiterSplit") {
        char32_t d = where.get_char(j, "delimiter");
        return make_char_split([d](char32_t c) { return c == d; }, Behavior::Removed);
    }
    if (type == "Whitespace") {
        // tokenizers uses the `regex` crate's \w here (alphabetic, marks, digits, connector
        // punctuation, joiners), which is wider than PCRE2's \w.
        constexpr const char* kWord = R"([\p{Alphabetic}\p{M}\p{Nd}\p{Pc}\x{200C}\x{200D}])";
        constexpr const char* kNotWordNotSpace = R"([^\p{Alphabetic}\p{M}\p{Nd}\p{Pc}\x{200C}\x{200D}\s])";
        return std::make_unique<Split>(Pattern(fmt::format("{}+|{}+", kWord, kNotWordNotSpace), false, where_str),
                                       Behavior::Removed, true);
    }
    if (type == "BertPreTokenizer") {
        std::vector<std::unique_ptr<PreTokenizer>> parts;
        parts.push_back(make_char_split([](char32_t c) { return is_whitespace(c); }, Behavior::Removed));
        parts.push_back(make_char_split([](char32_t c) { return is_punctuation(c); }, Behavior::Isolated));
        return std::make_unique<Sequence>(std::move(parts));
    }
    if (type == "Sequence") {
        const Json& list = where.get_array(j, "pretokenizers");
        std::vector<std::unique_ptr<PreTokenizer>> parts;
        for (size_t i = 0; i < list.size(); ++i) {
            auto p = build_pre_tokenizer(list[i], where.field("pretokenizers").index(i), depth + 1);
            if (p) parts.push_back(std::move(p));
        }
        return std::make_unique<Sequence>(std::move(parts));
    }
    where.field("type").unsupported(fmt::format("pre-tokenizer type '{}' is not supported", type));
}

}  // namespace attnlab::tok
