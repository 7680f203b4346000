// Measures the machine's FP32 FMA peak and DRAM bandwidth, with 1 thread and with all CPUs.
//
//   peak            a small table
//   peak --json     one JSON object: fma_gflops_1t, fma_gflops, read_gbs_1t, read_gbs,
//                   triad_gbs_1t, triad_gbs, threads, isa
//
// Each figure is the best of 5 runs (the VMs are shared; the best run is the closest to the
// hardware's ceiling). See src/kernels/cpu/matmul_peak.h for the method.
#include "kernels/cpu/matmul_peak.h"

#include <fmt/core.h>

#include <cstring>

int main(int argc, char** argv) {
    namespace pk = attnlab::cpu::peak;
    bool json = false;
    for (int i = 1; i < argc; ++i) {
        if (std::strcmp(argv[i], "--json") == 0) {
            json = true;
        } else {
            fmt::print(stderr, "usage: {} [--json]\n", argv[0]);
            return 2;
        }
    }
    const int threads = pk::cpu_count();
    const pk::FmaIsa isa = pk::widest_fma_isa();
    const double fma_1 = pk::fma_gflops(1);
    const double fma_all = pk::fma_gflops(threads);
    const double read_1 = pk::read_gbs(1);
    const double read_all = pk::read_gbs(threads);
    const double triad_1 = pk::triad_gbs(1);
    const double triad_all = pk::triad_gbs(threads);
    if (json) {
        fmt::print(
            "{{\"isa\": \"{}\", \"threads\": {}, \"fma_gflops_1t\": {:.1f}, \"fma_gflops\": {:.1f}, "
            "\"read_gbs_1t\": {:.1f}, \"read_gbs\": {:.1f}, \"triad_gbs_1t\": {:.1f}, "
            "\"triad_gbs\": {:.1f}}}\n",
            isa.name, threads, fma_1, fma_all, read_1, read_all, triad_1, triad_all);
        return 0;
    }
    fmt::print("FP32 FMA ({}), DRAM read (sum over 512 MiB) and triad (3 x 256 MiB), best of 5\n",
               isa.name);
    fmt::print("{:<22} {:>10} {:>12}\n", "", "1 thread", fmt::format("{} threads", threads));
    fmt::print("{:<22} {:>10.1f} {:>12.1f}\n", "FMA peak (GFLOP/s)", fma_1, fma_all);
    fmt::print("{:<22} {:>10.1f} {:>12.1f}\n", "read (GB/s)", read_1, read_all);
    fmt::print("{:<22} {:>10.1f} {:>12.1f}\n", "triad (GB/s)", triad_1, triad_all);
    return 0;
}
