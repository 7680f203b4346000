// Generation with interventions and multi-branch decoding: an empty intervention set is plain
// generate(); generate() with interventions equals a manual prefill + decode loop (with positions
// counted through decode steps); the combination rules against float64 references and their
// identities (identical branches under contrastive / rvd, guidance scale 1, vista_sla on the last
// layer through the final norm = the plain greedy decode); tinylm produces text; bad specs give
// one clear error.
#include "test_support.h"

#include <attnlab/branches.h>
#include <attnlab/error.h>
#include <attnlab/generate.h>
#include <attnlab/intervention.h>

#include <gtest/gtest.h>

#include <cmath>
#include <random>

namespace attnlab {
namespace {

const std::vector<int32_t> kPrompt = {0, 5, 17, 3, 42, 9, 5, 17};

GenerateOptions greedy(int64_t n) {
    GenerateOptions g;
    g.max_new_tokens = n;
    g.sampling.temperature = 0;
    g.stop_at_eos = false;
    return g;
}

std::vector<int32_t> plain_greedy(const Model& model, const std::vector<int32_t>& prompt, int64_t n) {
    KVCache kv = model.new_cache();
    return generate(model, prompt, greedy(n), kv);
}

std::string json_list(const std::vector<float>& v) {
    std::string out = "[";
    for (size_t i = 0; i < v.size(); ++i) {
        if (i) out += ',';
        out += fmt::format("{:.9g}", v[i]);
    }
    return out + "]";
}

std::string ids_list(const std::vector<int32_t>& ids) {
    std::string out = "[";
    for (size_t i = 0; i < ids.size(); ++i) {
        if (i) out += ',';
        out += std::to_string(ids[i]);
    }
    return out + "]";
}

std::vector<float> random_vector(int64_t n, uint64_t seed, float std = 1.0f) {
    std::mt19937_64 rng(seed);
    std::normal_distribution<float> normal(0.0f, std);
    std::vector<float> v(static_cast<size_t>(n));
    for (float& x : v) x = normal(rng);
    return v;
}

// Keeps the last logits row each forward pass produced (unembed.hook_out of the last position).
class LogitRecorder : public Hooks {
public:
    bool wants(const std::string& name) const override { return name == "unembed.hook_out"; }
    void on(const std::string&, Tensor& value) override {  // (rows, V)
        const int64_t V = value.size(-1);
        const float* last = value.data<float>() + (value.numel() - V);
        rows.emplace_back(last, last + V);
    }
    std::vector<std::vector<float>> rows;
};

// Steering blocks.1.hook_resid_pre by 1.5·v at positions 3, 4 and 9 and scaling
// blocks.2.hook_mlp_out by 0.25 from position `prompt` on, written out by hand: the caller sets
// pos0, the first position of each forward call.
class ManualEdits : public Hooks {
public:
    ManualEdits(const std::vector<float>& v, int64_t prompt) : v_(v), prompt_(prompt) {}
    int64_t pos0 = 0;
    bool wants(const std::string& name) const override {
        return name == "blocks.1.hook_resid_pre" || name == "blocks.2.hook_mlp_out";
    }
    void on(const std::string& name, Tensor& x) override {  // (T, C)
        const int64_t T = x.size(0), C = x.size(1);
        for (int64_t t = 0; t < T; ++t) {
            const int64_t p = pos0 + t;
            float* row = x.data<float>() + t * C;
            if (name == "blocks.1.hook_resid_pre" && ((p >= 3 && p < 5) || p == 9))
                for (int64_t c = 0; c < C; ++c) row[c] += 1.5f * v_[c];
            if (name == "blocks.2.hook_mlp_out" && p >= prompt_)
                for (int64_t c = 0; c < C; ++c) row[c] *= 0.25f;
        }
    }

private:
    std::vector<float> v_;
    int64_t prompt_;
};

// The spec ManualEdits writes out.
std::string manual_edits_spec(const std::vector<float>& v) {
    return fmt::format(
        R"([{{"type": "steer", "layer": 1, "scale": 1.5, "positions": "3:5,9:10", "vector": {}}},
           {{"type": "scale_mlp", "layers": "2", "factor": 0.25, "positions": "generated"}}])",
        json_list(v));
}

