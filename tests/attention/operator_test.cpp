// The tiled attention kernel against the float64 reference for every registered mechanism,
// alone, with `causal` and in combinations, over odd sizes, T=1 decode, T<S chunks,
// GQA 1/2/4/8, several head dims, f32 and bf16 inputs, batches, head ranges, explicit query
// positions and fully masked rows. Inputs are fresh random draws (seeded per case).
#include "attention_case.h"

#include <attnlab/error.h>
#include <attnlab/threads.h>

#include <gtest/gtest.h>

namespace attnlab {
namespace {

using testing::AttentionCase;
using testing::AttentionShape;
using testing::expect_matches_reference;

// Shapes: decode at the start, small square, decode over several key tiles, a chunk with T<S
// and MQA (Dv != D), MHA with many heads, GQA 8 over three tiles, and a wide head dim.
const std::vector<AttentionShape> kShapes = {
    {1, 1, 1, 1, 1, 32, 32},      {1, 13, 13, 4, 4, 32, 32},     {1, 1, 300, 8, 2, 64, 64},
    {1, 37, 300, 8, 1, 48, 40},   {1, 70, 70, 8, 8, 32, 32},     {1, 29, 541, 16, 2, 128, 128},
    {1, 45, 90, 4, 2, 256, 256},  {2, 19, 33, 4, 2, 64, 64},
};

// Every registry entry alone and after `causal`, and the combinations the docs promise.
std::vector<std::string> swept_specs() {
    std::vector<std::string> specs;
    for (const MechanismInfo& info : mechanism_registry()) {
        specs.push_back(info.example);
        if (info.name != "causal") specs.push_back("causal+" + info.example);
    }
    for (const char* combo : {
             "softcap(cap=2)+causal+window(size=5)",       // Gemma-2 sliding layer
             "alibi+causal+sinks",                         // biased scores + learned sinks
             "temperature(t=0.5)+softcap(cap=2)+causal",   // modifiers in order ...
             "softcap(cap=2)+temperature(t=0.5)+causal",   // ... the other order differs
             "decay(gamma=0.8)+causal+streaming(sink=2,window=4)+sigmoid(bias=-1)",
             "causal+document+window(size=7)",
             "causal+power(block=4,window=2,sink=1)+chunked(size=20)",
             "prefix(len=6)+relu",
             "causal+window(size=1024)",
             "causal+power(block=16,window=2,sink=1)",
         })
        specs.push_back(combo);
    return specs;
}

TEST(AttentionOperator, EveryMechanismMatchesReference) {
    uint32_t seed = 1;
    for (const std::string& text : swept_specs()) {
        const AttentionSpec spec = AttentionSpec::parse(text);
        for (const AttentionShape& shape : kShapes) {
            AttentionCase c(shape, DType::F32, seed++);
            expect_matches_reference(spec, c, /*rows=*/shape.S <= 300);
        }
    }
}

TEST(AttentionOperator, Bf16InputsMatchReference) {
    uint32_t seed = 1000;
    for (const std::string& text : swept_specs()) {
        const AttentionSpec spec = AttentionSpec::parse(text);
        for (const AttentionShape& shape : {kShapes[2], kShapes[3], kShapes[5]}) {
            AttentionCase c(shape, DType::BF16, seed++);
            expect_matches_reference(spec, c, false);
        }
    }
}

TEST(AttentionOperator, FullyMaskedRowsGiveZeroAndMinusInfinity) {
    // Queries far past the keys: the window keeps nothing for them; chunked likewise.
    for (const char* text : {"causal+window(size=3)", "chunked(size=4)", "causal+window(size=3)+sinks",
                             "window(size=3)+sigmoid", "window(size=3)+relu"}) {
        const AttentionSpec spec = AttentionSpec::parse(text);
        AttentionShape shape{1, 9, 20, 4, 2, 32, 32, 16};  // positions 16..24 over keys 0..19
        AttentionCase c(shape, DType::F32, 77);
        expect_matches_reference(spec, c, true);
        testing::AttentionResult r;
        AttentionInputs in = c.inputs();
        AttentionOutputs o = r.outputs(c.shape, true);
        attention(spec, in, o);
        const int64_t t = 8;  // position 24: nothing within 3 of it, and chunk 6 holds no key
        for (int64_t h = 0; h < 4; ++h) {
            EXPECT_TRUE(std::isinf(r.lse[t * 4 + h]) && r.lse[t * 4 + h] < 0) << text;
            for (int64_t d = 0; d < 32; ++d) EXPECT_EQ(r.out[(t * 4 + h) * 32 + d], 0.0f) << text;
        }
    }
}

TEST(AttentionOperator, ExplicitQueryPositionsHeadRangesAndThreads) {
    const AttentionSpec spec = AttentionSpec::parse("alibi+causal+power(block=8,window=1,sink=1)");
    AttentionShape shape{1, 40, 280, 8, 2, 64, 64};
    AttentionCase c(shape, DType::F32, 5);
    for (int64_t t = 0; t < shape.T; ++t) c.q_pos.push_back((t * 37) % 300);  // unordered, some past S
    expect_matches_reference(spec, c, true);

    // A head range computes those heads only (later calls fill the rest: per-head specs).
    AttentionInputs in = c.inputs();
    in.head_begin = 3;
    in.head_end = 6;
    testing::AttentionResult part, full;
    AttentionOutputs po = part.outputs(c.shape, false), fo = full.outputs(c.shape, false);
    attention(spec, in, po);
    attention_reference(spec, c.inputs(), fo);
    for (int64_t t = 0; t < shape.T; ++t)
        for (int64_t h = 0; h < shape.H; ++h)
            for (int64_t d = 0; d < shape.Dv; ++d) {
                const size_t i = static_cast<size_t>((t * shape.H + h) * shape.Dv + d);
                if (h >= 3 && h < 6) EXPECT_NEAR(part.out[i], full.out[i], 1e-5);
                else EXPECT_EQ(part.out[i], 12345.0f);
            }

    // Results do not depend on the thread count.
    testing::AttentionResult one, two;
    AttentionOutputs o1 = one.outputs(c.shape, false), o2 = two.outputs(c.shape, false);
    set_num_threads(1);
    attention(spec, c.inputs(), o1);
    set_num_threads(2);
    attention(spec, c.inputs(), o2);
    EXPECT_EQ(one.out, two.out);
    EXPECT_EQ(one.lse, two.lse);
}

TEST(AttentionOperator, RejectsBadCalls) {
    AttentionCase c({1, 4, 8, 4, 2, 32, 32}, DType::F32, 3);
    testing::AttentionResult r;
    AttentionOutputs o = r.outputs(c.shape, false);
    const AttentionSpec causal = AttentionSpec::parse("causal");
    AttentionInputs in = c.inputs();
    in.Hkv = 3;
    EXPECT_THROW(attention(causal, in, o), InvalidArgument);
    in = c.inputs();
    in.k_stride = 10;
    EXPECT_THROW(attention(causal, in, o), InvalidArgument);
    in = c.inputs();
    in.segments = nullptr;
    EXPECT_THROW(attention(AttentionSpec::parse("document"), in, o), InvalidArgument);
    in = c.inputs();
    in.sinks = nullptr;
    EXPECT_THROW(attention(AttentionSpec::parse("sinks"), in, o), InvalidArgument);
    in = c.inputs();
    in.q_pos0 = 20;  // a query position past the last segment
    EXPECT_THROW(attention(AttentionSpec::parse("document"), in, o), InvalidArgument);
    in = c.inputs();
    in.head_begin = 2;
    in.head_end = 9;
    EXPECT_THROW(attention(causal, in, o), InvalidArgument);
    in = c.inputs();
    in.dtype = DType::F16;
    EXPECT_THROW(attention(causal, in, o), InvalidArgument);
}

}  // namespace
}  // namespace attnlab

