// `attnlab patch` end to end: the ablation sweep's JSON reproduces the fixtures' ablations.json to
// 1e-6 and its HTML report renders in a real headless Chromium; the head search finds layer-1
// heads; activation / path patching and causal tracing run on a random model; bad input is one
// error line.
#include "browser.h"
#include "test_support.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

namespace attnlab {
namespace {

using nlohmann::json;

std::filesystem::path induction_dir() { return test::fixtures_dir() / "models" / "induction-tiny"; }

void expect_matches_ablations(const json& got) {
    const json want = json::parse(test::read_file(induction_dir() / "ablations.json"));
    auto expect_values = [](const json& g, const json& w, const std::string& what) {
        for (const char* key : {"accuracy", "loss"})
            EXPECT_NEAR(g.at(key).get<double>(), w.at(key).get<double>(), 1e-6) << what << " " << key;
    };
    expect_values(got["baseline"], want["baseline"], "baseline");
    ASSERT_EQ(got["heads"].size(), want["heads"].size());
    for (size_t k = 0; k < want["heads"].size(); ++k) {
        EXPECT_EQ(got["heads"][k]["layer"], want["heads"][k]["layer"]);
        EXPECT_EQ(got["heads"][k]["head"], want["heads"][k]["head"]);
        for (const char* kind : {"zero_output", "uniform_attention"})
            expect_values(got["heads"][k][kind], want["heads"][k][kind], "head " + std::to_string(k) + " " + kind);
    }
    ASSERT_EQ(got["all_heads_of_layer"].size(), want["all_heads_of_layer"].size());
    for (size_t k = 0; k < want["all_heads_of_layer"].size(); ++k) {
        EXPECT_EQ(got["all_heads_of_layer"][k]["layer"], want["all_heads_of_layer"][k]["layer"]);
        for (const char* kind : {"zero_output", "uniform_attention"})
            expect_values(got["all_heads_of_layer"][k][kind], want["all_heads_of_layer"][k][kind],
                          "layer " + std::to_string(k) + " " + kind);
    }
}

TEST(PatchCli, AblateReproducesAblationsJsonAndTheReportRenders) {
    test::TempDir tmp;
    const auto r = test::run_cli({"patch", "ablate", "-m", induction_dir().string(), "--input",
                                  (induction_dir() / "eval_batch.safetensors").string(), "--modes", "zero,uniform",
                                  "--json", (tmp / "ablations.json").string(), "--report", (tmp / "report").string()});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE(r.out.find("baseline: accuracy 1"), std::string::npos) << r.out;
    const json got = json::parse(test::read_file(tmp / "ablations.json"));
    expect_matches_ablations(got);
    EXPECT_FALSE(got["interrupted"].get<bool>());
    // The report directory holds the same JSON, and the page embeds it.
    expect_matches_ablations(json::parse(test::read_file(tmp / "report" / "ablations.json")));
    const auto html_file = tmp / "report" / "ablations.html";
    const std::string html = test::read_file(html_file);
    EXPECT_NE(html.find("json-ablations"), std::string::npos);
    EXPECT_EQ(html.find("http://"), std::string::npos);
    EXPECT_EQ(html.find("https://"), std::string::npos);

    ASSERT_FALSE(test::chromium_path().empty()) << "chromium not installed (scripts/setup.sh installs it)";
    // The per-layer table as a reader sees it: layer 1 with every head made uniform.
    const test::PageCheck page = test::check_page_in_chromium(
        html_file, tmp / "shot.png",
        "Array.from(document.querySelectorAll('table tr')).map(r => r.innerText.replace(/\\s+/g, ' ')).join('\\n')");
    ASSERT_TRUE(page.ran) << page.error;
    for (const std::string& e : page.console_errors) ADD_FAILURE() << "console error: " << e;
    const size_t slash = page.rendered.find('/');
    ASSERT_NE(slash, std::string::npos) << "rendered = '" << page.rendered << "'";
    EXPECT_EQ(page.rendered.substr(0, slash), page.rendered.substr(slash + 1));
    EXPECT_GE(std::stoi(page.rendered.substr(slash + 1)), 4);  // 2 modes x 2 values of layer x head heatmaps
    EXPECT_NE(page.script_result.find("1 0.00439453 9.81351 0.0078125 7.73478"), std::string::npos) << page.script_result;
    EXPECT_GT(std::filesystem::file_size(tmp / "shot.png"), 10000u);
}

TEST(PatchCli, SearchFindsLayerOneHeads) {
    test::TempDir tmp;
    const auto r = test::run_cli({"patch", "search", "-m", induction_dir().string(), "--input",
                                  (induction_dir() / "eval_batch.safetensors").string(), "--mode", "uniform", "--below",
                                  "0.5", "--json", (tmp / "search.json").string()});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE(r.out.find("(target reached)"), std::string::npos) << r.out;
    const json got = json::parse(test::read_file(tmp / "search.json"));
    EXPECT_TRUE(got["reached_target"].get<bool>());
    ASSERT_FALSE(got["heads"].empty());
    for (const json& h : got["heads"]) EXPECT_EQ(h["layer"], 1) << got.dump();
    EXPECT_LT(got["heads"].back()["objective"][0].get<double>(), 0.5);
}

TEST(PatchCli, PatchingSubcommandsOnARandomModel) {
    test::TempDir tmp;
    test::random_model(tmp);
    const std::string model = (tmp / "random-model").string();
    const std::string clean = "0,5,17,3,42,9,5,17,3,61,2", corrupted = "0,5,28,3,42,32,5,17,3,61,2";
    auto r = test::run_cli({"patch", "activation", "-m", model, "--clean-ids", clean, "--corrupted-ids", corrupted,
                            "--answer-id", "7", "--distractor-id", "9", "--positions", "2,5,10", "--json",
                            (tmp / "act.json").string()});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    json j = json::parse(test::read_file(tmp / "act.json"));
    EXPECT_EQ(j["entries"].size(), 3u * 4u * 3u);
    EXPECT_EQ(j["metric"], "logit_diff");
    r = test::run_cli({"patch", "activation", "-m", model, "--clean-ids", clean, "--corrupted-ids", corrupted,
                       "--answer-id", "7", "--point", "resid_pre", "--layers", "0", "--all-positions", "--json",
                       (tmp / "act.json").string()});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    j = json::parse(test::read_file(tmp / "act.json"));
    ASSERT_EQ(j["entries"].size(), 1u);
    EXPECT_DOUBLE_EQ(j["entries"][0]["score"].get<double>(), 1.0);  // layer 0's whole input: the clean run

    r = test::run_cli({"patch", "path", "-m", model, "--clean-ids", clean, "--corrupted-ids", corrupted, "--answer-id",
                       "7", "--distractor-id", "9", "--receivers", "2:0-1:q", "--json", (tmp / "path.json").string()});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    j = json::parse(test::read_file(tmp / "path.json"));
    EXPECT_EQ(j["senders"].size(), 8u);  // every head of layers 0 and 1
    EXPECT_EQ(j["receivers"], "2:0:q,2:1:q");

    r = test::run_cli({"patch", "trace", "-m", model, "--ids", clean, "--answer-id", "7", "--noise-positions", "1-3",
                       "--layers", "2", "--positions", "10", "--json", (tmp / "trace.json").string()});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    j = json::parse(test::read_file(tmp / "trace.json"));
    ASSERT_EQ(j["entries"].size(), 1u);
    EXPECT_DOUBLE_EQ(j["entries"][0]["score"].get<double>(), 1.0);  // the last state of the scored position
    EXPECT_EQ(j["metric"], "probability");

    r = test::run_cli({"patch", "search", "-m", model, "--ids", clean, "--mode", "zero", "--max-heads", "2", "--screen"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE(r.out.find("| head | accuracy |"), std::string::npos) << r.out;
}

TEST(PatchCli, BadInputIsOneErrorLine) {
    test::TempDir tmp;
    test::random_model(tmp);
    const std::string model = (tmp / "random-model").string();
    auto expect_error = [](const test::CommandResult& r, int code, const std::string& text) {
        EXPECT_EQ(r.exit_code, code) << r.out << r.err;
        EXPECT_EQ(r.err.find("attnlab: error:"), 0u) << r.err;
        EXPECT_NE(r.err.find(text), std::string::npos) << r.err;
        EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    };
    expect_error(test::run_cli({"patch", "ablate", "-m", model}), 1, "give exactly one of");
    expect_error(test::run_cli({"patch", "ablate", "-m", model, "--ids", "0,1,2", "--modes", "zero,half"}), 1,
                 "unknown mode 'half'");
    expect_error(test::run_cli({"patch", "ablate", "-m", model, "--ids", "0,1,2", "--bogus"}), 2, "bogus");
    expect_error(test::run_cli({"patch", "activation", "-m", model, "--clean-ids", "0,1,2", "--corrupted-ids", "0,1",
                                "--answer-id", "3"}),
                 1, "positions must align");
    expect_error(test::run_cli({"patch", "activation", "-m", model, "--clean-ids", "0,1,2", "--corrupted-ids", "0,1,3"}),
                 1, "needs --answer");
    expect_error(test::run_cli({"patch", "activation", "-m", model, "--clean-ids", "0,1,2", "--corrupted-ids", "0,1,3",
                                "--answer-id", "3", "--point", "zz"}),
                 1, "unknown point 'zz'");
    expect_error(test::run_cli({"patch", "path", "-m", model, "--clean-ids", "0,1,2", "--corrupted-ids", "0,1,3",
                                "--answer-id", "3", "--receivers", "9:0:q"}),
                 1, "outside");
    expect_error(test::run_cli({"patch", "trace", "-m", model, "--ids", "0,1,2", "--answer-id", "300"}), 1,
                 "outside the vocabulary");
    expect_error(test::run_cli({"patch", "search", "-m", model, "--ids", "0,1,2", "--below", "0.5", "--above", "0.7"}), 1,
                 "not both");
    expect_error(test::run_cli({"patch", "search", "-m", model, "--ids", "0,1,2", "--value", "lost"}), 1,
                 "no value 'lost'");
    const auto r = test::run_cli({"patch", "ablate", "-m", model, "--ids", "0,1,2", "--report",
                                  (tmp / "random-model" / "config.json" / "sub").string()});
    expect_error(r, 1, "[patch] cannot create the report directory");
}

}  // namespace
}  // namespace attnlab
