// The Hopper prefill kernel: flash-attention forward with wgmma (sm_90a), warp-specialised in
// the manner of FlashAttention-3.
//
// One work item = 128 query rows (two 64-row blocks of the plan) of one (batch, head). A CTA
// has three warpgroups: a producer whose one thread streams the item's Q and then K and V
// tiles of 128 keys through the tensor copy engine (TMA) into a two-stage shared-memory ring,
// and two consumers of 64 query rows each. A consumer computes S = Q·Kᵀ with wgmma from
// shared memory, runs the online softmax on the accumulators in registers (log2 units, as the
// mma.sync kernel), rounds P to the input type in registers and accumulates O += P·V with
// wgmma's register-A form. Stages hand over through mbarriers: "full" (the copy engine's bytes
// have landed) and "empty" (all 8 consumer warps are done reading). While one consumer runs
// its softmax the other's matrix products keep the tensor cores busy: the two consumers take
// turns issuing them (two named barriers), so their softmaxes do not coincide. With kOverlap
// (specs without score modifiers) a consumer also overlaps its own softmax of tile i with its
// P·V of tile i-1, as FlashAttention-3 does.
//
// Shared tiles are [D/64][rows][64] with the 128-byte swizzle the copy engine writes and the
// wgmma descriptors read: Q and K as K-major operands (rows of 64 head-dim elements), V as an
// N-major B operand (the same rows; B's N is the head dim).
//
// Block map: the plan lists, per 64-row query block, the kept 64-key blocks with a Partial
// bit. An item walks the union of its two blocks' lists in 128-key tiles; a tile is evaluated
// per element (the masks are exact per element) when any kept sub-tile is Partial or any
// sub-tile is missing (skipped by one block, or past the last key).
//
// The grid is persistent: one CTA per multiprocessor walks work items (batch·head, 128-row
// block) in reverse query order (with causal-like masks the last rows keep the most keys, and
// go first), so the copies of the next item overlap the products and epilogue of this one.
//
// Measured on the H200 (bf16, B=1, H=32, Hkv=8, D=128, 2026-11-29): dense causal T=S=16k at
// 514 TFLOP/s (4.29 ms), 0.79-0.83× cuDNN through SDPA timed in the same run (best against
// best; cuDNN itself moved 605-656 TFLOP/s between runs); FlexAttention 406 and the mma.sync
// kernel 211 in an earlier run, where causal + window / streaming / power / document at 16k
// ran 1.07-1.17× FlexAttention. The row max and sum as trees gave +3-4% on dense causal 16k
// (4.28-4.30 ms against 4.47-4.68 for the chains; D=64: none, 3.66 ms against 3.59-3.64). No
// faster, within the 2-4% spread between passes: a three-stage K/V ring, two Q buffers,
// reading the next tile's block map during the products, skipping the O rescale when no row
// max of the warp moved. A/B knobs (environment): ATTNLAB_HOPPER_OVERLAP=0 (no overlap within
// a warpgroup: 5% slower on dense causal), ATTNLAB_HOPPER_PERSISTENT=0 (one CTA per item: the
// same on dense causal, window 4% and power 3% slower, document 2% faster);
// ATTNLAB_HOPPER_SCHEDULE=0 (bf16: the overlapped loop's earlier order, see kDefaultSchedule);
// ATTNLAB_CUDA_KERNEL=mma runs the mma.sync kernel. Session 6 (same kernel with the schedule
// below, three machines): dense causal 16k 4.13-4.32 ms (512-534 TFLOP/s), 0.80-0.84× cuDNN
// in the same call (cuDNN 3.31-3.65 ms between machines); D=64 3.38 ms (326), 0.69× cuDNN.
// Known loss (SASS, nvcc 13.0, 2026-11-29, both schedules below): at D=128 ptxas puts the wait
// for the P·V wgmma (WARPGROUP.DEPBAR.LE gsb0, 0x0) right after the wait for S, before the row
// max, so the softmax of tile i does not overlap the P·V of tile i-1 at all. The consumers use
// up to R237: O, S and P (160 registers) plus the loop's state leave too few, and P's registers
// are dead in the PTX once the P·V is issued (hold_registers is an empty asm that ptxas never
// sees): the first guess was that ptxas reuses them and waits. At D=64 the wait lands after the max and about half of
// the exponentials. A never-taken store of P after the wait, to keep P's registers allocated,
// did not move the wait (and ran 1-12% slower). Cutting 15-20 live registers (keep bits packed,
// positions in shared memory, the walk's cursor in shared memory) did not move it either and
// was not faster (docs/cuda.md): so not (only) register pressure; next, a smaller key tile or
// another split of S.
#include "kernels/cuda/attention_hopper.cuh"
#include "kernels/cuda/cuda_util.cuh"