// Greedy decoding of `prompt` on `kv` with `hooks`, positions reported to `manual`: the ids and
// each step's last logits row.
std::vector<int32_t> manual_greedy(const Model& model, const std::vector<int32_t>& prompt, KVCache& kv, ManualEdits& manual,
                                   LogitRecorder& recorded, size_t n) {
    HookChain chain;
    chain.add(&manual);
    chain.add(&recorded);
    ForwardOptions options;
    options.hooks = &chain;
    std::vector<int32_t> ids;
    manual.pos0 = kv.n_past();
    Tensor logits = model.forward(prompt, kv, options);
    for (size_t step = 0; step < n; ++step) {
        const float* row = logits.data<float>();
        ids.push_back(static_cast<int32_t>(std::max_element(row, row + logits.size(1)) - row));
        if (step + 1 == n) break;
        manual.pos0 = kv.n_past();
        const std::vector<int32_t> one = {ids.back()};
        logits = model.forward(one, kv, options);
    }
    return ids;
}

TEST(GenerateWithInterventions, AnEmptySetIsPlainGenerate) {
    test::TempDir dir;
    auto model = test::random_model(dir);
    InterventionSet empty;
    const TokenSegments segments;
    GenerateOptions g = greedy(12);
    g.interventions = &empty;
    g.segments = &segments;
    KVCache kv = model->new_cache();
    EXPECT_EQ(generate(*model, kPrompt, g, kv), plain_greedy(*model, kPrompt, 12));
}

// Steering position 9 (the second generated token's own row) and every generated token of
// blocks.1.hook_resid_pre: generate() equals a manual loop that adds the vector itself at those
// sequence positions, step by step, logits included.
TEST(GenerateWithInterventions, GenerateEqualsAManualPrefillDecodeLoop) {
    test::TempDir dir;
    auto model = test::random_model(dir);
    const std::vector<float> v = random_vector(32, 11, 2.0f);
    InterventionSet set = InterventionSet::from_json(manual_edits_spec(v), InterventionEnv{model.get(), nullptr});
    LogitRecorder recorded;
    GenerateOptions g = greedy(6);
    g.interventions = &set;
    g.hooks = &recorded;
    KVCache kv = model->new_cache();
    const std::vector<int32_t> ids = generate(*model, kPrompt, g, kv);

    ManualEdits manual(v, static_cast<int64_t>(kPrompt.size()));
    LogitRecorder manual_logits;
    KVCache kv2 = model->new_cache();
    EXPECT_EQ(ids, manual_greedy(*model, kPrompt, kv2, manual, manual_logits, ids.size()));
    ASSERT_EQ(recorded.rows.size(), manual_logits.rows.size());
    for (size_t s = 0; s < recorded.rows.size(); ++s) EXPECT_EQ(recorded.rows[s], manual_logits.rows[s]) << "step " << s;
    // The edits mattered: plain decoding's logits differ at the prefill and at step 2.
    LogitRecorder plain;
    GenerateOptions p = greedy(6);
    p.hooks = &plain;
    KVCache kv3 = model->new_cache();
    generate(*model, kPrompt, p, kv3);
    EXPECT_NE(plain.rows[0], recorded.rows[0]);
    EXPECT_NE(plain.rows.at(2), recorded.rows.at(2));

    // A second generate() call with the same set starts a new sequence (begin_sequence).
    KVCache kv4 = model->new_cache();
    EXPECT_EQ(generate(*model, kPrompt, g, kv4), ids);
}

