// A heatmap figure: the PNG as a data: URI, axis labels, thinned tick labels, a colour bar and,
// for matrices small enough, the values as JSON for the hover tooltip (script in html_page.cpp).
#include "render.h"

#include <fmt/format.h>

#include <algorithm>

namespace attnlab::report::detail {

namespace {

// Display size of the image's longer side: small matrices are magnified up to this,
// large ones shown at their natural size (CSS still shrinks them to the figure's width).
constexpr int64_t kMinDisplayPx = 360;
constexpr int64_t kAutoLongestPx = 480;
constexpr size_t kMaxTickChars = 14;

// Every step-th index, step in 1, 2, 5, 10, 20, ... so that at most max_ticks remain.
std::vector<int64_t> tick_indices(int64_t n, int64_t max_ticks) {
    int64_t step = 1;
    for (int64_t base = 1; (n + step - 1) / step > max_ticks; base *= 10) {
        for (int64_t m : {1, 2, 5}) {
            step = base * m;
            if ((n + step - 1) / step <= max_ticks) break;
        }
    }
    std::vector<int64_t> out;
    for (int64_t i = 0; i < n; i += step) out.push_back(i);
    return out;
}

// Token strings as tick labels: whitespace made visible, cut to a few characters.
std::string tick_text(const std::vector<std::string>& names, int64_t i) {
    if (names.empty()) return std::to_string(i);
    std::string shown;
    for (char c : valid_utf8(names[size_t(i)])) {
        if (c == '\n') shown += "\\n";
        else if (c == '\t') shown += "\\t";
        else if (c == '\r') shown += "\\r";
        else shown += c;
    }
    return shown;
}

struct Ticks {
    std::string html;
    size_t longest = 0;  // in characters, to size the tick column/row (absolute spans take no space)
};

Ticks render_ticks(const std::vector<std::string>& names, int64_t n, bool vertical_axis) {
    Ticks ticks;
    const int64_t max_ticks = names.empty() ? 16 : 32;
    for (int64_t i : tick_indices(n, max_ticks)) {
        const std::string full = tick_text(names, i);
        const std::string shown = truncate_utf8(full, kMaxTickChars);
        ticks.longest = std::max(ticks.longest, utf8_length(shown));
        const double pos = (double(i) + 0.5) / double(n) * 100.0;
        ticks.html += fmt::format("<span style=\"{}:{:.3f}%\"{}>{}</span>", vertical_axis ? "top" : "left",
                                  pos, shown == full ? "" : " title=\"" + escape_html(full) + "\"",
                                  escape_html(shown));
    }
    return ticks;
}

std::string tooltip_json(const Heatmap& h) {
    std::string out = fmt::format("{{\"rows\":{},\"cols\":{},\"rl\":{},\"cl\":{},\"vl\":{}", h.rows, h.cols,
                                  json_string(h.row_label), json_string(h.col_label),
                                  json_string(h.value_label));
    auto names = [&out](const char* key, const std::vector<std::string>& list) {
        if (list.empty()) return;
        out += fmt::format(",\"{}\":[", key);
        for (size_t i = 0; i < list.size(); ++i) {
            if (i) out += ',';
            out += json_string(list[i]);
        }
        out += ']';
    };
    names("rn", h.row_names);
    names("cn", h.col_names);
    out += ",\"v\":[";
    for (size_t i = 0; i < h.values.size(); ++i) {
        if (i) out += ',';
        out += json_number(h.values[i]);
    }
    out += "]}";
    return json_for_script(out);
}

}  // namespace

std::string render_heatmap(const Heatmap& h, const std::string& id, int cell_px) {
    const ColourRange range = colour_range(h);  // validates the shape first
    if (cell_px <= 0) cell_px = int(std::clamp<int64_t>(kAutoLongestPx / std::max(h.rows, h.cols), 1, 40));
    const ImageLayout layout = image_layout(h, cell_px);
    const std::string png = base64(heatmap_png(h, cell_px));

    const int64_t longest_px = std::max(layout.width(), layout.height());
    const double scale = longest_px < kMinDisplayPx ? double(kMinDisplayPx) / double(longest_px) : 1.0;
    const int64_t display_w = std::max<int64_t>(1, std::llround(double(layout.width()) * scale));

    const Ticks yticks = render_ticks(h.row_names, h.rows, true);
    const Ticks xticks = render_ticks(h.col_names, h.cols, false);
    const bool vertical_x = !h.col_names.empty();
    const double ytick_em = 0.62 * double(yticks.longest) + 0.4;
    const double xtick_em = vertical_x ? 0.62 * double(xticks.longest) + 0.4 : 1.3;

    const double mid = range.log_scale ? std::sqrt(range.lo * range.hi) : 0.5 * (range.lo + range.hi);
    const std::string hi_text = format_number(range.hi), mid_text = format_number(mid),
                      lo_text = format_number(range.lo);
    const size_t cbar_chars = std::max({hi_text.size(), mid_text.size(), lo_text.size()});
    std::string value_label = escape_html(h.value_label.empty() ? "value" : h.value_label);
    if (range.log_scale) value_label += " (log)";

    std::string html;
    html += fmt::format("<figure class=\"fig hm-fig\" id=\"{}\">\n", id);
    html += fmt::format("<figcaption><a class=\"anchor\" href=\"#{}\">{}</a></figcaption>\n", id,
                        escape_html(h.title.empty() ? id : h.title));
    html += fmt::format(
        "<div class=\"hm\" style=\"grid-template-columns:auto {:.2f}em minmax(0,{}px) auto\">\n", ytick_em,
        display_w);
    html += fmt::format("<div class=\"hm-ylabel\">{}</div>\n", escape_html(h.row_label));
    html += fmt::format("<div class=\"hm-yticks\">{}</div>\n", yticks.html);
    html += fmt::format(
        "<div class=\"hm-plot\"><img class=\"hm-img\" width=\"{}\" height=\"{}\" alt=\"{} ({}x{})\" "
        "src=\"data:image/png;base64,{}\"></div>\n",
        layout.width(), layout.height(), escape_html(h.title.empty() ? id : h.title), h.rows, h.cols, png);
    html += fmt::format(
        "<div class=\"hm-cbar\" style=\"width:{:.2f}em\"><div class=\"cbar-grad\" style=\"background:{}\">"
        "</div><div class=\"cbar-labels\"><span style=\"top:0%\">{}</span><span style=\"top:50%\">{}</span>"
        "<span style=\"top:100%\">{}</span></div></div>\n",
        0.62 * double(cbar_chars) + 2.0, colormap_gradient_css(), escape_html(hi_text),
        escape_html(mid_text), escape_html(lo_text));
    html += fmt::format("<div class=\"hm-xticks{}\" style=\"height:{:.2f}em\">{}</div>\n",
                        vertical_x ? " vertical" : "", xtick_em, xticks.html);
    html += fmt::format("<div class=\"hm-clabel\">{}</div>\n", value_label);
    html += fmt::format("<div class=\"hm-xlabel\">{}</div>\n", escape_html(h.col_label));
    html += "</div>\n<div class=\"hm-tip\" hidden></div>\n";
    if (!h.caption.empty()) html += fmt::format("<p class=\"caption\">{}</p>\n", escape_html(h.caption));
    if (layout.downsampled(h)) {
        html += fmt::format(
            "<p class=\"note\">{}&times;{} matrix shown as {}&times;{} block averages; no hover values.</p>\n",
            h.rows, h.cols, layout.rows, layout.cols);
    } else if (h.rows * h.cols > kMaxTooltipCells) {
        html += "<p class=\"note\">Too many cells for hover values.</p>\n";
    }
    if (h.rows * h.cols <= kMaxTooltipCells)
        html += fmt::format("<script type=\"application/json\" class=\"hm-data\">{}</script>\n", tooltip_json(h));
    html += "</figure>\n";
    return html;
}

}  // namespace attnlab::report::detail
