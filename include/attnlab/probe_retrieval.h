// The `retrieval-heads` probe (papers-analysis §5, Wu et al. 2024): which heads copy a needle
// out of a long context while the model generates it, scored exactly as the paper does, from
// the in-kernel top-1 statistic (nothing T×S is stored, at any context length); plus the
// needle-in-a-haystack builders (a text haystack over a lengths × depths grid, and an id-level
// copy task for models without a tokenizer) and head masking by uniform attention.
// Definitions: docs/probes.md "retrieval-heads".
#pragma once

#include <attnlab/head_mask.h>
#include <attnlab/probes.h>

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

namespace attnlab {

// One needle-in-a-haystack test.
struct RetrievalTest {
    std::vector<int32_t> prompt;  // the whole prompt: context with the needle, then the question
    std::vector<int32_t> needle;  // the needle's tokens, for the span rule
    std::vector<int32_t> answer;  // what a correct response contains (ROUGE-1 recall, accuracy)
    // The needle span [start, end) in `prompt`: -1 means "by the span rule" (find_needle_span);
    // builders that know it exactly (the copy task) set it.
    int64_t needle_start = -1, needle_end = -1;
    int64_t inserted_at = -1;     // where the builder put the needle (for the report)
    int64_t max_new_tokens = 0;   // 0: RetrievalOptions::max_new_tokens
    int64_t length = 0;           // grid labels: requested length (tokens), depth (%), trial
    double depth = 0;
    int64_t trial = 0;
};

// The first window prompt[i, i + |needle|) whose token *set* shares more than 90% of the
// needle's token set (|set(window) ∩ set(needle)| / |set(needle)| > 0.9), as [i, i + |needle|);
// nullopt if none. The window may run past the prompt's end (it is then shorter).
std::optional<std::pair<int64_t, int64_t>> find_needle_span(std::span<const int32_t> prompt,
                                                            std::span<const int32_t> needle);

// ROUGE-1 recall with tokens as units: Σ_t min(count_answer(t), count_response(t)) / |answer|
// (clipped unigram matches over the answer's length); 0 for an empty answer.
double rouge1_recall(std::span<const int32_t> answer, std::span<const int32_t> response);

// Ids whose decoded text contains '\n' (greedy decoding stops at them, as the paper does).
std::vector<int32_t> newline_tokens(const Tokenizer& tokenizer);

// A text haystack: `haystack` (repeated as often as needed) cut to fit, the needle put at the
// sentence boundary nearest each depth, then the question. Every prompt has exactly `length`
// tokens (BOS included when the tokenizer adds one). Needle, question and answer are encoded
// without special tokens; the needle and the answer with a leading space, as they read after a
// sentence inside the text. Throws InvalidArgument when a length cannot hold BOS, needle and
// question, for depths outside [0, 100] or an empty haystack.
struct HaystackOptions {
    std::string haystack, needle, question, answer;  // answer empty: the needle
    std::vector<int64_t> lengths = {1000, 2000};
    std::vector<double> depths = {0, 25, 50, 75, 100};
};
std::vector<RetrievalTest> build_haystack_tests(const Tokenizer& tokenizer, const HaystackOptions& options);

// The id-level copy task: BOS + N distinct random ids in [first_id, V) (the needle) + its first
// `prefix` ids again; the answer is the rest of the needle, generated for exactly N − prefix
// steps. Seeded: trial t uses seed + t. No BOS when the config has none.
struct CopyTaskOptions {
    int64_t n = 32, prefix = 1, trials = 8;
    uint64_t seed = 0;
    int32_t first_id = 2;
};
std::vector<RetrievalTest> build_copy_tests(const Model& model, const CopyTaskOptions& options);

struct RetrievalOptions {
    int64_t max_new_tokens = 50;
    std::vector<int32_t> stop_tokens;  // besides EOS, e.g. newline_tokens(tokenizer)
    bool stop_at_eos = true;
    double threshold = 0.1;      // retrieval head ⇔ score > threshold
    double accept_recall = 0.5;  // a test counts ⇔ ROUGE-1 recall > accept_recall
    // Masking runs after scoring (each re-runs every test with those heads' queries zeroed):
    std::vector<HeadRef> mask;   // these heads
    int64_t mask_top = 0;        // the K best-scoring heads
    int64_t mask_random = 0;     // K random heads that are not retrieval heads (seeded)
    uint64_t mask_seed = 0;
};

struct RetrievalTestResult {
    int64_t length = 0, trial = 0, prompt_tokens = 0;
    double depth = 0;
    int64_t needle_start = -1, needle_end = -1, inserted_at = -1;
    std::vector<int32_t> response;  // generated ids, the stop token excluded
    std::string response_text;      // decoded (tokenizer models)
    double recall = 0;              // ROUGE-1 recall of the answer in the response
    double token_accuracy = 0;      // fraction of answer positions the response reproduces exactly
    bool accepted = false;          // recall > accept_recall
    std::vector<double> scores;     // (L·H) layer-major: this test's retrieval score per head
};

struct MaskingResult {
    std::string label;  // "heads", "top", "random"
    std::vector<HeadRef> heads;
    int64_t tests = 0;
    double token_accuracy = 0, recall = 0, accepted_fraction = 0;  // means over the tests
};

struct RankedHead {
    int64_t layer = 0, head = 0;
    double score = 0;
};

struct RetrievalScores {
    int64_t n_layer = 0, n_head = 0;
    double threshold = 0, accept_recall = 0;
    std::vector<std::vector<double>> scores;      // (L, H): mean over accepted tests (0 if none)
    std::vector<std::vector<double>> scores_all;  // (L, H): mean over every test run
    std::vector<RankedHead> ranking;              // every head, best first (ties: lower layer, head)
    std::vector<RankedHead> retrieval_heads;      // those with score > threshold, best first
    std::vector<RetrievalTestResult> tests;       // the tests run (fewer when interrupted)
    int64_t accepted = 0;
    double token_accuracy = 0, recall = 0;        // unmasked means over the tests run
    std::vector<MaskingResult> masking;
    bool interrupted = false;
    // {"probe": "retrieval-heads", "layers", "heads", "threshold", "accept_recall", "scores",
    //  "scores_all", "retrieval_heads": [{"layer", "head", "score"}], "ranking": [...],
    //  "accepted", "token_accuracy", "recall", "tests": [{"length", "depth", "trial",
    //  "prompt_tokens", "needle_start", "needle_end", "inserted_at", "response",
    //  "response_text"?, "recall", "token_accuracy", "accepted"}], "masking": [{"label",
    //  "heads": [[l, h], ...], "tests", "token_accuracy", "recall", "accepted_fraction"}],
    //  "interrupted"}
    std::string to_json() const;
};

// Runs every test with greedy decoding on the KV cache (prefill all but the last prompt token,
// then up to max_new_tokens steps, stopping at EOS or a stop token) and scores each head at
// every step; then the masking runs asked for. Progress counts test runs (scoring and masking);
// when cancelled it returns the tests done (interrupted = true, no masking runs).
RetrievalScores probe_retrieval_heads(const Model& model, const std::vector<RetrievalTest>& tests,
                                      const RetrievalOptions& options = {}, const ProbeControl& control = {});

}  // namespace attnlab
