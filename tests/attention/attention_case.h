// A random attention problem (q, k, v and the optional inputs) and the comparison of the tiled
// kernel against the float64 reference, shared by the attention suites.
#pragma once

#include <attnlab/attention.h>
#include <attnlab/half.h>

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

namespace attnlab::testing {

struct AttentionShape {
    int64_t B = 1, T = 1, S = 1, H = 1, Hkv = 1, D = 32, Dv = 32;
    int64_t q_pos0 = -1;  // -1: S - T (queries at the end of the keys, as with a KV cache)
};

inline std::string describe(const AttentionShape& s) {
    return "B=" + std::to_string(s.B) + " T=" + std::to_string(s.T) + " S=" + std::to_string(s.S) +
           " H=" + std::to_string(s.H) + " Hkv=" + std::to_string(s.Hkv) + " D=" + std::to_string(s.D) +
           " Dv=" + std::to_string(s.Dv) + " q_pos0=" + std::to_string(s.q_pos0);
}

// Random inputs; q and k spread scores over several units so the softmax is far from uniform.
struct AttentionCase {
    AttentionShape shape;
    DType dtype = DType::F32;
    std::vector<float> q, k, v;
    std::vector<uint16_t> q16, k16, v16;
    std::vector<int32_t> segments;
    std::vector<float> sinks;
    std::vector<int64_t> q_pos;

    AttentionCase(const AttentionShape& s, DType dt, uint32_t seed) : shape(s), dtype(dt) {
        if (shape.q_pos0 < 0) shape.q_pos0 = shape.S - shape.T;
        std::mt19937 rng(seed);
        auto fill = [&](std::vector<float>& x, int64_t n, float sd) {
            std::normal_distribution<float> normal(0.0f, sd);
            x.resize(static_cast<size_t>(n));
            for (float& e : x) e = normal(rng);
        };
        fill(q, s.B * s.T * s.H * s.D, 1.5f);
        fill(k, s.B * s.S * s.Hkv * s.D, 1.5f);
        fill(v, s.B * s.S * s.Hkv * s.Dv, 1.0f);
        fill(sinks, s.H, 2.0f);
        // Segments: runs of random lengths 1..9 (packed documents).
        int32_t id = 0;
        for (int64_t j = 0; j < s.S;) {
            int64_t len = 1 + static_cast<int64_t>(rng() % 9);
            for (int64_t e = 0; e < len && j < s.S; ++e, ++j) segments.push_back(id);
            ++id;
        }
        if (dtype == DType::BF16) {
            auto round = [](std::vector<float>& x, std::vector<uint16_t>& h) {
                h.resize(x.size());
                for (size_t i = 0; i < x.size(); ++i) h[i] = f32_to_bf16(x[i]);
            };
            round(q, q16);
            round(k, k16);
            round(v, v16);
        }
    }

    AttentionInputs inputs() const {
        const AttentionShape& s = shape;
        AttentionInputs in = AttentionInputs::contiguous(
            dtype, dtype == DType::BF16 ? static_cast<const void*>(q16.data()) : q.data(),
            dtype == DType::BF16 ? static_cast<const void*>(k16.data()) : k.data(),
            dtype == DType::BF16 ? static_cast<const void*>(v16.data()) : v.data(), s.B, s.T, s.S, s.H, s.Hkv, s.D, s.Dv);
        in.q_pos0 = s.q_pos0;
        in.q_pos = q_pos.empty() ? nullptr : q_pos.data();
        in.segments = segments.data();
        in.sinks = sinks.data();
        return in;
    }
};

// Everything one call writes.
struct AttentionResult {
    std::vector<float> out, lse, scores, pattern;
    AttentionOutputs outputs(const AttentionShape& s, bool rows) {
        out.assign(static_cast<size_t>(s.B * s.T * s.H * s.Dv), 12345.0f);
        lse.assign(static_cast<size_t>(s.B * s.T * s.H), 12345.0f);
        AttentionOutputs o = AttentionOutputs::contiguous(out.data(), lse.data(), s.T, s.H, s.Dv);
        if (rows) {
            scores.assign(static_cast<size_t>(s.B * s.H * s.T * s.S), 12345.0f);
            pattern.assign(scores.size(), 12345.0f);
            o.scores = scores.data();
            o.pattern = pattern.data();
        }
        return o;
    }
};

// max |a - b| / max |b| over finite entries; infinities must match exactly.
inline double relative_error(const std::vector<float>& a, const std::vector<float>& b, bool* inf_mismatch) {
    double max_ref = 1e-30, max_err = 0;
    for (size_t i = 0; i < a.size(); ++i) {
        if (std::isinf(b[i]) || std::isinf(a[i])) {
            if (a[i] != b[i]) *inf_mismatch = true;
            continue;
        }
        max_ref = std::max(max_ref, std::fabs(double(b[i])));
        max_err = std::max(max_err, std::fabs(double(a[i]) - double(b[i])));
    }
    return max_err / max_ref;
}

// Runs the kernel and the reference; expects out, lse (and scores/pattern if `rows`) to agree
// within `tol` relative error.
inline void expect_matches_reference(const AttentionSpec& spec, const AttentionCase& c, bool rows,
                                     double tol = 1e-5, const std::string& label = "") {
    AttentionInputs in = c.inputs();
    AttentionResult got, want;
    AttentionOutputs go = got.outputs(c.shape, rows), wo = want.outputs(c.shape, rows);
    attention(spec, in, go);
    attention_reference(spec, in, wo);
    const std::string where = "spec \"" + spec.text() + "\" " + describe(c.shape) + " " + label;
    bool inf_mismatch = false;
    EXPECT_LE(relative_error(got.out, want.out, &inf_mismatch), tol) << "out, " << where;
    EXPECT_FALSE(inf_mismatch) << "out, " << where;
    // lse: absolute error relative to its magnitude (at least 1).
    for (size_t i = 0; i < got.lse.size(); ++i) {
        if (std::isinf(want.lse[i])) {
            ASSERT_EQ(got.lse[i], want.lse[i]) << "lse row " << i << ", " << where;
        } else {
            ASSERT_NEAR(got.lse[i], want.lse[i], tol * std::max(1.0f, std::fabs(want.lse[i]))) << "lse row " << i << ", " << where;
        }
    }
    if (rows) {
        inf_mismatch = false;
        EXPECT_LE(relative_error(got.scores, want.scores, &inf_mismatch), tol) << "scores, " << where;
        EXPECT_FALSE(inf_mismatch) << "scores (masked entries), " << where;
        double max_p = 0;
        for (size_t i = 0; i < got.pattern.size(); ++i)
            max_p = std::max(max_p, std::fabs(double(got.pattern[i]) - double(want.pattern[i])));
        EXPECT_LE(max_p, tol) << "pattern, " << where;
    }
}

}  // namespace attnlab::testing
