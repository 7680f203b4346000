// The GPU attention operator against the float64 reference (attention_reference): every
// mechanism of the registry alone and after `causal`, combinations, odd sizes, decode, chunks,
// GQA 1/2/4/8, fully masked rows, batch 2, head ranges; the tensor-core kernels (bf16/f16,
// D = Dv ∈ {64, 128, 256}) and the general kernel (f32, any D and Dv, every mechanism and
// normalizer). Needs a GPU: built only with ATTNLAB_CUDA_TESTS=ON (docs/cuda.md).
//
// Tolerance: for f32 inputs the max abs error of out is at most 1e-5 of max|out| (the CPU
// operator's rule) and lse's relative error at most 1e-5. For bf16/f16 the GPU may err by at
// most 2× a naive low-precision computation of the same call (inputs rounded to bf16/f16, float
// scores and normalizer, P rounded before P·V), measured against the same reference on the same
// inputs, plus a small floor.
#include "attention_problem.h"
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

constexpr float kInf = std::numeric_limits<float>::infinity();

using test::describe;
using test::DeviceProblem;
using test::Problem;
using test::round_to;
using test::Shape;

// The naive low-precision computation: float scores from the rounded inputs, the mechanisms'
// definitions evaluated per element, the float normalizer, P rounded to the input type before P·V.
void naive_attention(const AttentionSpec& spec, const Problem& p, std::vector<float>& out, std::vector<float>& lse) {
    const Shape& s = p.s;
    const AttentionInputs in = p.inputs(nullptr, nullptr, nullptr, DType::F32);
    AttentionContext ctx{s.S, s.H, s.Hkv, p.segments.data(), p.sinks.data()};
    const float scale = spec.scale > 0 ? float(spec.scale) : 1.0f / std::sqrt(float(s.D));
    const Normalizer norm = spec.normalizer();
    const int64_t group = s.H / s.Hkv;
    out.assign(size_t(p.rows() * s.Dv), 0.0f);
    lse.assign(size_t(p.rows()), -kInf);
    std::vector<float> sc(size_t(s.S)), pr(size_t(s.S));
    for (int64_t b = 0; b < s.B; ++b)
        for (int64_t t = 0; t < s.T; ++t)
            for (int64_t h = s.head_begin; h < s.head_end; ++h) {
                const int64_t hk = h / group, i = in.q_pos0 + t;
                const float* qr = &p.q[size_t(((b * s.T + t) * s.H + h) * s.D)];
                float mx = -kInf;
                int64_t kept = 0;
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
                    sc[j] = keep ? x : -kInf;
                    kept += keep;
                    mx = std::max(mx, sc[j]);
                }
                if (kept == 0) continue;  // no kept key: out 0, lse -inf
                // pr: the unnormalised weights, rounded before P·V; out = Σ pr·v / divisor.
                float z = 0, divisor = 1;
                if (norm.kind == NormalizerKind::Softmax) {
                    std::vector<float> extra;
                    for (const auto& m : spec.mechanisms)
                        if (m->has_extra_logit()) extra.push_back(float(m->extra_logit(h, ctx)));
                    for (float e : extra) mx = std::max(mx, e);
                    for (int64_t j = 0; j < s.S; ++j) z += pr[j] = std::exp(sc[j] - mx);
                    for (float e : extra) z += std::exp(e - mx);
                    lse[size_t((b * s.T + t) * s.H + h)] = mx + std::log(z);
                    divisor = z;
                } else {
                    for (int64_t j = 0; j < s.S; ++j) {
                        if (sc[j] == -kInf) pr[j] = 0;
                        else if (norm.kind == NormalizerKind::Sigmoid) pr[j] = 1.0f / (1.0f + std::exp(-(sc[j] + float(norm.bias))));
                        else pr[j] = std::max(sc[j], 0.0f);
                        z += pr[j];
                    }
                    if (norm.kind == NormalizerKind::Relu) divisor = float(kept), z /= divisor;
                    lse[size_t((b * s.T + t) * s.H + h)] = std::log(z);
                }
                float* o = &out[size_t(((b * s.T + t) * s.H + h) * s.Dv)];
                for (int64_t j = 0; j < s.S; ++j) {
                    if (pr[j] == 0) continue;
                    const float rounded = round_to(pr[j], p.dtype);
                    const float* vr = &p.v[size_t(((b * s.S + j) * s.Hkv + hk) * s.Dv)];
                    for (int64_t d = 0; d < s.Dv; ++d) o[d] += rounded * vr[d];
                }
                for (int64_t d = 0; d < s.Dv; ++d) o[d] /= divisor;
            }
}

