// Machine ceilings that the CPU matmul is judged against: FP32 FMA peak and DRAM bandwidth.
//
// Header-only, used by bench/peak.cpp and bench/matmul_bench.cpp so that a matmul benchmark
// can quote "% of peak" measured in the same run (the machines are shared VMs whose clock and
// bandwidth drift). Each thread is pinned to one CPU; the FMA loop uses the widest vector ISA
// the CPU reports at run time (AVX-512F, else AVX2+FMA, else SSE2 multiply-add), selected with
// __attribute__((target)) so the binary needs no -march flag. Highway is not used here: the
// loop is a dozen lines of intrinsics per ISA and the benches do not link Highway.
#pragma once

#include <immintrin.h>
#include <pthread.h>
#include <sched.h>
#include <time.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <thread>
#include <vector>

namespace attnlab::cpu::peak {

inline double now_seconds() {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// CPU time of the whole process: counts only while its threads are scheduled, so on a loaded
// machine FLOPs per CPU-second still measure per-core efficiency (time slicing drops out).
inline double process_cpu_seconds() {
    timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

inline int cpu_count() {
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof(set), &set) == 0) return std::max(1, CPU_COUNT(&set));
    return std::max(1u, std::thread::hardware_concurrency());
}

inline void pin_to_cpu(int index) {
    cpu_set_t allowed;
    if (sched_getaffinity(0, sizeof(allowed), &allowed) != 0) return;
    int seen = 0;
    for (int c = 0; c < CPU_SETSIZE; ++c) {
        if (!CPU_ISSET(c, &allowed)) continue;
        if (seen++ == index) {
            cpu_set_t one;
            CPU_ZERO(&one);
            CPU_SET(c, &one);
            pthread_setaffinity_np(pthread_self(), sizeof(one), &one);
            return;
        }
    }
}

// Runs fn(thread_index) on `threads` pinned threads released together; returns the wall time
// from the common start to the last thread's end.
inline double run_pinned(int threads, const std::function<void(int)>& fn) {
    std::atomic<int> ready{0};
    std::atomic<bool> go{false};
    std::vector<double> ends(static_cast<size_t>(threads));
    double start = 0.0;
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t) {
        pool.emplace_back([&, t] {
            pin_to_cpu(t);
            ready.fetch_add(1);
            while (!go.load(std::memory_order_acquire)) {
            }
            fn(t);
            ends[static_cast<size_t>(t)] = now_seconds();
        });
    }
    while (ready.load() < threads) {
    }
    start = now_seconds();
    go.store(true, std::memory_order_release);
    for (auto& th : pool) th.join();
    return *std::max_element(ends.begin(), ends.end()) - start;
}

// Not _mm512_reduce_add_ps: GCC 12 warns inside it (-Wuninitialized false positive).
__attribute__((target("avx512f"))) inline float hsum512(__m512 v) {
    alignas(64) float lanes[16];
    _mm512_store_ps(lanes, v);
    float s = 0.0f;
    for (float x : lanes) s += x;
    return s;
}

// ---------------------------------------------------------------------------------------------
// FMA peak. 16 independent accumulators: FMA latency (4-5 cycles) x 2 pipes needs >= 10 chains.

// The chains are named variables, not an array: GCC keeps an array of 16 vectors on the stack
// here, which turns every FMA into a load-FMA-store.
#define ATTNLAB_PEAK_REPEAT16(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11) X(12) X(13) X(14) X(15)
#define ATTNLAB_PEAK_REPEAT12(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11)

__attribute__((target("avx512f"))) inline float fma_loop_avx512(int64_t iters, float seed) {
#define DECL(i) __m512 acc##i = _mm512_set1_ps(seed + i);
    ATTNLAB_PEAK_REPEAT16(DECL)
#undef DECL
    const __m512 a = _mm512_set1_ps(0.999999f), b = _mm512_set1_ps(1e-7f * seed);
    for (int64_t it = 0; it < iters; ++it) {
        // The empty asm is opaque to the optimiser (no folding of iterations) and pins acc in
        // a register.
#define STEP(i) acc##i = _mm512_fmadd_ps(acc##i, a, b); __asm__ volatile("" : "+v"(acc##i));
        ATTNLAB_PEAK_REPEAT16(STEP)
#undef STEP
    }
    __m512 s = _mm512_setzero_ps();
#define SUM(i) s = _mm512_add_ps(s, acc##i);
    ATTNLAB_PEAK_REPEAT16(SUM)
#undef SUM
    return hsum512(s);
}