#include <cuda.h>  // CUtensorMap and its enums (the encoder comes through the runtime, no libcuda link)
#include <cudaTypedefs.h>

#include <algorithm>
#include <climits>
#include <cstdlib>
#include <string_view>

namespace attnlab::cuda {

namespace {

constexpr int kConsumers = 2;                       // consumer warpgroups
constexpr int kThreads = (kConsumers + 1) * 128;    // + the producer warpgroup
constexpr int kM = kConsumers * 64;                 // query rows per work item
constexpr int kN = 128;                             // keys per tile
constexpr int kStages = 2;                          // K/V ring depth
constexpr int kQBlocks = kM / gpu::kBlockM;         // plan query blocks per work item
constexpr int kKBlocks = kN / gpu::kBlockN;         // plan key blocks per tile
constexpr int kRowBytes = 128;                      // one swizzled row: 64 elements
constexpr int kProducerRegs = 24, kConsumerRegs = 240;  // 128·24 + 256·240 <= 64K registers (232 spilled)
static_assert(kQBlocks * gpu::kBlockM == kM && kKBlocks * gpu::kBlockN == kN, "tiles are whole plan blocks");

// Byte offsets in the (1024-aligned) dynamic shared memory.
template <int D>
struct Smem {
    static constexpr int kQBytes = kM * D * 2;     // Q: [D/64][kM][64]
    static constexpr int kTileBytes = kN * D * 2;  // one K or V stage: [D/64][kN][64]
    static constexpr int kQ = 0;
    static constexpr int kK = kQ + kQBytes;                   // [kStages] K tiles
    static constexpr int kV = kK + kStages * kTileBytes;      // [kStages] V tiles
    static constexpr int kBars = kV + kStages * kTileBytes;   // the mbarriers below
    static constexpr int kNumBars = 2 + 4 * kStages;          // q_full, q_empty, k_full, k_empty, v_full, v_empty
    static constexpr int kBytes = kBars + kNumBars * 8 + 1024;  // + alignment slack
};

// The key tiles of a work item: the union of its query blocks' kept lists, in kN-key tiles, ascending.
struct TileWalk {
    const int32_t* entries;
    int e[kQBlocks], end[kQBlocks];
    int expected = 0;  // sub-tiles of a tile nothing skips

    __device__ TileWalk(const AttentionParams& p, int qb0, int n_qblocks) : entries(p.entries) {
#pragma unroll
        for (int i = 0; i < kQBlocks; ++i) {
            const bool exists = qb0 + i < n_qblocks;
            e[i] = exists ? p.offsets[qb0 + i] : 0;
            end[i] = exists ? p.offsets[qb0 + i + 1] : 0;
            expected += exists ? kKBlocks : 0;
        }
    }

