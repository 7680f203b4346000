// The programmable attention operator.
//
// One call computes, for every query row (batch b, head h, position i) and key position j:
//   s = scale·q·k                      (scale default 1/sqrt(D))
//   s = mod_n(...mod_1(s))             score modifiers, in the order the spec names them
//   s = -inf where any mask drops (i, j)
//   p = normalizer(s)                  softmax (default; learned sink logits join its
//                                      denominator), sigmoid(s + bias) or relu(s)/kept
//   out = Σ_j p_j·v_j,  lse = log Σ_j e^{s_j} (+ e^{sink}) for softmax, log Σ_j p_j otherwise.
// Rows with no kept key give out = 0 and lse = -inf. Positions, not indices, are what
// mechanisms see, so a KV-cache offset (queries at S-T .. S-1) is handled once, here.
// GQA: query head h reads kv head h / (H / Hkv).
//
// A spec is text: `spec := mech ('+' mech)*`, `mech := name | name(key=value, ...)`, e.g.
// "causal+window(size=4096)+softcap(cap=50)"; `mechanism_registry()` lists every name.
// Nothing T×S is materialised unless `scores` or `pattern` is asked for.
#pragma once

#include <attnlab/tensor.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace attnlab {

// Per-call inputs a mechanism may read besides positions.
struct AttentionContext {
    int64_t S = 0, H = 0, Hkv = 0;
    const int32_t* segments = nullptr;  // (S) segment id per position, or null
    const float* sinks = nullptr;       // (H) learned sink logit per head, or null
};

// One score: batch b, query head h (reading kv head h_kv), query position i, key position j.
struct ScoreCoord {
    int64_t b, h, h_kv, i, j;
    const AttentionContext* ctx;
};

// A run of one row: query (b, h, position i) against keys j0 .. j0+n-1.
struct RowSpan {
    int64_t b, h, h_kv, i, j0, n;
    const AttentionContext* ctx;
};

// A tile: head h, query positions within [i_lo, i_hi] and keys [j_lo, j_hi] (inclusive).
// The query positions of a tile need not be contiguous: a verdict must hold for the whole
// bounding rectangle.
struct TileCoord {
    int64_t b, h, i_lo, i_hi, j_lo, j_hi;
    const AttentionContext* ctx;
};

// What a mask does on a tile: drops all of it, keeps all of it, or needs per-element work.
enum class TileVisit { Skip, Full, Partial };

enum class NormalizerKind { Softmax, Sigmoid, Relu };
struct Normalizer {
    NormalizerKind kind = NormalizerKind::Softmax;
    double bias = 0.0;  // sigmoid: p = σ(s + bias)
};

// One mechanism of the literature. Every hook defaults to "does nothing"; a mechanism
// overrides the ones its role needs. `keep` and `modify` are the definitions (evaluated in
// float64 by attention_reference); `visit`, `mask_span` and `modify_span` are what the tiled
// kernel calls, and the tests check them against the definitions.
class Mechanism {
public:
    virtual ~Mechanism() = default;
    // Canonical text, e.g. "window(size=1024)"; parsing it gives the same mechanism.
    virtual std::string text() const = 0;

    // --- mask (masks are ANDed) ---
    virtual bool is_mask() const { return false; }
    virtual bool keep(const ScoreCoord&) const { return true; }
    // Conservative: Skip only if no pair of the tile is kept, Full only if every pair is.
    virtual TileVisit visit(const TileCoord&) const { return is_mask() ? TileVisit::Partial : TileVisit::Full; }
    // Sets scores[k] = -inf for every dropped key j0 + k. Default: keep() per element.
    virtual void mask_span(const RowSpan& row, float* scores) const;

    // --- score modifier (applied in spec order, before masks) ---
    virtual bool is_score_mod() const { return false; }
    virtual double modify(double score, const ScoreCoord&) const { return score; }
    // scores[k] = modify(scores[k], key j0 + k) in float. Default: modify() per element.
    virtual void modify_span(const RowSpan& row, float* scores) const;

    // --- normalizer (at most one mechanism of a spec names one) ---
    virtual std::optional<Normalizer> normalizer() const { return std::nullopt; }

