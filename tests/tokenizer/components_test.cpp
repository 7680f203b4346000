// The pieces of the pipeline on small inputs whose Hugging Face results are known (most are
// the examples of tokenizers' own documentation and unit tests): normalizers, pre-tokenizers,
// decoders, the BPE model options and added-token matching.
#include <gtest/gtest.h>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "attnlab/tokenizer.h"
#include "tokenizer/decoders.h"
#include "tokenizer/normalizers.h"
#include "tokenizer/pre_tokenizers.h"

namespace attnlab::test {
namespace {

using nlohmann::json;
using Strings = std::vector<std::string>;
using Ids = std::vector<int32_t>;

const std::string kOrigin = "test.json";

std::string normalize(const std::string& spec, std::string text) {
    auto n = tok::build_normalizer(json::parse(spec), tok::Where(kOrigin, "normalizer"));
    bool at_start = true;
    n->normalize(text, at_start);
    return text;
}

Strings pre_tokenize(const std::string& spec, const std::string& text, bool at_start = true) {
    auto p = tok::build_pre_tokenizer(json::parse(spec), tok::Where(kOrigin, "pre_tokenizer"));
    Strings out;
    p->split(tok::Piece{text, -1, at_start}, [&](tok::Piece&& piece) { out.push_back(piece.text); });
    return out;
}

Strings decode_chain(const std::string& spec, Strings tokens) {
    auto d = tok::build_decoder(json::parse(spec), tok::Where(kOrigin, "decoder"));
    d->decode_chain(tokens);
    return tokens;
}

TEST(Normalizers, Unicode) {
    EXPECT_EQ(normalize(R"({"type": "NFC"})", "e\xCC\x81"), "\xC3\xA9");   // e + acute -> é
    EXPECT_EQ(normalize(R"({"type": "NFD"})", "\xC3\xA9"), "e\xCC\x81");
    EXPECT_EQ(normalize(R"({"type": "NFKC"})", "\xEF\xAC\x81 \xEF\xBC\xA1"), "fi A");  // ﬁ, fullwidth A
    EXPECT_EQ(normalize(R"({"type": "NFKD"})", "\xC3\xA9"), "e\xCC\x81");
    // Text is cut before ASCII characters only: a combining mark still joins the letter before.
    EXPECT_EQ(normalize(R"({"type": "NFC"})", "abce\xCC\x81 x"), "abc\xC3\xA9 x");
}

TEST(Normalizers, Others) {
    EXPECT_EQ(normalize(R"({"type": "Lowercase"})", "HeLLo ÀÉ \xC4\xB0"), "hello àé i\xCC\x87");
    EXPECT_EQ(normalize(R"({"type": "Strip", "strip_left": true, "strip_right": true})", "  \t hi there \n"), "hi there");
    EXPECT_EQ(normalize(R"({"type": "Strip", "strip_left": false, "strip_right": true})", "  hi  "), "  hi");
    EXPECT_EQ(normalize(R"({"type": "Prepend", "prepend": "▁"})", "hi"), "▁hi");
    EXPECT_EQ(normalize(R"({"type": "Prepend", "prepend": "▁"})", ""), "");
    EXPECT_EQ(normalize(R"({"type": "Replace", "pattern": {"String": " "}, "content": "▁"})", "a b  c"), "a▁b▁▁c");
    EXPECT_EQ(normalize(R"({"type": "Replace", "pattern": {"Regex": "\\s+"}, "content": " "})", "a \t\n b"), "a b");
    EXPECT_EQ(normalize(R"({"type": "StripAccents"})", "e\xCC\x81t\xC3\xA9"), "et\xC3\xA9");
    EXPECT_EQ(normalize(R"({"type": "Sequence", "normalizers": [{"type": "NFD"}, {"type": "StripAccents"},
                                                                  {"type": "Lowercase"}]})",
                        "Héllo"),
              "hello");
}