    // The next kept tile; `masked`: it needs per-element mask work.
    __device__ bool next(int& tile, bool& masked) {
        int kb = INT_MAX;
#pragma unroll
        for (int i = 0; i < kQBlocks; ++i)
            if (e[i] < end[i]) kb = min(kb, entries[e[i]] & ~gpu::kPartialBit);
        if (kb == INT_MAX) return false;
        tile = kb / kKBlocks;
        int found = 0;
        bool partial = false;
#pragma unroll
        for (int i = 0; i < kQBlocks; ++i) {
            for (; e[i] < end[i]; ++e[i]) {
                const int entry = entries[e[i]];
                if ((entry & ~gpu::kPartialBit) / kKBlocks != tile) break;
                ++found;
                partial |= (entry & gpu::kPartialBit) != 0;
            }
        }
        masked = partial || found < expected;
        return true;
    }
};

// v[0] op v[1] op ... op v[N-1] as a tree, halving with step W (N/2 first): log2 N dependent
// steps instead of N. Constant indices only, so v stays in registers.
template <int W, int N, typename Op>
__device__ __forceinline__ float tree_reduce(float (&v)[N], Op op) {
    if constexpr (W == 0) {
        return v[0];
    } else {
#pragma unroll
        for (int i = 0; i < W; ++i) v[i] = op(v[i], v[i + W]);
        return tree_reduce<W / 2>(v, op);
    }
}

// A tile's "masked" flag: known at run time, or at compile time (std::bool_constant).
__device__ __forceinline__ bool flag_value(bool b) { return b; }
template <bool B>
__device__ __forceinline__ bool flag_value(std::bool_constant<B>) {
    return B;
}

// Masks keep_bits evaluates column by column (the rest are intervals of keys per row).
__device__ __forceinline__ bool per_column(const gpu::Mask& m) {
    return m.kind == gpu::MaskKind::Document || m.kind == gpu::MaskKind::Power;
}

// The overlapped loop's schedule (kOverlap kernels), as bits:
//   kMaskSplit: a tile's masking is a compile-time choice around its whole step, so no control
//     flow sits between a wgmma's issue and its wait in the PTX (ptxas 13.0 merges the two
//     copies back into one with a branch over the masking: alone it measured no faster);
//   kLateRescale: O is rescaled by a tile's alpha just before the next P·V is issued (as
//     FlashAttention-3 orders it), not after the previous P·V's wait, so only the sums and P's
//     packing wait for that P·V.
// Both (the default) against neither, H200, same calls: dense causal 16k D=128 4.13-4.32 ms
// against 4.29-4.31 (within the 2-4% spread), D=64 3.34-3.38 ms against 3.67-3.71 (+8-11%),
// window 16k 0-8% slower, power 1-2% faster. Two P register sets (the loop unrolled by 2, P
// packed under the P·V) spilled (372 bytes at D=128) and ran 16-19% slower.
// ATTNLAB_HOPPER_SCHEDULE=0 runs the schedule without either, for bf16 (A/B).
constexpr int kMaskSplit = 1, kLateRescale = 2;
constexpr int kDefaultSchedule = kMaskSplit | kLateRescale;

template <typename Elem, int D, bool kOverlap, int kSchedule>
__global__ void __launch_bounds__(kThreads, 1)
    attention_hopper_kernel(const __grid_constant__ CUtensorMap tm_q, const __grid_constant__ CUtensorMap tm_k,
                            const __grid_constant__ CUtensorMap tm_v, const AttentionParams p, const gpu::Spec spec,
                            int n_qblocks) {
    using L = Smem<D>;
    extern __shared__ uint8_t smem_raw[];
    __shared__ alignas(gpu::Spec) uint8_t interval_spec[sizeof(gpu::Spec)];  // raw: Spec has initialisers
    // The 128-byte swizzle repeats every 1024 bytes and the descriptors assume tiles start on
    // that period: align the base by hand (dynamic shared memory is only 16-byte aligned).
    uint8_t* smem = smem_raw + ((1024 - (smem_addr(smem_raw) & 1023)) & 1023);
    uint8_t* sQ = smem + L::kQ;
    uint8_t* sK = smem + L::kK;
    uint8_t* sV = smem + L::kV;
    uint64_t* bars = reinterpret_cast<uint64_t*>(smem + L::kBars);
    uint64_t* q_full = bars;
    uint64_t* q_empty = bars + 1;
    uint64_t* k_full = bars + 2;
    uint64_t* k_empty = k_full + kStages;
    uint64_t* v_full = k_empty + kStages;
    uint64_t* v_empty = v_full + kStages;

    // Work items: (batch·head, block of kM query rows), heaviest (last) rows first, all heads
    // of one row block together. A persistent grid: the next item's copies overlap this item's
    // last products and its epilogue. Round n gives CTA c item n·G + c, or n·G + G-1-c when n
    // is odd (G CTAs): a snake, so the CTA that got the heaviest item of one round gets the
    // lightest of the next (with plain round robin, one CTA per item measured 3% faster).
    const int n_heads = p.head_end - p.head_begin;
    const int n_bh = p.B * n_heads;
    const int n_ctas_q = (n_qblocks + kQBlocks - 1) / kQBlocks;
    const int n_items = n_bh * n_ctas_q;
    const int G = int(gridDim.x), c = int(blockIdx.x);
    auto item_of = [&](int n) { return n * G + ((n & 1) ? G - 1 - c : c); };
    int b = 0, h = 0, hk = 0, cta_q = 0, t0 = 0;
    auto take = [&](int item) {
        cta_q = n_ctas_q - 1 - item / n_bh;
        h = p.head_begin + item % n_bh % n_heads;
        b = item % n_bh / n_heads;
        hk = h / p.group;
        t0 = cta_q * kM;
    };

    if (threadIdx.x == 0) {
        mbar_init(q_full, 1);
        mbar_init(q_empty, kConsumers * 4);
        for (int s = 0; s < kStages; ++s) {
            mbar_init(&k_full[s], 1);
            mbar_init(&v_full[s], 1);
            mbar_init(&k_empty[s], kConsumers * 4);  // lane 0 of every consumer warp
            mbar_init(&v_empty[s], kConsumers * 4);
        }
        mbar_fence_init();
        // The spec's interval masks alone, for keep_bits; the per-column ones (document,
        // power) are evaluated by the consumers' mask_bits.
        gpu::Spec& intervals = *reinterpret_cast<gpu::Spec*>(interval_spec);
        intervals = spec;
        intervals.n_masks = 0;
        for (int k = 0; k < spec.n_masks; ++k)
            if (!per_column(spec.masks[k])) intervals.masks[intervals.n_masks++] = spec.masks[k];
    }
    __syncthreads();
    int tile = 0;
    bool masked = false;

    if (threadIdx.x < 128) {
        // ---- producer: one thread issues every copy --------------------------------------
        setmaxnreg_dec<kProducerRegs>();
        // Tiles count across items (`it`): the ring's stages and phases carry on.
        for (int n = 0, it = 0; threadIdx.x == 0 && item_of(n) < n_items; ++n) {
            take(item_of(n));
            // Q's buffer is free once the consumers' last S of the previous item is done.
            if (n > 0) mbar_wait(q_empty, (n - 1) & 1);
            mbar_arrive_expect_tx(q_full, L::kQBytes);
#pragma unroll
            for (int half = 0; half < D / 64; ++half)
                tma_load_4d(sQ + half * kM * kRowBytes, &tm_q, half * 64, t0, h, b, q_full);
            for (TileWalk walk(p, cta_q * kQBlocks, n_qblocks); walk.next(tile, masked); ++it) {
                const int stage = it % kStages;
                const uint32_t phase = (it / kStages) & 1;
                // K, then V, of the tile into the stage, once every consumer released the
                // stage's previous tile (it - kStages).
                auto load_tile = [&](uint8_t* ring, const CUtensorMap* map, uint64_t* full, uint64_t* empty) {
                    if (it >= kStages) mbar_wait(&empty[stage], phase ^ 1);
                    mbar_arrive_expect_tx(&full[stage], L::kTileBytes);
#pragma unroll
                    for (int half = 0; half < D / 64; ++half)
                        tma_load_4d(ring + stage * L::kTileBytes + half * kN * kRowBytes, map, half * 64, tile * kN, hk, b,
                                    &full[stage]);
                };
                load_tile(sK, &tm_k, k_full, k_empty);
                load_tile(sV, &tm_v, v_full, v_empty);
            }
        }
    } else {
        // ---- consumers: 64 query rows per warpgroup --------------------------------------
        setmaxnreg_inc<kConsumerRegs>();
        const int ct = int(threadIdx.x) - 128;
        const int wg = ct / 128;  // consumer warpgroup
        const int warp = (ct % 128) / 32, lane = ct % 32;
        const int quad = lane & 3;                         // column pair within an 8-column group
        const int row0 = wg * 64 + warp * 16 + lane / 4;   // this thread's rows: row0 and row0 + 8
        int pos[2] = {0, 0};                               // their positions (per item)
        float slope = 0.0f;                                // alibi (per item)
        const float score_scale = spec.n_mods ? spec.scale : spec.scale * kLog2e;
        const uint32_t q_base = smem_addr(sQ) + wg * 64 * kRowBytes;

        float o[D / 8][4];             // O accumulators (64 rows × D per warpgroup)
        float s[kN / 8][4] = {};       // S accumulators (64 rows × kN), then exp2 of the scores
        uint32_t pf[kN / 16][4] = {};  // P as wgmma A fragments (k-step kk: keys 16kk .. 16kk+15)
        float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};  // running max (log2 units) and sum of the two rows
        float alpha[2], tile_sum[2];

        // Turns: warpgroup w issues its products after named barrier kTurn + w, then hands the
        // turn to the other; consumer 1 hands consumer 0 the first one.
        constexpr int kTurn = 1;
        auto turn_begin = [&] { named_barrier_sync(kTurn + wg, 256); };
        auto turn_end = [&] { named_barrier_arrive(kTurn + (wg ^ 1), 256); };
        auto release = [&](uint64_t* empty) {
            __syncwarp();
            if (lane == 0) mbar_arrive(empty);
        };
        // S = Q·Kᵀ: one k-step per 16 head-dim elements (32 bytes into a swizzled row; the
        // next 64 elements are the next [rows][64] block).
        auto issue_s = [&](int stage) {
            uint64_t dq = sw128_desc(q_base, 16, 1024);
            uint64_t dk = sw128_desc(smem_addr(sK) + stage * L::kTileBytes, 16, 1024);
            opaque(dq);
            opaque(dk);
            wgmma_fence();
#pragma unroll
            for (int ks = 0; ks < D / 16; ++ks) {
                const uint32_t col = (ks % 4) * 32;
                wgmma_ss<Elem>(s, dq + (((ks / 4) * kM * kRowBytes + col) >> 4), dk + (((ks / 4) * kN * kRowBytes + col) >> 4),
                               ks > 0);
            }
            wgmma_commit();
        };
        // O += P·V: one k-step per 16 keys (16 swizzled rows = 2048 bytes); V's head-dim
        // halves are kN rows apart (the descriptor's leading byte offset).
        auto issue_pv = [&](int stage) {
            uint64_t dv = sw128_desc(smem_addr(sV) + stage * L::kTileBytes, kN * kRowBytes, 1024);
            opaque(dv);
            wgmma_fence();
#pragma unroll
            for (int kk = 0; kk < kN / 16; ++kk) wgmma_rs<Elem>(o, pf[kk], dv + ((kk * 16 * kRowBytes) >> 4));
            wgmma_commit();
        };
        // Per-element masks of a masked tile, as bits of this thread's columns (8·n + 2·quad +
        // {0, 1} of each 64-key half), per row. Computed before the tile's products are issued,
        // while S holds nothing: next to live S, O and P the mask loops would spill.
        uint64_t keep[2][kKBlocks];
        // keep_bits (of the interval masks only) and then the per-column masks over this
        // thread's columns, independent columns side by side so their segment loads and
        // divisions overlap: keep_bits walks them one kept bit at a time (document and power
        // measured 0.8× FlexAttention that way).
        const gpu::Spec& intervals = *reinterpret_cast<const gpu::Spec*>(interval_spec);
        auto mask_bits = [&](int tile, bool masked) {
            if (!masked) return;
            const uint64_t cols = 0x0303030303030303ull << (quad * 2);
#pragma unroll
            for (int r = 0; r < 2; ++r)
#pragma unroll
                for (int half = 0; half < kKBlocks; ++half)
                    keep[r][half] = keep_bits(intervals, pos[r], tile * kN + half * 64, p.S, p.segments, cols);
            for (int k = 0; k < spec.n_masks; ++k) {
                if (!per_column(spec.masks[k])) continue;
                // A copy with its kind known here: keep_one's switch folds away.
                gpu::Mask power = spec.masks[k];
                power.kind = gpu::MaskKind::Power;
                const bool document = spec.masks[k].kind == gpu::MaskKind::Document;
                const int seg_i[2] = {document ? p.segments[min(pos[0], p.S - 1)] : 0,
                                      document ? p.segments[min(pos[1], p.S - 1)] : 0};
#pragma unroll
                for (int half = 0; half < kKBlocks; ++half) {
#pragma unroll 2  // some overlap, without the registers of a full unroll (that spilled)
                    for (int col = 0; col < 64; col += 8) {
#pragma unroll
                        for (int e = 0; e < 2; ++e) {
                            const int bit = col + quad * 2 + e;
                            const int j = tile * kN + half * 64 + bit;
                            if (document) {
                                // Keys past S are never kept (interval bits), so never read.
                                if (!(((keep[0][half] | keep[1][half]) >> bit) & 1)) continue;
                                const int seg_j = p.segments[j];
#pragma unroll
                                for (int r = 0; r < 2; ++r)
                                    if (seg_j != seg_i[r]) keep[r][half] &= ~(1ull << bit);
                            } else {
#pragma unroll
                                for (int r = 0; r < 2; ++r)
                                    if (!keep_one(power, pos[r], j, p.segments)) keep[r][half] &= ~(1ull << bit);
                            }
                        }
                    }
                }
            }
        };
        auto kept = [&](bool masked, int c, int col) { return !masked || ((keep[c / 2][col / 64] >> (col % 64)) & 1); };
        // The scores of a tile with masks (-inf) and modifiers applied; returns the factor to
        // log2 units that the exponentials apply (one FMA each): the scale when there are no
        // modifiers, else 1 (the modifiers need the scaled score).
        // kOverlap kernels run only such specs (the launcher's choice): the modifiers' code,
        // next to S and the in-flight O and P, would spill.
        const bool fold_scale = kOverlap || (spec.n_mods == 0 && score_scale > 0.0f);  // max commutes with the scale
        auto scores = [&](int tile, bool masked) -> float {
            if (!fold_scale) {
#pragma unroll
                for (int nt = 0; nt < kN / 8; ++nt) {
#pragma unroll
                    for (int c = 0; c < 4; ++c) {
                        const int col = nt * 8 + quad * 2 + (c & 1);
                        float x = s[nt][c] * score_scale;
                        if (spec.n_mods) x = apply_mods(spec, x, pos[c / 2], tile * kN + col, slope) * kLog2e;
                        s[nt][c] = kept(masked, c, col) ? x : -INFINITY;
                    }
                }
                return 1.0f;
            }
            if (masked) {
#pragma unroll
                for (int nt = 0; nt < kN / 8; ++nt)
#pragma unroll
                    for (int c = 0; c < 4; ++c)
                        if (!kept(true, c, nt * 8 + quad * 2 + (c & 1))) s[nt][c] = -INFINITY;
            }
            return score_scale;
        };
        // Online softmax, first half: row max over the tile (4 threads share a row), the new
        // running max (log2 units), the factor for the old sums (alpha), exp2 in place and the
        // tile's sums.
        auto exponentiate = [&](float unit) {
            // Row max and sum as trees: 4 dependent steps instead of 16 (measured 3-4% faster on
            // dense causal 16k than the chains).
            float mx[2];
#pragma unroll
            for (int r = 0; r < 2; ++r) {
                float v[kN / 8];
#pragma unroll
                for (int nt = 0; nt < kN / 8; ++nt) v[nt] = fmaxf(s[nt][2 * r], s[nt][2 * r + 1]);
                mx[r] = tree_reduce<kN / 16>(v, [](float a, float b) { return fmaxf(a, b); });
                mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 1));
                mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 2)) * unit;
            }
