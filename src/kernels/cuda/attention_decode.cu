// The decode kernel: few query rows (T·H/Hkv <= 16) against a long key range, split over key
// chunks (split-KV) so the whole GPU streams K and V once, then a merge kernel.
//
// One CTA = 4 warps = one kv head, all the query rows of its GQA group — the (t, h) pairs, at
// most 16, packed into one 16-row MMA tile — and one split of its kept key blocks. The Q tile's
// fragments sit in registers for D <= 128; at D = 256 the O accumulator takes 128 registers per
// thread, so Q stays in shared memory and is read per k-step. K and V
// tiles of 64 keys are double-buffered through cp.async as in the prefill kernel; each warp
// takes 16 keys of every tile with mma.sync (QKᵀ: 16 rows × 16 keys, PV: 16 rows × D) and keeps
// its own online softmax state, so the arithmetic per byte of K/V is a few tensor-core
// instructions: an FMA version of this kernel (one lane per 16 bytes of a key) ran out of issue
// slots at 42 % of the copy bandwidth. At the end the CTA merges its warps, writes the split's
// normalised partial rows and log2-sum-exp, and the merge kernel combines the splits (and adds
// the sink logit).
#include "kernels/cuda/attention_common.cuh"
#include "kernels/cuda/cuda_util.cuh"

