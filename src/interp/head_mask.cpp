// Uniform-attention head masking through the query hook (see head_mask.h).
#include <attnlab/head_mask.h>

#include <attnlab/error.h>

#include <algorithm>
#include <fmt/format.h>

namespace attnlab {

QueryZeroHook::QueryZeroHook(const std::vector<HeadRef>& heads, int64_t n_layer, int64_t n_head, const char* where) {
    for (const HeadRef& h : heads) {
        ATTNLAB_CHECK(h.layer >= 0 && h.layer < n_layer && h.head >= 0 && h.head < n_head, InvalidArgument,
                      "[{}] head {}:{} is outside the model's {} layers x {} heads", where, h.layer, h.head, n_layer,
                      n_head);
        heads_by_point_[fmt::format("blocks.{}.attn.hook_q", h.layer)].push_back(h.head);
    }
}

bool QueryZeroHook::wants(const std::string& name) const { return heads_by_point_.count(name) > 0; }

void QueryZeroHook::on(const std::string& name, Tensor& q) {  // (T, H, D)
    const int64_t T = q.size(0), H = q.size(1), D = q.size(2);
    float* data = q.data<float>();
    for (int64_t h : heads_by_point_.at(name))
        for (int64_t t = 0; t < T; ++t) std::fill_n(data + (t * H + h) * D, D, 0.0f);
}

}  // namespace attnlab
