#include "kernels/cpu/elementwise.h"
#include "kernels/cpu/vec_math.h"

#include <attnlab/threads.h>

#include <cmath>

namespace attnlab::cpu {

void norm(NormKind kind, const float* x, int64_t ldx, const float* weight, const float* bias,
          float eps, float* y, int64_t ldy, int64_t rows, int64_t n) {
    parallel_for(rows, [&](int64_t begin, int64_t end, int) {
        for (int64_t r = begin; r < end; ++r) {
            const float* xr = x + r * ldx;
            float* yr = y + r * ldy;
            double mean = 0.0;
            if (kind == NormKind::LayerNorm) {
                for (int64_t i = 0; i < n; ++i) mean += xr[i];
                mean /= static_cast<double>(n);
            }
            double sq = 0.0;
            for (int64_t i = 0; i < n; ++i) {
                double d = xr[i] - mean;
                sq += d * d;
            }
            const double inv = 1.0 / std::sqrt(sq / static_cast<double>(n) + eps);
            for (int64_t i = 0; i < n; ++i) {
                double v = (xr[i] - mean) * inv;
                switch (kind) {
                    case NormKind::RMSNorm: v *= weight[i]; break;
                    case NormKind::RMSNormPlusOne: v *= 1.0 + weight[i]; break;
                    case NormKind::LayerNorm: v = v * weight[i] + (bias ? bias[i] : 0.0f); break;
                }
                yr[i] = static_cast<float>(v);
            }
        }
    }, 4);
}

void rope_rotate_half(float* x, int64_t ldx, int64_t T, int64_t heads, int64_t D, int64_t rot_dim,
                      const float* cos, const float* sin) {
    const int64_t half = rot_dim / 2;
    parallel_for(T, [&](int64_t begin, int64_t end, int) {
        for (int64_t t = begin; t < end; ++t) {
            const float* c = cos + t * half;
            const float* s = sin + t * half;
            for (int64_t h = 0; h < heads; ++h) {
                float* v = x + t * ldx + h * D;
                for (int64_t i = 0; i < half; ++i) {
                    const float x1 = v[i], x2 = v[i + half];
                    v[i] = x1 * c[i] - x2 * s[i];
                    v[i + half] = x2 * c[i] + x1 * s[i];
                }
            }
        }
    }, 8);
}

static inline float apply_activation(Activation act, float g) {
    switch (act) {
        case Activation::SiLU: return g / (1.0f + exp_approx(-g));
        case Activation::GELU: return 0.5f * g * (1.0f + std::erf(g * 0.70710678118654752f));
        case Activation::GELUTanh: {
            // tanh(y) = 1 - 2 / (e^{2y} + 1), so the loop vectorises with exp_approx.
            const float k = 0.7978845608028654f;  // sqrt(2/pi)
            const float y = k * (g + 0.044715f * g * g * g);
            return 0.5f * g * (2.0f - 2.0f / (exp_approx(2.0f * y) + 1.0f));
        }
        case Activation::ReLU: return g > 0.0f ? g : 0.0f;
    }
    return g;
}

inline float silu(float g) { return g / (1.0f + exp_approx(-g)); }
inline float gelu_tanh(float g) { return apply_activation(Activation::GELUTanh, g); }

// One activation over a range: one loop per activation, so each vectorises.
__attribute__((target_clones("avx512f", "avx2", "default")))
static void activate_range(Activation act, float* gate, const float* up, int64_t begin, int64_t end) {
    if (act == Activation::SiLU) {
#pragma omp simd
        for (int64_t i = begin; i < end; ++i) gate[i] = silu(gate[i]);
    } else if (act == Activation::GELUTanh) {
#pragma omp simd
        for (int64_t i = begin; i < end; ++i) gate[i] = gelu_tanh(gate[i]);
    } else {
        for (int64_t i = begin; i < end; ++i) gate[i] = apply_activation(act, gate[i]);
    }
    if (up) {
#pragma omp simd
        for (int64_t i = begin; i < end; ++i) gate[i] *= up[i];
    }
}

void activate(Activation act, float* gate, const float* up, int64_t count) {
    parallel_for(count, [&](int64_t begin, int64_t end, int) { activate_range(act, gate, up, begin, end); },
                 4096);
}

void add_inplace(float* x, const float* y, int64_t count) {
    for (int64_t i = 0; i < count; ++i) x[i] += y[i];
}

void scale_inplace(float* x, float s, int64_t count) {
    for (int64_t i = 0; i < count; ++i) x[i] *= s;
}

void add_bias(float* x, int64_t ldx, const float* bias, int64_t rows, int64_t n) {
    for (int64_t r = 0; r < rows; ++r)
        for (int64_t i = 0; i < n; ++i) x[r * ldx + i] += bias[i];
}

void softcap_inplace(float* x, float cap, int64_t count) {
    for (int64_t i = 0; i < count; ++i) x[i] = cap * std::tanh(x[i] / cap);
}

}  // namespace attnlab::cpu
