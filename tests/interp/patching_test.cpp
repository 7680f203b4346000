// Patching (patching.h) and the head search (head_search.h): the fixtures' ablations.json
// reproduced to 1e-6 on induction-tiny, the head search finding the copy heads, and answers known
// by construction on random models — patching a run with itself is the identity, patching every
// head's z at the scored position restores the clean metric, path patching to the logits equals
// activation patching in the last layer and, with everything else frozen, the head's direct term
// (computed here from hook_result and unembed), causal tracing restores exactly.
#include "test_support.h"

#include <attnlab/error.h>
#include <attnlab/head_search.h>
#include <attnlab/intervention.h>
#include <attnlab/patching.h>
#include <attnlab/safetensors.h>

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <atomic>
#include <cmath>

namespace attnlab {
namespace {

using nlohmann::json;

std::filesystem::path induction_dir() { return test::fixtures_dir() / "models" / "induction-tiny"; }

// Two prompts of a random model's vocabulary; the corrupted ones differ at positions 2 and 5 only.
RunPair small_pair() {
    RunPair pair;
    pair.clean = {{0, 5, 17, 3, 42, 9, 5, 17, 3, 61, 2}, {0, 8, 30, 12, 7, 44, 8, 30, 12, 7, 19}};
    pair.corrupted = pair.clean;
    for (auto& s : pair.corrupted) {
        s[2] = (s[2] + 11) % 64;
        s[5] = (s[5] + 23) % 64;
    }
    return pair;
}

// float64 reference of the next-token metric from all logits of a plain run.
std::pair<double, double> reference_accuracy_loss(const Model& model, const Sequences& seqs,
                                                  const std::vector<std::vector<float>>& mask) {
    double correct = 0, loss = 0, n = 0;
    for (size_t i = 0; i < seqs.size(); ++i) {
        KVCache kv = model.new_cache();
        ForwardOptions o;
        o.all_logits = true;
        const Tensor logits = model.forward(seqs[i], kv, o);  // (T, V)
        const int64_t V = logits.size(1);
        for (size_t t = 1; t < seqs[i].size(); ++t) {
            if (!mask.empty() && mask[i][t] == 0) continue;
            const float* row = logits.data<float>() + (t - 1) * V;
            double m = row[0], s = 0;
            int64_t best = 0;
            for (int64_t v = 0; v < V; ++v) {
                if (row[v] > row[best]) best = v;
                m = std::max(m, double(row[v]));
            }
            for (int64_t v = 0; v < V; ++v) s += std::exp(double(row[v]) - m);
            loss += m + std::log(s) - row[seqs[i][t]];
            correct += best == seqs[i][t];
            n += 1;
        }
    }
    return {correct / n, loss / n};
}

TEST(Patching, ScoreFormulaOnPlantedValues) {
    EXPECT_DOUBLE_EQ(patch_score(3.0, 1.0, 5.0), 0.5);
    EXPECT_DOUBLE_EQ(patch_score(1.0, 1.0, 5.0), 0.0);
    EXPECT_DOUBLE_EQ(patch_score(5.0, 1.0, 5.0), 1.0);
    EXPECT_DOUBLE_EQ(patch_score(-1.0, 2.0, -4.0), 0.5);  // (LD_p − LD_c)/(LD_x − LD_c) with LD_x < LD_c
    EXPECT_TRUE(std::isnan(patch_score(2.0, 1.0, 1.0)));
}

TEST(Patching, NextTokenMetricReadsTheLogitsBeforeEachMaskedToken) {
    test::TempDir dir;
    auto model = test::random_model(dir);
    const Sequences seqs = small_pair().clean;
    std::vector<std::vector<float>> mask(seqs.size(), std::vector<float>(seqs[0].size(), 0.0f));
    mask[0][4] = mask[0][10] = mask[1][1] = mask[1][7] = 1.0f;
    mask[1][0] = 1.0f;  // t = 0 has no logits before it: never scored
    for (const auto& m : {std::vector<std::vector<float>>{}, mask}) {
        const MetricValues got = measure(*model, seqs, *next_token_metric(m));
        const auto [accuracy, loss] = reference_accuracy_loss(*model, seqs, m);
        EXPECT_EQ(got.names, (std::vector<std::string>{"accuracy", "loss"}));
        EXPECT_NEAR(got.at("accuracy"), accuracy, 1e-12);
        EXPECT_NEAR(got.at("loss"), loss, 1e-9);
    }
    std::vector<std::vector<float>> short_mask = {{1.0f}};
    EXPECT_THROW(next_token_metric(short_mask)->check(seqs, 64, "test"), InvalidArgument);
}

TEST(Patching, LogitDiffMetricAgainstTheLogits) {
    test::TempDir dir;
    auto model = test::random_model(dir);
    const Sequences seqs = small_pair().clean;
    double want = 0;
    for (const auto& s : seqs) {
        KVCache kv = model->new_cache();
        const Tensor logits = model->forward(s, kv);  // (1, V): the last position
        want += (double(logits.data<float>()[7]) - logits.data<float>()[9]) / double(seqs.size());
    }
    EXPECT_NEAR(measure(*model, seqs, *logit_diff_metric({{7, 9, -1}})).primary(), want, 1e-9);
    EXPECT_NEAR(measure(*model, seqs, *logit_diff_metric({{7, 9, 10}})).primary(), want, 1e-6);  // position 10 = last
    EXPECT_THROW(logit_diff_metric({{70, 9, -1}})->check(seqs, 64, "test"), InvalidArgument);
    EXPECT_THROW(logit_diff_metric({{7, 9, 11}})->check(seqs, 64, "test"), InvalidArgument);
    EXPECT_THROW(logit_diff_metric({{7, 9, -1}, {7, 9, -1}, {1, 2, -1}})->check(seqs, 64, "test"), InvalidArgument);
}

// On induction-tiny every single-head and whole-layer ablation, both kinds, matches the fixture
// (computed in float64 with transformers) to 1e-6.
TEST(Patching, AblationSweepReproducesInductionTinyAblations) {
    auto model = Model::load(induction_dir().string());
    const std::string batch = (induction_dir() / "eval_batch.safetensors").string();
    const Sequences seqs = load_input_ids(batch);
    const auto mask = load_loss_mask(batch, seqs);
    ASSERT_EQ(mask.size(), 64u);
    const json want = json::parse(test::read_file(induction_dir() / "ablations.json"));
    std::atomic<bool> cancel{false};
    int64_t reports = 0;
    ProbeControl control;
    control.cancel = &cancel;
    control.progress = [&](int64_t done, int64_t total) {
        ++reports;
        EXPECT_EQ(total, (8 + 2) * 2);
        EXPECT_EQ(done, reports);
    };
    const AblationSweepResult result = ablation_sweep(*model, seqs, *next_token_metric(mask), {}, control);
    EXPECT_EQ(reports, 20);
    EXPECT_FALSE(result.interrupted);
    const json got = json::parse(result.to_json());
    auto expect_values = [](const json& g, const json& w, const std::string& what) {
        for (const char* key : {"accuracy", "loss"})
            EXPECT_NEAR(g.at(key).get<double>(), w.at(key).get<double>(), 1e-6) << what << " " << key;
    };
    expect_values(got["baseline"], want["baseline"], "baseline");
    ASSERT_EQ(got["heads"].size(), want["heads"].size());
    for (size_t k = 0; k < want["heads"].size(); ++k) {
        const json& w = want["heads"][k];
        const json& g = got["heads"][k];
        EXPECT_EQ(g["layer"], w["layer"]);
        EXPECT_EQ(g["head"], w["head"]);
        for (const char* kind : {"zero_output", "uniform_attention"})
            expect_values(g[kind], w[kind], fmt::format("head {}:{} {}", w["layer"].get<int>(), w["head"].get<int>(), kind));
    }
    ASSERT_EQ(got["all_heads_of_layer"].size(), want["all_heads_of_layer"].size());
    for (size_t k = 0; k < want["all_heads_of_layer"].size(); ++k)
        for (const char* kind : {"zero_output", "uniform_attention"})
            expect_values(got["all_heads_of_layer"][k][kind], want["all_heads_of_layer"][k][kind],
                          fmt::format("layer {} {}", k, kind));
}

TEST(Patching, AblationSweepStopsEarlyWithPartialResults) {
    test::TempDir dir;
    auto model = test::random_model(dir);
    std::atomic<bool> cancel{false};
    ProbeControl control;
    control.cancel = &cancel;
    control.progress = [&](int64_t done, int64_t) {
        if (done == 5) cancel = true;
    };
    AblationSweepOptions options;
    options.modes = {"zero", "bos"};
    const AblationSweepResult r = ablation_sweep(*model, small_pair().clean, *next_token_metric(), options, control);
    EXPECT_TRUE(r.interrupted);
    EXPECT_EQ(r.done, 5);
    ASSERT_EQ(r.heads.size(), 3u);  // 0:0 and 0:1 with both modes, 0:2 with the first only
    EXPECT_EQ(r.heads[2].by_mode.size(), 1u);
    EXPECT_TRUE(r.layers.empty());
    EXPECT_TRUE(json::parse(r.to_json())["interrupted"].get<bool>());
}

// Mean mode patches z to the reference mean once per sweep; it must equal the `ablate`
// intervention's mean mode with the same reference, bit for bit.
TEST(Patching, MeanAblationEqualsTheAblateIntervention) {
    test::TempDir dir;
    auto model = test::random_model(dir);
    const Sequences seqs = small_pair().clean;
    const Sequences reference = small_pair().corrupted;
    const auto metric = next_token_metric();
    const HeadAblator ablate(*model, seqs, *metric, "mean", reference);
    const MetricValues got = ablate({{1, 2}, {2, 0}});
    const std::string ref_file = (dir / "reference.safetensors").string();
    std::vector<int64_t> flat;
    for (const auto& s : reference) flat.insert(flat.end(), s.begin(), s.end());
    Tensor ids = Tensor::empty({2, 11}, DType::I64);
    std::copy(flat.begin(), flat.end(), ids.data<int64_t>());
    save_safetensors(ref_file, {{"input_ids", ids}});
    const InterventionEnv env{model.get(), nullptr};
    InterventionSet set = InterventionSet::from_json(
        R"([{"type": "ablate", "mode": "mean", "heads": "1:2,2:0", "reference_input": ")" + ref_file + "\"}]", env);
    const MetricValues want = measure(*model, seqs, *metric, [&](size_t) { return &set; });
    EXPECT_EQ(got.values, want.values);
    EXPECT_NE(got.values, measure(*model, seqs, *metric).values);  // it did change something
    EXPECT_THROW(HeadAblator(*model, seqs, *metric, "half"), InvalidArgument);
}

TEST(Patching, PatchingARunWithItselfIsTheIdentity) {
    test::TempDir dir;
    auto model = test::random_model(dir);
    const Sequences seqs = small_pair().clean;
    const auto metric = logit_diff_metric({{7, 9, -1}});
    // Every point of every layer, replaced by the same run's own values: identical logits.
    std::vector<std::string> names;
    for (int64_t l = 0; l < 3; ++l)
        for (const char* kind : {"z", "q", "k", "v", "resid_pre", "resid_mid", "attn_out", "mlp_out", "resid_post"})
            names.push_back(patch_point_name(l, kind));
    const CachedRun clean = cached_run(*model, seqs, *metric, names);
    std::vector<ActivationPatch> patches(seqs.size());
    for (size_t i = 0; i < seqs.size(); ++i)
        for (const std::string& n : names) patches[i].add(n, clean.activations[i].at(n));
    for (size_t i = 0; i < seqs.size(); ++i) {
        KVCache a = model->new_cache(), b = model->new_cache();
        ForwardOptions plain, patched;
        plain.all_logits = patched.all_logits = true;
        patched.hooks = &patches[i];
        const Tensor x = model->forward(seqs[i], a, plain), y = model->forward(seqs[i], b, patched);
        ASSERT_EQ(x.to_floats(), y.to_floats());
    }
    // The sweep on a pair (x, x): every patched run is the run itself.
    const RunPair same{seqs, seqs};
    ActivationPatchingOptions options;
    options.positions = {3, 10};
    const ActivationPatchingResult r = activation_patching(*model, same, *metric, options);
    EXPECT_EQ(r.total, 3 * 4 * 2);
    ASSERT_EQ(r.entries.size(), 24u);
    for (const PatchEntry& e : r.entries) {
        EXPECT_EQ(e.metric, r.clean.primary());
        EXPECT_TRUE(std::isnan(e.score));
    }
}

// The pair differs at positions 2 and 5 only; the metric reads position 10. Attention is the only
// way earlier tokens reach position 10, so every head's z at position 10 from the clean run makes
// the corrupted run's position 10 exactly the clean one.
TEST(Patching, PatchingEveryHeadsZGivesTheCleanMetric) {
    test::TempDir dir;
    auto model = test::random_model(dir);
    const RunPair pair = small_pair();
    const auto metric = logit_diff_metric({{7, 9, -1}});
    std::vector<std::string> names;
    for (int64_t l = 0; l < 3; ++l) names.push_back(patch_point_name(l, "z"));
    const CachedRun clean = cached_run(*model, pair.clean, *metric, names);
    const double corrupted = measure(*model, pair.corrupted, *metric).primary();
    ASSERT_GT(std::fabs(clean.metric.primary() - corrupted), 1e-3);  // the corruption matters
    for (const std::vector<int64_t>& positions : {std::vector<int64_t>{}, std::vector<int64_t>{10}}) {
        std::vector<ActivationPatch> patches(pair.clean.size());
        for (size_t i = 0; i < patches.size(); ++i)
            for (const std::string& n : names) patches[i].add(n, clean.activations[i].at(n), positions);
        const double patched = measure(*model, pair.corrupted, *metric, [&](size_t i) { return &patches[i]; }).primary();
        EXPECT_NEAR(patched, clean.metric.primary(), 1e-5);
    }
    // The same through the sweep: layer 0's residual stream at every position restores everything.
    ActivationPatchingOptions options;
    options.point = "resid_pre";
    options.layers = {0};
    options.per_position = false;
    const ActivationPatchingResult r = activation_patching(*model, pair, *metric, options);
    ASSERT_EQ(r.entries.size(), 1u);
    EXPECT_EQ(r.entries[0].metric, r.clean.primary());
    EXPECT_DOUBLE_EQ(r.entries[0].score, 1.0);
    EXPECT_EQ(r.corrupted.primary(), corrupted);
    // Position 0 (the same BOS in both runs) carries nothing of the corruption: score 0.
    options.per_position = true;
    options.positions = {0, 2};
    const ActivationPatchingResult by_position = activation_patching(*model, pair, *metric, options);
    ASSERT_EQ(by_position.entries.size(), 2u);
    EXPECT_EQ(by_position.entries[0].score, 0.0);
    EXPECT_NE(by_position.entries[1].score, 0.0);
    // Per-head units of k and v are the kv heads.
    options.point = "v";
    options.per_position = false;
    EXPECT_EQ(activation_patching(*model, pair, *metric, options).entries.size(), 2u);
}

// In the last layer nothing downstream of the sender can be frozen, so path patching to the logits
// equals activation patching of the sender's z at END, corrupted into clean.
TEST(Patching, PathPatchingInTheLastLayerEqualsActivationPatching) {
    test::TempDir dir;
    auto model = test::random_model(dir);
    const RunPair pair = small_pair();
    const auto metric = logit_diff_metric({{7, 9, -1}});
    PathPatchingOptions path;
    path.senders = {{2, 0}, {2, 1}, {2, 2}, {2, 3}};
    const PathPatchingResult p = path_patching(*model, pair, *metric, path);
    ActivationPatchingOptions act;
    act.direction = PatchDirection::CorruptedIntoClean;
    act.layers = {2};
    act.positions = {10};
    const ActivationPatchingResult a = activation_patching(*model, pair, *metric, act);
    ASSERT_EQ(p.entries.size(), 4u);
    ASSERT_EQ(a.entries.size(), 4u);
    EXPECT_EQ(p.clean.primary(), a.clean.primary());
    EXPECT_EQ(p.corrupted.primary(), a.corrupted.primary());
    for (size_t k = 0; k < 4; ++k) {
        EXPECT_NEAR(p.entries[k].metric, a.entries[k].metric, 1e-6) << k;
        EXPECT_NEAR(p.entries[k].score, a.entries[k].score, 1e-6) << k;
    }
}

// With every other head and every MLP frozen, the path sender -> logits is the sender's direct
// term: resid_post(END) = clean + result_corrupted[END, h] − result_clean[END, h].
TEST(Patching, PathPatchingWithEverythingFrozenIsTheDirectTerm) {
    test::TempDir dir;
    auto model = test::random_model(dir);
    const RunPair pair = small_pair();
    const auto metric = logit_diff_metric({{7, 9, -1}});
    const HeadRef sender{0, 3};
    PathPatchingOptions path;
    path.senders = {sender};
    path.freeze_mlps = true;
    const PathPatchingResult p = path_patching(*model, pair, *metric, path);
    ASSERT_EQ(p.entries.size(), 1u);
    const std::string result_name = "blocks.0.attn.hook_result", last = "blocks.2.hook_resid_post";
    const CachedRun clean = cached_run(*model, pair.clean, *metric, {result_name, last});
    const CachedRun corrupted = cached_run(*model, pair.corrupted, *metric, {result_name});
    const int64_t C = 32, H = 4, END = 10;
    double want = 0;
    for (size_t i = 0; i < pair.clean.size(); ++i) {
        std::vector<float> x(C);  // (C) the residual at END
        const float* base = clean.activations[i].at(last).data<float>() + END * C;
        const float* rc = clean.activations[i].at(result_name).data<float>() + (END * H + sender.head) * C;
        const float* rx = corrupted.activations[i].at(result_name).data<float>() + (END * H + sender.head) * C;
        for (int64_t c = 0; c < C; ++c) x[c] = base[c] + (rx[c] - rc[c]);
        const Tensor logits = model->unembed(x.data(), 1);  // (1, V)
        want += (double(logits.data<float>()[7]) - logits.data<float>()[9]) / double(pair.clean.size());
    }
    EXPECT_NEAR(p.entries[0].metric, want, 1e-4);
    EXPECT_GT(std::fabs(p.entries[0].metric - p.clean.primary()), 1e-4);  // the sender mattered
    EXPECT_NEAR(p.entries[0].score, patch_score(want, p.clean.primary(), p.corrupted.primary()), 1e-3);
}

TEST(Patching, PathPatchingKnownAnswers) {
    test::TempDir dir;
    auto model = test::random_model(dir);
    const RunPair pair = small_pair();
    const auto metric = logit_diff_metric({{7, 9, -1}});
    // A sender after the receiver reaches nothing: LD_p = LD_c, score 0.
    PathPatchingOptions options;
    options.receivers = parse_path_receivers("1:0-3:q", model->config(), "test");
    ASSERT_EQ(options.receivers.size(), 4u);
    options.senders = {{2, 1}};
    PathPatchingResult r = path_patching(*model, pair, *metric, options);
    EXPECT_EQ(r.entries.at(0).metric, r.clean.primary());
    EXPECT_EQ(r.entries.at(0).score, 0.0);
    // Default senders: every head before the deepest receiver (layer 0 for q receivers of layer 1).
    options.senders.clear();
    r = path_patching(*model, pair, *metric, options);
    EXPECT_EQ(r.entries.size(), 4u);
    for (const PathPatchEntry& e : r.entries) EXPECT_EQ(e.layer, 0);
    // Clean run = corrupted run: nothing moves, the score is undefined.
    r = path_patching(*model, RunPair{pair.clean, pair.clean}, *metric, options);
    for (const PathPatchEntry& e : r.entries) {
        EXPECT_EQ(e.metric, r.clean.primary());
        EXPECT_TRUE(std::isnan(e.score));
    }
    // Receivers through z and the residual stream parse; bad ones are one clear error.
    EXPECT_EQ(parse_path_receivers("logits,2:resid_pre,1:*:z", model->config(), "t").size(), 6u);
    EXPECT_THROW(parse_path_receivers("1:q", model->config(), "t"), InvalidArgument);
    EXPECT_THROW(parse_path_receivers("1:0:resid_pre", model->config(), "t"), InvalidArgument);
    EXPECT_THROW(parse_path_receivers("5:0:q", model->config(), "t"), InvalidArgument);
    EXPECT_THROW(parse_path_receivers("1:0:w", model->config(), "t"), InvalidArgument);
    options.positions = {11};
    EXPECT_THROW(path_patching(*model, pair, *metric, options), InvalidArgument);
    RunPair bad = pair;
    bad.corrupted[1].pop_back();
    EXPECT_THROW(path_patching(*model, bad, *metric, {}), InvalidArgument);
}

TEST(Patching, CausalTracingKnownAnswers) {
    test::TempDir dir;
    auto model = test::random_model(dir);
    const Sequences prompts = small_pair().clean;
    const auto metric = answer_probability_metric({{7, -1, -1}});
    CausalTracingOptions options;
    options.noise_positions = {3, 4};
    options.seed = 5;
    options.point = "resid_pre";
    const CausalTracingResult r = causal_tracing(*model, prompts, *metric, options);
    ASSERT_EQ(r.entries.size(), 3u * 11u);
    ASSERT_GT(std::fabs(r.clean.primary() - r.corrupted.primary()), 1e-6);
    auto at = [&](int64_t layer, int64_t position) { return r.entries.at(layer * 11 + position); };
    // Layer 0's resid_pre before the noised positions is untouched by the noise: restoring it
    // changes nothing; at a noised position it removes that position's noise.
    for (int64_t t = 0; t < 3; ++t) EXPECT_EQ(at(0, t).score, 0.0);  // before the noise: nothing to restore
    EXPECT_NE(at(0, 3).score, 0.0);
    // Noise std: 3 × the std of the clean input embeddings, computed here independently.
    double sum = 0, sq = 0, n = 0;
    for (const auto& p : prompts) {
        ActivationCache cache(std::vector<std::string>{"hook_embed"});
        KVCache kv = model->new_cache();
        ForwardOptions o;
        o.hooks = &cache;
        model->forward(p, kv, o);
        for (float v : cache.at("hook_embed").to_floats()) {
            sum += v;
            sq += double(v) * v;
            n += 1;
        }
    }
    EXPECT_NEAR(r.noise_std, 3.0 * std::sqrt(sq / n - (sum / n) * (sum / n)), 1e-9);
    // The last position's resid_post of the last layer is all the metric reads: recovery 1 exactly.
    options.point = "resid_post";
    options.layers = {2};
    options.positions = {10};
    const CausalTracingResult last = causal_tracing(*model, prompts, *metric, options);
    EXPECT_EQ(last.entries.at(0).metric, last.clean.primary());
    EXPECT_DOUBLE_EQ(last.entries.at(0).score, 1.0);
    // The same seed gives the same noise; another seed other noise; no noise no corruption.
    EXPECT_EQ(causal_tracing(*model, prompts, *metric, options).corrupted.primary(), last.corrupted.primary());
    options.seed = 6;
    EXPECT_NE(causal_tracing(*model, prompts, *metric, options).corrupted.primary(), last.corrupted.primary());
    options.noise_multiplier = 0;
    const CausalTracingResult quiet = causal_tracing(*model, prompts, *metric, options);
    EXPECT_EQ(quiet.corrupted.primary(), quiet.clean.primary());
    EXPECT_TRUE(std::isnan(quiet.entries.at(0).score));
    options.point = "z";
    EXPECT_THROW(causal_tracing(*model, prompts, *metric, options), InvalidArgument);
    options.point = "resid_post";
    options.noise_positions = {11};
    EXPECT_THROW(causal_tracing(*model, prompts, *metric, options), InvalidArgument);
}

// Every sweep stops after the unit during which cancel was set, with the units done so far.
TEST(Patching, SweepsStopEarlyWithPartialResults) {
    test::TempDir dir;
    auto model = test::random_model(dir);
    const RunPair pair = small_pair();
    const auto metric = logit_diff_metric({{7, 9, -1}});
    std::atomic<bool> cancel{false};
    std::vector<std::pair<int64_t, int64_t>> seen;
    ProbeControl control;
    control.cancel = &cancel;
    control.progress = [&](int64_t done, int64_t total) {
        seen.push_back({done, total});
        cancel = done == 2;
    };
    const ActivationPatchingResult a = activation_patching(*model, pair, *metric, {}, control);
    EXPECT_TRUE(a.interrupted);
    EXPECT_EQ(a.entries.size(), 2u);
    EXPECT_EQ(a.total, 3 * 4 * 11);
    EXPECT_EQ(seen, (std::vector<std::pair<int64_t, int64_t>>{{1, 132}, {2, 132}}));
    cancel = false;
    const PathPatchingResult p = path_patching(*model, pair, *metric, {}, control);
    EXPECT_TRUE(p.interrupted);
    EXPECT_EQ(p.entries.size(), 2u);
    EXPECT_EQ(p.total, 12);
    cancel = false;
    const CausalTracingResult t = causal_tracing(*model, pair.clean, *metric, {}, control);
    EXPECT_TRUE(t.interrupted);
    EXPECT_EQ(t.entries.size(), 2u);
    EXPECT_TRUE(json::parse(t.to_json())["interrupted"].get<bool>());
}

// A planted objective: each head has a weight; the objective is 1 − Σ weights of the set.
TEST(HeadSearch, GreedyFollowsAPlantedObjective) {
    ModelConfig c;
    c.n_layer = 2;
    c.n_head = 3;
    const std::map<HeadRef, double> weight = {{{0, 0}, 0.05}, {{0, 1}, 0.3}, {{0, 2}, 0.0},
                                              {{1, 0}, 0.2},  {{1, 1}, 0.1}, {{1, 2}, 0.25}};
    int64_t calls = 0;
    const HeadObjective objective = [&](const std::vector<HeadRef>& heads) {
        ++calls;
        double v = 1;
        for (const HeadRef& h : heads) v -= weight.at(h);
        return ObjectiveValue{v};
    };
    HeadSearchOptions options;
    options.stop_below = 0.5;
    HeadSearchResult r = greedy_head_search(objective, c, options);
    EXPECT_EQ(r.heads(), (std::vector<HeadRef>{{0, 1}, {1, 2}}));
    EXPECT_TRUE(r.reached_target);
    EXPECT_NEAR(r.rounds.back().objective[0], 0.45, 1e-12);
    EXPECT_EQ(r.evaluations, 1 + 6 + 5);
    EXPECT_EQ(calls, r.evaluations);
    // No target: stops at max_heads; maximising picks the lightest heads first.
    options.stop_below.reset();
    options.max_heads = 2;
    options.minimise = false;
    r = greedy_head_search(objective, c, options);
    EXPECT_EQ(r.heads(), (std::vector<HeadRef>{{0, 2}, {0, 0}}));
    EXPECT_FALSE(r.reached_target);
    // Candidates restrict the search; the screen ranks each head alone.
    options = {};
    options.candidates = {{1, 0}, {1, 1}};
    EXPECT_EQ(greedy_head_search(objective, c, options).heads(), (std::vector<HeadRef>{{1, 0}, {1, 1}}));
    options.candidates.clear();
    const HeadScreenResult s = screen_heads(objective, c, options);
    ASSERT_EQ(s.entries.size(), 6u);
    EXPECT_EQ(s.entries.front().head, (HeadRef{0, 1}));
    EXPECT_EQ(s.entries.back().head, (HeadRef{0, 2}));
    // Cancellation returns what was chosen so far.
    std::atomic<bool> cancel{false};
    ProbeControl control;
    control.cancel = &cancel;
    control.progress = [&](int64_t done, int64_t) { cancel = done >= 8; };
    r = greedy_head_search(objective, c, options, control);
    EXPECT_TRUE(r.interrupted);
    EXPECT_EQ(r.rounds.size(), 1u);
    options.candidates = {{2, 0}};
    EXPECT_THROW(greedy_head_search(objective, c, options), InvalidArgument);
}

// The Done-when of issue 5: the smallest head set whose uniform masking drops induction-tiny's
// accuracy below 0.5 is made of layer-1 heads; the set really crosses 0.5 (checked through the
// intervention JSON), and no smaller set of heads does.
TEST(HeadSearch, UniformMaskingFindsTheCopyHeadsOfInductionTiny) {
    auto model = Model::load(induction_dir().string());
    const std::string batch = (induction_dir() / "eval_batch.safetensors").string();
    const Sequences seqs = load_input_ids(batch);
    const auto metric = next_token_metric(load_loss_mask(batch, seqs));
    HeadSearchOptions options;
    options.stop_below = 0.5;
    const HeadSearchResult r =
        greedy_head_search(ablation_objective(*model, seqs, *metric, "uniform", "accuracy", {"-loss"}), model->config(),
                           options);
    ASSERT_TRUE(r.reached_target) << r.to_json();
    const std::vector<HeadRef> heads = r.heads();
    ASSERT_FALSE(heads.empty());
    for (const HeadRef& h : heads) EXPECT_EQ(h.layer, 1) << r.to_json();
    auto accuracy = [&](const std::vector<HeadRef>& set) {
        std::string targets;
        for (const HeadRef& h : set) targets += (targets.empty() ? "" : ",") + fmt::format("{}:{}", h.layer, h.head);
        const InterventionEnv env{model.get(), nullptr};
        InterventionSet interventions = InterventionSet::from_json(
            R"([{"type": "ablate", "mode": "uniform", "heads": ")" + targets + "\"}]", env);
        return measure(*model, seqs, *metric, [&](size_t) { return &interventions; }).at("accuracy");
    };
    EXPECT_LT(accuracy(heads), 0.5);
    EXPECT_NEAR(accuracy(heads), r.rounds.back().objective[0], 1e-12);
    // Smallest: no set of fewer heads, among all 8, crosses 0.5 (every smaller set, exhaustively).
    ASSERT_LE(heads.size(), 4u);
    const int64_t n_heads = 8;
    for (uint32_t bits = 1; bits < (1u << n_heads); ++bits) {
        if (static_cast<size_t>(__builtin_popcount(bits)) >= heads.size()) continue;
        std::vector<HeadRef> set;
        for (int64_t k = 0; k < n_heads; ++k)
            if (bits & (1u << k)) set.push_back({k / 4, k % 4});
        EXPECT_GE(accuracy(set), 0.5) << "a smaller set crosses 0.5: " << bits;
    }
}

}  // namespace
}  // namespace attnlab
