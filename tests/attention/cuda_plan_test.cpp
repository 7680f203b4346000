// The GPU's host-side plan (src/attention/cuda_plan.h), checked without a GPU: the block map of
// every mask the GPU runs must keep every 64×64 tile that holds a kept (i, j) pair, and may
// mark a tile whole (no per-element mask work) only if every pair in it is kept and inside the
// keys — against the masks' own float64 definitions (Mechanism::keep).
#include "attention/cuda_plan.h"
#include "attention_case.h"

#include <attnlab/error.h>

#include <gtest/gtest.h>

#include <algorithm>

namespace attnlab::testing {
namespace {

void expect_block_map_exact(const std::string& text, const AttentionCase& c) {
    const AttentionSpec spec = AttentionSpec::parse(text);
    const AttentionInputs in = c.inputs();
    std::vector<float> out(static_cast<size_t>(c.shape.T * c.shape.H * c.shape.Dv));
    const AttentionOutputs o = AttentionOutputs::contiguous(out.data(), nullptr, c.shape.T, c.shape.H, c.shape.Dv);
    const gpu::HostPlan plan = gpu::build_host_plan(spec, in, o);
    AttentionContext ctx;
    ctx.S = c.shape.S;
    ctx.H = c.shape.H;
    ctx.Hkv = c.shape.Hkv;
    ctx.segments = in.segments;
    ctx.sinks = in.sinks;
    const int64_t T = c.shape.T, S = c.shape.S;
    ASSERT_EQ(plan.n_qblocks, (T + gpu::kBlockM - 1) / gpu::kBlockM) << text;
    for (int64_t qb = 0; qb < plan.n_qblocks; ++qb) {
        for (int64_t kb = 0; kb < plan.n_kblocks; ++kb) {
            int64_t kept = 0, pairs = 0;
            for (int64_t t = qb * gpu::kBlockM; t < std::min(T, (qb + 1) * gpu::kBlockM); ++t)
                for (int64_t j = kb * gpu::kBlockN; j < (kb + 1) * gpu::kBlockN; ++j) {
                    ++pairs;
                    if (j >= S) continue;
                    bool keep = true;
                    const int64_t i = in.q_pos ? in.q_pos[t] : in.q_pos0 + t;
                    for (const auto& m : spec.mechanisms)
                        if (m->is_mask()) keep = keep && m->keep(ScoreCoord{0, 0, 0, i, j, &ctx});
                    kept += keep;
                }
            const auto begin = plan.entries.begin() + plan.offsets[qb], end = plan.entries.begin() + plan.offsets[qb + 1];
            const auto it = std::find_if(begin, end, [&](int32_t e) { return (e & ~gpu::kPartialBit) == kb; });
            const std::string where = text + " qb " + std::to_string(qb) + " kb " + std::to_string(kb);
            if (kept > 0) {
                ASSERT_NE(it, end) << "a tile with kept pairs is skipped: " << where;
            }
            if (it != end && !(*it & gpu::kPartialBit)) {
                ASSERT_EQ(kept, pairs) << "a tile marked whole drops pairs: " << where;
            }
        }
    }
}

TEST(CudaPlan, BlockMapsMatchTheMaskDefinitions) {
    const char* specs[] = {"causal", "causal+window(size=100)", "causal+streaming(sink=4,window=70)",
                           "causal+chunked(size=96)", "prefix(len=130)", "causal+document",
                           "causal+power(block=64,window=2,sink=1)", "causal+softcap(cap=20)+alibi",
                           "window(size=50)", "causal+sinks", "causal+segment(id=1)",
                           "radial(frame=16,decay=1,block=4)+causal", "radial_blocks(frame=8,decay=1,block=32)",
                           "radial_blocks(frame=16,decay=2,block=64)+causal"};
    const AttentionShape shapes[] = {{1, 300, 300, 4, 2, 64, 64}, {1, 77, 517, 8, 2, 128, 128}, {2, 1, 1000, 8, 8, 64, 64}};
    uint32_t seed = 1;
    for (const char* spec : specs)
        for (const AttentionShape& shape : shapes) expect_block_map_exact(spec, AttentionCase(shape, DType::BF16, seed++));
}

TEST(CudaPlan, OnlyMaterialisingOutputsAreNotOnTheGpuAndTheGeneralKernelTakesTheRest) {
    const AttentionCase c({1, 16, 16, 2, 1, 64, 64}, DType::BF16, 3);
    const AttentionInputs in = c.inputs();
    std::vector<float> out(16 * 2 * 64), scores(2 * 16 * 16);
    const AttentionOutputs o = AttentionOutputs::contiguous(out.data(), nullptr, 16, 2, 64);
    AttentionOutputs with_scores = o;
    with_scores.scores = scores.data();
    EXPECT_THROW(gpu::build_host_plan(AttentionSpec::parse("causal"), in, with_scores), NotSupported);
    EXPECT_FALSE(gpu::build_host_plan(AttentionSpec::parse("causal+alibi+sinks"), in, o).general);
    for (const char* spec : {"causal+radial(frame=4,decay=1)", "causal+relu", "sigmoid", "segment(id=0)",
                             "boost(segment=0,alpha=1)", "sinks+sinks"})
        EXPECT_TRUE(gpu::build_host_plan(AttentionSpec::parse(spec), in, o).general) << spec;
    const AttentionCase f({1, 16, 16, 2, 1, 64, 64}, DType::F32, 3);
    EXPECT_TRUE(gpu::build_host_plan(AttentionSpec::parse("causal"), f.inputs(), o).general);
    const AttentionCase small({1, 16, 16, 2, 1, 8, 8}, DType::BF16, 3);
    EXPECT_TRUE(gpu::build_host_plan(AttentionSpec::parse("causal"), small.inputs(), o).general);
}

}  // namespace
}  // namespace attnlab::testing