struct Errors {
    double out = 0, lse = 0;
    double max_out = 0;  // max |out| of the compared rows
    bool ok = true;      // NaN, unwritten entries, -inf rows and untouched heads matched
    std::string why;
};

// Errors of (out, lse) against the reference over the rows of the call's heads; with
// `untouched_outside`, the rows of other heads must still hold the NaN poison.
Errors compare(const std::vector<float>& out, const std::vector<float>& lse, const std::vector<float>& ref_out,
               const std::vector<float>& ref_lse, const Shape& s, bool untouched_outside) {
    Errors e;
    for (size_t r = 0; r < ref_lse.size(); ++r) {
        const int64_t h = int64_t(r) % s.H;
        if (h < s.head_begin || h >= s.head_end) {
            if (!untouched_outside) continue;
            bool poisoned = std::isnan(lse[r]);
            for (int64_t d = 0; d < s.Dv; ++d) poisoned = poisoned && std::isnan(out[r * s.Dv + d]);
            if (!poisoned) e.ok = false, e.why = fmt::format("row {} (head {}) outside the head range was written", r, h);
            continue;
        }
        if (std::isinf(ref_lse[r]) || std::isinf(lse[r])) {
            if (lse[r] != ref_lse[r]) e.ok = false, e.why = fmt::format("lse row {}: {} vs {}", r, lse[r], ref_lse[r]);
        } else if (!std::isfinite(lse[r])) {
            e.ok = false, e.why = fmt::format("lse row {} is {}", r, lse[r]);
        } else {
            e.lse = std::max(e.lse, std::fabs(double(lse[r]) - ref_lse[r]) / std::max(1.0, std::fabs(double(ref_lse[r]))));
        }
        for (int64_t d = 0; d < s.Dv; ++d) {
            const float a = out[r * s.Dv + d], b = ref_out[r * s.Dv + d];
            if (!std::isfinite(a)) {
                e.ok = false, e.why = fmt::format("out row {} dim {} is {} (unwritten or NaN)", r, d, a);
                continue;
            }
            e.out = std::max(e.out, std::fabs(double(a) - b));
            e.max_out = std::max(e.max_out, std::fabs(double(b)));
        }
    }
    return e;
}

struct Case {
    std::string spec;
    Shape shape;
    DType dtype;
    bool tensor_core = false;  // the plan must choose a tensor-core kernel (not the general one)
};

class GpuAttention : public ::testing::TestWithParam<Case> {};

