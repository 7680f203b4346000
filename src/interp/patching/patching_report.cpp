// The HTML page of an ablation sweep (patching.h): per mode and metric value a layer × head
// heatmap of single-head ablations, the per-layer table and the JSON behind them.
#include <attnlab/error.h>
#include <attnlab/patching.h>
#include <attnlab/report.h>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace attnlab {

namespace fs = std::filesystem;

fs::path write_ablation_report(const AblationSweepResult& result, const std::string& model_name, const fs::path& dir) {
    std::error_code ec;
    fs::create_directories(dir, ec);
    ATTNLAB_CHECK(!ec && fs::is_directory(dir), IoError, "[patch] cannot create the report directory {}: {}", dir.string(),
                  ec ? ec.message() : "not a directory");
    int64_t n_layer = 0, n_head = 0;
    for (const AblationEntry& e : result.heads) {
        n_layer = std::max(n_layer, e.layer + 1);
        n_head = std::max(n_head, e.head + 1);
    }
    for (const AblationEntry& e : result.layers) n_layer = std::max(n_layer, e.layer + 1);

    report::Page page(fmt::format("attnlab patch ablate: {}", model_name));
    std::string baseline;
    for (size_t k = 0; k < result.baseline.names.size(); ++k)
        baseline += fmt::format("{}{} {:.6g}", k ? ", " : "", result.baseline.names[k], result.baseline.values[k]);
    page.add_section("Ablation sweep",
                     fmt::format("{}: every head alone, and every layer's heads together, ablated by the modes {}. "
                                 "Baseline (nothing ablated): {}.{}",
                                 model_name, fmt::join(result.modes, ", "), baseline,
                                 result.interrupted ? " Interrupted: the figures show the ablations that ran." : ""));

    if (!result.heads.empty()) {
        page.add_section("Single heads", "Each cell: the metric with that one head ablated (grey: not run).");
        for (size_t m = 0; m < result.modes.size(); ++m)
            for (size_t k = 0; k < result.baseline.names.size(); ++k) {
                report::Heatmap h;
                const std::string key = ablation_result_key(result.modes[m]), name = result.baseline.names[k];
                h.id = fmt::format("heads-{}-{}", key, name);
                h.title = fmt::format("{}, {}", name, key);
                h.caption = fmt::format("{} with one head ablated ({}); baseline {:.6g}", name, result.modes[m],
                                        result.baseline.values[k]);
                h.rows = n_layer;
                h.cols = n_head;
                h.row_label = "layer";
                h.col_label = "head";
                h.value_label = name;
                h.values.assign(static_cast<size_t>(n_layer * n_head), NAN);
                for (const AblationEntry& e : result.heads)
                    if (m < e.by_mode.size()) h.values[e.layer * n_head + e.head] = e.by_mode[m].values.at(k);
                h.log_scale = name == "loss";  // losses of single heads span orders of magnitude
                if (name == "accuracy") {
                    h.vmin = 0.0;
                    h.vmax = 1.0;
                }
                page.add(h);
            }
    }
    if (!result.layers.empty()) {
        page.add_section("Whole layers", "Every head of the layer ablated together.");
        report::Table table;
        table.id = "whole-layers";
        table.title = "all heads of a layer ablated";
        table.header = {"layer"};
        for (const std::string& mode : result.modes)
            for (const std::string& name : result.baseline.names)
                table.header.push_back(fmt::format("{} {}", ablation_result_key(mode), name));
        std::vector<std::string> base_row = {"none (baseline)"};
        for (size_t m = 0; m < result.modes.size(); ++m)
            for (double v : result.baseline.values) base_row.push_back(fmt::format("{:.6g}", v));
        table.rows.push_back(base_row);
        for (const AblationEntry& e : result.layers) {
            std::vector<std::string> row = {std::to_string(e.layer)};
            for (const MetricValues& v : e.by_mode)
                for (double x : v.values) row.push_back(fmt::format("{:.6g}", x));
            table.rows.push_back(std::move(row));
        }
        page.add(table);
    }
    const std::string json_text = result.to_json();
    page.add_section("Data", "Every number behind the figures (the layout of ablations.json).");
    page.add_json("ablations", json_text);

    const fs::path html = dir / "ablations.html", json = dir / "ablations.json";
    page.write(html);
    std::FILE* f = std::fopen(json.c_str(), "wb");
    ATTNLAB_CHECK(f != nullptr, IoError, "[patch] cannot write {}", json.string());
    const size_t written = std::fwrite(json_text.data(), 1, json_text.size(), f);
    const bool ok = std::fclose(f) == 0 && written == json_text.size();
    ATTNLAB_CHECK(ok, IoError, "[patch] cannot write {}", json.string());
    return html;
}

}  // namespace attnlab
