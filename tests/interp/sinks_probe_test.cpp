// The `sinks` probe: the secondary-sink rule on hand-made norms and cosines (window edge cases,
// labels), received mass on planted patterns known in closed form, the statistics path against
// the materialised pattern, norms/cosines/drain/peak against an activation cache, and the CLI.
#include "test_support.h"

#include <attnlab/error.h>
#include <attnlab/probe_sinks.h>
#include <attnlab/safetensors.h>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>

namespace attnlab {
namespace {

using nlohmann::json;

std::unique_ptr<Model> induction_tiny() {
    return Model::load((test::fixtures_dir() / "models" / "induction-tiny").string());
}

// BOS (0) then T-1 tokens in [2, 256).
std::vector<int32_t> tokens(int64_t T, int32_t salt = 37) {
    std::vector<int32_t> ids;
    for (int32_t t = 0; t < T; ++t) ids.push_back(t == 0 ? 0 : 2 + (t * salt) % 200);
    return ids;
}

TEST(SinksProbe, WindowRuleAndEdgeCases) {
    auto window = [](std::vector<double> norms) {
        const SinkWindow w = sink_window(norms);
        return std::vector<int64_t>{w.start, w.end};
    };
    // Jump into layer 2, collapse after layer 4: layers 2..4 scanned.
    EXPECT_EQ(window({1, 1, 10, 10, 10, 2, 2}), (std::vector<int64_t>{2, 5}));
    // Ties take the first extreme (numpy argmax/argmin): Δ = [4, 4, 0].
    EXPECT_EQ(window({1, 5, 9, 9}), (std::vector<int64_t>{1, 3}));
    // The collapse right after the jump: a one-layer window.
    EXPECT_EQ(window({1, 9, 2, 3}), (std::vector<int64_t>{1, 2}));
    // The jump is into the last layer: the window runs to the end.
    EXPECT_EQ(window({1, 1, 1, 9}), (std::vector<int64_t>{3, 4}));
    EXPECT_EQ(window({1, 5}), (std::vector<int64_t>{1, 2}));
    // Fewer than two layers: no Δ, no window.
    EXPECT_EQ(window({3}), (std::vector<int64_t>{0, 0}));
    EXPECT_EQ(window({}), (std::vector<int64_t>{0, 0}));
}

TEST(SinksProbe, DetectionFlagsOnlyInsideTheWindowAndAfterBos) {
    const std::vector<double> norms = {1, 1, 10, 10, 10, 10, 1, 1};  // window [2, 6)
    const int64_t L = 8, T = 6;
    std::vector<std::vector<double>> cos(L, std::vector<double>(T, 0.1));
    for (int64_t l = 0; l < L; ++l) {
        cos[l][0] = 1.0;    // BOS itself: never flagged
        cos[l][1] = 0.95;   // every layer: lifetime = window length
        cos[l][3] = 0.9;    // exactly the threshold: not flagged (strict >)
    }
    cos[2][2] = cos[3][2] = -0.95;  // |cos| counts: lifetime 2
    cos[5][4] = cos[6][4] = cos[7][4] = 0.91;  // only layer 5 is inside: lifetime 1
    cos[0][5] = cos[1][5] = 0.99;   // before the window: 0
    const SinkDetection d = detect_sinks(norms, cos, 0, 0.9);
    EXPECT_EQ(d.window.start, 2);
    EXPECT_EQ(d.window.end, 6);
    EXPECT_EQ(d.lifetime, (std::vector<int64_t>{0, 4, 2, 0, 1, 0}));
    EXPECT_EQ(d.first_layer, (std::vector<int64_t>{-1, 2, 2, -1, 5, -1}));
    EXPECT_EQ(d.flagged_per_layer, (std::vector<int64_t>{0, 0, 2, 2, 1, 2, 0, 0}));
    // BOS at position 1: position 1 is no longer a candidate.
    const SinkDetection d1 = detect_sinks(norms, cos, 1, 0.9);
    EXPECT_EQ(d1.lifetime, (std::vector<int64_t>{0, 0, 2, 0, 1, 0}));
    EXPECT_THROW(detect_sinks(norms, std::vector<std::vector<double>>(3, std::vector<double>(T)), 0, 0.9), InvalidArgument);
}

TEST(SinksProbe, LifetimeLabels) {
    const SinkLabelThresholds deep = sink_label_thresholds(40);  // the paper's L - 15 and 4
    EXPECT_EQ(deep.bos_lifetime, 25);
    EXPECT_EQ(deep.secondary_lifetime, 4);
    EXPECT_STREQ(sink_label(25, deep), "bos_sink");
    EXPECT_STREQ(sink_label(24, deep), "secondary");
    EXPECT_STREQ(sink_label(5, deep), "secondary");
    EXPECT_STREQ(sink_label(4, deep), "noise");
    // Below 32 layers: ceil(0.6 L) and floor(0.15 L).
    const SinkLabelThresholds six = sink_label_thresholds(6);
    EXPECT_EQ(six.bos_lifetime, 4);
    EXPECT_EQ(six.secondary_lifetime, 0);
    EXPECT_STREQ(sink_label(0, six), "noise");
    EXPECT_STREQ(sink_label(1, six), "secondary");
    EXPECT_STREQ(sink_label(4, six), "bos_sink");
    const SinkLabelThresholds t24 = sink_label_thresholds(24);
    EXPECT_EQ(t24.bos_lifetime, 15);
    EXPECT_EQ(t24.secondary_lifetime, 3);
    const SinkLabelThresholds set = sink_label_thresholds(6, 3, 1);
    EXPECT_STREQ(sink_label(2, set), "secondary");
    EXPECT_STREQ(sink_label(1, set), "noise");
    EXPECT_STREQ(sink_label(3, set), "bos_sink");
    EXPECT_THROW(sink_label_thresholds(6, 2, 2), InvalidArgument);
    EXPECT_THROW(sink_label_thresholds(6, 0, -1), InvalidArgument);
}

// causal + streaming(sink=1, window=1) with τ = 1e9: row 0 keeps {0}, every row i >= 1 keeps
// {0, i} with 0.5 each — a planted sink at position 0.
TEST(SinksProbe, PlantedSinkReceivesKnownMass) {
    auto model = induction_tiny();
    model->set_attention({{0, -1, 0, -1, "causal+streaming(sink=1,window=1)+temperature(t=1e9)"}});
    const int64_t T = 24;
    const SinkScores s = probe_sinks(*model, {tokens(T)});
    ASSERT_EQ(s.layers.size(), 2u);
    for (const LayerSinkScores& l : s.layers) {
        ASSERT_EQ(static_cast<int64_t>(l.received_mass.size()), T);
        EXPECT_NEAR(l.received_mass[0], (1.0 + 0.5 * (T - 1)) / T, 1e-6);
        for (int64_t k = 1; k < T; ++k) EXPECT_NEAR(l.received_mass[k], 0.5 / double(T - k), 1e-6) << k;
        for (double m : l.primary_mass) EXPECT_NEAR(m, 0.5, 1e-6);
        ASSERT_EQ(l.top_sinks.size(), 5u);
        EXPECT_EQ(l.top_sinks[0].position, 0);
        EXPECT_EQ(l.top_sinks[0].token, 0);
        EXPECT_EQ(l.top_sinks[1].position, T - 1);  // 0.5/1: the last key is seen only by itself
        EXPECT_EQ(l.value_drain.size(), 4u);
    }
}

// Uniform causal rows, two sequences of different lengths: α_k is the per-position mean over the
// sequences that reach k, and a position whose token differs between them has no common token.
TEST(SinksProbe, UniformRowsAveragedOverABatch) {
    auto model = induction_tiny();
    model->set_attention({{0, -1, 0, -1, "causal+temperature(t=1e9)"}});
    const int64_t T1 = 10, T2 = 14;
    auto alpha = [](int64_t T, int64_t k) {
        double s = 0;
        for (int64_t i = k; i < T; ++i) s += 1.0 / double(i + 1);
        return s / double(T - k);
    };
    SinkProbeOptions options;
    options.top_sinks = 100;
    const SinkScores s = probe_sinks(*model, {tokens(T1, 37), tokens(T2, 41)}, options);
    EXPECT_EQ(s.sequences, 2);
    EXPECT_EQ(s.per_sequence.size(), 2u);
    for (const LayerSinkScores& l : s.layers) {
        ASSERT_EQ(static_cast<int64_t>(l.received_mass.size()), T2);
        for (int64_t k = 0; k < T2; ++k) {
            const double want = k < T1 ? 0.5 * (alpha(T1, k) + alpha(T2, k)) : alpha(T2, k);
            EXPECT_NEAR(l.received_mass[k], want, 1e-6) << k;
        }
        for (double m : l.primary_mass) {  // rows i >= 1 of both sequences pooled
            double sum = 0;
            for (int64_t i = 1; i < T1; ++i) sum += 1.0 / double(i + 1);
            for (int64_t i = 1; i < T2; ++i) sum += 1.0 / double(i + 1);
            EXPECT_NEAR(m, sum / double(T1 - 1 + T2 - 1), 1e-6);
        }
        ASSERT_EQ(static_cast<int64_t>(l.top_sinks.size()), T2);
        for (size_t r = 1; r < l.top_sinks.size(); ++r) EXPECT_GE(l.top_sinks[r - 1].mass, l.top_sinks[r].mass);
        for (const SinkPosition& p : l.top_sinks) {
            const int32_t want = p.position == 0 ? 0 : p.position >= T1 ? tokens(T2, 41)[p.position] : -1;
            EXPECT_EQ(p.token, want) << p.position;  // tokens 37t and 41t mod 200 differ for 0 < t < 10
        }
    }
}

// What the probe measures from statistics and callbacks, recomputed from a full activation
// cache: α_k from hook_pattern, BOS norms, cosines, drain and peak from the tensors.
TEST(SinksProbe, StatisticsEqualTheMaterialisedTensors) {
    auto model = induction_tiny();
    const std::vector<int32_t> ids = tokens(21);
    const int64_t T = 21, b = 0;
    ActivationCache cache("blocks\\.\\d+\\.(attn\\.hook_pattern|attn\\.hook_v|hook_resid_post)");
    KVCache kv = model->new_cache();
    ForwardOptions fo;
    fo.hooks = &cache;
    model->forward(ids, kv, fo);
    SinkProbeOptions options;
    options.cos_threshold = 0.5;  // flag something on a 2-layer model
    const SinkScores s = probe_sinks(*model, {ids}, options);
    const int64_t L = 2;
    std::vector<double> norms;
    std::vector<std::vector<double>> cos(L, std::vector<double>(T));
    auto norm = [](const float* x, int64_t n) {
        double q = 0;
        for (int64_t c = 0; c < n; ++c) q += double(x[c]) * x[c];
        return std::sqrt(q);
    };
    for (int64_t l = 0; l < L; ++l) {
        const Tensor& p = cache.at(fmt::format("blocks.{}.attn.hook_pattern", l));  // (H, T, T)
        const int64_t H = p.size(0);
        for (int64_t k = 0; k < T; ++k) {
            double sum = 0;
            for (int64_t h = 0; h < H; ++h)
                for (int64_t q = k; q < T; ++q) sum += p.data<float>()[(h * T + q) * T + k];
            EXPECT_NEAR(s.layers[l].received_mass[k], sum / double(H * (T - k)), 1e-6) << l << " " << k;
        }
        for (int64_t h = 0; h < H; ++h) {
            double sum = 0;
            for (int64_t q = 1; q < T; ++q) sum += p.data<float>()[(h * T + q) * T];
            EXPECT_NEAR(s.layers[l].primary_mass[h], sum / double(T - 1), 1e-6);
        }
        const Tensor& x = cache.at(fmt::format("blocks.{}.hook_resid_post", l));  // (T, C)
        const int64_t C = x.size(1);
        const float* xb = x.data<float>() + b * C;
        double others = 0;
        for (int64_t i = 0; i < T; ++i) {
            const float* xi = x.data<float>() + i * C;
            double dot = 0;
            for (int64_t c = 0; c < C; ++c) dot += double(xi[c]) * xb[c];
            cos[l][i] = dot / (norm(xi, C) * norm(xb, C));
            if (i > b) others += norm(xi, C);
        }
        norms.push_back(norm(xb, C));
        EXPECT_NEAR(s.layers[l].bos_norm, norms.back(), 1e-9 * norms.back());
        // (The probe's pass computes attention statistics in the kernel, whose exponential is not
        // the plain pass's AVX-512 one: activations agree to float rounding, not bit for bit.)
        EXPECT_NEAR(s.layers[l].residual_peak, norms.back() / (others / double(T - 1)), 1e-7);
        const Tensor& v = cache.at(fmt::format("blocks.{}.attn.hook_v", l));  // (T, Hkv, D)
        const int64_t Hkv = v.size(1), D = v.size(2);
        for (int64_t g = 0; g < Hkv; ++g) {
            double vo = 0;
            for (int64_t i = 1; i < T; ++i) vo += norm(v.data<float>() + (i * Hkv + g) * D, D);
            EXPECT_NEAR(s.layers[l].value_drain[g], norm(v.data<float>() + g * D, D) / (vo / double(T - 1)), 1e-7);
        }
    }
    const SinkDetection d = detect_sinks(norms, cos, b, 0.5);
    const SequenceSinks& seq = s.per_sequence.at(0);
    EXPECT_EQ(seq.window.start, d.window.start);
    EXPECT_EQ(seq.window.end, d.window.end);
    int64_t labelled = 0;
    for (int64_t i = 1; i < T; ++i) labelled += std::string(sink_label(d.lifetime[i], s.thresholds)) != "noise";
    EXPECT_EQ(seq.bos_sinks + seq.secondary, labelled);
    EXPECT_EQ(seq.bos_sinks + seq.secondary + seq.noise, T - 1);
    for (int64_t l = 0; l < L; ++l) EXPECT_DOUBLE_EQ(s.layers[l].flagged_tokens, double(d.flagged_per_layer[l]));
}

TEST(SinksProbe, BadInputIsAnError) {
    auto model = induction_tiny();
    EXPECT_THROW(probe_sinks(*model, {}), InvalidArgument);
    SinkProbeOptions options;
    options.bos_index = 3;
    EXPECT_THROW(probe_sinks(*model, {{0, 5, 6, 7}}, options), InvalidArgument);  // nothing after BOS
    options = {};
    options.bos_lifetime = 1;
    options.secondary_lifetime = 1;
    EXPECT_THROW(probe_sinks(*model, {tokens(8)}, options), InvalidArgument);
    options = {};
    options.cos_threshold = 1.5;
    EXPECT_THROW(probe_sinks(*model, {tokens(8)}, options), InvalidArgument);
}

TEST(SinksProbe, CliWritesTheDocumentedJson) {
    test::TempDir tmp;
    const auto model_dir = test::prepare_model_dir("tinylm", tmp).string();
    const auto r = test::run_cli({"probe", "sinks", "-m", model_dir, "-p",
                                  "In the beginning God created the heaven and the earth.", "--json",
                                  (tmp / "sinks.json").string()});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE(r.out.find("| layer |"), std::string::npos);
    const json j = json::parse(test::read_file(tmp / "sinks.json"));
    for (const char* key : {"probe", "bos_index", "cos_threshold", "thresholds", "sequences", "interrupted", "layers", "per_sequence"})
        EXPECT_TRUE(j.contains(key)) << key;
    EXPECT_EQ(j["probe"], "sinks");
    EXPECT_EQ(j["thresholds"]["bos_lifetime"], 4);  // ceil(0.6 · 6)
    ASSERT_EQ(j["layers"].size(), 6u);
    for (const char* key : {"layer", "received_mass", "top_sinks", "primary_mass", "bos_norm", "residual_peak",
                            "value_drain", "flagged_tokens"})
        EXPECT_TRUE(j["layers"][0].contains(key)) << key;
    EXPECT_EQ(j["layers"][0]["primary_mass"].size(), 8u);
    EXPECT_EQ(j["layers"][0]["value_drain"].size(), 4u);
    const json& seq = j["per_sequence"][0];
    for (const char* key : {"index", "length", "window", "counts", "sink_tokens"}) EXPECT_TRUE(seq.contains(key)) << key;
    EXPECT_EQ(seq["window"].size(), 2u);

    // Bad input: a missing file, and a safetensors file without input_ids.
    for (const std::string& input : {(tmp / "missing.safetensors").string(), model_dir + "/model.safetensors"}) {
        const auto bad = test::run_cli({"probe", "sinks", "-m", model_dir, "--input", input});
        EXPECT_EQ(bad.exit_code, 1) << input;
        EXPECT_EQ(bad.err.rfind("attnlab: error:", 0), 0u) << bad.err;
        EXPECT_EQ(std::count(bad.err.begin(), bad.err.end(), '\n'), 1) << bad.err;
    }
}

}  // namespace
}  // namespace attnlab
