// The `logit-lens` probe: direct logit attribution adds up to the model's own (pre-softcap)
// logit on the fixture models (RMSNorm, LayerNorm with centering and learned positions, tied and
// untied, bf16) and on a random GPT-2-style model; the last layer's lens is the model's logits;
// top-k against the logits tensor; the CLI's JSON and errors.
#include "test_support.h"

#include <attnlab/error.h>
#include <attnlab/probe_logit_lens.h>

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <numeric>

namespace attnlab {
namespace {

using nlohmann::json;

std::vector<int32_t> some_ids(int64_t n, int64_t V, uint32_t seed) {
    std::vector<int32_t> ids;
    uint32_t x = seed * 2654435761u + 7u;
    for (int64_t i = 0; i < n; ++i) {
        x = x * 1664525u + 1013904223u;
        ids.push_back(static_cast<int32_t>((x >> 8) % static_cast<uint32_t>(V)));
    }
    return ids;
}

// Every attribution adds up to the logit, and the logit is the model's own.
void expect_dla_adds_up(const Model& model, const std::vector<int32_t>& ids, const std::string& name) {
    const int64_t V = model.config().vocab_size, T = static_cast<int64_t>(ids.size());
    LogitLensOptions options;
    options.positions = {0, T / 2, -1};
    options.targets = {ids[1], static_cast<int32_t>(V - 1)};
    for (bool own : {false, true}) {
        if (own) options.targets.clear();  // the model's own next token
        const LogitLensResult r = probe_logit_lens(model, ids, options);
        KVCache cache = model.new_cache();
        ForwardOptions fo;
        fo.all_logits = true;
        const Tensor logits = model.forward(ids, cache, fo);  // (T, V), post-softcap
        ASSERT_EQ(r.positions.size(), 3u);
        for (const LensPosition& p : r.positions) {
            ASSERT_EQ(p.attribution.size(), p.targets.size());
            const float* row = logits.data<float>() + p.position * V;
            if (own) {
                EXPECT_EQ(p.targets[0], std::max_element(row, row + V) - row) << name;
            }
            for (const LogitAttribution& a : p.attribution) {
                SCOPED_TRACE(fmt::format("{} position {} target {}", name, p.position, a.target));
                if (model.config().final_softcap == 0) {
                    EXPECT_NEAR(a.logit, row[a.target], 1e-5 * std::max(1.0, std::fabs(a.logit)));
                }
                double sum = a.embed + a.pos_embed + a.norm_bias, magnitude = std::fabs(a.embed) + std::fabs(a.pos_embed);
                for (size_t l = 0; l < a.attn.size(); ++l) {
                    sum += a.attn[l] + a.mlp[l];
                    magnitude += std::fabs(a.attn[l]) + std::fabs(a.mlp[l]);
                    if (a.heads.empty()) continue;
                    const double heads = std::accumulate(a.heads[l].begin(), a.heads[l].end(), 0.0);
                    EXPECT_NEAR(heads + a.attn_bias[l], a.attn[l], 1e-9 + 1e-12 * std::fabs(a.attn[l]));
                }
                EXPECT_NEAR(sum, a.total, 1e-9 * std::max(1.0, magnitude));
                EXPECT_NEAR(a.total, a.logit, 1e-4 * std::max(1.0, std::fabs(a.logit))) << "terms' magnitude " << magnitude;
                EXPECT_EQ(static_cast<int64_t>(a.attn.size()), model.config().n_layer);
            }
        }
    }
}

TEST(LogitLensProbe, AttributionAddsUpOnFixtureModels) {
    for (const char* name : {"induction-tiny", "tinylm", "gpt2-tiny", "qwen2-tiny"}) {
        auto model = Model::load((test::fixtures_dir() / "models" / name).string());
        const int64_t V = model->config().vocab_size;
        std::vector<int32_t> ids = some_ids(24, V, 3);
        ids[0] = static_cast<int32_t>(model->config().bos_token_id.value_or(0));
        expect_dla_adds_up(*model, ids, name);
        const LogitLensResult r = probe_logit_lens(*model, ids);
        ASSERT_EQ(r.positions.size(), 1u);
        EXPECT_EQ(r.positions[0].attribution[0].heads.size(), static_cast<size_t>(model->config().n_layer)) << name;
        EXPECT_EQ(r.positions[0].attribution[0].heads[0].size(), static_cast<size_t>(model->config().n_head)) << name;
        if (std::string(name) == "gpt2-tiny") {
            EXPECT_NE(r.positions[0].attribution[0].pos_embed, 0.0);  // learned positions are a component
            EXPECT_NE(r.positions[0].attribution[0].norm_bias, 0.0);  // LayerNorm's bias term
        }
    }
}

TEST(LogitLensProbe, AttributionAddsUpOnRandomGpt2) {
    test::TempDir tmp;
    const json config = {{"model_type", "gpt2"},   {"architectures", {"GPT2LMHeadModel"}},
                         {"vocab_size", 97},       {"n_embd", 48},
                         {"n_layer", 3},           {"n_head", 4},
                         {"n_positions", 64},      {"layer_norm_epsilon", 1e-5},
                         {"activation_function", "gelu_new"}};
    test::write_file(tmp / "config.json", config.dump(2));
    const auto r = test::run_cli({"make-model", "--config", (tmp / "config.json").string(), "--out",
                                  (tmp / "model").string(), "--dtype", "f32", "--std", "0.2", "--seed", "11"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    auto model = Model::load((tmp / "model").string());
    expect_dla_adds_up(*model, some_ids(40, 97, 5), "random gpt2");
}

TEST(LogitLensProbe, LastLayerIsTheModelsLogitsAndTopKMatches) {
    for (const char* name : {"tinylm", "gpt2-tiny"}) {
        auto model = Model::load((test::fixtures_dir() / "models" / name).string());
        const int64_t V = model->config().vocab_size, L = model->config().n_layer;
        const std::vector<int32_t> ids = some_ids(17, V, 9);
        LogitLensOptions options;
        options.positions = {3, -1};
        options.top_k = 7;
        options.targets = {5, 17};
        options.attribution = false;
        const LogitLensResult r = probe_logit_lens(*model, ids, options);
        KVCache cache = model->new_cache();
        ForwardOptions fo;
        fo.all_logits = true;
        const Tensor logits = model->forward(ids, cache, fo);  // (T, V)
        for (const LensPosition& p : r.positions) {
            ASSERT_EQ(static_cast<int64_t>(p.layers.size()), L);
            EXPECT_TRUE(p.attribution.empty());
            const float* row = logits.data<float>() + p.position * V;
            double z = 0;
            const float max = *std::max_element(row, row + V);
            for (int64_t v = 0; v < V; ++v) z += std::exp(double(row[v]) - max);
            const LensLayer& last = p.layers.back();
            // Top-k: the k largest logits of the tensor, in order, with softmax probabilities.
            std::vector<int32_t> order(static_cast<size_t>(V));
            std::iota(order.begin(), order.end(), 0);
            std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return row[a] > row[b]; });
            ASSERT_EQ(last.top.size(), 7u);
            for (size_t k = 0; k < 7; ++k) {
                EXPECT_EQ(last.top[k].id, order[k]) << name << " rank " << k;
                // Equal to float rounding: the lm_head product may block differently for P rows than for T.
                EXPECT_NEAR(last.top[k].logit, row[order[k]], 1e-5 * std::max(1.0f, std::fabs(row[order[k]])));
                EXPECT_NEAR(last.top[k].prob, std::exp(double(row[order[k]]) - max) / z, 1e-5 * last.top[k].prob);
            }
            for (size_t k = 0; k < 2; ++k) {
                const int32_t t = options.targets[k];
                EXPECT_NEAR(last.target_logit[k], row[t], 1e-5 * std::max(1.0f, std::fabs(row[t])));
                EXPECT_EQ(last.target_rank[k], std::count_if(row, row + V, [&](float x) { return x > row[t]; }));
            }
            // Earlier layers are genuinely different readings of the stream.
            EXPECT_NE(p.layers.front().target_logit[0], last.target_logit[0]);
        }
    }
}

TEST(LogitLensProbe, BadInputIsAnError) {
    auto model = Model::load((test::fixtures_dir() / "models" / "induction-tiny").string());
    LogitLensOptions options;
    options.positions = {5};
    EXPECT_THROW(probe_logit_lens(*model, {0, 3, 4}, options), InvalidArgument);
    options.positions = {};
    options.targets = {256};
    EXPECT_THROW(probe_logit_lens(*model, {0, 3, 4}, options), InvalidArgument);
    EXPECT_THROW(probe_logit_lens(*model, {}), InvalidArgument);
}

TEST(LogitLensProbe, CliWritesJsonAndRejectsBadInput) {
    test::TempDir tmp;
    const std::string dir = test::prepare_model_dir("tinylm", tmp).string();
    auto r = test::run_cli({"probe", "logit-lens", "-m", dir, "-p", "And the LORD said unto Moses", "--positions",
                            "-1,2", "--target", " the", "--json", (tmp / "lens.json").string()});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE(r.out.find("| layer |"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("DLA of"), std::string::npos) << r.out;
    const json j = json::parse(test::read_file(tmp / "lens.json"));
    EXPECT_EQ(j["probe"], "logit-lens");
    ASSERT_EQ(j["positions"].size(), 2u);
    for (const char* key : {"position", "token", "next_token", "targets", "target_text", "lens", "attribution"})
        EXPECT_TRUE(j["positions"][0].contains(key)) << key;
    EXPECT_EQ(j["positions"][0]["lens"].size(), 6u);
    for (const char* key : {"target", "logit", "total", "embed", "pos_embed", "norm_bias", "heads", "attn_bias", "attn", "mlp"})
        EXPECT_TRUE(j["positions"][0]["attribution"][0].contains(key)) << key;
    EXPECT_EQ(j["positions"][0]["lens"][0]["top"].size(), 5u);
    EXPECT_TRUE(j["positions"][0]["lens"][0]["top"][0].contains("text"));

    for (std::vector<std::string> bad : {std::vector<std::string>{"--positions", "99"},
                                         std::vector<std::string>{"--target", "LORD said unto"},
                                         std::vector<std::string>{"--positions", "x"}}) {
        std::vector<std::string> args = {"probe", "logit-lens", "-m", dir, "-p", "And the LORD"};
        args.insert(args.end(), bad.begin(), bad.end());
        r = test::run_cli(args);
        EXPECT_EQ(r.exit_code, 1) << bad[1];
        EXPECT_NE(r.err.find("attnlab: error:"), std::string::npos) << r.err;
        EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    }
}

}  // namespace
}  // namespace attnlab
