// Hook points: names and shapes, identities between them, editing a tensor in a hook, and
// KV-cache decoding equal to a full forward pass.
#include "test_support.h"

#include <attnlab/error.h>
#include <attnlab/model.h>

#include <gtest/gtest.h>

#include <cmath>

namespace attnlab::test {
namespace {

double max_diff(const Tensor& a, const Tensor& b) {
    std::vector<float> x = a.to_floats(), y = b.to_floats();
    EXPECT_EQ(x.size(), y.size());
    double m = 0;
    for (size_t i = 0; i < std::min(x.size(), y.size()); ++i) m = std::max(m, std::fabs(double(x[i]) - y[i]));
    return m;
}

class HooksTest : public ::testing::Test {
protected:
    void SetUp() override {
        dir_ = prepare_model_dir("qwen2-tiny", tmp_);
        model_ = Model::load(dir_.string());
    }
    TempDir tmp_;
    std::filesystem::path dir_;
    std::unique_ptr<Model> model_;
    std::vector<int32_t> ids_ = {5, 17, 300, 42, 9, 1000, 7, 7, 3};
};

TEST_F(HooksTest, EveryPointHasItsShapeAndTheIdentitiesHold) {
    const ModelConfig& c = model_->config();
    ActivationCache cache(".*");
    ForwardOptions opt;
    opt.hooks = &cache;
    opt.all_logits = true;
    KVCache kv;
    Tensor logits = model_->forward(ids_, kv, opt);
    const int64_t T = ids_.size(), C = c.hidden_size, H = c.n_head, Hkv = c.n_head_kv, D = c.head_dim;
    EXPECT_EQ(cache.at("hook_embed").shape(), (Shape{T, C}));
    for (int64_t l = 0; l < c.n_layer; ++l) {
        auto at = [&](const std::string& s) { return cache.at("blocks." + std::to_string(l) + "." + s); };
        EXPECT_EQ(at("attn.hook_q").shape(), (Shape{T, H, D}));
        EXPECT_EQ(at("attn.hook_rot_k").shape(), (Shape{T, Hkv, D}));
        EXPECT_EQ(at("attn.hook_pattern").shape(), (Shape{H, T, T}));
        EXPECT_EQ(at("attn.hook_attn_scores").shape(), (Shape{H, T, T}));
        EXPECT_EQ(at("attn.hook_result").shape(), (Shape{T, H, C}));
        EXPECT_EQ(at("mlp.hook_post").shape(), (Shape{T, c.intermediate_size}));
        // resid_mid = resid_pre + attn_out; resid_post = resid_mid + mlp_out.
        Tensor pre = at("hook_resid_pre"), mid = at("hook_resid_mid"), post = at("hook_resid_post");
        std::vector<float> p = pre.to_floats(), a = at("hook_attn_out").to_floats(), m = mid.to_floats();
        for (size_t i = 0; i < p.size(); ++i) EXPECT_NEAR(p[i] + a[i], m[i], 1e-5 * (1 + std::fabs(m[i])));
        // Pattern rows sum to 1 and are causal.
        std::vector<float> pat = at("attn.hook_pattern").to_floats();
        for (int64_t h = 0; h < H; ++h)
            for (int64_t i = 0; i < T; ++i) {
                double sum = 0;
                for (int64_t j = 0; j < T; ++j) {
                    sum += pat[(h * T + i) * T + j];
                    if (j > i) {
                        EXPECT_EQ(pat[(h * T + i) * T + j], 0.0f);
                    }
                }
                EXPECT_NEAR(sum, 1.0, 1e-5);
            }
        // Per-head results sum (plus nothing: qwen2's o_proj has no bias) to attn_out.
        std::vector<float> result = at("attn.hook_result").to_floats();
        for (int64_t t = 0; t < T; ++t)
            for (int64_t i = 0; i < C; ++i) {
                double s = 0;
                for (int64_t h = 0; h < H; ++h) s += result[(t * H + h) * C + i];
                EXPECT_NEAR(s, a[t * C + i], 1e-4 * (1 + std::fabs(a[t * C + i])));
            }
    }
    EXPECT_LT(max_diff(cache.at("unembed.hook_out"), logits), 1e-6);
}

// A hook that zeroes a head's z removes exactly that head's contribution to the residual.
class ZeroHead : public Hooks {
public:
    ZeroHead(int64_t layer, int64_t head, int64_t D) : name_("blocks." + std::to_string(layer) + ".attn.hook_z"), head_(head), D_(D) {}
    bool wants(const std::string& n) const override { return n == name_; }
    void on(const std::string&, Tensor& z) override {  // (T, H, D)
        for (int64_t t = 0; t < z.size(0); ++t)
            for (int64_t d = 0; d < D_; ++d) z.data<float>()[(t * z.size(1) + head_) * D_ + d] = 0.0f;
    }

private:
    std::string name_;
    int64_t head_, D_;
};

TEST_F(HooksTest, EditingAHookChangesTheForwardPassExactlyThere) {
    const ModelConfig& c = model_->config();
    ActivationCache clean_cache(std::vector<std::string>{"blocks.1.attn.hook_result", "blocks.1.hook_attn_out"});
    ForwardOptions opt;
    opt.hooks = &clean_cache;
    KVCache kv;
    model_->forward(ids_, kv, opt);
    ZeroHead ablate(1, 2, c.head_dim);
    ActivationCache ablated_cache(std::vector<std::string>{"blocks.1.hook_attn_out"});
    HookChain chain;
    chain.add(&ablate);
    chain.add(&ablated_cache);
    opt.hooks = &chain;
    KVCache kv2;
    Tensor logits_ablated = model_->forward(ids_, kv2, opt);
    KVCache kv3;
    Tensor logits_clean = model_->forward(ids_, kv3);
    EXPECT_GT(max_diff(logits_ablated, logits_clean), 1e-4);
    // attn_out(ablated) = attn_out(clean) - result[:, head 2, :]
    std::vector<float> clean = clean_cache.at("blocks.1.hook_attn_out").to_floats();
    std::vector<float> ablated = ablated_cache.at("blocks.1.hook_attn_out").to_floats();
    std::vector<float> result = clean_cache.at("blocks.1.attn.hook_result").to_floats();
    const int64_t T = ids_.size(), H = c.n_head, C = c.hidden_size;
    for (int64_t t = 0; t < T; ++t)
        for (int64_t i = 0; i < C; ++i)
            EXPECT_NEAR(ablated[t * C + i], clean[t * C + i] - result[(t * H + 2) * C + i], 1e-4);
}

TEST_F(HooksTest, CachedDecodeEqualsFullForward) {
    ForwardOptions all;
    all.all_logits = true;
    KVCache full_cache;
    Tensor full = model_->forward(ids_, full_cache, all);  // (T, V)
    KVCache cache;
    std::vector<int32_t> prefix(ids_.begin(), ids_.begin() + 4);
    model_->forward(prefix, cache);
    for (size_t t = 4; t < ids_.size(); ++t) {
        Tensor step = model_->forward(std::span<const int32_t>(&ids_[t], 1), cache);  // (1, V)
        EXPECT_LT(max_diff(step, full.slice(0, t, t + 1)), 1e-4) << "position " << t;
    }
    EXPECT_EQ(cache.n_past(), static_cast<int64_t>(ids_.size()));
}

TEST_F(HooksTest, RejectsBadIds) {
    KVCache kv;
    std::vector<int32_t> bad = {1, static_cast<int32_t>(model_->config().vocab_size)};
    EXPECT_THROW(model_->forward(bad, kv), InvalidArgument);
    std::vector<int32_t> empty;
    EXPECT_THROW(model_->forward(empty, kv), InvalidArgument);
}

}  // namespace
}  // namespace attnlab::test
