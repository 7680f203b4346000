// The general attention kernel: every call the tensor-core kernels (attention_prefill.cu,
// attention_decode.cu) do not run — f32 inputs, any head dims 1 ≤ D, Dv ≤ 256 (Dv may differ
// from D), the segment / radial / radial_blocks masks, the boost modifier, several sink
// mechanisms, and the sigmoid and relu normalizers. Plain f32 FMA arithmetic, no tensor cores:
// it is written to be exact and simple first (the fixture models have D = 4..32, where tensor
// cores would idle anyway) and to stay proportional to the kept tiles of the block map.
//
// One CTA = 8 warps = one (batch, kv head, 64-query block) and a chunk of 8·R of its query rows:
// the rows are the (t, h) pairs of the block's queries and of the kv head's query heads in the
// call's range (GQA: every head of the group reads the same K/V tile from shared memory), and
// each warp owns R ∈ {1, 2, 4} of them (R chosen per launch from the rows there are, so a decode
// step with 8 rows gives every warp one row instead of leaving six idle). The CTA walks the kept
// key blocks of its query block (the host's block map): Skip tiles are never read, Full tiles
// do no mask work, Partial tiles evaluate the masks per element. Per 64-key tile the K and V
// rows are converted to f32 in shared memory (K rows padded to an odd stride, so the lanes'
// reads of 32 different keys at one dim hit 32 banks); then per row a lane computes the scores
// of keys lane and lane + 32, the warp runs the normalizer's online step, writes P to shared
// memory and the lanes switch to the value dims for P·V: lane = (dim, key group) with the
// dims padded to a power of two W and 32/W key groups, so small Dv still uses every lane (the
// key groups' partial sums are added once at the end). P is never rounded to the input type.
//
// Normalizers (the CPU reference's definitions): softmax keeps a running max and rescales
// (exact lse, sinks join the denominator at the end); sigmoid sums σ(s + b)·v and relu
// relu(s)·v with no running max, relu dividing by the row's kept count at the end; lse is
// log Σ p for both. A row that keeps no key writes out = 0 and lse = -inf.
#include "kernels/cuda/attention_general.cuh"
#include "kernels/cuda/cuda_util.cuh"

#include <algorithm>

