// drop_tokens: token dropping in the middle of the network that keeps position ids (SGL, FastV;
// papers-multimodal §11). Before layer K the chosen tokens leave the residual stream: later
// layers neither compute them nor attend to them, and the kept tokens keep their RoPE positions
// (their cache rows are compacted; see Hooks::drop_tokens). The result equals masking the
// dropped keys in layers K.. (tests/interp/intervention_test.cpp checks exactly that), at the
// cost of the kept rows only.
//
// Fields: "layer" K >= 1; the candidate tokens as "positions" ("A:B", half-open sequence
// positions) or "segment" (a name); optional "keep" f in [0, 1): keep the ⌈f·n⌉ candidates that
// received the most attention in layer K−1 (FastV's ranking: column sums over every query and
// head of that layer, each divided by the number of queries that can see the key), drop the
// rest; without it every candidate is dropped. Only calls that hold candidates drop anything
// (the prompt's prefill); later decode steps run on the compacted cache.
#include "interp/interventions/intervention_util.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace attnlab::intervention_util {

namespace {

class DropTokens final : public Intervention {
public:
    DropTokens(int64_t layer, std::vector<int64_t> candidates, double keep, std::string what)
        : layer_(layer), candidates_(std::move(candidates)), keep_(keep), what_(std::move(what)) {}

    std::string describe() const override {
        return keep_ > 0 ? fmt::format("drop_tokens before layer {}: {} keeping {} by attention received", layer_, what_, keep_)
                         : fmt::format("drop_tokens before layer {}: {}", layer_, what_);
    }
    void begin_sequence() override { received_.clear(); }

    bool wants(const std::string&) const override { return false; }
    void on(const std::string&, Tensor&) override {}

    // FastV's ranking reads the column sums of layer K−1.
    std::optional<AttentionStatsRequest> attention_stats(int64_t layer, int64_t) const override {
        if (keep_ <= 0 || layer != layer_ - 1) return std::nullopt;
        AttentionStatsRequest r;
        r.column_sum = true;
        return r;
    }
    void on_attention_stats(const LayerAttentionStats& st) override {
        if (keep_ <= 0 || st.layer != layer_ - 1 || !st.column_sum.defined()) return;
        // received_[k]: mean over heads and over the queries of this call that can see k.
        const float* col = st.column_sum.data<float>();  // (H, S)
        received_.assign(static_cast<size_t>(st.S), 0.0);
        for (int64_t k = 0; k < st.S; ++k) {
            const int64_t seeing = st.pos0 + st.T - std::max(k, st.pos0);
            if (seeing <= 0) continue;
            double sum = 0;
            for (int64_t h = 0; h < st.H; ++h) sum += col[h * st.S + k];
            received_[k] = sum / double(st.H * seeing);
        }
    }

    bool drops_tokens(int64_t layer) const override { return layer == layer_; }
    std::vector<int64_t> drop_tokens(int64_t, const std::vector<int64_t>& positions) override {
        std::vector<int64_t> rows;  // candidate rows of this call
        for (size_t r = 0; r < positions.size(); ++r)
            if (std::binary_search(candidates_.begin(), candidates_.end(), positions[r])) rows.push_back(static_cast<int64_t>(r));
        if (rows.empty() || keep_ <= 0) return rows;
        // Keep the ⌈keep·n⌉ most attended (rows before layer K are positions, so the column
        // index of a row is its position); ties keep the earlier token.
        const size_t n_keep = static_cast<size_t>(std::ceil(keep_ * double(rows.size())));
        std::vector<int64_t> order = rows;
        std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
            return mass(positions[a]) > mass(positions[b]);
        });
        std::vector<int64_t> drop(order.begin() + static_cast<std::ptrdiff_t>(std::min(n_keep, order.size())), order.end());
        std::sort(drop.begin(), drop.end());
        return drop;
    }

private:
    double mass(int64_t position) const {
        return position < static_cast<int64_t>(received_.size()) ? received_[position] : 0.0;
    }

    int64_t layer_;
    std::vector<int64_t> candidates_;  // ascending sequence positions
    double keep_;
    std::string what_;
    std::vector<double> received_;  // (S) attention received in layer K−1, this sequence
};

}  // namespace

std::unique_ptr<Intervention> make_drop_tokens(const Fields& f) {
    f.only({"layer", "positions", "segment", "keep"});
    const ModelConfig& c = f.model().config();
    const int64_t layer = f.integer("layer", std::nullopt, 1);
    ATTNLAB_CHECK(layer < c.n_layer, InvalidArgument, "[{}] \"layer\" {} is outside the model's {} layers", f.where(), layer,
                  c.n_layer);
    ATTNLAB_CHECK(f.has("positions") != f.has("segment"), InvalidArgument,
                  "[{}] give the tokens as \"positions\" (\"A:B\") or \"segment\" (a name), one of them", f.where());
    std::vector<int64_t> candidates;
    std::string what;
    const int64_t limit = c.max_position_embeddings > 0 ? c.max_position_embeddings : (int64_t(1) << 20);
    if (f.has("segment")) {
        f.segment_id("segment");  // (checks the name)
        what = "segment " + f.string("segment");
        candidates = f.env().segments->positions(f.string("segment"), std::max<int64_t>(limit, 1 << 20));
    } else {
        const TokenSegments parsed = TokenSegments::parse({"tokens=" + f.string("positions")}, f.where().c_str());
        what = "positions " + f.string("positions");
        for (const TokenRange& r : parsed.ranges("tokens", std::max<int64_t>(limit, 1 << 20)))
            for (int64_t p = r.begin; p < r.end; ++p) candidates.push_back(p);
    }
    ATTNLAB_CHECK(!candidates.empty(), InvalidArgument, "[{}] no tokens to drop", f.where());
    std::sort(candidates.begin(), candidates.end());
    const double keep = f.has("keep") ? f.number_in("keep", 0.0, 1.0) : 0.0;
    ATTNLAB_CHECK(keep < 1.0, InvalidArgument, "[{}] \"keep\" 1 keeps every token: nothing to do", f.where());
    return std::make_unique<DropTokens>(layer, std::move(candidates), keep, what);
}

}  // namespace attnlab::intervention_util