TEST_P(GpuAttention, MatchesReferenceWithinTheTolerance) {
    const Case& c = GetParam();
    const AttentionSpec spec = c.spec.empty() ? AttentionSpec{} : AttentionSpec::parse(c.spec);
    const Problem p = test::case_problem(c.spec, c.shape, c.dtype);
    const Shape& s = p.s;
    const std::string where = test::case_name(c.spec, p);
    DeviceProblem dev(p);
    const AttentionOutputs dout = AttentionOutputs::contiguous(dev.out.get(), dev.lse.get(), s.T, s.H, s.Dv);
    // attention_cuda() is this plan, one run and a synchronize; the plan also says which kernel ran.
    const CudaAttentionPlan plan(spec, dev.inputs(p), dout);
    const CudaAttentionPlan::Stats kernel = plan.stats();
    if (c.tensor_core) {
        ASSERT_FALSE(kernel.general) << "the general kernel runs " << where;
        EXPECT_EQ(kernel.decode, s.T * (s.H / s.Hkv) <= 16) << where;
    }
    plan.run(dev.inputs(p), dout);
    ATTNLAB_CUDA_CHECK(cudaDeviceSynchronize());
    std::vector<float> out(dev.out.size()), lse(dev.lse.size());
    ATTNLAB_CUDA_CHECK(cudaMemcpy(out.data(), dev.out.get(), out.size() * 4, cudaMemcpyDeviceToHost));
    ATTNLAB_CUDA_CHECK(cudaMemcpy(lse.data(), dev.lse.get(), lse.size() * 4, cudaMemcpyDeviceToHost));

    // The reference reads the same (rounded) values as f32.
    std::vector<float> ref_out(out.size()), ref_lse(lse.size());
    const AttentionInputs hin = p.inputs(p.q.data(), p.k.data(), p.v.data(), DType::F32);
    attention_reference(spec, hin, AttentionOutputs::contiguous(ref_out.data(), ref_lse.data(), s.T, s.H, s.Dv));

    const Errors gpu = compare(out, lse, ref_out, ref_lse, s, /*untouched_outside=*/true);
    const char* kernel_name = kernel.general ? "general" : kernel.decode ? "decode" : "prefill";
    EXPECT_TRUE(gpu.ok) << gpu.why << ", " << where;
    if (c.dtype == DType::F32) {
        EXPECT_LE(gpu.out, 1e-5 * gpu.max_out) << "out, " << where << " (max |out| " << gpu.max_out << ")";
        EXPECT_LE(gpu.lse, 1e-5) << "lse, " << where;
        std::printf("[cuda-check] %-64s %-80s f32 out %.2e (%.2e of max|out|) lse %.2e\n", c.spec.c_str(),
                    describe(s).c_str(), gpu.out, gpu.max_out > 0 ? gpu.out / gpu.max_out : 0.0, gpu.lse);
        return;
    }
    std::vector<float> naive_out, naive_lse;
    naive_attention(spec, p, naive_out, naive_lse);
    const Errors naive = compare(naive_out, naive_lse, ref_out, ref_lse, s, /*untouched_outside=*/false);
    ASSERT_TRUE(naive.ok) << "naive: " << naive.why << ", " << where;
    const double out_bound = 2 * naive.out + 1e-4, lse_bound = 2 * naive.lse + 1e-4;
    EXPECT_LE(gpu.out, out_bound) << "out, " << where << " (naive " << naive.out << ")";
    EXPECT_LE(gpu.lse, lse_bound) << "lse, " << where << " (naive " << naive.lse << ")";
    // One line per case for the device log: how close to the bound each case runs.
    std::printf("[cuda-check] %-64s %-80s %s %-7s out %.2e (naive %.2e, %.2fx) lse %.2e (naive %.2e)\n", c.spec.c_str(),
                describe(s).c_str(), std::string(dtype_name(c.dtype)).c_str(), kernel_name, gpu.out, naive.out,
                naive.out > 0 ? gpu.out / naive.out : 0.0, gpu.lse, naive.lse);
}

