// The prefill kernel: flash-attention-2-style forward with mma.sync (m16n8k16, bf16/f16 in,
// f32 accumulate) and an online softmax.
//
// One CTA = 4 warps = one block of 64 query rows of one (batch, head); each warp owns 16 rows
// and keeps its O accumulators in registers (and, for D <= 128, its Q fragments). The CTA walks
// only the key blocks its query block keeps (the host's block map, a compact list): Skip tiles
// are never touched, Full tiles get no per-element mask work, Partial tiles evaluate the masks
// per element. K and V tiles go through shared memory by cp.async, double-buffered (D <= 128:
// the next tile's K and V load during this one's math) or single (D = 256: the next K loads
// during P·V, this V during QKᵀ, and two CTAs per multiprocessor cover each other's waits).
// Shared rows are XOR-swizzled by 16-byte chunk so ldmatrix reads of 8 rows hit 8 different
// bank groups.
#include "kernels/cuda/attention_common.cuh"
#include "kernels/cuda/cuda_util.cuh"

#include <cstdlib>
#include <string_view>

namespace attnlab::cuda {

namespace {

constexpr int kWarps = 4;
constexpr int kThreads = kWarps * 32;
constexpr int kM = gpu::kBlockM;  // query rows per CTA (16 per warp)
constexpr int kN = gpu::kBlockN;  // keys per block-map tile
static_assert(kM == kWarps * 16, "one 16-row MMA tile per warp");

// How the kernel holds head dim D: kKeys keys per pipeline stage, kBuffers shared buffers each
// for K and V. D <= 128: whole 64-key tiles, double-buffered, Q fragments in registers (D/4
// registers) next to the O accumulator (D/2); three CTAs per multiprocessor. D = 256: O alone
// takes 128 registers per thread, so Q stays in shared memory (ldmatrix per k-step), and
// shared memory must stay at 96 KB for two CTAs (8 warps) per multiprocessor: whole 64-key
// tiles in single buffers (254 registers, 8 bytes spilled), the next tile's K loading during
// P·V and V during QKᵀ. Measured on the H200 (bf16, causal, H = 8, Hkv = 4, T = S = 4k / 16k):
// 230 / 247 TFLOP/s; two double-buffered 32-key stages per tile (240 registers; the A/B
// ATTNLAB_PREFILL_D256=32x2) 188 / 201, since Q is re-read per 32 keys and the CTA waits at
// twice the barriers; double-buffered 64-key tiles (160 KB: one CTA of 4 warps) 154 / 167.
template <int D, int kKeys, int kBuffers>
struct PrefillShape {
    static constexpr bool kQInRegisters = D <= 128;
    static constexpr int kStagesPerTile = kN / kKeys;
    static constexpr int kCtasPerSm = D <= 128 ? 3 : (kKeys * kBuffers <= 64 ? 2 : 1);
    static_assert(kN % kKeys == 0 && kKeys % 16 == 0, "stages split a block-map tile into P·V k-steps");
    static_assert(kBuffers == 1 || kBuffers == 2, "single or double buffers");
    static_assert(!kQInRegisters || kM <= kBuffers * kKeys, "the Q tile fits in the V buffers it aliases");
    // K and V buffers, and the Q tile unless it aliases V.
    template <typename Elem>
    static constexpr size_t smem_bytes() {
        return (size_t(2 * kBuffers) * kKeys * D + (kQInRegisters ? 0 : size_t(kM) * D)) * sizeof(Elem);
    }
};

// This thread's columns of a stage of `keys` keys: bits nt·8 + {0, 1} for every 8-key MMA
// tile, to be shifted by quad·2.
__host__ __device__ constexpr uint64_t stage_columns(int keys) {
    uint64_t cols = 0;
    for (int nt = 0; nt < keys / 8; ++nt) cols |= uint64_t(3) << (8 * nt);
    return cols;
}

template <typename Elem, int D, int kKeys, int kBuffers>
// D <= 128: three CTAs per multiprocessor (at most 168 registers): measured 4% faster on dense
// and 15% on block-sparse masks than two CTAs with 246 registers, despite a few spilled registers.
__global__ void __launch_bounds__(kThreads, PrefillShape<D, kKeys, kBuffers>::kCtasPerSm)
    attention_prefill_kernel(const AttentionParams p, const gpu::Spec spec) {
    using Shape = PrefillShape<D, kKeys, kBuffers>;
    constexpr int kStages = Shape::kStagesPerTile;
    constexpr bool kDouble = kBuffers == 2;
    extern __shared__ uint4 smem_raw[];
    Elem* sK = reinterpret_cast<Elem*>(smem_raw);  // [kBuffers][kKeys][D]
    Elem* sV = sK + kBuffers * kKeys * D;          // [kBuffers][kKeys][D]
    // [kM][D]: aliases V when Q goes to registers (read before V lands), else after V.
    Elem* sQ = Shape::kQInRegisters ? sV : sV + kBuffers * kKeys * D;

    const int n_heads = p.head_end - p.head_begin;
    const int h = p.head_begin + int(blockIdx.x) % n_heads;
    const int b = int(blockIdx.x) / n_heads;
    const int qb = p.order[blockIdx.y];
    const int hk = h / p.group;
    const Elem* q = static_cast<const Elem*>(p.q) + b * p.q_bstride + int64_t(h) * D;
    const Elem* k = static_cast<const Elem*>(p.k) + b * p.k_bstride + int64_t(hk) * D;
    const Elem* v = static_cast<const Elem*>(p.v) + b * p.v_bstride + int64_t(hk) * D;
    const int t0 = qb * kM;
    const int e0 = p.offsets[qb];
    const int n_steps = (p.offsets[qb + 1] - e0) * kStages;  // pipeline stages of kKeys keys
    // First key of stage `st`: stage st % kStages of the kept tile e0 + st / kStages.
    auto stage_key0 = [&](int st) { return (p.entries[e0 + st / kStages] & ~gpu::kPartialBit) * kN + (st % kStages) * kKeys; };

    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int quad = lane & 3;             // column pair within an 8-wide MMA tile
    const int row0 = warp * 16 + lane / 4;  // this thread's rows: row0 and row0 + 8
    const int pos[2] = {p.positions[min(t0 + row0, p.T - 1)], p.positions[min(t0 + row0 + 8, p.T - 1)]};
    const float slope = alibi_slope(h, spec.pow2_heads);
    const float score_scale = spec.n_mods ? spec.scale : spec.scale * kLog2e;

    // Q -> shared (-> registers: A fragments for every 16-wide k-step of D).
    load_tile<Elem, D, kM, kThreads>(sQ, q, t0, p.T, p.q_stride);
    cp_async_commit();
    if (n_steps > 0) load_tile<Elem, D, kKeys, kThreads>(sK, k, stage_key0(0), p.S, p.k_stride);
    cp_async_commit();
    cp_async_wait<1>();
    __syncthreads();
    uint32_t qf[Shape::kQInRegisters ? D / 16 : 1][4];
    if constexpr (Shape::kQInRegisters) {
#pragma unroll
        for (int ks = 0; ks < D / 16; ++ks) load_q_fragment<Elem, D>(qf[ks], sQ, warp * 16, ks, lane);
        __syncthreads();  // sQ is V's space: every warp has its fragments before V lands there
    }
    if (kDouble && n_steps > 0) load_tile<Elem, D, kKeys, kThreads>(sV, v, stage_key0(0), p.S, p.v_stride);
    if (kDouble) cp_async_commit();

    float o[D / 8][4] = {};
    float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};
    for (int st = 0; st < n_steps; ++st) {
        const int stage = kDouble ? st & 1 : 0;
        const int entry = p.entries[e0 + st / kStages];
        const int kb = entry & ~gpu::kPartialBit;
        const bool partial = entry & gpu::kPartialBit;
        const int j0 = (st % kStages) * kKeys;  // the stage's first key within its 64-key tile
        const Elem* tK = sK + stage * kKeys * D;
        const Elem* tV = sV + stage * kKeys * D;

        cp_async_wait<kDouble ? 1 : 0>();  // K[st] has landed (V[st] may still be in flight)
        __syncthreads();
        if constexpr (kDouble) {
            // Prefetch K[st+1] a whole stage ahead: its buffer held K[st-1], which every warp
            // finished before this barrier.
            if (st + 1 < n_steps)
                load_tile<Elem, D, kKeys, kThreads>(sK + (stage ^ 1) * kKeys * D, k, stage_key0(st + 1), p.S, p.k_stride);
        } else {
            // V[st] loads during QKᵀ: its buffer held V[st-1], finished before this barrier.
            load_tile<Elem, D, kKeys, kThreads>(sV, v, stage_key0(st), p.S, p.v_stride);
        }
        cp_async_commit();
        // k-steps outer, key tiles inner: consecutive MMAs write different accumulators.
        float s[kKeys / 8][4] = {};
#pragma unroll
        for (int kk = 0; kk < D / 32; ++kk) {
            uint32_t qa[2][4];  // A fragments of k-steps 2kk and 2kk + 1
            q_fragment_pair<Elem, D>(qa, qf, sQ, warp * 16, kk, lane);
#pragma unroll
            for (int nt = 0; nt < kKeys / 8; ++nt) {
                uint32_t bf[4];  // K rows nt*8.., d chunks kk*32 + {0, 8, 16, 24}: two k-steps
                ldmatrix_x4(bf, tK + swz<D>(nt * 8 + lane % 8, kk * 32 + (lane / 8) * 8));
                mma16816<Elem>(s[nt], qa[0], bf[0], bf[1]);
                mma16816<Elem>(s[nt], qa[1], bf[2], bf[3]);
            }
        }

        // Scores in log2 units: scale, then modifiers and masks (Partial tiles only). The
        // per-element work sits behind one branch per stage: interleaved with the hot path it
        // would spread the loop over many instruction-cache lines (measured: 40% of the
        // stalls waited on instruction fetch).
        if (spec.n_mods == 0 && !partial) {
#pragma unroll
            for (int nt = 0; nt < kKeys / 8; ++nt)
#pragma unroll
                for (int c = 0; c < 4; ++c) s[nt][c] *= score_scale;
        } else {
            // This thread's columns of the 64-key tile: j0 + nt*8 + quad*2 + {0, 1}.
            const uint64_t cols = stage_columns(kKeys) << (quad * 2) << j0;
            const uint64_t keep[2] = {partial ? keep_bits(spec, pos[0], kb * kN, p.S, p.segments, cols) : cols,
                                      partial ? keep_bits(spec, pos[1], kb * kN, p.S, p.segments, cols) : cols};
#pragma unroll
            for (int nt = 0; nt < kKeys / 8; ++nt) {
#pragma unroll
                for (int c = 0; c < 4; ++c) {
                    const int i = pos[c / 2], col = j0 + nt * 8 + quad * 2 + (c & 1);
                    float x = s[nt][c] * score_scale;
                    if (spec.n_mods) x = apply_mods(spec, x, i, kb * kN + col, slope) * kLog2e;
                    s[nt][c] = (keep[c / 2] >> col) & 1 ? x : -INFINITY;
                }
            }
        }
        // Online softmax: row max over the stage (4 threads share a row), rescale, exponentiate.
        uint32_t pf[kKeys / 16][4];
#pragma unroll
        for (int r = 0; r < 2; ++r) {
            float mx = -INFINITY;
#pragma unroll
            for (int nt = 0; nt < kKeys / 8; ++nt) mx = fmaxf(mx, fmaxf(s[nt][2 * r], s[nt][2 * r + 1]));
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
            const float m_new = fmaxf(m[r], mx);
            const float m_use = m_new == -INFINITY ? 0.0f : m_new;  // all masked so far: keep exp2 finite
            const float alpha = fast_exp2(m[r] - m_use);
            m[r] = m_new;
            l[r] *= alpha;
#pragma unroll
            for (int nt = 0; nt < D / 8; ++nt) {
                o[nt][2 * r] *= alpha;
                o[nt][2 * r + 1] *= alpha;
            }
#pragma unroll
            for (int nt = 0; nt < kKeys / 8; ++nt) {
                const float p0 = fast_exp2(s[nt][2 * r] - m_use), p1 = fast_exp2(s[nt][2 * r + 1] - m_use);
                l[r] += p0 + p1;
                // A fragment of P for k-step nt/2: regs {row0 lo, row0+8 lo, row0 hi, row0+8 hi}.
                pf[nt / 2][(nt & 1) * 2 + r] = pack2<Elem>(p0, p1);
            }
        }

        cp_async_wait<kDouble ? 1 : 0>();  // V[st] has landed (K[st+1] may still be in flight)
        __syncthreads();
        // Prefetch the next stage's V (double buffers: its buffer held V[st-1]) or K (single
        // buffer: every warp finished QKᵀ of this stage before this barrier); it loads during P·V.
        if (st + 1 < n_steps) {
            if constexpr (kDouble)
                load_tile<Elem, D, kKeys, kThreads>(sV + (stage ^ 1) * kKeys * D, v, stage_key0(st + 1), p.S, p.v_stride);
            else
                load_tile<Elem, D, kKeys, kThreads>(sK, k, stage_key0(st + 1), p.S, p.k_stride);
        }
        cp_async_commit();
#pragma unroll
        for (int kk = 0; kk < kKeys / 16; ++kk) {
#pragma unroll
            for (int np = 0; np < D / 16; ++np) {
                uint32_t bf[4];  // V rows kk*16 + {0..7, 8..15}, cols np*16 + {0..7, 8..15}, transposed
                const int mi = lane / 8;
                ldmatrix_x4_trans(bf, tV + swz<D>(kk * 16 + lane % 8 + (mi & 1) * 8, np * 16 + (mi >> 1) * 8));
                mma16816<Elem>(o[2 * np], pf[kk], bf[0], bf[1]);
                mma16816<Elem>(o[2 * np + 1], pf[kk], bf[2], bf[3]);
            }
        }
    }
    cp_async_wait<0>();

