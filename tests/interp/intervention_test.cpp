// Interventions: the JSON spec, head targets, and the head-ablation modes against independent
// computations on random models (zero ablation removes exactly the head's term of the residual
// update; scale 1 is the identity; uniform equals a zeroed query; bos writes v_0).
#include "test_support.h"

#include <attnlab/error.h>
#include <attnlab/intervention.h>
#include <attnlab/safetensors.h>

#include <gtest/gtest.h>

#include <cmath>

namespace attnlab {
namespace {

const std::vector<int32_t> kIds = {0, 5, 17, 3, 42, 9, 5, 17, 3, 61, 2};

struct RunResult {
    Tensor logits;
    ActivationCache cache;
};

// Runs ids with an intervention set (JSON; empty = none) and a cache of `names`.
RunResult run(const Model& model, const std::string& json, const std::string& names_regex) {
    InterventionEnv env{&model, nullptr};
    InterventionSet set = json.empty() ? InterventionSet() : InterventionSet::from_json(json, env);
    RunResult r{Tensor(), ActivationCache(names_regex)};
    HookChain chain;
    chain.add(&set);
    chain.add(&r.cache);
    KVCache kv = model.new_cache();
    ForwardOptions options;
    options.hooks = &chain;
    options.all_logits = true;
    r.logits = model.forward(kIds, kv, options);
    return r;
}

double max_abs_diff(const Tensor& a, const Tensor& b) {
    EXPECT_EQ(a.shape(), b.shape());
    double m = 0;
    for (int64_t i = 0; i < a.numel(); ++i) m = std::max(m, std::fabs(double(a.data<float>()[i]) - b.data<float>()[i]));
    return m;
}

TEST(Interventions, HeadTargets) {
    const auto heads = parse_head_targets("1:0,0:*,2:1-2", 3, 4, "test");
    ASSERT_EQ(heads.size(), 7u);
    EXPECT_EQ(heads[0], (HeadRef{1, 0}));
    EXPECT_EQ(heads[1], (HeadRef{0, 0}));
    EXPECT_EQ(heads[4], (HeadRef{0, 3}));
    EXPECT_EQ(heads[6], (HeadRef{2, 2}));
    EXPECT_THROW(parse_head_targets("3:0", 3, 4, "test"), InvalidArgument);
    EXPECT_THROW(parse_head_targets("1:4", 3, 4, "test"), InvalidArgument);
    EXPECT_THROW(parse_head_targets("1", 3, 4, "test"), InvalidArgument);
    EXPECT_THROW(parse_head_targets("1:2-1", 3, 4, "test"), InvalidArgument);
    EXPECT_THROW(parse_head_targets("a:1", 3, 4, "test"), InvalidArgument);
}

TEST(Interventions, SpecErrorsNameTheItem) {
    test::TempDir dir;
    auto model = test::random_model(dir);
    InterventionEnv env{model.get(), nullptr};
    auto message = [&](const std::string& json) {
        try {
            InterventionSet::from_json(json, env, "spec.json");
        } catch (const Error& e) {
            return std::string(e.what());
        }
        return std::string("no error");
    };
    EXPECT_NE(message("{").find("[spec.json] not JSON"), std::string::npos);
    EXPECT_NE(message("{\"x\": 1}").find("expected"), std::string::npos);
    EXPECT_NE(message("[{\"type\": \"nope\"}]").find("unknown intervention type 'nope'"), std::string::npos);
    EXPECT_NE(message("[{\"type\": \"ablate\", \"mode\": \"zero\", \"heads\": \"0:0\", \"hedas\": 1}]")
                  .find("[spec.json[0] (ablate)] unknown field \"hedas\""),
              std::string::npos);
    EXPECT_NE(message("[{\"type\": \"ablate\", \"mode\": \"half\", \"heads\": \"0:0\"}]").find("unknown mode 'half'"),
              std::string::npos);
    EXPECT_NE(message("[{\"type\": \"ablate\", \"mode\": \"zero\", \"heads\": \"9:0\"}]").find("layer 9 outside"),
              std::string::npos);
    EXPECT_NE(message("[{\"type\": \"ablate\", \"mode\": \"scale\", \"heads\": \"0:0\"}]").find("missing \"factor\""),
              std::string::npos);
    EXPECT_NE(message("[{\"type\": \"ablate\", \"mode\": \"mean\", \"heads\": \"0:0\"}]").find("needs \"reference\""),
              std::string::npos);
}

// Zero-ablating head h of layer l changes layer l's attention output by exactly minus the head's
// own term z_h · W_O[:, h]ᵀ (hook_result), and nothing before it.
TEST(Interventions, ZeroAblationRemovesTheHeadsResidualTerm) {
    test::TempDir dir;
    auto model = test::random_model(dir);
    const std::string names = "blocks\\.1\\.(attn\\.hook_result|hook_attn_out|hook_resid_pre)";
    RunResult clean = run(*model, "", names);
    RunResult ablated = run(*model, R"([{"type": "ablate", "mode": "zero", "heads": "1:2"}])", names);
    EXPECT_EQ(max_abs_diff(clean.cache.at("blocks.1.hook_resid_pre"), ablated.cache.at("blocks.1.hook_resid_pre")), 0.0);
    const Tensor& result = clean.cache.at("blocks.1.attn.hook_result");  // (T, H, C)
    const Tensor& out_clean = clean.cache.at("blocks.1.hook_attn_out");  // (T, C)
    const Tensor& out_ablated = ablated.cache.at("blocks.1.hook_attn_out");
    const int64_t T = result.size(0), H = result.size(1), C = result.size(2);
    double worst = 0, moved = 0;
    for (int64_t t = 0; t < T; ++t)
        for (int64_t c = 0; c < C; ++c) {
            const double want = double(out_clean.data<float>()[t * C + c]) - result.data<float>()[(t * H + 2) * C + c];
            worst = std::max(worst, std::fabs(want - out_ablated.data<float>()[t * C + c]));
            moved = std::max(moved, std::fabs(double(result.data<float>()[(t * H + 2) * C + c])));
        }
    EXPECT_GT(moved, 1e-3);  // the head did contribute
    EXPECT_LT(worst, 1e-5);
    // The head's hook_result is zero after the ablation.
    RunResult again = run(*model, R"([{"type": "ablate", "mode": "zero", "heads": "1:2"}])", "blocks\\.1\\.attn\\.hook_result");
    const Tensor& r = again.cache.at("blocks.1.attn.hook_result");
    for (int64_t t = 0; t < T; ++t)
        for (int64_t c = 0; c < C; ++c) ASSERT_EQ(r.data<float>()[(t * H + 2) * C + c], 0.0f);
}

TEST(Interventions, ScaleOneIsTheIdentityAndScaleZeroIsZeroAblation) {
    test::TempDir dir;
    auto model = test::random_model(dir);
    RunResult clean = run(*model, "", "x^");
    RunResult one = run(*model, R"([{"type": "ablate", "mode": "scale", "factor": 1, "heads": "0:*,2:1"}])", "x^");
    EXPECT_EQ(max_abs_diff(clean.logits, one.logits), 0.0);
    RunResult zero = run(*model, R"([{"type": "ablate", "mode": "zero", "heads": "2:1"}])", "x^");
    RunResult scale0 = run(*model, R"([{"type": "ablate", "mode": "scale", "factor": 0, "heads": "2:1"}])", "x^");
    EXPECT_EQ(max_abs_diff(zero.logits, scale0.logits), 0.0);
    EXPECT_GT(max_abs_diff(clean.logits, zero.logits), 1e-4);
}

TEST(Interventions, UniformIsAZeroedQueryAndItsPatternIsUniform) {
    test::TempDir dir;
    auto model = test::random_model(dir);
    RunResult uniform = run(*model, R"([{"type": "ablate", "mode": "uniform", "heads": "1:3"}])", "blocks\\.1\\.attn\\.hook_pattern");
    QueryZeroHook qz({{1, 3}}, 3, 4, "test");
    KVCache kv = model->new_cache();
    ForwardOptions options;
    options.hooks = &qz;
    options.all_logits = true;
    EXPECT_EQ(max_abs_diff(uniform.logits, model->forward(kIds, kv, options)), 0.0);
    const Tensor& p = uniform.cache.at("blocks.1.attn.hook_pattern");  // (H, T, T)
    const int64_t T = p.size(1);
    for (int64_t i = 0; i < T; ++i)
        for (int64_t j = 0; j <= i; ++j) ASSERT_NEAR(p.data<float>()[(3 * T + i) * T + j], 1.0 / double(i + 1), 1e-6);
}

TEST(Interventions, BosWritesTheFirstValueAndAOneHotPattern) {
    test::TempDir dir;
    auto model = test::random_model(dir);
    const std::string names = "blocks\\.2\\.attn\\.(hook_z|hook_v|hook_pattern)";
    RunResult bos = run(*model, R"([{"type": "ablate", "mode": "bos", "heads": "2:0,2:3"}])", names);
    const Tensor& z = bos.cache.at("blocks.2.attn.hook_z");        // (T, H, D)
    const Tensor& v = bos.cache.at("blocks.2.attn.hook_v");        // (T, Hkv, D)
    const Tensor& p = bos.cache.at("blocks.2.attn.hook_pattern");  // (H, T, T)
    const int64_t T = z.size(0), H = z.size(1), D = z.size(2), Hkv = v.size(1);
    for (int64_t h : {0, 3})
        for (int64_t t = 0; t < T; ++t) {
            for (int64_t d = 0; d < D; ++d)
                ASSERT_EQ(z.data<float>()[(t * H + h) * D + d], v.data<float>()[(h / (H / Hkv)) * D + d]);
            for (int64_t j = 0; j < T; ++j) ASSERT_EQ(p.data<float>()[(h * T + t) * T + j], j == 0 ? 1.0f : 0.0f);
        }
}

TEST(Interventions, MeanAblationWritesTheReferenceMean) {
    test::TempDir dir;
    auto model = test::random_model(dir);
    // The reference is the same input: the head's z becomes its mean over these positions.
    RunResult clean = run(*model, "", "blocks\\.1\\.attn\\.hook_z");
    const std::filesystem::path ref = dir / "ref.safetensors";
    {
        Tensor ids = Tensor::empty({1, static_cast<int64_t>(kIds.size())}, DType::I64);
        for (size_t i = 0; i < kIds.size(); ++i) ids.data<int64_t>()[i] = kIds[i];
        save_safetensors(ref.string(), {{"input_ids", ids}});
    }
    RunResult mean = run(*model,
                   R"([{"type": "ablate", "mode": "mean", "heads": "1:1", "reference_input": ")" + ref.string() + R"("}])",
                   "blocks\\.1\\.attn\\.hook_z");
    const Tensor& zc = clean.cache.at("blocks.1.attn.hook_z");  // (T, H, D)
    const Tensor& zm = mean.cache.at("blocks.1.attn.hook_z");
    const int64_t T = zc.size(0), H = zc.size(1), D = zc.size(2);
    for (int64_t d = 0; d < D; ++d) {
        double want = 0;
        for (int64_t t = 0; t < T; ++t) want += zc.data<float>()[(t * H + 1) * D + d];
        want /= double(T);
        for (int64_t t = 0; t < T; ++t) ASSERT_NEAR(zm.data<float>()[(t * H + 1) * D + d], want, 1e-6);
    }
    // Other heads untouched.
    for (int64_t t = 0; t < T; ++t)
        for (int64_t d = 0; d < D; ++d) ASSERT_EQ(zm.data<float>()[(t * H + 0) * D + d], zc.data<float>()[(t * H + 0) * D + d]);
}

// Dropping tokens 3 and 4 before layer 1 equals masking those keys in layers 1.. (spec +
// segment(id=1) with every other position labelled 1): the kept rows' activations and logits
// agree in prefill and in the decode steps that follow on the compacted cache.
TEST(Interventions, TokenDroppingEqualsMaskingInLaterLayers) {
    test::TempDir dir;
    auto dropping = test::random_model(dir, {}, "a");
    auto masking = test::random_model(dir, {}, "b");  // same seed: the same weights
    masking->set_attention({{1, -1, 0, -1, "causal+segment(id=1)"}});
    const TokenSegments kept = TokenSegments::parse({"kept=0:3", "kept=5:"});
    InterventionEnv env{dropping.get(), nullptr};
    InterventionSet drop = InterventionSet::from_json(R"([{"type": "drop_tokens", "layer": 1, "positions": "3:5"}])", env);
    ActivationCache cache_a("blocks\\.2\\.hook_resid_post"), cache_b("blocks\\.2\\.hook_resid_post");
    HookChain hooks_a;
    hooks_a.add(&drop);
    hooks_a.add(&cache_a);
    KVCache kv_a = dropping->new_cache(), kv_b = masking->new_cache();
    ForwardOptions fa, fb;
    fa.hooks = &hooks_a;
    fa.all_logits = fb.all_logits = true;
    fb.hooks = &cache_b;
    fb.segments = &kept;
    const Tensor la = dropping->forward(kIds, kv_a, fa);  // (T - 2, V)
    const Tensor lb = masking->forward(kIds, kv_b, fb);   // (T, V)
    const int64_t T = static_cast<int64_t>(kIds.size()), V = lb.size(1);
    ASSERT_EQ(la.shape(), (Shape{T - 2, V}));
    const Tensor& ra = cache_a.at("blocks.2.hook_resid_post");  // (T - 2, C)
    const Tensor& rb = cache_b.at("blocks.2.hook_resid_post");  // (T, C)
    const int64_t C = rb.size(1);
    std::vector<int64_t> kept_rows;
    for (int64_t t = 0; t < T; ++t)
        if (t != 3 && t != 4) kept_rows.push_back(t);
    double worst = 0;
    for (size_t r = 0; r < kept_rows.size(); ++r) {
        for (int64_t c = 0; c < C; ++c)
            worst = std::max(worst, std::fabs(double(ra.data<float>()[r * C + c]) - rb.data<float>()[kept_rows[r] * C + c]));
        for (int64_t v = 0; v < V; ++v)
            worst = std::max(worst, std::fabs(double(la.data<float>()[r * V + v]) - lb.data<float>()[kept_rows[r] * V + v]));
    }
    EXPECT_LT(worst, 1e-5);
    // Decode steps continue on the compacted cache (positions keep counting from T).
    EXPECT_EQ(kv_a.n_past(), T);
    for (int32_t next : {7, 30, 2}) {
        const std::vector<int32_t> one = {next};
        const Tensor da = dropping->forward(one, kv_a, fa), db = masking->forward(one, kv_b, fb);
        EXPECT_LT(max_abs_diff(da, db), 1e-5) << "decode token " << next;
    }
    // Without the mask the dropped tokens matter (the test can fail).
    auto plain = test::random_model(dir, {}, "c");
    KVCache kv_c = plain->new_cache();
    ForwardOptions fc;
    fc.all_logits = true;
    const Tensor lc = plain->forward(kIds, kv_c, fc);
    EXPECT_GT(std::fabs(double(lc.data<float>()[(T - 1) * V]) - la.data<float>()[(T - 3) * V]), 1e-6);
}

TEST(Interventions, TokenDroppingRefusesDistanceBasedSpecsAndBadLists) {
    test::TempDir dir;
    auto model = test::random_model(dir);
    model->set_attention({{2, -1, 0, -1, "causal+window(size=4)"}});
    InterventionEnv env{model.get(), nullptr};
    InterventionSet drop = InterventionSet::from_json(R"([{"type": "drop_tokens", "layer": 1, "positions": "3:5"}])", env);
    KVCache kv = model->new_cache();
    ForwardOptions options;
    options.hooks = &drop;
    try {
        model->forward(kIds, kv, options);
        FAIL() << "expected NotSupported";
    } catch (const NotSupported& e) {
        EXPECT_NE(std::string(e.what()).find("window(size=4)"), std::string::npos) << e.what();
    }
    InterventionSet last = InterventionSet::from_json(R"([{"type": "drop_tokens", "layer": 1, "positions": "10:11"}])", env);
    KVCache kv2 = model->new_cache();
    options.hooks = &last;
    EXPECT_THROW(model->forward(kIds, kv2, options), InvalidArgument);  // the last token of the call
    EXPECT_THROW(InterventionSet::from_json(R"([{"type": "drop_tokens", "layer": 0, "positions": "1:2"}])", env),
                 InvalidArgument);
    EXPECT_THROW(InterventionSet::from_json(R"([{"type": "drop_tokens", "layer": 1}])", env), InvalidArgument);
}

// keep = 0.5 of positions 2..5 keeps the two that received the most attention in layer 0, by
// the column sums of layer 0's materialised pattern (mean over heads and seeing queries).
TEST(Interventions, TokenDroppingKeepsTheMostAttendedCandidates) {
    test::TempDir dir;
    auto model = test::random_model(dir);
    RunResult clean = run(*model, "", "blocks\\.0\\.attn\\.hook_pattern");
    const Tensor& p = clean.cache.at("blocks.0.attn.hook_pattern");  // (H, T, T)
    const int64_t H = p.size(0), T = p.size(1);
    std::vector<std::pair<double, int64_t>> mass;
    for (int64_t k = 2; k < 6; ++k) {
        double sum = 0;
        for (int64_t h = 0; h < H; ++h)
            for (int64_t i = k; i < T; ++i) sum += p.data<float>()[(h * T + i) * T + k];
        mass.push_back({-sum / double(H * (T - k)), k});
    }
    std::sort(mass.begin(), mass.end());
    RunResult dropped = run(*model, R"([{"type": "drop_tokens", "layer": 1, "positions": "2:6", "keep": 0.5}])",
                            "blocks\\.1\\.hook_resid_pre");
    // The kept rows are those whose layer-1 input equals the clean run's at their position.
    RunResult full = run(*model, "", "blocks\\.1\\.hook_resid_pre");
    const Tensor& a = dropped.cache.at("blocks.1.hook_resid_pre");  // (T - 2, C)
    const Tensor& b = full.cache.at("blocks.1.hook_resid_pre");     // (T, C)
    ASSERT_EQ(a.size(0), T - 2);
    const int64_t C = a.size(1);
    std::vector<int64_t> want = {0, 1};
    want.push_back(std::min(mass[0].second, mass[1].second));
    want.push_back(std::max(mass[0].second, mass[1].second));
    for (int64_t t = 6; t < T; ++t) want.push_back(t);
    for (size_t r = 0; r < want.size(); ++r)
        for (int64_t c = 0; c < C; ++c) ASSERT_EQ(a.data<float>()[r * C + c], b.data<float>()[want[r] * C + c]) << r;
}

}  // namespace
}  // namespace attnlab
