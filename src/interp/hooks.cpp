// ActivationCache and HookChain.
#include <attnlab/error.h>
#include <attnlab/hooks.h>

#include <algorithm>

namespace attnlab {

ActivationCache::ActivationCache(const std::string& name_regex) {
    try {
        regex_ = std::make_unique<std::regex>(name_regex, std::regex::ECMAScript);
    } catch (const std::regex_error& e) {
        throw InvalidArgument(fmt::format("[hooks] invalid hook regex '{}': {}", name_regex, e.what()));
    }
}

ActivationCache::ActivationCache(std::vector<std::string> names) : names_(std::move(names)) {}

bool ActivationCache::wants(const std::string& name) const {
    if (regex_) return std::regex_match(name, *regex_);
    return std::find(names_.begin(), names_.end(), name) != names_.end();
}

void ActivationCache::keep_positions(int64_t begin, int64_t end) {
    ATTNLAB_CHECK(begin >= 0 && end > begin, InvalidArgument, "[hooks] invalid position slice [{}, {})", begin, end);
    position_begin_ = begin;
    position_end_ = end;
}

void ActivationCache::on(const std::string& name, Tensor& value) {
    Tensor kept = value;
    if (position_end_ >= 0 && value.dim() >= 1) {
        // (H, T, S) points carry the tokens on dim 1; the others on dim 0.
        const bool heads_first = name.ends_with("hook_pattern") || name.ends_with("hook_attn_scores");
        const int axis = heads_first ? 1 : 0;
        const int64_t n = value.size(axis);
        const int64_t b = std::min(position_begin_, n), e = std::min(position_end_, n);
        kept = value.slice(axis, b, e);
    }
    entries_[name] = kept.to(DType::F32).clone();
}

const Tensor& ActivationCache::at(const std::string& name) const {
    auto it = entries_.find(name);
    ATTNLAB_CHECK(it != entries_.end(), InvalidArgument, "[hooks] no cached activation '{}'", name);
    return it->second;
}

bool HookChain::wants(const std::string& name) const {
    for (Hooks* h : chain_)
        if (h->wants(name)) return true;
    return false;
}

void HookChain::on(const std::string& name, Tensor& value) {
    for (Hooks* h : chain_)
        if (h->wants(name)) h->on(name, value);
}

std::optional<AttentionStatsRequest> HookChain::attention_stats(int64_t layer, int64_t S) const {
    for (Hooks* h : chain_)
        if (auto request = h->attention_stats(layer, S)) return request;
    return std::nullopt;
}

void HookChain::on_attention_stats(const LayerAttentionStats& stats) {
    for (Hooks* h : chain_) h->on_attention_stats(stats);
}

}  // namespace attnlab
