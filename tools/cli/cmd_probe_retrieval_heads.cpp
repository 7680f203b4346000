// attnlab probe retrieval-heads: needle-in-a-haystack retrieval scores per layer × head, and
// head masking by uniform attention (see probe_retrieval.h, docs/probes.md).
#include "probe_common.h"

#include <attnlab/probe_retrieval.h>

#include <fmt/format.h>

#include <cstdio>
#include <fstream>
#include <sstream>

namespace attnlab::cli {

namespace {

constexpr const char* kWhere = "probe retrieval-heads";

std::string read_text(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    ATTNLAB_CHECK(in.good(), IoError, "[{}] cannot read {}", kWhere, path);
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
}

}  // namespace

Command add_probe_retrieval_heads(CLI::App& probe) {
    struct Options {
        ModelOptions model;
        std::string haystack, needle, question, answer;
        std::vector<int64_t> lengths = {1000, 2000};
        std::vector<double> depths = {0, 25, 50, 75, 100};
        int64_t copy_task = 0, copy_prefix = 1, trials = 8;
        uint64_t seed = 0;
        int64_t max_new_tokens = 50;
        double threshold = 0.1, accept_recall = 0.5;
        std::string mask;
        int64_t mask_top = 0, mask_random = 0;
        std::string json;
    };
    auto o = std::make_shared<Options>();
    CLI::App* app = probe.add_subcommand(
        "retrieval-heads", "Needle-in-a-haystack retrieval score per layer x head (Wu et al. 2024), and head masking");
    o->model.add_to(*app);
    app->add_option("--haystack", o->haystack, "Text file the haystack is cut from (repeated as needed)");
    app->add_option("--needle", o->needle, "The needle sentence (with --haystack)");
    app->add_option("--question", o->question, "Text after the context, e.g. a question and 'Answer:'");
    app->add_option("--answer", o->answer, "What a correct response contains (default: the needle)");
    app->add_option("--lengths", o->lengths, "Prompt lengths in tokens (default 1000,2000)")->delimiter(',');
    app->add_option("--depths", o->depths, "Needle depths in % of the context (default 0,25,50,75,100)")->delimiter(',');
    app->add_option("--copy-task", o->copy_task,
                    "Id-level task instead of --haystack: BOS + N random ids + the first --copy-prefix again");
    app->add_option("--copy-prefix", o->copy_prefix, "Ids of the needle repeated to start the copy (default 1)");
    app->add_option("--trials", o->trials, "Copy-task prompts (default 8)");
    app->add_option("--seed", o->seed, "Seed of the copy task and of --mask-random (default 0)");
    app->add_option("--max-new-tokens", o->max_new_tokens, "Greedy decoding steps at most (default 50)");
    app->add_option("--threshold", o->threshold, "Retrieval head: score > threshold (default 0.1)");
    app->add_option("--accept-recall", o->accept_recall, "A test counts: ROUGE-1 recall > this (default 0.5)");
    app->add_option("--mask", o->mask, "Re-run with these heads masked (uniform attention), e.g. 1:0,1:3, 1:* or 0-1:2-3");
    app->add_option("--mask-top", o->mask_top, "Re-run with the K best-scoring heads masked");
    app->add_option("--mask-random", o->mask_random, "Re-run with K random non-retrieval heads masked (seeded)");
    app->add_option("--json", o->json, "Write the scores, tests and masking results as JSON");
    return {app, [o] {
        ATTNLAB_CHECK(o->haystack.empty() != (o->copy_task == 0), InvalidArgument,
                      "[{}] give exactly one of --haystack FILE or --copy-task N", kWhere);
        auto model = o->model.load();
        std::vector<RetrievalTest> tests;
        RetrievalOptions options;
        if (o->copy_task > 0) {
            CopyTaskOptions copy;
            copy.n = o->copy_task;
            copy.prefix = o->copy_prefix;
            copy.trials = o->trials;
            copy.seed = o->seed;
            tests = build_copy_tests(*model, copy);
        } else {
            ATTNLAB_CHECK(!o->needle.empty() && !o->question.empty(), InvalidArgument,
                          "[{}] --haystack needs --needle and --question", kWhere);
            HaystackOptions hay;
            hay.haystack = read_text(o->haystack);
            hay.needle = o->needle;
            hay.question = o->question;
            hay.answer = o->answer;
            hay.lengths = o->lengths;
            hay.depths = o->depths;
            tests = build_haystack_tests(require_tokenizer(*model), hay);
        }
        const int64_t context = o->model.context_length(*model);
        for (const RetrievalTest& t : tests) {
            const int64_t steps = t.max_new_tokens > 0 ? t.max_new_tokens : o->max_new_tokens;
            ATTNLAB_CHECK(static_cast<int64_t>(t.prompt.size()) + steps <= context, InvalidArgument,
                          "[{}] a prompt of {} tokens + {} new ones exceeds the context of {} (--ctx-size)", kWhere,
                          t.prompt.size(), steps, context);
        }
        if (const Tokenizer* tok = model->tokenizer()) options.stop_tokens = newline_tokens(*tok);
        options.max_new_tokens = o->max_new_tokens;
        options.threshold = o->threshold;
        options.accept_recall = o->accept_recall;
        if (!o->mask.empty())
            options.mask = parse_head_targets(o->mask, model->config().n_layer, model->config().n_head, kWhere);
        options.mask_top = o->mask_top;
        options.mask_random = o->mask_random;
        options.mask_seed = o->seed;
        RetrievalScores scores;
        {
            ProgressBar bar(kWhere);
            scores = probe_retrieval_heads(*model, tests, options, bar.control());
        }
        std::printf("| layer |");
        for (int64_t h = 0; h < scores.n_head; ++h) std::printf(" h%lld |", (long long)h);
        std::printf("\n| ---: |");
        for (int64_t h = 0; h < scores.n_head; ++h) std::printf(" ---: |");
        std::printf("\n");
        for (int64_t l = 0; l < scores.n_layer; ++l) {
            std::printf("| %lld |", (long long)l);
            for (double s : scores.scores[l]) std::printf(" %.3f |", s);
            std::printf("\n");
        }
        std::string heads;
        for (const RankedHead& r : scores.retrieval_heads)
            heads += fmt::format("{}{}:{} ({:.3f})", heads.empty() ? "" : ", ", r.layer, r.head, r.score);
        std::printf("retrieval heads (score > %g): %s\n", scores.threshold, heads.empty() ? "none" : heads.c_str());
        std::printf("%zu test(s), %lld accepted (ROUGE-1 recall > %g); unmasked: token accuracy %.3f, recall %.3f%s\n",
                    scores.tests.size(), (long long)scores.accepted, scores.accept_recall, scores.token_accuracy,
                    scores.recall, scores.interrupted ? " (interrupted: partial results)" : "");
        for (const MaskingResult& m : scores.masking) {
            std::string list;
            for (const HeadRef& h : m.heads) list += fmt::format("{}{}:{}", list.empty() ? "" : ",", h.layer, h.head);
            std::printf("masked %s [%s]: token accuracy %.3f, recall %.3f, accepted %.3f\n", m.label.c_str(),
                        list.c_str(), m.token_accuracy, m.recall, m.accepted_fraction);
        }
        if (!o->json.empty()) {
            write_text_file(o->json, scores.to_json(), kWhere);
            std::printf("wrote %s\n", o->json.c_str());
        }
        return scores.interrupted ? 130 : 0;
    }};
}

}  // namespace attnlab::cli
