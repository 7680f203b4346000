// In-kernel attention statistics (AttentionStats): the tiled kernel's single-pass statistics
// and its column sums against (1) the float64 reference and (2) the statistics of the
// kernel's own materialised pattern, over every mechanism, both normalizer families, the
// split-key decode path, GQA, head ranges and fully masked rows; plus cases whose answer is
// known by construction (uniform rows, a planted sink).
#include "attention_case.h"

#include <attnlab/error.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

namespace attnlab::testing {
namespace {

// Every statistic asked for, with buffers sized for a shape.
struct StatsBuffers {
    std::vector<float> mass, entropy, sum_sq, top_prob, key_mass, offset_mass, segment_mass, distance_mass, column_sum;
    std::vector<int64_t> top_key;
    std::vector<int32_t> segment_ids;
    AttentionStats stats;

    StatsBuffers(const AttentionShape& s, bool columns = true) {
        const size_t rows = static_cast<size_t>(s.B * s.T * s.H);
        stats.keys = {0, 1, s.S / 2, s.S - 1, s.S + 3};  // the last one is never a key
        stats.offsets = {0, 1, 2, 7, -1};
        // Three segments in runs, so tiles cut runs: [0, S/3) -> 2, [S/3, 2S/3) -> 0, rest -> 1.
        for (int64_t j = 0; j < s.S; ++j) segment_ids.push_back(j < s.S / 3 ? 2 : (j < 2 * s.S / 3 ? 0 : 1));
        stats.segments = segment_ids.data();
        stats.n_segments = 3;
        stats.n_distance_bins = AttentionStats::distance_bins_for(s.S) - 2;  // the last bin also takes the rest
        stats.n_distance_bins = std::max<int64_t>(stats.n_distance_bins, 1);
        auto make = [&](std::vector<float>& v, size_t n) {
            v.assign(n, 777.0f);
            return v.data();
        };
        stats.mass = make(mass, rows);
        stats.entropy = make(entropy, rows);
        stats.sum_sq = make(sum_sq, rows);
        stats.top_prob = make(top_prob, rows);
        top_key.assign(rows, 777);
        stats.top_key = top_key.data();
        stats.key_mass = make(key_mass, rows * stats.keys.size());
        stats.offset_mass = make(offset_mass, rows * stats.offsets.size());
        stats.segment_mass = make(segment_mass, rows * 3);
        stats.distance_mass = make(distance_mass, rows * stats.n_distance_bins);
        if (columns) stats.column_sum = make(column_sum, static_cast<size_t>(s.B * s.H * s.S));
    }
};

// |a - b| <= tol·max(1, |b|) elementwise.
void expect_close(const std::vector<float>& got, const std::vector<float>& want, double tol, const std::string& what) {
    ASSERT_EQ(got.size(), want.size()) << what;
    for (size_t i = 0; i < got.size(); ++i)
        ASSERT_NEAR(got[i], want[i], tol * std::max(1.0, std::fabs(double(want[i])))) << what << " [" << i << "]";
}

// Kernel statistics against the reference's and against those of the kernel's own pattern.
void expect_stats_match(const AttentionSpec& spec, const AttentionCase& c, const std::string& label = "") {
    const AttentionShape& s = c.shape;
    AttentionInputs in = c.inputs();
    AttentionResult got, want;
    StatsBuffers got_stats(s), want_stats(s), pattern_stats(s);
    AttentionOutputs go = got.outputs(s, true), wo = want.outputs(s, false);
    go.stats = &got_stats.stats;
    wo.stats = &want_stats.stats;
    attention(spec, in, go);
    attention_reference(spec, in, wo);
    attention_stats_from_pattern(in, got.pattern.data(), pattern_stats.stats);
    const std::string where = "spec \"" + spec.text() + "\" " + describe(s) + " " + label;
    for (const StatsBuffers* ref : {&want_stats, &pattern_stats}) {
        const std::string who = (ref == &want_stats ? "vs reference, " : "vs own pattern, ") + where;
        expect_close(got_stats.mass, ref->mass, 1e-5, "mass " + who);
        expect_close(got_stats.entropy, ref->entropy, 2e-5, "entropy " + who);
        expect_close(got_stats.sum_sq, ref->sum_sq, 1e-5, "sum_sq " + who);
        expect_close(got_stats.top_prob, ref->top_prob, 1e-5, "top_prob " + who);
        expect_close(got_stats.key_mass, ref->key_mass, 1e-5, "key_mass " + who);
        expect_close(got_stats.offset_mass, ref->offset_mass, 1e-5, "offset_mass " + who);
        expect_close(got_stats.segment_mass, ref->segment_mass, 1e-5, "segment_mass " + who);
        expect_close(got_stats.distance_mass, ref->distance_mass, 1e-5, "distance_mass " + who);
        expect_close(got_stats.column_sum, ref->column_sum, 1e-5, "column_sum " + who);
        // The top key: equal, or a near-tie (the two keys' probabilities agree to rounding).
        for (size_t row = 0; row < got_stats.top_key.size(); ++row) {
            const int64_t k = got_stats.top_key[row], r = ref->top_key[row];
            if (k == r) continue;
            ASSERT_GE(k, 0) << "top_key row " << row << " " << who;
            const int64_t b = row / (s.T * s.H), t = row / s.H % s.T, h = row % s.H;
            const float* p = got.pattern.data() + ((b * s.H + h) * s.T + t) * s.S;
            ASSERT_GE(r, 0) << "top_key row " << row << " " << who;
            ASSERT_NEAR(p[k], p[r], 1e-6) << "top_key row " << row << " got " << k << " want " << r << " " << who;
        }
    }
}

TEST(AttentionStats, EveryMechanismAloneAndAfterCausal) {
    const AttentionShape shape{1, 37, 300, 4, 2, 32, 24};
    int seed = 1;
    for (const MechanismInfo& info : mechanism_registry()) {
        for (const std::string& text : {info.example, "causal+" + info.example}) {
            if (info.name == "causal" && text != info.example) continue;
            if (info.name == "prefix" && text != info.example) continue;  // prefix replaces causal
            const AttentionCase c(shape, DType::F32, seed++);
            expect_stats_match(AttentionSpec::parse(text), c, info.name);
        }
    }
}

TEST(AttentionStats, ShapesDecodeGqaAndBf16) {
    struct Case {
        AttentionShape shape;
        const char* spec;
        DType dtype;
    };
    const Case cases[] = {
        {{1, 1, 1000, 8, 2, 64, 64}, "causal", DType::F32},                         // split-key decode
        {{2, 2, 777, 8, 2, 32, 32}, "causal+window(size=300)", DType::F32},         // split keys, batch 2, T=2
        {{1, 1, 900, 8, 1, 32, 32}, "causal+sinks", DType::F32},                    // decode, MQA, sink logit
        {{1, 1, 600, 4, 4, 32, 32}, "causal+sigmoid(bias=-2)", DType::F32},         // decode, sigmoid normalizer
        {{1, 1, 600, 4, 4, 32, 32}, "causal+relu", DType::F32},                     // decode, relu normalizer
        {{1, 300, 300, 8, 8, 32, 32}, "causal", DType::F32},                        // GQA 1, packed GEMM path
        {{1, 261, 261, 8, 1, 48, 40}, "causal+softcap(cap=5)+alibi", DType::F32},   // GQA 8
        {{1, 129, 513, 4, 1, 64, 64}, "causal+streaming(sink=4,window=40)", DType::BF16},
        {{2, 45, 45, 6, 3, 32, 32}, "causal+document", DType::F32},
        {{1, 50, 1000, 4, 2, 32, 32}, "causal+power(block=64,window=2,sink=1)", DType::F32},  // chunk T < S
        // 224 rows × 75000 keys exceed the kernel's per-item store of p̃ (64 MiB): column sums
        // take the recomputing second pass instead
        {{1, 224, 75000, 1, 1, 16, 16}, "causal+window(size=3000)", DType::F32},
    };
    int seed = 100;
    for (const Case& k : cases) {
        const AttentionCase c(k.shape, k.dtype, seed++);
        expect_stats_match(AttentionSpec::parse(k.spec), c);
    }
}

TEST(AttentionStats, FullyMaskedRowsAndUnorderedPositions) {
    // Queries at positions 20 and 3 with chunks of 4: position 20's chunk has no key (S = 10).
    AttentionCase c({1, 4, 10, 2, 1, 32, 32}, DType::F32, 7);
    c.q_pos = {20, 3, 9, 0};
    expect_stats_match(AttentionSpec::parse("causal+chunked(size=4)"), c);
    AttentionInputs in = c.inputs();
    AttentionResult got;
    StatsBuffers st(c.shape);
    AttentionOutputs o = got.outputs(c.shape, false);
    o.stats = &st.stats;
    attention(AttentionSpec::parse("causal+chunked(size=4)"), in, o);
    for (int64_t h = 0; h < 2; ++h) {  // row t = 0 keeps nothing
        EXPECT_EQ(st.mass[h], 0.0f);
        EXPECT_EQ(st.entropy[h], 0.0f);
        EXPECT_EQ(st.top_key[h], -1);
        EXPECT_EQ(st.top_prob[h], 0.0f);
    }
}

TEST(AttentionStats, HeadRangeWritesOnlyItsHeads) {
    AttentionCase c({1, 20, 300, 8, 2, 32, 32}, DType::F32, 9);
    AttentionInputs in = c.inputs();
    in.head_begin = 2;
    in.head_end = 5;  // cuts both GQA groups it touches
    AttentionResult got, want;
    StatsBuffers gs(c.shape), ws(c.shape);
    AttentionOutputs go = got.outputs(c.shape, false), wo = want.outputs(c.shape, false);
    go.stats = &gs.stats;
    wo.stats = &ws.stats;
    const AttentionSpec spec = AttentionSpec::parse("causal");
    attention(spec, in, go);
    attention_reference(spec, in, wo);
    for (int64_t t = 0; t < 20; ++t)
        for (int64_t h = 0; h < 8; ++h) {
            const size_t row = static_cast<size_t>(t * 8 + h);
            if (h >= 2 && h < 5) {
                EXPECT_NEAR(gs.entropy[row], ws.entropy[row], 2e-5);
                EXPECT_EQ(gs.top_key[row], ws.top_key[row]);
            } else {
                EXPECT_EQ(gs.entropy[row], 777.0f);
                EXPECT_EQ(gs.top_key[row], 777);
            }
        }
    for (int64_t h = 0; h < 8; ++h) {
        if (h >= 2 && h < 5) {
            EXPECT_NEAR(gs.column_sum[static_cast<size_t>(h * 300)], ws.column_sum[h * 300], 1e-5);
        } else {
            EXPECT_EQ(gs.column_sum[static_cast<size_t>(h * 300)], 777.0f);
        }
    }
}

// Known answers: q = 0 makes every kept score equal, so each row is uniform over its kept
// keys: entropy ln(kept), top key the first kept key, Σp² = 1/kept, column j receives Σ_i 1/(i+1).
TEST(AttentionStats, UniformRowsByConstruction) {
    for (const AttentionShape shape : {AttentionShape{1, 300, 300, 4, 2, 32, 32}, AttentionShape{1, 1, 700, 4, 2, 32, 32}}) {
        AttentionCase c(shape, DType::F32, 3);
        std::fill(c.q.begin(), c.q.end(), 0.0f);
        AttentionInputs in = c.inputs();
        AttentionResult got;
        StatsBuffers st(shape);
        AttentionOutputs o = got.outputs(shape, false);
        o.stats = &st.stats;
        attention(AttentionSpec::parse("causal"), in, o);
        const int64_t S = shape.S, T = shape.T;
        for (int64_t t = 0; t < T; ++t) {
            const int64_t i = S - T + t, kept = i + 1;
            for (int64_t h = 0; h < 4; ++h) {
                const size_t row = static_cast<size_t>(t * 4 + h);
                EXPECT_NEAR(st.entropy[row], std::log(double(kept)), 2e-5 * std::log(double(kept + 1)));
                EXPECT_EQ(st.top_key[row], 0);
                EXPECT_NEAR(st.top_prob[row], 1.0 / kept, 1e-6);
                EXPECT_NEAR(st.sum_sq[row], 1.0 / kept, 1e-6);
                EXPECT_NEAR(st.offset_mass[row * 5 + 1], i >= 1 ? 1.0 / kept : 0.0, 1e-6);
            }
        }
        for (int64_t j = 0; j < S; j += 37) {
            double want = 0;
            for (int64_t t = 0; t < T; ++t)
                if (S - T + t >= j) want += 1.0 / double(S - T + t + 1);
            EXPECT_NEAR(st.column_sum[static_cast<size_t>(j)], want, 1e-5 * std::max(1.0, want)) << j;
        }
    }
}

// A planted sink: key 0's key vector aligned with every query gets almost all the mass.
TEST(AttentionStats, PlantedSink) {
    AttentionCase c({1, 64, 64, 2, 1, 32, 32}, DType::F32, 5);
    for (float& x : c.q) x = 0.0f;
    for (int64_t t = 0; t < 64; ++t)
        for (int64_t h = 0; h < 2; ++h) c.q[(t * 2 + h) * 32] = 3.0f;
    for (int64_t j = 0; j < 64; ++j) c.k[j * 32] = j == 0 ? 10.0f : 0.0f;  // score 30/sqrt(32) ≈ 5.3 for key 0
    AttentionInputs in = c.inputs();
    AttentionResult got;
    StatsBuffers st(c.shape);
    AttentionOutputs o = got.outputs(c.shape, false);
    o.stats = &st.stats;
    attention(AttentionSpec::parse("causal"), in, o);
    for (int64_t t = 1; t < 64; ++t) {
        EXPECT_EQ(st.top_key[t * 2], 0);
        EXPECT_GT(st.key_mass[(t * 2) * 5], 0.7f);  // keys[0] = 0
    }
    EXPECT_GT(st.column_sum[0], 0.7f * 64);
}

// Scores of ±50: peaked rows whose entropy is small next to lse, where Σp·s − lse would
// cancel (the kernel keeps the entropy relative to the row max). Larger scores make the f32
// scores themselves (and the materialised pattern) differ from float64 by more than 1e-5.
TEST(AttentionStats, LargeScoresKeepEntropyAccurate) {
    AttentionCase c({1, 40, 600, 2, 1, 32, 32}, DType::F32, 11);
    for (float& x : c.q) x *= 8.0f;
    expect_stats_match(AttentionSpec::parse("causal+temperature(t=0.9)"), c);
}

TEST(AttentionStats, BadRequestsAreErrors) {
    AttentionCase c({1, 4, 10, 2, 1, 32, 32}, DType::F32, 7);
    AttentionInputs in = c.inputs();
    AttentionResult got;
    StatsBuffers st(c.shape);
    AttentionOutputs o = got.outputs(c.shape, false);
    o.stats = &st.stats;
    st.segment_ids[3] = 5;  // not below n_segments = 3
    EXPECT_THROW(attention(AttentionSpec::parse("causal"), in, o), InvalidArgument);
    st.segment_ids[3] = 0;
    st.stats.n_distance_bins = 0;
    EXPECT_THROW(attention(AttentionSpec::parse("causal"), in, o), InvalidArgument);
}

}  // namespace
}  // namespace attnlab::testing
