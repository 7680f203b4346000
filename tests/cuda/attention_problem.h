// Random attention problems for the GPU tests (attention_cuda_test.cpp, attention_stats_cuda_test.cpp):
// shapes, inputs rounded to the input type, sinks, documents as segments, device up/downloads.
#pragma once

#include "kernels/cuda/cuda_util.cuh"

#include <attnlab/attention.h>
#include <attnlab/half.h>

#include <algorithm>
#include <functional>
#include <random>
#include <string>
#include <vector>

namespace attnlab::test {

struct Shape {
    int64_t B = 1, T = 1, S = 1, H = 1, Hkv = 1, D = 64;
    int64_t q_pos0 = -1;  // -1: S - T
    int64_t Dv = 0;       // 0: D
    int64_t head_begin = 0, head_end = -1;  // -1: H
};

inline std::string describe(const Shape& s) {
    return fmt::format("B={} T={} S={} H={} Hkv={} D={} Dv={} q_pos0={} heads=[{},{})", s.B, s.T, s.S, s.H, s.Hkv, s.D,
                       s.Dv, s.q_pos0, s.head_begin, s.head_end);
}

inline uint16_t round_bits(float x, DType dt) { return dt == DType::BF16 ? f32_to_bf16(x) : f32_to_f16(x); }
inline float from_bits(uint16_t h, DType dt) { return dt == DType::BF16 ? bf16_to_f32(h) : f16_to_f32(h); }
// x as the input type holds it (f32: unchanged).
inline float round_to(float x, DType dt) { return dt == DType::F32 ? x : from_bits(round_bits(x, dt), dt); }

// Random inputs in the input type: `q`, `k`, `v` hold the values as f32, `*16` the bits of
// bf16/f16 inputs; one sink logit per head; documents of 1..120 positions (ids 0, 1, 2, ...,
// n_segments of them) as the segments — long enough for whole tiles to be kept or skipped.
struct Problem {
    Shape s;
    DType dtype;
    std::vector<float> q, k, v, sinks;
    std::vector<uint16_t> q16, k16, v16;
    std::vector<int32_t> segments;  // (S)
    int32_t n_segments = 0;

    Problem(Shape shape, DType dt, uint32_t seed) : s(shape), dtype(dt) {
        if (s.q_pos0 < 0) s.q_pos0 = s.S - s.T;
        if (s.Dv == 0) s.Dv = s.D;
        if (s.head_end < 0) s.head_end = s.H;
        std::mt19937 rng(seed);
        auto fill = [&](std::vector<float>& x, std::vector<uint16_t>& bits, int64_t n, float sd) {
            std::normal_distribution<float> normal(0.0f, sd);
            x.resize(size_t(n));
            if (dt != DType::F32) bits.resize(size_t(n));
            for (size_t i = 0; i < x.size(); ++i) {
                x[i] = normal(rng);
                if (dt == DType::F32) continue;
                bits[i] = round_bits(x[i], dt);
                x[i] = from_bits(bits[i], dt);
            }
        };
        fill(q, q16, s.B * s.T * s.H * s.D, 1.5f);
        fill(k, k16, s.B * s.S * s.Hkv * s.D, 1.5f);
        fill(v, v16, s.B * s.S * s.Hkv * s.Dv, 1.0f);
        std::normal_distribution<float> normal(0.0f, 2.0f);
        for (int64_t h = 0; h < s.H; ++h) sinks.push_back(normal(rng));
        for (int64_t j = 0; j < s.S; ++n_segments) {
            const int64_t len = 1 + int64_t(rng() % 120);
            for (int64_t e = 0; e < len && j < s.S; ++e, ++j) segments.push_back(n_segments);
        }
    }

    int64_t rows() const { return s.B * s.T * s.H; }

    AttentionInputs inputs(const void* dq, const void* dk, const void* dv, DType dt) const {
        AttentionInputs in = AttentionInputs::contiguous(dt, dq, dk, dv, s.B, s.T, s.S, s.H, s.Hkv, s.D, s.Dv);
        in.q_pos0 = s.q_pos0;
        in.segments = segments.data();
        in.sinks = sinks.data();
        in.head_begin = s.head_begin;
        in.head_end = s.head_end;
        return in;
    }
};

// A test case's problem, seeded by its spec and shape, and the line that names it in failures.
inline Problem case_problem(const std::string& spec, const Shape& shape, DType dt) {
    return Problem(shape, dt, uint32_t(std::hash<std::string>{}(spec + describe(shape))));
}
inline std::string case_name(const std::string& spec, const Problem& p) {
    return fmt::format("spec \"{}\" {} {}", spec, describe(p.s), dtype_name(p.dtype));
}

template <typename T>
cuda::DeviceBuffer<T> upload(const std::vector<T>& host) {
    cuda::DeviceBuffer<T> buf(std::max<size_t>(host.size(), 1));
    buf.upload(host.data(), host.size());
    return buf;
}
template <typename T>
std::vector<T> download(const cuda::DeviceBuffer<T>& buf, size_t n) {
    std::vector<T> host(n);
    if (n) ATTNLAB_CUDA_CHECK(cudaMemcpy(host.data(), buf.get(), n * sizeof(T), cudaMemcpyDeviceToHost));
    return host;
}

// Device copies of q, k, v (f32 or 16-bit) and poisoned (NaN) outputs out (rows, Dv), lse (rows).
struct DeviceProblem {
    cuda::DeviceBuffer<float> q32, k32, v32;
    cuda::DeviceBuffer<uint16_t> q16, k16, v16;
    cuda::DeviceBuffer<float> out, lse;
    explicit DeviceProblem(const Problem& p) : out(size_t(p.rows() * p.s.Dv)), lse(size_t(p.rows())) {
        if (p.dtype == DType::F32) {
            q32 = upload(p.q), k32 = upload(p.k), v32 = upload(p.v);
        } else {
            q16 = upload(p.q16), k16 = upload(p.k16), v16 = upload(p.v16);
        }
        ATTNLAB_CUDA_CHECK(cudaMemset(out.get(), 0xff, out.size() * sizeof(float)));
        ATTNLAB_CUDA_CHECK(cudaMemset(lse.get(), 0xff, lse.size() * sizeof(float)));
    }
    AttentionInputs inputs(const Problem& p) const {
        if (p.dtype == DType::F32) return p.inputs(q32.get(), k32.get(), v32.get(), DType::F32);
        return p.inputs(q16.get(), k16.get(), v16.get(), p.dtype);
    }
};

}  // namespace attnlab::test
