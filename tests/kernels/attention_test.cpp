// The model-path attention kernel against its float64 reference: odd sizes, KV-cache decode,
// chunked prefill, GQA 1/2/4/8, windows, softcap, fully masked rows, fresh random inputs.
#include <attnlab/attention.h>
#include <attnlab/error.h>
#include <attnlab/threads.h>

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

namespace attnlab {
namespace {

struct Shape5 {
    int64_t T, S, H, Hkv, D;
};

std::vector<float> random_vector(size_t n, std::mt19937& rng, float scale) {
    std::normal_distribution<float> normal(0.0f, scale);
    std::vector<float> v(n);
    for (float& x : v) x = normal(rng);
    return v;
}

void check(const AttentionSpec& spec, const Shape5& s, int64_t q_pos0, uint32_t seed) {
    std::mt19937 rng(seed);
    // Scale 1.5: scores spread over several units so the softmax is far from uniform.
    std::vector<float> q = random_vector(s.T * s.H * s.D, rng, 1.5f);
    std::vector<float> k = random_vector(s.S * s.Hkv * s.D, rng, 1.5f);
    std::vector<float> v = random_vector(s.S * s.Hkv * s.D, rng, 1.0f);
    AttentionInputs in;
    in.q = q.data();
    in.k = k.data();
    in.v = v.data();
    in.q_stride = s.H * s.D;
    in.k_stride = in.v_stride = s.Hkv * s.D;
    in.T = s.T;
    in.S = s.S;
    in.H = s.H;
    in.Hkv = s.Hkv;
    in.D = in.Dv = s.D;
    in.q_pos0 = q_pos0;
    std::vector<float> out(s.T * s.H * s.D, 7.0f), ref_out(s.T * s.H * s.D, -7.0f);
    std::vector<float> lse(s.T * s.H), ref_lse(s.T * s.H);
    std::vector<float> pattern(s.H * s.T * s.S), ref_pattern(s.H * s.T * s.S);
    AttentionOutputs o{out.data(), s.H * s.D, lse.data(), nullptr, pattern.data()};
    AttentionOutputs r{ref_out.data(), s.H * s.D, ref_lse.data(), nullptr, ref_pattern.data()};
    attention(spec, in, o);
    attention_reference(spec, in, r);
    double max_ref = 1e-30, max_err = 0;
    for (size_t i = 0; i < out.size(); ++i) {
        max_ref = std::max(max_ref, std::fabs(double(ref_out[i])));
        max_err = std::max(max_err, std::fabs(double(out[i]) - double(ref_out[i])));
    }
    EXPECT_LE(max_err / max_ref, 1e-5) << "T=" << s.T << " S=" << s.S << " H=" << s.H << " Hkv=" << s.Hkv;
    for (size_t i = 0; i < lse.size(); ++i) {
        if (std::isinf(ref_lse[i])) {
            EXPECT_TRUE(std::isinf(lse[i]) && lse[i] < 0);
        } else {
            EXPECT_NEAR(lse[i], ref_lse[i], 1e-5 * std::max(1.0f, std::fabs(ref_lse[i])));
        }
    }
    for (size_t i = 0; i < pattern.size(); ++i) EXPECT_NEAR(pattern[i], ref_pattern[i], 1e-6);
}

TEST(Attention, MatchesReferenceOverShapesAndMasks) {
    const Shape5 shapes[] = {{1, 1, 1, 1, 8},     {7, 7, 4, 4, 16},   {13, 13, 4, 2, 32},
                             {1, 37, 8, 2, 64},   {5, 41, 8, 1, 24},  {33, 33, 8, 8, 128},
                             {17, 17, 16, 2, 256}, {3, 70, 12, 3, 40}};
    uint32_t seed = 1;
    for (const Shape5& s : shapes) {
        for (int64_t window : {0, 1, 5, 16}) {
            for (double softcap : {0.0, 3.0}) {
                AttentionSpec spec;
                spec.window = window;
                spec.softcap = softcap;
                check(spec, s, s.S - s.T, seed++);  // prefill (T=S), chunked prefill, decode
            }
        }
    }
}

TEST(Attention, NonCausalAndFullyMaskedRows) {
    AttentionSpec spec;
    spec.causal = false;
    spec.window = 3;
    // Queries far past the keys: with a window of 3 some rows keep no key at all.
    check(spec, {6, 9, 4, 2, 16}, 8, 99);
    spec.window = 0;
    check(spec, {6, 9, 4, 2, 16}, 3, 100);
}

TEST(Attention, SameResultWithOneOrTwoThreads) {
    AttentionSpec spec;
    for (int threads : {1, 2}) {
        set_num_threads(threads);
        check(spec, {29, 29, 8, 2, 64}, 0, 7);
    }
    set_num_threads(0);
}

TEST(Attention, RejectsInconsistentShapes) {
    std::vector<float> buf(64);
    AttentionInputs in;
    in.q = in.k = in.v = buf.data();
    in.T = in.S = 1;
    in.H = 3;
    in.Hkv = 2;
    in.D = in.Dv = 4;
    AttentionOutputs out;
    out.out = buf.data();
    EXPECT_THROW(attention(AttentionSpec{}, in, out), Error);
}

}  // namespace
}  // namespace attnlab
