// The prefill kernel: flash-attention-2-style forward with mma.sync (m16n8k16, bf16/f16 in,
// f32 accumulate) and an online softmax.
//
// One CTA = 4 warps = one block of 64 query rows of one (batch, head); each warp owns 16 rows
// and keeps its Q fragments and O accumulators in registers. The CTA walks only the key blocks
// its query block keeps (the host's block map, a compact list): Skip tiles are never touched,
// Full tiles get no per-element mask work, Partial tiles evaluate the masks per element. K and
// V tiles (64 keys) are double-buffered in shared memory through cp.async, so the copy of the
// next tile overlaps the math of this one. Shared rows are XOR-swizzled by 16-byte chunk so
// ldmatrix reads of 8 rows hit 8 different bank groups.
#include "kernels/cuda/attention_common.cuh"
#include "kernels/cuda/cuda_util.cuh"

namespace attnlab::cuda {

namespace {

constexpr int kWarps = 4;
constexpr int kThreads = kWarps * 32;
constexpr int kM = gpu::kBlockM;  // query rows per CTA (16 per warp)
constexpr int kN = gpu::kBlockN;  // keys per tile
static_assert(kM == kWarps * 16, "one 16-row MMA tile per warp");
static_assert(kM <= 2 * kN, "the Q tile fits in the V stages it aliases");

template <typename Elem, int D>
// Three CTAs per multiprocessor (at most 168 registers): measured 4% faster on dense and 15% on
// block-sparse masks than two CTAs with 246 registers, despite a few spilled registers.
__global__ void __launch_bounds__(kThreads, 3) attention_prefill_kernel(const AttentionParams p, const gpu::Spec spec) {
    extern __shared__ uint4 smem_raw[];
    Elem* sK = reinterpret_cast<Elem*>(smem_raw);  // [2][kN][D]
    Elem* sV = sK + 2 * kN * D;                    // [2][kN][D]
    Elem* sQ = sV;                                 // [kM][D], aliases V (read into registers before V lands)

    const int n_heads = p.head_end - p.head_begin;
    const int h = p.head_begin + int(blockIdx.x) % n_heads;
    const int b = int(blockIdx.x) / n_heads;
    const int qb = p.order[blockIdx.y];
    const int hk = h / p.group;
    const Elem* q = static_cast<const Elem*>(p.q) + b * p.q_bstride + int64_t(h) * D;
    const Elem* k = static_cast<const Elem*>(p.k) + b * p.k_bstride + int64_t(hk) * D;
    const Elem* v = static_cast<const Elem*>(p.v) + b * p.v_bstride + int64_t(hk) * D;
    const int t0 = qb * kM;
    const int e0 = p.offsets[qb], e1 = p.offsets[qb + 1];

    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int quad = lane & 3;             // column pair within an 8-wide MMA tile
    const int row0 = warp * 16 + lane / 4;  // this thread's rows: row0 and row0 + 8
    const int pos[2] = {p.positions[min(t0 + row0, p.T - 1)], p.positions[min(t0 + row0 + 8, p.T - 1)]};
    const float slope = alibi_slope(h, spec.pow2_heads);
    const float score_scale = spec.n_mods ? spec.scale : spec.scale * kLog2e;

    // Q -> shared -> registers (A fragments for every 16-wide k-step of D).
    load_tile<Elem, D, kM, kThreads>(sQ, q, t0, p.T, p.q_stride);
    cp_async_commit();
    if (e0 < e1) load_tile<Elem, D, kN, kThreads>(sK, k, (p.entries[e0] & ~gpu::kPartialBit) * kN, p.S, p.k_stride);
    cp_async_commit();
    cp_async_wait<1>();
    __syncthreads();
    uint32_t qf[D / 16][4];
#pragma unroll
    for (int ks = 0; ks < D / 16; ++ks) {
        const int mi = lane / 8, r = lane % 8;
        ldmatrix_x4(qf[ks], sQ + swz<D>(warp * 16 + r + (mi & 1) * 8, ks * 16 + (mi >> 1) * 8));
    }
    __syncthreads();  // sQ is V's space: every warp has its fragments before V lands there
    if (e0 < e1) load_tile<Elem, D, kN, kThreads>(sV, v, (p.entries[e0] & ~gpu::kPartialBit) * kN, p.S, p.v_stride);
    cp_async_commit();

    float o[D / 8][4] = {};
    float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};
    for (int e = e0; e < e1; ++e) {
        const int stage = (e - e0) & 1;
        const int entry = p.entries[e];
        const int kb = entry & ~gpu::kPartialBit;
        const bool partial = entry & gpu::kPartialBit;
        const Elem* tK = sK + stage * kN * D;
        const Elem* tV = sV + stage * kN * D;

        cp_async_wait<1>();  // K[e] has landed (V[e] may still be in flight)
        __syncthreads();
        // Prefetch K[e+1] a whole tile ahead: its stage held K[e-1], which every warp finished
        // before this barrier.
        if (e + 1 < e1)
            load_tile<Elem, D, kN, kThreads>(sK + (stage ^ 1) * kN * D, k, (p.entries[e + 1] & ~gpu::kPartialBit) * kN, p.S, p.k_stride);
        cp_async_commit();
        // k-steps outer, key tiles inner: consecutive MMAs write different accumulators.
        float s[kN / 8][4] = {};
#pragma unroll
        for (int kk = 0; kk < D / 32; ++kk) {
#pragma unroll
            for (int nt = 0; nt < kN / 8; ++nt) {
                uint32_t bf[4];  // K rows nt*8.., d chunks kk*32 + {0, 8, 16, 24}: two k-steps
                ldmatrix_x4(bf, tK + swz<D>(nt * 8 + lane % 8, kk * 32 + (lane / 8) * 8));
                mma16816<Elem>(s[nt], qf[2 * kk], bf[0], bf[1]);
                mma16816<Elem>(s[nt], qf[2 * kk + 1], bf[2], bf[3]);
            }
        }

        // Scores in log2 units: scale, then modifiers and masks (Partial tiles only). The
        // per-element work sits behind one branch per tile: interleaved with the hot path it
        // would spread the loop over many instruction-cache lines (measured: 40% of the
        // stalls waited on instruction fetch).
        if (spec.n_mods == 0 && !partial) {
#pragma unroll
            for (int nt = 0; nt < kN / 8; ++nt)
#pragma unroll
                for (int c = 0; c < 4; ++c) s[nt][c] *= score_scale;
        } else {
            // This thread's columns: nt*8 + quad*2 + {0, 1} for every 8-key MMA tile.
            const uint64_t cols = 0x0303030303030303ull << (quad * 2);
            const uint64_t keep[2] = {partial ? keep_bits(spec, pos[0], kb * kN, p.S, p.segments, cols) : cols,
                                      partial ? keep_bits(spec, pos[1], kb * kN, p.S, p.segments, cols) : cols};
#pragma unroll
            for (int nt = 0; nt < kN / 8; ++nt) {
#pragma unroll
                for (int c = 0; c < 4; ++c) {
                    const int i = pos[c / 2], col = nt * 8 + quad * 2 + (c & 1);
                    float x = s[nt][c] * score_scale;
                    if (spec.n_mods) x = apply_mods(spec, x, i, kb * kN + col, slope) * kLog2e;
                    s[nt][c] = (keep[c / 2] >> col) & 1 ? x : -INFINITY;
                }
            }
        }
        // Online softmax: row max over the tile (4 threads share a row), rescale, exponentiate.
        uint32_t pf[kN / 16][4];
#pragma unroll
        for (int r = 0; r < 2; ++r) {
            float mx = -INFINITY;
#pragma unroll
            for (int nt = 0; nt < kN / 8; ++nt) mx = fmaxf(mx, fmaxf(s[nt][2 * r], s[nt][2 * r + 1]));
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
            for (int nt = 0; nt < kN / 8; ++nt) {
                const float p0 = fast_exp2(s[nt][2 * r] - m_use), p1 = fast_exp2(s[nt][2 * r + 1] - m_use);
                l[r] += p0 + p1;
                // A fragment of P for k-step nt/2: regs {row0 lo, row0+8 lo, row0 hi, row0+8 hi}.
                pf[nt / 2][(nt & 1) * 2 + r] = pack2<Elem>(p0, p1);
            }
        }

        cp_async_wait<1>();  // V[e] has landed (K[e+1] may still be in flight)
        __syncthreads();
        // Prefetch V[e+1]: its stage held V[e-1], finished by every warp before this barrier.
        if (e + 1 < e1)
            load_tile<Elem, D, kN, kThreads>(sV + (stage ^ 1) * kN * D, v, (p.entries[e + 1] & ~gpu::kPartialBit) * kN, p.S, p.v_stride);
        cp_async_commit();
#pragma unroll
        for (int kk = 0; kk < kN / 16; ++kk) {
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

}  // namespace

template <typename Elem, int D>
void launch_prefill(const AttentionParams& p, const gpu::Spec& spec, int64_t n_qblocks, cudaStream_t stream) {
    constexpr size_t kSmem = size_t(4) * kN * D * sizeof(Elem);  // K and V, two stages each
    static const bool configured = [] {
        ATTNLAB_CUDA_CHECK(cudaFuncSetAttribute(attention_prefill_kernel<Elem, D>,
                                                cudaFuncAttributeMaxDynamicSharedMemorySize, int(kSmem)));
        return true;
    }();
    (void)configured;
    const dim3 grid(unsigned(p.B * (p.head_end - p.head_begin)), unsigned(n_qblocks));
    attention_prefill_kernel<Elem, D><<<grid, kThreads, kSmem, stream>>>(p, spec);
    ATTNLAB_CUDA_CHECK_LAUNCH("attention_prefill_kernel");
}

template void launch_prefill<__nv_bfloat16, 64>(const AttentionParams&, const gpu::Spec&, int64_t, cudaStream_t);
template void launch_prefill<__nv_bfloat16, 128>(const AttentionParams&, const gpu::Spec&, int64_t, cudaStream_t);
template void launch_prefill<__half, 64>(const AttentionParams&, const gpu::Spec&, int64_t, cudaStream_t);
template void launch_prefill<__half, 128>(const AttentionParams&, const gpu::Spec&, int64_t, cudaStream_t);

}  // namespace attnlab::cuda
