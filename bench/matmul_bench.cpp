// Times attnlab::cpu::linear() on the matrix shapes of a Qwen2.5-0.5B layer and its lm_head,
// with bf16 and f32 weights, and quotes the results against the FP32 FMA peak and the DRAM
// read bandwidth measured at the start of the same run.
//
//   matmul_bench [--json] [--m 1,512] [--threads N] [--dtype bf16,f32] [--reps R] [--cpu-time] [--best]
//
// Prefill (M > 1): GFLOP/s of useful work (2 M N K) and % of the FMA peak, median of R runs.
// Decode (M = 1): the weights are copied until the copies span >= 768 MiB (more than any L3
// of our machines), each timed batch walks all copies once, as a decode step walks all layers,
// and the figure is weight bytes / time in GB/s and % of the measured read bandwidth.
// --cpu-time: for a loaded machine (2 cores shared with compilers), time kernels and the FMA
// peak in process CPU-seconds divided by the thread count, so "% of peak" is per-core
// efficiency while the thread is scheduled; DRAM figures stay wall-clock.
// --best: quote the fastest of the R runs instead of the median (and the best FMA-peak run):
// on a shared machine the fastest run is the one least disturbed, which makes A/B comparisons
// of kernel changes far less noisy. Quoted figures in docs/performance.md are medians.
#include "kernels/cpu/matmul.h"
#include "kernels/cpu/matmul_peak.h"

#include <attnlab/half.h>
#include <attnlab/tensor.h>
#include <attnlab/threads.h>

#include <fmt/core.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <random>
#include <sstream>
#include <string>
#include <vector>

namespace {

using namespace attnlab;

struct Shape2 {
    const char* name;
    int64_t K, N;
    bool prefill;  // false: only timed at M = 1 (the lm_head runs on the last position only)
};

// Qwen2.5-0.5B: hidden 896, 14 query heads and 2 kv heads of 64, MLP 4864, vocab 151936.
const Shape2 kShapes[] = {
    {"qkv (fused)", 896, 1152, true}, {"q / o", 896, 896, true},   {"k / v", 896, 128, true},
    {"gate / up", 896, 4864, true},   {"down", 4864, 896, true},   {"lm_head", 896, 151936, false},
};

std::vector<int64_t> parse_list(const std::string& s) {
    std::vector<int64_t> out;
    std::stringstream ss(s);
    std::string item;
    while (std::getline(ss, item, ',')) out.push_back(std::stoll(item));
    return out;
}

std::vector<std::string> parse_words(const std::string& s) {
    std::vector<std::string> out;
    std::stringstream ss(s);
    std::string item;
    while (std::getline(ss, item, ',')) out.push_back(item);
    return out;
}

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    size_t n = v.size();
    return n % 2 == 1 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// `copies` (N, K) weights with the same random contents, back to back in one allocation.
std::vector<Tensor> make_weights(int64_t N, int64_t K, DType dtype, int copies, std::mt19937& rng) {
    const size_t bytes = static_cast<size_t>(N * K) * dtype_size(dtype);
    const size_t stride = (bytes + 4095) / 4096 * 4096;
    auto storage = Storage::allocate(stride * static_cast<size_t>(copies));
    std::uniform_real_distribution<float> dist(-0.05f, 0.05f);
    std::byte* first = storage->data();
    for (int64_t i = 0; i < N * K; ++i) {
        float v = dist(rng);
        if (dtype == DType::BF16) {
            uint16_t h = f32_to_bf16(v);
            std::memcpy(first + i * 2, &h, 2);
        } else {
            std::memcpy(first + i * 4, &v, 4);
        }
    }
    std::vector<Tensor> out;
    for (int c = 0; c < copies; ++c) {
        if (c > 0) std::memcpy(storage->data() + stride * c, first, bytes);
        out.emplace_back(storage, stride * static_cast<size_t>(c), dtype, Shape{N, K});
    }
    return out;
}

}  // namespace