namespace attnlab::cuda {

namespace {

using namespace general;

// Shared memory of a CTA with R rows per warp: Q rows, the K and V tiles (f32), the warps' P.
__host__ __device__ constexpr size_t general_smem_bytes(int D, int Dv, int R) {
    return sizeof(float) * (size_t(kWarps) * R * D + size_t(kN) * k_row_stride(D) + size_t(kN) * Dv + size_t(kWarps) * R * kN);
}

template <typename Elem, int R>
__global__ void __launch_bounds__(kThreads) attention_general_kernel(const AttentionParams p, const gpu::Spec spec,
                                                                     int chunks) {
    extern __shared__ __align__(16) float smem[];  // sQ first: float4 reads of its rows
    const int D = p.D, Dv = p.Dv, ks = k_row_stride(D);
    constexpr int kRows = kWarps * R;  // query rows per CTA
    float* sQ = smem;               // [kRows][D]
    float* sK = sQ + kRows * D;     // [kN][ks]
    float* sV = sK + kN * ks;       // [kN][Dv]
    float* sP = sV + kN * Dv;       // [kWarps][R][kN]

    const int qb = p.order[blockIdx.x];
    const int b = blockIdx.z;
    const CtaRows rows(p, qb, int(blockIdx.y) % chunks, int(blockIdx.y) / chunks, kRows);
    const int n_rows = rows.n_rows;
    if (n_rows <= 0) return;  // the last chunks of a short block or a small group (whole CTA)
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int my_first = warp * R;
    const bool active = my_first < n_rows;  // warp-uniform
    auto row_t = [&](int r) { return rows.row_t(r); };
    auto row_h = [&](int r) { return rows.row_h(r); };

    const int hk = rows.hk;
    const Elem* k = static_cast<const Elem*>(p.k) + b * p.k_bstride + int64_t(hk) * D;
    const Elem* v = static_cast<const Elem*>(p.v) + b * p.v_bstride + int64_t(hk) * Dv;
    load_query_rows<Elem>(sQ, p, b, rows);

    // This lane's value dims: W lanes (a power of two >= Dv, at most 32) per key group, 32/W
    // key groups; dims d = lane_d + c·W for c < n_chunks.
    const int W = Dv >= 32 ? 32 : 1 << (32 - __clz(Dv - 1)) /* next power of two */;
    const int G = 32 / W, lane_d = lane % W, lane_g = lane / W;
    const int n_chunks = (Dv + W - 1) / W;

    int pos[R];
    float slope[R], m[R], l[R], kept[R], acc[R][kMaxDimChunks];
#pragma unroll
    for (int r = 0; r < R; ++r) {
        pos[r] = p.positions[row_t(my_first + r)];
        slope[r] = alibi_slope(row_h(my_first + r), spec.pow2_heads);
        m[r] = -INFINITY, l[r] = 0.0f, kept[r] = 0.0f;
#pragma unroll
        for (int c = 0; c < kMaxDimChunks; ++c) acc[r][c] = 0.0f;
    }
    const bool softmax = spec.normalizer == gpu::NormKind::Softmax;
    float* my_p = sP + warp * R * kN;  // [R][kN]

    const int e0 = p.offsets[qb], e1 = p.offsets[qb + 1];
    for (int e = e0; e < e1; ++e) {
        const int entry = p.entries[e];
        const int kb = entry & ~gpu::kPartialBit;
        const bool partial = entry & gpu::kPartialBit;
        __syncthreads();  // every warp is done with the previous tile (and sQ is written)
        load_rows(sK, ks, k, p.k_stride, kb * kN, kN, p.S, D);
        load_rows(sV, Dv, v, p.v_stride, kb * kN, kN, p.S, Dv);
        __syncthreads();
        if (!active) continue;

        // Scores of keys lane and lane + 32 for each row.
        float s[R][2];
        tile_dots<R>(s, sQ, sK, D, ks, lane, my_first, n_rows);

        // Modifiers, masks, the normalizer's step; P to shared memory.
#pragma unroll
        for (int r = 0; r < R; ++r) {
            float x[2];
            bool keep[2];
#pragma unroll
            for (int c = 0; c < 2; ++c) {
                const int j = kb * kN + lane + 32 * c;
                x[c] = final_score(p, spec, s[r][c], partial, pos[r], j, slope[r], &keep[c]);
                kept[r] += keep[c];
            }
            float pr[2];
            if (softmax) {
                const float m_new = fmaxf(m[r], warp_max(fmaxf(keep[0] ? x[0] : -INFINITY, keep[1] ? x[1] : -INFINITY)));
                const float m_use = m_new == -INFINITY ? 0.0f : m_new;  // nothing kept yet: no NaN from -inf - -inf
                const float alpha = expf(m[r] - m_use);
                m[r] = m_new;
                l[r] *= alpha;
#pragma unroll
                for (int c = 0; c < kMaxDimChunks; ++c) acc[r][c] *= alpha;
#pragma unroll
                for (int c = 0; c < 2; ++c) pr[c] = keep[c] ? expf(x[c] - m_use) : 0.0f;
            } else if (spec.normalizer == gpu::NormKind::Sigmoid) {
#pragma unroll
                for (int c = 0; c < 2; ++c) pr[c] = keep[c] ? 1.0f / (1.0f + expf(-(x[c] + spec.norm_bias))) : 0.0f;
            } else {
#pragma unroll
                for (int c = 0; c < 2; ++c) pr[c] = keep[c] ? fmaxf(x[c], 0.0f) : 0.0f;
            }
            l[r] += pr[0] + pr[1];
            my_p[r * kN + lane] = pr[0];
            my_p[r * kN + lane + 32] = pr[1];
        }
        __syncwarp();

        // P·V: lane (lane_d, lane_g) takes the keys of its group for its dims.
        for (int key = lane_g; key < kN; key += G) {
            float pk[R];
#pragma unroll
            for (int r = 0; r < R; ++r) pk[r] = my_p[r * kN + key];
            const float* vr = sV + key * Dv + lane_d;
#pragma unroll
            for (int c = 0; c < kMaxDimChunks; ++c) {
                if (c < n_chunks) {
                    const float vv = lane_d + c * W < Dv ? vr[c * W] : 0.0f;
#pragma unroll
                    for (int r = 0; r < R; ++r) acc[r][c] = fmaf(pk[r], vv, acc[r][c]);
                }
            }
        }
        __syncwarp();  // P is read before the next tile's rows overwrite it
    }
    if (!active) return;

    // The row ends: lanes' partial sums, the key groups' partial outputs, out and lse.
#pragma unroll
    for (int r = 0; r < R; ++r) {
        const float sum = warp_sum(l[r]), count = warp_sum(kept[r]);
#pragma unroll
        for (int c = 0; c < kMaxDimChunks; ++c)
            for (int off = W; off < 32; off <<= 1) acc[r][c] += __shfl_xor_sync(0xffffffffu, acc[r][c], off);
        if (my_first + r >= n_rows) continue;
        const int t = row_t(my_first + r), h = row_h(my_first + r);
        float factor = 0.0f, lse = -INFINITY;
        if (count > 0.0f) {
            if (softmax) {
                lse = m[r] + logf(sum);  // sum >= 1: the max key contributes e^0
                if (spec.has_sinks) {
                    const float sink = p.sinks[h] + logf(float(spec.has_sinks));
                    const float hi = fmaxf(lse, sink);
                    lse = hi + log1pf(expf(fminf(lse, sink) - hi));
                }
                factor = expf(m[r] - lse);
            } else if (spec.normalizer == gpu::NormKind::Sigmoid) {
                factor = 1.0f;
                lse = logf(sum);  // log 0 = -inf when every σ underflowed, as in the reference
            } else {
                factor = 1.0f / count;
                lse = logf(sum / count);
            }
        }
        float* o = p.out + b * p.out_bstride + int64_t(t) * p.out_stride + int64_t(h) * Dv;
        if (lane_g == 0) {
#pragma unroll
            for (int c = 0; c < kMaxDimChunks; ++c)
                if (c < n_chunks && lane_d + c * W < Dv) o[lane_d + c * W] = acc[r][c] * factor;
        }
        if (p.lse && lane == 0) p.lse[(int64_t(b) * p.T + t) * p.H + h] = lse;
    }
}

template <typename Elem, int R>
void launch_rows(const AttentionParams& p, const gpu::Spec& spec, int64_t n_qblocks, int n_kv, int chunks,
                 cudaStream_t stream) {
    // Opt in to the largest tile set (D = Dv = 256) once; smaller dims just use less.
    static const bool configured = [] {
        ATTNLAB_CUDA_CHECK(cudaFuncSetAttribute(attention_general_kernel<Elem, R>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                                int(general_smem_bytes(kMaxDim, kMaxDim, R))));
        return true;
    }();
    (void)configured;
    const dim3 grid(unsigned(n_qblocks), unsigned(n_kv * chunks), unsigned(p.B));
    attention_general_kernel<Elem, R><<<grid, kThreads, general_smem_bytes(p.D, p.Dv, R), stream>>>(p, spec, chunks);
    ATTNLAB_CUDA_CHECK_LAUNCH("attention_general_kernel");
}

}  // namespace

template <typename Elem>
void launch_general(const AttentionParams& p, const gpu::Spec& spec, int64_t n_qblocks, cudaStream_t stream) {
    ATTNLAB_CHECK(p.D >= 1 && p.D <= kMaxDim && p.Dv >= 1 && p.Dv <= kMaxDim, NotSupported,
                  "[cuda] head dims D={} Dv={}: the GPU runs 1..{}", p.D, p.Dv, kMaxDim);
    const int kv_first = p.head_begin / p.group, kv_last = (p.head_end - 1) / p.group;
    const int n_kv = kv_last - kv_first + 1;
    const auto [R, chunks] = row_split(p);
    ATTNLAB_CHECK(int64_t(n_kv) * chunks <= 65535 && n_qblocks < (int64_t(1) << 31), NotSupported,
                  "[cuda] {} kv heads × {} row chunks exceed the general kernel's grid", n_kv, chunks);
    if (R == 1) launch_rows<Elem, 1>(p, spec, n_qblocks, n_kv, chunks, stream);
    else if (R == 2) launch_rows<Elem, 2>(p, spec, n_qblocks, n_kv, chunks, stream);
    else launch_rows<Elem, 4>(p, spec, n_qblocks, n_kv, chunks, stream);
}

template void launch_general<float>(const AttentionParams&, const gpu::Spec&, int64_t, cudaStream_t);
template void launch_general<__nv_bfloat16>(const AttentionParams&, const gpu::Spec&, int64_t, cudaStream_t);
template void launch_general<__half>(const AttentionParams&, const gpu::Spec&, int64_t, cudaStream_t);

}  // namespace attnlab::cuda
