// Line plots as inline SVG, drawn here so the report needs no plotting library: axes with ticks
// at "nice" numbers (1, 2, 5 × 10^k) or at decades on log axes, grid lines, one path per series
// (broken at unusable points), point markers with hover titles for short series, and an HTML
// legend under the plot (HTML wraps long names; SVG text would need measuring).
#include "render.h"

#include <attnlab/error.h>

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <limits>

namespace attnlab::report::detail {

namespace {

constexpr double kWidth = 640, kHeight = 400;
constexpr double kLeft = 66, kRight = 18, kTop = 14, kBottom = 46;
constexpr double kPlotW = kWidth - kLeft - kRight, kPlotH = kHeight - kTop - kBottom;
constexpr size_t kMaxMarkers = 64;  // series longer than this get no point markers

// Colours chosen to be distinct for the common forms of colour blindness; after eight, dashes.
constexpr std::array<const char*, 8> kSeriesColours = {"#2f6db3", "#d9641e", "#2e9a4b", "#c0395b",
                                                        "#7b57b8", "#8a6a2c", "#1f9c9a", "#555555"};

struct Axis {
    double lo = 0, hi = 1;  // in axis units (log10 of the value on a log axis)
    bool log = false;
    std::vector<double> ticks;  // axis units
    std::vector<std::string> labels;