#pragma unroll
            for (int r = 0; r < 2; ++r) {
                const float m_new = fmaxf(m[r], mx[r]);
                const float m_use = m_new == -INFINITY ? 0.0f : m_new;  // all masked so far: keep exp2 finite
                alpha[r] = fast_exp2(m[r] - m_use);
                m[r] = m_new;
#pragma unroll
                for (int nt = 0; nt < kN / 8; ++nt) {
                    s[nt][2 * r] = fast_exp2(fmaf(s[nt][2 * r], unit, -m_use));
                    s[nt][2 * r + 1] = fast_exp2(fmaf(s[nt][2 * r + 1], unit, -m_use));
                }
                float v[kN / 8];
#pragma unroll
                for (int nt = 0; nt < kN / 8; ++nt) v[nt] = s[nt][2 * r] + s[nt][2 * r + 1];
                tile_sum[r] = tree_reduce<kN / 16>(v, [](float a, float b) { return a + b; });
            }
        };
        // Second half (once the previous P·V is done with O and P): the running sums, O rescaled
        // by alpha, and P rounded to the input type as A fragments.
        auto update_sums = [&] {
#pragma unroll
            for (int r = 0; r < 2; ++r) l[r] = l[r] * alpha[r] + tile_sum[r];
        };
        auto rescale_o = [&] {
#pragma unroll
            for (int r = 0; r < 2; ++r)
#pragma unroll
                for (int nt = 0; nt < D / 8; ++nt) {
                    o[nt][2 * r] *= alpha[r];
                    o[nt][2 * r + 1] *= alpha[r];
                }
        };
        auto pack = [&] {
#pragma unroll
            for (int r = 0; r < 2; ++r)
#pragma unroll
                for (int nt = 0; nt < kN / 8; ++nt) pf[nt / 2][(nt & 1) * 2 + r] = pack2<Elem>(s[nt][2 * r], s[nt][2 * r + 1]);
        };

        if (wg == 1) turn_end();
        for (int n = 0, it = 0; item_of(n) < n_items; ++n) {
            take(item_of(n));
            pos[0] = p.positions[min(t0 + row0, p.T - 1)];
            pos[1] = p.positions[min(t0 + row0 + 8, p.T - 1)];
            slope = alibi_slope(h, spec.pow2_heads);
#pragma unroll
            for (int nt = 0; nt < D / 8; ++nt)
#pragma unroll
                for (int c = 0; c < 4; ++c) o[nt][c] = 0.0f;
            m[0] = m[1] = -INFINITY;
            l[0] = l[1] = 0.0f;
            TileWalk walk(p, cta_q * kQBlocks, n_qblocks);
            mbar_wait(q_full, n & 1);
            if constexpr (!kOverlap) {
                // Each tile in order: S, softmax, P·V.
                for (; walk.next(tile, masked); ++it) {
                    const int stage = it % kStages;
                    const uint32_t phase = (it / kStages) & 1;
                    mask_bits(tile, masked);
                    mbar_wait(&k_full[stage], phase);
                    turn_begin();
                    issue_s(stage);
                    turn_end();
                    wgmma_wait<0>();
                    hold_registers(s);
                    release(&k_empty[stage]);
                    exponentiate(scores(tile, masked));
                    update_sums();
                    rescale_o();
                    pack();
                    mbar_wait(&v_full[stage], phase);
                    turn_begin();
                    issue_pv(stage);
                    turn_end();
                    wgmma_wait<0>();
                    hold_registers(o);
                    hold_registers(pf);
                    release(&v_empty[stage]);
                }
            } else if (walk.next(tile, masked)) {
                // FlashAttention-3's overlap within a warpgroup: S of tile i and P·V of tile i-1
                // are issued together; the softmax of tile i runs while P·V of i-1 is in flight.
                int prev_stage = it % kStages;
                uint32_t prev_phase = (it / kStages) & 1;
                mask_bits(tile, masked);
                mbar_wait(&k_full[prev_stage], prev_phase);
                turn_begin();
                issue_s(prev_stage);
                turn_end();
                wgmma_wait<0>();
                hold_registers(s);
                release(&k_empty[prev_stage]);
                exponentiate(scores(tile, masked));
                update_sums();  // O is still zero: no rescale
                pack();
                // One tile: issue S(i) and P·V(i-1), the softmax of i under P·V(i-1), then (P·V done)
                // the sums, O's rescale and P(i). `masked_c` is a bool, or with kMaskSplit a
                // std::bool_constant: each masking its own copy of the step, so no branch sits
                // between a wgmma's issue and its wait (in the PTX: see kMaskSplit).
                auto step = [&](auto masked_c) __attribute__((always_inline)) {
                    const int stage = it % kStages;
                    const uint32_t phase = (it / kStages) & 1;
                    mbar_wait(&k_full[stage], phase);
                    mbar_wait(&v_full[prev_stage], prev_phase);
                    turn_begin();
                    issue_s(stage);
                    if constexpr ((kSchedule & kLateRescale) != 0) rescale_o();  // by the previous tile's alpha
                    issue_pv(prev_stage);
                    turn_end();
                    wgmma_wait<1>();  // S (committed first) is done; P·V may still run
                    hold_registers(s);
                    release(&k_empty[stage]);
                    exponentiate(scores(tile, flag_value(masked_c)));
                    wgmma_wait<0>();
                    hold_registers(o);
                    hold_registers(pf);
                    release(&v_empty[prev_stage]);
                    update_sums();
                    if constexpr ((kSchedule & kLateRescale) == 0) rescale_o();
                    pack();
                    prev_stage = stage;
                    prev_phase = phase;
                };
                for (++it; walk.next(tile, masked); ++it) {
                    mask_bits(tile, masked);
                    if constexpr ((kSchedule & kMaskSplit) != 0) {
                        if (masked) step(std::true_type{});
                        else step(std::false_type{});
                    } else {
                        step(masked);
                    }
                }
                mbar_wait(&v_full[prev_stage], prev_phase);
                turn_begin();
                if constexpr ((kSchedule & kLateRescale) != 0) rescale_o();
                issue_pv(prev_stage);
                turn_end();
                wgmma_wait<0>();
                hold_registers(o);
                hold_registers(pf);
                release(&v_empty[prev_stage]);
            }
            release(q_empty);  // every S of this item is done: the producer may load the next Q

            // Epilogue: each row's sum over its 4 threads, sinks, out (f32) and lse.
            write_output_rows<D>(p, spec, o, m, l, b, h, t0 + row0, quad);
        }
        if (wg == 0) turn_begin();  // consumer 1's head-start turn: every arrival matched
    }
}

