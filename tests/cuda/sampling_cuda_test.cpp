// cuda::TokenSelector (model_kernels.cuh), the sampler's token choice on the GPU, against
// select_token (generate.h) on the CPU: the same id for the same logits, history, params and u,
// on random logit vectors (with and without ties) of small vocabularies and Qwen's 151936, over
// the settings' ranges (greedy with a penalty, tiny and huge temperatures, top-k off / 1 / past
// V, top-p, min-p, penalties above and below 1 over histories with repeated and out-of-range
// ids, the history growing call to call and replaced). The oracle is exact equality: the two
// differ only where u falls within rounding of a cumulative boundary (see TokenSelector), which
// random draws do not hit. Needs a GPU (docs/cuda.md).
#include "kernels/cuda/cuda_util.cuh"
#include "kernels/cuda/model_kernels.cuh"

#include <attnlab/cuda.h>
#include <attnlab/error.h>
#include <attnlab/generate.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <limits>
#include <random>
#include <vector>

namespace attnlab {
namespace {

// One pick on the device: `out` poisoned first, so an unwritten id fails.
int32_t device_pick(cuda::TokenSelector& selector, const cuda::DeviceBuffer<float>& logits, int64_t V,
                    const SamplingParams& params, std::span<const int32_t> history, double u,
                    const cuda::DeviceBuffer<int32_t>& out) {
    const int32_t poison = -7;
    ATTNLAB_CUDA_CHECK(cudaMemcpy(out.get(), &poison, sizeof(poison), cudaMemcpyHostToDevice));
    selector.pick(logits.get(), V, params, history, u, out.get(), nullptr);
    int32_t id = poison;
    ATTNLAB_CUDA_CHECK(cudaMemcpy(&id, out.get(), sizeof(id), cudaMemcpyDeviceToHost));  // waits for the pick
    return id;
}

template <typename T>
T one_of(const std::vector<T>& values, std::mt19937_64& rng) {
    return values[rng() % values.size()];
}

TEST(CudaTokenSelector, MatchesCpuSelectToken) {
    if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
    std::mt19937_64 rng(31337);
    cuda::TokenSelector selector;  // one object throughout: its history mask carries over
    const cuda::DeviceBuffer<int32_t> out(1);
    int cases = 0, mismatches = 0, sampled = 0, greedy = 0;
    for (const int64_t V : {int64_t(1), int64_t(2), int64_t(7), int64_t(1000), int64_t(151936)}) {
        const int reps = V > 100000 ? 120 : 300;
        std::vector<int32_t> history;
        cuda::DeviceBuffer<float> device_logits(static_cast<size_t>(V));
        for (int rep = 0; rep < reps; ++rep) {
            // Logits: normal at a random scale; every other vector rounded (many ties, -0 and +0).
            const float scale = one_of<float>({0.5f, 2.0f, 8.0f}, rng);
            std::normal_distribution<float> normal(0.0f, scale);
            std::vector<float> logits(static_cast<size_t>(V));
            for (float& x : logits) x = rep % 2 ? std::round(normal(rng)) : normal(rng);
            if (rep % 7 == 3 && V > 2) logits[1] = -0.0f, logits[2] = 0.0f;
            device_logits.upload(logits.data(), logits.size());
            // The history grows by a few ids (some repeated, some out of range), now and then anew.
            if (rep % 25 == 0) history.clear();
            for (int i = 0; i < 5; ++i)
                history.push_back(i == 4 ? int32_t(V + 3) : static_cast<int32_t>(rng() % std::min<int64_t>(V, 50)));
            SamplingParams p;
            p.temperature = one_of<double>({0.0, 1e-3, 0.7, 1.0, 1.5, 50.0}, rng);
            p.top_k = one_of<int64_t>({0, 0, 1, 5, 40, V + 3}, rng);
            p.top_p = one_of<double>({1.0, 1.0, 0.95, 0.9, 0.5}, rng);
            p.min_p = one_of<double>({0.0, 0.0, 0.05, 0.3}, rng);
            p.repetition_penalty = one_of<double>({1.0, 1.3, 0.7}, rng);
            const double u = rep % 50 == 1 ? std::nextafter(1.0, 0.0) : rep % 50 == 2 ? 0.0
                                                                                    : std::generate_canonical<double, 53>(rng);
            const int32_t expected = select_token(logits, history, p, u);
            const int32_t got = device_pick(selector, device_logits, V, p, history, u, out);
            if (got != expected && mismatches < 10)
                ADD_FAILURE() << "V " << V << " rep " << rep << " T " << p.temperature << " top-k " << p.top_k
                              << " top-p " << p.top_p << " min-p " << p.min_p << " penalty " << p.repetition_penalty
                              << " u " << u << ": device " << got << ", CPU " << expected;
            mismatches += got != expected;
            ++cases;
            (p.temperature == 0 ? greedy : sampled) += 1;
        }
    }
    std::printf("[cuda-check] token selector: %d cases (%d sampled, %d greedy), %d mismatches\n", cases, sampled, greedy,
                mismatches);
    EXPECT_EQ(mismatches, 0);
}

TEST(CudaTokenSelector, BadLogitsGiveMinusOne) {
    if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
    cuda::TokenSelector selector;
    const cuda::DeviceBuffer<int32_t> out(1);
    const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
    SamplingParams p;
    for (const std::vector<float>& logits : {std::vector<float>{1.0f, nan, 0.5f}, std::vector<float>{1.0f, inf, 0.5f},
                                             std::vector<float>{-inf, -inf, -inf}}) {
        cuda::DeviceBuffer<float> device_logits(logits.size());
        device_logits.upload(logits.data(), logits.size());
        EXPECT_THROW(select_token(logits, {}, p, 0.5), InvalidArgument);
        EXPECT_EQ(device_pick(selector, device_logits, int64_t(logits.size()), p, {}, 0.5, out), -1);
    }
    // And a good vector after them picks again (the flag is reset per pick).
    const std::vector<float> logits = {0.0f, 3.0f, 1.0f};
    cuda::DeviceBuffer<float> device_logits(logits.size());
    device_logits.upload(logits.data(), logits.size());
    EXPECT_EQ(device_pick(selector, device_logits, 3, p, {}, 0.0, out), 1);
    SamplingParams bad;
    bad.top_p = 0;
    EXPECT_THROW(selector.pick(device_logits.get(), 3, bad, {}, 0.5, out.get(), nullptr), InvalidArgument);
    EXPECT_THROW(selector.pick(device_logits.get(), 3, p, {}, 1.0, out.get(), nullptr), InvalidArgument);
}

// Time per pick at Qwen's V against the host path it replaces (copy V floats back, select_token).
TEST(CudaTokenSelector, TimingAtQwenVocabulary) {
    if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
    const int64_t V = 151936;
    std::mt19937_64 rng(5);
    std::normal_distribution<float> normal(0.0f, 3.0f);
    std::vector<float> logits(static_cast<size_t>(V));
    for (float& x : logits) x = normal(rng);
    cuda::DeviceBuffer<float> device_logits(static_cast<size_t>(V));
    device_logits.upload(logits.data(), logits.size());
    const cuda::DeviceBuffer<int32_t> out(1);
    cuda::TokenSelector selector;
    std::vector<int32_t> history(300);
    for (int32_t& id : history) id = static_cast<int32_t>(rng() % V);
    for (const int64_t top_k : {int64_t(40), int64_t(0)}) {
        SamplingParams p;
        p.top_k = top_k;
        p.repetition_penalty = 1.1;
        const int n = 50;
        device_pick(selector, device_logits, V, p, history, 0.5, out);  // warm-up
        auto start = std::chrono::steady_clock::now();
        for (int i = 0; i < n; ++i) device_pick(selector, device_logits, V, p, history, 0.5, out);
        const double device_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count() / n;
        std::vector<float> host(static_cast<size_t>(V));
        start = std::chrono::steady_clock::now();
        for (int i = 0; i < n; ++i) {
            ATTNLAB_CUDA_CHECK(cudaMemcpy(host.data(), device_logits.get(), V * sizeof(float), cudaMemcpyDeviceToHost));
            (void)select_token(host, history, p, 0.5);
        }
        const double host_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count() / n;
        std::printf("[cuda-check] pick at V=%ld top-k %ld: device %.3f ms, host path %.3f ms\n", long(V), long(top_k),
                    device_ms, host_ms);
        EXPECT_EQ(device_pick(selector, device_logits, V, p, history, 0.5, out), select_token(logits, history, p, 0.5));
    }
}

}  // namespace
}  // namespace attnlab