int main(int argc, char** argv) {
    namespace pk = attnlab::cpu::peak;
    bool json = false;
    std::vector<int64_t> ms = {1, 512};
    std::vector<std::string> dtypes = {"bf16", "f32"};
    int threads = 0;
    int reps = 7;
    bool cpu_time = false;
    bool best = false;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        auto next = [&]() -> std::string {
            if (i + 1 >= argc) {
                fmt::print(stderr, "{} needs a value\n", a);
                std::exit(2);
            }
            return argv[++i];
        };
        if (a == "--json") json = true;
        else if (a == "--m") ms = parse_list(next());
        else if (a == "--threads") threads = std::stoi(next());
        else if (a == "--dtype") dtypes = parse_words(next());
        else if (a == "--reps") reps = std::max(1, std::stoi(next()));
        else if (a == "--cpu-time") cpu_time = true;
        else if (a == "--best") best = true;
        else {
            fmt::print(stderr, "usage: {} [--json] [--m 1,512] [--threads N] [--dtype bf16,f32] [--reps R] [--cpu-time] [--best]\n", argv[0]);
            return 2;
        }
    }
    set_num_threads(threads);
    const int nt = num_threads();
    // The ceilings, measured now: the host's load changes from run to run.
    const double peak_gflops = pk::fma_gflops(nt, best ? 9 : 3, 20'000'000, cpu_time);
    const double read_gbs = pk::read_gbs(nt, size_t{512} << 20, 3);
    if (!json) {
        fmt::print("threads {}, FP32 FMA peak {:.1f} GFLOP/s ({}), DRAM read {:.1f} GB/s (measured now){}\n",
                   nt, peak_gflops, pk::widest_fma_isa().name, read_gbs,
                   cpu_time ? "; times in CPU-seconds / threads" : "");
        fmt::print("{:<12} {:>5} {:>6} {:>7} {:>5} {:>10} {:>9} {:>7} {:>8} {:>7}\n", "shape", "K", "N",
                   "dtype", "M", "ms (med)", "GFLOP/s", "%peak", "GB/s W", "%read");
    }
    std::mt19937 rng(1234);
    std::string json_rows;
    struct LayerTotal {
        double seconds = 0, flops = 0;
    };
    for (const std::string& dname : dtypes) {
        const DType dtype = dname == "bf16" ? DType::BF16 : dname == "f16" ? DType::F16 : DType::F32;
        for (int64_t M : ms) {
            LayerTotal layer;
            for (const Shape2& s : kShapes) {
                if (!s.prefill && M != 1) continue;
                const size_t wbytes = static_cast<size_t>(s.N * s.K) * dtype_size(dtype);
                // Decode streams distinct copies (no cache reuse between calls); prefill reuses one.
                const int copies =
                    M == 1 ? static_cast<int>(std::max<size_t>(1, ((size_t{768} << 20) + wbytes - 1) / wbytes)) : 1;
                std::vector<Tensor> w = make_weights(s.N, s.K, dtype, copies, rng);
                std::vector<float> x(static_cast<size_t>(M * s.K)), y(static_cast<size_t>(M * s.N));
                std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
                for (float& v : x) v = dist(rng);
                auto run_batch = [&] {
                    for (const Tensor& t : w) cpu::linear(x.data(), s.K, t, nullptr, y.data(), s.N, M);
                };
                run_batch();  // warm-up: page faults, thread-local buffers
                std::vector<double> times;
                for (int r = 0; r < reps; ++r) {
                    const double t0 = pk::now_seconds(), c0 = pk::process_cpu_seconds();
                    run_batch();
                    const double wall = pk::now_seconds() - t0, cpu = (pk::process_cpu_seconds() - c0) / nt;
                    times.push_back((cpu_time ? cpu : wall) / copies);
                }
                const double t = best ? *std::min_element(times.begin(), times.end()) : median(times);
                const double flops = 2.0 * M * s.N * s.K;
                const double gflops = flops / t * 1e-9;
                const double gbs = static_cast<double>(wbytes) / t * 1e-9;
                if (s.prefill) {
                    // A layer runs qkv (fused), o, gate, up and down once each.
                    const std::string n = s.name;
                    int times_in_layer = n == "qkv (fused)" ? 1 : n == "q / o" ? 1 : n == "gate / up" ? 2 : n == "down" ? 1 : 0;
                    layer.seconds += times_in_layer * t;
                    layer.flops += times_in_layer * flops;
                }
                if (json) {
                    json_rows += fmt::format(
                        "{}{{\"shape\": \"{}\", \"K\": {}, \"N\": {}, \"dtype\": \"{}\", \"M\": {}, \"ms\": {:.4f}, "
                        "\"gflops\": {:.1f}, \"pct_peak\": {:.1f}, \"weight_gbs\": {:.1f}, \"pct_read\": {:.1f}}}",
                        json_rows.empty() ? "" : ", ", s.name, s.K, s.N, dname, M, t * 1e3, gflops,
                        100.0 * gflops / peak_gflops, gbs, 100.0 * gbs / read_gbs);
                } else {
                    fmt::print("{:<12} {:>5} {:>6} {:>7} {:>5} {:>10.3f} {:>9.1f} {:>6.1f}% {:>8.1f} {:>6.1f}%\n",
                               s.name, s.K, s.N, dname, M, t * 1e3, gflops, 100.0 * gflops / peak_gflops, gbs,
                               100.0 * gbs / read_gbs);
                }
            }
            if (!json && layer.seconds > 0) {
                const double g = layer.flops / layer.seconds * 1e-9;
                fmt::print("{:<12} {:>5} {:>6} {:>7} {:>5} {:>10.3f} {:>9.1f} {:>6.1f}%   (qkv+o+gate+up+down)\n",
                           "layer", "", "", dname, M, layer.seconds * 1e3, g, 100.0 * g / peak_gflops);
            }
        }
    }
    if (json) {
        fmt::print("{{\"threads\": {}, \"fma_gflops\": {:.1f}, \"read_gbs\": {:.1f}, \"results\": [{}]}}\n", nt,
                   peak_gflops, read_gbs, json_rows);
    }
    return 0;
}