// cuTensorMapEncodeTiled through the runtime (no libcuda link); null when the driver lacks it.
PFN_cuTensorMapEncodeTiled_v12000 tensor_map_encoder() {
    static const PFN_cuTensorMapEncodeTiled_v12000 encode = [] {
        void* fn = nullptr;
        cudaDriverEntryPointQueryResult found{};
        if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &fn, 12000, cudaEnableDefault, &found) != cudaSuccess ||
            found != cudaDriverEntryPointSuccess)
            return PFN_cuTensorMapEncodeTiled_v12000(nullptr);
        return reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(fn);
    }();
    return encode;
}

// The tensor map of an input (B, rows, heads, D) with `stride` elements between rows and
// `bstride` between batches, read in boxes of 64 head-dim elements (128 bytes: the swizzle
// span) × `box_rows` rows of one head, 128-byte swizzled. False when the copy engine cannot
// address it (16-byte alignment of the base, rows and batches).
template <typename Elem, int D>
bool make_tensor_map(CUtensorMap* map, const void* base, int64_t B, int64_t rows, int64_t heads, int64_t stride,
                     int64_t bstride, int box_rows) {
    const PFN_cuTensorMapEncodeTiled_v12000 encode = tensor_map_encoder();
    constexpr int64_t kElem = sizeof(Elem);
    const uint64_t batch_bytes = uint64_t(B > 1 ? bstride : rows * stride) * kElem;
    if (!encode || reinterpret_cast<uintptr_t>(base) % 16 || (stride * kElem) % 16 || batch_bytes % 16 || batch_bytes == 0)
        return false;
    const cuuint64_t dims[4] = {cuuint64_t(D), cuuint64_t(rows), cuuint64_t(heads), cuuint64_t(B)};
    const cuuint64_t strides[3] = {cuuint64_t(stride * kElem), cuuint64_t(D * kElem), batch_bytes};  // of dims 1..3
    const cuuint32_t box[4] = {64, cuuint32_t(box_rows), 1, 1};
    const cuuint32_t elem_strides[4] = {1, 1, 1, 1};
    const CUtensorMapDataType type =
        std::is_same_v<Elem, __nv_bfloat16> ? CU_TENSOR_MAP_DATA_TYPE_BFLOAT16 : CU_TENSOR_MAP_DATA_TYPE_FLOAT16;
    return encode(map, type, 4, const_cast<void*>(base), dims, strides, box, elem_strides, CU_TENSOR_MAP_INTERLEAVE_NONE,
                  CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) == CUDA_SUCCESS;
}

}  // namespace

