// Times the GPU attention operator (include/attnlab/cuda.h) on one GPU: one JSON line per
// case on stdout, for bench/cuda_attention_bench.py to put next to PyTorch's numbers.
//
//   cuda_attention_bench [--repeats N] [--check] [--copy] CASE...
//   CASE = SPEC@B@T@S@H@HKV@D   e.g. "causal@1@16384@16384@32@8@128"
//
// Inputs are random bf16 (never zeros); queries sit at S-T .. S-1. `document` reads the
// benchmark's segments: document k has 256·(1 + 7k mod 8) positions (the Python side builds the
// same). Each case: plan once, 3 warm-up runs, then N runs timed one by one with CUDA events;
// the median is reported. FLOPs count the kept 64×64 tiles (4·D per score, all heads); KV bytes
// count the K and V rows of the kept key blocks once per kv head. --check compares head 0 with
// the float64 reference on the host (slow at large T·S: use it on small cases). --copy first
// measures a device-to-device copy of 2 GiB (bytes read + written).
#include "kernels/cuda/cuda_util.cuh"

#include <attnlab/attention.h>
#include <attnlab/cuda.h>
#include <attnlab/half.h>

#include <cuda_bf16.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

using namespace attnlab;

namespace {

// Roughly normal values (sum of 4 uniforms) from a per-index hash: no host round trip at 16k.
__global__ void fill_random(__nv_bfloat16* x, size_t n, uint32_t seed, float sd) {
    for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x) {
        uint32_t h = uint32_t(i) * 747796405u + seed * 2891336453u + uint32_t(i >> 32);
        float sum = 0;
        for (int k = 0; k < 4; ++k) {
            h ^= h >> 16;
            h *= 0x7feb352du;
            h ^= h >> 15;
            h *= 0x846ca68bu;
            h ^= h >> 16;
            sum += float(h) * (1.0f / 4294967296.0f);
        }
        x[i] = __float2bfloat16((sum - 2.0f) * 1.7320508f * sd);
    }
}

void random_bf16(cuda::DeviceBuffer<uint16_t>& buf, uint32_t seed, float sd) {
    fill_random<<<1024, 256>>>(reinterpret_cast<__nv_bfloat16*>(buf.get()), buf.size(), seed, sd);
    ATTNLAB_CUDA_CHECK_LAUNCH("fill_random");
}

std::vector<int32_t> bench_segments(int64_t S) {
    std::vector<int32_t> seg;
    for (int32_t k = 0; int64_t(seg.size()) < S; ++k)
        for (int64_t e = 0, len = 256 * (1 + (7 * k) % 8); e < len && int64_t(seg.size()) < S; ++e) seg.push_back(k);
    return seg;
}

float median(std::vector<float> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

// Times `fn` (enqueues work on the default stream): warm-up, then `repeats` event-timed runs.
template <typename Fn>
float time_ms(Fn fn, int repeats) {
    cudaEvent_t start, stop;
    ATTNLAB_CUDA_CHECK(cudaEventCreate(&start));
    ATTNLAB_CUDA_CHECK(cudaEventCreate(&stop));
    for (int i = 0; i < 3; ++i) fn();
    std::vector<float> times;
    for (int i = 0; i < repeats; ++i) {
        ATTNLAB_CUDA_CHECK(cudaEventRecord(start));
        fn();
        ATTNLAB_CUDA_CHECK(cudaEventRecord(stop));
        ATTNLAB_CUDA_CHECK(cudaEventSynchronize(stop));
        float ms = 0;
        ATTNLAB_CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
        times.push_back(ms);
    }
    cudaEventDestroy(start);
    cudaEventDestroy(stop);
    return median(times);
}

void measure_copy(int repeats) {
    const size_t bytes = size_t(2) << 30;
    cuda::DeviceBuffer<uint8_t> a(bytes), b(bytes);
    ATTNLAB_CUDA_CHECK(cudaMemset(a.get(), 1, bytes));
    const float ms = time_ms([&] { ATTNLAB_CUDA_CHECK(cudaMemcpyAsync(b.get(), a.get(), bytes, cudaMemcpyDeviceToDevice)); }, repeats);
    std::printf("{\"impl\": \"copy\", \"bytes\": %zu, \"ms\": %.4f, \"GBps\": %.1f}\n", 2 * bytes, ms, 2.0 * bytes / (ms * 1e6));
}

struct Case {
    std::string spec;
    int64_t B, T, S, H, Hkv, D;
};

bool parse_case(const std::string& text, Case& c) {
    const size_t at = text.find('@');
    if (at == std::string::npos) return false;
    c.spec = text.substr(0, at);
    long long v[6];
    if (std::sscanf(text.c_str() + at + 1, "%lld@%lld@%lld@%lld@%lld@%lld", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5]) != 6) return false;
    c.B = v[0], c.T = v[1], c.S = v[2], c.H = v[3], c.Hkv = v[4], c.D = v[5];
    return true;
}

