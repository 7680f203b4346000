// The attention statistics (AttentionStats) on the GPU against the float64 reference
// (attention_reference with stats and pattern): every output — mass, entropy, sum_sq, top_key,
// top_prob, key_mass, offset_mass, segment_mass, distance_mass, column_sum — for each normalizer,
// sinks, GQA, window/document masks, fully masked rows, a head range, batch 2, decode T = 1
// over 5000 keys, D ∈ {16, 64, 128, 256}, f32, bf16 and f16 inputs, on the general and the
// tensor-core kernels (the statistics pass reads their lse). bf16/f16 prefill cases with
// D ∈ {64, 128, 256} run the pass twice: its default, which must be the mma.sync dot products,
// and ATTNLAB_STATS_KERNEL=fma (the f32-FMA pass). Needs a GPU (tests/cuda).
//
// Tolerance: the reference reads the same input values the GPU reads (bf16/f16 inputs are
// rounded once, on the host, and given to both), so the only error left is the GPU's f32
// arithmetic — scores, e^{s - lse}, sums in f32 and partial sums added by atomics in no fixed
// order: every statistic within 1e-4·(1 + |reference|). That is the error of a naive f32
// computation over these rows with a margin; the rounding of bf16 inputs is not an error here.
// top_key may differ from the reference's where two probabilities are within that tolerance:
// the test checks that the reference's p at the GPU's key is within it of the maximum.
#include "attention_problem.h"
#include "kernels/cuda/cuda_util.cuh"

#include <attnlab/attention.h>
#include <attnlab/cuda.h>
#include <attnlab/half.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <limits>
#include <random>
#include <string>
#include <vector>

