// Token sequences for probes from a safetensors `input_ids` tensor.
#include <attnlab/error.h>
#include <attnlab/probes.h>
#include <attnlab/safetensors.h>

namespace attnlab {

std::vector<std::vector<int32_t>> load_input_ids(const std::string& file) {
    const SafetensorsFile st = load_safetensors(file);
    auto it = st.tensors.find("input_ids");
    ATTNLAB_CHECK(it != st.tensors.end(), FormatError, "[probe] {} has no tensor `input_ids`", file);
    const Tensor ids = it->second.contiguous();
    ATTNLAB_CHECK((ids.dim() == 1 || ids.dim() == 2) && (ids.dtype() == DType::I64 || ids.dtype() == DType::I32),
                  FormatError, "[probe] {}: input_ids must be (N, T) or (T) of i64 or i32, got {} {}", file,
                  dtype_name(ids.dtype()), ids.shape_string());
    const int64_t N = ids.dim() == 2 ? ids.size(0) : 1, T = ids.size(ids.dim() - 1);
    ATTNLAB_CHECK(N > 0 && T > 0, FormatError, "[probe] {}: input_ids is empty", file);
    std::vector<std::vector<int32_t>> sequences(static_cast<size_t>(N));
    for (int64_t n = 0; n < N; ++n)
        for (int64_t t = 0; t < T; ++t) {
            const int64_t id = ids.dtype() == DType::I64 ? ids.data<int64_t>()[n * T + t] : ids.data<int32_t>()[n * T + t];
            ATTNLAB_CHECK(id >= 0 && id <= INT32_MAX, FormatError, "[probe] {}: input_ids[{}, {}] = {} is not a token id",
                          file, n, t, id);
            sequences[n].push_back(static_cast<int32_t>(id));
        }
    return sequences;
}

}  // namespace attnlab
