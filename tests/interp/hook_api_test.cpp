// The hook API's run-with-cache options: position slices, stop at a layer, and attention
// statistics delivered per layer during prefill and decode.
#include "test_support.h"

#include <attnlab/error.h>
#include <attnlab/hooks.h>
#include <attnlab/model.h>
#include <attnlab/safetensors.h>

#include <gtest/gtest.h>

#include <cmath>

namespace attnlab {
namespace {

std::unique_ptr<Model> induction_tiny() {
    return Model::load((test::fixtures_dir() / "models" / "induction-tiny").string());
}

const std::vector<int32_t> kIds = {0, 17, 99, 4, 250, 31, 17, 99, 4};

TEST(HookApi, PositionSliceKeepsTheRowsOfTheFullRun) {
    auto model = induction_tiny();
    ActivationCache full(std::string("blocks\\.1\\.(hook_resid_pre|attn\\.hook_pattern)"));
    ActivationCache sliced(std::string("blocks\\.1\\.(hook_resid_pre|attn\\.hook_pattern)"));
    sliced.keep_positions(2, 5);
    for (ActivationCache* cache : {&full, &sliced}) {
        KVCache kv = model->new_cache();
        ForwardOptions fo;
        fo.hooks = cache;
        model->forward(kIds, kv, fo);
    }
    const Tensor& r_full = full.at("blocks.1.hook_resid_pre");      // (T, C)
    const Tensor& r_cut = sliced.at("blocks.1.hook_resid_pre");     // (3, C)
    const Tensor& p_full = full.at("blocks.1.attn.hook_pattern");   // (H, T, T)
    const Tensor& p_cut = sliced.at("blocks.1.attn.hook_pattern");  // (H, 3, T)
    const int64_t C = r_full.size(1), H = p_full.size(0), T = static_cast<int64_t>(kIds.size());
    ASSERT_EQ(r_cut.shape(), (Shape{3, C}));
    ASSERT_EQ(p_cut.shape(), (Shape{H, 3, T}));
    for (int64_t t = 0; t < 3; ++t)
        for (int64_t c = 0; c < C; ++c) EXPECT_EQ(r_cut.data<float>()[t * C + c], r_full.data<float>()[(t + 2) * C + c]);
    for (int64_t h = 0; h < H; ++h)
        for (int64_t t = 0; t < 3; ++t)
            for (int64_t j = 0; j < T; ++j)
                EXPECT_EQ(p_cut.data<float>()[(h * 3 + t) * T + j], p_full.data<float>()[(h * T + t + 2) * T + j]);
    EXPECT_THROW(sliced.keep_positions(4, 4), InvalidArgument);
}

TEST(HookApi, StopAtLayerRunsOnlyTheFirstLayers) {
    auto model = induction_tiny();
    ActivationCache cache(std::string("blocks\\.\\d+\\.hook_resid_post"));
    KVCache kv = model->new_cache();
    ForwardOptions fo;
    fo.hooks = &cache;
    fo.stop_at_layer = 1;
    const Tensor logits = model->forward(kIds, kv, fo);
    EXPECT_FALSE(logits.defined());
    EXPECT_EQ(cache.entries().size(), 1u);  // blocks.0 only
    EXPECT_EQ(kv.n_past(), 0);              // the cache did not advance
    // The layer it ran is the full run's.
    ActivationCache all(std::string("blocks\\.0\\.hook_resid_post"));
    KVCache kv2 = model->new_cache();
    ForwardOptions fo2;
    fo2.hooks = &all;
    model->forward(kIds, kv2, fo2);
    const Tensor& a = cache.at("blocks.0.hook_resid_post");
    const Tensor& b = all.at("blocks.0.hook_resid_post");
    for (int64_t i = 0; i < a.numel(); ++i) EXPECT_EQ(a.data<float>()[i], b.data<float>()[i]);
}

// Statistics arrive for every layer, in prefill and in each decode step, with the decode
// step's top-1 key equal to the argmax of the pattern of the same step.
class StatsRecorder : public Hooks {
public:
    bool wants(const std::string& name) const override { return name.ends_with("attn.hook_pattern"); }
    void on(const std::string& name, Tensor& pattern) override { patterns.push_back(pattern.clone()); }
    std::optional<AttentionStatsRequest> attention_stats(int64_t, int64_t) const override {
        AttentionStatsRequest r;
        r.top = true;
        r.entropy = true;
        return r;
    }
    void on_attention_stats(const LayerAttentionStats& st) override { stats.push_back(st); }
    std::vector<Tensor> patterns;
    std::vector<LayerAttentionStats> stats;
};

TEST(HookApi, StatisticsInPrefillAndDecode) {
    auto model = induction_tiny();
    StatsRecorder rec;
    KVCache kv = model->new_cache();
    ForwardOptions fo;
    fo.hooks = &rec;
    model->forward(kIds, kv, fo);
    const int32_t next = 55;
    model->forward(std::span<const int32_t>(&next, 1), kv, fo);  // one decode step
    const int64_t L = model->config().n_layer, H = model->config().n_head, T = static_cast<int64_t>(kIds.size());
    ASSERT_EQ(static_cast<int64_t>(rec.stats.size()), 2 * L);
    for (size_t k = 0; k < rec.stats.size(); ++k) {
        const LayerAttentionStats& st = rec.stats[k];
        const Tensor& p = rec.patterns[k];  // (H, T, S)
        const bool decode = k >= static_cast<size_t>(L);
        EXPECT_EQ(st.T, decode ? 1 : T);
        EXPECT_EQ(st.S, T + (decode ? 1 : 0));
        EXPECT_EQ(st.pos0, decode ? T : 0);
        for (int64_t t = 0; t < st.T; ++t)
            for (int64_t h = 0; h < H; ++h) {
                const float* row = p.data<float>() + (h * st.T + t) * st.S;
                int64_t best = 0;
                double entropy = 0;
                for (int64_t j = 0; j < st.S; ++j) {
                    if (row[j] > row[best]) best = j;
                    if (row[j] > 0) entropy -= row[j] * std::log(double(row[j]));
                }
                EXPECT_EQ(st.top_key.data<int64_t>()[t * H + h], best) << "layer " << st.layer << " t " << t;
                EXPECT_NEAR(st.entropy.data<float>()[t * H + h], entropy, 1e-5);
            }
    }
}

TEST(HookApi, CliPositionsAndStopAtLayer) {
    test::TempDir tmp;
    const std::string model = (test::fixtures_dir() / "models" / "induction-tiny").string();
    auto r = test::run_cli({"run", "-m", model, "--ids", "0,5,6,7,8,9", "--hooks", "blocks\\.0\\.hook_resid_post",
                            "--positions", "1:3", "--stop-at-layer", "1", "--save", (tmp / "out.safetensors").string()});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const SafetensorsFile f = load_safetensors((tmp / "out.safetensors").string());
    EXPECT_EQ(f.tensors.count("logits"), 0u);
    EXPECT_EQ(f.tensors.at("blocks.0.hook_resid_post").size(0), 2);
    r = test::run_cli({"run", "-m", model, "--ids", "0,5,6", "--hooks", "x", "--positions", "3:1", "--save",
                       (tmp / "o.safetensors").string()});
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_NE(r.err.find("--positions"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace attnlab