// generate() on a cache that already holds a prefix: positions are the sequence's (5, 6, 7 for
// the prompt's rows), not counted from 0, and "generated" starts after the prompt.
TEST(GenerateWithInterventions, PositionsContinueAfterACachedPrefix) {
    test::TempDir dir;
    auto model = test::random_model(dir);
    const std::vector<float> v = random_vector(32, 12, 2.0f);
    const std::vector<int32_t> prefix(kPrompt.begin(), kPrompt.begin() + 5), rest(kPrompt.begin() + 5, kPrompt.end());
    InterventionSet set = InterventionSet::from_json(manual_edits_spec(v), InterventionEnv{model.get(), nullptr});
    LogitRecorder recorded;
    GenerateOptions g = greedy(5);
    g.interventions = &set;
    g.hooks = &recorded;
    KVCache kv = model->new_cache();
    model->forward(prefix, kv);  // the prefix, unedited
    const std::vector<int32_t> ids = generate(*model, rest, g, kv);

    ManualEdits manual(v, static_cast<int64_t>(kPrompt.size()));
    LogitRecorder manual_logits;
    KVCache kv2 = model->new_cache();
    model->forward(prefix, kv2);
    EXPECT_EQ(ids, manual_greedy(*model, rest, kv2, manual, manual_logits, ids.size()));
    ASSERT_EQ(recorded.rows.size(), manual_logits.rows.size());
    for (size_t s = 0; s < recorded.rows.size(); ++s) EXPECT_EQ(recorded.rows[s], manual_logits.rows[s]) << "step " << s;
}

// ---- combination rules against float64 references ----

std::vector<float> logits_of(uint64_t seed, int64_t V = 50) { return random_vector(V, seed, 3.0f); }

TEST(BranchRules, ContrastiveIsVcdWithThePlausibilityCutoff) {
    const std::vector<float> m = logits_of(1), o = logits_of(2);
    BranchRule rule;
    rule.kind = BranchRuleKind::Contrastive;
    rule.alpha = 0.8;
    rule.beta = 0.2;
    const std::vector<float> out = combine_branch_logits(rule, {m, o});
    const double max_m = *std::max_element(m.begin(), m.end());
    double z = 0;
    for (float x : m) z += std::exp(double(x) - max_m);
    int cut = 0;
    for (size_t v = 0; v < m.size(); ++v) {
        const double p = std::exp(double(m[v]) - max_m) / z, p_max = 1.0 / z;
        if (p < rule.beta * p_max) {
            EXPECT_TRUE(std::isinf(out[v]) && out[v] < 0) << v;
            ++cut;
        } else {
            EXPECT_NEAR(out[v], (1 + rule.alpha) * m[v] - rule.alpha * o[v], 1e-5) << v;
        }
    }
    EXPECT_GT(cut, 0);
    EXPECT_LT(cut, static_cast<int>(m.size()));
    // Identical branches: exactly m on the kept tokens.
    const std::vector<float> same = combine_branch_logits(rule, {m, m});
    for (size_t v = 0; v < m.size(); ++v)
        if (!std::isinf(same[v])) {
            EXPECT_EQ(same[v], m[v]);
        }
}

TEST(BranchRules, GuidanceTermsAndScaleOne) {
    const std::vector<float> m = logits_of(3), u = logits_of(4), p = logits_of(5);
    BranchRule rule;
    rule.kind = BranchRuleKind::Guidance;
    rule.scales = {3.0, 1.5};  // CFG w = 3 against u, PAG s_pag = 0.5 against p
    const std::vector<float> out = combine_branch_logits(rule, {m, u, p});
    for (size_t v = 0; v < m.size(); ++v) {
        const double cfg_pag = double(u[v]) + 3.0 * (double(m[v]) - u[v]) + 0.5 * (double(m[v]) - p[v]);  // diffusers' form
        EXPECT_NEAR(out[v], cfg_pag, 1e-5);
    }
    rule.scales = {1.0};
    EXPECT_EQ(combine_branch_logits(rule, {m, u}), m);
}