__attribute__((target("avx2,fma"))) inline float fma_loop_avx2(int64_t iters, float seed) {
    // 16 ymm registers: 12 chains + 2 constants.
#define DECL(i) __m256 acc##i = _mm256_set1_ps(seed + i);
    ATTNLAB_PEAK_REPEAT12(DECL)
#undef DECL
    const __m256 a = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(1e-7f * seed);
    for (int64_t it = 0; it < iters; ++it) {
#define STEP(i) acc##i = _mm256_fmadd_ps(acc##i, a, b); __asm__ volatile("" : "+v"(acc##i));
        ATTNLAB_PEAK_REPEAT12(STEP)
#undef STEP
    }
    __m256 s = _mm256_setzero_ps();
#define SUM(i) s = _mm256_add_ps(s, acc##i);
    ATTNLAB_PEAK_REPEAT12(SUM)
#undef SUM
    float out[8];
    _mm256_storeu_ps(out, s);
    return out[0] + out[7];
}

inline float fma_loop_sse(int64_t iters, float seed) {
#define DECL(i) __m128 acc##i = _mm_set1_ps(seed + i);
    ATTNLAB_PEAK_REPEAT12(DECL)
#undef DECL
    const __m128 a = _mm_set1_ps(0.999999f), b = _mm_set1_ps(1e-7f * seed);
    for (int64_t it = 0; it < iters; ++it) {
#define STEP(i) acc##i = _mm_add_ps(_mm_mul_ps(acc##i, a), b); __asm__ volatile("" : "+x"(acc##i));
        ATTNLAB_PEAK_REPEAT12(STEP)
#undef STEP
    }
    __m128 s = _mm_setzero_ps();
#define SUM(i) s = _mm_add_ps(s, acc##i);
    ATTNLAB_PEAK_REPEAT12(SUM)
#undef SUM
    return _mm_cvtss_f32(s);
}

#undef ATTNLAB_PEAK_REPEAT16
#undef ATTNLAB_PEAK_REPEAT12

struct FmaIsa {
    const char* name;
    int flops_per_iter;  // useful FLOPs of one loop iteration
    float (*loop)(int64_t, float);
};

inline FmaIsa widest_fma_isa() {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) return {"avx512", 16 * 16 * 2, fma_loop_avx512};
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return {"avx2", 12 * 8 * 2, fma_loop_avx2};
    return {"sse2", 12 * 4 * 2, fma_loop_sse};
}

// Best-of-`repeats` FP32 FMA throughput of `threads` pinned threads, GFLOP/s. With cpu_time,
// per CPU-second of the process instead of per wall second (see process_cpu_seconds).
inline double fma_gflops(int threads, int repeats = 5, int64_t iters = 20'000'000, bool cpu_time = false) {
    const FmaIsa isa = widest_fma_isa();
    isa.loop(iters / 10, 1.0f);  // warm up: wake the vector units and the clock
    double best = 0.0;
    std::atomic<float> sink{0.0f};
    for (int r = 0; r < repeats; ++r) {
        const double cpu0 = process_cpu_seconds();
        double seconds = run_pinned(threads, [&](int t) {
            float v = isa.loop(iters, 1.0f + static_cast<float>(t));
            sink.store(v, std::memory_order_relaxed);
        });
        // Spinning at the start barrier is a negligible part of the CPU time of a 0.1 s loop.
        if (cpu_time) seconds = (process_cpu_seconds() - cpu0) / threads;
        best = std::max(best, static_cast<double>(isa.flops_per_iter) * iters * threads / seconds * 1e-9);
    }
    return best;
}

// ---------------------------------------------------------------------------------------------
// DRAM bandwidth over arrays far larger than any cache (the VMs report up to 300 MiB of L3).

struct AlignedArray {
    explicit AlignedArray(size_t n) : count(n) {
        data = static_cast<float*>(std::aligned_alloc(64, (n * sizeof(float) + 63) / 64 * 64));
    }
    ~AlignedArray() { std::free(data); }
    AlignedArray(const AlignedArray&) = delete;
    AlignedArray& operator=(const AlignedArray&) = delete;
    float* data;
    size_t count;
};