TEST(PreTokenizers, SplitBehaviors) {
    // The example of tokenizers' documentation for SplitDelimiterBehavior.
    auto split = [](const char* behavior) {
        return pre_tokenize(fmt::format(R"({{"type": "Split", "pattern": {{"String": "-"}}, "behavior": "{}"}})", behavior),
                            "the-final--countdown");
    };
    EXPECT_EQ(split("Removed"), (Strings{"the", "final", "countdown"}));
    EXPECT_EQ(split("Isolated"), (Strings{"the", "-", "final", "-", "-", "countdown"}));
    EXPECT_EQ(split("MergedWithPrevious"), (Strings{"the-", "final-", "-", "countdown"}));
    EXPECT_EQ(split("MergedWithNext"), (Strings{"the", "-final", "-", "-countdown"}));
    EXPECT_EQ(split("Contiguous"), (Strings{"the", "-", "final", "--", "countdown"}));
    EXPECT_EQ(pre_tokenize(R"({"type": "Split", "pattern": {"Regex": "\\d+"}, "behavior": "Removed", "invert": true})",
                           "ab12cd345"),
              (Strings{"12", "345"}));
}

TEST(PreTokenizers, ByteLevel) {
    EXPECT_EQ(pre_tokenize(R"({"type": "ByteLevel", "add_prefix_space": false})", "Hello my friend, how is your day going?"),
              (Strings{"Hello", "Ġmy", "Ġfriend", ",", "Ġhow", "Ġis", "Ġyour", "Ġday", "Ġgoing", "?"}));
    EXPECT_EQ(pre_tokenize(R"({"type": "ByteLevel", "add_prefix_space": true})", "Hello  there\n"),
              (Strings{"ĠHello", "Ġ", "Ġthere", "Ċ"}));
    EXPECT_EQ(pre_tokenize(R"({"type": "ByteLevel", "add_prefix_space": false, "use_regex": false})", "a b é"),
              (Strings{"aĠbĠÃ©"}));
    EXPECT_EQ(pre_tokenize(R"({"type": "ByteLevel", "add_prefix_space": false})", "I'm don't WE'D"),
              (Strings{"I", "'m", "Ġdon", "'t", "ĠWE", "'", "D"}));  // GPT-2's regex is case-sensitive
}

TEST(PreTokenizers, CharacterClasses) {
    EXPECT_EQ(pre_tokenize(R"({"type": "Whitespace"})", "Hey man!"), (Strings{"Hey", "man", "!"}));
    EXPECT_EQ(pre_tokenize(R"({"type": "Whitespace"})", "How are you doing?"),
              (Strings{"How", "are", "you", "doing", "?"}));
    EXPECT_EQ(pre_tokenize(R"({"type": "WhitespaceSplit"})", "Hey man!\tok"), (Strings{"Hey", "man!", "ok"}));
    EXPECT_EQ(pre_tokenize(R"({"type": "Punctuation"})", "Hey friend!     How are you?!?"),
              (Strings{"Hey friend", "!", "     How are you", "?", "!", "?"}));
    EXPECT_EQ(pre_tokenize(R"({"type": "Digits", "individual_digits": true})", "Hey 123 friend!"),
              (Strings{"Hey ", "1", "2", "3", " friend!"}));
    EXPECT_EQ(pre_tokenize(R"({"type": "Digits", "individual_digits": false})", "Hey 123 friend!"),
              (Strings{"Hey ", "123", " friend!"}));
    EXPECT_EQ(pre_tokenize(R"({"type": "BertPreTokenizer"})", "Hey friend!  How?"),
              (Strings{"Hey", "friend", "!", "How", "?"}));
    EXPECT_EQ(pre_tokenize(R"({"type": "CharDelimiterSplit", "delimiter": "x"})", "axbxxc"), (Strings{"a", "b", "c"}));
    EXPECT_EQ(pre_tokenize(R"({"type": "Sequence", "pretokenizers": [{"type": "WhitespaceSplit"},
                                                                     {"type": "Digits", "individual_digits": true}]})",
                           "ab 12"),
              (Strings{"ab", "1", "2"}));
}

