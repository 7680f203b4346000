// select_token and Sampler (src/runtime/generate.cpp): the selection rule as a pure function of
// (logits, history, params, u), against
// - the rule it replaced (std::discrete_distribution over the kept candidates' probabilities,
//   transcribed below): with the same seed, the same token on random logits and settings;
// - hand-built distributions (≈ 1/2, 1/4, 1/8, 1/8) whose cuts and picks are known: top-p,
//   min-p, top-k, u from 0 to just below 1, ties, -0/+0, temperature extremes, a penalty over
//   repeated history ids;
// - its errors (NaN, ±inf on top, parameters out of range).
#include <attnlab/error.h>
#include <attnlab/generate.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numbers>
#include <numeric>
#include <random>
#include <unordered_set>
#include <vector>

namespace attnlab {
namespace {

// The Sampler as it was before select_token: a transcription of the old code, kept as the
// reference for seed compatibility.
int32_t old_sample(std::vector<float> logits, std::span<const int32_t> history, const SamplingParams& params,
                   std::mt19937_64& rng) {
    const int64_t V = static_cast<int64_t>(logits.size());
    if (params.repetition_penalty != 1.0) {
        std::unordered_set<int32_t> seen(history.begin(), history.end());
        const float p = static_cast<float>(params.repetition_penalty);
        for (int32_t id : seen)
            if (id >= 0 && id < V) logits[id] = logits[id] > 0 ? logits[id] / p : logits[id] * p;
    }
    if (params.temperature == 0.0)
        return static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
    std::vector<int32_t> order(static_cast<size_t>(V));
    std::iota(order.begin(), order.end(), 0);
    const int64_t k = params.top_k > 0 ? std::min(params.top_k, V) : V;
    auto by_logit = [&](int32_t a, int32_t b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); };
    std::partial_sort(order.begin(), order.begin() + k, order.end(), by_logit);
    order.resize(static_cast<size_t>(k));
    std::vector<double> probs(order.size());
    const double max_logit = logits[order[0]];
    double sum = 0;
    for (size_t i = 0; i < order.size(); ++i) {
        probs[i] = std::exp((logits[order[i]] - max_logit) / params.temperature);
        sum += probs[i];
    }
    for (double& p : probs) p /= sum;
    size_t keep = probs.size();
    if (params.top_p < 1.0) {
        double cumulative = 0;
        for (size_t i = 0; i < probs.size(); ++i) {
            cumulative += probs[i];
            if (cumulative >= params.top_p) {
                keep = i + 1;
                break;
            }
        }
    }
    if (params.min_p > 0) {
        const double threshold = params.min_p * probs[0];
        size_t n = 1;
        while (n < keep && probs[n] >= threshold) ++n;
        keep = n;
    }
    std::discrete_distribution<size_t> pick(probs.begin(), probs.begin() + static_cast<int64_t>(keep));
    return order[pick(rng)];
}

std::vector<float> random_logits(int64_t V, std::mt19937_64& rng, float scale, bool ties) {
    std::normal_distribution<float> normal(0.0f, scale);
    std::vector<float> logits(static_cast<size_t>(V));
    for (float& x : logits) x = ties ? std::round(normal(rng)) : normal(rng);  // rounded: many ties
    return logits;
}

SamplingParams params_of(double temperature, int64_t top_k, double top_p, double min_p, double penalty) {
    SamplingParams p;
    p.temperature = temperature, p.top_k = top_k, p.top_p = top_p, p.min_p = min_p, p.repetition_penalty = penalty;
    return p;
}

// Same seed, same token as the old discrete_distribution rule (each case draws from a fresh
// generator: where the old rule kept one candidate it drew nothing, the new one always draws).
TEST(SelectToken, MatchesTheDiscreteDistributionRule) {
    std::mt19937_64 rng(2024);
    int checked = 0, differing_picks = 0;
    for (int64_t V : {1, 2, 7, 100, 5000}) {
        for (const SamplingParams& p :
             {params_of(0.8, 40, 0.95, 0.05, 1.0), params_of(1.0, 0, 1.0, 0.0, 1.0), params_of(1.0, 0, 0.5, 0.0, 1.3),
              params_of(0.5, 10, 1.0, 0.2, 0.7), params_of(3.0, 0, 0.9, 0.01, 1.1), params_of(0.0, 40, 0.95, 0.05, 1.4),
              params_of(1e-3, 0, 1.0, 0.0, 1.0), params_of(100.0, 0, 0.99, 0.0, 1.0)}) {
            for (int rep = 0; rep < 20; ++rep) {
                const std::vector<float> logits = random_logits(V, rng, 2.0f, rep % 2 == 1);
                std::vector<int32_t> history;
                for (int i = 0; i < 12; ++i) history.push_back(static_cast<int32_t>(rng() % (V + 2)) - 1);
                const uint64_t seed = rng();
                std::mt19937_64 old_rng(seed), new_rng(seed);
                const int32_t expected = old_sample(logits, history, p, old_rng);
                const double u = p.temperature == 0 ? 0.0 : std::generate_canonical<double, 53>(new_rng);
                const int32_t got = select_token(logits, history, p, u);
                differing_picks += got != expected;
                ++checked;
            }
        }
    }
    // The sums are added in another order (running sums, not normalised probabilities): a pick
    // differs only when u falls within rounding of a boundary, which 800 draws do not hit.
    EXPECT_EQ(differing_picks, 0) << "of " << checked;
    EXPECT_EQ(checked, 800);
}

TEST(SelectToken, SamplerDrawsOneUniformPerSampledToken) {
    SamplingParams p = params_of(1.0, 0, 1.0, 0.0, 1.0);
    p.seed = 77;
    std::mt19937_64 rng(77);
    Sampler sampler(p);
    const std::vector<float> logits = {0.1f, 0.4f, -0.3f, 1.2f, 0.0f};
    for (int i = 0; i < 50; ++i) {
        const double u = std::generate_canonical<double, 53>(rng);
        EXPECT_EQ(sampler.sample(logits, {}), select_token(logits, {}, p, u)) << "draw " << i;
    }
    // Greedy draws nothing: a greedy Sampler and a fresh one agree on the next uniform.
    SamplingParams g = p;
    g.temperature = 0;
    Sampler greedy(g), fresh(g);
    for (int i = 0; i < 5; ++i) EXPECT_EQ(greedy.sample(logits, {}), 3);
    EXPECT_EQ(greedy.next_uniform(), fresh.next_uniform());
}

// Probabilities ≈ 1/2, 1/4, 1/8, 1/8 at temperature 1 (logits ln 2 apart, rounded to float, so
// the boundaries are only near these fractions: the u and cuts below keep 1e-3 away).
constexpr float kLn2 = std::numbers::ln2_v<float>;
const std::vector<float> kHalves = {0.0f, -kLn2, -2 * kLn2, -2 * kLn2};

TEST(SelectToken, PicksTheFirstCandidateWhoseShareReachesU) {
    const SamplingParams p = params_of(1.0, 0, 1.0, 0.0, 1.0);
    // Shuffled: id 2 ≈ 1/2, id 1 ≈ 1/4, ids 0 and 3 ≈ 1/8 (tied: ordered by id).
    const std::vector<float> logits = {kHalves[2], kHalves[1], kHalves[0], kHalves[3]};
    const double just_below_one = std::nextafter(1.0, 0.0);
    const std::vector<std::pair<double, int32_t>> cases = {{0.0, 2},   {0.25, 2},  {0.499, 2}, {0.501, 1},
                                                           {0.749, 1}, {0.751, 0}, {0.874, 0}, {0.876, 3},
                                                           {just_below_one, 3}};
    for (const auto& [u, id] : cases) EXPECT_EQ(select_token(logits, {}, p, u), id) << "u " << u;
}

TEST(SelectToken, TopPMinPAndTopKCut) {
    const double u = std::nextafter(1.0, 0.0);  // picks the last kept candidate
    // top-p: the shortest prefix reaching the mass (≈ 1/2, 3/4, 7/8, 1).
    EXPECT_EQ(select_token(kHalves, {}, params_of(1.0, 0, 0.49, 0.0, 1.0), u), 0);
    EXPECT_EQ(select_token(kHalves, {}, params_of(1.0, 0, 0.6, 0.0, 1.0), u), 1);
    EXPECT_EQ(select_token(kHalves, {}, params_of(1.0, 0, 0.74, 0.0, 1.0), u), 1);
    EXPECT_EQ(select_token(kHalves, {}, params_of(1.0, 0, 0.8, 0.0, 1.0), u), 2);
    EXPECT_EQ(select_token(kHalves, {}, params_of(1.0, 0, 1.0, 0.0, 1.0), u), 3);
    // min-p: candidates with at least min_p × the top probability (≈ 1/2).
    EXPECT_EQ(select_token(kHalves, {}, params_of(1.0, 0, 1.0, 0.49, 1.0), u), 1);
    EXPECT_EQ(select_token(kHalves, {}, params_of(1.0, 0, 1.0, 0.24, 1.0), u), 3);
    EXPECT_EQ(select_token(kHalves, {}, params_of(1.0, 0, 1.0, 0.26, 1.0), u), 1);
    EXPECT_EQ(select_token(kHalves, {}, params_of(1.0, 0, 1.0, 1.0, 1.0), u), 0);
    // top-k, and the mass renormalised over what is kept: of {1/2, 1/4}, u = 0.7 is the second.
    EXPECT_EQ(select_token(kHalves, {}, params_of(1.0, 2, 1.0, 0.0, 1.0), 0.7), 1);
    EXPECT_EQ(select_token(kHalves, {}, params_of(1.0, 2, 1.0, 0.0, 1.0), 0.66), 0);
    EXPECT_EQ(select_token(kHalves, {}, params_of(1.0, 1, 1.0, 0.0, 1.0), u), 0);
    EXPECT_EQ(select_token(kHalves, {}, params_of(1.0, 99, 1.0, 0.0, 1.0), u), 3);
}

TEST(SelectToken, TiesNegativeZeroAndTemperatureExtremes) {
    const double u = std::nextafter(1.0, 0.0);
    // -0 and +0 tie: ordered by id, so the last kept is the higher id either way round.
    EXPECT_EQ(select_token(std::vector<float>{-0.0f, 0.0f, -50.0f}, {}, params_of(1.0, 2, 1.0, 0.0, 1.0), u), 1);
    EXPECT_EQ(select_token(std::vector<float>{0.0f, -0.0f, -50.0f}, {}, params_of(1.0, 2, 1.0, 0.0, 1.0), u), 1);
    EXPECT_EQ(select_token(std::vector<float>{0.0f, -0.0f, -50.0f}, {}, params_of(1.0, 2, 1.0, 0.0, 1.0), 0.0), 0);
    // Greedy ties go to the lowest id.
    EXPECT_EQ(select_token(std::vector<float>{1.0f, 3.0f, 3.0f}, {}, params_of(0.0, 0, 1.0, 0.0, 1.0), 0.0), 1);
    // A tiny temperature leaves only the top (ties share it), a huge one is near uniform.
    const std::vector<float> logits = {1.0f, 2.0f, 2.0f, 1.999f};
    EXPECT_EQ(select_token(logits, {}, params_of(1e-6, 0, 1.0, 0.0, 1.0), 0.49), 1);
    EXPECT_EQ(select_token(logits, {}, params_of(1e-6, 0, 1.0, 0.0, 1.0), u), 2);
    EXPECT_EQ(select_token(logits, {}, params_of(1e6, 0, 1.0, 0.0, 1.0), 0.74), 3);
    EXPECT_EQ(select_token(logits, {}, params_of(1e6, 0, 1.0, 0.0, 1.0), 0.76), 0);
}

TEST(SelectToken, RepetitionPenaltyCountsEachHistoryIdOnce) {
    // ids 0 and 1 penalised by 2 (positive: divided, negative: multiplied), however often seen;
    // ids out of range ignored.
    const std::vector<float> logits = {4.0f, -1.0f, 3.0f, -1.5f};
    const std::vector<int32_t> history = {0, 0, 0, 1, 1, -1, 4, 99};
    const SamplingParams greedy = params_of(0.0, 0, 1.0, 0.0, 2.0);
    EXPECT_EQ(select_token(logits, history, greedy, 0.0), 2);  // 4 / 2 = 2 < 3
    // Sorted after the penalty: 3 (id 2), 2 (id 0), -1.5 (id 3), -2 (id 1); a tiny temperature
    // keeps the top, top-k 4 with u at the end picks the lowest.
    EXPECT_EQ(select_token(logits, history, params_of(1.0, 0, 1.0, 0.0, 2.0), std::nextafter(1.0, 0.0)), 1);
    EXPECT_EQ(select_token(logits, history, params_of(1e-4, 0, 1.0, 0.0, 2.0), 0.9), 2);
    // Penalty < 1 boosts: 4 / 0.5 = 8 on top.
    EXPECT_EQ(select_token(logits, history, params_of(0.0, 0, 1.0, 0.0, 0.5), 0.0), 0);
}

TEST(SelectToken, Errors) {
    const SamplingParams p = params_of(1.0, 0, 1.0, 0.0, 1.0);
    const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
    EXPECT_THROW(select_token(std::vector<float>{1.0f, nan}, {}, p, 0.5), InvalidArgument);
    EXPECT_THROW(select_token(std::vector<float>{1.0f, inf}, {}, p, 0.5), InvalidArgument);
    EXPECT_THROW(select_token(std::vector<float>{-inf, -inf}, {}, p, 0.5), InvalidArgument);
    EXPECT_EQ(select_token(std::vector<float>{-inf, 1.0f}, {}, p, std::nextafter(1.0, 0.0)), 1);  // -inf weighs 0
    EXPECT_THROW(select_token({}, {}, p, 0.5), InvalidArgument);
    EXPECT_THROW(select_token(std::vector<float>{1.0f}, {}, p, 1.0), InvalidArgument);
    EXPECT_THROW(select_token(std::vector<float>{1.0f}, {}, p, -0.1), InvalidArgument);
    for (const SamplingParams& bad : {params_of(-1.0, 0, 1.0, 0.0, 1.0), params_of(1.0, -1, 1.0, 0.0, 1.0),
                                      params_of(1.0, 0, 0.0, 0.0, 1.0), params_of(1.0, 0, 1.5, 0.0, 1.0),
                                      params_of(1.0, 0, 1.0, -0.1, 1.0), params_of(1.0, 0, 1.0, 1.1, 1.0),
                                      params_of(1.0, 0, 1.0, 0.0, 0.0)}) {
        EXPECT_THROW(select_token(std::vector<float>{1.0f}, {}, bad, 0.5), InvalidArgument);
        EXPECT_THROW(Sampler{bad}, InvalidArgument);
    }
}

}  // namespace
}  // namespace attnlab