namespace attnlab::cuda {

namespace {

constexpr int kWarps = 4;
constexpr int kThreads = kWarps * 32;
constexpr int kRows = 16;          // packed (t, h) query rows per CTA
constexpr int kN = gpu::kBlockN;   // keys per tile
constexpr int kKeysPerWarp = kN / kWarps;
static_assert(kKeysPerWarp == 16, "one 16-key MMA k-step of P·V per warp and tile");
template <int D>
constexpr bool kDecodeQInRegisters = D <= 128;

template <typename Elem, int D>
__global__ void __launch_bounds__(kThreads) attention_decode_kernel(const AttentionParams p, const gpu::Spec spec) {
    extern __shared__ uint4 smem_raw[];
    Elem* sK = reinterpret_cast<Elem*>(smem_raw);  // [2][kN][D]
    Elem* sV = sK + 2 * kN * D;                    // [2][kN][D]
    Elem* sQ = sV + 2 * kN * D;                    // [kRows][D]
    float* sO = reinterpret_cast<float*>(smem_raw);  // [kWarps][kRows][D] after the loop (aliases K, V)
    __shared__ float sM[kWarps][kRows], sL[kWarps][kRows];

    const int split = blockIdx.x;
    const int hk = p.head_begin / p.group + int(blockIdx.y);
    const int b = blockIdx.z;
    const int h_first = max(hk * p.group, p.head_begin), h_last = min(hk * p.group + p.group, p.head_end);
    const int n_h = h_last - h_first, n_rows = p.T * n_h;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, quad = lane & 3;
    const int g = lane / 4;  // this thread's rows: g and g + 8

    // Rows: r -> (t, h) = (r / n_h, h_first + r % n_h); rows >= n_rows are zero padding.
    auto row_t = [&](int r) { return r < n_rows ? r / n_h : 0; };
    auto row_h = [&](int r) { return r < n_rows ? h_first + r % n_h : h_first; };
    const int pos[2] = {p.positions[row_t(g)], p.positions[row_t(g + 8)]};
    const float slope[2] = {alibi_slope(row_h(g), spec.pow2_heads), alibi_slope(row_h(g + 8), spec.pow2_heads)};
    const float score_scale = spec.n_mods ? spec.scale : spec.scale * kLog2e;

    const int e_begin = p.offsets[0], e_end = p.offsets[1];
    const int per_split = (e_end - e_begin + p.splits - 1) / p.splits;
    const int e0 = min(e_end, e_begin + split * per_split), e1 = min(e_end, e0 + per_split);
    const Elem* k = static_cast<const Elem*>(p.k) + b * p.k_bstride + int64_t(hk) * D;
    const Elem* v = static_cast<const Elem*>(p.v) + b * p.v_bstride + int64_t(hk) * D;

    // The packed Q tile (a gather: each row has its own t and h).
    for (int idx = threadIdx.x; idx < kRows * (D / 8); idx += kThreads) {
        const int r = idx / (D / 8), c = idx % (D / 8);
        const Elem* src = static_cast<const Elem*>(p.q) + b * p.q_bstride + int64_t(row_t(r)) * p.q_stride +
                          int64_t(row_h(r)) * D + c * 8;
        cp_async16(sQ + swz<D>(r, c * 8), src, r < n_rows);
    }
    cp_async_commit();
    if (e0 < e1) load_tile<Elem, D, kN, kThreads>(sK, k, (p.entries[e0] & ~gpu::kPartialBit) * kN, p.S, p.k_stride);
    cp_async_commit();
    if (e0 < e1) load_tile<Elem, D, kN, kThreads>(sV, v, (p.entries[e0] & ~gpu::kPartialBit) * kN, p.S, p.v_stride);
    cp_async_commit();
    cp_async_wait<2>();
    __syncthreads();
    uint32_t qf[kDecodeQInRegisters<D> ? D / 16 : 1][4];
    if constexpr (kDecodeQInRegisters<D>) {
#pragma unroll
        for (int ks = 0; ks < D / 16; ++ks) load_q_fragment<Elem, D>(qf[ks], sQ, 0, ks, lane);
    }

    float o[D / 8][4] = {};
    float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};
    const int key0 = warp * kKeysPerWarp;  // this warp's keys within a tile
    for (int e = e0; e < e1; ++e) {
        const int stage = (e - e0) & 1;
        const int entry = p.entries[e];
        const int kb = entry & ~gpu::kPartialBit;
        const bool partial = entry & gpu::kPartialBit;
        const Elem* tK = sK + stage * kN * D;
        const Elem* tV = sV + stage * kN * D;

        cp_async_wait<1>();  // K[e] has landed (V[e] may still be in flight)
        __syncthreads();
        if (e + 1 < e1)
            load_tile<Elem, D, kN, kThreads>(sK + (stage ^ 1) * kN * D, k, (p.entries[e + 1] & ~gpu::kPartialBit) * kN, p.S, p.k_stride);
        cp_async_commit();
        float s[2][4] = {};
#pragma unroll
        for (int kk = 0; kk < D / 32; ++kk) {
            uint32_t qa[2][4];  // A fragments of k-steps 2kk and 2kk + 1
            q_fragment_pair<Elem, D>(qa, qf, sQ, 0, kk, lane);
#pragma unroll
            for (int nt = 0; nt < 2; ++nt) {
                uint32_t bf[4];
                ldmatrix_x4(bf, tK + swz<D>(key0 + nt * 8 + lane % 8, kk * 32 + (lane / 8) * 8));
                mma16816<Elem>(s[nt], qa[0], bf[0], bf[1]);
                mma16816<Elem>(s[nt], qa[1], bf[2], bf[3]);
            }
        }
        if (spec.n_mods == 0 && !partial) {
#pragma unroll
            for (int nt = 0; nt < 2; ++nt)
#pragma unroll
                for (int c = 0; c < 4; ++c) s[nt][c] *= score_scale;
        } else {
            const uint64_t cols = uint64_t(0x0303u << (quad * 2)) << key0;
            const uint64_t keep[2] = {partial ? keep_bits(spec, pos[0], kb * kN, p.S, p.segments, cols) : cols,
                                      partial ? keep_bits(spec, pos[1], kb * kN, p.S, p.segments, cols) : cols};
#pragma unroll
            for (int nt = 0; nt < 2; ++nt) {
#pragma unroll
                for (int c = 0; c < 4; ++c) {
                    const int col = key0 + nt * 8 + quad * 2 + (c & 1);
                    float x = s[nt][c] * score_scale;
                    if (spec.n_mods) x = apply_mods(spec, x, pos[c / 2], kb * kN + col, slope[c / 2]) * kLog2e;
                    s[nt][c] = (keep[c / 2] >> col) & 1 ? x : -INFINITY;
                }
            }
        }
        uint32_t pf[4];
#pragma unroll
        for (int r = 0; r < 2; ++r) {
            float mx = fmaxf(fmaxf(s[0][2 * r], s[0][2 * r + 1]), fmaxf(s[1][2 * r], s[1][2 * r + 1]));
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
            const float m_new = fmaxf(m[r], mx);
            const float m_use = m_new == -INFINITY ? 0.0f : m_new;
            const float alpha = fast_exp2(m[r] - m_use);
            m[r] = m_new;
            l[r] *= alpha;
#pragma unroll
            for (int nt = 0; nt < D / 8; ++nt) {
                o[nt][2 * r] *= alpha;
                o[nt][2 * r + 1] *= alpha;
            }
#pragma unroll
            for (int nt = 0; nt < 2; ++nt) {
                const float p0 = fast_exp2(s[nt][2 * r] - m_use), p1 = fast_exp2(s[nt][2 * r + 1] - m_use);
                l[r] += p0 + p1;
                pf[nt * 2 + r] = pack2<Elem>(p0, p1);  // A fragment: {row g lo, row g+8 lo, row g hi, row g+8 hi}
            }
        }

        cp_async_wait<1>();  // V[e] has landed (K[e+1] may still be in flight)
        __syncthreads();
        if (e + 1 < e1)
            load_tile<Elem, D, kN, kThreads>(sV + (stage ^ 1) * kN * D, v, (p.entries[e + 1] & ~gpu::kPartialBit) * kN, p.S, p.v_stride);
        cp_async_commit();
#pragma unroll
        for (int np = 0; np < D / 16; ++np) {
            uint32_t bf[4];
            const int mi = lane / 8;
            ldmatrix_x4_trans(bf, tV + swz<D>(key0 + lane % 8 + (mi & 1) * 8, np * 16 + (mi >> 1) * 8));
            mma16816<Elem>(o[2 * np], pf, bf[0], bf[1]);
            mma16816<Elem>(o[2 * np + 1], pf, bf[2], bf[3]);
        }
    }
    cp_async_wait<0>();
    __syncthreads();  // K/V space becomes the warps' partial outputs

