// The `retrieval-heads` probe (papers-analysis §5): greedy decoding on the KV cache with the
// in-kernel top-1 statistic at every decode step; a head scores 1/|needle span| each time its
// most-attended key lies in the needle span and holds the token just generated. Then optional
// re-runs with heads masked by uniform attention (zero query). Definitions: probe_retrieval.h.
#include <attnlab/error.h>
#include <attnlab/hooks.h>
#include <attnlab/probe_retrieval.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <numeric>
#include <random>
#include <set>

namespace attnlab {

namespace {

constexpr const char* kWhere = "probe retrieval-heads";

// Asks for the row argmax (top_key) of every layer while `collecting`, and keeps the last
// decode step's values: (L, H) key positions.
class TopKeyHook : public Hooks {
public:
    TopKeyHook(int64_t layers, int64_t heads) : H_(heads), top_(static_cast<size_t>(layers * heads), -1) {}
    bool collecting = false;
    bool wants(const std::string&) const override { return false; }
    void on(const std::string&, Tensor&) override {}
    std::optional<AttentionStatsRequest> attention_stats(int64_t, int64_t) const override {
        if (!collecting) return std::nullopt;
        AttentionStatsRequest r;
        r.top = true;
        return r;
    }
    void on_attention_stats(const LayerAttentionStats& st) override {
        if (!st.top_key.defined()) return;
        const int64_t* keys = st.top_key.data<int64_t>();  // (T, H); decode steps have T = 1
        std::copy_n(keys + (st.T - 1) * H_, H_, top_.begin() + st.layer * H_);
    }
    const std::vector<int64_t>& top() const { return top_; }

private:
    int64_t H_;
    std::vector<int64_t> top_;
};

int32_t argmax(const Tensor& logits) {  // (1, V); ties go to the lowest id, as greedy sampling
    const float* p = logits.data<float>();
    const int64_t V = logits.size(-1);
    return static_cast<int32_t>(std::max_element(p, p + V) - p);
}

// One test: greedy decoding, the per-head scores when `score`, then recall and accuracy.
RetrievalTestResult run_test(const Model& model, const RetrievalTest& test, const RetrievalOptions& options,
                             const std::set<int32_t>& stops, Hooks* mask, bool score) {
    const ModelConfig& c = model.config();
    const int64_t L = c.n_layer, H = c.n_head;
    RetrievalTestResult r;
    r.length = test.length;
    r.depth = test.depth;
    r.trial = test.trial;
    r.prompt_tokens = static_cast<int64_t>(test.prompt.size());
    r.inserted_at = test.inserted_at;
    r.needle_start = test.needle_start;
    r.needle_end = test.needle_end;
    if (r.needle_start < 0) {
        const auto span = find_needle_span(test.prompt, test.needle);
        ATTNLAB_CHECK(span.has_value(), InvalidArgument,
                      "[{}] test (length {}, depth {}, trial {}): no window of the prompt shares > 90% of the needle's "
                      "tokens",
                      kWhere, test.length, test.depth, test.trial);
        r.needle_start = span->first;
        r.needle_end = span->second;
    }
    r.scores.assign(static_cast<size_t>(L * H), 0.0);
    const double unit = 1.0 / double(r.needle_end - r.needle_start);

    TopKeyHook top(L, H);
    HookChain chain;
    chain.add(&top);
    if (mask) chain.add(mask);
    ForwardOptions fo;
    fo.hooks = &chain;
    KVCache cache = model.new_cache();
    // Prefill all but the last prompt token; each decode step then feeds one token, so its
    // query row is the one whose argmax the paper scores.
    const std::span<const int32_t> prompt(test.prompt);
    model.forward(prompt.first(prompt.size() - 1), cache, fo);
    top.collecting = score;
    int32_t current = prompt.back();
    const int64_t steps = test.max_new_tokens > 0 ? test.max_new_tokens : options.max_new_tokens;
    for (int64_t step = 0; step < steps; ++step) {
        const int32_t next = argmax(model.forward(std::span<const int32_t>(&current, 1), cache, fo));
        if (stops.count(next)) break;
        r.response.push_back(next);
        if (score)
            for (int64_t i = 0; i < L * H; ++i) {
                const int64_t j = top.top()[i];
                if (j >= r.needle_start && j < r.needle_end && test.prompt[j] == next) r.scores[i] += unit;
            }
        current = next;
    }
    r.recall = rouge1_recall(test.answer, r.response);
    int64_t exact = 0;
    for (size_t i = 0; i < test.answer.size() && i < r.response.size(); ++i) exact += test.answer[i] == r.response[i];
    r.token_accuracy = test.answer.empty() ? 0.0 : double(exact) / double(test.answer.size());
    r.accepted = r.recall > options.accept_recall;
    if (const Tokenizer* tok = model.tokenizer()) r.response_text = tok->decode(r.response);
    return r;
}

MaskingResult summarize(std::string label, std::vector<HeadRef> heads, const std::vector<RetrievalTestResult>& runs) {
    MaskingResult m;
    m.label = std::move(label);
    m.heads = std::move(heads);
    m.tests = static_cast<int64_t>(runs.size());
    for (const RetrievalTestResult& r : runs) {
        m.token_accuracy += r.token_accuracy / double(runs.size());
        m.recall += r.recall / double(runs.size());
        m.accepted_fraction += (r.accepted ? 1.0 : 0.0) / double(runs.size());
    }
    return m;
}

}  // namespace

RetrievalScores probe_retrieval_heads(const Model& model, const std::vector<RetrievalTest>& tests,
                                      const RetrievalOptions& options, const ProbeControl& control) {
    const ModelConfig& c = model.config();
    const int64_t L = c.n_layer, H = c.n_head;
    ATTNLAB_CHECK(!tests.empty(), InvalidArgument, "[{}] no tests to run", kWhere);
    ATTNLAB_CHECK(options.max_new_tokens >= 1, InvalidArgument, "[{}] --max-new-tokens must be >= 1, got {}", kWhere,
                  options.max_new_tokens);
    ATTNLAB_CHECK(options.mask_top >= 0 && options.mask_top <= L * H, InvalidArgument,
                  "[{}] --mask-top {} is outside [0, {}] (the model's heads)", kWhere, options.mask_top, L * H);
    ATTNLAB_CHECK(options.mask_random >= 0, InvalidArgument, "[{}] --mask-random must be >= 0, got {}", kWhere,
                  options.mask_random);
    for (const RetrievalTest& t : tests) {
        ATTNLAB_CHECK(t.prompt.size() >= 2, InvalidArgument,
                      "[{}] a prompt needs at least 2 tokens (prefill, then the last one decodes), got {}", kWhere,
                      t.prompt.size());
        ATTNLAB_CHECK(!t.needle.empty() || t.needle_start >= 0, InvalidArgument, "[{}] a test has no needle", kWhere);
        ATTNLAB_CHECK(t.needle_start < 0 || (t.needle_start < t.needle_end &&
                                             t.needle_end <= static_cast<int64_t>(t.prompt.size())),
                      InvalidArgument, "[{}] needle span [{}, {}) is not inside the prompt of {} tokens", kWhere,
                      t.needle_start, t.needle_end, t.prompt.size());
    }
    // Explicit masks are validated before the (long) scoring run.
    std::optional<QueryZeroHook> explicit_mask;
    if (!options.mask.empty()) explicit_mask.emplace(options.mask, L, H, kWhere);
    std::set<int32_t> stops(options.stop_tokens.begin(), options.stop_tokens.end());
    if (options.stop_at_eos)
        for (int64_t e : c.eos_token_ids) stops.insert(static_cast<int32_t>(e));

    const int64_t n_tests = static_cast<int64_t>(tests.size());
    const int64_t mask_runs = !options.mask.empty() + (options.mask_top > 0) + (options.mask_random > 0);
    const int64_t units = n_tests * (1 + mask_runs);
    int64_t done = 0;

    RetrievalScores out;
    out.n_layer = L;
    out.n_head = H;
    out.threshold = options.threshold;
    out.accept_recall = options.accept_recall;
    std::vector<double> accepted_sum(static_cast<size_t>(L * H), 0.0), all_sum(static_cast<size_t>(L * H), 0.0);
    for (const RetrievalTest& t : tests) {
        if (control.cancelled()) break;
        RetrievalTestResult r = run_test(model, t, options, stops, nullptr, true);
        for (int64_t i = 0; i < L * H; ++i) {
            all_sum[i] += r.scores[i];
            if (r.accepted) accepted_sum[i] += r.scores[i];
        }
        out.accepted += r.accepted;
        out.tests.push_back(std::move(r));
        control.report(++done, units);
    }
    out.interrupted = static_cast<int64_t>(out.tests.size()) < n_tests;
    const double n_run = double(out.tests.size());
    for (int64_t l = 0; l < L; ++l) {
        std::vector<double> acc(static_cast<size_t>(H)), all(static_cast<size_t>(H));
        for (int64_t h = 0; h < H; ++h) {
            // No accepted test: no evidence of retrieval, so every score is 0 (not undefined).
            acc[h] = out.accepted > 0 ? accepted_sum[l * H + h] / double(out.accepted) : 0.0;
            all[h] = n_run > 0 ? all_sum[l * H + h] / n_run : 0.0;
            out.ranking.push_back({l, h, acc[h]});
        }
        out.scores.push_back(std::move(acc));
        out.scores_all.push_back(std::move(all));
    }
    std::stable_sort(out.ranking.begin(), out.ranking.end(),
                     [](const RankedHead& a, const RankedHead& b) { return a.score > b.score; });
    for (const RankedHead& r : out.ranking)
        if (r.score > options.threshold) out.retrieval_heads.push_back(r);
    const MaskingResult base = summarize("none", {}, out.tests);
    out.token_accuracy = base.token_accuracy;
    out.recall = base.recall;
    if (out.interrupted || mask_runs == 0) return out;

    // Masking runs: the heads of each, then every test again with their queries zeroed.
    std::vector<std::pair<std::string, std::vector<HeadRef>>> plans;
    if (!options.mask.empty()) plans.emplace_back("heads", options.mask);
    if (options.mask_top > 0) {
        std::vector<HeadRef> top;
        for (int64_t i = 0; i < options.mask_top; ++i) top.push_back({out.ranking[i].layer, out.ranking[i].head});
        plans.emplace_back("top", top);
    }
    if (options.mask_random > 0) {
        std::vector<HeadRef> others;
        for (const RankedHead& r : out.ranking)
            if (r.score <= options.threshold) others.push_back({r.layer, r.head});
        std::sort(others.begin(), others.end());  // the seed alone decides the pick
        ATTNLAB_CHECK(options.mask_random <= static_cast<int64_t>(others.size()), InvalidArgument,
                      "[{}] --mask-random {}: only {} heads are not retrieval heads", kWhere, options.mask_random,
                      others.size());
        std::mt19937_64 rng(options.mask_seed);
        std::shuffle(others.begin(), others.end(), rng);
        others.resize(static_cast<size_t>(options.mask_random));
        std::sort(others.begin(), others.end());
        plans.emplace_back("random", others);
    }
    for (const auto& [label, heads] : plans) {
        QueryZeroHook mask(heads, L, H, kWhere);
        std::vector<RetrievalTestResult> runs;
        for (const RetrievalTest& t : tests) {
            if (control.cancelled()) break;
            runs.push_back(run_test(model, t, options, stops, &mask, false));
            control.report(++done, units);
        }
        if (static_cast<int64_t>(runs.size()) < n_tests) {
            out.interrupted = true;  // a partial masking run would compare unequal test sets
            break;
        }
        out.masking.push_back(summarize(label, heads, runs));
    }
    return out;
}

std::string RetrievalScores::to_json() const {
    using nlohmann::json;
    auto heads_json = [](const std::vector<RankedHead>& v) {
        json a = json::array();
        for (const RankedHead& r : v) a.push_back({{"layer", r.layer}, {"head", r.head}, {"score", r.score}});
        return a;
    };
    json out;
    out["probe"] = "retrieval-heads";
    out["layers"] = n_layer;
    out["heads"] = n_head;
    out["threshold"] = threshold;
    out["accept_recall"] = accept_recall;
    out["scores"] = scores;
    out["scores_all"] = scores_all;
    out["retrieval_heads"] = heads_json(retrieval_heads);
    out["ranking"] = heads_json(ranking);
    out["accepted"] = accepted;
    out["token_accuracy"] = token_accuracy;
    out["recall"] = recall;
    json ts = json::array();
    for (const RetrievalTestResult& t : tests) {
        json j = {{"length", t.length},
                  {"depth", t.depth},
                  {"trial", t.trial},
                  {"prompt_tokens", t.prompt_tokens},
                  {"needle_start", t.needle_start},
                  {"needle_end", t.needle_end},
                  {"inserted_at", t.inserted_at},
                  {"response", t.response},
                  {"recall", t.recall},
                  {"token_accuracy", t.token_accuracy},
                  {"accepted", t.accepted}};
        if (!t.response_text.empty()) j["response_text"] = t.response_text;
        ts.push_back(j);
    }
    out["tests"] = ts;
    json ms = json::array();
    for (const MaskingResult& m : masking) {
        json heads = json::array();
        for (const HeadRef& h : m.heads) heads.push_back({h.layer, h.head});
        ms.push_back({{"label", m.label},
                      {"heads", heads},
                      {"tests", m.tests},
                      {"token_accuracy", m.token_accuracy},
                      {"recall", m.recall},
                      {"accepted_fraction", m.accepted_fraction}});
    }
    out["masking"] = ms;
    out["interrupted"] = interrupted;
    return out.dump(1);
}

}  // namespace attnlab
