// Needle-in-a-haystack inputs for the retrieval-heads probe: the needle-span rule, ROUGE-1
// recall over token ids, the text haystack builder (lengths × depths grid, sentence
// boundaries) and the id-level copy task (see probe_retrieval.h).
#include <attnlab/error.h>
#include <attnlab/probe_retrieval.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>
#include <random>
#include <set>
#include <unordered_map>

namespace attnlab {

std::optional<std::pair<int64_t, int64_t>> find_needle_span(std::span<const int32_t> prompt,
                                                            std::span<const int32_t> needle) {
    const std::set<int32_t> wanted(needle.begin(), needle.end());
    if (wanted.empty()) return std::nullopt;
    const int64_t n = static_cast<int64_t>(needle.size()), T = static_cast<int64_t>(prompt.size());
    for (int64_t i = 0; i < T; ++i) {
        const std::set<int32_t> window(prompt.begin() + i, prompt.begin() + std::min(i + n, T));
        int64_t shared = 0;
        for (int32_t t : window) shared += wanted.count(t);
        if (double(shared) / double(wanted.size()) > 0.9) return std::make_pair(i, i + n);
    }
    return std::nullopt;
}

double rouge1_recall(std::span<const int32_t> answer, std::span<const int32_t> response) {
    if (answer.empty()) return 0.0;
    std::unordered_map<int32_t, int64_t> left;  // response tokens not yet matched
    for (int32_t t : response) ++left[t];
    int64_t matched = 0;
    for (int32_t t : answer) {
        auto it = left.find(t);
        if (it != left.end() && it->second > 0) --it->second, ++matched;
    }
    return double(matched) / double(answer.size());
}

std::vector<int32_t> newline_tokens(const Tokenizer& tokenizer) {
    std::vector<int32_t> ids;
    for (int32_t id = 0; id < static_cast<int32_t>(tokenizer.vocab_size()); ++id) {
        const int32_t one[] = {id};
        if (tokenizer.decode(one).find('\n') != std::string::npos) ids.push_back(id);
    }
    return ids;
}

namespace {

// Positions b in [0, n] where a sentence may start: the ends of the context, and after a token
// whose text ends (trailing spaces aside) in '.', '!', '?' or a newline.
std::vector<int64_t> sentence_boundaries(const Tokenizer& tokenizer, std::span<const int32_t> context) {
    std::map<int32_t, bool> ends_sentence;  // per distinct id: decoding is the slow part
    std::vector<int64_t> out = {0};
    for (size_t i = 0; i < context.size(); ++i) {
        auto it = ends_sentence.find(context[i]);
        if (it == ends_sentence.end()) {
            const int32_t one[] = {context[i]};
            std::string text = tokenizer.decode(one);
            const bool newline = text.find('\n') != std::string::npos;
            while (!text.empty() && (text.back() == ' ' || text.back() == '\t')) text.pop_back();
            const bool end = newline || (!text.empty() && (text.back() == '.' || text.back() == '!' || text.back() == '?'));
            it = ends_sentence.emplace(context[i], end).first;
        }
        if (it->second && i + 1 < context.size()) out.push_back(static_cast<int64_t>(i) + 1);
    }
    if (!context.empty()) out.push_back(static_cast<int64_t>(context.size()));
    return out;
}

}  // namespace

std::vector<RetrievalTest> build_haystack_tests(const Tokenizer& tokenizer, const HaystackOptions& options) {
    constexpr const char* where = "[probe retrieval-heads]";
    ATTNLAB_CHECK(!options.needle.empty(), InvalidArgument, "{} the needle is empty", where);
    ATTNLAB_CHECK(!options.lengths.empty() && !options.depths.empty(), InvalidArgument,
                  "{} give at least one length and one depth", where);
    const std::vector<int32_t> prefix = tokenizer.encode("", true);  // BOS, when the tokenizer adds one
    const std::vector<int32_t> hay = tokenizer.encode(options.haystack, false);
    ATTNLAB_CHECK(!hay.empty(), InvalidArgument, "{} the haystack text has no tokens", where);
    // Inside the text the needle follows a sentence and a space: encode it (and the answer) so.
    const std::vector<int32_t> needle = tokenizer.encode(" " + options.needle, false);
    const std::vector<int32_t> answer =
        tokenizer.encode(" " + (options.answer.empty() ? options.needle : options.answer), false);
    const std::vector<int32_t> question = tokenizer.encode(options.question, false);
    const int64_t fixed = static_cast<int64_t>(prefix.size() + needle.size() + question.size());

    std::vector<RetrievalTest> tests;
    for (int64_t length : options.lengths) {
        ATTNLAB_CHECK(length > fixed, InvalidArgument,
                      "{} length {} cannot hold BOS, the needle and the question ({} tokens) and any haystack", where,
                      length, fixed);
        // The haystack, repeated as often as needed, cut to the budget.
        const int64_t budget = length - fixed;
        std::vector<int32_t> context;
        context.reserve(static_cast<size_t>(budget));
        while (static_cast<int64_t>(context.size()) < budget)
            context.insert(context.end(), hay.begin(),
                           hay.begin() + std::min<int64_t>(static_cast<int64_t>(hay.size()), budget - context.size()));
        const std::vector<int64_t> boundaries = sentence_boundaries(tokenizer, context);
        for (double depth : options.depths) {
            ATTNLAB_CHECK(depth >= 0 && depth <= 100, InvalidArgument, "{} depth {} is outside [0, 100]", where, depth);
            const double target = depth / 100.0 * double(budget);
            int64_t at = boundaries.front();
            for (int64_t b : boundaries)  // nearest boundary, the earlier one on ties
                if (std::fabs(double(b) - target) < std::fabs(double(at) - target)) at = b;
            RetrievalTest t;
            t.prompt = prefix;
            t.prompt.insert(t.prompt.end(), context.begin(), context.begin() + at);
            t.prompt.insert(t.prompt.end(), needle.begin(), needle.end());
            t.prompt.insert(t.prompt.end(), context.begin() + at, context.end());
            t.prompt.insert(t.prompt.end(), question.begin(), question.end());
            t.needle = needle;
            t.answer = answer;
            t.inserted_at = static_cast<int64_t>(prefix.size()) + at;
            t.length = length;
            t.depth = depth;
            tests.push_back(std::move(t));
        }
    }
    return tests;
}

std::vector<RetrievalTest> build_copy_tests(const Model& model, const CopyTaskOptions& options) {
    constexpr const char* where = "[probe retrieval-heads]";
    const int64_t V = model.config().vocab_size;
    ATTNLAB_CHECK(options.first_id >= 0 && options.first_id < V, InvalidArgument,
                  "{} copy task: first id {} is outside the vocabulary of {}", where, options.first_id, V);
    ATTNLAB_CHECK(options.n >= 2 && options.n <= V - options.first_id, InvalidArgument,
                  "{} --copy-task {} needs 2 .. {} distinct ids (vocabulary {} from id {})", where, options.n,
                  V - options.first_id, V, options.first_id);
    ATTNLAB_CHECK(options.prefix >= 1 && options.prefix < options.n, InvalidArgument,
                  "{} --copy-prefix {} must be in [1, {})", where, options.prefix, options.n);
    ATTNLAB_CHECK(options.trials >= 1, InvalidArgument, "{} --trials must be >= 1, got {}", where, options.trials);
    const std::optional<int64_t> bos = model.config().bos_token_id;
    std::vector<int32_t> pool(static_cast<size_t>(V - options.first_id));
    std::vector<RetrievalTest> tests;
    for (int64_t trial = 0; trial < options.trials; ++trial) {
        // Distinct ids: each needle token has one previous occurrence, so the copy is unambiguous.
        std::iota(pool.begin(), pool.end(), options.first_id);
        std::mt19937_64 rng(options.seed + static_cast<uint64_t>(trial));
        for (int64_t i = 0; i < options.n; ++i) {
            std::uniform_int_distribution<int64_t> pick(i, static_cast<int64_t>(pool.size()) - 1);
            std::swap(pool[i], pool[pick(rng)]);
        }
        RetrievalTest t;
        if (bos) t.prompt.push_back(static_cast<int32_t>(*bos));
        t.needle.assign(pool.begin(), pool.begin() + options.n);
        t.needle_start = static_cast<int64_t>(t.prompt.size());
        t.needle_end = t.needle_start + options.n;
        t.inserted_at = t.needle_start;
        t.prompt.insert(t.prompt.end(), t.needle.begin(), t.needle.end());
        t.prompt.insert(t.prompt.end(), t.needle.begin(), t.needle.begin() + options.prefix);
        t.answer.assign(t.needle.begin() + options.prefix, t.needle.end());
        t.max_new_tokens = options.n - options.prefix;
        t.length = static_cast<int64_t>(t.prompt.size());
        t.trial = trial;
        tests.push_back(std::move(t));
    }
    return tests;
}

}  // namespace attnlab