// The general kernel's cases (f32, any head dims, every mechanism and normalizer) and the
// registry sweep, which also runs the tensor-core kernels where they apply.
void append_general_cases(std::vector<Case>& cases) {
    // Every registry entry alone and after `causal` (a new mechanism is swept without an edit).
    const std::vector<Shape> sweep_shapes = {
        {1, 70, 150, 4, 2, 16},          // prefill chunk T < S, GQA 2
        {1, 1, 300, 8, 1, 32},           // decode, GQA 8
        {2, 20, 40, 4, 4, 8, -1, 12},    // batch 2, GQA 1, Dv != D
    };
    for (const MechanismInfo& info : mechanism_registry()) {
        std::vector<std::string> specs = {info.example};
        if (info.name != "causal") specs.push_back("causal+" + info.example);
        for (const std::string& spec : specs) {
            for (const Shape& shape : sweep_shapes) cases.push_back({spec, shape, DType::F32});
            cases.push_back({spec, {1, 50, 120, 4, 2, 64}, DType::BF16});
        }
    }
    // Combinations over head dims 4 .. 256, Dv != D, GQA 1/2/4/8, decode and few rows.
    const std::vector<std::string> combos = {
        "",
        "causal",
        "causal+window(size=30)+softcap(cap=5)+sinks",
        "causal+segment(id=2)+sinks",
        "causal+boost(segment=1,alpha=0.7)+alibi",
        "radial(frame=16,decay=1,block=4)+causal",
        "radial_blocks(frame=16,decay=1,block=32)",
        "radial_blocks(frame=8,decay=2,block=64)+causal",
        "causal+window(size=20)+sigmoid(bias=-2)",
        "document+relu",
        "decay(gamma=0.8)+causal+streaming(sink=2,window=40)+sigmoid(bias=-1)",
        "sinks+sinks+causal",
        "causal+power(block=16,window=2,sink=1)+boost(segment=0,alpha=0.3)+relu",
        "chunked(size=20)+segment(id=1)+temperature(t=0.5)",
    };
    const std::vector<Shape> dims = {
        {1, 100, 100, 4, 2, 4},            // GQA 2
        {1, 37, 200, 8, 2, 8, -1, 16},     // GQA 4, Dv = 2·D
        {1, 64, 64, 2, 1, 12, -1, 5},      // GQA 2, odd Dv
        {1, 129, 129, 4, 2, 16},           // a row past two query blocks
        {2, 3, 500, 8, 1, 32},             // GQA 8, few rows, batch 2
        {1, 65, 130, 4, 2, 80, -1, 64},
        {1, 40, 90, 2, 2, 256},            // GQA 1, the largest head dim
        {1, 1, 700, 4, 2, 256, -1, 100},   // decode
    };
    for (const std::string& spec : combos)
        for (const Shape& shape : dims) cases.push_back({spec, shape, DType::F32});
    // Head ranges (a per-head spec's slice): across kv groups, one head, and the tensor-core kernel.
    for (const char* spec : {"causal", "causal+sinks+alibi", "segment(id=0)+relu"}) {
        cases.push_back({spec, {1, 30, 60, 8, 2, 16, -1, 0, 3, 6}, DType::F32});
        cases.push_back({spec, {1, 1, 200, 8, 1, 32, -1, 0, 5, 6}, DType::F32});
        cases.push_back({spec, {1, 70, 100, 8, 4, 64, -1, 0, 2, 7}, DType::BF16});
    }
    // The general kernel with bf16/f16 inputs: mechanisms the tensor-core kernels lack, D = 32.
    for (const char* spec : {"causal+segment(id=2)", "radial(frame=16,decay=1,block=4)+causal", "causal+sigmoid(bias=-1)",
                             "relu+causal", "boost(segment=1,alpha=0.5)+causal+sinks"}) {
        cases.push_back({spec, {1, 200, 200, 4, 2, 128}, DType::BF16});
        cases.push_back({spec, {1, 1, 1500, 8, 2, 128}, DType::BF16});
        cases.push_back({spec, {1, 77, 333, 8, 1, 64}, DType::F16});
    }
    for (const char* spec : {"causal", "causal+window(size=9)+sinks"}) {
        cases.push_back({spec, {1, 50, 90, 4, 2, 32}, DType::BF16});
        cases.push_back({spec, {1, 1, 400, 4, 1, 48, -1, 16}, DType::F16});
    }
    // Fully masked rows under every normalizer (relu rows that keep only negative scores give
    // lse = -inf with out 0 too), a segment id no key has, and long decode rows.
    for (const char* spec : {"window(size=2)", "window(size=2)+sinks", "window(size=2)+sigmoid(bias=0.5)",
                             "window(size=2)+relu", "segment(id=100000)", "segment(id=100000)+relu"}) {
        cases.push_back({spec, {1, 10, 100, 4, 2, 16, 97}, DType::F32});
        cases.push_back({spec, {1, 70, 100, 4, 1, 8, 60}, DType::F32});
        cases.push_back({spec, {1, 2, 100, 4, 2, 32, 150}, DType::F32});
    }
    for (const char* spec : {"causal", "causal+window(size=3000)+sigmoid"}) cases.push_back({spec, {1, 1, 5000, 8, 8, 64}, DType::F32});
}

