// Self-contained HTML reports of attention probes (`attnlab report`).
//
// A Page collects sections of figures — heatmaps (layer×head scores, T×T attention patterns),
// line plots (sink mass or position bias against a coordinate) and tables — and writes one HTML
// file that needs nothing else: images are PNG data: URIs, plots are inline SVG drawn here,
// CSS and the little JavaScript are inline, and a Content-Security-Policy forbids any network
// access. Every string that comes from data (titles, token strings) is escaped, and invalid
// UTF-8 is replaced by U+FFFD. See docs/report.md for the layout and the browser check.
#pragma once

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace attnlab::report {

// A matrix shown as an image: one colour per cell, nearest-neighbour magnified.
struct Heatmap {
    std::string id, title, caption;                // id: HTML anchor (sanitised; "" = generated)
    int64_t rows = 0, cols = 0;
    std::vector<double> values;                    // (rows, cols) row-major; NaN = no value (grey)
    std::string row_label, col_label, value_label; // axis names, e.g. "layer", "head", "BOS mass"
    std::vector<std::string> row_names, col_names; // optional tick labels (empty = 0-based indices)
    double vmin = NAN, vmax = NAN;  // colour range; NaN = the finite data min/max; outside -> end colours
    bool log_scale = false;  // log10 colour scale; values <= 0 get the lowest colour
};

struct Series {
    std::string name;
    std::vector<double> x, y;  // same length; NaN (or <= 0 on a log axis) breaks the line
};

struct LinePlot {
    std::string id, title, caption, x_label, y_label;
    std::vector<Series> series;
    bool log_x = false, log_y = false;
};

struct Table {
    std::string id, title, caption;
    std::vector<std::string> header;
    std::vector<std::vector<std::string>> rows;  // rows may be shorter or longer than the header
};

// Limits that keep a report small whatever the matrix: a side longer than kMaxImageSide cells is
// block-averaged down to at most kMaxImageSide, and cell_px shrinks until the image has at most
// kMaxImagePixels pixels and no side over 2 * kMaxImageSide pixels (a 4096×4096 pattern gives a
// 2048×2048 image, not a 1 GB one).
inline constexpr int64_t kMaxImageSide = 2048;
inline constexpr int64_t kMaxImagePixels = int64_t(1) << 22;
// Hover tooltips embed every value as JSON, so only for matrices up to this many cells.
inline constexpr int64_t kMaxTooltipCells = 65536;

// The colour of a normalised value t in [0, 1] (clamped) on the report's colour map: dark violet
// through blue and teal to light yellow, with lightness increasing monotonically.
struct Rgb {
    uint8_t r = 0, g = 0, b = 0;
};
Rgb colormap(double t);
inline constexpr Rgb kMissingColour{150, 150, 150};  // NaN cells

// The colour range a heatmap is drawn with, after NaN defaults and the log transform
// (lo, hi are data units; for log_scale both are > 0). Throws InvalidArgument on a bad shape.
struct ColourRange {
    double lo = 0, hi = 1;
    bool log_scale = false;
    double normalise(double v) const;  // to [0, 1]; NaN stays NaN
};
ColourRange colour_range(const Heatmap& heatmap);

// Image geometry after the size guards.
struct ImageLayout {
    int64_t rows = 0, cols = 0;  // cells actually drawn (smaller than the matrix if downsampled)
    int cell_px = 1;
    int64_t width() const { return cols * cell_px; }
    int64_t height() const { return rows * cell_px; }
    bool downsampled(const Heatmap& h) const { return rows != h.rows || cols != h.cols; }
};
ImageLayout image_layout(const Heatmap& heatmap, int cell_px);

// PNG (8-bit RGB) of a heatmap, each cell `cell_px` pixels square before the size guards.
// Throws InvalidArgument ("[report] ...") on a bad shape or cell_px < 1.
std::vector<uint8_t> heatmap_png(const Heatmap& heatmap, int cell_px);
// The same PNG written to a file (per-head pattern images next to a page); IoError on failure.
void write_png(const std::filesystem::path& file, const Heatmap& heatmap, int cell_px);

std::string base64(const std::vector<uint8_t>& bytes);  // RFC 4648, with '=' padding
// Invalid UTF-8 (each maximal invalid subpart) and control characters other than tab, LF and CR
// become U+FFFD, so the result is safe to put in HTML and JSON.
std::string valid_utf8(std::string_view text);
std::string escape_html(std::string_view text);  // valid_utf8, then & < > " ' as entities

class Page {
public:
    explicit Page(std::string title);

    // Starts a section; figures added before the first one go into an untitled opening section.
    void add_section(std::string heading, std::string paragraph = "");
    // cell_px = 0 picks a size that shows the heatmap about 480 px on its longer side.
    void add(const Heatmap& heatmap, int cell_px = 0);
    void add(const LinePlot& plot);
    void add(const Table& table);
    // Embeds json_text (UTF-8 repaired, then parsed: InvalidArgument if it is not JSON) as
    // <script type="application/json" id="json-NAME"> plus a data: download link NAME.json, where
    // NAME is `name` reduced to [A-Za-z0-9_-] ("probe results" -> "json-probe-results").
    void add_json(std::string name, std::string json_text);

    std::string html() const;
    // Writes html() to `file`; throws IoError ("[report] ...") if it cannot.
    void write(const std::filesystem::path& file) const;

private:
    struct Item {
        enum class Kind { Heatmap, Plot, Table, Json } kind;
        std::string id, title;
        std::string body;  // rendered HTML of the item
    };
    struct Section {
        std::string id, heading, paragraph;
        std::vector<Item> items;
    };

    Section& current_section();
    std::string unique_id(std::string_view wanted, std::string_view fallback_prefix);

    std::string title_;
    std::vector<Section> sections_;
    std::set<std::string> used_ids_;
    int64_t generated_ids_ = 0;
};

}  // namespace attnlab::report
