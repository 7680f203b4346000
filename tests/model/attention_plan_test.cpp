// Re-assigning attention on a loaded model: the plan parsers, `native`, per-layer and per-head
// assignments (checked through hook_z: a head's output at layer 0 depends only on its own
// spec), and tinylm end to end with a streaming hybrid.
#include "test_support.h"

#include <attnlab/error.h>
#include <attnlab/hooks.h>
#include <attnlab/model.h>

#include <gtest/gtest.h>

#include <random>

namespace attnlab {
namespace {

std::vector<int32_t> random_tokens(int64_t n, int64_t vocab, uint32_t seed) {
    std::mt19937 rng(seed);
    std::vector<int32_t> ids(static_cast<size_t>(n));
    for (auto& id : ids) id = static_cast<int32_t>(rng() % vocab);
    return ids;
}

Tensor run(const Model& model, const std::vector<int32_t>& ids, ActivationCache* cache = nullptr) {
    KVCache kv = model.new_cache();
    ForwardOptions o;
    o.all_logits = true;
    o.hooks = cache;
    return model.forward(ids, kv, o).clone();
}

class AttentionPlanTest : public ::testing::Test {
protected:
    void SetUp() override {
        model_ = Model::load(std::string(ATTNLAB_SOURCE_DIR) + "/models/tinylm");
    }
    std::unique_ptr<Model> model_;
};

TEST_F(AttentionPlanTest, ParsesLayerAndHeadForms) {
    auto layers = parse_attention_layers("0-1:causal; 2-:causal+streaming(sink=4,window=64) ;3,5:native");
    ASSERT_EQ(layers.size(), 4u);
    EXPECT_EQ(layers[0].layer_begin, 0);
    EXPECT_EQ(layers[0].layer_end, 2);
    EXPECT_EQ(layers[1].layer_begin, 2);
    EXPECT_EQ(layers[1].layer_end, -1);
    EXPECT_EQ(layers[1].spec, "causal+streaming(sink=4,window=64)");
    EXPECT_EQ(layers[2].layer_begin, 3);
    EXPECT_EQ(layers[3].layer_end, 6);
    auto heads = parse_attention_heads("2:0-3:causal+window(size=8)");
    ASSERT_EQ(heads.size(), 1u);
    EXPECT_EQ(heads[0].head_begin, 0);
    EXPECT_EQ(heads[0].head_end, 4);
    for (const char* bad : {"causal", "x:causal", "3-1:causal", "1-2", ";"})
        EXPECT_THROW(parse_attention_layers(bad), InvalidArgument) << bad;
    EXPECT_THROW(parse_attention_heads("1:causal"), InvalidArgument);
    // Out-of-range layers/heads and bad specs are refused when applied.
    EXPECT_THROW(model_->set_attention(parse_attention_layers("6:causal")), InvalidArgument);
    EXPECT_THROW(model_->set_attention(parse_attention_heads("0:7-8:causal")), InvalidArgument);
    EXPECT_THROW(model_->set_attention(parse_attention_layers("0:causl")), InvalidArgument);
}

TEST_F(AttentionPlanTest, NativeSpecAndPlainCausalAreTheModel) {
    EXPECT_EQ(model_->native_attention(0).text(), "causal");
    const auto ids = random_tokens(40, model_->config().vocab_size, 1);
    const std::vector<float> base = run(*model_, ids).to_floats();
    model_->set_attention(parse_attention_layers("0-:native"));
    EXPECT_EQ(run(*model_, ids).to_floats(), base);
    model_->set_attention({{0, -1, 0, -1, "causal"}});
    EXPECT_EQ(run(*model_, ids).to_floats(), base);
    // A streaming window wider than the sequence keeps every key: the same logits.
    model_->set_attention({{0, -1, 0, -1, "causal+streaming(sink=4,window=64)"}});
    EXPECT_EQ(run(*model_, ids).to_floats(), base);
}

TEST_F(AttentionPlanTest, PerHeadAssignmentsRunEachHeadsOwnSpec) {
    const int64_t H = model_->config().n_head, D = model_->config().head_dim;
    const auto ids = random_tokens(90, model_->config().vocab_size, 2);
    const std::string a = "causal+window(size=8)", b = "causal+alibi+sinks";
    auto z_of = [&](const std::vector<AttentionAssignment>& plan) {
        model_->set_attention(plan);
        ActivationCache cache(std::vector<std::string>{"blocks.0.attn.hook_z", "blocks.3.attn.hook_z"});
        KVCache kv = model_->new_cache();
        (void)run(*model_, ids, &cache);
        return std::make_pair(cache.at("blocks.0.attn.hook_z").to_floats(), cache.at("blocks.3.attn.hook_z").to_floats());
    };
    // `sinks` needs sink logits the model does not have: refused at forward time.
    model_->set_attention({{0, 1, 0, -1, b}});
    KVCache kv = model_->new_cache();
    EXPECT_THROW(model_->forward(ids, kv), InvalidArgument);

    const std::string b_ok = "causal+alibi";
    const auto all_a = z_of({{0, -1, 0, -1, a}});
    const auto all_b = z_of({{0, -1, 0, -1, b_ok}});
    const auto mixed = z_of(parse_attention_heads("0-:0-2:" + a + ";0-:3-7:" + b_ok));
    // Layer 0 sees the same input in all three runs: heads 0-2 equal the all-A run, 3-7 all-B.
    for (int64_t t = 0; t < 90; ++t)
        for (int64_t h = 0; h < H; ++h)
            for (int64_t d = 0; d < D; ++d) {
                const size_t i = static_cast<size_t>((t * H + h) * D + d);
                EXPECT_EQ(mixed.first[i], (h < 3 ? all_a : all_b).first[i]) << t << " " << h;
            }
    // Deeper layers see different inputs: the mixed model is a different model.
    EXPECT_NE(mixed.second, all_a.second);
    EXPECT_NE(mixed.second, all_b.second);
}

TEST(AttentionPlanCli, TinylmRunsAStreamingHybridEndToEnd) {
    const std::string model = std::string(ATTNLAB_SOURCE_DIR) + "/models/tinylm";
    auto r = test::run_cli({"generate", "-m", model, "-p", "And the LORD said unto Moses", "-n", "24",
                               "--attn-layers", "0-1:causal;2-:causal+streaming(sink=4,window=64)"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_GT(r.out.size(), 40u);
    r = test::run_cli({"perplexity", "-m", model, "-f", std::string(ATTNLAB_SOURCE_DIR) + "/data/heldout.txt",
                          "--context", "256", "--attn-layers", "0-1:causal;2-:causal+streaming(sink=4,window=64)"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE(r.out.find("PPL = "), std::string::npos) << r.out;
    r = test::run_cli({"generate", "-m", model, "-p", "x", "--attn-layers", "0-9:causal"});
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_NE(r.err.find("out of range"), std::string::npos) << r.err;
    r = test::run_cli({"generate", "-m", model, "-p", "x", "--attn", "causal+window(size=0)"});
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_NE(r.err.find("size must be >= 1"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace attnlab