// Max |out - reference| over head 0 of batch 0 (the reference runs on the host in float64).
double check_head0(const AttentionSpec& spec, const AttentionInputs& din, const cuda::DeviceBuffer<uint16_t>& q,
                   const cuda::DeviceBuffer<uint16_t>& k, const cuda::DeviceBuffer<uint16_t>& v,
                   const cuda::DeviceBuffer<float>& out, const Case& c) {
    std::vector<uint16_t> hq(q.size()), hk(k.size()), hv(v.size());
    std::vector<float> got(out.size());
    ATTNLAB_CUDA_CHECK(cudaMemcpy(hq.data(), q.get(), hq.size() * 2, cudaMemcpyDeviceToHost));
    ATTNLAB_CUDA_CHECK(cudaMemcpy(hk.data(), k.get(), hk.size() * 2, cudaMemcpyDeviceToHost));
    ATTNLAB_CUDA_CHECK(cudaMemcpy(hv.data(), v.get(), hv.size() * 2, cudaMemcpyDeviceToHost));
    ATTNLAB_CUDA_CHECK(cudaMemcpy(got.data(), out.get(), got.size() * 4, cudaMemcpyDeviceToHost));
    AttentionInputs hin = din;
    hin.q = hq.data(), hin.k = hk.data(), hin.v = hv.data();
    hin.B = 1, hin.head_begin = 0, hin.head_end = 1;
    std::vector<float> ref(got.size() / size_t(c.B), 0.0f);
    attention_reference(spec, hin, AttentionOutputs::contiguous(ref.data(), nullptr, c.T, c.H, c.D));
    double err = 0;
    for (int64_t t = 0; t < c.T; ++t)
        for (int64_t d = 0; d < c.D; ++d) {
            const size_t idx = size_t(t * c.H * c.D + d);
            err = std::isfinite(got[idx]) ? std::max(err, std::fabs(double(got[idx]) - ref[idx])) : INFINITY;
        }
    return err;
}

void run_case(const Case& c, int repeats, bool check) {
    const AttentionSpec spec = AttentionSpec::parse(c.spec);
    cuda::DeviceBuffer<uint16_t> q(size_t(c.B * c.T * c.H * c.D)), k(size_t(c.B * c.S * c.Hkv * c.D)),
        v(size_t(c.B * c.S * c.Hkv * c.D));
    cuda::DeviceBuffer<float> out(q.size()), lse(size_t(c.B * c.T * c.H));
    random_bf16(q, 1, 1.5f);
    random_bf16(k, 2, 1.5f);
    random_bf16(v, 3, 1.0f);
    const std::vector<int32_t> segments = bench_segments(c.S);
    AttentionInputs in = AttentionInputs::contiguous(DType::BF16, q.get(), k.get(), v.get(), c.B, c.T, c.S, c.H, c.Hkv, c.D, c.D);
    in.segments = segments.data();
    const AttentionOutputs o = AttentionOutputs::contiguous(out.get(), lse.get(), c.T, c.H, c.D);
    const CudaAttentionPlan plan(spec, in, o);
    const auto st = plan.stats();
    const float ms = time_ms([&] { plan.run(in, o); }, repeats);
    ATTNLAB_CUDA_CHECK(cudaDeviceSynchronize());
    const double keys_read = double(st.kept_blocks) * 64.0 / double(std::max<int64_t>(st.q_blocks, 1));
    const double kv_bytes = double(c.B * c.Hkv) * std::min<double>(keys_read, double(c.S)) * double(c.D) * 2 * 2;
    const double err = check ? check_head0(spec, in, q, k, v, out, c) : -1.0;
    std::printf("{\"impl\": \"attnlab\", \"spec\": \"%s\", \"B\": %lld, \"T\": %lld, \"S\": %lld, \"H\": %lld, \"Hkv\": %lld, "
                "\"D\": %lld, \"ms\": %.4f, \"flops\": %.6e, \"kept_fraction\": %.4f, \"kv_bytes\": %.6e, \"decode\": %s, "
                "\"splits\": %lld, \"max_err_head0\": %.3e}\n",
                c.spec.c_str(), (long long)c.B, (long long)c.T, (long long)c.S, (long long)c.H, (long long)c.Hkv,
                (long long)c.D, ms, st.kept_flops, double(st.kept_blocks) / double(st.q_blocks * st.k_blocks), kv_bytes,
                st.decode ? "true" : "false", (long long)st.splits, err);
    std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
    int repeats = 10;
    bool check = false;
    std::vector<Case> cases;
    try {
        for (int a = 1; a < argc; ++a) {
            const std::string arg = argv[a];
            if (arg == "--repeats" && a + 1 < argc) repeats = std::max(1, std::atoi(argv[++a]));
            else if (arg == "--check") check = true;
            else if (arg == "--copy") measure_copy(repeats);
            else {
                Case c;
                if (!parse_case(arg, c)) {
                    std::fprintf(stderr, "cuda_attention_bench: bad case '%s' (SPEC@B@T@S@H@HKV@D)\n", arg.c_str());
                    return 2;
                }
                cases.push_back(c);
            }
        }
        for (const Case& c : cases) run_case(c, repeats, check);
    } catch (const Error& e) {
        std::fprintf(stderr, "%s\n", e.what());
        return 1;
    }
    return 0;
}