    double unit(double v) const { return ((log ? std::log10(v) : v) - lo) / (hi - lo); }
};

double nice_step(double range, int target) {
    const double raw = range / target;
    const double mag = std::pow(10.0, std::floor(std::log10(raw)));
    const double norm = raw / mag;
    return (norm < 1.5 ? 1 : norm < 3 ? 2 : norm < 7 ? 5 : 10) * mag;
}

Axis linear_axis(double lo, double hi) {
    Axis axis;
    if (!(lo <= hi)) lo = 0, hi = 1;  // no data
    if (lo == hi) {
        const double pad = std::max(std::abs(lo) * 0.1, 1e-12) + (lo == 0 ? 1 : 0);
        lo -= pad;
        hi += pad;
    }
    const double step = nice_step(hi - lo, 6);
    axis.lo = std::floor(lo / step) * step;
    axis.hi = std::ceil(hi / step) * step;
    const int decimals = std::clamp(-int(std::floor(std::log10(step))), 0, 12);
    const bool plain = std::max(std::abs(axis.lo), std::abs(axis.hi)) < 1e7 && decimals <= 6;
    for (int64_t k = std::llround(axis.lo / step); double(k) * step <= axis.hi + step * 1e-9; ++k) {
        const double t = double(k) * step;
        axis.ticks.push_back(t);
        std::string label = plain ? fmt::format("{:.{}f}", t, decimals) : fmt::format("{:.6g}", t);
        if (label[0] == '-' && label.find_first_not_of("-0.") == std::string::npos) label.erase(0, 1);
        axis.labels.push_back(label);
    }
    return axis;
}

std::string decade_label(double value, int exponent) {
    return exponent >= -3 && exponent <= 4 ? fmt::format("{:g}", value) : fmt::format("{:g}e{}", value / std::pow(10.0, exponent), exponent);
}

Axis log_axis(double lo, double hi) {  // lo, hi: positive data extremes
    Axis axis;
    axis.log = true;
    if (!(lo <= hi)) lo = 1, hi = 10;
    axis.lo = std::floor(std::log10(lo));
    axis.hi = std::ceil(std::log10(hi));
    if (axis.hi <= axis.lo) axis.hi = axis.lo + 1;
    const int decades = int(axis.hi - axis.lo);
    const int stride = std::max(1, (decades + 7) / 8);
    for (int e = int(axis.lo); e <= int(axis.hi); e += stride) {
        axis.ticks.push_back(e);
        axis.labels.push_back(decade_label(std::pow(10.0, e), e));
        if (decades == 1 && e < int(axis.hi)) {  // one decade only: 2 and 5 make it readable
            for (int m : {2, 5}) {
                axis.ticks.push_back(e + std::log10(double(m)));
                axis.labels.push_back(decade_label(m * std::pow(10.0, e), e));
            }
        }
    }
    return axis;
}

bool usable(double x, double y, const LinePlot& p) {
    return std::isfinite(x) && std::isfinite(y) && (!p.log_x || x > 0) && (!p.log_y || y > 0);
}

std::string px(double v) { return fmt::format("{:.1f}", v); }

}  // namespace

std::string render_line_plot(const LinePlot& p, const std::string& id) {
    const double inf = std::numeric_limits<double>::infinity();
    double x_lo = inf, x_hi = -inf, y_lo = inf, y_hi = -inf;
    for (const Series& s : p.series) {
        ATTNLAB_CHECK(s.x.size() == s.y.size(), InvalidArgument,
                      "[report] line plot '{}': series '{}' has {} x and {} y values", id, s.name,
                      s.x.size(), s.y.size());
        for (size_t i = 0; i < s.x.size(); ++i) {
            if (!usable(s.x[i], s.y[i], p)) continue;
            x_lo = std::min(x_lo, s.x[i]), x_hi = std::max(x_hi, s.x[i]);
            y_lo = std::min(y_lo, s.y[i]), y_hi = std::max(y_hi, s.y[i]);
        }
    }
    const bool empty = x_lo > x_hi;
    const Axis xa = p.log_x ? log_axis(x_lo, x_hi) : linear_axis(x_lo, x_hi);
    const Axis ya = p.log_y ? log_axis(y_lo, y_hi) : linear_axis(y_lo, y_hi);
    auto to_x = [&](double v) { return kLeft + xa.unit(v) * kPlotW; };
    auto to_y = [&](double v) { return kTop + (1.0 - ya.unit(v)) * kPlotH; };

    const std::string title = escape_html(p.title.empty() ? id : p.title);
    std::string svg = fmt::format(
        "<svg class=\"plot\" viewBox=\"0 0 {} {}\" role=\"img\" aria-label=\"{}\">\n"
        "<rect class=\"frame\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\"/>\n",
        kWidth, kHeight, title, kLeft, kTop, kPlotW, kPlotH);
    for (size_t i = 0; i < xa.ticks.size(); ++i) {
        const std::string x = px(kLeft + (xa.ticks[i] - xa.lo) / (xa.hi - xa.lo) * kPlotW);
        svg += fmt::format(
            "<line class=\"grid\" x1=\"{0}\" x2=\"{0}\" y1=\"{1}\" y2=\"{2}\"/>"
            "<line class=\"axis\" x1=\"{0}\" x2=\"{0}\" y1=\"{2}\" y2=\"{3}\"/>"
            "<text x=\"{0}\" y=\"{4}\" text-anchor=\"middle\">{5}</text>\n",
            x, px(kTop), px(kTop + kPlotH), px(kTop + kPlotH + 4), px(kTop + kPlotH + 17),
            escape_html(xa.labels[i]));
    }
    for (size_t i = 0; i < ya.ticks.size(); ++i) {
        const std::string y = px(kTop + (1.0 - (ya.ticks[i] - ya.lo) / (ya.hi - ya.lo)) * kPlotH);
        svg += fmt::format(
            "<line class=\"grid\" x1=\"{1}\" x2=\"{2}\" y1=\"{0}\" y2=\"{0}\"/>"
            "<line class=\"axis\" x1=\"{3}\" x2=\"{1}\" y1=\"{0}\" y2=\"{0}\"/>"
            "<text x=\"{4}\" y=\"{0}\" text-anchor=\"end\" dominant-baseline=\"middle\">{5}</text>\n",
            y, px(kLeft), px(kLeft + kPlotW), px(kLeft - 4), px(kLeft - 7), escape_html(ya.labels[i]));
    }
    svg += fmt::format(
        "<line class=\"axis\" x1=\"{0}\" x2=\"{0}\" y1=\"{1}\" y2=\"{2}\"/>"
        "<line class=\"axis\" x1=\"{0}\" x2=\"{3}\" y1=\"{2}\" y2=\"{2}\"/>\n",
        px(kLeft), px(kTop), px(kTop + kPlotH), px(kLeft + kPlotW));
    const std::string x_label = escape_html(p.x_label) + (p.log_x ? " (log)" : "");
    const std::string y_label = escape_html(p.y_label) + (p.log_y ? " (log)" : "");
    svg += fmt::format("<text class=\"label\" x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n",
                       px(kLeft + kPlotW / 2), px(kHeight - 8), x_label);
    svg += fmt::format(
        "<text class=\"label\" transform=\"translate(14 {}) rotate(-90)\" text-anchor=\"middle\">{}</text>\n",
        px(kTop + kPlotH / 2), y_label);
    if (empty) {
        svg += fmt::format("<text class=\"label\" x=\"{}\" y=\"{}\" text-anchor=\"middle\">no data</text>\n",
                           px(kLeft + kPlotW / 2), px(kTop + kPlotH / 2));
    }

    std::string legend;
    for (size_t si = 0; si < p.series.size(); ++si) {
        const Series& s = p.series[si];
        const char* colour = kSeriesColours[si % kSeriesColours.size()];
        const bool dashed = si >= kSeriesColours.size();
        std::string path;
        bool pen_down = false;
        for (size_t i = 0; i < s.x.size(); ++i) {
            if (!usable(s.x[i], s.y[i], p)) {
                pen_down = false;
                continue;
            }
            path += fmt::format("{}{} {}", pen_down ? " L" : (path.empty() ? "M" : " M"), px(to_x(s.x[i])),
                                px(to_y(s.y[i])));
            pen_down = true;
        }
        if (!path.empty()) {
            svg += fmt::format("<path class=\"series\" d=\"{}\" stroke=\"{}\"{}/>\n", path, colour,
                               dashed ? " stroke-dasharray=\"6 3\"" : "");
        }
        if (s.x.size() <= kMaxMarkers) {
            const std::string name = escape_html(s.name);
            for (size_t i = 0; i < s.x.size(); ++i) {
                if (!usable(s.x[i], s.y[i], p)) continue;
                svg += fmt::format("<circle cx=\"{}\" cy=\"{}\" r=\"2.5\" fill=\"{}\"><title>{} ({}, {})</title></circle>\n",
                                   px(to_x(s.x[i])), px(to_y(s.y[i])), colour, name,
                                   format_number(s.x[i]), format_number(s.y[i]));
            }
        }
        legend += fmt::format("<span class=\"key\"><i style=\"border-top:3px {} {}\"></i>{}</span>",
                              dashed ? "dashed" : "solid", colour, escape_html(s.name.empty() ? fmt::format("series {}", si + 1) : s.name));
    }
    svg += "</svg>\n";

    std::string html = fmt::format("<figure class=\"fig plot-fig\" id=\"{}\">\n", id);
    html += fmt::format("<figcaption><a class=\"anchor\" href=\"#{}\">{}</a></figcaption>\n", id, title);
    html += svg;
    if (p.series.size() > 1 || (p.series.size() == 1 && !p.series[0].name.empty()))
        html += "<div class=\"legend\">" + legend + "</div>\n";
    if (!p.caption.empty()) html += fmt::format("<p class=\"caption\">{}</p>\n", escape_html(p.caption));
    html += "</figure>\n";
    return html;
}

}  // namespace attnlab::report::detail
