// linear() against linear_reference() (float64 accumulation): odd sizes that are multiples of
// no block, every weight dtype, both weight layouts, bias, accumulate, padded row strides,
// 1 and 2 threads; plus the errors raised for malformed calls.
#include "kernels/cpu/matmul.h"
#include "kernels/cpu/scratch_buffer.h"

#include <attnlab/error.h>
#include <attnlab/half.h>
#include <attnlab/tensor.h>
#include <attnlab/threads.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <tuple>
#include <vector>

namespace attnlab::cpu {
namespace {

enum class Layout { RowMajor, Transposed };

std::mt19937& rng() {
    static std::mt19937 gen(std::random_device{}());
    return gen;
}

std::vector<float> random_floats(size_t n) {
    std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
    std::vector<float> v(n);
    for (float& f : v) f = dist(rng());
    return v;
}

// A random (N, K) weight in `dtype`. RowMajor: strides (K + pad, 1). Transposed: the transpose
// of a row-major (K, N + pad) matrix, strides (1, N + pad), as GPT-2's Conv1D stores it.
Tensor random_weight(int64_t N, int64_t K, DType dtype, Layout layout, int64_t pad) {
    Shape storage_shape = layout == Layout::RowMajor ? Shape{N, K + pad} : Shape{K, N + pad};
    Tensor full = Tensor::empty(storage_shape, dtype);
    std::vector<float> values = random_floats(static_cast<size_t>(full.numel()));
    for (size_t i = 0; i < values.size(); ++i) {
        switch (dtype) {
            case DType::F32: full.data<float>()[i] = values[i]; break;
            case DType::BF16: full.data<uint16_t>()[i] = f32_to_bf16(values[i]); break;
            case DType::F16: full.data<uint16_t>()[i] = f32_to_f16(values[i]); break;
            default: ADD_FAILURE() << "unexpected dtype";
        }
    }
    if (layout == Layout::RowMajor) return full.slice(1, 0, K);
    return full.slice(1, 0, N).transpose(0, 1);
}

struct Case {
    int64_t M, N, K;
};

class LinearTest : public ::testing::TestWithParam<std::tuple<Case, DType, Layout>> {
protected:
    void TearDown() override { set_num_threads(0); }
};

TEST_P(LinearTest, MatchesFloat64Reference) {
    const auto [c, dtype, layout] = GetParam();
    for (int pad : {0, 5}) {
        const Tensor w = random_weight(c.N, c.K, dtype, layout, pad);
        ASSERT_EQ(w.size(0), c.N);
        ASSERT_EQ(w.size(1), c.K);
        const std::vector<float> wf = w.to_floats();  // (N, K) row-major
        const int64_t ldx = c.K + pad, ldy = c.N + 2 * pad;
        const std::vector<float> x = random_floats(static_cast<size_t>(c.M * ldx));
        const std::vector<float> bias_values = random_floats(static_cast<size_t>(c.N));
        const std::vector<float> y0 = random_floats(static_cast<size_t>(c.M * ldy));
        for (bool use_bias : {false, true}) {
            for (bool accumulate : {false, true}) {
                SCOPED_TRACE(testing::Message() << "M=" << c.M << " N=" << c.N << " K=" << c.K
                                                << " pad=" << pad << " bias=" << use_bias
                                                << " accumulate=" << accumulate);
                const float* bias = use_bias ? bias_values.data() : nullptr;
                std::vector<float> ref = y0;
                linear_reference(x.data(), ldx, w, bias, ref.data(), ldy, c.M, accumulate);
                // Reference magnitude: the largest |ref|, or, where the output is small through
                // cancellation (N = 1, large K), the size of a sum of K random products,
                // sum |x w| / sqrt(K) (f32 rounding error grows with it, not with |ref|).
                double scale = 0.0;
                for (int64_t m = 0; m < c.M; ++m) {
                    for (int64_t n = 0; n < c.N; ++n) {
                        scale = std::max<double>(scale, std::fabs(ref[m * ldy + n]));
                        double abs_sum = 0.0;
                        for (int64_t k = 0; k < c.K; ++k) abs_sum += std::fabs(x[m * ldx + k] * wf[n * c.K + k]);
                        scale = std::max(scale, abs_sum / std::sqrt(static_cast<double>(c.K)));
                    }
                }
                std::vector<std::vector<float>> results;
                for (int threads : {1, 2}) {
                    set_num_threads(threads);
                    std::vector<float> y = y0;
                    linear(x.data(), ldx, w, bias, y.data(), ldy, c.M, accumulate);
                    int bad = 0;
                    for (int64_t m = 0; m < c.M; ++m) {
                        for (int64_t n = 0; n < ldy; ++n) {
                            const size_t i = static_cast<size_t>(m * ldy + n);
                            if (n >= c.N) {
                                // Padding columns of y are never written.
                                if (y[i] != y0[i] && bad++ < 5) ADD_FAILURE() << "padding written at " << m << "," << n;
                                continue;
                            }
                            const double err = std::fabs(static_cast<double>(y[i]) - ref[i]);
                            if (!(err <= 1e-5 * scale) && bad++ < 5) {
                                ADD_FAILURE() << "threads=" << threads << " y[" << m << "," << n
                                              << "] = " << y[i] << ", reference " << ref[i]
                                              << " (scale " << scale << ")";
                            }
                        }
                    }
                    results.push_back(std::move(y));
                }
                // Threads split N only, so every element is summed in the same order.
                EXPECT_EQ(results[0], results[1]) << "result depends on the thread count";
            }
        }
    }
}

const Case kCases[] = {
    {1, 1, 1},       {1, 17, 33},    {1, 129, 515},  {2, 33, 17},   {3, 17, 33},
    {4, 515, 129},   {5, 33, 129},   {15, 3, 17},    {17, 129, 33}, {33, 515, 515},
    {129, 33, 1029}, {515, 129, 33}, {14, 64, 256},  {28, 1, 1},    {1, 1, 600},
    {8, 67, 300},    {7, 9, 1000},   {9, 40, 70},
};

std::string case_name(const testing::TestParamInfo<LinearTest::ParamType>& info) {
    const auto& [c, dtype, layout] = info.param;
    return "M" + std::to_string(c.M) + "_N" + std::to_string(c.N) + "_K" + std::to_string(c.K) +
           "_" + std::string(dtype_name(dtype)) + (layout == Layout::RowMajor ? "_rowmajor" : "_transposed");
}

INSTANTIATE_TEST_SUITE_P(Shapes, LinearTest,
                         testing::Combine(testing::ValuesIn(kCases),
                                          testing::Values(DType::F32, DType::BF16, DType::F16),
                                          testing::Values(Layout::RowMajor, Layout::Transposed)),
                         case_name);

TEST(LinearEdgeTest, EmptyDimensions) {
    // K = 0: y = bias (or y += bias); M = 0 or N = 0: nothing is touched.
    const Tensor w = Tensor::empty({3, 0}, DType::BF16);
    const std::vector<float> bias = {1.0f, 2.0f, 3.0f};
    std::vector<float> y = {10.0f, 20.0f, 30.0f};
    linear(nullptr, 0, w, bias.data(), y.data(), 3, 1, true);
    EXPECT_EQ(y, (std::vector<float>{11.0f, 22.0f, 33.0f}));
    linear(nullptr, 0, w, nullptr, y.data(), 3, 1, false);
    EXPECT_EQ(y, (std::vector<float>{0.0f, 0.0f, 0.0f}));
    const Tensor w2 = Tensor::empty({4, 8}, DType::F32);
    linear(nullptr, 8, w2, nullptr, nullptr, 4, 0, false);
}

TEST(LinearErrorTest, RejectsBadInput) {
    std::vector<float> x(64, 1.0f), y(64, 0.0f);
    const Tensor w_i32 = Tensor::zeros({4, 8}, DType::I32);
    EXPECT_THROW(linear(x.data(), 8, w_i32, nullptr, y.data(), 4, 2), InvalidArgument);
    EXPECT_THROW(linear_reference(x.data(), 8, w_i32, nullptr, y.data(), 4, 2), InvalidArgument);
    const Tensor w = Tensor::zeros({4, 8}, DType::BF16);
    // K mismatch: x rows of 6 floats against a weight with K = 8.
    EXPECT_THROW(linear(x.data(), 6, w, nullptr, y.data(), 4, 2), InvalidArgument);
    // y row stride smaller than N.
    EXPECT_THROW(linear(x.data(), 8, w, nullptr, y.data(), 3, 2), InvalidArgument);
    // Not 2-D.
    const Tensor w3 = Tensor::zeros({2, 4, 8}, DType::F32);
    EXPECT_THROW(linear(x.data(), 8, w3, nullptr, y.data(), 4, 2), InvalidArgument);
    // Undefined weight.
    EXPECT_THROW(linear(x.data(), 8, Tensor(), nullptr, y.data(), 4, 2), InvalidArgument);
    // Strides that are neither layout (every other column of a row-major matrix).
    const Tensor wide = Tensor::zeros({4, 16}, DType::F32);
    const Tensor strided(wide.storage(), 0, DType::F32, {4, 8}, {16, 2});
    EXPECT_THROW(linear(x.data(), 8, strided, nullptr, y.data(), 4, 2), InvalidArgument);
    // Negative M.
    EXPECT_THROW(linear(x.data(), 8, w, nullptr, y.data(), 4, -1), InvalidArgument);
    // The message names the function and the weight's dtype.
    try {
        linear(x.data(), 8, w_i32, nullptr, y.data(), 4, 2);
        FAIL() << "no exception";
    } catch (const InvalidArgument& e) {
        EXPECT_NE(std::string(e.what()).find("[linear]"), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find("i32"), std::string::npos) << e.what();
    }
}

// linear_prepacked (x packed once by pack_rows, W by pack_weight_panels, as attention's Q·Kᵀ
// uses them) against the float64 reference, with and without accumulation; and bit-for-bit
// against linear_packed, which packs x itself (each element is summed in the same order).
TEST(LinearPrepackedTest, MatchesReferenceAndLinearPacked) {
    for (const Case c : {Case{37, 50, 70}, Case{224, 256, 128}, Case{15, 32, 300}}) {
        SCOPED_TRACE(testing::Message() << "M=" << c.M << " N=" << c.N << " K=" << c.K);
        const Tensor w = random_weight(c.N, c.K, DType::F32, Layout::RowMajor, 3);
        const int64_t ldx = c.K + 5, ldy = c.N + 2;
        const std::vector<float> x = random_floats(static_cast<size_t>(c.M * ldx));
        ScratchBuffer panel_buffer;  // (the panels are read with aligned loads: 64-byte aligned)
        float* panels = panel_buffer.get(static_cast<size_t>(packed_size(w)));
        pack_weight_panels(w, panels);
        std::vector<float> x_packed(static_cast<size_t>(packed_rows_size(c.M, c.K)));
        pack_rows(x.data(), ldx, c.M, c.K, x_packed.data());
        const int64_t panel_stride = c.K * packed_panel_width();
        const std::vector<float> y0 = random_floats(static_cast<size_t>(c.M * ldy));
        for (bool accumulate : {false, true}) {
            std::vector<float> got = y0, packed = y0, want = y0;
            linear_prepacked(x_packed.data(), panels, panel_stride, 0, c.N, c.K, got.data(), ldy, c.M, accumulate);
            linear_packed(x.data(), ldx, panels, panel_stride, 0, c.N, c.K, packed.data(), ldy, c.M, accumulate);
            linear_reference(x.data(), ldx, w, nullptr, want.data(), ldy, c.M, accumulate);
            EXPECT_EQ(got, packed) << "accumulate=" << accumulate;
            for (size_t i = 0; i < got.size(); ++i)
                ASSERT_NEAR(got[i], want[i], 1e-5 * (1.0 + std::sqrt(double(c.K))))
                    << "element " << i << ", accumulate=" << accumulate;
        }
    }
    std::vector<float> buffer(64, 0.0f);
    EXPECT_THROW(pack_rows(buffer.data(), 4, 2, 8, buffer.data()), InvalidArgument);  // ldx < K
    // panel_stride too small for K rows of panels
    EXPECT_THROW(linear_prepacked(buffer.data(), buffer.data(), 1, 0, 4, 8, buffer.data(), 4, 2, false),
                 InvalidArgument);
}

}  // namespace
}  // namespace attnlab::cpu