    // --- an extra logit joining each softmax row's denominator (learned sinks) ---
    virtual bool has_extra_logit() const { return false; }
    virtual double extra_logit(int64_t h, const AttentionContext&) const { return 0.0; }

    // Throws InvalidArgument if the call lacks an input the mechanism needs
    // (e.g. `document` without segments). max_query_pos: the largest query position.
    virtual void check(const AttentionContext&, int64_t max_query_pos) const {}

    // False if the mechanism looks only at the order of i and j (or at neither): it then means
    // the same on compacted rows after token dropping. Conservative default: true.
    virtual bool uses_distance() const { return true; }
};

// One entry of the mechanism registry: how to build it from its parameters.
struct MechanismParams;
struct MechanismInfo {
    std::string name;
    std::string params;   // e.g. "size=W" (required) or "sink=N=4" (default 4)
    std::string meaning;  // one line, as in the docs
    std::string example;  // a valid instance at small test sizes, e.g. "window(size=5)"
    std::shared_ptr<const Mechanism> (*make)(MechanismParams&);
};
const std::vector<MechanismInfo>& mechanism_registry();

struct AttentionSpec {
    double scale = 0.0;  // 0 = 1/sqrt(D)
    std::vector<std::shared_ptr<const Mechanism>> mechanisms;

    // Parses the spec grammar; throws InvalidArgument with the offending text. If `native` is
    // given, the name `native` stands for its mechanisms (a model layer's own spec).
    static AttentionSpec parse(std::string_view text, const AttentionSpec* native = nullptr);
    std::string text() const;  // canonical; "" for plain bidirectional softmax
    Normalizer normalizer() const;
    bool has_masks() const;
};

struct AttentionInputs {
    DType dtype = DType::F32;  // of q, k and v: F32 or BF16 (accumulation is always f32)
    const void* q = nullptr;   // (B, T, H, D): position stride q_stride, batch stride q_batch_stride
    const void* k = nullptr;   // (B, S, Hkv, D)
    const void* v = nullptr;   // (B, S, Hkv, Dv)
    int64_t q_stride = 0, k_stride = 0, v_stride = 0;  // elements between positions
    int64_t q_batch_stride = 0, k_batch_stride = 0, v_batch_stride = 0;
    int64_t B = 1, T = 0, S = 0, H = 0, Hkv = 0, D = 0, Dv = 0;
    int64_t q_pos0 = 0;              // query t sits at position q_pos0 + t ...
    const int64_t* q_pos = nullptr;  // ... or at q_pos[t] if given (T)
    const int32_t* segments = nullptr;  // (S) for `document`
    const float* sinks = nullptr;       // (H) for `sinks`
    int64_t head_begin = 0, head_end = -1;  // query heads computed (-1 = H): per-head specs

    // Contiguous q (B, T, H, D), k (B, S, Hkv, D), v (B, S, Hkv, Dv); queries at S-T .. S-1.
    static AttentionInputs contiguous(DType dtype, const void* q, const void* k, const void* v, int64_t B,
                                      int64_t T, int64_t S, int64_t H, int64_t Hkv, int64_t D, int64_t Dv);
};

// Attention statistics, computed inside the kernel from each row's probabilities p_j (the
// normalizer's output, sinks excluded) without storing anything T×S: O(T·H) memory per
// statistic, so they work at any context length, decode steps included. Fill in what to
// measure, point the outputs wanted at buffers (null = not computed), pass it in
// AttentionOutputs::stats. Per row (b, t, h) at query position i; every buffer is written for
// the call's heads only.
struct AttentionStats {
    // --- what to measure ---
    std::vector<int64_t> keys;     // chosen key positions (e.g. 0 for BOS), K of them
    std::vector<int64_t> offsets;  // chosen distances i - j (1 = previous token), R of them
    const int32_t* segments = nullptr;  // (S) segment id of each key position, in [0, n_segments)
    int64_t n_segments = 0;
    int64_t n_distance_bins = 0;   // distance_mass bins (see distance_bin); the last one takes the rest

