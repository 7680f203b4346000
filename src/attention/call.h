// One validated attention call, as both the tiled kernel and the reference see it: the
// mechanisms sorted by role, the context they read, the head range and query positions.
#pragma once

#include <attnlab/attention.h>

#include <cstdint>
#include <vector>

namespace attnlab::detail {

struct AttentionCall {
    const AttentionInputs* in = nullptr;
    const AttentionOutputs* out = nullptr;
    AttentionContext ctx;
    double scale = 0.0;
    Normalizer normalizer;
    std::vector<const Mechanism*> masks;       // ANDed
    std::vector<const Mechanism*> score_mods;  // in spec order
    std::vector<const Mechanism*> extra_logits;
    int64_t group = 1;                // query heads per kv head
    int64_t head_begin = 0, head_end = 0;
    std::vector<int64_t> positions;   // (T) position of each query

    // Validates shapes, positions and each mechanism's inputs (throws InvalidArgument).
    AttentionCall(const AttentionSpec& spec, const AttentionInputs& in, const AttentionOutputs& out);

    // Sum of the extra logits' exponentials is folded in by the callers; this is their list.
    std::vector<double> extra_logits_of(int64_t h) const {
        std::vector<double> v;
        for (const Mechanism* m : extra_logits) v.push_back(m->extra_logit(h, ctx));
        return v;
    }
};

// The tiled CPU implementation (families/softmax_tiled.cpp).
void attention_tiled_cpu(const AttentionCall& call);
AttentionWork attention_tiled_cpu_work(const AttentionCall& call);

}  // namespace attnlab::detail
