// Pieces the residual-stream interventions (steer, scale_mlp, replace) share: which hook points
// they may act on, which token positions they touch, and where a forward pass's rows sit in the
// sequence.
//
// Tensor hooks see only the rows of the current call (T rows: the prompt in prefill, one token per
// decode step), not their positions; Hooks::begin_forward says where the call's rows sit.
#pragma once

#include "interp/interventions/intervention_util.h"

#include <regex>
#include <set>
#include <string>
#include <vector>

namespace attnlab::intervention_util {

// Token-major hook points ((T, ...) with the token axis first) that a residual intervention may
// act on, for layers < n_layer. `width_c` true: only the (T, C) residual-width points.
inline bool is_token_major_point(const std::string& name, int64_t n_layer, bool width_c) {
    static const std::regex layer_c(R"(blocks\.(\d+)\.(hook_resid_pre|hook_resid_mid|hook_resid_post|hook_attn_out|hook_mlp_out|ln1\.hook_normalized|ln2\.hook_normalized))");
    static const std::regex layer_other(R"(blocks\.(\d+)\.(attn\.hook_(q|k|v|rot_q|rot_k|z|result|lse)|mlp\.hook_(pre|pre_linear|post)))");
    if (name == "hook_embed" || name == "hook_pos_embed" || name == "ln_final.hook_normalized") return true;
    if (!width_c && name == "unembed.hook_out") return true;
    std::smatch m;
    if (std::regex_match(name, m, layer_c) || (!width_c && std::regex_match(name, m, layer_other)))
        return std::stoll(m[1].str()) < n_layer;
    return false;
}

// "2", "0-3,5", "*" -> ascending layer indices in [0, n_layer).
inline std::vector<int64_t> parse_layers(const std::string& text, int64_t n_layer, const std::string& where) {
    std::set<int64_t> layers;
    size_t start = 0;
    while (start <= text.size()) {
        const size_t comma = std::min(text.find(',', start), text.size());
        const std::string item = text.substr(start, comma - start);
        int64_t lo = 0, hi = n_layer - 1;
        if (item != "*") {
            const size_t dash = item.find('-');
            try {
                size_t used = 0;
                lo = std::stoll(item.substr(0, dash), &used);
                ATTNLAB_CHECK(used == item.substr(0, dash).size(), InvalidArgument, "");
                hi = lo;
                if (dash != std::string::npos) {
                    hi = std::stoll(item.substr(dash + 1), &used);
                    ATTNLAB_CHECK(used == item.size() - dash - 1, InvalidArgument, "");
                }
            } catch (const std::exception&) {
                throw InvalidArgument(fmt::format("[{}] bad layer '{}': expected an index, A-B or *", where, item));
            }
        }
        ATTNLAB_CHECK(lo >= 0 && lo <= hi && hi < n_layer, InvalidArgument, "[{}] layer '{}' outside 0..{}", where, item,
                      n_layer - 1);
        for (int64_t l = lo; l <= hi; ++l) layers.insert(l);
        start = comma + 1;
    }
    return {layers.begin(), layers.end()};
}

// The token positions an intervention touches: "positions" items ("all", "A:B", "A:", ":B",
// "generated" = every position after the prompt, i.e. after the first forward pass of the
// sequence), and/or "segment" (a named range of the environment's segments). Union of all.
class PositionSelection {
public:
    static PositionSelection from_fields(const Fields& f, const std::string& fallback = "all") {
        PositionSelection s;
        const std::string text = f.string("positions", f.has("segment") ? std::string() : fallback);
        size_t start = 0;
        while (!text.empty() && start <= text.size()) {
            const size_t comma = std::min(text.find(',', start), text.size());
            const std::string item = text.substr(start, comma - start);
            if (item == "all") s.all_ = true;
            else if (item == "generated") s.generated_ = true;
            else s.ranges_.add("positions", TokenSegments::parse({"positions=" + item}, f.where().c_str()).ranges(
                                                "positions", TokenSegments::kOpenEnd)[0]);
            start = comma + 1;
        }
        if (f.has("segment")) {
            s.segment_id_ = f.segment_id("segment");
            s.segments_ = *f.env().segments;
            s.segment_name_ = f.string("segment");
        }
        return s;
    }

