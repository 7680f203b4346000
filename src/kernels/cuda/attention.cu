// The GPU attention operator's entry points (include/attnlab/cuda.h): the host plan
// (src/attention/cuda_plan.cpp) uploaded once, then one launch per run — the prefill kernel
// for query blocks, or the split-KV decode kernel and its merge for few query rows, or the
// general kernel (attention_general.cu) for whatever the tensor-core kernels do not run.
#include "kernels/cuda/attention_common.cuh"
#include "kernels/cuda/attention_hopper.cuh"
#include "kernels/cuda/cuda_util.cuh"

#include <attnlab/attention.h>
#include <attnlab/cuda.h>

#include <algorithm>

namespace attnlab {

bool cuda_available() {
    int count = 0;
    return cudaGetDeviceCount(&count) == cudaSuccess && count > 0;
}

struct CudaAttentionPlan::Impl {
    gpu::HostPlan host;
    DType dtype = DType::BF16;
    cuda::DeviceBuffer<int32_t> offsets, entries, order, positions, segments;
    cuda::DeviceBuffer<float> sinks, ws_out, ws_lse;
    cuda::DeviceBuffer<uint8_t> keep_tables;
    int32_t splits = 1;
    std::shared_ptr<cuda::StatsDevice> stats;  // AttentionStats asked for at planning (attention_stats.cu)
};

namespace {

template <typename T>
cuda::DeviceBuffer<T> upload(const std::vector<T>& host) {
    cuda::DeviceBuffer<T> buf(std::max<size_t>(host.size(), 1));
    buf.upload(host.data(), host.size());
    return buf;
}

// Calls fn.template operator()<Elem, D>() for the tensor-core kernels' input type (bf16 or
// f16) and head dim (64, 128 or 256): the one place the run-time choice becomes template
// arguments.
template <typename Fn>
void with_tensor_core_types(DType dtype, int64_t D, Fn&& fn) {
    const auto by_dim = [&]<typename Elem>() {
        if (D == 64) fn.template operator()<Elem, 64>();
        else if (D == 128) fn.template operator()<Elem, 128>();
        else fn.template operator()<Elem, 256>();
    };
    if (dtype == DType::BF16) by_dim.template operator()<__nv_bfloat16>();
    else by_dim.template operator()<__half>();
}

// Key splits for decode: as many CTAs as fit on the GPU at once, at least one kept block
// each. One full wave matters: at S = 64k, 49 splits (one wave) ran in 0.091 ms where 66
// splits (1.33 waves) took 0.130 ms.
int32_t decode_splits(const gpu::HostPlan& h, DType dtype, int64_t ctas_per_split) {
    int device = 0, sms = 0;
    ATTNLAB_CUDA_CHECK(cudaGetDevice(&device));
    ATTNLAB_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
    int per_sm = 0;
    with_tensor_core_types(dtype, h.D, [&]<typename Elem, int D>() { per_sm = cuda::decode_ctas_per_sm<Elem, D>(); });
    const int64_t kept = h.offsets[1] - h.offsets[0];
    const int64_t want = int64_t(std::max(per_sm, 1)) * sms / ctas_per_split;
    return int32_t(std::clamp<int64_t>(want, 1, std::max<int64_t>(kept, 1)));
}

}  // namespace

CudaAttentionPlan::CudaAttentionPlan(const AttentionSpec& spec, const AttentionInputs& in, const AttentionOutputs& out)
    : impl_(std::make_unique<Impl>()) {
    Impl& m = *impl_;
    m.host = gpu::build_host_plan(spec, in, out);
    m.dtype = in.dtype;
    m.offsets = upload(m.host.offsets);
    m.entries = upload(m.host.entries);
    m.order = upload(m.host.order);
    m.positions = upload(m.host.positions);
    m.segments = upload(m.host.segments);
    m.sinks = upload(m.host.sinks);
    m.keep_tables = upload(m.host.keep_tables);
    if (out.stats) m.stats = cuda::make_stats_device(m.host, *out.stats);
    if (m.host.decode && m.host.T > 0) {
        const int64_t group = m.host.H / m.host.Hkv;
        const int64_t kv_heads = (m.host.head_end - 1) / group - m.host.head_begin / group + 1;
        m.splits = decode_splits(m.host, in.dtype, kv_heads * m.host.B);
        const size_t rows = size_t(m.host.B * m.host.T * m.host.H);
        m.ws_out = cuda::DeviceBuffer<float>(size_t(m.splits) * rows * size_t(m.host.D));
        m.ws_lse = cuda::DeviceBuffer<float>(size_t(m.splits) * rows);
    }
}

CudaAttentionPlan::~CudaAttentionPlan() = default;
CudaAttentionPlan::CudaAttentionPlan(CudaAttentionPlan&&) noexcept = default;
CudaAttentionPlan& CudaAttentionPlan::operator=(CudaAttentionPlan&&) noexcept = default;

CudaAttentionPlan::Stats CudaAttentionPlan::stats() const {
    const gpu::HostPlan& h = impl_->host;
    return {h.n_qblocks, h.n_kblocks, h.kept_blocks, h.partial_blocks, h.kept_flops(), h.decode, impl_->splits, h.general};
}

void CudaAttentionPlan::run(const AttentionInputs& in, const AttentionOutputs& out, CUstream_st* stream) const {
    const Impl& m = *impl_;
    const gpu::HostPlan& h = m.host;
    ATTNLAB_CHECK(in.dtype == m.dtype && in.B == h.B && in.T == h.T && in.S == h.S && in.H == h.H && in.Hkv == h.Hkv &&
                      in.D == h.D && in.Dv == h.Dv,
                  InvalidArgument, "[cuda] run(): shapes differ from the plan's (B={} T={} S={} H={} Hkv={} D={} Dv={})",
                  h.B, h.T, h.S, h.H, h.Hkv, h.D, h.Dv);
    ATTNLAB_CHECK(in.q && in.k && in.v && out.out, InvalidArgument, "[cuda] run(): q, k, v and out are required");
    if (h.T == 0) return;
    cuda::AttentionParams p;
    p.q = in.q, p.k = in.k, p.v = in.v;
    p.q_stride = in.q_stride, p.k_stride = in.k_stride, p.v_stride = in.v_stride;
    p.q_bstride = in.q_batch_stride, p.k_bstride = in.k_batch_stride, p.v_bstride = in.v_batch_stride;
    p.out = out.out, p.out_stride = out.out_stride, p.out_bstride = out.out_batch_stride, p.lse = out.lse;
    p.B = int32_t(h.B), p.T = int32_t(h.T), p.S = int32_t(h.S), p.H = int32_t(h.H), p.Hkv = int32_t(h.Hkv);
    p.group = int32_t(h.H / h.Hkv), p.head_begin = int32_t(h.head_begin), p.head_end = int32_t(h.head_end);
    p.offsets = m.offsets.get(), p.entries = m.entries.get(), p.order = m.order.get();
    p.positions = m.positions.get();
    p.segments = h.segments.empty() ? nullptr : m.segments.get();
    p.sinks = h.sinks.empty() ? nullptr : m.sinks.get();
    p.splits = m.splits;
    p.ws_out = m.ws_out.get(), p.ws_lse = m.ws_lse.get();
    p.keep_tables = h.keep_tables.empty() ? nullptr : m.keep_tables.get();
    p.D = int32_t(h.D), p.Dv = int32_t(h.Dv);
    if (out.stats) {  // the statistics pass reads every row's lse
        ATTNLAB_CHECK(m.stats, InvalidArgument, "[cuda] run(): statistics asked for, but the plan was built without them");
        if (!p.lse) p.lse = cuda::stats_lse_workspace(*m.stats);
    }

    const bool bf16 = m.dtype == DType::BF16;
    const cudaStream_t s = stream;
    if (h.general) {
        const int64_t n = h.n_qblocks;
        if (m.dtype == DType::F32) cuda::launch_general<float>(p, h.spec, n, s);
        else if (bf16) cuda::launch_general<__nv_bfloat16>(p, h.spec, n, s);
        else cuda::launch_general<__half>(p, h.spec, n, s);
    } else if (h.decode) {
        with_tensor_core_types(m.dtype, h.D, [&]<typename Elem, int D>() { cuda::launch_decode<Elem, D>(p, h.spec, s); });
    } else {
        // D ∈ {64, 128}: the wgmma kernel (attention_hopper.cu) unless ATTNLAB_CUDA_KERNEL=mma or
        // the layout does not suit its copy engine; then, and for D = 256, the mma.sync kernel.
        with_tensor_core_types(m.dtype, h.D, [&]<typename Elem, int D>() {
            if constexpr (D == 256) cuda::launch_prefill<Elem, D>(p, h.spec, h.n_qblocks, s);
            else cuda::launch_prefill_dispatch<Elem, D>(p, h.spec, h.n_qblocks, s);
        });
    }
    if (out.stats) {
        if (m.dtype == DType::F32) cuda::launch_stats<float>(*m.stats, p, h.spec, h.n_qblocks, *out.stats, s);
        else if (bf16) cuda::launch_stats<__nv_bfloat16>(*m.stats, p, h.spec, h.n_qblocks, *out.stats, s);
        else cuda::launch_stats<__half>(*m.stats, p, h.spec, h.n_qblocks, *out.stats, s);
    }
}

void attention_cuda(const AttentionSpec& spec, const AttentionInputs& in, const AttentionOutputs& out, CUstream_st* stream) {
    const CudaAttentionPlan plan(spec, in, out);
    plan.run(in, out, stream);
    // The plan's device buffers are freed when it goes out of scope; the kernels must be done
    // reading them first.
    ATTNLAB_CUDA_CHECK(cudaStreamSynchronize(stream));
}

}  // namespace attnlab
