// `attnlab report` end to end on the embedded tinylm: the files it writes, the JSON behind the
// figures, and the page in a real headless Chromium (every figure rendered, no console error).
#include "browser.h"
#include "test_support.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <map>

namespace attnlab {
namespace {

// Opens the page in headless Chromium: no console error and every figure rendered. Returns the
// number of figures (-1 after a failure).
int rendered_figures(const std::filesystem::path& html, const std::filesystem::path& screenshot) {
    if (test::chromium_path().empty()) {
        ADD_FAILURE() << "chromium not installed (scripts/setup.sh installs it)";
        return -1;
    }
    const test::PageCheck page = test::check_page_in_chromium(html, screenshot);
    if (!page.ran) {
        ADD_FAILURE() << page.error;
        return -1;
    }
    for (const std::string& e : page.console_errors) ADD_FAILURE() << "console error: " << e;
    const size_t slash = page.rendered.find('/');  // "ok/total"
    if (slash == std::string::npos) {
        ADD_FAILURE() << "rendered = '" << page.rendered << "'";
        return -1;
    }
    EXPECT_EQ(page.rendered.substr(0, slash), page.rendered.substr(slash + 1)) << "figures not rendered";
    return std::stoi(page.rendered.substr(slash + 1));
}

TEST(ReportCommand, TinylmReportLoadsInChromium) {
    test::TempDir tmp;
    const auto out = tmp / "report";
    const std::string model = (test::source_dir() / "models" / "tinylm").string();
    const auto r = test::run_cli({"report", "-m", model, "-p", "And God said, Let there be light: & <b>light</b>", "-o",
                                  out.string()});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    ASSERT_TRUE(std::filesystem::exists(out / "report.html"));
    // One pattern PNG per (layer, head): tinylm has 6 x 8.
    int pngs = 0;
    for (const auto& entry : std::filesystem::directory_iterator(out / "patterns")) pngs += entry.path().extension() == ".png";
    EXPECT_EQ(pngs, 48);
    const nlohmann::json j = nlohmann::json::parse(test::read_file(out / "report.json"));
    EXPECT_EQ(j["heads_prompt"]["head_scores"].size(), 6u);
    EXPECT_EQ(j["heads_repeated_random"]["repeat"], 50);
    EXPECT_FALSE(j["interrupted"].get<bool>());

    const std::string html = test::read_file(out / "report.html");
    EXPECT_EQ(html.find("<b>light</b>"), std::string::npos) << "the prompt must be escaped";
    EXPECT_EQ(html.find("http://"), std::string::npos);
    EXPECT_EQ(html.find("https://"), std::string::npos);

    EXPECT_GE(rendered_figures(out / "report.html", tmp / "shot.png"), 48 + 6);  // patterns + head-score heatmaps
    EXPECT_GT(std::filesystem::file_size(tmp / "shot.png"), 10000u);
}

// With --intervene the page shows, for exactly the heads the intervention changes, the pattern
// before, after and the difference, and the JSON says what changed.
TEST(ReportCommand, InterventionSectionShowsBeforeAndAfter) {
    test::TempDir tmp;
    const auto out = tmp / "report";
    const std::string model = (test::source_dir() / "models" / "tinylm").string();
    test::write_file(tmp / "spec.json", R"({"interventions": [
        {"type": "ablate", "mode": "bos", "heads": "2:3"},
        {"type": "ablate", "mode": "uniform", "heads": "4:0-1"}]})");
    const auto r = test::run_cli({"report", "-m", model, "-p", "And God said, Let there be light", "-o", out.string(),
                                  "--repeat-block", "0", "--intervene", (tmp / "spec.json").string()});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const nlohmann::json j = nlohmann::json::parse(test::read_file(out / "report.json"));
    const nlohmann::json& iv = j["intervention"];
    ASSERT_EQ(iv["description"].size(), 2u);
    EXPECT_EQ(iv["description"][0], "ablate bos 2:3");
    // Changed: the edited heads and heads downstream of them (layers 3..), never an earlier one.
    std::map<std::pair<int, int>, double> changed;
    for (const auto& h : iv["changed_heads"])
        changed[{h["layer"].get<int>(), h["head"].get<int>()}] = h["bos_mass_after"].get<double>();
    for (const auto& [head, bos] : changed) EXPECT_TRUE(head.first > 2 || head == std::make_pair(2, 3)) << head.first << ":" << head.second;
    ASSERT_TRUE(changed.count({2, 3}) && changed.count({4, 0}) && changed.count({4, 1}));
    EXPECT_NEAR((changed[{2, 3}]), 1.0, 1e-6);  // one-hot on BOS
    EXPECT_TRUE(iv["next_token_before"].contains("text"));

    EXPECT_GE(rendered_figures(out / "report.html", tmp / "shot.png"), 48 + 5 + 1 + 6 * 3);  // + overview, 6 × (before, after, diff)
}

// Issue 5: ACT and VAR end to end on tinylm, the page showing the attention before and after.
TEST(ReportCommand, ActAndVarOnTinylm) {
    test::TempDir tmp;
    const auto out = tmp / "report";
    const std::string model = (test::source_dir() / "models" / "tinylm").string();
    test::write_file(tmp / "spec.json", R"({"interventions": [
        {"type": "act", "heads": "2-5:*"},
        {"type": "var", "heads": "2-4:*", "segment": "image", "tau": 4}]})");
    const auto r = test::run_cli({"report", "-m", model, "-p",
                                  "And the LORD said unto Moses, Behold, I have hearkened unto thee, and the people", "-o",
                                  out.string(), "--repeat-block", "0", "--segment", "image=3:12", "--intervene",
                                  (tmp / "spec.json").string()});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const nlohmann::json j = nlohmann::json::parse(test::read_file(out / "report.json"));
    const nlohmann::json& iv = j["intervention"];
    ASSERT_EQ(iv["description"].size(), 2u);
    EXPECT_EQ(iv["description"][0].get<std::string>().rfind("act 2:0", 0), 0u);
    EXPECT_EQ(iv["description"][1].get<std::string>().rfind("var 2:0", 0), 0u);
    int layer2 = 0;
    for (const auto& h : iv["changed_heads"]) {
        EXPECT_GE(h["layer"].get<int>(), 2);  // nothing before the first edited layer moves
        layer2 += h["layer"].get<int>() == 2;
    }
    EXPECT_GT(layer2, 0);
    rendered_figures(out / "report.html", tmp / "shot.png");
}

TEST(ReportCommand, BadInputIsOneErrorLine) {
    test::TempDir tmp;
    const std::string model = (test::source_dir() / "models" / "tinylm").string();
    auto r = test::run_cli({"report", "-m", model, "-o", (tmp / "r").string()});  // no prompt
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_NE(r.err.find("attnlab: error:"), std::string::npos) << r.err;
    test::write_file(tmp / "file", "x");
    r = test::run_cli({"report", "-m", model, "-p", "hello", "-o", (tmp / "file" / "sub").string()});  // not a dir
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_NE(r.err.find("[report]"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace attnlab
