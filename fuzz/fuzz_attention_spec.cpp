// libFuzzer target: the attention spec grammar and the operator it builds. The input is
// 4 size bytes and then spec text. Only attnlab::Error may come out of parsing; a spec that
// parses runs on a small random problem through the tiled kernel and the float64 reference,
// which must agree (a wrong `visit` or `mask_span` shows up as a mismatch, not only a crash).
// The plan parsers (--attn-layers / --attn-heads) read the same text.
#include <attnlab/attention.h>
#include <attnlab/error.h>
#include <attnlab/model.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size < 4) return 0;
    const int64_t T = 1 + data[0] % 24, S = T + data[1] % 300, Hkv = 1 + data[2] % 2, H = Hkv * (1 + data[3] % 4);
    const int64_t D = 16;
    const std::string text(reinterpret_cast<const char*>(data + 4), size - 4);
    try {
        (void)attnlab::parse_attention_layers(text);
    } catch (const attnlab::Error&) {
    }
    try {
        (void)attnlab::parse_attention_heads(text);
    } catch (const attnlab::Error&) {
    }
    attnlab::AttentionSpec spec;
    try {
        spec = attnlab::AttentionSpec::parse(text);
        if (attnlab::AttentionSpec::parse(spec.text()).text() != spec.text()) std::abort();  // canonical form round-trips
    } catch (const attnlab::Error&) {
        return 0;
    }
    std::mt19937 rng(static_cast<uint32_t>(size));
    std::normal_distribution<float> normal(0.0f, 1.0f);
    auto random = [&](int64_t n) {
        std::vector<float> v(static_cast<size_t>(n));
        for (float& x : v) x = normal(rng);
        return v;
    };
    const std::vector<float> q = random(T * H * D), k = random(S * Hkv * D), v = random(S * Hkv * D), sinks = random(H);
    std::vector<int32_t> segments(static_cast<size_t>(S));
    for (int64_t j = 0; j < S; ++j) segments[j] = static_cast<int32_t>(j / 7);
    attnlab::AttentionInputs in =
        attnlab::AttentionInputs::contiguous(attnlab::DType::F32, q.data(), k.data(), v.data(), 1, T, S, H, Hkv, D, D);
    in.segments = segments.data();
    in.sinks = sinks.data();
    std::vector<float> out(static_cast<size_t>(T * H * D)), ref(out.size()), lse(static_cast<size_t>(T * H)),
        ref_lse(lse.size());
    try {
        attnlab::attention(spec, in, attnlab::AttentionOutputs::contiguous(out.data(), lse.data(), T, H, D));
    } catch (const attnlab::Error&) {
        return 0;
    }
    attnlab::attention_reference(spec, in, attnlab::AttentionOutputs::contiguous(ref.data(), ref_lse.data(), T, H, D));
    double max_ref = 1e-30, max_err = 0;
    for (size_t i = 0; i < out.size(); ++i) {
        if (std::isnan(out[i]) != std::isnan(ref[i])) std::abort();
        if (std::isnan(ref[i])) continue;
        max_ref = std::max(max_ref, std::fabs(double(ref[i])));
        max_err = std::max(max_err, std::fabs(double(out[i]) - double(ref[i])));
    }
    // Extreme modifiers (softcap(cap=1e-300), temperature(t=1e-30)) push scores to float
    // overflow; only compare where the reference itself is representable.
    if (max_ref < 1e30 && max_err > 1e-4 * max_ref) std::abort();
    for (size_t i = 0; i < lse.size(); ++i)
        if (std::isinf(ref_lse[i]) && ref_lse[i] < 0 && lse[i] != ref_lse[i]) std::abort();
    return 0;
}