TEST(BranchRules, RvdWeighsByTheJensenShannonDivergence) {
    const std::vector<float> f = logits_of(6), r = logits_of(7), b = logits_of(8);
    BranchRule rule;
    rule.kind = BranchRuleKind::Rvd;
    rule.beta = 2.0;
    double s = -1;
    const std::vector<float> out = combine_branch_logits(rule, {f, r, b}, {}, &s);
    // JSD in float64, written from its definition with log2-free natural logs.
    auto probs = [](const std::vector<float>& l) {
        std::vector<double> p(l.size());
        double z = 0;
        for (size_t i = 0; i < l.size(); ++i) z += p[i] = std::exp(double(l[i]));
        for (double& x : p) x /= z;
        return p;
    };
    const std::vector<double> pr = probs(r), pb = probs(b);
    double kl_b = 0, kl_r = 0;
    for (size_t i = 0; i < pr.size(); ++i) {
        const double mid = 0.5 * (pr[i] + pb[i]);
        kl_b += pb[i] * std::log(pb[i] / mid);
        kl_r += pr[i] * std::log(pr[i] / mid);
    }
    const double jsd = 0.5 * kl_b + 0.5 * kl_r, want_s = std::min(2.0 * jsd, 1.0);
    ASSERT_GT(jsd, 0.0);
    ASSERT_LE(jsd, std::log(2.0) + 1e-12);
    EXPECT_NEAR(s, want_s, 1e-9);
    for (size_t v = 0; v < f.size(); ++v) EXPECT_NEAR(out[v], (1 - want_s) * f[v] + want_s * r[v], 1e-5);
    // Identical residual and blind branches: JSD = 0, s = 0, the full branch exactly.
    EXPECT_EQ(combine_branch_logits(rule, {f, r, r}, {}, &s), f);
    EXPECT_EQ(s, 0.0);
}

TEST(BranchRules, VistaSlaMixesTheLens) {
    const std::vector<float> m = logits_of(9), lens = logits_of(10);
    BranchRule rule;
    rule.kind = BranchRuleKind::VistaSla;
    rule.alpha = 0.3;
    const std::vector<float> out = combine_branch_logits(rule, {m}, lens);
    for (size_t v = 0; v < m.size(); ++v) EXPECT_NEAR(out[v], 0.3 * lens[v] + 0.7 * m[v], 1e-5);
    rule.alpha = 0;
    EXPECT_EQ(combine_branch_logits(rule, {m}, lens), m);
}

// ---- decoding ----

std::vector<int32_t> decode(const Model& model, const std::string& spec, int64_t n = 10,
                            const TokenSegments& segments = {}, std::vector<double>* weights = nullptr) {
    BranchDecoding d = BranchDecoding::from_json(spec, model, kPrompt, segments, "spec");
    BranchGeneration g = generate_branches(d, greedy(n));
    if (weights) *weights = g.weights;
    return g.ids;
}

TEST(BranchDecoding, IdenticalBranchesUnderContrastiveGiveThePlainGreedyDecode) {
    test::TempDir dir;
    auto model = test::random_model(dir);
    const std::vector<int32_t> plain = plain_greedy(*model, kPrompt, 10);
    for (double alpha : {1.0, 0.5, 3.0})
        EXPECT_EQ(decode(*model, fmt::format(R"({{"rule": "contrastive", "alpha": {}, "branches": [{{"name": "a"}}, {{"name": "b"}}]}})", alpha)),
                  plain)
            << alpha;
    // With a different second branch the decode changes (the test can fail).
    const std::string other = R"({"rule": "contrastive", "alpha": 2, "beta": 0,
        "branches": [{"name": "a"}, {"name": "b", "interventions": [{"type": "ablate", "mode": "zero", "heads": "0:*,1:*"}]}]})";
    EXPECT_NE(decode(*model, other), plain);
}

TEST(BranchDecoding, GuidanceScaleOneIsTheMainBranchAlone) {
    test::TempDir dir;
    auto model = test::random_model(dir);
    const std::vector<int32_t> plain = plain_greedy(*model, kPrompt, 10);
    EXPECT_EQ(decode(*model, R"({"rule": "guidance", "scale": 1, "branches": [{"name": "cond"}, {"name": "uncond", "ids": [0, 3]},
                                 {"name": "pag", "interventions": [{"type": "ablate", "mode": "uniform", "heads": "1:*"}]}]})"),
              plain);
    EXPECT_NE(decode(*model, R"({"rule": "guidance", "scales": {"uncond": 1, "pag": 4}, "branches": [{"name": "cond"},
                                 {"name": "uncond", "ids": [0, 3]},
                                 {"name": "pag", "interventions": [{"type": "ablate", "mode": "uniform", "heads": "1:*"}]}]})"),
              plain);
}

