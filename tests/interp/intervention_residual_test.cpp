// Residual-stream interventions (steer, scale_mlp, replace) on random models, against exact
// invariants and float64 references: zero strength, factor 1 and replacing a run with its own
// cached activations are bit-identical to no intervention; steering adds exactly scale·v to the
// chosen rows (and the next point sees it); VISTA's norm-preserving form keeps ‖x‖ and matches its
// formula; positions follow the sequence through decode steps; bad specs get one clear error.
#include "test_support.h"

#include <attnlab/error.h>
#include <attnlab/intervention.h>
#include <attnlab/safetensors.h>

#include <gtest/gtest.h>

#include <cmath>
#include <random>

namespace attnlab {
namespace {

const std::vector<int32_t> kIds = {0, 5, 17, 3, 42, 9, 5, 17, 3, 61, 2};

struct RunResult {
    Tensor logits;  // (T, V)
    ActivationCache cache;
};

RunResult run(const Model& model, const std::string& json, const std::string& names_regex,
              const TokenSegments* segments = nullptr) {
    InterventionEnv env{&model, segments};
    InterventionSet set = json.empty() ? InterventionSet() : InterventionSet::from_json(json, env);
    RunResult r{Tensor(), ActivationCache(names_regex)};
    HookChain chain;  // the intervention first: the cache sees its effect
    chain.add(&set);
    chain.add(&r.cache);
    KVCache kv = model.new_cache();
    ForwardOptions options;
    options.hooks = &chain;
    options.all_logits = true;
    options.segments = segments;
    r.logits = model.forward(kIds, kv, options);
    return r;
}

bool bit_identical(const Tensor& a, const Tensor& b) {
    return a.shape() == b.shape() && std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0;
}

double max_abs_diff(const Tensor& a, const Tensor& b) {
    EXPECT_EQ(a.shape(), b.shape());
    double m = 0;
    for (int64_t i = 0; i < a.numel(); ++i) m = std::max(m, std::fabs(double(a.data<float>()[i]) - b.data<float>()[i]));
    return m;
}

std::vector<float> random_vector(int64_t n, uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    std::vector<float> v(static_cast<size_t>(n));
    for (float& x : v) x = normal(rng);
    return v;
}

std::string json_list(const std::vector<float>& v) {
    std::string out = "[";
    for (size_t i = 0; i < v.size(); ++i) {
        if (i) out += ',';
        out += fmt::format("{:.9g}", v[i]);
    }
    return out + "]";
}

std::string error_of(const Model& model, const std::string& json, const TokenSegments* segments = nullptr) {
    try {
        InterventionSet::from_json(json, InterventionEnv{&model, segments}, "spec.json");
    } catch (const Error& e) {
        return e.what();
    }
    return "no error";
}

TEST(ResidualInterventions, ZeroStrengthSteeringIsExactlyTheIdentity) {
    test::TempDir dir;
    auto model = test::random_model(dir);
    const std::string v = json_list(random_vector(32, 1));
    RunResult clean = run(*model, "", "x^");
    for (const char* form : {"add", "norm_preserving"}) {
        RunResult zero = run(*model,
                             fmt::format(R"([{{"type": "steer", "layer": 1, "scale": 0, "form": "{}", "vector": {}}},
                                            {{"type": "steer", "hook": "blocks.2.hook_mlp_out", "scale": 0, "form": "{}", "vector": {}}}])",
                                         form, v, form, v),
                             "x^");
        EXPECT_TRUE(bit_identical(clean.logits, zero.logits)) << form;
    }
    // A non-zero scale does change the logits (the test can fail).
    RunResult steered = run(*model, fmt::format(R"([{{"type": "steer", "layer": 1, "scale": 0.5, "vector": {}}}])", v), "x^");
    EXPECT_GT(max_abs_diff(clean.logits, steered.logits), 1e-4);
}