TEST(PreTokenizers, Metaspace) {
    const char* always = R"({"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always", "split": true})";
    EXPECT_EQ(pre_tokenize(always, "Hey friend!"), (Strings{"▁Hey", "▁friend!"}));
    EXPECT_EQ(pre_tokenize(always, "Hey   friend!"), (Strings{"▁Hey", "▁", "▁", "▁friend!"}));
    const char* first = R"({"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": false})";
    EXPECT_EQ(pre_tokenize(first, "Hey my friend ", true), (Strings{"▁Hey▁my▁friend▁"}));
    EXPECT_EQ(pre_tokenize(first, "how are", false), (Strings{"how▁are"}));
    EXPECT_EQ(pre_tokenize(first, " Hey", true), (Strings{"▁Hey"}));
    const char* never = R"({"type": "Metaspace", "replacement": "▁", "add_prefix_space": false})";
    EXPECT_EQ(pre_tokenize(never, "a b"), (Strings{"a", "▁b"}));
}

TEST(Decoders, Chains) {
    EXPECT_EQ(decode_chain(R"({"type": "ByteFallback"})", {"<0x61>"}), (Strings{"a"}));
    EXPECT_EQ(decode_chain(R"({"type": "ByteFallback"})", {"<0xE5>", "<0x8f>", "<0xab>", "a"}), (Strings{"叫", "a"}));
    EXPECT_EQ(decode_chain(R"({"type": "ByteFallback"})", {"<0xE5>", "<0x8f>", "a"}),
              (Strings{"\xEF\xBF\xBD", "\xEF\xBF\xBD", "a"}));
    EXPECT_EQ(decode_chain(R"({"type": "Fuse"})", {"Hey", " friend!"}), (Strings{"Hey friend!"}));
    EXPECT_EQ(decode_chain(R"({"type": "Strip", "content": "H", "start": 1, "stop": 0})", {"Hey", " friend!", "HHH"}),
              (Strings{"ey", " friend!", "HH"}));
    EXPECT_EQ(decode_chain(R"({"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always"})", {"▁Hey", "▁friend!"}),
              (Strings{"Hey", " friend!"}));
    EXPECT_EQ(decode_chain(R"({"type": "Metaspace", "replacement": "▁", "prepend_scheme": "never"})", {"▁Hey", "▁friend!"}),
              (Strings{" Hey", " friend!"}));
    EXPECT_EQ(decode_chain(R"({"type": "Replace", "pattern": {"String": "▁"}, "content": " "})", {"▁a▁", "b"}),
              (Strings{" a ", "b"}));
    EXPECT_EQ(decode_chain(R"({"type": "ByteLevel"})", {"Hello", "Ġmy", "Ġfriend"}), (Strings{"Hello my friend"}));
    // A lone lead byte is repaired as String::from_utf8_lossy does; a token with characters
    // outside the byte map keeps its own bytes.
    EXPECT_EQ(decode_chain(R"({"type": "ByteLevel"})", {"a", "Ã", "b"}), (Strings{"a\xEF\xBF\xBD" "b"}));
    EXPECT_EQ(decode_chain(R"({"type": "ByteLevel"})", {"你", "Ġ好"}), (Strings{"你Ġ好"}));
    EXPECT_EQ(decode_chain(R"({"type": "BPEDecoder", "suffix": "</w>"})", {"hel", "lo</w>", "there</w>"}),
              (Strings{"hel", "lo ", "there"}));
}

// A tiny BPE tokenizer: vocabulary a b c ab bc abc, <unk>, and extra JSON.
std::string bpe_json(const std::string& merges, const std::string& model_extra = "", const std::string& top_extra = "") {
    return R"({"model": {"type": "BPE", "unk_token": "<unk>", "vocab": {"<unk>": 0, "a": 1, "b": 2, "c": 3, "ab": 4, "bc": 5, "abc": 6, " ": 7})" +
           model_extra + R"(, "merges": )" + merges + "}" + top_extra + "}";
}