TEST(BranchDecoding, RvdWithIdenticalBranchesIsTheBaselineAndEachBranchHasItsOwnPrompt) {
    test::TempDir dir;
    auto model = test::random_model(dir);
    const std::vector<int32_t> plain = plain_greedy(*model, kPrompt, 8);
    std::vector<double> weights;
    const TokenSegments segments = TokenSegments::parse({"history=1:5"});
    // The residual and blind branches are the same prompt without the history: JSD 0, s 0.
    EXPECT_EQ(decode(*model, R"({"rule": "rvd", "branches": [{"name": "full"}, {"name": "resid", "drop_segment": "history"},
                                 {"name": "blind", "drop_segment": "history"}]})",
                     8, segments, &weights),
              plain);
    ASSERT_EQ(weights.size(), 8u);
    for (double s : weights) EXPECT_EQ(s, 0.0);
    // A different blind branch gives 0 < s <= 1.
    decode(*model, R"({"rule": "rvd", "branches": [{"name": "full"}, {"name": "resid", "drop_segment": "history"},
                        {"name": "blind", "ids": [0, 61, 2]}]})",
           8, segments, &weights);
    for (double s : weights) EXPECT_TRUE(s > 0 && s <= 1) << s;
    // drop_segment == the explicit shorter prompt.
    std::vector<int32_t> short_prompt = {kPrompt[0], kPrompt[5], kPrompt[6], kPrompt[7]};
    EXPECT_EQ(decode(*model, R"({"rule": "guidance", "scale": 2, "branches": [{"name": "a"}, {"name": "b", "drop_segment": "history"}]})",
                     6, segments),
              decode(*model, fmt::format(R"({{"rule": "guidance", "scale": 2, "branches": [{{"name": "a"}}, {{"name": "b", "ids": {}}}]}})",
                                         ids_list(short_prompt)),
                     6, segments));
}

// The logit lens of the last layer through the final norm is the model's own logits: vista_sla
// with α = 1 on it is the plain greedy decode.
TEST(BranchDecoding, VistaSlaOnTheLastLayerWithTheFinalNormIsThePlainDecode) {
    test::TempDir dir;
    auto model = test::random_model(dir);
    const std::vector<int32_t> plain = plain_greedy(*model, kPrompt, 8);
    EXPECT_EQ(decode(*model, R"({"rule": "vista_sla", "alpha": 1, "layers": [2], "final_norm": true, "branches": [{"name": "m"}]})", 8),
              plain);
    // Without the final norm (VISTA's code) over layers 0-1 something else comes out.
    EXPECT_NE(decode(*model, R"({"rule": "vista_sla", "alpha": 1, "layers": [0, 1], "branches": [{"name": "m"}]})", 8), plain);
}

TEST(BranchDecoding, TinylmTwoBranchContrastiveProducesText) {
    test::TempDir dir;
    const auto model_dir = test::prepare_model_dir("tinylm", dir);
    auto model = Model::load(model_dir.string());
    const std::vector<int32_t> prompt = model->tokenizer()->encode("And God said, Let there be light", true);
    const TokenSegments segments = TokenSegments::parse({"subject=1:3"});
    const std::string spec = R"({"rule": "contrastive", "alpha": 1, "beta": 0.1,
        "branches": [{"name": "full"}, {"name": "without", "drop_segment": "subject"}]})";
    auto run_once = [&] {
        BranchDecoding d = BranchDecoding::from_json(spec, *model, prompt, segments, "spec");
        EXPECT_LT(d.branches[1]->prompt.size(), prompt.size());
        GenerateOptions g = greedy(16);
        return generate_branches(d, g).ids;
    };
    const std::vector<int32_t> a = run_once(), b = run_once();
    ASSERT_FALSE(a.empty());
    EXPECT_EQ(a, b);
    const std::string text = model->tokenizer()->decode(a);
    EXPECT_FALSE(text.empty());
    EXPECT_NE(text.find_first_not_of(" \n\t"), std::string::npos) << text;
}