// Steering blocks.1.hook_resid_pre at positions 2..4 adds exactly float(scale·v) to those rows
// and nothing to the others; steering blocks.1.hook_mlp_out shows up in the next point,
// blocks.1.hook_resid_post = hook_resid_mid + hook_mlp_out + scale·v.
TEST(ResidualInterventions, SteeringAddsScaleTimesTheVectorToTheChosenRows) {
    test::TempDir dir;
    auto model = test::random_model(dir);
    const std::vector<float> v = random_vector(32, 2);
    const float scale = 0.7f;
    const std::string names = "blocks\\.1\\.(hook_resid_pre|hook_resid_mid|hook_mlp_out|hook_resid_post)";
    RunResult clean = run(*model, "", names);
    RunResult pre = run(*model,
                        fmt::format(R"([{{"type": "steer", "layer": 1, "scale": {}, "positions": "2:5", "vector": {}}}])",
                                    scale, json_list(v)),
                        names);
    const Tensor& x0 = clean.cache.at("blocks.1.hook_resid_pre");  // (T, C)
    const Tensor& x1 = pre.cache.at("blocks.1.hook_resid_pre");
    const int64_t T = x0.size(0), C = x0.size(1);
    for (int64_t t = 0; t < T; ++t)
        for (int64_t c = 0; c < C; ++c) {
            const float want = t >= 2 && t < 5 ? x0.data<float>()[t * C + c] + scale * v[c] : x0.data<float>()[t * C + c];
            ASSERT_EQ(x1.data<float>()[t * C + c], want) << "row " << t << " channel " << c;
        }

    RunResult mlp = run(*model,
                        fmt::format(R"([{{"type": "steer", "hook": "blocks.1.hook_mlp_out", "scale": {}, "vector": {}}}])",
                                    scale, json_list(v)),
                        names);
    const Tensor& mid = mlp.cache.at("blocks.1.hook_resid_mid");   // (T, C), before the edit's layer part
    const Tensor& out = clean.cache.at("blocks.1.hook_mlp_out");   // (T, C) the unedited MLP output
    const Tensor& post = mlp.cache.at("blocks.1.hook_resid_post");  // (T, C)
    EXPECT_TRUE(bit_identical(mid, clean.cache.at("blocks.1.hook_resid_mid")));
    double worst = 0;
    for (int64_t t = 0; t < T; ++t)
        for (int64_t c = 0; c < C; ++c) {
            const double want = double(mid.data<float>()[t * C + c]) + out.data<float>()[t * C + c] + double(scale) * v[c];
            worst = std::max(worst, std::fabs(want - post.data<float>()[t * C + c]));
        }
    EXPECT_LT(worst, 1e-5);
}

// VISTA (papers-multimodal §6): x' = ‖x‖·normalize(normalize(x) + λ·λ_sim·normalize(v)), with
// λ_sim = 1 + max(0, cos(x, −v)); ‖x'‖ = ‖x‖ row by row.
TEST(ResidualInterventions, NormPreservingSteeringKeepsTheNormAndFollowsVistasFormula) {
    test::TempDir dir;
    auto model = test::random_model(dir);
    const std::vector<float> v = random_vector(32, 3);
    const double lambda = 0.4;
    const std::string names = "blocks\\.2\\.hook_mlp_out", point = "blocks.2.hook_mlp_out";
    RunResult clean = run(*model, "", names);
    RunResult steered = run(
        *model,
        fmt::format(R"([{{"type": "steer", "hook": "blocks.2.hook_mlp_out", "form": "norm_preserving", "scale": {}, "vector": {}}}])",
                    lambda, json_list(v)),
        names);
    const Tensor& x0 = clean.cache.at(point);  // (T, C)
    const Tensor& x1 = steered.cache.at(point);
    const int64_t T = x0.size(0), C = x0.size(1);
    double v_norm = 0;
    for (float e : v) v_norm += double(e) * e;
    v_norm = std::sqrt(v_norm);
    int boosted = 0;  // rows where cos(x, −v) > 0 (λ_sim > 1)
    for (int64_t t = 0; t < T; ++t) {
        const float* x = x0.data<float>() + t * C;
        double xx = 0, xv = 0;
        for (int64_t c = 0; c < C; ++c) {
            xx += double(x[c]) * x[c];
            xv += double(x[c]) * v[c];
        }
        const double x_norm = std::sqrt(xx), sim = 1.0 + std::max(0.0, -xv / (x_norm * v_norm));
        boosted += sim > 1.0;
        std::vector<double> y(static_cast<size_t>(C));
        double yy = 0, out_sq = 0;
        for (int64_t c = 0; c < C; ++c) {
            y[c] = x[c] / x_norm + lambda * sim * v[c] / v_norm;
            yy += y[c] * y[c];
        }
        for (int64_t c = 0; c < C; ++c) {
            const double want = x_norm * y[c] / std::sqrt(yy), got = x1.data<float>()[t * C + c];
            ASSERT_NEAR(got, want, 1e-5 * (1 + x_norm)) << "row " << t;
            out_sq += got * got;
        }
        EXPECT_NEAR(std::sqrt(out_sq), x_norm, 1e-5 * x_norm);
    }
    EXPECT_GT(boosted, 0);  // the λ_sim branch was exercised
}

