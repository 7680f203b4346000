// exp() written so that the compiler vectorises loops that call it (std::exp does not: glibc
// offers vector variants only under -ffast-math). Accurate to ~2 ulp over the float range,
// which is far inside the 1e-5 relative tolerance of the kernels that use it; results are
// identical whatever the vector width, since every lane computes the same polynomial.
#pragma once

#include <cstdint>
#include <cstring>

namespace attnlab::cpu {

// e^x for finite x; x < -87.3 gives 0 (flushes, as the softmax wants), x > 88.7 gives +inf.
inline float exp_approx(float x) {
    const float kLog2e = 1.44269504088896341f;
    const float kLn2Hi = 0.693359375f, kLn2Lo = -2.12194440e-4f;  // Cody-Waite split of ln 2
    float clamped = x < -87.3f ? -87.3f : (x > 88.7f ? 88.7f : x);
    // Round to nearest by adding and removing 1.5·2^23 (no floor(): that is a library call,
    // which stops vectorisation, on targets without SSE4.1).
    const float kRound = 12582912.0f;
    float n = (clamped * kLog2e + kRound) - kRound;
    float r = clamped - n * kLn2Hi - n * kLn2Lo;  // |r| <= ln2/2
    // e^r by its Taylor/minimax polynomial of degree 6 (Cephes coefficients).
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    int32_t bits = (static_cast<int32_t>(n) + 127) << 23;  // 2^n
    float scale;
    std::memcpy(&scale, &bits, 4);
    float result = p * scale;
    return x < -87.3f ? 0.0f : (x > 88.7f ? __builtin_inff() : result);
}

// tanh(x) for finite x, vectorisable, relative error ~1e-7: an odd Taylor polynomial near 0
// (where 1 - 2/(e^{2x}+1) would cancel) and the exponential form elsewhere.
inline float tanh_approx(float x) {
    const float a = x < 0 ? -x : x;
    const float a2 = a * a;
    // |a| < 0.3: a - a³/3 + 2a⁵/15 - 17a⁷/315 + 62a⁹/2835 (next term < 2e-8 relative)
    float poly = 62.0f / 2835.0f;
    poly = poly * a2 - 17.0f / 315.0f;
    poly = poly * a2 + 2.0f / 15.0f;
    poly = poly * a2 - 1.0f / 3.0f;
    poly = a + a * a2 * poly;
    const float far = 1.0f - 2.0f / (exp_approx(2.0f * a) + 1.0f);
    const float t = a < 0.3f ? poly : far;
    return x < 0 ? -t : t;
}

}  // namespace attnlab::cpu