namespace attnlab {
namespace cuda {
// attention_common.cuh (a CUDA header this C++ test cannot include): whether a plan built now
// with bf16/f16 inputs of this head dim runs the statistics' dot products on tensor cores.
bool stats_tensor_cores(int64_t head_dim);
}  // namespace cuda

namespace {

// ATTNLAB_STATS_KERNEL for the guard's lifetime (nullopt: unset, the default), then as it was.
class StatsKernelEnv {
public:
    explicit StatsKernelEnv(std::optional<std::string> value) {
        if (const char* old = std::getenv(kName)) old_ = old;
        if (value) ::setenv(kName, value->c_str(), 1);
        else ::unsetenv(kName);
    }
    ~StatsKernelEnv() {
        if (old_) ::setenv(kName, old_->c_str(), 1);
        else ::unsetenv(kName);
    }
    StatsKernelEnv(const StatsKernelEnv&) = delete;
    StatsKernelEnv& operator=(const StatsKernelEnv&) = delete;

private:
    static constexpr const char* kName = "ATTNLAB_STATS_KERNEL";
    std::optional<std::string> old_;
};

using test::describe;
using test::DeviceProblem;
using test::download;
using test::Problem;
using test::Shape;
using test::upload;

constexpr int64_t kTopKeyPoison = 0x7f7f7f7f7f7f7f7f;  // memset 0x7f: no valid key and not -1

// What to measure: chosen keys (one past the end: never kept), offsets (negative: a later
// key), the documents as segments, 7 distance bins (the last one takes the rest).
AttentionStats what_to_measure(const Problem& p) {
    AttentionStats st;
    st.keys = {0, 5, p.s.S - 1, p.s.S + 3};
    st.offsets = {0, 1, 7, -2};
    st.segments = p.segments.data();
    st.n_segments = p.n_segments;
    st.n_distance_bins = 7;
    return st;
}

// Every output of one call, on the host or the device.
template <template <typename> class Buf>
struct StatsBuffers {
    Buf<float> mass, entropy, sum_sq, top_prob, key_mass, offset_mass, segment_mass, distance_mass, column_sum;
    Buf<int64_t> top_key;
};
using HostStats = StatsBuffers<std::vector>;
using DeviceStats = StatsBuffers<cuda::DeviceBuffer>;

struct Sizes {
    size_t rows, keys, offsets, segments, bins, columns;
    Sizes(const Problem& p, const AttentionStats& st)
        : rows(size_t(p.s.B * p.s.T * p.s.H)),
          keys(rows * st.keys.size()),
          offsets(rows * st.offsets.size()),
          segments(rows * size_t(st.n_segments)),
          bins(rows * size_t(st.n_distance_bins)),
          columns(size_t(p.s.B * p.s.H * p.s.S)) {}
};

// The buffers' first elements: host vectors or device buffers.
template <typename T>
T* first(std::vector<T>& host) { return host.data(); }
template <typename T>
T* first(cuda::DeviceBuffer<T>& device) { return device.get(); }

// Points the statistics' outputs at HostStats or DeviceStats buffers.
template <typename Buf>
void point_at(AttentionStats& st, Buf& b) {
    st.mass = first(b.mass), st.entropy = first(b.entropy), st.sum_sq = first(b.sum_sq);
    st.top_key = first(b.top_key), st.top_prob = first(b.top_prob);
    st.key_mass = first(b.key_mass), st.offset_mass = first(b.offset_mass);
    st.segment_mass = first(b.segment_mass), st.distance_mass = first(b.distance_mass);
    st.column_sum = first(b.column_sum);
}

// Device outputs poisoned (floats NaN, top_key kTopKeyPoison), so unwritten entries fail.
DeviceStats make_device_stats(const Sizes& n) {
    DeviceStats d;
    auto floats = [](size_t count) {
        cuda::DeviceBuffer<float> b(std::max<size_t>(count, 1));
        ATTNLAB_CUDA_CHECK(cudaMemset(b.get(), 0xff, b.size() * sizeof(float)));
        return b;
    };
    d.mass = floats(n.rows), d.entropy = floats(n.rows), d.sum_sq = floats(n.rows), d.top_prob = floats(n.rows);
    d.key_mass = floats(n.keys), d.offset_mass = floats(n.offsets), d.segment_mass = floats(n.segments);
    d.distance_mass = floats(n.bins), d.column_sum = floats(n.columns);
    d.top_key = cuda::DeviceBuffer<int64_t>(n.rows);
    ATTNLAB_CUDA_CHECK(cudaMemset(d.top_key.get(), 0x7f, n.rows * sizeof(int64_t)));
    return d;
}

HostStats download_stats(const DeviceStats& d, const Sizes& n) {
    HostStats h;
    h.mass = download(d.mass, n.rows), h.entropy = download(d.entropy, n.rows), h.sum_sq = download(d.sum_sq, n.rows);
    h.top_prob = download(d.top_prob, n.rows), h.top_key = download(d.top_key, n.rows);
    h.key_mass = download(d.key_mass, n.keys), h.offset_mass = download(d.offset_mass, n.offsets);
    h.segment_mass = download(d.segment_mass, n.segments), h.distance_mass = download(d.distance_mass, n.bins);
    h.column_sum = download(d.column_sum, n.columns);
    return h;
}

double tolerance(double ref) { return 1e-4 * (1.0 + std::fabs(ref)); }

// Compares one (B, T, H, width) or (B, H, S) output: entries of the call's heads within the
// tolerance, the others still NaN. `head_of(e)` gives an entry's head.
template <typename HeadOf>
void expect_close(const char* name, const std::vector<float>& gpu, const std::vector<float>& ref, HeadOf head_of,
                  const Shape& s, const std::string& where, double* worst) {
    int reported = 0;
    for (size_t e = 0; e < ref.size(); ++e) {
        const int64_t h = head_of(e);
        const bool inside = h >= s.head_begin && h < s.head_end;
        const bool ok = inside ? std::fabs(double(gpu[e]) - ref[e]) <= tolerance(ref[e]) : std::isnan(gpu[e]);
        if (inside && std::isfinite(gpu[e])) *worst = std::max(*worst, std::fabs(double(gpu[e]) - ref[e]) / tolerance(ref[e]));
        if (!ok && reported++ < 3)
            ADD_FAILURE() << name << "[" << e << "] (head " << h << (inside ? "" : ", outside the range")
                          << "): gpu " << gpu[e] << " vs reference " << ref[e] << ", " << where;
    }
}

struct Case {
    std::string spec;
    Shape shape;
    DType dtype;
    bool caller_lse = true;  // false: the plan keeps its own lse for the statistics pass
};

class GpuAttentionStats : public ::testing::TestWithParam<Case> {};

TEST_P(GpuAttentionStats, MatchTheFloat64Reference) {
    const Case& c = GetParam();
    const AttentionSpec spec = c.spec.empty() ? AttentionSpec{} : AttentionSpec::parse(c.spec);
    const Problem p = test::case_problem(c.spec, c.shape, c.dtype);
    const Shape& s = p.s;
    const std::string where = test::case_name(c.spec, p);

    // Reference: float64 statistics and the pattern (B, H, T, S) for the top-key check.
    AttentionStats ref_st = what_to_measure(p);
    const Sizes n(p, ref_st);
    HostStats ref;
    ref.mass.resize(n.rows), ref.entropy.resize(n.rows), ref.sum_sq.resize(n.rows), ref.top_prob.resize(n.rows);
    ref.top_key.resize(n.rows), ref.key_mass.resize(n.keys), ref.offset_mass.resize(n.offsets);
    ref.segment_mass.resize(n.segments), ref.distance_mass.resize(n.bins), ref.column_sum.resize(n.columns);
    point_at(ref_st, ref);
    std::vector<float> ref_out(n.rows * size_t(s.D)), ref_lse(n.rows), pattern(size_t(s.B * s.H * s.T * s.S));
    AttentionOutputs ref_outputs = AttentionOutputs::contiguous(ref_out.data(), ref_lse.data(), s.T, s.H, s.D);
    ref_outputs.stats = &ref_st;
    ref_outputs.pattern = pattern.data();
    attention_reference(spec, p.inputs(p.q.data(), p.k.data(), p.v.data(), DType::F32), ref_outputs);

    // The statistics kernels to check: the default, and for bf16/f16 prefill at the tensor-core
    // dims also the f32-FMA pass (the default there must be the mma.sync one).
    const bool tensor_core_dims = c.dtype != DType::F32 && s.T > 1 && (s.D == 64 || s.D == 128 || s.D == 256);
    std::vector<std::optional<std::string>> kernels = {std::nullopt};
    if (tensor_core_dims) {
        const StatsKernelEnv unset(std::nullopt);
        EXPECT_TRUE(cuda::stats_tensor_cores(s.D)) << "the default statistics kernel is not the mma one, " << where;
        kernels.push_back("fma");
    }
    for (const std::optional<std::string>& kernel : kernels) {
        const StatsKernelEnv env(kernel);
        const char* kernel_name = kernel ? kernel->c_str() : (tensor_core_dims ? "mma" : "default");
        if (tensor_core_dims) {
            EXPECT_EQ(cuda::stats_tensor_cores(s.D), !kernel) << where;
        }

        // GPU: a plan run twice (the second run must start from a clean workspace).
        const DeviceProblem d(p);  // outputs poisoned
        const AttentionInputs in = d.inputs(p);
        DeviceStats dev = make_device_stats(n);
        AttentionStats st = what_to_measure(p);
        point_at(st, dev);
        AttentionOutputs outputs = AttentionOutputs::contiguous(d.out.get(), c.caller_lse ? d.lse.get() : nullptr, s.T, s.H, s.D);
        outputs.stats = &st;
        const CudaAttentionPlan plan(spec, in, outputs);
        plan.run(in, outputs);
        plan.run(in, outputs);
        ATTNLAB_CUDA_CHECK(cudaDeviceSynchronize());
        const HostStats gpu = download_stats(dev, n);

        const int64_t K = int64_t(st.keys.size()), R = int64_t(st.offsets.size()), G = st.n_segments, NB = st.n_distance_bins;
        auto row_head = [&](int64_t width) { return [=, &s](size_t e) { return int64_t(e) / width % s.H; }; };
        double worst = 0;
        expect_close("mass", gpu.mass, ref.mass, row_head(1), s, where, &worst);
        expect_close("entropy", gpu.entropy, ref.entropy, row_head(1), s, where, &worst);
        expect_close("sum_sq", gpu.sum_sq, ref.sum_sq, row_head(1), s, where, &worst);
        expect_close("top_prob", gpu.top_prob, ref.top_prob, row_head(1), s, where, &worst);
        expect_close("key_mass", gpu.key_mass, ref.key_mass, row_head(K), s, where, &worst);
        expect_close("offset_mass", gpu.offset_mass, ref.offset_mass, row_head(R), s, where, &worst);
        expect_close("segment_mass", gpu.segment_mass, ref.segment_mass, row_head(G), s, where, &worst);
        expect_close("distance_mass", gpu.distance_mass, ref.distance_mass, row_head(NB), s, where, &worst);
        expect_close("column_sum", gpu.column_sum, ref.column_sum, [&](size_t e) { return int64_t(e) / s.S % s.H; }, s, where,
                     &worst);

        // top_key: -1 exactly where the reference keeps no mass; elsewhere a key whose reference p
        // is within the tolerance of the row's maximum. Rows outside the head range stay poisoned.
        int64_t empty_rows = 0, other_key = 0;
        for (size_t r = 0; r < n.rows; ++r) {
            const int64_t h = int64_t(r) % s.H, t = int64_t(r) / s.H % s.T, b = int64_t(r) / s.H / s.T;
            const int64_t key = gpu.top_key[r];
            if (h < s.head_begin || h >= s.head_end) {
                EXPECT_EQ(key, kTopKeyPoison) << "top_key row " << r << " outside the head range was written, " << where;
                continue;
            }
            if (ref.top_key[r] < 0) {
                ++empty_rows;
                EXPECT_EQ(key, -1) << "top_key row " << r << ", " << where;
                continue;
            }
            if (key < 0 || key >= s.S) {
                ADD_FAILURE() << "top_key row " << r << " is " << key << " (reference " << ref.top_key[r] << "), " << where;
                continue;
            }
            const float* row_p = pattern.data() + ((b * s.H + h) * s.T + t) * s.S;
            other_key += key != ref.top_key[r];
            EXPECT_GE(double(row_p[key]), ref.top_prob[r] - tolerance(ref.top_prob[r]))
                << "top_key row " << r << ": key " << key << " has p " << row_p[key] << ", the reference's " << ref.top_key[r]
                << " has " << ref.top_prob[r] << ", " << where;
        }
        const auto plan_stats = plan.stats();
        std::printf("[stats-check] %-58s %-70s %-4s %-7s %-7s worst %.3f of tolerance, %lld empty rows, %lld near-tie keys\n",
                    c.spec.c_str(), describe(s).c_str(), std::string(dtype_name(c.dtype)).c_str(),
                    plan_stats.decode ? "decode" : "kernel", kernel_name, worst, (long long)empty_rows, (long long)other_key);
    }
}

std::vector<Case> stats_cases() {
    return {
        {"causal", {1, 37, 37, 4, 2, 16}, DType::F32},
        {"", {1, 300, 300, 4, 4, 64}, DType::F32, false},                 // bidirectional, keys after the query
        {"causal+sinks", {1, 37, 300, 8, 2, 128}, DType::BF16},           // tensor-core prefill, mass < 1
        {"causal+window(size=30)+softcap(cap=5)", {2, 100, 100, 4, 2, 64}, DType::BF16, false},  // batch 2
        {"document", {1, 130, 130, 4, 2, 16}, DType::F32},
        {"causal+document+alibi", {1, 77, 333, 8, 1, 64}, DType::F16},
        {"causal+sigmoid(bias=-1)", {1, 64, 200, 4, 2, 32}, DType::F32},
        {"document+relu", {1, 70, 150, 4, 2, 16}, DType::F32, false},
        {"causal+window(size=20)+relu", {1, 50, 90, 4, 1, 16}, DType::BF16},  // general kernel, bf16
        {"window(size=2)", {1, 10, 100, 4, 2, 16, 97}, DType::F32},          // fully masked rows
        {"window(size=2)+sinks", {1, 10, 100, 4, 2, 64, 97}, DType::BF16},
        {"window(size=2)+relu", {1, 70, 100, 4, 1, 8, 60}, DType::F32},
        {"causal+alibi", {1, 30, 60, 8, 2, 16, -1, 0, 3, 6}, DType::F32},      // head range across kv groups
        {"causal", {1, 70, 100, 8, 4, 64, -1, 0, 2, 7}, DType::BF16},           // head range, tensor cores
        {"sinks+sinks+causal", {1, 37, 37, 4, 2, 16}, DType::F32},
        {"causal", {1, 1, 5000, 8, 2, 128}, DType::BF16},                    // decode: split-KV kernel
        {"causal+sinks", {1, 1, 5000, 8, 8, 64}, DType::F32, false},         // decode: general kernel
        {"causal+window(size=3000)+sigmoid", {1, 1, 5000, 8, 8, 16}, DType::F32},
        {"causal+streaming(sink=4,window=50)", {2, 1, 5000, 4, 1, 128}, DType::BF16},
        {"causal", {1, 300, 300, 2, 1, 128}, DType::F32},
        {"causal+softcap(cap=20)", {1, 150, 150, 4, 2, 256}, DType::BF16},  // D = 256 (4 rows per warp)
        {"causal+alibi", {1, 100, 200, 8, 2, 128}, DType::F16, false},       // f16 tensor cores, 2 m16 tiles
        {"causal", {1, 8, 200, 4, 2, 64}, DType::BF16},                      // 16 rows: 2 per warp, one m16 tile
        {"causal+sinks", {1, 4, 300, 2, 1, 128}, DType::F16},                // 8 rows: 1 per warp, half an m16 tile
    };
}

INSTANTIATE_TEST_SUITE_P(Cases, GpuAttentionStats, ::testing::ValuesIn(stats_cases()),
                         [](const ::testing::TestParamInfo<Case>& info) { return std::to_string(info.index); });

TEST(GpuAttentionStatsErrors, BadStatisticsThrowTheCpuErrors) {
    const Problem p({1, 8, 8, 2, 2, 64}, DType::BF16, 1);
    const cuda::DeviceBuffer<uint16_t> q = upload(p.q16), k = upload(p.k16), v = upload(p.v16);
    const AttentionInputs in = p.inputs(q.get(), k.get(), v.get(), DType::BF16);
    cuda::DeviceBuffer<float> out(8 * 2 * 64), mass(16), bins(16 * 4);
    AttentionOutputs o = AttentionOutputs::contiguous(out.get(), nullptr, 8, 2, 64);
    const AttentionSpec causal = AttentionSpec::parse("causal");

    AttentionStats bad_segment;
    std::vector<int32_t> ids(8, 0);
    ids[5] = 3;
    bad_segment.segments = ids.data();
    bad_segment.n_segments = 2;
    bad_segment.segment_mass = mass.get();
    o.stats = &bad_segment;
    EXPECT_THROW(attention_cuda(causal, in, o), InvalidArgument);

    AttentionStats no_bins;
    no_bins.distance_mass = bins.get();
    o.stats = &no_bins;
    EXPECT_THROW(attention_cuda(causal, in, o), InvalidArgument);

    // A plan built without statistics, or for other chosen widths, refuses a run with them.
    AttentionStats four_bins;
    four_bins.n_distance_bins = 4;
    four_bins.distance_mass = bins.get();
    o.stats = nullptr;
    const CudaAttentionPlan plain(causal, in, o);
    o.stats = &four_bins;
    EXPECT_THROW(plain.run(in, o), InvalidArgument);
    const CudaAttentionPlan with_bins(causal, in, o);
    AttentionStats three_bins = four_bins;
    three_bins.n_distance_bins = 3;
    o.stats = &three_bins;
    EXPECT_THROW(with_bins.run(in, o), InvalidArgument);
}

// Timing (run explicitly: --gtest_also_run_disabled_tests --gtest_filter='*StatsTiming*'):
// the attention kernel alone vs attention + every statistic, causal prefill and a decode step.
TEST(GpuAttentionStats, DISABLED_StatsTiming) {
    struct Timed {
        const char* name;
        Shape shape;
    };
    for (const Timed& c : {Timed{"causal prefill", {1, 4096, 4096, 32, 8, 128}}, Timed{"decode", {1, 1, 32768, 32, 8, 128}}}) {
        const Shape& s = c.shape;
        // Random bf16 bits of N(0, 1)-like values, cheaply (an LCG; only the timing matters).
        auto random_bf16 = [](size_t count, uint32_t seed) {
            std::vector<uint16_t> bits(count);
            uint32_t x = seed;
            for (auto& b : bits) {
                x = x * 1664525u + 1013904223u;
                b = f32_to_bf16((float(x >> 8) / float(1 << 24) - 0.5f) * 3.0f);
            }
            return bits;
        };
        const auto q = upload(random_bf16(size_t(s.B * s.T * s.H * s.D), 1));
        const auto k = upload(random_bf16(size_t(s.B * s.S * s.Hkv * s.D), 2));
        const auto v = upload(random_bf16(size_t(s.B * s.S * s.Hkv * s.D), 3));
        AttentionInputs in = AttentionInputs::contiguous(DType::BF16, q.get(), k.get(), v.get(), s.B, s.T, s.S, s.H, s.Hkv, s.D, s.D);
        cuda::DeviceBuffer<float> out(size_t(s.B * s.T * s.H * s.D)), lse(size_t(s.B * s.T * s.H));
        std::vector<int32_t> segments(size_t(s.S));
        for (int64_t j = 0; j < s.S; ++j) segments[size_t(j)] = int32_t(j / 512);
        AttentionStats st;
        st.keys = {0, 1, 2, 3};
        st.offsets = {0, 1};
        st.segments = segments.data();
        st.n_segments = int64_t(segments.back()) + 1;
        st.n_distance_bins = AttentionStats::distance_bins_for(s.S);
        const size_t rows = size_t(s.B * s.T * s.H);
        cuda::DeviceBuffer<float> mass(rows), entropy(rows), sum_sq(rows), top_prob(rows), key_mass(rows * 4),
            offset_mass(rows * 2), segment_mass(rows * size_t(st.n_segments)), distance_mass(rows * size_t(st.n_distance_bins)),
            column_sum(size_t(s.B * s.H * s.S));
        cuda::DeviceBuffer<int64_t> top_key(rows);
        st.mass = mass.get(), st.entropy = entropy.get(), st.sum_sq = sum_sq.get(), st.top_prob = top_prob.get();
        st.top_key = top_key.get(), st.key_mass = key_mass.get(), st.offset_mass = offset_mass.get();
        st.segment_mass = segment_mass.get(), st.distance_mass = distance_mass.get(), st.column_sum = column_sum.get();
        const AttentionSpec spec = AttentionSpec::parse("causal");
        const AttentionOutputs plain = AttentionOutputs::contiguous(out.get(), lse.get(), s.T, s.H, s.D);
        AttentionOutputs with_stats = plain;
        with_stats.stats = &st;
        AttentionOutputs rows_only = plain;
        AttentionStats st_rows = st;
        st_rows.column_sum = nullptr;
        rows_only.stats = &st_rows;

        auto time_ms = [&](const AttentionOutputs& o) {
            const CudaAttentionPlan plan(spec, in, o);
            for (int w = 0; w < 3; ++w) plan.run(in, o);
            cudaEvent_t start, stop;
            ATTNLAB_CUDA_CHECK(cudaEventCreate(&start));
            ATTNLAB_CUDA_CHECK(cudaEventCreate(&stop));
            constexpr int kRuns = 10;
            ATTNLAB_CUDA_CHECK(cudaEventRecord(start));
            for (int r = 0; r < kRuns; ++r) plan.run(in, o);
            ATTNLAB_CUDA_CHECK(cudaEventRecord(stop));
            ATTNLAB_CUDA_CHECK(cudaEventSynchronize(stop));
            float ms = 0;
            ATTNLAB_CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
            ATTNLAB_CUDA_CHECK(cudaEventDestroy(start));
            ATTNLAB_CUDA_CHECK(cudaEventDestroy(stop));
            return double(ms) / kRuns;
        };
        const double alone = time_ms(plain);
        for (const char* kernel : {"fma", "mma"}) {  // the statistics pass's dot products: f32 FMAs, tensor cores
            const StatsKernelEnv env(kernel);
            const double rows_ms = time_ms(rows_only), all = time_ms(with_stats);
            std::printf("[stats-timing] %-15s %s bf16 causal, %s pass: attention %.3f ms, + row stats %.3f ms (pass %.3f), "
                        "+ all incl. column sums %.3f ms (pass %.3f)\n",
                        c.name, describe(s).c_str(), kernel, alone, rows_ms, rows_ms - alone, all, all - alone);
        }
    }
}

}  // namespace
}  // namespace attnlab
