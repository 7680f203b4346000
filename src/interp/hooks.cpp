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

void HookChain::begin_forward(int64_t pos0, int64_t T) {
    for (Hooks* h : chain_) h->begin_forward(pos0, T);
}

void HookChain::begin_sequence() {
    for (Hooks* h : chain_) h->begin_sequence();
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
    std::optional<AttentionStatsRequest> merged;
    for (Hooks* h : chain_) {
        std::optional<AttentionStatsRequest> request = h->attention_stats(layer, S);
        if (!request) continue;
        if (!merged) {
            merged = std::move(request);
            continue;
        }
        AttentionStatsRequest& m = *merged;
        m.mass |= request->mass;
        m.entropy |= request->entropy;
        m.sum_sq |= request->sum_sq;
        m.top |= request->top;
        m.column_sum |= request->column_sum;
        // Lists: one hook's list, or the same list from several.
        auto take = [&](auto& mine, auto& theirs, const char* what) {
            if (theirs.empty()) return;
            ATTNLAB_CHECK(mine.empty() || mine == theirs, InvalidArgument,
                          "[hooks] layer {}: two hooks ask for statistics on different {} lists", layer, what);
            mine = std::move(theirs);
        };
        take(m.keys, request->keys, "key");
        take(m.offsets, request->offsets, "offset");
        take(m.segments, request->segments, "segment");
        ATTNLAB_CHECK(m.n_segments == 0 || request->n_segments == 0 || m.n_segments == request->n_segments,
                      InvalidArgument, "[hooks] layer {}: two hooks ask for different segment counts", layer);
        m.n_segments = std::max(m.n_segments, request->n_segments);
        ATTNLAB_CHECK(m.n_distance_bins == 0 || request->n_distance_bins == 0 ||
                          m.n_distance_bins == request->n_distance_bins,
                      InvalidArgument, "[hooks] layer {}: two hooks ask for different distance bin counts", layer);
        m.n_distance_bins = std::max(m.n_distance_bins, request->n_distance_bins);
    }
    return merged;
}

bool HookChain::rewrites_attention(int64_t layer) const {
    return std::any_of(chain_.begin(), chain_.end(), [&](Hooks* h) { return h->rewrites_attention(layer); });
}

void HookChain::rewrite_attention(int64_t layer, std::vector<AttentionSpec>& head_specs) {
    for (Hooks* h : chain_)
        if (h->rewrites_attention(layer)) h->rewrite_attention(layer, head_specs);
}

bool HookChain::edits_attention(int64_t layer) const {
    return std::any_of(chain_.begin(), chain_.end(), [&](Hooks* h) { return h->edits_attention(layer); });
}

void HookChain::edit_attention(AttentionEditContext& ctx) {
    for (Hooks* h : chain_)
        if (h->edits_attention(ctx.layer)) h->edit_attention(ctx);
}

void HookChain::on_attention_stats(const LayerAttentionStats& stats) {
    for (Hooks* h : chain_) h->on_attention_stats(stats);
}

bool HookChain::remaps_positions() const {
    return std::any_of(chain_.begin(), chain_.end(), [](Hooks* h) { return h->remaps_positions(); });
}

void HookChain::remap_positions(int64_t pos0, std::vector<int64_t>& positions) {
    for (Hooks* h : chain_)
        if (h->remaps_positions()) h->remap_positions(pos0, positions);
}

bool HookChain::drops_tokens(int64_t layer) const {
    return std::any_of(chain_.begin(), chain_.end(), [&](Hooks* h) { return h->drops_tokens(layer); });
}

std::vector<int64_t> HookChain::drop_tokens(int64_t layer, const std::vector<int64_t>& positions) {
    std::vector<int64_t> all;
    for (Hooks* h : chain_)
        if (h->drops_tokens(layer)) {
            const std::vector<int64_t> mine = h->drop_tokens(layer, positions);
            all.insert(all.end(), mine.begin(), mine.end());
        }
    std::sort(all.begin(), all.end());
    all.erase(std::unique(all.begin(), all.end()), all.end());
    return all;
}

}  // namespace attnlab
