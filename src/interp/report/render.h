// Internal pieces of the HTML report shared by html_page.cpp, heatmap_html.cpp and line_plot.cpp.
#pragma once

#include <attnlab/report.h>

#include <string>
#include <string_view>
#include <vector>

namespace attnlab::report::detail {

// A number for a label: 4 significant digits, "NaN", "∞"/"−∞"; no "-0".
std::string format_number(double v);
// A number as a JSON literal for embedded data: 4 significant digits, null for NaN/±inf.
std::string json_number(double v);
// A JSON string literal of valid_utf8(text).
std::string json_string(std::string_view text);
// JSON text made safe inside <script type="application/json">: '<', '>' and '&' (which valid
// JSON only holds inside strings) become \u escapes, so "</script>" or "<!--" cannot end it.
std::string json_for_script(std::string_view json_text);
// Cuts text to at most max_chars code points, with "…" when cut (for tick labels).
std::string truncate_utf8(std::string_view text, size_t max_chars);
size_t utf8_length(std::string_view text);

// CSS linear-gradient stops of the colour map, bottom (t = 0) to top.
std::string colormap_gradient_css();

// Figure bodies; `id` is the already-unique HTML id.
std::string render_heatmap(const Heatmap& heatmap, const std::string& id, int cell_px);
std::string render_line_plot(const LinePlot& plot, const std::string& id);

}  // namespace attnlab::report::detail
