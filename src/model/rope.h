// Rotary embedding frequencies for every RoPE type transformers implements that we support.
#pragma once

#include <attnlab/model.h>

#include <span>
#include <vector>

namespace attnlab {

struct RopeFrequencies {
    std::vector<float> inv_freq;  // (rot_dim/2), float32 as transformers computes them
    float attention_factor = 1.0f;  // multiplies cos and sin (yarn)
    int64_t rot_dim = 0;            // rotated dims per head (partial rotary: < D)
};

// `seq_len` matters only for dynamic NTK scaling: the length the frequencies are computed for.
RopeFrequencies rope_frequencies(const RopeConfig& rope, int64_t head_dim,
                                 int64_t max_position_embeddings, double seq_len = 0);

// cos/sin (T, rot_dim/2) for the T position ids (normally pos0 .. pos0+T-1).
void rope_tables(const RopeFrequencies& f, std::span<const int64_t> positions, std::vector<float>& cos,
                 std::vector<float>& sin);

}  // namespace attnlab
