// The HTML report builder: PNG heatmaps decoded back with libpng, text hygiene, size guards, and
// whole pages opened in a real headless Chromium (tests/support/browser.h).
#include <attnlab/error.h>
#include <attnlab/report.h>

#include "browser.h"
#include "test_support.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <png.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <random>
#include <regex>

namespace attnlab::report {
namespace {

using test::TempDir;

struct Decoded {
    uint32_t width = 0, height = 0;
    std::vector<uint8_t> rgb;  // (height, width, 3)
    Rgb at(uint32_t x, uint32_t y) const {
        const uint8_t* p = rgb.data() + (size_t(y) * width + x) * 3;
        return {p[0], p[1], p[2]};
    }
};

// Decodes with libpng's own reader, and checks the header says 8-bit RGB.
Decoded decode_png(const std::vector<uint8_t>& bytes) {
    EXPECT_GT(bytes.size(), 33u);
    EXPECT_EQ(png_sig_cmp(bytes.data(), 0, 8), 0) << "not a PNG signature";
    EXPECT_EQ(bytes[24], 8) << "bit depth";
    EXPECT_EQ(bytes[25], PNG_COLOR_TYPE_RGB) << "colour type";
    png_image image{};
    image.version = PNG_IMAGE_VERSION;
    if (!png_image_begin_read_from_memory(&image, bytes.data(), bytes.size()))
        throw std::runtime_error(std::string("png read: ") + image.message);
    image.format = PNG_FORMAT_RGB;
    Decoded d;
    d.width = image.width;
    d.height = image.height;
    d.rgb.resize(PNG_IMAGE_SIZE(image));
    if (!png_image_finish_read(&image, nullptr, d.rgb.data(), 0, nullptr))
        throw std::runtime_error(std::string("png read: ") + image.message);
    return d;
}

void expect_colour(Rgb got, Rgb want, const std::string& what) {
    EXPECT_EQ(got.r, want.r) << what;
    EXPECT_EQ(got.g, want.g) << what;
    EXPECT_EQ(got.b, want.b) << what;
}

double lightness(Rgb c) {  // CIE L* of an sRGB colour
    auto lin = [](double v) {
        v /= 255.0;
        return v <= 0.04045 ? v / 12.92 : std::pow((v + 0.055) / 1.055, 2.4);
    };
    const double y = 0.2126 * lin(c.r) + 0.7152 * lin(c.g) + 0.0722 * lin(c.b);
    return y > 0.008856 ? 116.0 * std::cbrt(y) - 16.0 : 903.3 * y;
}

// A plausible T×T causal attention pattern with a sink on the first token.
Heatmap attention_pattern(const std::vector<std::string>& tokens) {
    const int64_t t = int64_t(tokens.size());
    Heatmap h;
    h.id = "pattern-L0H1";
    h.title = "Pattern, layer 0 head 1";
    h.caption = "Query rows attend to key columns; the first token collects most of the mass.";
    h.rows = h.cols = t;
    h.row_label = "query";
    h.col_label = "key";
    h.value_label = "attention";
    h.row_names = h.col_names = tokens;
    h.values.assign(size_t(t * t), NAN);  // NaN above the diagonal: masked, drawn grey
    for (int64_t q = 0; q < t; ++q) {
        double total = 0;
        for (int64_t k = 0; k <= q; ++k) total += k == 0 ? 4.0 : 1.0 / double(1 + q - k);
        for (int64_t k = 0; k <= q; ++k)
            h.values[size_t(q * t + k)] = (k == 0 ? 4.0 : 1.0 / double(1 + q - k)) / total;
    }
    return h;
}

Heatmap layer_head_scores() {
    Heatmap h;
    h.id = "bos-mass";
    h.title = "BOS mass by layer and head";
    h.rows = 12;
    h.cols = 8;
    h.row_label = "layer";
    h.col_label = "head";
    h.value_label = "BOS mass";
    h.log_scale = true;
    std::mt19937 rng(7);
    std::uniform_real_distribution<double> u(-4.0, 0.0);
    for (int64_t i = 0; i < h.rows * h.cols; ++i) h.values.push_back(std::pow(10.0, u(rng)));
    h.values[5] = 0.0;  // <= 0 on a log scale: lowest colour
    return h;
}

const std::vector<std::string> kHostileTokens = {
    "<bos>", " The", " <script>alert(1)</script>", " &amp;", " \"quoted\"", " 'single'", "\n",
    "\t", " caf\xC3\xA9", " \xE2\x82\xAC", "\xFF\xFE", " \xF0\x9F\x98\x80", "</script><!--", "x"};

// The page the browser tests load: two heatmaps, a linear and a log-log plot, a table, JSON.
Page sample_page(const std::string& json_text) {
    Page page("attnlab report: <tiny> & \"model\"");
    page.add_section("Attention sinks", "Mass on the first token.\n\nOne paragraph per probe.");
    page.add(layer_head_scores());
    LinePlot sink;
    sink.id = "sink-by-layer";
    sink.title = "Mean sink mass by layer";
    sink.x_label = "layer";
    sink.y_label = "mass";
    Series a{"BOS", {}, {}}, b{"first newline <\\n>", {}, {}};
    for (int l = 0; l < 12; ++l) {
        a.x.push_back(l), a.y.push_back(0.1 + 0.07 * l);
        b.x.push_back(l), b.y.push_back(l == 5 ? NAN : 0.02 * l);
    }
    sink.series = {a, b};
    page.add(sink);
    page.add_section("Patterns & positions");
    page.add(attention_pattern(kHostileTokens));
    LinePlot bias;
    bias.id = "position-bias";
    bias.title = "Attention vs distance (log-log)";
    bias.x_label = "distance";
    bias.y_label = "mean attention";
    bias.log_x = bias.log_y = true;
    Series s{"all heads", {}, {}};
    for (int d = 0; d <= 300; ++d) s.x.push_back(d), s.y.push_back(d == 0 ? 0.0 : 0.5 / std::pow(d, 1.3));
    bias.series = {s};
    page.add(bias);
    Table table;
    table.id = "top-heads";
    table.title = "Top sink heads";
    table.header = {"layer", "head", "BOS mass", "note"};
    table.rows = {{"3", "5", "0.97", "<b>not bold</b>"}, {"7", "1", "0.91", "caf\xC3\xA9 \xFF"}};
    page.add(table);
    page.add_json("probe results", json_text);
    return page;
}

std::string json_script_text(const std::string& dom, const std::string& id) {
    const std::string open = "<script type=\"application/json\" id=\"" + id + "\">";
    const size_t start = dom.find(open);
    if (start == std::string::npos) return "";
    const size_t end = dom.find("</script>", start);
    return dom.substr(start + open.size(), end - start - open.size());
}

// Skips (rather than fails) only where Chromium is not installed at all.
#define REQUIRE_CHROMIUM()                                                                        \
    do {                                                                                          \
        if (test::chromium_path().empty())                                                        \
            FAIL() << "chromium not installed (scripts/setup.sh installs it)";                    \
    } while (0)

TEST(ReportColours, ColourMapIsOrderedByLightness) {
    // Strictly increasing at a coarse step; at the finest step only 8-bit rounding may wobble.
    double previous = -1;
    for (int i = 0; i <= 64; ++i) {
        const double l = lightness(colormap(i / 64.0));
        EXPECT_GT(l, previous + 0.5) << "at t=" << i / 64.0;
        previous = l;
    }
    previous = -1;
    for (int i = 0; i <= 255; ++i) {
        const double l = lightness(colormap(i / 255.0));
        EXPECT_GT(l, previous - 0.05) << "at t=" << i / 255.0;
        previous = l;
    }
    EXPECT_LT(lightness(colormap(0.0)), 15);
    EXPECT_GT(lightness(colormap(1.0)), 85);
}

TEST(ReportPng, DecodesToExpectedSizeAndColours) {
    Heatmap h;
    h.id = "small";
    h.rows = 3;
    h.cols = 5;
    for (int i = 0; i < 15; ++i) h.values.push_back(double(i) - 3.0);  // min -3 at (0,0), max 11 at (2,4)
    h.values[7] = NAN;                                                   // (1,2)
    const int cell = 4;
    const Decoded d = decode_png(heatmap_png(h, cell));
    ASSERT_EQ(d.width, 5u * cell);
    ASSERT_EQ(d.height, 3u * cell);
    auto cell_colour = [&](int r, int c, int dx, int dy) { return d.at(c * cell + dx, r * cell + dy); };
    for (int dx : {0, cell - 1}) {
        for (int dy : {0, cell - 1}) {
            expect_colour(cell_colour(0, 0, dx, dy), colormap(0.0), "min cell");
            expect_colour(cell_colour(2, 4, dx, dy), colormap(1.0), "max cell");
            expect_colour(cell_colour(1, 2, dx, dy), kMissingColour, "NaN cell");
        }
    }
    expect_colour(cell_colour(1, 1, 1, 1), colormap(6.0 / 14.0), "value 3 of [-3, 11]");

    // An explicit range clamps: values outside take the end colours.
    h.vmin = 0;
    h.vmax = 5;
    const Decoded clamped = decode_png(heatmap_png(h, 1));
    expect_colour(clamped.at(0, 0), colormap(0.0), "below vmin");
    expect_colour(clamped.at(4, 2), colormap(1.0), "above vmax");
    expect_colour(clamped.at(0, 1), colormap(2.0 / 5.0), "value 2");
    expect_colour(clamped.at(3, 1), colormap(1.0), "value 5 = vmax");
    expect_colour(clamped.at(3, 0), colormap(0.0), "value 0 = vmin");
}

TEST(ReportPng, LogScale) {
    Heatmap h;
    h.rows = 1;
    h.cols = 5;
    h.values = {1e-4, 1e-3, 1e-2, 0.0, -1.0};
    h.log_scale = true;
    const Decoded d = decode_png(heatmap_png(h, 1));
    expect_colour(d.at(0, 0), colormap(0.0), "1e-4 = min");
    expect_colour(d.at(1, 0), colormap(0.5), "1e-3 = middle decade");
    expect_colour(d.at(2, 0), colormap(1.0), "1e-2 = max");
    expect_colour(d.at(3, 0), colormap(0.0), "0 on log scale");
    expect_colour(d.at(4, 0), colormap(0.0), "negative on log scale");
    h.vmin = 0;
    EXPECT_THROW(heatmap_png(h, 1), InvalidArgument);
}

TEST(ReportPng, WritePngFile) {
    TempDir tmp;
    Heatmap h = layer_head_scores();
    write_png(tmp / "scores.png", h, 3);
    const std::string bytes = test::read_file(tmp / "scores.png");
    const Decoded d = decode_png(std::vector<uint8_t>(bytes.begin(), bytes.end()));
    EXPECT_EQ(d.width, 8u * 3);
    EXPECT_EQ(d.height, 12u * 3);
    try {
        write_png(tmp / "no-such-dir" / "x.png", h, 3);
        FAIL() << "expected IoError";
    } catch (const IoError& e) {
        EXPECT_NE(std::string(e.what()).find("[report]"), std::string::npos) << e.what();
    }
}

TEST(ReportPng, HugeMatrixIsCapped) {
    Heatmap h;
    h.rows = h.cols = 4096;
    h.values.resize(size_t(h.rows * h.cols));
    std::mt19937 rng(1);
    std::uniform_real_distribution<double> u(0.0, 1.0);
    for (double& v : h.values) v = u(rng);  // noise: the worst case for PNG compression
    for (int64_t r = 0; r < 2; ++r)         // one full 2x2 block of NaN stays grey after averaging
        for (int64_t c = 0; c < 2; ++c) h.values[size_t(r * h.cols + c)] = NAN;
    h.values[size_t(2 * h.cols + 2)] = NAN;  // a block with one NaN averages the other three

    const ImageLayout layout = image_layout(h, 16);
    EXPECT_EQ(layout.rows, 2048);
    EXPECT_EQ(layout.cols, 2048);
    EXPECT_EQ(layout.cell_px, 1);
    const std::vector<uint8_t> png = heatmap_png(h, 16);
    EXPECT_LT(png.size(), size_t(16) << 20) << "bytes";
    const Decoded d = decode_png(png);
    EXPECT_EQ(d.width, 2048u);
    EXPECT_EQ(d.height, 2048u);
    expect_colour(d.at(0, 0), kMissingColour, "all-NaN block");
    const Rgb partial = d.at(1, 1);
    EXPECT_FALSE(partial.r == kMissingColour.r && partial.g == kMissingColour.g) << "partly NaN block";

    // Cells shrink to keep the pixel budget; long thin matrices are capped per side.
    Heatmap wide;
    wide.rows = 100;
    wide.cols = 100;
    wide.values.assign(10000, 1.0);
    EXPECT_LE(image_layout(wide, 100).width() * image_layout(wide, 100).height(), kMaxImagePixels);
    Heatmap thin;
    thin.rows = 1;
    thin.cols = 3000;
    thin.values.assign(3000, 1.0);
    const ImageLayout t = image_layout(thin, 64);
    EXPECT_EQ(t.cols, 1500);
    EXPECT_LE(t.width(), 2 * kMaxImageSide);
}

TEST(ReportPng, BadInputThrows) {
    Heatmap h;
    h.id = "bad";
    h.rows = 2;
    h.cols = 3;
    h.values = {1, 2, 3, 4, 5};
    try {
        heatmap_png(h, 1);
        FAIL() << "expected InvalidArgument";
    } catch (const InvalidArgument& e) {
        EXPECT_NE(std::string(e.what()).find("[report] heatmap 'bad'"), std::string::npos) << e.what();
    }
    h.values.push_back(6);
    EXPECT_NO_THROW(heatmap_png(h, 1));
    EXPECT_THROW(heatmap_png(h, 0), InvalidArgument);
    h.row_names = {"only one"};
    EXPECT_THROW(heatmap_png(h, 1), InvalidArgument);
    h.row_names.clear();
    h.vmin = 5;
    h.vmax = 1;
    EXPECT_THROW(heatmap_png(h, 1), InvalidArgument);
    Heatmap empty;
    EXPECT_THROW(heatmap_png(empty, 1), InvalidArgument);
    Page page("p");
    EXPECT_THROW(page.add(h), InvalidArgument);
    EXPECT_THROW(page.add_json("broken", "{\"a\": [1, 2"), InvalidArgument);
    LinePlot plot;
    plot.series = {Series{"uneven", {1, 2, 3}, {1, 2}}};
    EXPECT_THROW(page.add(plot), InvalidArgument);
}

TEST(ReportText, Base64MatchesRfc4648) {
    auto b64 = [](const std::string& s) { return base64(std::vector<uint8_t>(s.begin(), s.end())); };
    EXPECT_EQ(b64(""), "");
    EXPECT_EQ(b64("f"), "Zg==");
    EXPECT_EQ(b64("fo"), "Zm8=");
    EXPECT_EQ(b64("foo"), "Zm9v");
    EXPECT_EQ(b64("foob"), "Zm9vYg==");
    EXPECT_EQ(b64("fooba"), "Zm9vYmE=");
    EXPECT_EQ(b64("foobar"), "Zm9vYmFy");
    EXPECT_EQ(b64("\xff\xfe\xfd"), "//79");
}

TEST(ReportText, EscapesAndRepairsUtf8) {
    EXPECT_EQ(escape_html("<a href='x'>\"&\"</a>"), "&lt;a href=&#39;x&#39;&gt;&quot;&amp;&quot;&lt;/a&gt;");
    const std::string fffd = "\xEF\xBF\xBD";
    EXPECT_EQ(valid_utf8("caf\xC3\xA9 \xE2\x82\xAC \xF0\x9D\x84\x9E"), "caf\xC3\xA9 \xE2\x82\xAC \xF0\x9D\x84\x9E");
    EXPECT_EQ(valid_utf8("a\xFF" "b"), "a" + fffd + "b");
    EXPECT_EQ(valid_utf8("\xC0\xAF"), fffd + fffd);              // overlong '/'
    EXPECT_EQ(valid_utf8("\xED\xA0\x80"), fffd + fffd + fffd);   // a UTF-16 surrogate
    EXPECT_EQ(valid_utf8("\xE2\x82"), fffd);                     // truncated sequence
    EXPECT_EQ(valid_utf8("\xF4\x90\x80\x80"), fffd + fffd + fffd + fffd);  // above U+10FFFF
    EXPECT_EQ(valid_utf8(std::string("a\0b\x01\x7F", 5)), "a" + fffd + "b" + fffd + fffd);
    EXPECT_EQ(valid_utf8("tab\tnewline\n"), "tab\tnewline\n");
}

TEST(ReportPage, EscapesEveryDataString) {
    const std::string html = sample_page("{\"a\": \"</script><script>alert(1)</script>\"}").html();
    EXPECT_EQ(valid_utf8(html), html) << "page must be valid UTF-8 without control characters";
    EXPECT_EQ(html.find("<script>alert"), std::string::npos);
    EXPECT_EQ(html.find("<b>not bold</b>"), std::string::npos);
    EXPECT_EQ(html.find("<tiny>"), std::string::npos);
    EXPECT_NE(html.find("&lt;tiny&gt; &amp; &quot;model&quot;"), std::string::npos);
    EXPECT_NE(html.find("&lt;b&gt;not bold&lt;/b&gt;"), std::string::npos);
    // Exactly the scripts the builder writes: one heatmap-values block per small heatmap, one
    // JSON block, and the page script; every "</script" in data was escaped.
    size_t opens = 0, closes = 0;
    for (size_t p = html.find("<script"); p != std::string::npos; p = html.find("<script", p + 1)) ++opens;
    for (size_t p = html.find("</script"); p != std::string::npos; p = html.find("</script", p + 1)) ++closes;
    EXPECT_EQ(opens, 4u);
    EXPECT_EQ(closes, 4u);
}

TEST(ReportPage, NoNetworkReferences) {
    const std::string html = sample_page("{\"x\": 1}").html();
    EXPECT_EQ(html.find("http://"), std::string::npos);
    EXPECT_EQ(html.find("https://"), std::string::npos);
    EXPECT_EQ(html.find("//cdn"), std::string::npos);
    EXPECT_EQ(html.find("@import"), std::string::npos);
    EXPECT_EQ(html.find("url("), std::string::npos);
    const std::regex attr(R"re(\s(src|href)="([^"]*)")re");
    int count = 0;
    for (auto it = std::sregex_iterator(html.begin(), html.end(), attr); it != std::sregex_iterator(); ++it) {
        const std::string value = (*it)[2];
        EXPECT_TRUE(value.rfind("data:", 0) == 0 || value.rfind("#", 0) == 0) << value;
        ++count;
    }
    EXPECT_GT(count, 5);
    EXPECT_NE(html.find("Content-Security-Policy"), std::string::npos);
}

TEST(ReportPage, HeatmapValuesForTooltipOnlyWhenSmall) {
    Page small("s");
    small.add(attention_pattern(kHostileTokens));
    const std::string html = small.html();
    const std::string marker = "<script type=\"application/json\" class=\"hm-data\">";
    const size_t start = html.find(marker);
    ASSERT_NE(start, std::string::npos);
    const size_t end = html.find("</script>", start);
    const auto data = nlohmann::json::parse(html.substr(start + marker.size(), end - start - marker.size()));
    const int64_t t = int64_t(kHostileTokens.size());
    EXPECT_EQ(data["rows"], t);
    EXPECT_EQ(data["cols"], t);
    ASSERT_EQ(data["v"].size(), size_t(t * t));
    EXPECT_TRUE(data["v"][1].is_null()) << "masked cell";
    EXPECT_EQ(data["cn"][2], " <script>alert(1)</script>");
    EXPECT_EQ(data["cn"][10], "\xEF\xBF\xBD\xEF\xBF\xBD") << "invalid UTF-8 replaced";

    Heatmap big;
    big.rows = big.cols = 300;  // 90000 cells > kMaxTooltipCells
    big.values.assign(90000, 0.5);
    Page large("l");
    large.add(big);
    EXPECT_EQ(large.html().find(marker), std::string::npos);
}

TEST(ReportPage, LinePlotAxes) {
    Page page("axes");
    LinePlot p;
    p.id = "loglog";
    p.log_x = p.log_y = true;
    p.series = {Series{"s", {1, 10, 100, 1000}, {1e-6, 1e-4, 0.0, 1}}};
    page.add(p);
    const std::string html = page.html();
    for (const char* tick : {">1e-6<", ">0.001<", ">1<", ">1000<", ">100<"})
        EXPECT_NE(html.find(tick), std::string::npos) << tick;
    // y = 0 cannot be drawn on a log axis: the line breaks there (two sub-paths).
    const size_t d = html.find("<path class=\"series\" d=\"");
    ASSERT_NE(d, std::string::npos);
    const std::string path = html.substr(d, html.find('"', d + 24) - d);
    EXPECT_EQ(std::count(path.begin(), path.end(), 'M'), 2) << path;

    LinePlot lin;
    lin.series = {Series{"", {0, 1, 2}, {0.1, 0.25, 0.3}}};
    Page page2("linear");
    page2.add(lin);
    const std::string html2 = page2.html();
    for (const char* tick : {">0.10<", ">0.30<", ">0.0<", ">2.0<"})
        EXPECT_NE(html2.find(tick), std::string::npos) << tick;
}

TEST(ReportPage, WriteFailsWithIoError) {
    TempDir tmp;
    Page page("p");
    try {
        page.write(tmp / "missing" / "report.html");
        FAIL() << "expected IoError";
    } catch (const IoError& e) {
        EXPECT_NE(std::string(e.what()).find("[report] cannot open"), std::string::npos) << e.what();
    }
}

TEST(ReportBrowser, HelperSeparatesConsoleLevels) {
    REQUIRE_CHROMIUM();
    TempDir tmp;
    test::write_file(tmp / "log.html",
                     "<!DOCTYPE html><html><body><script>console.log('fine'); console.warn('meh');"
                     "document.documentElement.dataset.rendered = 'yes';</script></body></html>");
    test::write_file(tmp / "error.html",
                     "<!DOCTYPE html><html><body><script>console.error('boom-error');"
                     "</script><script>null.x;</script></body></html>");
    const test::PageCheck good = test::check_page_in_chromium(tmp / "log.html");
    ASSERT_TRUE(good.ran) << good.error;
    EXPECT_EQ(good.rendered, "yes");
    EXPECT_TRUE(good.console_errors.empty());
    const test::PageCheck bad = test::check_page_in_chromium(tmp / "error.html");
    ASSERT_TRUE(bad.ran) << bad.error;
    ASSERT_EQ(bad.console_errors.size(), 2u);
    EXPECT_NE(bad.console_errors[0].find("boom-error"), std::string::npos) << bad.console_errors[0];
    EXPECT_NE(bad.console_errors[1].find("TypeError"), std::string::npos) << bad.console_errors[1];
    const test::PageCheck missing = test::check_page_in_chromium(tmp / "absent.html");
    EXPECT_FALSE(missing.ran);
}

TEST(ReportBrowser, PageRendersEveryFigure) {
    REQUIRE_CHROMIUM();
    TempDir tmp;
    const nlohmann::json probe = {
        {"model", "tiny <llama> & \"friends\""},
        {"sink_mass", {0.91, 0.5, 0.25}},
        {"tokens", {"</script>", "<!--", "caf\xC3\xA9"}},
    };
    sample_page(probe.dump()).write(tmp / "report.html");
    const char* keep = std::getenv("ATTNLAB_REPORT_SCREENSHOT");  // to look at the layout by hand
    const std::filesystem::path shot = keep && *keep ? std::filesystem::path(keep) : tmp / "shot.png";
    // Hover over cell (3, 2) of the pattern: the tooltip names both tokens and the value.
    const std::string hover = R"JS((() => {
        const fig = document.getElementById('pattern-L0H1');
        const img = fig.querySelector('img.hm-img');
        const box = img.getBoundingClientRect();
        const n = 14, r = 3, c = 2;
        img.dispatchEvent(new MouseEvent('mousemove', {bubbles: true,
            clientX: box.left + (c + 0.5) * box.width / n, clientY: box.top + (r + 0.5) * box.height / n}));
        return fig.querySelector('.hm-tip').textContent;
    })())JS";
    const test::PageCheck check = test::check_page_in_chromium(tmp / "report.html", shot, hover);
    ASSERT_TRUE(check.ran) << check.error;
    EXPECT_EQ(check.script_result,
              "query \" &amp;\"\nkey \" <script>alert(1)</script>\"\nattention 0.08571");
    EXPECT_EQ(check.rendered, "4/4");
    EXPECT_TRUE(check.console_errors.empty()) << ::testing::PrintToString(check.console_errors);
    for (const char* id : {"bos-mass", "sink-by-layer", "pattern-L0H1", "position-bias", "top-heads"})
        EXPECT_NE(check.dom.find(std::string("id=\"") + id + "\""), std::string::npos) << id;
    EXPECT_NE(check.dom.find("<div id=\"render-error\" class=\"banner\" hidden=\"\">"), std::string::npos);
    const std::string embedded = json_script_text(check.dom, "json-probe-results");
    ASSERT_FALSE(embedded.empty());
    EXPECT_EQ(nlohmann::json::parse(embedded), probe);
    EXPECT_TRUE(check.error.empty()) << check.error;
    const std::string png = test::read_file(shot);
    EXPECT_EQ(png.substr(1, 3), "PNG");
}

TEST(ReportBrowser, BrokenPagesAreDetected) {
    REQUIRE_CHROMIUM();
    TempDir tmp;
    const std::string good = sample_page("{}").html();

    // An image that does not decode: the render check counts it and logs an error.
    std::string broken_image = good;
    const std::string data_uri = "data:image/png;base64,";
    const size_t at = broken_image.find(data_uri);
    ASSERT_NE(at, std::string::npos);
    broken_image.replace(at + data_uri.size(), 8, "AAAAAAAA");
    test::write_file(tmp / "image.html", broken_image);
    const test::PageCheck image = test::check_page_in_chromium(tmp / "image.html");
    ASSERT_TRUE(image.ran) << image.error;
    EXPECT_EQ(image.rendered, "3/4");
    EXPECT_FALSE(image.console_errors.empty());
    EXPECT_NE(image.dom.find("figures failed to render: bos-mass"), std::string::npos);

    // A script that throws.
    std::string bad_script = good;
    bad_script.insert(bad_script.find("</main>"), "<script>undefined_function_call();</script>");
    test::write_file(tmp / "script.html", bad_script);
    const test::PageCheck script = test::check_page_in_chromium(tmp / "script.html");
    ASSERT_TRUE(script.ran) << script.error;
    EXPECT_EQ(script.rendered, "4/4");
    ASSERT_EQ(script.console_errors.size(), 1u);
    EXPECT_NE(script.console_errors[0].find("undefined_function_call"), std::string::npos);

    // An external reference inside a figure: blocked by the page's CSP and not rendered.
    std::string external = good;
    external.insert(external.find("</figure>"), "<img src=\"missing.png\" alt=\"missing\">");
    test::write_file(tmp / "external.html", external);
    const test::PageCheck ext = test::check_page_in_chromium(tmp / "external.html");
    ASSERT_TRUE(ext.ran) << ext.error;
    EXPECT_EQ(ext.rendered, "4/5");
    ASSERT_GE(ext.console_errors.size(), 2u);
    EXPECT_NE(ext.console_errors[0].find("Content Security Policy"), std::string::npos) << ext.console_errors[0];
}

}  // namespace
}  // namespace attnlab::report
