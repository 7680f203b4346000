// The GPU attention operator against the float64 reference (attention_reference), for every
// mechanism the GPU runs, alone and combined, over odd sizes, decode, chunks, GQA 1/2/4/8,
// fully masked rows, D = 64/128, bf16 and f16. Needs a GPU: built only with
// ATTNLAB_CUDA_TESTS=ON (docs/cuda.md).
//
// Tolerance: the GPU may err by at most 2× a naive low-precision computation of the same call
// (inputs rounded to bf16/f16, float scores and softmax, P rounded before P·V), measured
// against the same reference on the same inputs, plus a small floor.
#include "kernels/cuda/cuda_util.cuh"

#include <attnlab/attention.h>
#include <attnlab/cuda.h>
#include <attnlab/half.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <vector>

namespace attnlab {
namespace {

struct Shape {
    int64_t B = 1, T = 1, S = 1, H = 1, Hkv = 1, D = 64;
    int64_t q_pos0 = -1;  // -1: S - T
};

std::string describe(const Shape& s) {
    return fmt::format("B={} T={} S={} H={} Hkv={} D={} q_pos0={}", s.B, s.T, s.S, s.H, s.Hkv, s.D, s.q_pos0);
}

uint16_t round_bits(float x, DType dt) { return dt == DType::BF16 ? f32_to_bf16(x) : f32_to_f16(x); }
float from_bits(uint16_t h, DType dt) { return dt == DType::BF16 ? bf16_to_f32(h) : f16_to_f32(h); }

// Random inputs rounded to the input type; `vals` hold the rounded values as f32.
struct Problem {
    Shape s;
    DType dtype;
    std::vector<uint16_t> q16, k16, v16;
    std::vector<float> q, k, v, sinks;
    std::vector<int32_t> segments;

    Problem(Shape shape, DType dt, uint32_t seed) : s(shape), dtype(dt) {
        if (s.q_pos0 < 0) s.q_pos0 = s.S - s.T;
        std::mt19937 rng(seed);
        auto fill = [&](std::vector<float>& x, std::vector<uint16_t>& bits, int64_t n, float sd) {
            std::normal_distribution<float> normal(0.0f, sd);
            x.resize(size_t(n));
            bits.resize(size_t(n));
            for (size_t i = 0; i < x.size(); ++i) {
                bits[i] = round_bits(normal(rng), dt);
                x[i] = from_bits(bits[i], dt);
            }
        };
        fill(q, q16, s.B * s.T * s.H * s.D, 1.5f);
        fill(k, k16, s.B * s.S * s.Hkv * s.D, 1.5f);
        fill(v, v16, s.B * s.S * s.Hkv * s.D, 1.0f);
        std::normal_distribution<float> normal(0.0f, 2.0f);
        for (int64_t h = 0; h < s.H; ++h) sinks.push_back(normal(rng));
        // Documents of 1..120 positions: long enough for whole tiles to be kept or skipped.
        int32_t id = 0;
        for (int64_t j = 0; j < s.S; ++id) {
            const int64_t len = 1 + int64_t(rng() % 120);
            for (int64_t e = 0; e < len && j < s.S; ++e, ++j) segments.push_back(id);
        }
    }