    // Epilogue: each row's sum over its 4 threads, sinks, out (f32) and lse.
    write_output_rows<D>(p, spec, o, m, l, b, h, t0 + row0, quad);
}

template <typename Elem, int D, int kKeys, int kBuffers>
void launch_prefill_shape(const AttentionParams& p, const gpu::Spec& spec, int64_t n_qblocks, cudaStream_t stream) {
    constexpr size_t kSmem = PrefillShape<D, kKeys, kBuffers>::template smem_bytes<Elem>();
    static const bool configured = [] {
        ATTNLAB_CUDA_CHECK(cudaFuncSetAttribute(attention_prefill_kernel<Elem, D, kKeys, kBuffers>,
                                                cudaFuncAttributeMaxDynamicSharedMemorySize, int(kSmem)));
        return true;
    }();
    (void)configured;
    const dim3 grid(unsigned(p.B * (p.head_end - p.head_begin)), unsigned(n_qblocks));
    attention_prefill_kernel<Elem, D, kKeys, kBuffers><<<grid, kThreads, kSmem, stream>>>(p, spec);
    ATTNLAB_CUDA_CHECK_LAUNCH("attention_prefill_kernel");
}

}  // namespace

template <typename Elem, int D>
void launch_prefill(const AttentionParams& p, const gpu::Spec& spec, int64_t n_qblocks, cudaStream_t stream) {
    if constexpr (D <= 128) {
        launch_prefill_shape<Elem, D, kN, 2>(p, spec, n_qblocks, stream);
    } else {
        // Whole 64-key tiles in single buffers; ATTNLAB_PREFILL_D256=32x2 (A/B) runs two
        // double-buffered 32-key stages per tile instead (PrefillShape has the measurements).
        const char* shape = std::getenv("ATTNLAB_PREFILL_D256");
        if (shape && std::string_view(shape) == "32x2") launch_prefill_shape<Elem, D, 32, 2>(p, spec, n_qblocks, stream);
        else launch_prefill_shape<Elem, D, kN, 1>(p, spec, n_qblocks, stream);
    }
}

template void launch_prefill<__nv_bfloat16, 64>(const AttentionParams&, const gpu::Spec&, int64_t, cudaStream_t);
template void launch_prefill<__nv_bfloat16, 128>(const AttentionParams&, const gpu::Spec&, int64_t, cudaStream_t);
template void launch_prefill<__nv_bfloat16, 256>(const AttentionParams&, const gpu::Spec&, int64_t, cudaStream_t);
template void launch_prefill<__half, 64>(const AttentionParams&, const gpu::Spec&, int64_t, cudaStream_t);
template void launch_prefill<__half, 128>(const AttentionParams&, const gpu::Spec&, int64_t, cudaStream_t);
template void launch_prefill<__half, 256>(const AttentionParams&, const gpu::Spec&, int64_t, cudaStream_t);

}  // namespace attnlab::cuda
