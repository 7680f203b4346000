// CudaModel's API apart from the GPU: what does not depend on the backend (always compiled),
// and, without CUDA (ATTNLAB_CUDA=OFF or no nvcc), the rest of include/attnlab/cuda_model.h's
// declarations, so callers need no #ifdef and using a model says why it cannot run. With CUDA
// the real ones are in src/kernels/cuda/model_forward.cu.
#include <attnlab/cuda_model.h>
#include <attnlab/error.h>

namespace attnlab {

void CudaKVCache::truncate(int64_t n) {
    ATTNLAB_CHECK(n >= 0 && n <= n_past_, InvalidArgument, "[kv-cache] cannot truncate {} positions to {}", n_past_, n);
    n_past_ = n;
}

}  // namespace attnlab

#ifndef ATTNLAB_HAVE_CUDA

namespace attnlab {

namespace {
[[noreturn]] void no_cuda() { throw NotSupported("[cuda] attnlab was built without CUDA (ATTNLAB_CUDA=OFF or no nvcc)"); }
}  // namespace

struct CudaKVCache::Impl {};
CudaKVCache::CudaKVCache() = default;
CudaKVCache::~CudaKVCache() = default;
CudaKVCache::CudaKVCache(CudaKVCache&&) noexcept = default;
CudaKVCache& CudaKVCache::operator=(CudaKVCache&&) noexcept = default;
size_t CudaKVCache::bytes() const { return 0; }

struct CudaModel::Impl {};
CudaModel::CudaModel(const Model& model, const CudaModelOptions& options) : model_(model), options_(options) { no_cuda(); }
CudaModel::~CudaModel() = default;
size_t CudaModel::weight_bytes() const { no_cuda(); }
void CudaModel::synchronize() const { no_cuda(); }
CudaModel::CallTiming CudaModel::last_call_timing() const { no_cuda(); }
Tensor CudaModel::forward(std::span<const int32_t>, CudaKVCache&, const ForwardOptions&) const { no_cuda(); }
int32_t CudaModel::forward_greedy(std::span<const int32_t>, CudaKVCache&, const ForwardOptions&) const { no_cuda(); }
int32_t CudaModel::forward_sample(std::span<const int32_t>, CudaKVCache&, const SamplingParams&, std::span<const int32_t>,
                                  double, const ForwardOptions&) const {
    no_cuda();
}
CudaModel::RunResult CudaModel::run(std::span<const int32_t>, CudaKVCache&, const ForwardOptions&,
                                    const TokenPick*) const {
    no_cuda();
}

}  // namespace attnlab
#endif
