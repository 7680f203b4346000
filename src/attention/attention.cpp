// The attention operator's entry points: validation shared by every implementation, then
// dispatch (the tiled CPU kernel; the float64 reference is a separate entry for tests).
#include "attention/call.h"
#include "attention/stats.h"

#include <attnlab/error.h>

#include <algorithm>
#include <cmath>

namespace attnlab {
namespace detail {

AttentionCall::AttentionCall(const AttentionSpec& spec, const AttentionInputs& in_, const AttentionOutputs& out_)
    : in(&in_), out(&out_) {
    const AttentionInputs& a = in_;
    ATTNLAB_CHECK(a.B >= 1 && a.T >= 0 && a.S >= 0 && a.H > 0 && a.Hkv > 0 && a.D > 0 && a.Dv > 0, InvalidArgument,
                  "[attention] invalid sizes B={} T={} S={} H={} Hkv={} D={} Dv={}", a.B, a.T, a.S, a.H, a.Hkv,
                  a.D, a.Dv);
    ATTNLAB_CHECK(a.H % a.Hkv == 0, InvalidArgument, "[attention] H ({}) must be a multiple of Hkv ({})", a.H,
                  a.Hkv);
    ATTNLAB_CHECK(a.dtype == DType::F32 || a.dtype == DType::BF16, InvalidArgument,
                  "[attention] q, k, v must be f32 or bf16, got {}", dtype_name(a.dtype));
    ATTNLAB_CHECK((a.T == 0 || a.q) && (a.S == 0 || (a.k && a.v)) && (a.T == 0 || out_.out), InvalidArgument,
                  "[attention] q, k, v and out are required");
    ATTNLAB_CHECK(a.q_stride >= a.H * a.D && a.k_stride >= a.Hkv * a.D && a.v_stride >= a.Hkv * a.Dv &&
                      out_.out_stride >= a.H * a.Dv,
                  InvalidArgument, "[attention] position strides too small for the head layout");
    ATTNLAB_CHECK(a.B == 1 || (a.q_batch_stride >= a.T * a.q_stride && a.k_batch_stride >= a.S * a.k_stride &&
                               a.v_batch_stride >= a.S * a.v_stride && out_.out_batch_stride >= a.T * out_.out_stride),
                  InvalidArgument, "[attention] batch strides too small");
    head_begin = a.head_begin;
    head_end = a.head_end < 0 ? a.H : a.head_end;
    ATTNLAB_CHECK(0 <= head_begin && head_begin < head_end && head_end <= a.H, InvalidArgument,
                  "[attention] head range [{}, {}) is not within 0..{}", head_begin, head_end, a.H);
    group = a.H / a.Hkv;
    if (out_.stats) validate_stats(*out_.stats, a);
    scale = spec.scale > 0 ? spec.scale : 1.0 / std::sqrt(double(a.D));
    normalizer = spec.normalizer();
    positions.resize(static_cast<size_t>(a.T));
    int64_t max_pos = -1;
    for (int64_t t = 0; t < a.T; ++t) {
        positions[t] = a.q_pos ? a.q_pos[t] : a.q_pos0 + t;
        ATTNLAB_CHECK(positions[t] >= 0, InvalidArgument, "[attention] query position {} is negative", positions[t]);
        max_pos = std::max(max_pos, positions[t]);
    }
    ctx.S = a.S;
    ctx.H = a.H;
    ctx.Hkv = a.Hkv;
    ctx.segments = a.segments;
    ctx.sinks = a.sinks;
    for (const auto& m : spec.mechanisms) {
        m->check(ctx, max_pos);
        if (m->is_mask()) masks.push_back(m.get());
        if (m->is_score_mod()) score_mods.push_back(m.get());
        if (m->has_extra_logit()) {
            ATTNLAB_CHECK(normalizer.kind == NormalizerKind::Softmax, InvalidArgument,
                          "[attention] `{}` needs the softmax normalizer", m->text());
            extra_logits.push_back(m.get());
        }
    }
}

}  // namespace detail

AttentionInputs AttentionInputs::contiguous(DType dtype, const void* q, const void* k, const void* v, int64_t B,
                                            int64_t T, int64_t S, int64_t H, int64_t Hkv, int64_t D, int64_t Dv) {
    AttentionInputs in;
    in.dtype = dtype;
    in.q = q;
    in.k = k;
    in.v = v;
    in.q_stride = H * D;
    in.k_stride = Hkv * D;
    in.v_stride = Hkv * Dv;
    in.q_batch_stride = T * in.q_stride;
    in.k_batch_stride = S * in.k_stride;
    in.v_batch_stride = S * in.v_stride;
    in.B = B;
    in.T = T;
    in.S = S;
    in.H = H;
    in.Hkv = Hkv;
    in.D = D;
    in.Dv = Dv;
    in.q_pos0 = S - T;
    return in;
}

AttentionOutputs AttentionOutputs::contiguous(float* out, float* lse, int64_t T, int64_t H, int64_t Dv) {
    AttentionOutputs o;
    o.out = out;
    o.out_stride = H * Dv;
    o.out_batch_stride = T * o.out_stride;
    o.lse = lse;
    return o;
}

void attention(const AttentionSpec& spec, const AttentionInputs& in, const AttentionOutputs& out) {
    const detail::AttentionCall call(spec, in, out);
    if (in.T == 0) return;
    detail::attention_tiled_cpu(call);
}

AttentionWork attention_work(const AttentionSpec& spec, const AttentionInputs& in) {
    std::vector<float> dummy(1);  // nothing is written; the call only needs an output to validate
    const AttentionOutputs none = AttentionOutputs::contiguous(dummy.data(), nullptr, in.T, in.H, in.Dv);
    const detail::AttentionCall call(spec, in, none);
    return detail::attention_tiled_cpu_work(call);
}

}  // namespace attnlab
