// The report page: sections of figures in a responsive grid, a table of contents, tables,
// embedded JSON, inline CSS and two small inline scripts (the render check and heatmap hover).
// A Content-Security-Policy <meta> forbids every network fetch, so a stray external reference
// fails loudly (a console error) instead of leaking a request.
#include "render.h"

#include <attnlab/error.h>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>

namespace attnlab::report {

namespace {

constexpr const char* kCss = R"CSS(
:root { --fg:#1d1f24; --muted:#5b6270; --line:#d9dce2; --bg:#f6f7f9; --card:#fff; --accent:#2f6db3; }
* { box-sizing: border-box; }
body { margin:0; background:var(--bg); color:var(--fg);
  font: 15px/1.45 "DejaVu Sans", "Helvetica Neue", Arial, sans-serif; }
header, main, nav.toc, footer { max-width: 1500px; margin: 0 auto; padding: 0 20px; }
header h1 { font-size: 1.6em; margin: 22px 0 6px; }
nav.toc { margin-bottom: 10px; }
nav.toc h2 { font-size: 1em; margin: 8px 0 4px; color: var(--muted); }
nav.toc ol { margin: 0; padding-left: 1.4em; }
nav.toc ol ol { font-size: .9em; columns: 3 16em; }
a { color: var(--accent); text-decoration: none; }
a:hover { text-decoration: underline; }
section { margin: 18px 0 28px; }
section > h2 { font-size: 1.25em; border-bottom: 1px solid var(--line); padding-bottom: 4px; }
section > p { max-width: 60em; color: var(--muted); }
.grid { display: grid; gap: 16px; grid-template-columns: repeat(auto-fill, minmax(min(100%, 460px), 1fr)); }
.fig, .wide { background: var(--card); border: 1px solid var(--line); border-radius: 6px;
  padding: 10px 12px; margin: 0; position: relative; min-width: 0; }
.wide { grid-column: 1 / -1; }
figcaption, .wide h3 { font-weight: 600; margin: 0 0 8px; font-size: 1em; }
figcaption a.anchor, .wide h3 a.anchor { color: inherit; }
.caption { color: var(--muted); font-size: .88em; margin: 8px 0 0; }
.note { color: #8a5a00; font-size: .82em; margin: 4px 0 0; }
.banner { background: #b3261e; color: #fff; padding: 10px 20px; font-weight: 600; }
.banner[hidden], .hm-tip[hidden] { display: none; }
.hm { display: grid; column-gap: 4px; align-items: stretch;
  grid-template-areas: "yl yt im cb" ". . xt cl" ". . xl ."; }
.hm-ylabel { grid-area: yl; writing-mode: vertical-rl; transform: rotate(180deg);
  text-align: center; font-size: .85em; color: var(--muted); }
.hm-yticks, .hm-xticks, .cbar-labels { position: relative; font-size: 10px; line-height: 1;
  color: var(--muted); }
.hm-yticks { grid-area: yt; }
.hm-yticks span { position: absolute; right: 3px; transform: translateY(-50%); white-space: pre; }
.hm-xticks { grid-area: xt; }
.hm-xticks span { position: absolute; top: 3px; transform: translateX(-50%); white-space: pre; }
.hm-xticks.vertical span { writing-mode: vertical-rl; }
.hm-plot { grid-area: im; min-width: 0; }
.hm-img { display: block; width: 100%; height: auto; image-rendering: pixelated; cursor: crosshair; }
.hm-xlabel { grid-area: xl; text-align: center; font-size: .85em; color: var(--muted); }
.hm-cbar { grid-area: cb; display: flex; gap: 4px; margin-left: 6px; }
.cbar-grad { width: 12px; border: 1px solid #888; }
.cbar-labels { flex: 1; }
.cbar-labels span { position: absolute; left: 0; transform: translateY(-50%); white-space: nowrap; }
.hm-clabel { grid-area: cl; font-size: .78em; color: var(--muted); margin-left: 6px; }
.hm-tip { position: absolute; pointer-events: none; background: #22252b; color: #fff; z-index: 2;
  padding: 3px 7px; border-radius: 4px; font-size: 12px; white-space: pre; }
svg.plot { display: block; width: 100%; height: auto; }
svg.plot text { font-size: 11px; fill: #333; font-family: inherit; }
svg.plot text.label { font-size: 12px; fill: var(--muted); }
svg.plot .frame { fill: #fff; stroke: none; }
svg.plot .grid { stroke: #e6e8ec; }
svg.plot .axis { stroke: #666; }
svg.plot .series { fill: none; stroke-width: 1.8; stroke-linejoin: round; }
.legend { display: flex; flex-wrap: wrap; gap: 4px 14px; font-size: .85em; margin-top: 4px; }
.legend i { display: inline-block; width: 22px; vertical-align: middle; margin-right: 5px; }
.table-wrap { overflow-x: auto; }
table { border-collapse: collapse; font-size: .88em; }
th, td { border-bottom: 1px solid var(--line); padding: 3px 10px; text-align: left; white-space: pre; }
th { background: #eef0f3; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
footer { color: var(--muted); font-size: .8em; padding-bottom: 24px; }
)CSS";

// Render check: every figure image decoded and every plot drew something; the result goes to
// <html data-rendered="ok/total"> for tests, and a failure also shows a banner and logs an error.
// Hover: heatmaps with embedded values show row, column and value under the pointer.
constexpr const char* kScript = R"JS(
window.addEventListener('load', () => {
  const bad = [];
  let ok = 0;
  const images = document.querySelectorAll('figure img');
  const plots = document.querySelectorAll('figure svg.plot');
  images.forEach(img => {
    if (img.complete && img.naturalWidth > 0) ok++; else bad.push(img.closest('figure').id);
  });
  plots.forEach(svg => {
    let drawn = false;
    try {
      const box = svg.getBBox();
      drawn = svg.querySelector('path, line, rect, circle') !== null && box.width > 0 && box.height > 0;
    } catch (e) { drawn = false; }
    if (drawn) ok++; else bad.push(svg.closest('figure').id);
  });
  const total = images.length + plots.length;
  document.documentElement.dataset.rendered = ok + '/' + total;
  if (ok !== total) {
    const banner = document.getElementById('render-error');
    banner.textContent = (total - ok) + ' of ' + total + ' figures failed to render: ' + bad.join(', ');
    banner.hidden = false;
    console.error('attnlab report: ' + banner.textContent);
  }
});
document.querySelectorAll('figure.hm-fig').forEach(fig => {
  const img = fig.querySelector('img.hm-img');
  const tip = fig.querySelector('.hm-tip');
  const data = fig.querySelector('script.hm-data');
  if (!img || !tip || !data) return;
  let d = null;
  img.addEventListener('mousemove', e => {
    if (d === null) d = JSON.parse(data.textContent);
    const r = Math.min(d.rows - 1, Math.floor(e.offsetY / img.clientHeight * d.rows));
    const c = Math.min(d.cols - 1, Math.floor(e.offsetX / img.clientWidth * d.cols));
    if (r < 0 || c < 0) return;
    const v = d.v[r * d.cols + c];
    const rn = d.rn ? JSON.stringify(d.rn[r]) : String(r);
    const cn = d.cn ? JSON.stringify(d.cn[c]) : String(c);
    tip.textContent = (d.rl || 'row') + ' ' + rn + '\n' + (d.cl || 'column') + ' ' + cn + '\n' +
                      (d.vl || 'value') + ' ' + (v === null ? 'n/a' : v);
    const box = fig.getBoundingClientRect();
    tip.style.left = (e.clientX - box.left + 14) + 'px';
    tip.style.top = (e.clientY - box.top + 14) + 'px';
    tip.hidden = false;
  });
  img.addEventListener('mouseleave', () => { tip.hidden = true; });
});
)JS";

constexpr const char* kCsp =
    "default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'";

// HTML ids (and download file names): ASCII letters, digits, '-' and '_', starting with a letter.
std::string sanitise_id(std::string_view wanted) {
    std::string id;
    for (char c : wanted) {
        const bool keep = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                          c == '-' || c == '_';
        if (keep) id += c;
        else if (!id.empty() && id.back() != '-') id += '-';
    }
    while (!id.empty() && id.back() == '-') id.pop_back();
    if (!id.empty() && !std::isalpha(static_cast<unsigned char>(id[0]))) id = "x-" + id;
    return id;
}

bool is_number(const std::string& text) {
    if (text.empty()) return false;
    char* end = nullptr;
    std::strtod(text.c_str(), &end);
    return end == text.c_str() + text.size();
}

std::string render_table(const Table& t, const std::string& id) {
    std::string html = fmt::format("<div class=\"wide table-item\" id=\"{}\">\n", id);
    html += fmt::format("<h3><a class=\"anchor\" href=\"#{}\">{}</a></h3>\n", id,
                        escape_html(t.title.empty() ? id : t.title));
    html += "<div class=\"table-wrap\"><table>\n";
    if (!t.header.empty()) {
        html += "<thead><tr>";
        for (const auto& h : t.header) html += "<th>" + escape_html(h) + "</th>";
        html += "</tr></thead>\n";
    }
    html += "<tbody>\n";
    for (const auto& row : t.rows) {
        html += "<tr>";
        for (const auto& cell : row)
            html += (is_number(cell) ? "<td class=\"num\">" : "<td>") + escape_html(cell) + "</td>";
        html += "</tr>\n";
    }
    html += "</tbody></table></div>\n";
    if (!t.caption.empty()) html += fmt::format("<p class=\"caption\">{}</p>\n", escape_html(t.caption));
    return html + "</div>\n";
}

std::string render_paragraphs(const std::string& text) {
    std::string html;
    size_t start = 0;
    while (start < text.size()) {
        size_t end = text.find("\n\n", start);
        if (end == std::string::npos) end = text.size();
        if (end > start) html += "<p>" + escape_html(text.substr(start, end - start)) + "</p>\n";
        start = end + 2;
    }
    return html;
}

}  // namespace

Page::Page(std::string title) : title_(std::move(title)) {}

std::string Page::unique_id(std::string_view wanted, std::string_view fallback_prefix) {
    std::string base = sanitise_id(wanted);
    if (base.empty()) base = fmt::format("{}-{}", fallback_prefix, ++generated_ids_);
    std::string id = base;
    for (int n = 2; used_ids_.count(id) > 0; ++n) id = fmt::format("{}-{}", base, n);
    used_ids_.insert(id);
    return id;
}

Page::Section& Page::current_section() {
    if (sections_.empty()) sections_.push_back(Section{unique_id("", "section"), "", "", {}});
    return sections_.back();
}

void Page::add_section(std::string heading, std::string paragraph) {
    std::string id = unique_id(heading, "section");
    sections_.push_back(Section{std::move(id), std::move(heading), std::move(paragraph), {}});
}

void Page::add(const Heatmap& heatmap, int cell_px) {
    std::string id = unique_id(heatmap.id, "heatmap");
    std::string body = detail::render_heatmap(heatmap, id, cell_px);
    current_section().items.push_back(Item{Item::Kind::Heatmap, id, heatmap.title, std::move(body)});
}

void Page::add(const LinePlot& plot) {
    std::string id = unique_id(plot.id, "plot");
    std::string body = detail::render_line_plot(plot, id);
    current_section().items.push_back(Item{Item::Kind::Plot, id, plot.title, std::move(body)});
}

void Page::add(const Table& table) {
    std::string id = unique_id(table.id, "table");
    std::string body = render_table(table, id);
    current_section().items.push_back(Item{Item::Kind::Table, id, table.title, std::move(body)});
}

void Page::add_json(std::string name, std::string json_text) {
    nlohmann::json parsed;
    try {
        // Repair first: probes dump byte-level token strings, which need not be valid UTF-8.
        parsed = nlohmann::json::parse(valid_utf8(json_text));
    } catch (const nlohmann::json::exception& e) {
        throw InvalidArgument(fmt::format("[report] add_json '{}': not valid JSON: {}", name, e.what()));
    }
    const std::string compact = parsed.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    std::string file_name = sanitise_id(name);
    if (file_name.empty()) file_name = "data";
    const std::string anchor = unique_id("data-" + file_name, "data");
    const std::string script_id = unique_id("json-" + file_name, "json");
    const std::vector<uint8_t> bytes(compact.begin(), compact.end());
    std::string body = fmt::format("<div class=\"wide json-item\" id=\"{}\">\n", anchor);
    body += fmt::format("<h3><a class=\"anchor\" href=\"#{}\">{}</a></h3>\n", anchor, escape_html(name));
    body += fmt::format(
        "<p><a download=\"{}.json\" href=\"data:application/json;base64,{}\">Download {}.json</a> "
        "({} bytes; also embedded in this page as <code>#{}</code>)</p>\n",
        file_name, base64(bytes), file_name, compact.size(), script_id);
    body += fmt::format("<script type=\"application/json\" id=\"{}\">{}</script>\n</div>\n", script_id,
                        detail::json_for_script(compact));
    current_section().items.push_back(Item{Item::Kind::Json, anchor, name, std::move(body)});
}

std::string Page::html() const {
    const std::string title = escape_html(title_);
    std::string html = "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n";
    html += "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n";
    html += fmt::format("<meta http-equiv=\"Content-Security-Policy\" content=\"{}\">\n", kCsp);
    html += "<meta name=\"generator\" content=\"attnlab report\">\n";
    html += fmt::format("<title>{}</title>\n<style>{}</style>\n</head>\n<body>\n", title, kCss);
    html += "<div id=\"render-error\" class=\"banner\" hidden></div>\n";
    html += fmt::format("<header><h1>{}</h1></header>\n", title);

    // Contents: section headings, with their figures nested; untitled sections list figures only.
    std::string toc;
    for (const Section& s : sections_) {
        std::string items;
        for (const Item& item : s.items)
            items += fmt::format("<li><a href=\"#{}\">{}</a></li>", item.id,
                                 escape_html(item.title.empty() ? item.id : item.title));
        if (s.heading.empty()) {
            toc += items;
        } else {
            toc += fmt::format("<li><a href=\"#{}\">{}</a>{}</li>\n", s.id, escape_html(s.heading),
                               items.empty() ? "" : "<ol>" + items + "</ol>");
        }
    }
    if (!toc.empty()) html += "<nav class=\"toc\"><h2>Contents</h2><ol>\n" + toc + "</ol></nav>\n";

    html += "<main>\n";
    for (const Section& s : sections_) {
        html += fmt::format("<section id=\"{}\">\n", s.id);
        if (!s.heading.empty()) html += fmt::format("<h2>{}</h2>\n", escape_html(s.heading));
        html += render_paragraphs(s.paragraph);
        if (!s.items.empty()) {
            html += "<div class=\"grid\">\n";
            for (const Item& item : s.items) html += item.body;
            html += "</div>\n";
        }
        html += "</section>\n";
    }
    html += "</main>\n<footer>Generated by attnlab report. Self-contained: no network access.</footer>\n";
    html += fmt::format("<script>{}</script>\n</body>\n</html>\n", kScript);
    return html;
}

void Page::write(const std::filesystem::path& file) const {
    const std::string text = html();
    std::ofstream out(file, std::ios::binary | std::ios::trunc);
    ATTNLAB_CHECK(out.good(), IoError, "[report] cannot open {} for writing: {}", file.string(),
                  std::strerror(errno));
    out.write(text.data(), std::streamsize(text.size()));
    out.close();
    ATTNLAB_CHECK(!out.fail(), IoError, "[report] writing {} failed: {}", file.string(), std::strerror(errno));
}

}  // namespace attnlab::report