TEST(ResidualInterventions, ScaleMlpFactorOneIsTheIdentityAndScalesTheChosenRows) {
    test::TempDir dir;
    auto model = test::random_model(dir);
    RunResult clean = run(*model, "", "blocks\\.0\\.hook_mlp_out");
    RunResult one = run(*model, R"([{"type": "scale_mlp", "layers": "*", "factor": 1}])", "x^");
    EXPECT_TRUE(bit_identical(clean.logits, one.logits));

    const TokenSegments segments = TokenSegments::parse({"img=3:6"});
    RunResult scaled =
        run(*model, R"([{"type": "scale_mlp", "layers": "0", "factor": 3, "segment": "img"}])", "blocks\\.0\\.hook_mlp_out",
            &segments);
    const Tensor& a = clean.cache.at("blocks.0.hook_mlp_out");  // (T, C)
    const Tensor& b = scaled.cache.at("blocks.0.hook_mlp_out");
    const int64_t T = a.size(0), C = a.size(1);
    for (int64_t t = 0; t < T; ++t)
        for (int64_t c = 0; c < C; ++c)
            ASSERT_EQ(b.data<float>()[t * C + c], (t >= 3 && t < 6 ? 3.0f : 1.0f) * a.data<float>()[t * C + c]);

    // "norm": each selected row rescaled to that ℓ2 norm.
    RunResult normed = run(*model, R"([{"type": "scale_mlp", "layers": "0", "norm": 100, "positions": "1:2"}])",
                           "blocks\\.0\\.hook_mlp_out");
    const Tensor& n = normed.cache.at("blocks.0.hook_mlp_out");
    double sq = 0;
    for (int64_t c = 0; c < C; ++c) sq += double(n.data<float>()[C + c]) * n.data<float>()[C + c];
    EXPECT_NEAR(std::sqrt(sq), 100.0, 1e-3);
}