template <typename Elem, int D>
bool launch_prefill_hopper(const AttentionParams& p, const gpu::Spec& spec, int64_t n_qblocks, cudaStream_t stream) {
    if (const char* choice = std::getenv("ATTNLAB_CUDA_KERNEL"); choice && std::string_view(choice) == "mma") return false;
    CUtensorMap tm_q, tm_k, tm_v;
    if (!make_tensor_map<Elem, D>(&tm_q, p.q, p.B, p.T, p.H, p.q_stride, p.q_bstride, kM) ||
        !make_tensor_map<Elem, D>(&tm_k, p.k, p.B, p.S, p.Hkv, p.k_stride, p.k_bstride, kN) ||
        !make_tensor_map<Elem, D>(&tm_v, p.v, p.B, p.S, p.Hkv, p.v_stride, p.v_bstride, kN))
        return false;
    // One CTA per multiprocessor (no more fit), or one per item when there are fewer.
    int device = 0, sms = 0;
    ATTNLAB_CUDA_CHECK(cudaGetDevice(&device));
    ATTNLAB_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
    const int64_t n_items = int64_t(p.B) * (p.head_end - p.head_begin) * ((n_qblocks + kQBlocks - 1) / kQBlocks);
    // ATTNLAB_HOPPER_PERSISTENT=0: one CTA per item (A/B of the persistent grid).
    const char* persistent = std::getenv("ATTNLAB_HOPPER_PERSISTENT");
    const bool one_per_item = persistent && std::string_view(persistent) == "0";
    const dim3 grid(unsigned(one_per_item ? n_items : std::min<int64_t>(n_items, sms)));
    const auto launch = [&]<bool kOverlap, int kSchedule>() {
        constexpr int kSmem = Smem<D>::kBytes;
        auto* kernel = attention_hopper_kernel<Elem, D, kOverlap, kSchedule>;
        static const bool configured = [&] {
            ATTNLAB_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmem));
            return true;
        }();
        (void)configured;
        kernel<<<grid, kThreads, kSmem, stream>>>(tm_q, tm_k, tm_v, p, spec, int(n_qblocks));
    };
    // The softmax / P·V overlap within a warpgroup for specs without modifiers (positive scale:
    // the scale folds into the exponentials); ATTNLAB_HOPPER_OVERLAP=0 turns it off (A/B).
    const char* overlap = std::getenv("ATTNLAB_HOPPER_OVERLAP");
    const char* schedule = std::getenv("ATTNLAB_HOPPER_SCHEDULE");
    const int chosen = schedule ? std::atoi(schedule) : kDefaultSchedule;
    if (!(spec.n_mods == 0 && spec.scale > 0.0f && !(overlap && std::string_view(overlap) == "0")))
        launch.template operator()<false, 0>();
    else if constexpr (std::is_same_v<Elem, __nv_bfloat16>) {
        if (chosen == 0) launch.template operator()<true, 0>();
        else launch.template operator()<true, kDefaultSchedule>();
    } else {
        launch.template operator()<true, kDefaultSchedule>();
    }
    ATTNLAB_CUDA_CHECK_LAUNCH("attention_hopper_kernel");
    return true;
}

template bool launch_prefill_hopper<__nv_bfloat16, 64>(const AttentionParams&, const gpu::Spec&, int64_t, cudaStream_t);
template bool launch_prefill_hopper<__nv_bfloat16, 128>(const AttentionParams&, const gpu::Spec&, int64_t, cudaStream_t);
template bool launch_prefill_hopper<__half, 64>(const AttentionParams&, const gpu::Spec&, int64_t, cudaStream_t);
template bool launch_prefill_hopper<__half, 128>(const AttentionParams&, const gpu::Spec&, int64_t, cudaStream_t);

}  // namespace attnlab::cuda