    // Merge the warps: each writes (m, l, o) of its 16 rows; then every thread combines some
    // (row, dim) pairs and writes this split's normalised row and log2-sum-exp.
#pragma unroll
    for (int r = 0; r < 2; ++r) {
        float sum = l[r];
        sum += __shfl_xor_sync(0xffffffffu, sum, 1);
        sum += __shfl_xor_sync(0xffffffffu, sum, 2);
        if (quad == 0) {
            sM[warp][g + 8 * r] = m[r];
            sL[warp][g + 8 * r] = sum;
        }
#pragma unroll
        for (int nt = 0; nt < D / 8; ++nt) {
            float* dst = sO + (warp * kRows + g + 8 * r) * D + nt * 8 + quad * 2;
            dst[0] = o[nt][2 * r];
            dst[1] = o[nt][2 * r + 1];
        }
    }
    __syncthreads();
    const int64_t rows_total = int64_t(p.B) * p.T * p.H;
    for (int idx = threadIdx.x; idx < n_rows * D; idx += kThreads) {
        const int r = idx / D, d = idx % D;
        float mx = -INFINITY;
#pragma unroll
        for (int w = 0; w < kWarps; ++w) mx = fmaxf(mx, sM[w][r]);
        const float m_use = mx == -INFINITY ? 0.0f : mx;
        float sum = 0.0f, acc = 0.0f;
#pragma unroll
        for (int w = 0; w < kWarps; ++w) {
            const float f = fast_exp2(sM[w][r] - m_use);
            sum += sL[w][r] * f;
            acc += sO[(w * kRows + r) * D + d] * f;
        }
        const int64_t row = (int64_t(b) * p.T + row_t(r)) * p.H + row_h(r);
        p.ws_out[(split * rows_total + row) * D + d] = sum > 0.0f ? acc / sum : 0.0f;
        if (d == 0) p.ws_lse[split * rows_total + row] = sum > 0.0f ? mx + __log2f(sum) : -INFINITY;
    }
}

// One CTA per (b, t, h) row: log-sum-exp over the splits, sinks, out and lse.
template <int D>
__global__ void __launch_bounds__(D) attention_merge_kernel(const AttentionParams p, const gpu::Spec spec) {
    const int n_heads = p.head_end - p.head_begin;
    const int h = p.head_begin + int(blockIdx.x) % n_heads;
    const int t = int(blockIdx.x) / n_heads % p.T;
    const int b = int(blockIdx.x) / n_heads / p.T;
    const int d = threadIdx.x;
    const int64_t rows_total = int64_t(p.B) * p.T * p.H;
    const int64_t row = (int64_t(b) * p.T + t) * p.H + h;
    float mx = -INFINITY;
    for (int s = 0; s < p.splits; ++s) mx = fmaxf(mx, p.ws_lse[s * rows_total + row]);
    const float m_use = mx == -INFINITY ? 0.0f : mx;
    float sum = 0.0f, acc = 0.0f;
    for (int s = 0; s < p.splits; ++s) {
        const float w = fast_exp2(p.ws_lse[s * rows_total + row] - m_use);  // this split's Σ e^s, relative
        sum += w;
        acc += w * p.ws_out[(s * rows_total + row) * D + d];
    }
    float factor, lse;
    // The splits' outputs are normalised: sum plays l and acc/sum is the row; m_use is the max.
    finish_row(m_use, sum, spec.has_sinks, spec.has_sinks ? p.sinks[h] : 0.0f, &factor, &lse);
    p.out[b * p.out_bstride + int64_t(t) * p.out_stride + int64_t(h) * D + d] = acc * factor;
    if (p.lse && d == 0) p.lse[row] = lse;
}

// K and V, two stages each, and the Q tile; the warps' partial outputs reuse the K/V space.
template <typename Elem, int D>
constexpr size_t kDecodeSmem = size_t(4) * kN * D * sizeof(Elem) + size_t(kRows) * D * sizeof(Elem);

template <typename Elem, int D>
void configure_decode() {
    static_assert(size_t(kWarps) * kRows * D * sizeof(float) <= size_t(4) * kN * D * sizeof(Elem), "sO fits");
    static const bool configured = [] {
        ATTNLAB_CUDA_CHECK(cudaFuncSetAttribute(attention_decode_kernel<Elem, D>,
                                                cudaFuncAttributeMaxDynamicSharedMemorySize, int(kDecodeSmem<Elem, D>)));
        return true;
    }();
    (void)configured;
}

}  // namespace

