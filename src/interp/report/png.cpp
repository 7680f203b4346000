// Heatmap → PNG: colour map, colour range, size guards (block averaging, cell shrinking) and the
// libpng encoder writing to memory.
#include <attnlab/error.h>
#include <attnlab/report.h>

#include <png.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <csetjmp>
#include <cstring>
#include <fstream>
#include <limits>

namespace attnlab::report {

namespace {

// Control points of the colour map, chosen by hand so that CIE L* rises almost linearly
// (8 → 24 → 40 → 55 → 69 → 82 → 94) while the hue turns violet → blue → teal → green → yellow:
// ordered for the eye and still readable when printed in grey.
struct ControlPoint {
    double t;
    double r, g, b;
};
constexpr std::array<ControlPoint, 7> kControlPoints = {{
    {0.00, 24, 15, 62},
    {0.18, 68, 36, 132},
    {0.36, 44, 94, 170},
    {0.54, 30, 146, 150},
    {0.72, 82, 190, 105},
    {0.88, 178, 220, 70},
    {1.00, 250, 240, 120},
}};

std::string heatmap_name(const Heatmap& h) { return h.id.empty() ? h.title : h.id; }

void validate(const Heatmap& h) {
    ATTNLAB_CHECK(h.rows > 0 && h.cols > 0, InvalidArgument,
                  "[report] heatmap '{}': shape {}x{} is empty or negative", heatmap_name(h), h.rows,
                  h.cols);
    ATTNLAB_CHECK(h.rows <= (int64_t(1) << 31) / h.cols, InvalidArgument,
                  "[report] heatmap '{}': shape {}x{} is too large", heatmap_name(h), h.rows, h.cols);
    ATTNLAB_CHECK(int64_t(h.values.size()) == h.rows * h.cols, InvalidArgument,
                  "[report] heatmap '{}': {} values for shape {}x{} (expected {})", heatmap_name(h),
                  h.values.size(), h.rows, h.cols, h.rows * h.cols);
    ATTNLAB_CHECK(h.row_names.empty() || int64_t(h.row_names.size()) == h.rows, InvalidArgument,
                  "[report] heatmap '{}': {} row names for {} rows", heatmap_name(h),
                  h.row_names.size(), h.rows);
    ATTNLAB_CHECK(h.col_names.empty() || int64_t(h.col_names.size()) == h.cols, InvalidArgument,
                  "[report] heatmap '{}': {} column names for {} columns", heatmap_name(h),
                  h.col_names.size(), h.cols);
}

// (rows', cols') block means of a (rows, cols) matrix; NaN cells are left out of a block's mean
// and a block of NaN only stays NaN. Averaging (rather than picking one cell per block) keeps
// thin features such as a one-token-wide attention sink column visible.
std::vector<double> block_average(const Heatmap& h, int64_t out_rows, int64_t out_cols) {
    const int64_t fr = (h.rows + out_rows - 1) / out_rows, fc = (h.cols + out_cols - 1) / out_cols;
    std::vector<double> sum(size_t(out_rows * out_cols), 0.0);
    std::vector<int64_t> count(sum.size(), 0);
    for (int64_t r = 0; r < h.rows; ++r) {
        const double* row = h.values.data() + r * h.cols;
        double* out = sum.data() + (r / fr) * out_cols;
        int64_t* n = count.data() + (r / fr) * out_cols;
        for (int64_t c = 0; c < h.cols; ++c) {
            if (std::isnan(row[c])) continue;
            out[c / fc] += row[c];
            n[c / fc] += 1;
        }
    }
    for (size_t i = 0; i < sum.size(); ++i)
        sum[i] = count[i] > 0 ? sum[i] / double(count[i]) : std::numeric_limits<double>::quiet_NaN();
    return sum;
}

struct PngErrorState {
    char message[256] = {};
};

void on_png_error(png_structp png, png_const_charp msg) {
    auto* state = static_cast<PngErrorState*>(png_get_error_ptr(png));
    std::snprintf(state->message, sizeof state->message, "%s", msg ? msg : "unknown error");
    png_longjmp(png, 1);
}

void on_png_warning(png_structp, png_const_charp) {}

void on_png_write(png_structp png, png_bytep data, png_size_t size) {
    auto* out = static_cast<std::vector<uint8_t>*>(png_get_io_ptr(png));
    try {
        out->insert(out->end(), data, data + size);
    } catch (...) {
        png_error(png, "out of memory while writing the PNG");  // longjmps; never unwinds C frames
    }
}

void on_png_flush(png_structp) {}

// The libpng calls, isolated in a function whose locals are all trivial: a libpng error
// longjmps back to the setjmp here, which must not skip any C++ destructor.
bool encode_rgb(png_structp png, png_infop info, uint32_t width, uint32_t height, png_bytepp rows) {
    if (setjmp(png_jmpbuf(png))) return false;
    png_set_IHDR(png, info, width, height, 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    png_write_image(png, rows);
    png_write_end(png, info);
    return true;
}

}  // namespace

Rgb colormap(double t) {
    if (std::isnan(t)) return kMissingColour;
    t = std::clamp(t, 0.0, 1.0);
    size_t i = 1;
    while (i + 1 < kControlPoints.size() && t > kControlPoints[i].t) ++i;
    const ControlPoint& a = kControlPoints[i - 1];
    const ControlPoint& b = kControlPoints[i];
    const double f = (t - a.t) / (b.t - a.t);
    auto mix = [f](double x, double y) { return uint8_t(std::lround(x + (y - x) * f)); };
    return {mix(a.r, b.r), mix(a.g, b.g), mix(a.b, b.b)};
}

double ColourRange::normalise(double v) const {
    if (std::isnan(v)) return v;
    if (log_scale) {
        if (v <= 0) return 0.0;
        v = std::log10(v);
        const double a = std::log10(lo), b = std::log10(hi);
        return b > a ? std::clamp((v - a) / (b - a), 0.0, 1.0) : 0.5;
    }
    return hi > lo ? std::clamp((v - lo) / (hi - lo), 0.0, 1.0) : 0.5;
}

ColourRange colour_range(const Heatmap& h) {
    validate(h);
    ColourRange range;
    range.log_scale = h.log_scale;
    double lo = std::numeric_limits<double>::infinity(), hi = -lo;
    for (double v : h.values) {
        if (!std::isfinite(v) || (h.log_scale && v <= 0)) continue;
        lo = std::min(lo, v);
        hi = std::max(hi, v);
    }
    if (lo > hi) {  // no usable value at all: any range draws the same (NaN grey / lowest colour)
        lo = h.log_scale ? 1.0 : 0.0;
        hi = h.log_scale ? 10.0 : 1.0;
    }
    if (!std::isnan(h.vmin)) lo = h.vmin;
    if (!std::isnan(h.vmax)) hi = h.vmax;
    ATTNLAB_CHECK(std::isfinite(lo) && std::isfinite(hi) && lo <= hi, InvalidArgument,
                  "[report] heatmap '{}': colour range [{}, {}] is not an ordered finite range",
                  heatmap_name(h), lo, hi);
    ATTNLAB_CHECK(!h.log_scale || lo > 0, InvalidArgument,
                  "[report] heatmap '{}': log colour scale needs vmin > 0, got {}", heatmap_name(h), lo);
    range.lo = lo;
    range.hi = hi;
    return range;
}

ImageLayout image_layout(const Heatmap& h, int cell_px) {
    validate(h);
    ATTNLAB_CHECK(cell_px >= 1, InvalidArgument, "[report] heatmap '{}': cell_px must be >= 1, got {}",
                  heatmap_name(h), cell_px);
    ImageLayout layout;
    auto shrink = [](int64_t n) {
        const int64_t factor = (n + kMaxImageSide - 1) / kMaxImageSide;
        return (n + factor - 1) / factor;
    };
    layout.rows = shrink(h.rows);
    layout.cols = shrink(h.cols);
    // Largest cell size within both the pixel budget and a 2*kMaxImageSide side.
    int64_t cell = cell_px;
    const int64_t longest = std::max(layout.rows, layout.cols);
    cell = std::min(cell, std::max<int64_t>(1, 2 * kMaxImageSide / longest));
    while (cell > 1 && layout.rows * layout.cols * cell * cell > kMaxImagePixels) --cell;
    layout.cell_px = int(cell);
    return layout;
}

std::vector<uint8_t> heatmap_png(const Heatmap& h, int cell_px) {
    const ColourRange range = colour_range(h);
    const ImageLayout layout = image_layout(h, cell_px);
    std::vector<double> reduced;
    const std::vector<double>* cells = &h.values;  // (layout.rows, layout.cols)
    if (layout.downsampled(h)) {
        reduced = block_average(h, layout.rows, layout.cols);
        cells = &reduced;
    }

    // One RGB line per cell row; the cell_px pixel rows of a cell row share it.
    const int64_t width = layout.width(), height = layout.height();
    std::vector<uint8_t> lines(size_t(layout.rows * width * 3));
    for (int64_t r = 0; r < layout.rows; ++r) {
        uint8_t* line = lines.data() + r * width * 3;
        for (int64_t c = 0; c < layout.cols; ++c) {
            const Rgb rgb = colormap(range.normalise((*cells)[size_t(r * layout.cols + c)]));
            for (int64_t p = 0; p < layout.cell_px; ++p) {
                uint8_t* px = line + (c * layout.cell_px + p) * 3;
                px[0] = rgb.r;
                px[1] = rgb.g;
                px[2] = rgb.b;
            }
        }
    }
    std::vector<png_bytep> row_pointers(static_cast<size_t>(height));
    for (int64_t y = 0; y < height; ++y)
        row_pointers[size_t(y)] = lines.data() + (y / layout.cell_px) * width * 3;

    std::vector<uint8_t> out;
    PngErrorState error;
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &error, on_png_error, on_png_warning);
    ATTNLAB_CHECK(png != nullptr, Error, "[report] png_create_write_struct failed");
    png_infop info = png_create_info_struct(png);
    if (info == nullptr) {
        png_destroy_write_struct(&png, nullptr);
        throw Error("[report] png_create_info_struct failed");
    }
    png_set_write_fn(png, &out, on_png_write, on_png_flush);
    const bool ok = encode_rgb(png, info, uint32_t(width), uint32_t(height), row_pointers.data());
    png_destroy_write_struct(&png, &info);
    ATTNLAB_CHECK(ok, Error, "[report] heatmap '{}': PNG encoding failed: {}", heatmap_name(h),
                  error.message);
    return out;
}

void write_png(const std::filesystem::path& file, const Heatmap& h, int cell_px) {
    const std::vector<uint8_t> bytes = heatmap_png(h, cell_px);
    std::ofstream out(file, std::ios::binary | std::ios::trunc);
    ATTNLAB_CHECK(out.good(), IoError, "[report] cannot open {} for writing: {}", file.string(),
                  std::strerror(errno));
    out.write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
    out.close();
    ATTNLAB_CHECK(!out.fail(), IoError, "[report] writing {} failed: {}", file.string(),
                  std::strerror(errno));
}

std::string base64(const std::vector<uint8_t>& bytes) {
    static constexpr char kAlphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string out;
    out.reserve((bytes.size() + 2) / 3 * 4);
    size_t i = 0;
    for (; i + 3 <= bytes.size(); i += 3) {
        const uint32_t v = uint32_t(bytes[i]) << 16 | uint32_t(bytes[i + 1]) << 8 | bytes[i + 2];
        out += kAlphabet[v >> 18];
        out += kAlphabet[(v >> 12) & 63];
        out += kAlphabet[(v >> 6) & 63];
        out += kAlphabet[v & 63];
    }
    if (const size_t rest = bytes.size() - i; rest > 0) {
        const uint32_t v = uint32_t(bytes[i]) << 16 | (rest == 2 ? uint32_t(bytes[i + 1]) << 8 : 0);
        out += kAlphabet[v >> 18];
        out += kAlphabet[(v >> 12) & 63];
        out += rest == 2 ? kAlphabet[(v >> 6) & 63] : '=';
        out += '=';
    }
    return out;
}

}  // namespace attnlab::report