TEST(BpeModel, MergeFormsAndPriority) {
    Tokenizer legacy = Tokenizer::from_json(bpe_json(R"(["a b", "ab c"])"));
    Tokenizer pairs = Tokenizer::from_json(bpe_json(R"([["a", "b"], ["ab", "c"]])"));
    EXPECT_EQ(legacy.encode("abc", false), (Ids{6}));
    EXPECT_EQ(pairs.encode("abc", false), (Ids{6}));
    // The lower rank wins: b+c before a+b.
    Tokenizer bc_first = Tokenizer::from_json(bpe_json(R"(["b c", "a b"])"));
    EXPECT_EQ(bc_first.encode("abc", false), (Ids{1, 5}));
    EXPECT_EQ(bc_first.encode_tokens("abcab", false), (Strings{"a", "bc", "ab"}));
}

TEST(BpeModel, IgnoreMerges) {
    Tokenizer plain = Tokenizer::from_json(bpe_json(R"(["a b"])"));
    Tokenizer ignoring = Tokenizer::from_json(bpe_json(R"(["a b"])", R"(, "ignore_merges": true)"));
    EXPECT_EQ(plain.encode("abc", false), (Ids{4, 3}));
    EXPECT_EQ(ignoring.encode("abc", false), (Ids{6}));  // the whole word is in the vocabulary
}

TEST(BpeModel, UnknownCharacters) {
    Tokenizer split = Tokenizer::from_json(bpe_json("[]"));
    Tokenizer fused = Tokenizer::from_json(bpe_json("[]", R"(, "fuse_unk": true)"));
    EXPECT_EQ(split.encode("axyb", false), (Ids{1, 0, 0, 2}));
    EXPECT_EQ(fused.encode("axyb", false), (Ids{1, 0, 2}));
    Tokenizer no_unk = Tokenizer::from_json(
        R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}})");
    EXPECT_EQ(no_unk.encode("xax", false), (Ids{0}));  // unknown characters are dropped
}

TEST(BpeModel, ByteFallback) {
    std::string json = R"({"model": {"type": "BPE", "byte_fallback": true, "unk_token": "<unk>",
        "vocab": {"<unk>": 0, "<0xC3>": 1, "<0xA9>": 2, "a": 3}, "merges": []},
        "decoder": {"type": "Sequence", "decoders": [{"type": "ByteFallback"}, {"type": "Fuse"}]}})";
    Tokenizer tok = Tokenizer::from_json(json);
    EXPECT_EQ(tok.encode("aé", false), (Ids{3, 1, 2}));
    EXPECT_EQ(tok.encode_tokens("é", false), (Strings{"<0xC3>", "<0xA9>"}));
    EXPECT_EQ(tok.encode("ü", false), (Ids{0}));  // 0xC3 0xBC: no <0xBC>, so unk
    EXPECT_EQ(tok.decode(Ids{3, 1, 2}), "aé");
    EXPECT_EQ(tok.decode(Ids{3, 1}), "a\xEF\xBF\xBD");
}