// Head dim 256 on the tensor-core kernels (the mma.sync prefill kernel with Q in shared memory
// and single-buffered K/V tiles, or ATTNLAB_PREFILL_D256=32x2's 32-key stages; the split-KV
// decode kernel): the mechanisms they run, odd sizes, GQA 1/2/4/8,
// batch 2, head ranges, fully masked rows, decode over one key, a few keys and a long KV cache.
void append_head_dim_256_cases(std::vector<Case>& cases) {
    const std::vector<std::string> specs = {
        "",
        "causal",
        "window(size=37)",
        "causal+window(size=100)",
        "causal+streaming(sink=4,window=50)",
        "prefix(len=70)",
        "causal+document",
        "causal+power(block=16,window=2,sink=1)",
        "causal+alibi",
        "causal+softcap(cap=20)",
        "sinks",
        "causal+window(size=64)+softcap(cap=30)+sinks",
        "chunked(size=64)+causal+decay(gamma=0.95)+temperature(t=0.7)",
    };
    const std::vector<Shape> prefill = {
        {1, 200, 200, 4, 2, 256},              // odd T = S, GQA 2
        {1, 77, 333, 8, 1, 256},               // chunk T < S, GQA 8
        {2, 130, 130, 2, 2, 256},              // batch 2, GQA 1
        {1, 70, 100, 8, 4, 256, -1, 0, 2, 7},  // head range across kv groups
    };
    const std::vector<Shape> decode = {
        {1, 1, 1, 8, 2, 256},                  // one key
        {1, 1, 77, 8, 2, 256},                 // two tiles, the second partial
        {1, 1, 5000, 8, 2, 256},               // a KV cache: many key splits
        {2, 1, 777, 8, 4, 256, -1, 0, 1, 6},   // batch 2, head range
        {1, 3, 300, 4, 4, 256},                // a few queries, GQA 1
    };
    for (const std::string& spec : specs) {
        for (const Shape& shape : prefill) cases.push_back({spec, shape, DType::BF16, true});
        for (const Shape& shape : decode) cases.push_back({spec, shape, DType::BF16, true});
        cases.push_back({spec, prefill[0], DType::F16, true});
        cases.push_back({spec, decode[2], DType::F16, true});
    }
    // Fully masked rows (queries past the keys, a window of 2), prefill and decode.
    for (const char* spec : {"window(size=2)", "window(size=2)+sinks"}) {
        cases.push_back({spec, {1, 10, 100, 4, 2, 256, 97}, DType::BF16, true});
        cases.push_back({spec, {1, 10, 100, 4, 2, 256, 97}, DType::F16, true});
        cases.push_back({spec, {1, 2, 100, 4, 2, 256, 150}, DType::BF16, true});
    }
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
        for (const Shape& shape : shapes) cases.push_back({spec, shape, DType::BF16, true});
        cases.push_back({spec, shapes[0], DType::F16, true});
        cases.push_back({spec, shapes[2], DType::F16, true});
    }
    // Fully masked rows: queries past the keys see none of them through a window of 2.
    for (const char* spec : {"window(size=2)", "window(size=2)+sinks", "causal+window(size=2)+alibi"}) {
        cases.push_back({spec, {1, 10, 100, 4, 2, 128, 97}, DType::BF16, true});
        cases.push_back({spec, {1, 70, 100, 4, 1, 64, 60}, DType::BF16, true});
        cases.push_back({spec, {1, 2, 100, 4, 2, 64, 150}, DType::F16, true});
    }
    append_head_dim_256_cases(cases);
    append_general_cases(cases);
    return cases;
}

INSTANTIATE_TEST_SUITE_P(Cases, GpuAttention, ::testing::ValuesIn(all_cases()),
                         [](const ::testing::TestParamInfo<Case>& info) { return std::to_string(info.index); });

TEST(GpuAttentionErrors, OnlyTheMaterialisingOutputsAreNotOnTheGpu) {
    const Problem p({1, 8, 8, 2, 2, 64}, DType::BF16, 1);
    DeviceProblem dev(p);
    const AttentionInputs in = dev.inputs(p);
    const AttentionOutputs out = AttentionOutputs::contiguous(dev.out.get(), dev.lse.get(), 8, 2, 64);
    // (The statistics run on the GPU: attention_stats_cuda_test.cpp.)
    for (int which = 0; which < 2; ++which) {
        AttentionOutputs o = out;
        if (which == 0) o.scores = dev.out.get();
        if (which == 1) o.pattern = dev.out.get();
        try {
            attention_cuda(AttentionSpec::parse("causal"), in, o);
            ADD_FAILURE() << "output " << which << " ran";
        } catch (const NotSupported& e) {
            EXPECT_NE(std::string(e.what()).find("not on the GPU yet"), std::string::npos) << e.what();
        }
    }
    // Head dims past 256 (the general kernel's limit).
    const AttentionInputs big = AttentionInputs::contiguous(DType::BF16, dev.q16.get(), dev.k16.get(), dev.v16.get(), 1, 1, 1, 1, 1, 300, 300);
    EXPECT_THROW(attention_cuda(AttentionSpec::parse("causal"), big,
                                AttentionOutputs::contiguous(dev.out.get(), nullptr, 1, 1, 300)),
                 NotSupported);
    AttentionInputs f64 = in;
    f64.dtype = DType::F64;
    EXPECT_THROW(attention_cuda(AttentionSpec::parse("causal"), f64, out), InvalidArgument);
    for (const char* spec : {"document", "segment(id=1)", "boost(segment=1,alpha=1)"}) {
        AttentionInputs x = in;
        x.segments = nullptr;
        EXPECT_THROW(attention_cuda(AttentionSpec::parse(spec), x, out), InvalidArgument) << spec;
    }
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
    // The failed cudaMalloc stays the runtime's last error, which the next launch check
    // (cudaPeekAtLastError) would report as its own: clear it for the tests that follow.
    (void)cudaGetLastError();
    EXPECT_EQ(cudaPeekAtLastError(), cudaSuccess);
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
