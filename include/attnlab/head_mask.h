// Head masking by "uniform attention" (papers-analysis §5, as the retrieval-head paper masks
// heads): a masked head's query is set to 0 at blocks.l.attn.hook_q, so every score is 0 and the
// head attends uniformly to its visible prefix (after RoPE a zero query stays zero; the
// mechanisms of the layer's spec — masks, windows — still decide what is visible). This is not
// a zeroed head output: the head still writes the mean of its visible values.
// Used by the retrieval-heads probe's masking runs; chain it with other hooks (HookChain) for
// any intervention experiment.
#pragma once

#include <attnlab/hooks.h>

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace attnlab {

struct HeadRef {
    int64_t layer = 0, head = 0;
    auto operator<=>(const HeadRef&) const = default;
};

class QueryZeroHook : public Hooks {
public:
    // Throws InvalidArgument (prefixed with `where`) for a head outside (n_layer, n_head).
    QueryZeroHook(const std::vector<HeadRef>& heads, int64_t n_layer, int64_t n_head, const char* where);
    bool wants(const std::string& name) const override;
    void on(const std::string& name, Tensor& q) override;  // q (T, H, D), zeroed in place

private:
    std::map<std::string, std::vector<int64_t>> heads_by_point_;  // "blocks.l.attn.hook_q" -> heads
};

}  // namespace attnlab
