// What the GPU needs to know about one attention call, built on the host from the parsed spec:
// a compact description of the mechanisms (plain data the kernels switch on) and the block
// map of which (query block, key block) tiles to skip, to run whole or to mask per element.
// Pure C++ with no CUDA headers, so it builds and is testable everywhere; the kernels in
// src/kernels/cuda/ include it for the structs.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace attnlab {

struct AttentionSpec;
struct AttentionInputs;
struct AttentionOutputs;

namespace gpu {

// Tile shape of the block map and of the prefill kernel: 64 query rows × 64 keys.
inline constexpr int kBlockM = 64;
inline constexpr int kBlockN = 64;
inline constexpr int kMaxMasks = 8;
inline constexpr int kMaxMods = 8;
inline constexpr int kMaxHeadDim = 256;  // D and Dv of the general kernel (its shared tiles and registers)

// Segment, Radial, RadialBlocks (masks), Boost (modifier) and the sigmoid/relu normalizers run
// only in the general kernel (attention_general.cu); the tensor-core kernels never see them.
enum class MaskKind : int32_t { Causal, Window, Streaming, Chunked, Prefix, Document, Power, Segment, Radial, RadialBlocks };
enum class ModKind : int32_t { Alibi, Softcap, Decay, Temperature, Boost };
enum class NormKind : int32_t { Softmax, Sigmoid, Relu };

// One mask with its parameters (meaning per kind, see keep_one() in attention_common.cuh).
// radial: a = frame, b = block, real = decay (double: the width rule must round as the CPU's).
// radial_blocks: a = block, b = first query cell, c = key cells per row of its keep table, which
// starts at element `table` of HostPlan::keep_tables.
struct Mask {
    MaskKind kind = MaskKind::Causal;
    int32_t a = 0, b = 0, c = 0;
    int32_t table = 0;
    double real = 0.0;
};

// One score modifier: `value` is cap (softcap), ln γ (decay), 1/τ (temperature), α (boost);
// `segment` the boosted segment id; alibi needs only the head count's largest power of two
// (`pow2_heads` of the spec).
struct Mod {
    ModKind kind = ModKind::Temperature;
    float value = 0.0f;
    int32_t segment = 0;
};

// Passed by value to every kernel (a few hundred bytes).
struct Spec {
    int32_t n_masks = 0, n_mods = 0;
    Mask masks[kMaxMasks];
    Mod mods[kMaxMods];
    float scale = 1.0f;      // multiplies q·k (temperature-only specs fold into it)
    int32_t pow2_heads = 1;  // alibi: the largest power of two <= H
    int32_t has_sinks = 0;   // how many `sinks` the spec holds (each joins the sink logit once)
    NormKind normalizer = NormKind::Softmax;
    float norm_bias = 0.0f;  // sigmoid: p = σ(s + norm_bias)
};

// Block-map entry flag: the tile needs per-element mask work (or crosses the end of the keys).
inline constexpr int32_t kPartialBit = int32_t(1) << 30;

// The host half of a GPU attention call. Every mask the GPU supports keeps (i, j) from
// positions and segments alone, never from b or h, so one block map serves all heads and
// batches (a head-dependent mask would need one map per head).
struct HostPlan {
    Spec spec;
    int64_t B = 1, T = 0, S = 0, H = 0, Hkv = 0, D = 0, Dv = 0;
    int64_t head_begin = 0, head_end = 0;
    int64_t n_qblocks = 0, n_kblocks = 0;
    std::vector<int32_t> offsets;    // (n_qblocks + 1) kept entries of query block qb: [offsets[qb], offsets[qb+1])
    std::vector<int32_t> entries;    // key block index | kPartialBit, ascending per query block
    std::vector<int32_t> order;      // (n_qblocks) query blocks, most kept key blocks first (launch order)
    std::vector<int32_t> positions;  // (T) query positions
    std::vector<int32_t> segments;   // (S) or empty
    std::vector<float> sinks;        // (H) or empty
    std::vector<uint8_t> keep_tables;  // radial_blocks: (query cells, key cells) 0/1 per mask, concatenated
    int64_t kept_blocks = 0, partial_blocks = 0;
    // The general kernel (attention_general.cu) runs the call: f32 inputs, head dims other than
    // D = Dv ∈ {64, 128, 256}, mechanisms or normalizers the tensor-core kernels lack, or layouts
    // they cannot load with 16-byte copies.
    bool general = false;
    bool decode = false;  // tensor-core path with few query rows per kv head: the split-KV decode kernel

    // FLOPs of the kept tiles (whole 64×64 tiles, 2·D + 2·Dv per score: QKᵀ and PV), over all heads.
    double kept_flops() const;
};

// Validates the call for the GPU and builds its plan; throws InvalidArgument for bad calls
// (the CPU operator's checks) and NotSupported for what the GPU does not run (the scores,
// pattern and stats outputs; sizes past its 32-bit indexing).
HostPlan build_host_plan(const AttentionSpec& spec, const AttentionInputs& in, const AttentionOutputs& out);

// The names build_host_plan accepts, for messages and docs.
std::string supported_mechanisms();

}  // namespace gpu
}  // namespace attnlab