std::string error_of(const Model& model, const std::string& spec, const TokenSegments& segments = {}) {
    try {
        BranchDecoding::from_json(spec, model, kPrompt, segments, "spec.json");
    } catch (const Error& e) {
        return e.what();
    }
    return "no error";
}

TEST(BranchDecoding, BadSpecsGiveOneClearError) {
    test::TempDir dir;
    auto model = test::random_model(dir);
    test::RandomModelShape other_shape;
    other_shape.vocab = 80;
    test::random_model(dir, other_shape, "other-vocab");
    const std::string other = (dir / "other-vocab").string();
    struct Case {
        std::string spec, message;
    };
    const std::vector<Case> cases = {
        {"{", "[spec.json] not JSON"},
        {R"({"rule": "mix", "branches": [{"name": "a"}]})", "[spec.json] unknown rule 'mix'"},
        {R"({"branches": [{"name": "a"}, {"name": "b"}]})", "missing \"rule\""},
        {R"({"rule": "contrastive"})", "missing \"branches\""},
        {R"({"rule": "contrastive", "branches": [{"name": "a"}, {"prompt": "x"}]})", "[spec.json branches[1]] missing \"name\""},
        {R"({"rule": "contrastive", "branches": [{"name": "a"}, {"name": "a"}]})", "two branches are named 'a'"},
        {R"({"rule": "contrastive", "branches": [{"name": "a"}]})", "needs exactly 2 branches"},
        {R"({"rule": "contrastive", "branches": [{"name": "a"}, {"name": "b", "promt": "x"}]})", "unknown field \"promt\""},
        {R"({"rule": "contrastive", "gamma": 1, "branches": [{"name": "a"}, {"name": "b"}]})", "unknown field \"gamma\""},
        {R"({"rule": "guidance", "branches": [{"name": "a"}, {"name": "b"}]})", "needs \"scale\""},
        {R"({"rule": "guidance", "scales": {"c": 2}, "branches": [{"name": "a"}, {"name": "b"}]})", "no scale for branch 'b'"},
        {R"({"rule": "rvd", "branches": [{"name": "a"}, {"name": "b"}]})", "needs a fixed weight \"alpha\""},
        {R"({"rule": "vista_sla", "layers": [9], "branches": [{"name": "a"}]})", "9 is not a layer of 0..2"},
        {R"({"rule": "contrastive", "branches": [{"name": "a"}, {"name": "b", "ids": [0, 64]}]})", "not a token id"},
        {R"({"rule": "contrastive", "branches": [{"name": "a"}, {"name": "b", "prompt": "x", "ids": [1]}]})", "not both"},
        {R"({"rule": "contrastive", "branches": [{"name": "a"}, {"name": "b", "drop_segment": "img"}]})", "no segment named 'img'"},
        {R"({"rule": "contrastive", "branches": [{"name": "a"}, {"name": "b", "interventions": [{"type": "nope"}]}]})",
         "[spec.json branch 'b' interventions[0]] unknown intervention type 'nope'"},
        {R"({"rule": "contrastive", "branches": [{"name": "a"}, {"name": "b", "model": ")" + other + R"("}]})",
         "has a vocabulary of 80 tokens, the main model 64"},
    };
    for (const Case& c : cases) {
        const std::string message = error_of(*model, c.spec);
        EXPECT_NE(message.find(c.message), std::string::npos) << c.spec << "\n-> " << message;
        EXPECT_EQ(message.find('\n'), std::string::npos) << message;
    }
    // generate_branches refuses options that belong to the branches.
    BranchDecoding d = BranchDecoding::from_json(R"({"rule": "guidance", "scale": 2, "branches": [{"name": "a"}, {"name": "b"}]})",
                                                 *model, kPrompt, {}, "spec");
    InterventionSet set;
    GenerateOptions g = greedy(2);
    g.interventions = &set;
    EXPECT_THROW(generate_branches(d, g), InvalidArgument);
}

}  // namespace
}  // namespace attnlab
