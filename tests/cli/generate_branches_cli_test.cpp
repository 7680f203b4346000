// `attnlab generate --intervene / --segment / --branches` end to end on tinylm: zero-strength
// steering changes nothing, a steering vector changes the text, a 2-branch contrastive decode
// produces text deterministically under greedy, and bad specs fail with one error line.
#include "test_support.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <string>
#include <vector>

namespace attnlab {
namespace {

using test::run_cli;

struct Tinylm {
    test::TempDir dir;
    std::string model = test::prepare_model_dir("tinylm", dir).string();
    std::string write(const std::string& name, const std::string& text) const {
        test::write_file(dir / name, text);
        return (dir / name).string();
    }
};

std::vector<std::string> generate_args(const Tinylm& t, std::vector<std::string> extra) {
    std::vector<std::string> args = {"generate", "-m", t.model, "-p", "And God said", "-n", "12", "--temp", "0", "--json", "-t", "2"};
    args.insert(args.end(), extra.begin(), extra.end());
    return args;
}

nlohmann::json json_of(const test::CommandResult& r) {
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return nlohmann::json::parse(r.out);
}

std::string vector_of(double value, int n) {
    std::string out = "[";
    for (int i = 0; i < n; ++i) {
        if (i) out += ',';
        out += std::to_string(value * ((i % 7) - 3));
    }
    return out + "]";
}

TEST(GenerateCli, InterventionsRunInEveryStep) {
    Tinylm t;
    const nlohmann::json plain = json_of(run_cli(generate_args(t, {})));
    const std::string zero = t.write("zero.json", R"([{"type": "steer", "layer": 2, "scale": 0, "vector": )" + vector_of(1, 256) + "}]");
    EXPECT_EQ(json_of(run_cli(generate_args(t, {"--intervene", zero})))["ids"], plain["ids"]);
    const std::string strong = t.write("strong.json", R"([{"type": "steer", "layer": 2, "scale": 4, "positions": "generated", "vector": )" +
                                                          vector_of(1, 256) + "}]");
    const nlohmann::json steered = json_of(run_cli(generate_args(t, {"--intervene", strong})));
    EXPECT_NE(steered["ids"], plain["ids"]);
    // "generated" leaves the prompt alone: the first token comes from the prefill's last row, so it agrees.
    ASSERT_FALSE(steered["ids"].empty());
    EXPECT_EQ(steered["ids"][0], plain["ids"][0]);
}

TEST(GenerateCli, TwoBranchContrastiveProducesText) {
    Tinylm t;
    const std::string spec = t.write("branches.json", R"({"rule": "contrastive", "alpha": 1, "beta": 0.1,
        "branches": [{"name": "full"}, {"name": "without", "drop_segment": "subject"}]})");
    const std::vector<std::string> args = generate_args(t, {"--branches", spec, "--segment", "subject=1:3"});
    const nlohmann::json a = json_of(run_cli(args)), b = json_of(run_cli(args));
    EXPECT_FALSE(a["ids"].empty());
    EXPECT_FALSE(a["text"].get<std::string>().empty());
    EXPECT_EQ(a, b);
    // Streaming text mode prints the prompt and the continuation.
    std::vector<std::string> text_args = args;
    text_args.erase(std::find(text_args.begin(), text_args.end(), "--json"));
    const test::CommandResult r = run_cli(text_args);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(r.out.rfind("And God said", 0), 0u) << r.out;
    EXPECT_GT(r.out.size(), std::string("And God said\n").size());
}

TEST(GenerateCli, BadBranchSpecsAreOneErrorLine) {
    Tinylm t;
    struct Case {
        std::string spec, needle;
    };
    const std::vector<Case> cases = {
        {R"({"rule": "mix", "branches": [{"name": "a"}]})", "unknown rule 'mix'"},
        {R"({"rule": "contrastive", "branches": [{"name": "a"}, {"prompt": "x"}]})", "missing \"name\""},
        {R"({"rule": "contrastive", "branches": [{"name": "a"}, {"name": "b", "model": ")" +
             (test::fixtures_dir() / "models" / "induction-tiny").string() + R"("}]})",
         "vocabulary"},
        {"[1, 2", "not JSON"},
    };
    for (const Case& c : cases) {
        const std::string spec = t.write("bad.json", c.spec);
        const test::CommandResult r = run_cli(generate_args(t, {"--branches", spec}));
        EXPECT_EQ(r.exit_code, 1) << r.err;
        EXPECT_EQ(r.err.rfind("attnlab: error: [", 0), 0u) << r.err;
        EXPECT_EQ(r.err.find('\n'), r.err.size() - 1) << "not one line: " << r.err;
        EXPECT_NE(r.err.find(c.needle), std::string::npos) << r.err;
        EXPECT_TRUE(r.out.empty()) << "printed before failing: " << r.out;
    }
    const std::string good = t.write("good.json", R"({"rule": "guidance", "scale": 2, "branches": [{"name": "a"}, {"name": "b"}]})");
    const std::string none = t.write("none.json", "[]");
    const test::CommandResult r = run_cli(generate_args(t, {"--branches", good, "--intervene", none}));
    EXPECT_EQ(r.exit_code, 2) << r.err;  // a usage error: each branch has its own interventions
    EXPECT_NE(r.err.find("excludes --"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace attnlab