__attribute__((target("avx512f"))) inline float sum_avx512(const float* p, size_t n) {
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    size_t i = 0;
    for (; i + 64 <= n; i += 64) {
        a0 = _mm512_add_ps(a0, _mm512_load_ps(p + i));
        a1 = _mm512_add_ps(a1, _mm512_load_ps(p + i + 16));
        a2 = _mm512_add_ps(a2, _mm512_load_ps(p + i + 32));
        a3 = _mm512_add_ps(a3, _mm512_load_ps(p + i + 48));
    }
    float s = hsum512(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
    for (; i < n; ++i) s += p[i];
    return s;
}

__attribute__((target("avx2"))) inline float sum_avx2(const float* p, size_t n) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        a0 = _mm256_add_ps(a0, _mm256_load_ps(p + i));
        a1 = _mm256_add_ps(a1, _mm256_load_ps(p + i + 8));
        a2 = _mm256_add_ps(a2, _mm256_load_ps(p + i + 16));
        a3 = _mm256_add_ps(a3, _mm256_load_ps(p + i + 24));
    }
    float out[8];
    _mm256_storeu_ps(out, _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    float s = 0.0f;
    for (float v : out) s += v;
    for (; i < n; ++i) s += p[i];
    return s;
}

inline float sum_floats(const float* p, size_t n) {
    return __builtin_cpu_supports("avx512f") ? sum_avx512(p, n)
           : __builtin_cpu_supports("avx2")  ? sum_avx2(p, n)
                                             : [&] {
                                                   float s = 0.0f;
                                                   for (size_t i = 0; i < n; ++i) s += p[i];
                                                   return s;
                                               }();
}

// a = b + s * c (STREAM triad; 12 bytes per element counted: 2 reads + 1 write).
__attribute__((target("avx2,fma"))) inline void triad_avx2(float* a, const float* b, const float* c,
                                                           float s, size_t n) {
    const __m256 vs = _mm256_set1_ps(s);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        _mm256_store_ps(a + i, _mm256_fmadd_ps(vs, _mm256_load_ps(c + i), _mm256_load_ps(b + i)));
    }
    for (; i < n; ++i) a[i] = b[i] + s * c[i];
}

inline void triad(float* a, const float* b, const float* c, float s, size_t n) {
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
        triad_avx2(a, b, c, s, n);
        return;
    }
    for (size_t i = 0; i < n; ++i) a[i] = b[i] + s * c[i];
}

// Splits [0, n) into `threads` chunks aligned to 16 floats.
inline std::pair<size_t, size_t> chunk(size_t n, int threads, int t) {
    size_t per = (n / static_cast<size_t>(threads) + 15) / 16 * 16;
    size_t begin = std::min(n, per * static_cast<size_t>(t));
    size_t end = t == threads - 1 ? n : std::min(n, begin + per);
    return {begin, end};
}

// Best-of-`repeats` read bandwidth (sum reduction) of `threads` pinned threads over `bytes`.
inline double read_gbs(int threads, size_t bytes = size_t{512} << 20, int repeats = 5) {
    AlignedArray arr(bytes / sizeof(float));
    // First touch by the threads that will read, so pages are mapped before timing.
    run_pinned(threads, [&](int t) {
        auto [b, e] = chunk(arr.count, threads, t);
        for (size_t i = b; i < e; ++i) arr.data[i] = 1.0f;
    });
    double best = 0.0;
    std::atomic<float> sink{0.0f};
    for (int r = 0; r < repeats; ++r) {
        double seconds = run_pinned(threads, [&](int t) {
            auto [b, e] = chunk(arr.count, threads, t);
            sink.store(sum_floats(arr.data + b, e - b), std::memory_order_relaxed);
        });
        best = std::max(best, static_cast<double>(arr.count * sizeof(float)) / seconds * 1e-9);
    }
    return best;
}

// Best-of-`repeats` STREAM triad bandwidth over three arrays of `bytes_each`.
inline double triad_gbs(int threads, size_t bytes_each = size_t{256} << 20, int repeats = 5) {
    const size_t n = bytes_each / sizeof(float);
    AlignedArray a(n), b(n), c(n);
    run_pinned(threads, [&](int t) {
        auto [lo, hi] = chunk(n, threads, t);
        for (size_t i = lo; i < hi; ++i) {
            a.data[i] = 0.0f;
            b.data[i] = 1.0f;
            c.data[i] = 2.0f;
        }
    });
    double best = 0.0;
    for (int r = 0; r < repeats; ++r) {
        double seconds = run_pinned(threads, [&](int t) {
            auto [lo, hi] = chunk(n, threads, t);
            triad(a.data + lo, b.data + lo, c.data + lo, 0.5f, hi - lo);
        });
        best = std::max(best, 3.0 * static_cast<double>(n * sizeof(float)) / seconds * 1e-9);
    }
    return best;
}

}  // namespace attnlab::cpu::peak
