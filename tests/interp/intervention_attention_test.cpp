// Attention-level interventions (act, var, softpag, locore, temperature, boost, cca) against
// independent float64 computations on random models: every post-softmax edit keeps rows summing
// to 1 and its z equals the edited pattern times V (with or without a materialised pattern, in
// prefill and decode); ACT with β = 1 and SoftPAG with α = 0 are the identity bit for bit; ACT on
// a planted sink follows papers-analysis §7; VAR keeps each row's budget; the pre-softmax edits
// equal the softmax of the edited scores; CCA equals explicit position ids.
#include "test_support.h"

#include <attnlab/error.h>
#include <attnlab/intervention.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>

namespace attnlab {
namespace {

// 24 tokens; "image" covers 6..17, so queries 18..23 are the text after it.
const std::vector<int32_t> kIds = {0, 5, 17, 3, 42, 9, 5, 17, 3, 61, 2, 8, 33, 12, 7, 50, 21, 4, 19, 27, 40, 11, 5, 17};
const int32_t kNextId = 23;  // one decode step after the prompt

TokenSegments image_segments() { return TokenSegments::parse({"image=6:18"}); }

struct RunResult {
    Tensor logits;   // (T, V) of the prompt, or (1, V) of the decode step
    ActivationCache prompt, step;  // the points of the prompt pass and of the decode step
};

// Runs the prompt (and with `decode` one more token) with the interventions of `json` (empty:
// none), caching the points matching `names` after the interventions acted.
RunResult run(const Model& model, const std::string& json, const std::string& names,
              const TokenSegments* segments = nullptr, bool decode = false) {
    InterventionSet set = json.empty() ? InterventionSet() : InterventionSet::from_json(json, {&model, segments});
    RunResult r{Tensor(), ActivationCache(names), ActivationCache(names)};
    KVCache kv = model.new_cache();
    for (ActivationCache* cache : {&r.prompt, &r.step}) {
        if (cache == &r.step && !decode) break;
        HookChain chain;
        chain.add(&set);
        chain.add(cache);
        ForwardOptions options;
        options.hooks = &chain;
        options.all_logits = true;
        options.segments = segments;
        if (cache == &r.prompt) r.logits = model.forward(kIds, kv, options);
        else r.logits = model.forward(std::vector<int32_t>{kNextId}, kv, options);
    }
    return r;
}

double max_abs_diff(const Tensor& a, const Tensor& b) {
    EXPECT_EQ(a.shape(), b.shape());
    double m = 0;
    for (int64_t i = 0; i < a.numel(); ++i) m = std::max(m, std::fabs(double(a.data<float>()[i]) - b.data<float>()[i]));
    return m;
}

std::string layer_points(int64_t layer) {
    return "blocks\\." + std::to_string(layer) + "\\.attn\\.(hook_pattern|hook_z|hook_v)";
}

// v of positions 0 .. S-1 of one layer, from the prompt's and the decode step's caches. (S, Hkv, D)
std::vector<float> values_so_far(const RunResult& r, int64_t layer, bool decode) {
    const std::string name = "blocks." + std::to_string(layer) + ".attn.hook_v";
    const Tensor& v = r.prompt.at(name);
    std::vector<float> out(v.data<float>(), v.data<float>() + v.numel());
    if (decode) {
        const Tensor& v1 = r.step.at(name);
        out.insert(out.end(), v1.data<float>(), v1.data<float>() + v1.numel());
    }
    return out;
}

// In one pass's cache: every row of the (edited) pattern sums to 1, and z = pattern·V in float64.
void expect_pattern_and_output_agree(const ActivationCache& cache, int64_t layer, const std::vector<float>& v,
                                     const std::string& who) {
    const Tensor& p = cache.at("blocks." + std::to_string(layer) + ".attn.hook_pattern");  // (H, T, S)
    const Tensor& z = cache.at("blocks." + std::to_string(layer) + ".attn.hook_z");        // (T, H, D)
    const int64_t H = p.size(0), T = p.size(1), S = p.size(2), D = z.size(2);
    const int64_t Hkv = static_cast<int64_t>(v.size()) / (S * D);
    double worst_sum = 0, worst_z = 0;
    for (int64_t h = 0; h < H; ++h)
        for (int64_t t = 0; t < T; ++t) {
            const float* row = p.data<float>() + (h * T + t) * S;
            double sum = 0;
            for (int64_t j = 0; j < S; ++j) sum += row[j];
            worst_sum = std::max(worst_sum, std::fabs(sum - 1.0));
            for (int64_t d = 0; d < D; ++d) {
                double want = 0;
                for (int64_t j = 0; j < S; ++j) want += double(row[j]) * v[(j * Hkv + h / (H / Hkv)) * D + d];
                worst_z = std::max(worst_z, std::fabs(want - z.data<float>()[(t * H + h) * D + d]));
            }
        }
    EXPECT_LT(worst_sum, 1e-6) << who << ": a row does not sum to 1";
    EXPECT_LT(worst_z, 1e-5) << who << ": z differs from pattern'·V";
}

// The invariants every post-softmax edit must keep, in layer `layer`, prefill and decode.
void check_post_softmax_edit(const Model& model, const std::string& json, int64_t layer,
                             const TokenSegments* segments = nullptr) {
    SCOPED_TRACE(json);
    const RunResult edited = run(model, json, layer_points(layer), segments, /*decode=*/true);
    expect_pattern_and_output_agree(edited.prompt, layer, values_so_far(edited, layer, false), "prefill");
    expect_pattern_and_output_agree(edited.step, layer, values_so_far(edited, layer, true), "decode");
    // The fast path (no pattern materialised) gives the same z.
    const std::string z_only = "blocks\\." + std::to_string(layer) + "\\.attn\\.hook_z";
    const RunResult fast = run(model, json, z_only, segments, /*decode=*/true);
    const std::string z_name = "blocks." + std::to_string(layer) + ".attn.hook_z";
    EXPECT_LT(max_abs_diff(fast.prompt.at(z_name), edited.prompt.at(z_name)), 1e-6);
    EXPECT_LT(max_abs_diff(fast.step.at(z_name), edited.step.at(z_name)), 1e-6);
    // The edit did something (so the checks above could fail).
    const RunResult plain = run(model, "", z_only, segments, /*decode=*/true);
    EXPECT_GT(max_abs_diff(plain.prompt.at(z_name), fast.prompt.at(z_name)), 1e-4) << "the edit changed nothing";
}

TEST(AttentionInterventions, PostSoftmaxEditsKeepRowsAndMatchPatternTimesV) {
    test::TempDir dir;
    auto model = test::random_model(dir);
    const TokenSegments segments = image_segments();
    check_post_softmax_edit(*model, R"([{"type": "act", "heads": "1:*", "threshold": 0.1}])", 1);
    check_post_softmax_edit(*model, R"([{"type": "act", "heads": "2:0,2:3", "threshold": 0.05, "beta": 0}])", 2);
    check_post_softmax_edit(*model, R"([{"type": "softpag", "heads": "0:1,0:2", "alpha": 0.3}])", 0);
    check_post_softmax_edit(*model, R"([{"type": "softpag", "heads": "2:*", "alpha": 1}])", 2);
    check_post_softmax_edit(*model, R"([{"type": "locore", "heads": "1:0-2", "gamma": 0.8, "window": 3}])", 1);
    check_post_softmax_edit(*model, R"([{"type": "locore", "heads": "2:*"}])", 2);
    check_post_softmax_edit(
        *model, R"([{"type": "var", "heads": "1:*", "segment": "image", "tau": 2.0, "rho": 1, "s_min": 0}])", 1,
        &segments);
}

// A trained model (tinylm: 6 layers, 8 heads, 4 kv heads), whose heads have real sinks: ACT
// with its defaults finds some, VAR moves their mass onto a segment; the invariants hold.
TEST(AttentionInterventions, ActAndVarOnATrainedModel) {
    auto model = Model::load((test::fixtures_dir() / "models" / "tinylm").string());
    const TokenSegments segments = image_segments();
    check_post_softmax_edit(*model, R"([{"type": "act", "heads": "1-5:*"}])", 3);
    check_post_softmax_edit(*model, R"([{"type": "var", "heads": "3:*", "segment": "image", "tau": 4, "s_min": 0.05}])", 3,
                            &segments);
}

TEST(AttentionInterventions, ActWithBetaOneAndSoftPagWithAlphaZeroAreTheIdentity) {
    test::TempDir dir;
    auto model = test::random_model(dir);
    const RunResult plain = run(*model, "", "x^", nullptr, true);
    for (const char* json : {R"([{"type": "act", "heads": "0-2:*", "threshold": 0.01, "beta": 1}])",
                             R"([{"type": "softpag", "heads": "0-2:*", "alpha": 0}])"}) {
        const RunResult same = run(*model, json, "x^", nullptr, true);
        EXPECT_EQ(max_abs_diff(plain.logits, same.logits), 0.0) << json;
    }
    // And the same interventions with a real strength do change the logits.
    for (const char* json : {R"([{"type": "act", "heads": "0-2:*", "threshold": 0.01, "beta": 0.4}])",
                             R"([{"type": "softpag", "heads": "0-2:*", "alpha": 0.5}])"}) {
        EXPECT_GT(max_abs_diff(plain.logits, run(*model, json, "x^", nullptr, true).logits), 1e-4) << json;
    }
}

// papers-analysis §7's small check: a causal attention (T = 16) with a planted sink at key 5.
// The edit runs on a hand-built layer (the kernel for z, lse, pattern and column sums).
TEST(AttentionInterventions, ActOnAPlantedSinkFollowsTheRule) {
    test::TempDir dir;
    auto model = test::random_model(dir);  // 4 heads, 2 kv heads, head dim 8
    const int64_t T = 16, S = 16, H = 4, Hkv = 2, D = 8, target = 1;  // head 1 reads kv head 0
    std::mt19937 rng(5);
    std::normal_distribution<float> noise(0.0f, 0.3f);
    std::vector<float> q(T * H * D), k(S * Hkv * D), v(S * Hkv * D);  // (T, H, D), (S, Hkv, D) x2
    for (float* x : {q.data(), k.data(), v.data()})
        for (int64_t i = 0; i < T * (x == q.data() ? H : Hkv) * D; ++i) x[i] = noise(rng);
    for (int64_t t = 0; t < T; ++t) {  // every query of the target head points along e0 and e1
        q[(t * H + target) * D + 0] = 4.0f;
        q[(t * H + target) * D + 1] = 3.0f;
    }
    std::fill_n(&k[0], D, 0.0f);  // key 0 (BOS-like): along e1, score ~3
    k[1] = 2.8f;
    std::fill_n(&k[5 * Hkv * D], D, 0.0f);  // key 5, the planted sink: along e0, score ~5
    k[5 * Hkv * D] = 3.5f;

    const AttentionSpec causal = AttentionSpec::parse("causal");
    const AttentionInputs in = AttentionInputs::contiguous(DType::F32, q.data(), k.data(), v.data(), 1, T, S, H, Hkv, D, D);
    std::vector<float> z(T * H * D), lse(T * H), pattern(H * T * S), column_sum(H * S);
    AttentionOutputs out = AttentionOutputs::contiguous(z.data(), lse.data(), T, H, D);
    out.pattern = pattern.data();
    AttentionStats stats;
    stats.column_sum = column_sum.data();
    out.stats = &stats;
    attention(causal, in, out);
    const std::vector<float> before(pattern), z_before(z);

    // Independent: the sink set of §7 from the pattern, in float64.
    std::vector<int64_t> sinks;
    for (int64_t j = 0; j < S; ++j) {
        double col = 0;
        for (int64_t i = 0; i < T; ++i) col += before[(target * T + i) * S + j];
        if (col / double(T - j) > 0.1) sinks.push_back(j);
    }
    ASSERT_EQ(sinks, (std::vector<int64_t>{0, 5})) << "the planted problem is not what the test expects";

    InterventionSet act = InterventionSet::from_json(R"([{"type": "act", "heads": "0:1"}])", {model.get(), nullptr});
    LayerAttentionStats layer_stats;
    layer_stats.T = T;
    layer_stats.S = S;
    layer_stats.H = H;
    layer_stats.column_sum = Tensor::zeros({H, S});
    std::copy(column_sum.begin(), column_sum.end(), layer_stats.column_sum.data<float>());
    act.on_attention_stats(layer_stats);

    std::vector<AttentionSpec> specs(H, causal);
    AttentionEditContext ctx;
    ctx.T = T;
    ctx.S = S;
    ctx.H = H;
    ctx.Hkv = Hkv;
    ctx.D = D;
    ctx.q = q.data();
    ctx.k = k.data();
    ctx.v = v.data();
    ctx.z = z.data();
    ctx.lse = lse.data();
    ctx.pattern = pattern.data();
    ctx.head_specs = &specs;
    ctx.run = [&](const AttentionSpec& spec, int64_t h0, int64_t h1, const int32_t* segments, float* o, float* o_lse) {
        AttentionInputs again = in;
        again.head_begin = h0;
        again.head_end = h1;
        again.segments = segments;
        attention(spec, again, AttentionOutputs::contiguous(o, o_lse, T, H, D));
    };
    ASSERT_TRUE(act.edits_attention(0));
    act.edit_attention(ctx);

    const double beta = 0.4;
    for (int64_t i = 0; i < T; ++i) {
        const float* a = &before[(target * T + i) * S];
        const float* b = &pattern[(target * T + i) * S];
        double sum = 0;
        for (int64_t j = 0; j < S; ++j) sum += b[j];
        EXPECT_NEAR(sum, 1.0, 1e-6) << "row " << i;
        if (i == 0) {
            EXPECT_EQ(b[0], 1.0f);  // A'[0,0] = 1
            continue;
        }
        // The planted column is multiplied by β; every other key (column 0, the kept first
        // sink, included) grows by the same factor 1 + (1-β)·A[i,5] / (1 - A[i,5]).
        EXPECT_NEAR(b[5], beta * a[5], 1e-7) << "row " << i;
        const double grow = 1.0 + (1.0 - beta) * a[5] / (1.0 - a[5]);
        for (int64_t j = 0; j < S; ++j) {
            if (j != 5) {
                EXPECT_NEAR(b[j], a[j] * grow, 1e-6) << "row " << i << " key " << j;
            }
        }
        if (i >= 5) {
            EXPECT_GT(a[5], 0.5) << "the planted sink dominates row " << i;
        }
        EXPECT_GE(b[0], a[0]);  // the first sink is never calibrated down
    }
    // z = pattern'·V for the target head; the other heads are untouched.
    for (int64_t t = 0; t < T; ++t)
        for (int64_t h = 0; h < H; ++h)
            for (int64_t d = 0; d < D; ++d) {
                const float got = z[(t * H + h) * D + d];
                if (h != target) {
                    ASSERT_EQ(got, z_before[(t * H + h) * D + d]);
                    continue;
                }
                double want = 0;
                for (int64_t j = 0; j < S; ++j) want += double(pattern[(h * T + t) * S + j]) * v[(j * Hkv + h / 2) * D + d];
                ASSERT_NEAR(got, want, 1e-5) << "t " << t << " d " << d;
            }
}

// VAR, checked against its definition from the plain run's pattern and an independent sink
// screen of the cached residual: the edited rows are the image-centric rows after the image,
// the sinks keep p of their mass, and the mass they lose is exactly what I\sink gains.
TEST(AttentionInterventions, VarKeepsEachRowsBudget) {
    test::TempDir dir;
    auto model = test::random_model(dir);
    const TokenSegments segments = image_segments();
    const std::string names = "blocks\\.2\\.(hook_resid_pre|attn\\.hook_pattern)";
    const RunResult plain = run(*model, "", names, &segments);
    const Tensor& x = plain.prompt.at("blocks.2.hook_resid_pre");  // (T, C)
    const int64_t T = x.size(0), C = x.size(1);
    // tau: the median of the tokens' peak |x̃|, so about half the tokens are sinks.
    std::vector<double> peak(T);
    for (int64_t t = 0; t < T; ++t) {
        double ss = 0, m = 0;
        for (int64_t c = 0; c < C; ++c) {
            const double e = x.data<float>()[t * C + c];
            ss += e * e;
            m = std::max(m, std::fabs(e));
        }
        peak[t] = m / std::sqrt(ss / double(C) + 1e-6);
    }
    std::vector<double> sorted(peak);
    std::sort(sorted.begin(), sorted.end());
    // Midway between two tokens' values, written with every digit: the intervention's tau is this one.
    char tau_text[64];
    std::snprintf(tau_text, sizeof tau_text, "%.17g", 0.5 * (sorted[T / 2 - 1] + sorted[T / 2]));
    const double tau = std::stod(tau_text);
    std::vector<bool> sink(T);
    for (int64_t t = 0; t < T; ++t) sink[t] = peak[t] > tau;
    const double p = 0.6, rho = 0.7, s_min = 0.05;
    const std::string json = R"([{"type": "var", "heads": "2:*", "segment": "image", "p": 0.6, "rho": 0.7, "s_min": 0.05, "tau": )" +
                             std::string(tau_text) + "}]";
    const RunResult edited = run(*model, json, names, &segments);
    const Tensor& a0 = plain.prompt.at("blocks.2.attn.hook_pattern");  // (H, T, T)
    const Tensor& a1 = edited.prompt.at("blocks.2.attn.hook_pattern");
    const int64_t H = a0.size(0);
    int edited_rows = 0;
    for (int64_t h = 0; h < H; ++h)
        for (int64_t i = 0; i < T; ++i) {
            const float* a = a0.data<float>() + (h * T + i) * T;
            const float* b = a1.data<float>() + (h * T + i) * T;
            double image_sinks = 0, image = 0, sinks = 0, moved_out = 0, moved_in = 0, image_rest = 0;
            for (int64_t j = 0; j < T; ++j) {
                const bool in_image = j >= 6 && j < 18;
                if (in_image) image += a[j];
                if (in_image && sink[j]) image_sinks += a[j];
                if (in_image && !sink[j]) image_rest += a[j];
                if (sink[j]) sinks += a[j];
                if (sink[j]) moved_out += double(a[j]) - b[j];
                if (in_image && !sink[j]) moved_in += double(b[j]) - a[j];
            }
            const bool selected = i >= 18 && image >= s_min && image_sinks / image <= rho && image_rest > 1e-6;
            if (!selected) {
                for (int64_t j = 0; j < T; ++j) ASSERT_EQ(a[j], b[j]) << "head " << h << " row " << i << " key " << j;
                continue;
            }
            ++edited_rows;
            EXPECT_NEAR(moved_out, (1 - p) * sinks, 1e-6) << "head " << h << " row " << i;
            EXPECT_NEAR(moved_in, moved_out, 1e-6) << "head " << h << " row " << i;  // the budget is kept
            for (int64_t j = 0; j < T; ++j) {
                if (sink[j]) {
                    EXPECT_NEAR(b[j], p * a[j], 1e-7);
                } else if (!(j >= 6 && j < 18)) {
                    EXPECT_EQ(b[j], a[j]);  // text keys untouched
                } else {
                    EXPECT_NEAR(b[j], a[j] * (1 + (1 - p) * sinks / image_rest), 1e-6);  // proportional
                }
            }
        }
    EXPECT_GT(edited_rows, 0);
}

// float64 softmax of one head's causal scores, each modified by `modify(s, j)`. (T, T)
template <typename Modify>
std::vector<double> softmax_of_scores(const ActivationCache& cache, int64_t layer, int64_t h, Modify modify) {
    const Tensor& q = cache.at("blocks." + std::to_string(layer) + ".attn.hook_rot_q");  // (T, H, D)
    const Tensor& k = cache.at("blocks." + std::to_string(layer) + ".attn.hook_rot_k");  // (T, Hkv, D)
    const int64_t T = q.size(0), H = q.size(1), D = q.size(2), Hkv = k.size(1);
    std::vector<double> p(static_cast<size_t>(T * T), 0.0);
    for (int64_t i = 0; i < T; ++i) {
        std::vector<double> s(i + 1);
        double top = -INFINITY;
        for (int64_t j = 0; j <= i; ++j) {
            double dot = 0;
            for (int64_t d = 0; d < D; ++d)
                dot += double(q.data<float>()[(i * H + h) * D + d]) * k.data<float>()[(j * Hkv + h / (H / Hkv)) * D + d];
            s[j] = modify(dot / std::sqrt(double(D)), j);
            top = std::max(top, s[j]);
        }
        double sum = 0;
        for (int64_t j = 0; j <= i; ++j) sum += std::exp(s[j] - top);
        for (int64_t j = 0; j <= i; ++j) p[i * T + j] = std::exp(s[j] - top) / sum;
    }
    return p;
}

double max_diff_to_pattern(const ActivationCache& cache, int64_t layer, int64_t h, const std::vector<double>& want) {
    const Tensor& p = cache.at("blocks." + std::to_string(layer) + ".attn.hook_pattern");  // (H, T, T)
    const int64_t T = p.size(1);
    double m = 0;
    for (int64_t i = 0; i < T * T; ++i) m = std::max(m, std::fabs(want[i] - p.data<float>()[h * T * T + i]));
    return m;
}

TEST(AttentionInterventions, TemperatureAndBoostAreTheSoftmaxOfTheEditedScores) {
    test::TempDir dir;
    auto model = test::random_model(dir);
    const TokenSegments segments = image_segments();
    const std::string names = "blocks\\.1\\.attn\\.(hook_rot_q|hook_rot_k|hook_pattern)";
    const RunResult hot = run(*model, R"([{"type": "temperature", "heads": "1:2", "t": 0.5}])", names);
    EXPECT_LT(max_diff_to_pattern(hot.prompt, 1, 2, softmax_of_scores(hot.prompt, 1, 2, [](double s, int64_t) { return s / 0.5; })),
              1e-5);
    EXPECT_LT(max_diff_to_pattern(hot.prompt, 1, 0, softmax_of_scores(hot.prompt, 1, 0, [](double s, int64_t) { return s; })),
              1e-5);  // another head is untouched
    auto in_image = [](int64_t j) { return j >= 6 && j < 18; };
    const RunResult boosted =
        run(*model, R"([{"type": "boost", "heads": "1:1-2", "segment": "image", "alpha": 0.7}])", names, &segments);
    for (int64_t h : {1, 2})
        EXPECT_LT(max_diff_to_pattern(boosted.prompt, 1, h, softmax_of_scores(boosted.prompt, 1, h, [&](double s, int64_t j) {
                                          return in_image(j) ? s + 0.7 * std::fabs(s) : s;
                                      })),
                  1e-5);
    // The boost raises the segment's mass in every row that sees it and something else.
    const RunResult plain = run(*model, "", names, &segments);
    const Tensor& before = plain.prompt.at("blocks.1.attn.hook_pattern");  // (H, T, T)
    const Tensor& after = boosted.prompt.at("blocks.1.attn.hook_pattern");
    const int64_t T = before.size(1);
    for (int64_t h : {1, 2})
        for (int64_t i = 6; i < T; ++i) {
            double m0 = 0, m1 = 0;
            for (int64_t j = 6; j < std::min<int64_t>(i + 1, 18); ++j) {
                m0 += before.data<float>()[(h * T + i) * T + j];
                m1 += after.data<float>()[(h * T + i) * T + j];
            }
            EXPECT_GT(m1, m0) << "head " << h << " row " << i;
        }
}

TEST(AttentionInterventions, TemperatureOneAndBoostZeroAreTheIdentity) {
    test::TempDir dir;
    auto model = test::random_model(dir);
    const TokenSegments segments = image_segments();
    const RunResult plain = run(*model, "", "x^", &segments, true);
    for (const char* json : {R"([{"type": "temperature", "heads": "0-2:*", "t": 1}])",
                             R"([{"type": "boost", "heads": "0-2:*", "segment": "image", "alpha": 0}])"})
        EXPECT_EQ(max_abs_diff(plain.logits, run(*model, json, "x^", &segments, true).logits), 0.0) << json;
}

// CCA's ids, computed here from the definition: a 3x4 grid at 6..17 has rings 0 and 1, so the
// text after it moves back by 12 - 2 = 10.
std::vector<int64_t> concentric_ids(int64_t begin, int64_t n) {
    std::vector<int64_t> ids;
    for (int64_t s = begin; s < begin + n; ++s) {
        if (s < 6) ids.push_back(s);
        else if (s >= 18) ids.push_back(s - 10);
        else {
            const int64_t i = (s - 6) / 4, j = (s - 6) % 4;
            ids.push_back(6 + std::min({i, j, 2 - i, 3 - j}));
        }
    }
    return ids;
}

TEST(AttentionInterventions, CcaEqualsExplicitPositionIds) {
    test::TempDir dir;
    auto model = test::random_model(dir);
    const TokenSegments segments = image_segments();
    const RunResult cca = run(*model, R"([{"type": "cca", "segment": "image", "grid": [3, 4]}])", "x^", &segments, true);
    // The same prompt and decode step with the ids given explicitly.
    KVCache kv = model->new_cache();
    ForwardOptions options;
    options.all_logits = true;
    const std::vector<int64_t> prompt_ids = concentric_ids(0, static_cast<int64_t>(kIds.size()));
    options.position_ids = &prompt_ids;
    const Tensor prompt_logits = model->forward(kIds, kv, options);
    const std::vector<int64_t> step_ids = concentric_ids(static_cast<int64_t>(kIds.size()), 1);
    options.position_ids = &step_ids;
    const Tensor step_logits = model->forward(std::vector<int32_t>{kNextId}, kv, options);
    EXPECT_EQ(max_abs_diff(cca.logits, step_logits), 0.0);
    const RunResult cca_prompt = run(*model, R"([{"type": "cca", "segment": "image", "grid": [3, 4]}])", "x^", &segments);
    EXPECT_EQ(max_abs_diff(cca_prompt.logits, prompt_logits), 0.0);
    EXPECT_GT(max_abs_diff(cca_prompt.logits, run(*model, "", "x^", &segments).logits), 1e-4);  // it did move them
}

TEST(AttentionInterventions, BadSpecsAreClearErrors) {
    test::TempDir dir;
    auto model = test::random_model(dir);
    const TokenSegments segments = image_segments();
    auto message = [&](const std::string& json, const TokenSegments* segs) {
        try {
            InterventionSet::from_json(json, {model.get(), segs}, "spec.json");
        } catch (const Error& e) {
            return std::string(e.what());
        }
        return std::string("no error");
    };
    auto expect_error = [&](const std::string& json, const std::string& part, const TokenSegments* segs = nullptr) {
        EXPECT_NE(message(json, segs).find(part), std::string::npos) << json << " -> " << message(json, segs);
    };
    expect_error(R"([{"type": "act", "heads": "1:0", "thresold": 0.1}])", "[spec.json[0] (act)] unknown field \"thresold\"");
    expect_error(R"([{"type": "act", "heads": "1:0", "beta": 2}])", "\"beta\" must be in [0, 1]");
    expect_error(R"([{"type": "softpag", "heads": "1:0"}])", "missing \"alpha\"");
    expect_error(R"([{"type": "softpag", "heads": "1:0", "alpha": -0.1}])", "\"alpha\" must be in [0, 1]");
    expect_error(R"([{"type": "locore", "heads": "1:0", "window": 0}])", "\"window\" must be an integer >= 1");
    expect_error(R"([{"type": "locore", "heads": "1:0", "gamma": -1}])", "\"gamma\" must be >= 0");
    expect_error(R"([{"type": "temperature", "heads": "1:0", "t": 0}])", "\"t\" must be > 0");
    expect_error(R"([{"type": "boost", "heads": "1:0", "segment": "image", "alpha": 1}])", "segment 'image' is not defined");
    expect_error(R"([{"type": "boost", "heads": "1:0", "segment": "text", "alpha": 1}])", "text", &segments);
    expect_error(R"([{"type": "var", "heads": "9:0", "segment": "image"}])", "layer 9 outside", &segments);
    expect_error(R"([{"type": "var", "heads": "1:0", "segment": "image", "dims": [32]}])", "not a dimension", &segments);
    expect_error(R"([{"type": "cca", "segment": "image", "grid": [3, 3]}])", "has 12 tokens, the grid 3x3 needs 9", &segments);
    expect_error(R"([{"type": "cca", "segment": "image", "grid": [3]}])", "\"grid\" must be [rows, cols]", &segments);
    // Runtime: VAR in a forward pass without segments, ACT decoding without its prefill.
    InterventionSet var = InterventionSet::from_json(R"([{"type": "var", "heads": "1:0", "segment": "image"}])",
                                                     {model.get(), &segments});
    try {
        KVCache kv = model->new_cache();
        ForwardOptions options;
        options.hooks = &var;
        model->forward(kIds, kv, options);
        ADD_FAILURE() << "expected an error";
    } catch (const InvalidArgument& e) {
        EXPECT_NE(std::string(e.what()).find("needs the token segments of the forward pass"), std::string::npos) << e.what();
    }
    InterventionSet act = InterventionSet::from_json(R"([{"type": "act", "heads": "1:0"}])", {model.get(), nullptr});
    KVCache kv = model->new_cache();
    model->forward(kIds, kv);  // a prefill without the intervention
    ForwardOptions options;
    options.hooks = &act;
    EXPECT_THROW(model->forward(std::vector<int32_t>{kNextId}, kv, options), InvalidArgument);
}

TEST(AttentionInterventions, DescribeIsOneLine) {
    test::TempDir dir;
    auto model = test::random_model(dir);
    const TokenSegments segments = image_segments();
    InterventionSet set = InterventionSet::from_json(
        R"([{"type": "act", "heads": "1:0"}, {"type": "var", "heads": "1:*", "segment": "image"},
            {"type": "softpag", "heads": "0:1", "alpha": 0.5}, {"type": "locore", "heads": "2:0"},
            {"type": "temperature", "heads": "0:0", "t": 2}, {"type": "boost", "heads": "0:0", "segment": "image", "alpha": 0.7},
            {"type": "cca", "segment": "image", "grid": [3, 4]}])",
        {model.get(), &segments});
    const std::vector<std::string> lines = set.describe();
    ASSERT_EQ(lines.size(), 7u);
    EXPECT_EQ(lines[0], "act 1:0 threshold 0.1 beta 0.4");
    EXPECT_EQ(lines[2], "softpag 0:1 alpha 0.5");
    EXPECT_EQ(lines[6], "cca segment image grid 3x4 at 6");
    for (const std::string& line : lines) EXPECT_EQ(line.find('\n'), std::string::npos);
}

TEST(AttentionInterventions, BenchRunsWithInterventions) {
    test::TempDir dir;
    auto model = test::random_model(dir);
    const std::filesystem::path spec = dir / "spec.json";
    test::write_file(spec, R"({"interventions": [{"type": "act", "heads": "1:*"},
        {"type": "var", "heads": "1:*", "segment": "image", "tau": 2},
        {"type": "boost", "heads": "0:*", "segment": "image", "alpha": 0.5}]})");
    const test::CommandResult ok = test::run_cli({"bench", "-m", model->directory(), "-p", "32", "-n", "2", "-r", "1",
                                                  "--segment", "image=4:20", "--intervene", spec.string(), "--json"});
    EXPECT_EQ(ok.exit_code, 0) << ok.err;
    EXPECT_NE(ok.out.find("+intervene"), std::string::npos) << ok.out;
    const test::CommandResult bad = test::run_cli({"bench", "-m", model->directory(), "-p", "32", "-n", "0", "-r", "1",
                                                   "--intervene", spec.string()});
    EXPECT_EQ(bad.exit_code, 1);
    EXPECT_NE(bad.err.find("attnlab: error: ["), std::string::npos) << bad.err;
}

}  // namespace
}  // namespace attnlab