    AttentionInputs inputs(const void* dq, const void* dk, const void* dv, DType dt) const {
        AttentionInputs in = AttentionInputs::contiguous(dt, dq, dk, dv, s.B, s.T, s.S, s.H, s.Hkv, s.D, s.D);
        in.q_pos0 = s.q_pos0;
        in.segments = segments.data();
        in.sinks = sinks.data();
        return in;
    }
};

// Device copies of q, k, v and poisoned (NaN) outputs.
struct DeviceProblem {
    cuda::DeviceBuffer<uint16_t> q, k, v;
    cuda::DeviceBuffer<float> out, lse;
    explicit DeviceProblem(const Problem& p)
        : q(p.q16.size()), k(p.k16.size()), v(p.v16.size()), out(p.q16.size()), lse(size_t(p.s.B * p.s.T * p.s.H)) {
        q.upload(p.q16.data(), p.q16.size());
        k.upload(p.k16.data(), p.k16.size());
        v.upload(p.v16.data(), p.v16.size());
        ATTNLAB_CUDA_CHECK(cudaMemset(out.get(), 0xff, out.size() * sizeof(float)));
        ATTNLAB_CUDA_CHECK(cudaMemset(lse.get(), 0xff, lse.size() * sizeof(float)));
    }
};

// The naive low-precision computation: float scores from the rounded inputs, the mechanisms'
// definitions evaluated per element, float softmax, P rounded to the input type before P·V.
void naive_attention(const AttentionSpec& spec, const Problem& p, std::vector<float>& out, std::vector<float>& lse) {
    const Shape& s = p.s;
    const AttentionInputs in = p.inputs(nullptr, nullptr, nullptr, DType::F32);
    AttentionContext ctx{s.S, s.H, s.Hkv, p.segments.data(), p.sinks.data()};
    const float scale = spec.scale > 0 ? float(spec.scale) : 1.0f / std::sqrt(float(s.D));
    const int64_t group = s.H / s.Hkv;
    out.assign(size_t(s.B * s.T * s.H * s.D), 0.0f);
    lse.assign(size_t(s.B * s.T * s.H), -std::numeric_limits<float>::infinity());
    std::vector<float> sc(size_t(s.S));
    for (int64_t b = 0; b < s.B; ++b)
        for (int64_t t = 0; t < s.T; ++t)
            for (int64_t h = 0; h < s.H; ++h) {
                const int64_t hk = h / group, i = in.q_pos0 + t;
                const float* qr = &p.q[size_t(((b * s.T + t) * s.H + h) * s.D)];
                float mx = -std::numeric_limits<float>::infinity();
                for (int64_t j = 0; j < s.S; ++j) {
                    const float* kr = &p.k[size_t(((b * s.S + j) * s.Hkv + hk) * s.D)];
                    float acc = 0;
                    for (int64_t d = 0; d < s.D; ++d) acc += qr[d] * kr[d];
                    float x = acc * scale;
                    const ScoreCoord c{b, h, hk, i, j, &ctx};
                    bool keep = true;
                    for (const auto& m : spec.mechanisms) {
                        if (m->is_score_mod()) x = float(m->modify(double(x), c));
                        if (m->is_mask()) keep = keep && m->keep(c);
                    }
                    sc[j] = keep ? x : -std::numeric_limits<float>::infinity();
                    mx = std::max(mx, sc[j]);
                }
                if (mx == -std::numeric_limits<float>::infinity()) continue;  // no kept key: out 0, lse -inf
                std::vector<float> extra;
                for (const auto& m : spec.mechanisms)
                    if (m->has_extra_logit()) extra.push_back(float(m->extra_logit(h, ctx)));
                for (float e : extra) mx = std::max(mx, e);
                float z = 0;
                for (float x : sc) z += std::exp(x - mx);
                for (float e : extra) z += std::exp(e - mx);
                lse[size_t((b * s.T + t) * s.H + h)] = mx + std::log(z);
                float* o = &out[size_t(((b * s.T + t) * s.H + h) * s.D)];
                for (int64_t j = 0; j < s.S; ++j) {
                    if (sc[j] == -std::numeric_limits<float>::infinity()) continue;
                    const float pr = from_bits(round_bits(std::exp(sc[j] - mx), p.dtype), p.dtype);
                    const float* vr = &p.v[size_t(((b * s.S + j) * s.Hkv + hk) * s.D)];
                    for (int64_t d = 0; d < s.D; ++d) o[d] += pr * vr[d];
                }
                for (int64_t d = 0; d < s.D; ++d) o[d] /= z;
            }
}

struct Errors {
    double out = 0, lse = 0;
    bool ok = true;  // NaN, unwritten entries and -inf rows matched
    std::string why;
};

Errors compare(const std::vector<float>& out, const std::vector<float>& lse, const std::vector<float>& ref_out,
               const std::vector<float>& ref_lse, int64_t D) {
    Errors e;
    for (size_t r = 0; r < ref_lse.size(); ++r) {
        if (std::isinf(ref_lse[r]) || std::isinf(lse[r])) {
            if (lse[r] != ref_lse[r]) e.ok = false, e.why = fmt::format("lse row {}: {} vs {}", r, lse[r], ref_lse[r]);
        } else if (!std::isfinite(lse[r])) {
            e.ok = false, e.why = fmt::format("lse row {} is {}", r, lse[r]);
        } else {
            e.lse = std::max(e.lse, std::fabs(double(lse[r]) - ref_lse[r]) / std::max(1.0, std::fabs(double(ref_lse[r]))));
        }
        for (int64_t d = 0; d < D; ++d) {
            const float a = out[r * D + d], b = ref_out[r * D + d];
            if (!std::isfinite(a)) {
                e.ok = false, e.why = fmt::format("out row {} dim {} is {} (unwritten or NaN)", r, d, a);
                continue;
            }
            e.out = std::max(e.out, std::fabs(double(a) - b));
        }
    }
    return e;
}

struct Case {
    std::string spec;
    Shape shape;
    DType dtype;
};

class GpuAttention : public ::testing::TestWithParam<Case> {};

TEST_P(GpuAttention, MatchesReferenceWithinTwiceNaiveLowPrecision) {
    const Case& c = GetParam();
    const AttentionSpec spec = c.spec.empty() ? AttentionSpec{} : AttentionSpec::parse(c.spec);
    const Problem p(c.shape, c.dtype, uint32_t(std::hash<std::string>{}(c.spec + describe(c.shape))));
    const Shape& s = p.s;
    DeviceProblem dev(p);
    const AttentionInputs din = p.inputs(dev.q.get(), dev.k.get(), dev.v.get(), c.dtype);
    const AttentionOutputs dout = AttentionOutputs::contiguous(dev.out.get(), dev.lse.get(), s.T, s.H, s.D);
    attention_cuda(spec, din, dout);
    std::vector<float> out(dev.out.size()), lse(dev.lse.size());
    ATTNLAB_CUDA_CHECK(cudaMemcpy(out.data(), dev.out.get(), out.size() * 4, cudaMemcpyDeviceToHost));
    ATTNLAB_CUDA_CHECK(cudaMemcpy(lse.data(), dev.lse.get(), lse.size() * 4, cudaMemcpyDeviceToHost));

    // The reference reads the same rounded values as f32.
    std::vector<float> ref_out(out.size()), ref_lse(lse.size()), naive_out, naive_lse;
    const AttentionInputs hin = p.inputs(p.q.data(), p.k.data(), p.v.data(), DType::F32);
    attention_reference(spec, hin, AttentionOutputs::contiguous(ref_out.data(), ref_lse.data(), s.T, s.H, s.D));
    naive_attention(spec, p, naive_out, naive_lse);

    const Errors gpu = compare(out, lse, ref_out, ref_lse, s.D);
    const Errors naive = compare(naive_out, naive_lse, ref_out, ref_lse, s.D);
    const std::string where = fmt::format("spec \"{}\" {} {}", c.spec, describe(s), dtype_name(c.dtype));
    ASSERT_TRUE(naive.ok) << "naive: " << naive.why << ", " << where;
    EXPECT_TRUE(gpu.ok) << gpu.why << ", " << where;
    const double out_bound = 2 * naive.out + 1e-4, lse_bound = 2 * naive.lse + 1e-4;
    EXPECT_LE(gpu.out, out_bound) << "out, " << where << " (naive " << naive.out << ")";
    EXPECT_LE(gpu.lse, lse_bound) << "lse, " << where << " (naive " << naive.lse << ")";
    // One line per case for the device log: how close to the bound each case runs.
    std::printf("[cuda-check] %-60s %-52s %s out %.2e (naive %.2e, %.2fx) lse %.2e (naive %.2e)\n", c.spec.c_str(),
                describe(s).c_str(), std::string(dtype_name(c.dtype)).c_str(), gpu.out, naive.out,
                naive.out > 0 ? gpu.out / naive.out : 0.0, gpu.lse, naive.lse);
}

std::vector<Case> all_cases() {
    const std::vector<std::string> specs = {
        "",  // plain bidirectional softmax
        "causal",
        "window(size=37)",
        "causal+window(size=100)",
        "causal+streaming(sink=4,window=50)",
        "streaming(sink=70,window=9)",
        "chunked(size=50)",
        "causal+chunked(size=64)",
        "prefix(len=70)",
        "document",
        "causal+document",
        "causal+power(block=16,window=2,sink=1)",
        "power(block=64,window=1,sink=1)",
        "alibi",
        "causal+alibi",
        "softcap(cap=2)",
        "causal+softcap(cap=20)",
        "causal+decay(gamma=0.9)",
        "temperature(t=0.5)",
        "causal+alibi+temperature(t=2)",
        "sinks",
        "causal+sinks",
        "causal+window(size=64)+softcap(cap=30)+sinks",
        "causal+document+alibi",
        "chunked(size=64)+causal+decay(gamma=0.95)+temperature(t=0.7)",
        "prefix(len=17)+streaming(sink=4,window=50)",
        "causal+streaming(sink=3,window=20)+document+sinks",
    };
    const std::vector<Shape> shapes = {
        {1, 200, 200, 4, 2, 128},  // prefill, odd size, GQA 2
        {1, 77, 333, 8, 1, 64},    // chunk T < S, GQA 8
        {1, 1, 1500, 8, 2, 128},   // decode, GQA 4
        {1, 1, 777, 8, 1, 64},     // decode, GQA 8
        {1, 3, 300, 4, 4, 128},    // a few queries (decode kernel), GQA 1
        {1, 4, 400, 8, 2, 64},     // 16 rows per kv head: decode kernel, 4 row chunks
        {1, 17, 200, 4, 2, 128},   // 34 rows per kv head: prefill kernel, T < S
        {2, 130, 130, 2, 2, 128},  // batch of 2, GQA 1
    };
    std::vector<Case> cases;
    for (const std::string& spec : specs) {
        for (const Shape& shape : shapes) cases.push_back({spec, shape, DType::BF16});
        cases.push_back({spec, shapes[0], DType::F16});
        cases.push_back({spec, shapes[2], DType::F16});
    }
    // Fully masked rows: queries past the keys see none of them through a window of 2.
    for (const char* spec : {"window(size=2)", "window(size=2)+sinks", "causal+window(size=2)+alibi"}) {
        cases.push_back({spec, {1, 10, 100, 4, 2, 128, 97}, DType::BF16});
        cases.push_back({spec, {1, 70, 100, 4, 1, 64, 60}, DType::BF16});
        cases.push_back({spec, {1, 2, 100, 4, 2, 64, 150}, DType::F16});
    }
    return cases;
}

INSTANTIATE_TEST_SUITE_P(Cases, GpuAttention, ::testing::ValuesIn(all_cases()),
                         [](const ::testing::TestParamInfo<Case>& info) { return std::to_string(info.index); });

TEST(GpuAttentionErrors, UnsupportedMechanismsAndLayoutsSayNotOnTheGpuYet) {
    const Problem p({1, 8, 8, 2, 2, 64}, DType::BF16, 1);
    DeviceProblem dev(p);
    const AttentionInputs in = p.inputs(dev.q.get(), dev.k.get(), dev.v.get(), DType::BF16);
    const AttentionOutputs out = AttentionOutputs::contiguous(dev.out.get(), dev.lse.get(), 8, 2, 64);
    for (const char* spec : {"sigmoid", "relu", "causal+radial(frame=4,decay=1,block=2)"}) {
        try {
            attention_cuda(AttentionSpec::parse(spec), in, out);
            ADD_FAILURE() << spec << " ran";
        } catch (const NotSupported& e) {
            EXPECT_NE(std::string(e.what()).find("not on the GPU yet"), std::string::npos) << e.what();
        }
    }
    AttentionInputs f32 = in;
    f32.dtype = DType::F32;
    EXPECT_THROW(attention_cuda(AttentionSpec::parse("causal"), f32, out), NotSupported);
    AttentionInputs d32 = AttentionInputs::contiguous(DType::BF16, dev.q.get(), dev.k.get(), dev.v.get(), 1, 8, 8, 2, 2, 32, 32);
    EXPECT_THROW(attention_cuda(AttentionSpec::parse("causal"), d32, out), NotSupported);
    EXPECT_THROW(attention_cuda(AttentionSpec::parse("document"), [&] {
                     AttentionInputs x = in;
                     x.segments = nullptr;
                     return x;
                 }(), out),
                 InvalidArgument);
}

TEST(GpuAttentionErrors, FailedCudaCallsNameTheCallAndPlace) {
    try {
        cuda::DeviceBuffer<float> huge(size_t(1) << 50);
        ADD_FAILURE() << "a 4 PiB allocation succeeded";
    } catch (const CudaError& e) {
        const std::string msg = e.what();
        EXPECT_EQ(msg.rfind("[cuda] cudaMalloc(", 0), 0u) << msg;
        EXPECT_NE(msg.find("cuda_util.cuh:"), std::string::npos) << msg;
    }
}

TEST(GpuAttentionPlan, BlockSparseMasksKeepFewTiles) {
    const Problem p({1, 4096, 4096, 2, 1, 64}, DType::BF16, 2);
    const AttentionInputs in = p.inputs(reinterpret_cast<void*>(256), reinterpret_cast<void*>(256),
                                        reinterpret_cast<void*>(256), DType::BF16);
    const AttentionOutputs out = AttentionOutputs::contiguous(reinterpret_cast<float*>(256), nullptr, 4096, 2, 64);
    const auto causal = CudaAttentionPlan(AttentionSpec::parse("causal"), in, out).stats();
    EXPECT_EQ(causal.kept_blocks, 64 * 65 / 2);
    EXPECT_EQ(causal.partial_blocks, 64);  // the diagonal only
    const auto window = CudaAttentionPlan(AttentionSpec::parse("causal+window(size=128)"), in, out).stats();
    EXPECT_LE(window.kept_blocks, 64 * 3);
    EXPECT_TRUE(cuda_available());
}

}  // namespace
}  // namespace attnlab