TEST(AddedTokens, StripAndWordOptions) {
    auto with_added = [](const std::string& options) {
        return Tokenizer::from_json(bpe_json("[]", "", R"(, "added_tokens": [{"id": 8, "content": "<m>", "special": true, )" +
                                                           options + "}]"));
    };
    Tokenizer plain = with_added(R"("normalized": false)");
    EXPECT_EQ(plain.encode("a <m> b", false), (Ids{1, 7, 8, 7, 2}));
    Tokenizer lstrip = with_added(R"("normalized": false, "lstrip": true)");
    EXPECT_EQ(lstrip.encode("a  <m> b", false), (Ids{1, 8, 7, 2}));
    EXPECT_EQ(lstrip.encode_tokens("a  <m> b", false), (Strings{"a", "  <m>", " ", "b"}));
    Tokenizer rstrip = with_added(R"("normalized": false, "rstrip": true)");
    EXPECT_EQ(rstrip.encode("a <m>  b", false), (Ids{1, 7, 8, 2}));
    Tokenizer both = with_added(R"("normalized": false, "lstrip": true, "rstrip": true)");
    EXPECT_EQ(both.encode(" <m> ", false), (Ids{8}));

    Tokenizer word = Tokenizer::from_json(bpe_json(R"(["a b"])", "",
                                                   R"(, "added_tokens": [{"id": 9, "content": "ca", "single_word": true, "normalized": false}])"));
    // Only "ca" standing alone is the added token; inside "bca" the model encodes it.
    EXPECT_EQ(word.encode("ca bca", false), (Ids{9, 7, 2, 3, 1}));
    EXPECT_EQ(word.decode(Ids{9}), "ca");
    // An added token whose content is in the vocabulary takes the vocabulary's id.
    Tokenizer in_vocab = Tokenizer::from_json(bpe_json("[]", "", R"(, "added_tokens": [{"id": 9, "content": "ab"}])"));
    EXPECT_EQ(in_vocab.encode("ab", false), (Ids{4}));
}

TEST(AddedTokens, LongestFirstAndNormalized) {
    Tokenizer tok = Tokenizer::from_json(bpe_json("[]", "", R"(, "normalizer": {"type": "Lowercase"},
        "added_tokens": [{"id": 10, "content": "<x>", "normalized": false, "special": true},
                         {"id": 11, "content": "<x><y>", "normalized": false, "special": true},
                         {"id": 12, "content": "cab", "normalized": true, "special": false}])"));
    EXPECT_EQ(tok.encode("a<x><y>b<x>", false), (Ids{1, 11, 2, 10}));
    // "CAB" only matches after lowercasing: the normalized added token is found in the
    // normalized text; "<X>" is not the non-normalized "<x>".
    EXPECT_EQ(tok.encode("CAB", false), (Ids{12}));
    EXPECT_EQ(tok.token_to_id("<x><y>"), 11);
    EXPECT_TRUE(tok.is_special(11));
    EXPECT_FALSE(tok.is_special(12));
    EXPECT_EQ(tok.vocab_size(), 13);
    EXPECT_EQ(tok.decode(Ids{1, 11, 2}, true), "a b");  // no decoder: tokens joined by spaces
}

TEST(PostProcessors, Templates) {
    const std::string specials =
        R"(, "added_tokens": [{"id": 8, "content": "<s>", "special": true, "normalized": false},
                              {"id": 9, "content": "</s>", "special": true, "normalized": false}])";
    Tokenizer string_form = Tokenizer::from_json(bpe_json("[]", "", specials + R"(, "post_processor": {"type": "TemplateProcessing",
        "single": "<s> $A </s>", "special_tokens": {"<s>": {"id": "<s>", "ids": [8], "tokens": ["<s>"]},
                                                  "</s>": {"id": "</s>", "ids": [9], "tokens": ["</s>"]}}})"));
    EXPECT_EQ(string_form.encode("ab", true), (Ids{8, 1, 2, 9}));
    EXPECT_EQ(string_form.encode("ab", false), (Ids{1, 2}));
    EXPECT_EQ(string_form.encode_tokens("", true), (Strings{"<s>", "</s>"}));
    Tokenizer roberta = Tokenizer::from_json(bpe_json("[]", "", specials + R"(, "post_processor": {"type": "Sequence",
        "processors": [{"type": "ByteLevel"}, {"type": "RobertaProcessing", "sep": ["</s>", 9], "cls": ["<s>", 8]}]})"));
    EXPECT_EQ(roberta.encode("c", true), (Ids{8, 3, 9}));
    EXPECT_EQ(roberta.decode(Ids{8, 3, 9}, true), "c");
}

}  // namespace
}  // namespace attnlab::test
