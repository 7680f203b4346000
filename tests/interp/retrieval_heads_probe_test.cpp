// The `retrieval-heads` probe: induction-tiny's copy heads score >= 0.9 on the copy task while a
// random-weight model of the same shape scores near 0; masking the found heads (uniform
// attention by zero query) breaks the copy while masking as many other heads does not; the
// needle-span rule, ROUGE-1 recall and the text haystack builder on hand-made inputs; the CLI.
#include "test_support.h"

#include <attnlab/error.h>
#include <attnlab/probe_retrieval.h>

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <string>

namespace attnlab {
namespace {

using nlohmann::json;

std::filesystem::path induction_tiny() { return test::fixtures_dir() / "models" / "induction-tiny"; }

std::vector<RetrievalTest> copy_tests(const Model& model, int64_t trials = 4) {
    CopyTaskOptions copy;
    copy.n = 32;
    copy.trials = trials;
    copy.seed = 3;
    return build_copy_tests(model, copy);
}

TEST(RetrievalHeadsProbe, FindsInductionTinyCopyHeads) {
    auto model = Model::load(induction_tiny().string());
    const std::vector<RetrievalTest> tests = copy_tests(*model);
    ASSERT_EQ(tests.size(), 4u);
    EXPECT_EQ(tests[0].prompt.size(), 34u);  // BOS + 32 + 1
    EXPECT_EQ(tests[0].prompt[0], 0);
    EXPECT_EQ(tests[0].prompt[33], tests[0].prompt[1]);
    const RetrievalScores s = probe_retrieval_heads(*model, tests);
    EXPECT_EQ(s.accepted, 4);
    EXPECT_GE(s.token_accuracy, 0.99);
    for (int64_t h = 0; h < 4; ++h) EXPECT_GE(s.scores[1][h], 0.9) << "layer 1 head " << h;
    for (int64_t h = 0; h < 4; ++h) EXPECT_LT(s.scores[0][h], 0.1) << "layer 0 head " << h;
    ASSERT_EQ(s.retrieval_heads.size(), 4u);
    for (const RankedHead& r : s.retrieval_heads) EXPECT_EQ(r.layer, 1);
    // 31 copied tokens, each worth 1/32: the most a head can score here.
    for (const RetrievalTestResult& t : s.tests) {
        EXPECT_EQ(t.response.size(), 31u);
        EXPECT_EQ(t.needle_start, 1);
        EXPECT_EQ(t.needle_end, 33);
        for (int64_t h = 0; h < 4; ++h) EXPECT_LE(t.scores[4 + h], 31.0 / 32.0 + 1e-12);
    }
}

TEST(RetrievalHeadsProbe, RandomWeightsScoreNearZero) {
    test::TempDir tmp;
    const auto r = test::run_cli({"make-model", "--config", (induction_tiny() / "config.json").string(), "--out",
                                  (tmp / "random").string(), "--dtype", "f32", "--seed", "5", "--std", "0.2"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    auto model = Model::load((tmp / "random").string());
    const RetrievalScores s = probe_retrieval_heads(*model, copy_tests(*model, 6));
    for (int64_t l = 0; l < 2; ++l)
        for (int64_t h = 0; h < 4; ++h) {
            EXPECT_LT(s.scores[l][h], 0.1) << l << ":" << h;
            EXPECT_LT(s.scores_all[l][h], 0.1) << l << ":" << h;
        }
    EXPECT_TRUE(s.retrieval_heads.empty());
}

TEST(RetrievalHeadsProbe, MaskingTheFoundHeadsBreaksTheCopy) {
    auto model = Model::load(induction_tiny().string());
    RetrievalOptions options;
    options.mask_top = 4;     // the four layer-1 heads
    options.mask_random = 4;  // the only four others: layer 0
    options.mask = {{1, 2}};  // one copy head alone: the others make up for it
    const RetrievalScores s = probe_retrieval_heads(*model, copy_tests(*model), options);
    ASSERT_EQ(s.masking.size(), 3u);
    const MaskingResult& one = s.masking[0];
    const MaskingResult& top = s.masking[1];
    const MaskingResult& random = s.masking[2];
    EXPECT_EQ(one.label, "heads");
    EXPECT_EQ(top.label, "top");
    EXPECT_EQ(random.label, "random");
    for (const HeadRef& h : top.heads) EXPECT_EQ(h.layer, 1);
    for (const HeadRef& h : random.heads) EXPECT_EQ(h.layer, 0);
    EXPECT_LT(top.token_accuracy, 0.5);
    EXPECT_LT(top.accepted_fraction, 0.5);
    EXPECT_GE(random.token_accuracy, 0.9);
    EXPECT_GE(one.token_accuracy, 0.9);
    EXPECT_EQ(top.tests, 4);
}

TEST(RetrievalHeadsProbe, NeedleSpanRule) {
    const std::vector<int32_t> needle = {10, 11, 12, 13, 14, 15, 16, 17, 18, 19};
    // Exact occurrence.
    std::vector<int32_t> prompt = {1, 2, 3, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 4, 5};
    auto span = find_needle_span(prompt, needle);
    ASSERT_TRUE(span);
    EXPECT_EQ(span->first, 3);
    EXPECT_EQ(span->second, 13);
    // 9 of 10 distinct tokens is 90%, not more: no span.
    prompt = {1, 2, 10, 11, 12, 13, 99, 15, 16, 17, 18, 19, 4};
    EXPECT_FALSE(find_needle_span(prompt, needle));
    // An 11-token needle: a window with 10 of its 11 tokens (90.9%) counts, and the first
    // such window wins even when a later one is exact.
    const std::vector<int32_t> needle11 = {10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20};
    prompt = {1, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 2, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20};
    span = find_needle_span(prompt, needle11);
    ASSERT_TRUE(span);
    EXPECT_EQ(span->first, 0);
    EXPECT_EQ(span->second, 11);
    // Sets, not sequences: order and repeats inside the window do not matter.
    prompt = {7, 19, 18, 17, 16, 15, 14, 13, 12, 11, 10};
    span = find_needle_span(prompt, needle);
    ASSERT_TRUE(span);
    EXPECT_EQ(span->first, 1);
    EXPECT_FALSE(find_needle_span(prompt, std::vector<int32_t>{}));
}

TEST(RetrievalHeadsProbe, Rouge1Recall) {
    const std::vector<int32_t> answer = {5, 6, 7, 5};
    EXPECT_DOUBLE_EQ(rouge1_recall(answer, std::vector<int32_t>{5, 6, 7, 5}), 1.0);
    EXPECT_DOUBLE_EQ(rouge1_recall(answer, std::vector<int32_t>{7, 5, 6, 5, 9, 9}), 1.0);  // order-free
    EXPECT_DOUBLE_EQ(rouge1_recall(answer, std::vector<int32_t>{5, 9}), 0.25);            // clipped counts
    EXPECT_DOUBLE_EQ(rouge1_recall(answer, std::vector<int32_t>{5, 5, 5, 5}), 0.5);
    EXPECT_DOUBLE_EQ(rouge1_recall(answer, std::vector<int32_t>{}), 0.0);
    EXPECT_DOUBLE_EQ(rouge1_recall(std::vector<int32_t>{}, std::vector<int32_t>{1}), 0.0);
}

TEST(RetrievalHeadsProbe, HaystackBuilder) {
    test::TempDir tmp;
    auto model = Model::load(test::prepare_model_dir("tinylm", tmp).string());
    const Tokenizer& tok = *model->tokenizer();
    HaystackOptions o;
    o.haystack = "In the beginning God created the heaven and the earth. And the earth was without form, and void. "
                 "And God said, Let there be light: and there was light. And God saw the light, that it was good!";
    o.needle = "The best thing to do in the city is to eat a sandwich.";
    o.question = "\nWhat is the best thing to do in the city?\nAnswer:";
    o.lengths = {60, 150};
    o.depths = {0, 50, 100};
    const std::vector<RetrievalTest> tests = build_haystack_tests(tok, o);
    ASSERT_EQ(tests.size(), 6u);
    const std::vector<int32_t> needle = tok.encode(" " + o.needle, false);
    const std::vector<int32_t> question = tok.encode(o.question, false);
    const std::vector<int32_t> bos = tok.encode("", true);
    for (const RetrievalTest& t : tests) {
        SCOPED_TRACE(fmt::format("length {} depth {}", t.length, t.depth));
        EXPECT_EQ(static_cast<int64_t>(t.prompt.size()), t.length);  // lengths respected
        EXPECT_TRUE(std::equal(bos.begin(), bos.end(), t.prompt.begin()));
        EXPECT_TRUE(std::equal(question.rbegin(), question.rend(), t.prompt.rbegin()));  // the question ends it
        ASSERT_TRUE(std::equal(needle.begin(), needle.end(), t.prompt.begin() + t.inserted_at));
        const int64_t context = t.length - static_cast<int64_t>(bos.size() + needle.size() + question.size());
        const int64_t at = t.inserted_at - static_cast<int64_t>(bos.size());  // in context tokens
        if (t.depth == 0) {
            EXPECT_EQ(at, 0);
        }
        if (t.depth == 100) {
            EXPECT_EQ(at, context);
        }
        if (t.depth == 50) {
            // At a sentence boundary: the token before ends a sentence ...
            const int32_t before[] = {t.prompt[t.inserted_at - 1]};
            std::string text = tok.decode(before);
            while (!text.empty() && text.back() == ' ') text.pop_back();
            ASSERT_FALSE(text.empty());
            EXPECT_TRUE(text.back() == '.' || text.back() == '!' || text.back() == '?') << text;
            // ... and the nearest one to the middle: no boundary lies closer.
            for (int64_t b = 1; b < context; ++b) {
                const int64_t i = static_cast<int64_t>(bos.size()) + b - 1;
                const int32_t tb[] = {b - 1 < at ? t.prompt[i] : t.prompt[i + needle.size()]};
                std::string s = tok.decode(tb);
                while (!s.empty() && s.back() == ' ') s.pop_back();
                const bool boundary = !s.empty() && (s.back() == '.' || s.back() == '!' || s.back() == '?');
                if (boundary) {
                    EXPECT_GE(std::abs(2 * b - context), std::abs(2 * at - context) - 1) << "boundary " << b;
                }
            }
        }
        // The span rule finds the needle where it was put: its first window may start a few
        // tokens early (those before the needle can share its tokens, e.g. '.' and ' the') but
        // never after the needle starts, and it covers the needle's start.
        const auto span = find_needle_span(t.prompt, t.needle);
        ASSERT_TRUE(span);
        EXPECT_LE(span->first, t.inserted_at);
        EXPECT_GT(span->second, t.inserted_at + static_cast<int64_t>(needle.size()) / 2);
    }
    o.lengths = {10};
    EXPECT_THROW(build_haystack_tests(tok, o), InvalidArgument);  // no room for the needle and question
    o.lengths = {100};
    o.depths = {120};
    EXPECT_THROW(build_haystack_tests(tok, o), InvalidArgument);
}

TEST(RetrievalHeadsProbe, CliCopyTaskJsonAndErrors) {
    test::TempDir tmp;
    const std::string dir = induction_tiny().string();
    auto r = test::run_cli({"probe", "retrieval-heads", "-m", dir, "--copy-task", "32", "--trials", "2",
                            "--mask-top", "4", "--json", (tmp / "r.json").string()});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE(r.out.find("retrieval heads (score > 0.1): 1:"), std::string::npos) << r.out;
    const json j = json::parse(test::read_file(tmp / "r.json"));
    for (const char* key : {"probe", "layers", "heads", "threshold", "scores", "scores_all", "retrieval_heads", "ranking",
                            "accepted", "tests", "masking", "interrupted"})
        EXPECT_TRUE(j.contains(key)) << key;
    EXPECT_EQ(j["scores"].size(), 2u);
    EXPECT_EQ(j["scores"][1].size(), 4u);
    EXPECT_EQ(j["retrieval_heads"].size(), 4u);
    EXPECT_EQ(j["tests"].size(), 2u);
    for (const char* key : {"length", "depth", "accepted", "recall", "token_accuracy", "needle_start", "response"})
        EXPECT_TRUE(j["tests"][0].contains(key)) << key;
    ASSERT_EQ(j["masking"].size(), 1u);
    EXPECT_LT(j["masking"][0]["token_accuracy"].get<double>(), 0.5);

    for (std::vector<std::string> bad :
         {std::vector<std::string>{"--copy-task", "32", "--mask", "9:9"}, std::vector<std::string>{"--copy-task", "32", "--mask", "1-2"},
          std::vector<std::string>{}, std::vector<std::string>{"--copy-task", "300"},
          std::vector<std::string>{"--haystack", (tmp / "missing.txt").string(), "--needle", "x", "--question", "y"}}) {
        std::vector<std::string> args = {"probe", "retrieval-heads", "-m", dir};
        args.insert(args.end(), bad.begin(), bad.end());
        r = test::run_cli(args);
        EXPECT_EQ(r.exit_code, 1) << (bad.empty() ? "(nothing)" : bad.back());
        EXPECT_NE(r.err.find("attnlab: error:"), std::string::npos) << r.err;
        EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    }
}

TEST(RetrievalHeadsProbe, CliTextHaystackOnTinylm) {
    test::TempDir tmp;
    const std::string dir = test::prepare_model_dir("tinylm", tmp).string();
    test::write_file(tmp / "hay.txt",
                     "In the beginning God created the heaven and the earth. And the earth was without form, and void. "
                     "And God said, Let there be light: and there was light.\n");
    const auto r = test::run_cli({"probe", "retrieval-heads", "-m", dir, "--haystack", (tmp / "hay.txt").string(),
                                  "--needle", "And the LORD said unto Moses, Behold, I have hearkened unto thee.",
                                  "--question", "\nAnd the LORD said unto Moses,", "--lengths", "80,120", "--depths",
                                  "0,50", "--max-new-tokens", "12", "--json", (tmp / "r.json").string()});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const json j = json::parse(test::read_file(tmp / "r.json"));
    ASSERT_EQ(j["tests"].size(), 4u);
    EXPECT_EQ(j["tests"][0]["prompt_tokens"], 80);
    EXPECT_EQ(j["tests"][3]["prompt_tokens"], 120);
    EXPECT_EQ(j["tests"][1]["depth"], 50.0);
    EXPECT_EQ(j["scores"].size(), 6u);
}

}  // namespace
}  // namespace attnlab
