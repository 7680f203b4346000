// Tensor views and copies, dtype conversions (bf16 / f16 rounding), the thread pool.
#include <attnlab/error.h>
#include <attnlab/half.h>
#include <attnlab/tensor.h>
#include <attnlab/threads.h>

#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>

namespace attnlab {
namespace {

Tensor iota(Shape shape) {
    Tensor t = Tensor::empty(shape, DType::F32);
    for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = static_cast<float>(i);
    return t;
}

TEST(Tensor, ViewsShareStorageAndIndexCorrectly) {
    Tensor t = iota({3, 4, 5});
    EXPECT_EQ(t.numel(), 60);
    EXPECT_TRUE(t.is_contiguous());
    Tensor s = t.slice(1, 1, 3);  // (3, 2, 5)
    EXPECT_EQ(s.shape(), (Shape{3, 2, 5}));
    EXPECT_FALSE(s.is_contiguous());
    EXPECT_EQ(s.item({2, 1, 4}), t.item({2, 2, 4}));
    Tensor tr = t.transpose(0, 2);  // (5, 4, 3)
    EXPECT_EQ(tr.item({4, 3, 2}), t.item({2, 3, 4}));
    Tensor sel = t.select(0, 1);  // (4, 5)
    EXPECT_EQ(sel.item({3, 0}), 35.0);
    Tensor c = tr.contiguous();
    EXPECT_TRUE(c.is_contiguous());
    EXPECT_EQ(c.item({4, 3, 2}), t.item({2, 3, 4}));
    EXPECT_EQ(t.reshape({12, -1}).shape(), (Shape{12, 5}));
    EXPECT_EQ(t.unsqueeze(1).shape(), (Shape{3, 1, 4, 5}));
    sel.data<float>()[0] = -1.0f;  // a view writes through
    EXPECT_EQ(t.item({1, 0, 0}), -1.0);
}

TEST(Tensor, RejectsBadViews) {
    Tensor t = iota({3, 4});
    EXPECT_THROW(t.slice(0, 2, 5), InvalidArgument);
    EXPECT_THROW(t.select(1, 4), InvalidArgument);
    EXPECT_THROW(t.transpose(0, 2), InvalidArgument);
    EXPECT_THROW(t.reshape({5, -1}), InvalidArgument);
    EXPECT_THROW(t.transpose(0, 1).reshape({12}), InvalidArgument);
    EXPECT_THROW(Tensor::empty({2, -1}), InvalidArgument);
}

TEST(Tensor, DtypeConversionsRoundTrip) {
    Tensor t = iota({2, 3}).transpose(0, 1);  // strided source
    for (DType d : {DType::F64, DType::BF16, DType::F16, DType::I32, DType::I64}) {
        Tensor back = t.to(d).to(DType::F32);
        EXPECT_EQ(back.to_floats(), t.contiguous().to_floats()) << dtype_name(d);
    }
}

TEST(Half, Bf16RoundsToNearestEven) {
    EXPECT_EQ(f32_to_bf16(1.0f), 0x3f80);
    // 1 + 2^-8 is exactly halfway between two bf16 values: ties go to the even one (1.0).
    EXPECT_EQ(f32_to_bf16(1.0f + std::ldexp(1.0f, -8)), 0x3f80);
    EXPECT_EQ(f32_to_bf16(1.0f + 3 * std::ldexp(1.0f, -8)), 0x3f82);
    EXPECT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(std::numeric_limits<float>::quiet_NaN()))));
    EXPECT_EQ(bf16_to_f32(f32_to_bf16(-2.5f)), -2.5f);
}

// f16 conversion against a float64 round-to-nearest-even reference over random and edge values.
TEST(Half, F16MatchesReferenceRounding) {
    auto reference = [](double x) -> double {
        if (std::isnan(x)) return x;
        double ax = std::fabs(x);
        if (ax >= 65520.0) return std::copysign(INFINITY, x);
        int e;
        std::frexp(ax, &e);  // ax = m * 2^e, m in [0.5, 1)
        int exponent = std::max(e - 1, -14);
        double ulp = std::ldexp(1.0, exponent - 10);
        double q = ax / ulp;
        double r = std::nearbyint(q);  // default rounding mode: nearest even
        return std::copysign(r * ulp, x);
    };
    std::mt19937 rng(3);
    std::uniform_real_distribution<double> exp_dist(-26, 17);
    std::vector<float> values = {0.0f, -0.0f, 1.0f, 65504.0f, 65519.0f, 65520.0f, 6.1035156e-05f,
                                 5.9604645e-08f, 2.9802322e-08f, 2.9802326e-08f, 1e-10f};
    for (int i = 0; i < 20000; ++i) {
        float v = static_cast<float>(std::ldexp(1.0 + std::uniform_real_distribution<double>(0, 1)(rng), int(exp_dist(rng))));
        values.push_back(i % 2 ? -v : v);
    }
    for (float v : values) {
        double expected = reference(v);
        double got = f16_to_f32(f32_to_f16(v));
        EXPECT_EQ(got, expected) << "value " << v;
    }
}

TEST(Threads, ParallelForCoversRangeOnceAndPropagatesErrors) {
    for (int threads : {1, 2, 3}) {
        set_num_threads(threads);
        std::vector<std::atomic<int>> hits(1001);
        parallel_for(1001, [&](int64_t b, int64_t e, int) {
            for (int64_t i = b; i < e; ++i) hits[i]++;
        });
        for (auto& h : hits) EXPECT_EQ(h.load(), 1);
        EXPECT_THROW(parallel_for(100, [](int64_t, int64_t e, int) {
                         if (e == 100) throw InvalidArgument("[test] boom");
                     }),
                     InvalidArgument);
    }
    set_num_threads(0);
    EXPECT_THROW(set_num_threads(-1), InvalidArgument);
}

// A parallel loop inside a parallel loop runs serially on its thread and still covers its
// whole range (it once ran only the first chunk).
TEST(Threads, NestedParallelForCoversWholeRange) {
    set_num_threads(2);
    std::vector<std::atomic<int>> hits(40 * 37);
    parallel_for(40, [&](int64_t b, int64_t e, int) {
        for (int64_t i = b; i < e; ++i)
            parallel_for(37, [&](int64_t b2, int64_t e2, int) {
                for (int64_t j = b2; j < e2; ++j) hits[i * 37 + j]++;
            });
    });
    for (auto& h : hits) EXPECT_EQ(h.load(), 1);
    set_num_threads(0);
}

// Heap storage: 64-byte alignment, and 2 MiB (huge-page) alignment from 32 MiB on, with every
// byte writable up to the requested size (the rounding must not shrink a buffer).
TEST(Storage, AlignmentAndUsableSize) {
    for (const size_t bytes : {size_t{1}, size_t{100}, (size_t{32} << 20) - 4, size_t{32} << 20, (size_t{33} << 20) + 12}) {
        std::shared_ptr<Storage> s = Storage::allocate(bytes);
        const auto address = reinterpret_cast<uintptr_t>(s->data());
        EXPECT_EQ(address % 64, 0u) << bytes;
        if (bytes >= (size_t{32} << 20)) EXPECT_EQ(address % (size_t{2} << 20), 0u) << bytes;
        EXPECT_EQ(s->size(), bytes);
        std::memset(s->data(), 0x5a, bytes);
        EXPECT_EQ(static_cast<unsigned char>(s->data()[bytes - 1]), 0x5au);
    }
}

}  // namespace
}  // namespace attnlab