    // --- outputs ---
    float* mass = nullptr;           // (B, T, H) Σ_j p_j (1 for softmax, less when a sink logit takes a share)
    float* entropy = nullptr;        // (B, T, H) −Σ_j p_j ln p_j, nats (0 for rows that keep nothing)
    float* sum_sq = nullptr;         // (B, T, H) Σ_j p_j² (the row's share of ‖A‖_F²)
    int64_t* top_key = nullptr;      // (B, T, H) argmax_j p_j, the lowest j on ties (-1: nothing kept)
    float* top_prob = nullptr;       // (B, T, H) p at top_key (0: nothing kept)
    float* key_mass = nullptr;       // (B, T, H, K) p at each chosen key (0 if outside the keys)
    float* offset_mass = nullptr;    // (B, T, H, R) p at key i - offset
    float* segment_mass = nullptr;   // (B, T, H, n_segments) Σ p over each segment's keys
    float* distance_mass = nullptr;  // (B, T, H, n_distance_bins) Σ p over each bin of i - j
    float* column_sum = nullptr;     // (B, H, S) Σ over the call's query rows of p_ij (received
                                     // mass per key; costs a second pass over the kept tiles)

    bool wants_rows() const {
        return mass || entropy || sum_sq || top_key || top_prob || key_mass || offset_mass || segment_mass ||
               distance_mass;
    }
    // Bin of a distance d = i - j: 0 for keys after the query (d < 0), 1 for d = 0, then
    // log2 bins: 2 for d = 1, 3 for d in [2, 3], 4 for [4, 7], ...
    static int64_t distance_bin(int64_t d) {
        if (d < 0) return 0;
        int64_t bin = 1;
        for (; d > 0; d >>= 1) ++bin;
        return bin;
    }
    // Enough bins for every distance below max_distance (e.g. the context length).
    static int64_t distance_bins_for(int64_t max_distance) { return distance_bin(std::max<int64_t>(max_distance - 1, 0)) + 1; }
};

struct AttentionOutputs {
    float* out = nullptr;  // (B, T, H, Dv) f32: position stride out_stride, batch stride out_batch_stride
    int64_t out_stride = 0, out_batch_stride = 0;
    float* lse = nullptr;      // (B, T, H) natural log (see top of file)
    float* scores = nullptr;   // (B, H, T, S) modified, masked (-inf) scores
    float* pattern = nullptr;  // (B, H, T, S) probabilities p (0 where masked)
    AttentionStats* stats = nullptr;  // statistics to compute in the same pass (see AttentionStats)

    // Contiguous out (B, T, H, Dv) and lse (B, T, H) (lse may be null).
    static AttentionOutputs contiguous(float* out, float* lse, int64_t T, int64_t H, int64_t Dv);
};

// Throws InvalidArgument for inconsistent shapes or inputs a mechanism needs.
void attention(const AttentionSpec& spec, const AttentionInputs& in, const AttentionOutputs& out);

// What attention() does for a call, counted over the tiles it visits (nothing is computed):
// FLOPs of the tiles it keeps (2·rows·keys·(D+Dv) each), of the dense problem
// (2·B·H·T·S·(D+Dv)), and the K/V bytes it reads. For benchmarks and sparse-cost checks.
struct AttentionWork {
    double flops = 0, dense_flops = 0, kv_bytes = 0;
    int64_t tiles = 0, kept_tiles = 0, partial_tiles = 0;
    double kept_fraction() const { return dense_flops > 0 ? flops / dense_flops : 0.0; }
};
AttentionWork attention_work(const AttentionSpec& spec, const AttentionInputs& in);

// The same computation in float64, one row at a time from the mechanisms' definitions: the
// oracle for tests (O(T·S) time per head, no tiling).
void attention_reference(const AttentionSpec& spec, const AttentionInputs& in,
                         const AttentionOutputs& out);

// The statistics of a materialised pattern (B, H, T, S), in float64: what the kernel's
// in-pass statistics must equal. `in` gives the shapes, query positions and head range.
void attention_stats_from_pattern(const AttentionInputs& in, const float* pattern, AttentionStats& stats);

}  // namespace attnlab
