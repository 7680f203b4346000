// The `heads` probe: the fixtures' mechanisms.json reproduced to 1e-6 (library and CLI), and
// answers known by construction (uniform rows, a planted previous-token pattern).
#include "test_support.h"

#include <attnlab/error.h>
#include <attnlab/probes.h>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cmath>

namespace attnlab {
namespace {

using nlohmann::json;

void expect_matches_mechanisms(const std::string& name, int64_t repeat, const json& got) {
    const json want = json::parse(test::read_file(test::fixtures_dir() / "models" / name / "mechanisms.json"));
    ASSERT_EQ(got["head_scores"].size(), want["head_scores"].size()) << name;
    for (size_t l = 0; l < want["head_scores"].size(); ++l)
        for (const char* key : {"bos_mass", "prev_token", "entropy", "induction"}) {
            const json& w = want["head_scores"][l][key];
            const json& g = got["head_scores"][l][key];
            ASSERT_EQ(g.size(), w.size()) << name << " layer " << l << " " << key;
            for (size_t h = 0; h < w.size(); ++h)
                EXPECT_NEAR(g[h].get<double>(), w[h].get<double>(), 1e-6) << name << " layer " << l << " head " << h << " " << key;
        }
    EXPECT_EQ(got["repeat"], repeat);
}

TEST(HeadsProbe, ReproducesInductionTinyMechanisms) {
    const auto dir = test::fixtures_dir() / "models" / "induction-tiny";
    auto model = Model::load(dir.string());
    HeadProbeOptions options;
    options.repeat = 32;
    const HeadScores scores = probe_heads(*model, load_input_ids((dir / "eval_batch.safetensors").string()), options);
    EXPECT_EQ(scores.sequences, 64);
    expect_matches_mechanisms("induction-tiny", 32, json::parse(scores.to_json()));
    for (double s : scores.layers[1].induction) EXPECT_GT(s, 0.99);  // the copy heads
}

TEST(HeadsProbe, CliReproducesTinylmMechanisms) {
    test::TempDir tmp;
    const auto dir = test::fixtures_dir() / "models" / "tinylm";
    const auto r = test::run_cli({"probe", "heads", "-m", test::prepare_model_dir("tinylm", tmp).string(), "--input",
                                  (dir / "eval_batch.safetensors").string(), "--repeat", "50", "--json",
                                  (tmp / "heads.json").string()});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE(r.out.find("| layer |"), std::string::npos);
    expect_matches_mechanisms("tinylm", 50, json::parse(test::read_file(tmp / "heads.json")));
}

// q·k/τ with τ = 1e9 makes every kept score ~0: each row is uniform over its kept keys.
TEST(HeadsProbe, UniformRowsGiveKnownScores) {
    auto model = Model::load((test::fixtures_dir() / "models" / "induction-tiny").string());
    std::vector<int32_t> ids;
    for (int32_t t = 0; t < 41; ++t) ids.push_back(t == 0 ? 0 : 2 + (t * 37) % 200);
    const int64_t T = 41, N = 20;
    {
        model->set_attention({{0, -1, 0, -1, "causal+temperature(t=1e9)"}});
        HeadProbeOptions options;
        options.repeat = N;
        const HeadScores s = probe_heads(*model, {ids}, options);
        double bos = 0, entropy = 0, induction = 0, frob = 0;
        for (int64_t i = 1; i < T; ++i) bos += 1.0 / (i + 1), entropy += std::log(double(i + 1));
        for (int64_t i = N + 1; i < T; ++i) induction += 1.0 / (i + 1);
        for (int64_t i = 0; i < T; ++i) frob += 1.0 / (i + 1);
        for (const LayerHeadScores& l : s.layers)
            for (size_t h = 0; h < l.bos_mass.size(); ++h) {
                EXPECT_NEAR(l.bos_mass[h], bos / (T - 1), 1e-6);
                EXPECT_NEAR(l.prev_token[h], bos / (T - 1), 1e-6);
                EXPECT_NEAR(l.entropy[h], entropy / (T - 1), 1e-5);
                EXPECT_NEAR(l.induction[h], induction / (T - N - 1), 1e-6);
                EXPECT_NEAR(l.frobenius[h], std::sqrt(frob), 1e-5);
                EXPECT_NEAR(l.local_focus[h][0], frob / T, 1e-6);
                EXPECT_NEAR(l.diversity, 0.0, 1e-6);  // every head is the same map
            }
    }
    {
        // Planted previous-token pattern: keys {i-1, i}, uniform.
        model->set_attention({{0, -1, 0, -1, "causal+window(size=2)+temperature(t=1e9)"}});
        const HeadScores s = probe_heads(*model, {ids});
        for (const LayerHeadScores& l : s.layers)
            for (size_t h = 0; h < l.bos_mass.size(); ++h) {
                EXPECT_NEAR(l.prev_token[h], 0.5, 1e-6);
                EXPECT_NEAR(l.entropy[h], std::log(2.0), 1e-5);
                EXPECT_NEAR(l.bos_mass[h], 0.5 / (T - 1), 1e-6);  // only row 1 reaches position 0
                EXPECT_NEAR(l.local_focus[h][2], 0.0, 1e-6);
                EXPECT_TRUE(l.induction.empty());
            }
    }
}

TEST(HeadsProbe, BadInputIsAnError) {
    auto model = Model::load((test::fixtures_dir() / "models" / "induction-tiny").string());
    HeadProbeOptions options;
    options.repeat = 32;
    EXPECT_THROW(probe_heads(*model, {{0, 5, 6}}, options), InvalidArgument);  // too short for the repeat
    EXPECT_THROW(probe_heads(*model, {}, options), InvalidArgument);
    test::TempDir tmp;
    const auto r = test::run_cli({"probe", "heads", "-m", (test::fixtures_dir() / "models" / "induction-tiny").string(),
                                  "--input", (tmp / "missing.safetensors").string()});
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_NE(r.err.find("attnlab: error:"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace attnlab