namespace attnlab {
namespace {

// attention_work counts the tiles the kernel keeps: all of them without a mask, the lower
// triangle's for causal, about window/S of them for a window, and FLOPs to match.
TEST(AttentionWork, CountsKeptTiles) {
    AttentionCase c({1, 1024, 1024, 8, 2, 64, 64}, DType::F32, 9);
    const AttentionInputs in = c.inputs();
    const AttentionWork dense = attention_work(AttentionSpec{}, in);
    EXPECT_EQ(dense.kept_tiles, dense.tiles);
    EXPECT_EQ(dense.partial_tiles, 0);
    EXPECT_DOUBLE_EQ(dense.flops, dense.dense_flops);
    EXPECT_DOUBLE_EQ(dense.dense_flops, 2.0 * (64 + 64) * 8 * 1024.0 * 1024.0);
    const AttentionWork causal = attention_work(AttentionSpec::parse("causal"), in);
    EXPECT_GT(causal.kept_fraction(), 0.5);  // the diagonal tiles count whole
    EXPECT_LT(causal.kept_fraction(), 0.65);
    EXPECT_GT(causal.partial_tiles, 0);
    const AttentionWork window = attention_work(AttentionSpec::parse("causal+window(size=128)"), in);
    EXPECT_LT(window.kept_fraction(), 0.4);
    EXPECT_GT(window.kept_fraction(), 128.0 / 1024.0);
    // Decode reads every K/V row once per kv head: S·(D + Dv)·4 bytes each.
    AttentionCase d({1, 1, 4096, 8, 2, 64, 64}, DType::F32, 10);
    EXPECT_DOUBLE_EQ(attention_work(AttentionSpec::parse("causal"), d.inputs()).kv_bytes, 2 * 4096.0 * 128 * 4);
}

}  // namespace
}  // namespace attnlab

namespace attnlab {
namespace {

// Decode (split keys) with a head range that cuts GQA groups unevenly: heads 1..5 of 8 over
// 2 kv heads give groups of 3 and 2 heads (the model path does this for per-head specs);
// heads 4..7 are one whole group (the split-keys path).
TEST(AttentionOperator, DecodeWithUnevenHeadRangeMatchesReference) {
    for (auto [begin, end] : {std::pair<int64_t, int64_t>{1, 6}, {0, 3}, {5, 8}, {4, 8}}) {
        AttentionCase c({1, 1, 700, 8, 2, 64, 64}, DType::F32, 21);
        AttentionInputs in = c.inputs();
        in.head_begin = begin;
        in.head_end = end;
        testing::AttentionResult got, want;
        AttentionOutputs go = got.outputs(c.shape, true), wo = want.outputs(c.shape, true);
        const AttentionSpec spec = AttentionSpec::parse("causal+window(size=300)");
        attention(spec, in, go);
        attention_reference(spec, in, wo);
        for (int64_t h = begin; h < end; ++h) {
            for (int64_t d = 0; d < 64; ++d) EXPECT_NEAR(got.out[h * 64 + d], want.out[h * 64 + d], 1e-5) << h;
            EXPECT_NEAR(got.lse[h], want.lse[h], 1e-5) << h;
        }
        for (int64_t h = 0; h < 8; ++h)
            if (h < begin || h >= end) {
                EXPECT_EQ(got.out[h * 64], 12345.0f) << h;
            }
    }
}

}  // namespace
}  // namespace attnlab
