// RoPE frequency computation following transformers' rope_type definitions (default, linear,
// dynamic NTK, llama3, yarn). Frequencies are computed in float32 like the reference, so that
// angles match it to the ulp.
#include "model/rope.h"

#include <attnlab/error.h>

#include <algorithm>
#include <cmath>

namespace attnlab {

namespace {

std::vector<float> base_inv_freq(double base, int64_t dim) {
    std::vector<float> f(static_cast<size_t>(dim / 2));
    for (int64_t i = 0; i < dim / 2; ++i) {
        // base ** (arange(0, dim, 2) / dim) in float32, then 1 / that.
        float exponent = static_cast<float>(2 * i) / static_cast<float>(dim);
        float p = static_cast<float>(std::pow(static_cast<float>(base), exponent));
        f[i] = 1.0f / p;
    }
    return f;
}

double yarn_mscale(double scale, double mscale) {
    return scale <= 1.0 ? 1.0 : 0.1 * mscale * std::log(scale) + 1.0;
}

}  // namespace

RopeFrequencies rope_frequencies(const RopeConfig& r, int64_t head_dim,
                                 int64_t max_position_embeddings, double seq_len) {
    RopeFrequencies out;
    const int64_t dim = static_cast<int64_t>(static_cast<double>(head_dim) * r.partial_rotary_factor);
    ATTNLAB_CHECK(dim >= 2 && dim % 2 == 0 && dim <= head_dim, FormatError,
                  "[rope] rotary dimension {} (head_dim {} x partial_rotary_factor {}) must be even",
                  dim, head_dim, r.partial_rotary_factor);
    out.rot_dim = dim;
    if (r.type == "default") {
        out.inv_freq = base_inv_freq(r.theta, dim);
    } else if (r.type == "linear") {
        out.inv_freq = base_inv_freq(r.theta, dim);
        for (float& f : out.inv_freq) f = static_cast<float>(f / r.factor);
    } else if (r.type == "dynamic") {
        double base = r.theta;
        const double max_pos = static_cast<double>(max_position_embeddings);
        const double len = std::max(seq_len, max_pos);
        base = base * std::pow(r.factor * len / max_pos - (r.factor - 1.0),
                               static_cast<double>(dim) / static_cast<double>(dim - 2));
        out.inv_freq = base_inv_freq(base, dim);
    } else if (r.type == "llama3") {
        out.inv_freq = base_inv_freq(r.theta, dim);
        const float factor = static_cast<float>(r.factor);
        const float old_len = static_cast<float>(r.original_max_position_embeddings);
        const float low = static_cast<float>(r.low_freq_factor), high = static_cast<float>(r.high_freq_factor);
        const float low_freq_wavelen = old_len / low, high_freq_wavelen = old_len / high;
        for (float& f : out.inv_freq) {
            const float wavelen = 2.0f * static_cast<float>(M_PI) / f;
            float scaled = wavelen > low_freq_wavelen ? f / factor : f;
            if (!(wavelen < high_freq_wavelen) && !(wavelen > low_freq_wavelen)) {
                const float smooth = (old_len / wavelen - low) / (high - low);
                scaled = (1.0f - smooth) * scaled / factor + smooth * scaled;
            }
            f = scaled;
        }
    } else if (r.type == "yarn") {
        // transformers 5 uses the configured factor for both the frequencies and the default
        // attention factor (it only warns when max_pos / original disagrees with it).
        const double factor = r.factor;
        const double mscale_factor = factor;
        int64_t original = r.original_max_position_embeddings;
        if (original <= 0) original = max_position_embeddings;
        if (r.attention_factor) {
            out.attention_factor = static_cast<float>(*r.attention_factor);
        } else if (r.mscale && r.mscale_all_dim && *r.mscale != 0 && *r.mscale_all_dim != 0) {
            out.attention_factor = static_cast<float>(yarn_mscale(mscale_factor, *r.mscale) /
                                                      yarn_mscale(mscale_factor, *r.mscale_all_dim));
        } else {
            out.attention_factor = static_cast<float>(yarn_mscale(mscale_factor, 1.0));
        }
        auto correction_dim = [&](double rotations) {
            return (static_cast<double>(dim) *
                    std::log(static_cast<double>(original) / (rotations * 2.0 * M_PI))) /
                   (2.0 * std::log(r.theta));
        };
        double low = correction_dim(r.beta_fast), high = correction_dim(r.beta_slow);
        if (r.truncate) {
            low = std::floor(low);
            high = std::ceil(high);
        }
        low = std::max(low, 0.0);
        high = std::min(high, static_cast<double>(dim - 1));
        if (low == high) high += 0.001;  // avoid a division by zero in the ramp
        std::vector<float> extrapolation = base_inv_freq(r.theta, dim);
        out.inv_freq.resize(extrapolation.size());
        for (size_t i = 0; i < extrapolation.size(); ++i) {
            float ramp = static_cast<float>((static_cast<double>(i) - low) / (high - low));
            ramp = std::clamp(ramp, 0.0f, 1.0f);
            const float extrapolation_factor = 1.0f - ramp;
            const float interpolation = extrapolation[i] / static_cast<float>(factor);
            out.inv_freq[i] = interpolation * (1.0f - extrapolation_factor) +
                              extrapolation[i] * extrapolation_factor;
        }
    } else {
        throw NotSupported(fmt::format("[rope] rope type '{}' is not supported yet", r.type));
    }
    return out;
}

void rope_tables(const RopeFrequencies& f, std::span<const int64_t> positions, std::vector<float>& cos,
                 std::vector<float>& sin) {
    const int64_t half = f.rot_dim / 2, T = static_cast<int64_t>(positions.size());
    cos.resize(static_cast<size_t>(T * half));
    sin.resize(static_cast<size_t>(T * half));
    for (int64_t t = 0; t < T; ++t) {
        const float pos = static_cast<float>(positions[t]);
        for (int64_t i = 0; i < half; ++i) {
            const float angle = pos * f.inv_freq[i];  // float32 product, as the reference
            cos[t * half + i] = static_cast<float>(std::cos(static_cast<double>(angle))) * f.attention_factor;
            sin[t * half + i] = static_cast<float>(std::sin(static_cast<double>(angle))) * f.attention_factor;
        }
    }
}

std::vector<int64_t> call_position_ids(int64_t pos0, int64_t T, const std::vector<int64_t>* given) {
    if (given) {
        ATTNLAB_CHECK(static_cast<int64_t>(given->size()) == T, InvalidArgument, "[forward] {} position ids for {} tokens",
                      given->size(), T);
        return *given;
    }
    std::vector<int64_t> ids(static_cast<size_t>(T));
    for (int64_t t = 0; t < T; ++t) ids[t] = pos0 + t;
    return ids;
}

CallRope call_rope(const ModelConfig& c, int64_t total, std::span<const int64_t> position_ids,
                   double& dynamic_seq_len) {
    double seq_len = 0;
    if (c.rope.type == "dynamic") {
        const double needed = static_cast<double>(total);
        if (needed > dynamic_seq_len) dynamic_seq_len = needed;
        if (needed < c.max_position_embeddings) dynamic_seq_len = static_cast<double>(c.max_position_embeddings);
        seq_len = dynamic_seq_len;
    }
    CallRope rope;
    rope.global = rope_frequencies(c.rope, c.head_dim, c.max_position_embeddings, seq_len);
    rope_tables(rope.global, position_ids, rope.cos_global, rope.sin_global);
    if (c.rope_local) {
        rope.local = rope_frequencies(*c.rope_local, c.head_dim, c.max_position_embeddings, seq_len);
        rope_tables(rope.local, position_ids, rope.cos_local, rope.sin_local);
    }
    return rope;
}

}  // namespace attnlab
