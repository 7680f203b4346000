// Which attention spec every layer and head runs: the model's native specs, and the
// user's re-assignments (`--attn`, `--attn-layers`, `--attn-heads` and the library API).
#include <attnlab/error.h>
#include <attnlab/model.h>

#include <charconv>

namespace attnlab {

namespace {

std::string_view trim(std::string_view s) {
    while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
    while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
    return s;
}

int64_t parse_index(std::string_view s, std::string_view what, std::string_view item) {
    s = trim(s);
    int64_t v = -1;
    auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    ATTNLAB_CHECK(ec == std::errc() && ptr == s.data() + s.size() && v >= 0, InvalidArgument,
                  "[attention plan] bad {} '{}' in \"{}\" (expected N, A-B, A- or a comma list)", what, s, item);
    return v;
}

// "3", "0-3" (inclusive), "4-" (to the end), "1,3,5-7": half-open [begin, end) ranges, end -1 = open.
std::vector<std::pair<int64_t, int64_t>> parse_ranges(std::string_view text, std::string_view what,
                                                      std::string_view item) {
    std::vector<std::pair<int64_t, int64_t>> ranges;
    size_t start = 0;
    while (start <= text.size()) {
        size_t comma = text.find(',', start);
        std::string_view part = trim(text.substr(start, comma == std::string_view::npos ? std::string_view::npos : comma - start));
        const size_t dash = part.find('-');
        if (dash == std::string_view::npos) {
            const int64_t a = parse_index(part, what, item);
            ranges.emplace_back(a, a + 1);
        } else {
            const int64_t a = parse_index(part.substr(0, dash), what, item);
            std::string_view rest = trim(part.substr(dash + 1));
            const int64_t b = rest.empty() ? -1 : parse_index(rest, what, item) + 1;
            ATTNLAB_CHECK(b == -1 || b > a, InvalidArgument, "[attention plan] empty {} range '{}' in \"{}\"", what,
                          part, item);
            ranges.emplace_back(a, b);
        }
        if (comma == std::string_view::npos) break;
        start = comma + 1;
    }
    return ranges;
}

// Splits "a;b;c" into non-empty items.
std::vector<std::string_view> split_items(std::string_view text) {
    std::vector<std::string_view> items;
    size_t start = 0;
    while (start <= text.size()) {
        size_t semi = text.find(';', start);
        std::string_view item = trim(text.substr(start, semi == std::string_view::npos ? std::string_view::npos : semi - start));
        if (!item.empty()) items.push_back(item);
        if (semi == std::string_view::npos) break;
        start = semi + 1;
    }
    ATTNLAB_CHECK(!items.empty(), InvalidArgument, "[attention plan] empty assignment list");
    return items;
}

}  // namespace

std::vector<AttentionAssignment> parse_attention_layers(std::string_view text) {
    std::vector<AttentionAssignment> out;
    for (std::string_view item : split_items(text)) {
        const size_t colon = item.find(':');
        ATTNLAB_CHECK(colon != std::string_view::npos, InvalidArgument,
                      "[attention plan] \"{}\" is not LAYERS:SPEC", item);
        const std::string spec(trim(item.substr(colon + 1)));
        for (auto [a, b] : parse_ranges(item.substr(0, colon), "layer", item))
            out.push_back({a, b, 0, -1, spec});
    }
    return out;
}

std::vector<AttentionAssignment> parse_attention_heads(std::string_view text) {
    std::vector<AttentionAssignment> out;
    for (std::string_view item : split_items(text)) {
        const size_t c1 = item.find(':');
        const size_t c2 = c1 == std::string_view::npos ? c1 : item.find(':', c1 + 1);
        ATTNLAB_CHECK(c2 != std::string_view::npos, InvalidArgument,
                      "[attention plan] \"{}\" is not LAYERS:HEADS:SPEC", item);
        const std::string spec(trim(item.substr(c2 + 1)));
        for (auto [la, lb] : parse_ranges(item.substr(0, c1), "layer", item))
            for (auto [ha, hb] : parse_ranges(item.substr(c1 + 1, c2 - c1 - 1), "head", item))
                out.push_back({la, lb, ha, hb, spec});
    }
    return out;
}

AttentionSpec Model::native_attention(int64_t layer) const {
    const ModelConfig& c = config_;
    ATTNLAB_CHECK(layer >= 0 && layer < c.n_layer, InvalidArgument, "[model] layer {} out of range 0..{}", layer,
                  c.n_layer - 1);
    std::string text;
    if (c.attn_softcap > 0) text += fmt::format("softcap(cap={})+", c.attn_softcap);
    text += "causal";
    if (c.layer_window[layer] > 0) text += fmt::format("+window(size={})", c.layer_window[layer]);
    AttentionSpec spec = AttentionSpec::parse(text);
    spec.scale = c.attn_scale;
    if (c.scale_attn_by_inverse_layer_idx)  // GPT-2 option: scores also divided by layer + 1
        spec.scale = (c.attn_scale > 0 ? c.attn_scale : 1.0 / std::sqrt(double(c.head_dim))) / double(layer + 1);
    return spec;
}

void Model::set_attention(const std::vector<AttentionAssignment>& assignments) {
    const int64_t L = config_.n_layer, H = config_.n_head;
    std::vector<std::vector<HeadRun>> plan(static_cast<size_t>(L));
    for (int64_t l = 0; l < L; ++l) {
        // Per head: index into `specs` (0 = native); consecutive equal indices become one run.
        std::vector<AttentionSpec> specs{native_attention(l)};
        std::vector<size_t> head_spec(static_cast<size_t>(H), 0);
        for (const AttentionAssignment& a : assignments) {
            const int64_t lb = a.layer_end < 0 ? L : a.layer_end, hb = a.head_end < 0 ? H : a.head_end;
            ATTNLAB_CHECK(a.layer_begin >= 0 && a.layer_begin < L && lb <= L, InvalidArgument,
                          "[attention plan] layers {}..{} are out of range: the model has {} layers", a.layer_begin,
                          lb - 1, L);
            ATTNLAB_CHECK(a.head_begin >= 0 && a.head_begin < H && hb <= H, InvalidArgument,
                          "[attention plan] heads {}..{} are out of range: the model has {} heads", a.head_begin,
                          hb - 1, H);
            if (l < a.layer_begin || l >= lb) continue;
            specs.push_back(AttentionSpec::parse(a.spec, &specs[0]));
            specs.back().scale = specs[0].scale;  // the score scale belongs to the model
            std::fill(head_spec.begin() + a.head_begin, head_spec.begin() + hb, specs.size() - 1);
        }
        for (int64_t h = 0; h < H;) {
            int64_t e = h;
            while (e < H && head_spec[e] == head_spec[h]) ++e;
            plan[l].push_back({h, e, specs[head_spec[h]]});
            h = e;
        }
    }
    attention_plan_ = std::move(plan);
}

}  // namespace attnlab
