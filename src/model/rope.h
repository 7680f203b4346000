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

// The RoPE state of one forward call, shared by the CPU decoder and the GPU forward:
// frequencies and cos/sin tables (T, rot_dim/2) for the global layers, and for the local
// (sliding) layers where the config has a second RoPE (Gemma-3); local.rot_dim = 0 otherwise.
struct CallRope {
    RopeFrequencies global, local;
    std::vector<float> cos_global, sin_global, cos_local, sin_local;
    int64_t half_global() const { return global.rot_dim / 2; }
    int64_t half_local() const { return local.rot_dim / 2; }
};

// The call's RoPE position ids: pos0 .. pos0+T-1, or the caller's (checked to be T of them).
std::vector<int64_t> call_position_ids(int64_t pos0, int64_t T, const std::vector<int64_t>* given);

// Frequencies and tables of a call reaching `total` positions at `position_ids`. For dynamic NTK
// scaling `dynamic_seq_len` (the cache's) grows with the longest sequence seen and resets once a
// sequence shorter than the trained context comes, as transformers does.
CallRope call_rope(const ModelConfig& c, int64_t total, std::span<const int64_t> position_ids,
                   double& dynamic_seq_len);

}  // namespace attnlab