    // Which of the positions pos0 .. pos0+T-1 are selected (T entries, 1 = selected), given the
    // end of the prompt (the first forward pass of the sequence; -1 = unknown).
    std::vector<char> mask(int64_t pos0, int64_t T, int64_t prompt_end) const {
        std::vector<char> out(static_cast<size_t>(T), all_ ? 1 : 0);
        if (all_) return out;
        const std::vector<int32_t> range_ids = ranges_.empty() ? std::vector<int32_t>() : ranges_.ids(pos0 + T);
        const std::vector<int32_t> segment_ids = segment_id_ > 0 ? segments_.ids(pos0 + T) : std::vector<int32_t>();
        for (int64_t t = 0; t < T; ++t) {
            const int64_t p = pos0 + t;
            out[t] = (generated_ && prompt_end >= 0 && p >= prompt_end) || (!range_ids.empty() && range_ids[p] != 0) ||
                     (!segment_ids.empty() && segment_ids[p] == segment_id_);
        }
        return out;
    }
    bool all() const { return all_; }
    // The explicit ranges, open ends cut at n.
    std::vector<TokenRange> ranges(int64_t n) const {
        return ranges_.empty() ? std::vector<TokenRange>() : ranges_.ranges("positions", n);
    }
    bool uses_only_ranges() const { return !all_ && !generated_ && segment_id_ == 0; }

    std::string describe() const {
        std::string out;
        auto add = [&](const std::string& item) {
            if (!out.empty()) out += ',';
            out += item;
        };
        if (all_) add("all");
        if (!ranges_.empty())
            for (const TokenRange& r : ranges_.ranges("positions", TokenSegments::kOpenEnd))
                add(fmt::format("{}:{}", r.begin, r.end == TokenSegments::kOpenEnd ? std::string() : std::to_string(r.end)));
        if (generated_) add("generated");
        if (segment_id_ > 0) add("segment " + segment_name_);
        return out;
    }

private:
    bool all_ = false, generated_ = false;
    TokenSegments ranges_;  // one name, "positions"
    int32_t segment_id_ = 0;
    TokenSegments segments_;
    std::string segment_name_;
};

// An intervention that edits selected rows of token-major hook points. Subclasses implement
// edit_row(); this base tracks positions and finds the rows.
class RowIntervention : public Intervention {
public:
    RowIntervention(std::set<std::string> points, PositionSelection positions, std::string where)
        : points_(std::move(points)), positions_(std::move(positions)), where_(std::move(where)) {}

    bool wants(const std::string& name) const override { return points_.count(name) > 0; }

    void begin_forward(int64_t pos0, int64_t T) override {
        pos0_ = pos0;
        call_rows_ = T;
        if (++forwards_ == 1) prompt_end_ = pos0 + T;
    }

    void on(const std::string& name, Tensor& value) override {
        ATTNLAB_CHECK(value.dtype() == DType::F32 && value.is_contiguous() && value.dim() >= 1, InvalidArgument,
                      "[{}] {}: expected a contiguous f32 tensor", where_, name);
        const int64_t T = value.size(0);
        // Rows are positions pos0 .. pos0+T-1 only while no token was dropped mid-network.
        ATTNLAB_CHECK(T == call_rows_, InvalidArgument,
                      "[{}] {} has {} rows for a call of {} tokens: residual interventions cannot follow token dropping",
                      where_, name, T, call_rows_);
        const int64_t width = value.numel() / std::max<int64_t>(T, 1);
        const std::vector<char> selected = positions_.mask(pos0_, T, prompt_end_);
        float* data = value.data<float>();
        for (int64_t t = 0; t < T; ++t)
            if (selected[t]) edit_row(name, data + t * width, width, pos0_ + t);
    }

    void begin_sequence() override {
        forwards_ = 0;
        prompt_end_ = -1;
    }

protected:
    // row (width): one token's row of point `name`, at sequence position `position`; edit in place.
    virtual void edit_row(const std::string& name, float* row, int64_t width, int64_t position) = 0;
    const PositionSelection& positions() const { return positions_; }
    const std::string& where() const { return where_; }

private:
    std::set<std::string> points_;
    PositionSelection positions_;
    std::string where_;
    int64_t pos0_ = 0, call_rows_ = 0, forwards_ = 0;
    int64_t prompt_end_ = -1;  // end of the first forward pass since begin_sequence()
};

}  // namespace attnlab::intervention_util