// `attnlab run --save --hooks` output of the same prompt, replayed: bit-identical logits. From
// another prompt, the replaced rows are the cached ones.
TEST(ResidualInterventions, ReplacingWithTheRunsOwnCacheIsExactlyTheIdentity) {
    test::TempDir dir;
    auto model = test::random_model(dir);
    const std::string names = "blocks\\.1\\.(hook_resid_pre|attn\\.hook_z)";
    RunResult clean = run(*model, "", names);
    const std::string file = (dir / "cache.safetensors").string();
    save_safetensors(file, {{"blocks.1.hook_resid_pre", clean.cache.at("blocks.1.hook_resid_pre")},
                            {"blocks.1.attn.hook_z", clean.cache.at("blocks.1.attn.hook_z")}});
    RunResult same = run(*model,
                         fmt::format(R"([{{"type": "replace", "hook": "blocks.1.hook_resid_pre", "file": "{}"}},
                                        {{"type": "replace", "hook": "blocks.1.attn.hook_z", "file": "{}"}}])",
                                     file, file),
                         "x^");
    EXPECT_TRUE(bit_identical(clean.logits, same.logits));

    // Rows 4..6 of another run ("offset" 4: the file holds positions 4..6, as `run --positions 4:7`).
    const Tensor other = Tensor::from_vector(random_vector(3 * 32, 4), {3, 32});
    const std::string other_file = (dir / "other.safetensors").string();
    save_safetensors(other_file, {{"blocks.1.hook_resid_pre", other}});
    RunResult patched = run(
        *model,
        fmt::format(R"([{{"type": "replace", "hook": "blocks.1.hook_resid_pre", "file": "{}", "offset": 4, "positions": "5:7"}}])",
                    other_file),
        names);
    const Tensor& x0 = clean.cache.at("blocks.1.hook_resid_pre");  // (T, C)
    const Tensor& x1 = patched.cache.at("blocks.1.hook_resid_pre");
    for (int64_t t = 0; t < x0.size(0); ++t)
        for (int64_t c = 0; c < 32; ++c)
            ASSERT_EQ(x1.data<float>()[t * 32 + c],
                      t == 5 || t == 6 ? other.data<float>()[(t - 4) * 32 + c] : x0.data<float>()[t * 32 + c]);
    EXPECT_GT(max_abs_diff(clean.logits, patched.logits), 1e-4);
}

TEST(ResidualInterventions, ReplaceChecksShapesAndPositions) {
    test::TempDir dir;
    auto model = test::random_model(dir);
    const std::string file = (dir / "c.safetensors").string();
    save_safetensors(file, {{"blocks.1.hook_resid_pre", Tensor::zeros({4, 16})}, {"blocks.0.attn.hook_z", Tensor::zeros({4, 3, 8})}});
    EXPECT_NE(error_of(*model, fmt::format(R"([{{"type": "replace", "hook": "blocks.1.hook_resid_pre", "file": "{}"}}])", file))
                  .find("has shape (4, 16), expected (T, 32)"),
              std::string::npos);
    EXPECT_NE(error_of(*model, fmt::format(R"([{{"type": "replace", "hook": "blocks.2.hook_resid_pre", "file": "{}"}}])", file))
                  .find("has no tensor 'blocks.2.hook_resid_pre'"),
              std::string::npos);
    EXPECT_NE(error_of(*model, fmt::format(R"([{{"type": "replace", "hook": "blocks.1.attn.hook_pattern", "file": "{}"}}])", file))
                  .find("not a token-major hook point"),
              std::string::npos);
    // hook_z is (T, H=4, D=8) in this model: a (4, 3, 8) cache fails when the rows are reached.
    InterventionSet z = InterventionSet::from_json(
        fmt::format(R"([{{"type": "replace", "hook": "blocks.0.attn.hook_z", "file": "{}"}}])", file),
        InterventionEnv{model.get(), nullptr});
    KVCache kv = model->new_cache();
    ForwardOptions options;
    options.hooks = &z;
    try {
        model->forward(kIds, kv, options);
        FAIL() << "expected a shape error";
    } catch (const InvalidArgument& e) {
        EXPECT_NE(std::string(e.what()).find("has shape (4, 3, 8)"), std::string::npos) << e.what();
    }
    // The default positions are the file's rows (0..3); an 11-token run never asks for more.
    save_safetensors(file, {{"blocks.1.hook_resid_pre", Tensor::zeros({4, 32})}});
    EXPECT_NE(error_of(*model, fmt::format(R"([{{"type": "replace", "hook": "blocks.1.hook_resid_pre", "file": "{}", "positions": "2:9"}}])", file))
                  .find("positions 2:9 are not all in"),
              std::string::npos);
}

