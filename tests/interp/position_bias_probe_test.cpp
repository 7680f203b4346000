// The `position-bias` probe: rollout against a naive float64 product (plain and residual),
// uniform causal rows where every score has a closed form, the statistics path against the
// materialised pattern, the rollout length limit, and the CLI.
#include "test_support.h"

#include <attnlab/error.h>
#include <attnlab/probe_position_bias.h>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <random>

namespace attnlab {
namespace {

using nlohmann::json;
using Matrix = std::vector<double>;  // (T, T) row-major

Matrix naive_product(const Matrix& A, const Matrix& B, int64_t T) {  // A·B
    Matrix C(static_cast<size_t>(T * T), 0.0);
    for (int64_t i = 0; i < T; ++i)
        for (int64_t j = 0; j < T; ++j)
            for (int64_t k = 0; k < T; ++k) C[i * T + j] += A[i * T + k] * B[k * T + j];
    return C;
}

Matrix identity(int64_t T) {
    Matrix I(static_cast<size_t>(T * T), 0.0);
    for (int64_t i = 0; i < T; ++i) I[i * T + i] = 1.0;
    return I;
}

// Rows uniform over j <= i.
Matrix uniform_causal(int64_t T) {
    Matrix A(static_cast<size_t>(T * T), 0.0);
    for (int64_t i = 0; i < T; ++i)
        for (int64_t j = 0; j <= i; ++j) A[i * T + j] = 1.0 / double(i + 1);
    return A;
}

// Random row-stochastic matrices, causal or dense.
Matrix random_stochastic(int64_t T, bool causal, std::mt19937& rng) {
    std::uniform_real_distribution<double> u(0.0, 1.0);
    Matrix A(static_cast<size_t>(T * T), 0.0);
    for (int64_t i = 0; i < T; ++i) {
        double s = 0;
        for (int64_t j = 0; j < (causal ? i + 1 : T); ++j) s += (A[i * T + j] = u(rng));
        for (int64_t j = 0; j < T; ++j) A[i * T + j] /= s;
    }
    return A;
}

// P^(t) = A'^(t) ⋯ A'^(1), from the definition.
std::vector<Matrix> naive_rollout(const std::vector<Matrix>& layers, int64_t T, bool residual) {
    Matrix P = identity(T);
    std::vector<Matrix> out;
    for (Matrix A : layers) {
        if (residual)
            for (int64_t e = 0; e < T * T; ++e) A[e] = 0.5 * A[e] + 0.5 * identity(T)[e];
        P = naive_product(A, P, T);
        out.push_back(P);
    }
    return out;
}

void expect_matrices_near(const std::vector<Matrix>& got, const std::vector<Matrix>& want, double tol) {
    ASSERT_EQ(got.size(), want.size());
    for (size_t t = 0; t < got.size(); ++t)
        for (size_t e = 0; e < got[t].size(); ++e) ASSERT_NEAR(got[t][e], want[t][e], tol) << "depth " << t << " entry " << e;
}

TEST(PositionBiasProbe, RolloutEqualsTheNaiveProduct) {
    std::mt19937 rng(7);
    const int64_t T = 7;
    for (bool causal : {true, false}) {
        std::vector<Matrix> layers;
        for (int l = 0; l < 4; ++l) layers.push_back(random_stochastic(T, causal, rng));
        for (bool residual : {false, true})
            expect_matrices_near(attention_rollout(layers, T, residual), naive_rollout(layers, T, residual), 1e-12);
    }
    // Identity layers leave P at the identity; the residual variant of I is I too.
    expect_matrices_near(attention_rollout({identity(3), identity(3)}, 3, true), {identity(3), identity(3)}, 0);
    Matrix P = identity(3);
    EXPECT_THROW(rollout_step(P, identity(2), 3, false), InvalidArgument);
}

// Uniform causal attention at every layer: the first token's share of every row grows with
// depth towards 1 (papers-analysis §1), slower with the residual term.
TEST(PositionBiasProbe, RolloutFirstTokenMassGrowsWithDepth) {
    const int64_t T = 16;
    const std::vector<Matrix> layers(8, uniform_causal(T));
    for (bool residual : {false, true}) {
        const std::vector<Matrix> P = attention_rollout(layers, T, residual);
        double previous = 0;
        for (const Matrix& p : P) {
            double first = 0;
            for (int64_t i = 0; i < T; ++i) first += p[i * T];
            first /= double(T);
            EXPECT_GT(first, previous + 1e-6);
            previous = first;
        }
        EXPECT_GT(previous, residual ? 0.5 : 0.9);
    }
}

// Closed forms for rows uniform over j <= i (τ = 1e9 makes every score ~0) on tinylm's 6 layers.
TEST(PositionBiasProbe, UniformRowsGiveKnownScores) {
    auto model = Model::load((test::fixtures_dir() / "models" / "tinylm").string());
    model->set_attention({{0, -1, 0, -1, "causal+temperature(t=1e9)"}});
    const int64_t T = 33, L = 6;
    std::vector<int32_t> ids;
    for (int32_t t = 0; t < T; ++t) ids.push_back(t == 0 ? 0 : 10 + (t * 97) % 8000);
    for (bool residual : {false, true}) {
        PositionBiasOptions options;
        options.bins = 4;
        options.rollout_residual = residual;
        const PositionBias r = probe_position_bias(*model, {ids}, options);
        ASSERT_EQ(static_cast<int64_t>(r.layers.size()), L);
        EXPECT_EQ(r.bin_edges, (std::vector<int64_t>{0, 8, 16, 24, 33}));
        // Distance bins, independently of AttentionStats::distance_bin: d = 0 -> 1, else 2 + floor(log2 d).
        auto bin_of = [](int64_t d) { return d == 0 ? 1 : 2 + static_cast<int64_t>(std::floor(std::log2(double(d)))); };
        const int64_t n_bins = bin_of(T - 1) + 1;
        std::vector<double> distance(static_cast<size_t>(n_bins), 0.0);
        for (int64_t i = 0; i < T; ++i)
            for (int64_t d = 0; d <= i; ++d) distance[bin_of(d)] += 1.0 / double(i + 1) / double(T);
        double first = 0;
        for (int64_t i = 1; i < T; ++i) first += 1.0 / double(i + 1) / double(T - 1);
        for (const LayerPositionBias& l : r.layers) {
            ASSERT_EQ(static_cast<int64_t>(l.received_mass.size()), T);
            for (int64_t k = 0; k < T; ++k) {
                double a = 0;
                for (int64_t i = k; i < T; ++i) a += 1.0 / double(i + 1);
                EXPECT_NEAR(l.received_mass[k], a / double(T - k), 1e-6) << k;
            }
            ASSERT_EQ(l.received_mass_binned.size(), 4u);
            for (int64_t b = 0; b < 4; ++b) {
                double m = 0;
                for (int64_t k = r.bin_edges[b]; k < r.bin_edges[b + 1]; ++k) m += l.received_mass[k];
                EXPECT_NEAR(l.received_mass_binned[b], m / double(r.bin_edges[b + 1] - r.bin_edges[b]), 1e-12);
            }
            ASSERT_EQ(static_cast<int64_t>(l.distance_mass.size()), n_bins);
            for (int64_t b = 0; b < n_bins; ++b) EXPECT_NEAR(l.distance_mass[b], distance[b], 1e-6) << b;
            EXPECT_NEAR(l.first_token_mass, first, 1e-6);
        }
        ASSERT_TRUE(r.rollout.has_value());
        EXPECT_EQ(r.rollout->residual, residual);
        EXPECT_EQ(r.rollout->sequences, 1);
        const std::vector<Matrix> P = naive_rollout(std::vector<Matrix>(L, uniform_causal(T)), T, residual);
        double previous = 0;
        for (int64_t t = 0; t < L; ++t) {
            double f = 0;
            for (int64_t i = 0; i < T; ++i) f += P[t][i * T] / double(T);
            EXPECT_NEAR(r.rollout->first_token_mass[t], f, 1e-5) << t;
            EXPECT_GT(r.rollout->first_token_mass[t], previous);
            previous = r.rollout->first_token_mass[t];
            ASSERT_EQ(static_cast<int64_t>(r.rollout->last_row[t].size()), T);
            for (int64_t j = 0; j < T; ++j) EXPECT_NEAR(r.rollout->last_row[t][j], P[t][(T - 1) * T + j], 1e-5);
        }
    }
}

// The model's own attention: the statistics-based scores equal those of hook_pattern.
TEST(PositionBiasProbe, StatisticsEqualThePattern) {
    auto model = Model::load((test::fixtures_dir() / "models" / "tinylm").string());
    const std::vector<int32_t> ids = {0, 512, 77, 4000, 9, 1234, 77, 300, 5000, 42, 8000, 600, 77, 81, 2020, 3};
    const int64_t T = static_cast<int64_t>(ids.size());
    ActivationCache cache("blocks\\.\\d+\\.attn\\.hook_pattern");
    KVCache kv = model->new_cache();
    ForwardOptions fo;
    fo.hooks = &cache;
    model->forward(ids, kv, fo);
    const PositionBias r = probe_position_bias(*model, {ids});
    std::vector<Matrix> head_mean;
    for (const LayerPositionBias& l : r.layers) {
        const Tensor& p = cache.at(fmt::format("blocks.{}.attn.hook_pattern", l.layer));  // (H, T, T)
        const int64_t H = p.size(0);
        auto a = [&](int64_t h, int64_t i, int64_t j) { return double(p.data<float>()[(h * T + i) * T + j]); };
        Matrix A(static_cast<size_t>(T * T), 0.0);
        for (int64_t h = 0; h < H; ++h)
            for (int64_t i = 0; i < T; ++i)
                for (int64_t j = 0; j < T; ++j) A[i * T + j] += a(h, i, j) / double(H);
        head_mean.push_back(A);
        for (int64_t k = 0; k < T; ++k) {
            double s = 0;
            for (int64_t i = k; i < T; ++i) s += A[i * T + k];
            EXPECT_NEAR(l.received_mass[k], s / double(T - k), 1e-6) << l.layer << " " << k;
        }
        double first = 0;
        for (int64_t i = 1; i < T; ++i) first += A[i * T] / double(T - 1);
        EXPECT_NEAR(l.first_token_mass, first, 1e-6);
        std::vector<double> distance(l.distance_mass.size(), 0.0);
        for (int64_t i = 0; i < T; ++i)
            for (int64_t j = 0; j <= i; ++j) distance[AttentionStats::distance_bin(i - j)] += A[i * T + j] / double(T);
        for (size_t b = 0; b < distance.size(); ++b) EXPECT_NEAR(l.distance_mass[b], distance[b], 1e-6) << b;
    }
    const std::vector<Matrix> P = naive_rollout(head_mean, T, false);
    for (size_t t = 0; t < P.size(); ++t)
        for (int64_t j = 0; j < T; ++j) EXPECT_NEAR(r.rollout->last_row[t][j], P[t][(T - 1) * T + j], 1e-6);
}

TEST(PositionBiasProbe, RolloutIsSkippedAboveTheLimit) {
    auto model = Model::load((test::fixtures_dir() / "models" / "induction-tiny").string());
    PositionBiasOptions options;
    options.rollout_max_tokens = 8;
    options.bins = 64;
    const PositionBias r = probe_position_bias(*model, {{0, 5, 6, 7, 8, 9, 10, 11, 12, 13}}, options);
    EXPECT_FALSE(r.rollout.has_value());
    EXPECT_EQ(r.bin_edges.size(), 11u);  // more bins than positions: one per position
    const json j = json::parse(r.to_json());
    EXPECT_TRUE(j["rollout"].is_null());
    EXPECT_EQ(j["rollout_max_tokens"], 8);
    EXPECT_EQ(j["layers"][1]["received_mass"].size(), 10u);
    // A batch with one short sequence rolls out only that one.
    const PositionBias mixed = probe_position_bias(*model, {{0, 5, 6, 7, 8, 9, 10, 11, 12, 13}, {0, 5, 6}}, options);
    ASSERT_TRUE(mixed.rollout.has_value());
    EXPECT_EQ(mixed.rollout->sequences, 1);
    EXPECT_EQ(mixed.rollout->last_row[0].size(), 3u);
}

TEST(PositionBiasProbe, BadInputIsAnError) {
    auto model = Model::load((test::fixtures_dir() / "models" / "induction-tiny").string());
    EXPECT_THROW(probe_position_bias(*model, {}), InvalidArgument);
    EXPECT_THROW(probe_position_bias(*model, {{}}), InvalidArgument);
    PositionBiasOptions options;
    options.bins = 0;
    EXPECT_THROW(probe_position_bias(*model, {{0, 5}}, options), InvalidArgument);
}

TEST(PositionBiasProbe, CliWritesTheDocumentedJson) {
    test::TempDir tmp;
    const auto model_dir = test::prepare_model_dir("tinylm", tmp).string();
    const auto r = test::run_cli({"probe", "position-bias", "-m", model_dir, "-p",
                                  "And God said, Let there be light: and there was light.", "--json",
                                  (tmp / "bias.json").string()});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE(r.out.find("| layer |"), std::string::npos);
    const json j = json::parse(test::read_file(tmp / "bias.json"));
    for (const char* key : {"probe", "sequences", "interrupted", "bin_edges", "distance_bins", "layers",
                            "rollout_max_tokens", "rollout"})
        EXPECT_TRUE(j.contains(key)) << key;
    EXPECT_EQ(j["probe"], "position-bias");
    ASSERT_EQ(j["layers"].size(), 6u);
    for (const char* key : {"layer", "received_mass", "received_mass_binned", "distance_mass", "first_token_mass"})
        EXPECT_TRUE(j["layers"][0].contains(key)) << key;
    for (const char* key : {"residual", "sequences", "first_token_mass", "last_row"}) EXPECT_TRUE(j["rollout"].contains(key)) << key;
    EXPECT_EQ(j["rollout"]["first_token_mass"].size(), 6u);

    const auto skipped = test::run_cli({"probe", "position-bias", "-m", model_dir, "-p", "In the beginning",
                                        "--rollout-max-tokens", "1", "--json", (tmp / "skip.json").string()});
    ASSERT_EQ(skipped.exit_code, 0) << skipped.err;
    EXPECT_TRUE(json::parse(test::read_file(tmp / "skip.json"))["rollout"].is_null());

    for (const std::string& input : {(tmp / "missing.safetensors").string(), model_dir + "/model.safetensors"}) {
        const auto bad = test::run_cli({"probe", "position-bias", "-m", model_dir, "--input", input});
        EXPECT_EQ(bad.exit_code, 1) << input;
        EXPECT_EQ(bad.err.rfind("attnlab: error:", 0), 0u) << bad.err;
        EXPECT_EQ(std::count(bad.err.begin(), bad.err.end(), '\n'), 1) << bad.err;
    }
}

}  // namespace
}  // namespace attnlab