template <typename Elem, int D>
int decode_ctas_per_sm() {
    configure_decode<Elem, D>();
    int blocks = 0;
    ATTNLAB_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&blocks, attention_decode_kernel<Elem, D>, kThreads,
                                                                     kDecodeSmem<Elem, D>));
    return blocks;
}

template <typename Elem, int D>
void launch_decode(const AttentionParams& p, const gpu::Spec& spec, cudaStream_t stream) {
    constexpr size_t kSmem = kDecodeSmem<Elem, D>;
    configure_decode<Elem, D>();
    const int kv_first = p.head_begin / p.group, kv_last = (p.head_end - 1) / p.group;
    const dim3 grid(unsigned(p.splits), unsigned(kv_last - kv_first + 1), unsigned(p.B));
    attention_decode_kernel<Elem, D><<<grid, kThreads, kSmem, stream>>>(p, spec);
    ATTNLAB_CUDA_CHECK_LAUNCH("attention_decode_kernel");
    attention_merge_kernel<D><<<unsigned(int64_t(p.B) * p.T * (p.head_end - p.head_begin)), D, 0, stream>>>(p, spec);
    ATTNLAB_CUDA_CHECK_LAUNCH("attention_merge_kernel");
}

template void launch_decode<__nv_bfloat16, 64>(const AttentionParams&, const gpu::Spec&, cudaStream_t);
template void launch_decode<__nv_bfloat16, 128>(const AttentionParams&, const gpu::Spec&, cudaStream_t);
template void launch_decode<__nv_bfloat16, 256>(const AttentionParams&, const gpu::Spec&, cudaStream_t);
template void launch_decode<__half, 64>(const AttentionParams&, const gpu::Spec&, cudaStream_t);
template void launch_decode<__half, 128>(const AttentionParams&, const gpu::Spec&, cudaStream_t);
template void launch_decode<__half, 256>(const AttentionParams&, const gpu::Spec&, cudaStream_t);
template int decode_ctas_per_sm<__nv_bfloat16, 64>();
template int decode_ctas_per_sm<__nv_bfloat16, 128>();
template int decode_ctas_per_sm<__nv_bfloat16, 256>();
template int decode_ctas_per_sm<__half, 64>();
template int decode_ctas_per_sm<__half, 128>();
template int decode_ctas_per_sm<__half, 256>();

}  // namespace attnlab::cuda
