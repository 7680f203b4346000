// Pieces the attention-level interventions share: extending a head's spec (pre-softmax edits),
// and a head's attention restricted to one key set, for post-softmax edits that move probability
// mass between key sets without materialising T×S (docs/interventions.md, "How an intervention
// acts"). With the head's spec plus a restriction (e.g. `segment(id=1)` over a labelling of the
// keys), the kernel gives out_K and lse_K; the row's mass on K is m_K = exp(lse_K − lse) and its
// value mix over K is Σ_{k∈K} A_qk·v_k = m_K·out_K.
#pragma once

#include "interp/interventions/intervention_util.h"

#include <cmath>
#include <limits>
#include <string>
#include <vector>

namespace attnlab::intervention_util {

// Rows whose mass left to receive a redistribution is at most this are left as they are: the
// share each receiving key would get is 0/0 (the papers' code divides by zero there).
inline constexpr double kMinReceivingMass = 1e-6;

// `spec` with the mechanisms of `extra` appended (its score modifiers run after the spec's own).
inline AttentionSpec with_mechanisms(const AttentionSpec& spec, const AttentionSpec& extra) {
    AttentionSpec out = spec;
    out.mechanisms.insert(out.mechanisms.end(), extra.mechanisms.begin(), extra.mechanisms.end());
    return out;
}

// Mechanisms that read the segment ids of the keys: a re-run that relabels the keys to pick a key
// set would change what they do.
inline bool reads_segments(const AttentionSpec& spec) {
    for (const auto& m : spec.mechanisms) {
        const std::string text = m->text();
        const std::string name = text.substr(0, text.find('('));
        if (name == "document" || name == "segment" || name == "boost") return true;
    }
    return false;
}

// Post-softmax edits redistribute a row's probability, which only sums to 1 (and only splits
// over key sets through lse) for a plain softmax: no sigmoid/relu normaliser, no sink logit.
inline void require_softmax_head(const AttentionSpec& spec, int64_t layer, int64_t head, const std::string& where) {
    bool extra_logit = false;
    for (const auto& m : spec.mechanisms) extra_logit |= m->has_extra_logit();
    ATTNLAB_CHECK(spec.normalizer().kind == NormalizerKind::Softmax && !extra_logit, InvalidArgument,
                  "[{}] head {}:{} runs \"{}\": post-softmax edits need a softmax head without a sink logit", where,
                  layer, head, spec.text());
}

// Consecutive heads of one layer (from an ascending list) that ran the same spec: one kernel
// call covers each span.
struct HeadSpan {
    int64_t begin = 0, end = 0;  // heads [begin, end)
};
inline std::vector<HeadSpan> spans_sharing_spec(const AttentionEditContext& ctx, const std::vector<int64_t>& heads) {
    const std::vector<AttentionSpec>& specs = *ctx.head_specs;
    std::vector<HeadSpan> spans;
    for (int64_t h : heads) {
        if (!spans.empty() && spans.back().end == h && specs[h].text() == specs[h - 1].text()) spans.back().end = h + 1;
        else spans.push_back({h, h + 1});
    }
    return spans;
}

// The rows of some heads restricted to one key set (written for the heads of the last run only).
struct KeySetAttention {
    std::vector<float> out;    // (T, H, D) the normalised output over the set (0 where the set is empty)
    std::vector<double> mass;  // (T, H) m_K, the row's probability mass on the set

    const float* out_row(const AttentionEditContext& ctx, int64_t t, int64_t h) const {
        return out.data() + (t * ctx.H + h) * ctx.D;
    }
    double mass_of(const AttentionEditContext& ctx, int64_t t, int64_t h) const { return mass[t * ctx.H + h]; }
};

// Runs heads [span.begin, span.end) again with their spec plus `restriction`, over key segment
// ids `key_segments` (S; the forward pass's own when null), into `into` (its buffers are reused
// from call to call).
inline void attend_restricted(AttentionEditContext& ctx, HeadSpan span, const AttentionSpec& restriction,
                              const int32_t* key_segments, KeySetAttention& into, const std::string& where) {
    const AttentionSpec& spec = (*ctx.head_specs)[span.begin];
    for (int64_t h = span.begin; h < span.end; ++h) require_softmax_head((*ctx.head_specs)[h], ctx.layer, h, where);
    const bool relabelled = key_segments != nullptr && key_segments != ctx.segments;
    ATTNLAB_CHECK(!relabelled || !reads_segments(spec), InvalidArgument,
                  "[{}] head {}:{} runs \"{}\", which reads token segments: this edit relabels the keys and cannot "
                  "run on it",
                  where, ctx.layer, span.begin, spec.text());
    const int64_t T = ctx.T, H = ctx.H;
    into.out.resize(static_cast<size_t>(T * H * ctx.D));
    into.mass.resize(static_cast<size_t>(T * H));
    std::vector<float> lse(static_cast<size_t>(T * H));  // (T, H) log-normaliser over the set
    ctx.run(with_mechanisms(spec, restriction), span.begin, span.end, key_segments ? key_segments : ctx.segments,
            into.out.data(), lse.data());
    constexpr float kEmpty = -std::numeric_limits<float>::infinity();
    for (int64_t t = 0; t < T; ++t)
        for (int64_t h = span.begin; h < span.end; ++h) {
            const float set_lse = lse[t * H + h], row_lse = ctx.lse[t * H + h];
            into.mass[t * H + h] = set_lse == kEmpty || row_lse == kEmpty ? 0.0 : std::exp(double(set_lse) - row_lse);
        }
}

// Keys labelled 1 at `positions` (those below S), 0 elsewhere: the key set for `segment(id=1)`.
inline std::vector<int32_t> label_positions(int64_t S, const std::vector<int64_t>& positions) {
    std::vector<int32_t> labels(static_cast<size_t>(S), 0);  // (S)
    for (int64_t k : positions)
        if (k < S) labels[k] = 1;
    return labels;
}

// Row t of head h of the materialised pattern (S probabilities), or null when none was asked for.
inline float* pattern_row(const AttentionEditContext& ctx, int64_t h, int64_t t) {
    return ctx.pattern ? ctx.pattern + (h * ctx.T + t) * ctx.S : nullptr;
}

}  // namespace attnlab::intervention_util