TEST(ResidualInterventions, SpecErrorsAreOneClearLine) {
    test::TempDir dir;
    auto model = test::random_model(dir);
    const std::string v = json_list(random_vector(32, 9));
    auto steer = [&](const std::string& rest) {
        return error_of(*model, R"([{"type": "steer", "layer": 1, "vector": )" + v + ", " + rest + "}]");
    };
    EXPECT_NE(error_of(*model, R"([{"type": "steer", "layer": 1, "vector": [1, 2]}])").find("\"vector\" has 2 values, the model's width is 32"),
              std::string::npos);
    EXPECT_NE(error_of(*model, R"([{"type": "steer", "layer": 7, "vector": []}])").find("layer 7 outside 0..2"), std::string::npos);
    EXPECT_NE(error_of(*model, R"([{"type": "steer", "hook": "blocks.1.attn.hook_q", "vector": []}])").find("is not a (T, C) hook point"),
              std::string::npos);
    EXPECT_NE(error_of(*model, R"([{"type": "steer", "layer": 1}])").find("exactly one of \"vector\""), std::string::npos);
    EXPECT_NE(error_of(*model, R"([{"type": "steer", "layer": 1, "vector_file": "/nonexistent.safetensors"}])").find("nonexistent"),
              std::string::npos);
    EXPECT_NE(steer(R"("form": "rotate")").find("unknown form 'rotate'"),
              std::string::npos);
    EXPECT_NE(steer(R"("positions": "5:2")").find("empty range"),
              std::string::npos);
    EXPECT_NE(steer(R"("segment": "img")").find("segment 'img' is not defined"),
              std::string::npos);
    EXPECT_NE(error_of(*model, R"([{"type": "scale_mlp", "layers": "0-5", "factor": 2}])").find("outside 0..2"), std::string::npos);
    EXPECT_NE(error_of(*model, R"([{"type": "scale_mlp", "layers": "0"}])").find("exactly one of \"factor\""), std::string::npos);
    EXPECT_NE(error_of(*model, R"([{"type": "scale_mlp", "layers": "0", "factor": 2, "layer": 1}])").find("unknown field \"layer\""),
              std::string::npos);
}

// After drop_tokens the rows of later layers are no longer one per position: acting there is an
// error, never a silent misplacement. Before the drop it works.
TEST(ResidualInterventions, RowsAfterTokenDroppingAreRefused) {
    test::TempDir dir;
    auto model = test::random_model(dir);
    const std::string v = json_list(random_vector(32, 6));
    auto forward = [&](int64_t steer_layer) {
        InterventionSet set = InterventionSet::from_json(
            fmt::format(R"([{{"type": "drop_tokens", "layer": 1, "positions": "3:5"}},
                           {{"type": "steer", "layer": {}, "positions": "6:7", "vector": {}}}])",
                        steer_layer, v),
            InterventionEnv{model.get(), nullptr});
        KVCache kv = model->new_cache();
        ForwardOptions options;
        options.hooks = &set;
        model->forward(kIds, kv, options);
    };
    EXPECT_NO_THROW(forward(0));
    try {
        forward(2);
        FAIL() << "expected an error";
    } catch (const InvalidArgument& e) {
        EXPECT_NE(std::string(e.what()).find("cannot follow token dropping"), std::string::npos) << e.what();
    }
}

// A steering vector from a safetensors file (any float dtype, any shape with C values) equals the
// same vector given inline.
TEST(ResidualInterventions, VectorFileEqualsTheInlineVector) {
    test::TempDir dir;
    auto model = test::random_model(dir);
    const std::vector<float> v = random_vector(32, 5);
    const std::string file = (dir / "v.safetensors").string();
    save_safetensors(file, {{"direction", Tensor::from_vector(v, {1, 32})}, {"other", Tensor::zeros({2})}});
    RunResult inline_v = run(*model, fmt::format(R"([{{"type": "steer", "layer": 2, "vector": {}}}])", json_list(v)), "x^");
    RunResult from_file = run(
        *model, fmt::format(R"([{{"type": "steer", "layer": 2, "vector_file": "{}", "tensor": "direction"}}])", file), "x^");
    EXPECT_TRUE(bit_identical(inline_v.logits, from_file.logits));
    EXPECT_NE(error_of(*model, fmt::format(R"([{{"type": "steer", "layer": 2, "vector_file": "{}"}}])", file))
                  .find("holds 2 tensors"),
              std::string::npos);
}

}  // namespace
}  // namespace attnlab
