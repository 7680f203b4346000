// attnlab attn-eval: the CLI on a safetensors file against the library's float64 reference
// called here, and its errors (one line, exit 1; usage errors exit 2).
#include "test_support.h"

#include <attnlab/attention.h>
#include <attnlab/safetensors.h>

#include <nlohmann/json.hpp>

#include <gtest/gtest.h>

#include <cmath>
#include <random>

namespace attnlab {
namespace {

struct Inputs {
    int64_t B = 2, T = 7, S = 19, H = 6, Hkv = 2, D = 16, Dv = 12;
    Tensor q, k, v, q_pos, segments, sinks;
    Inputs() {
        std::mt19937 rng(3);
        std::normal_distribution<float> normal(0.0f, 1.5f);
        auto random = [&](Shape shape) {
            Tensor t = Tensor::empty(shape);
            float* p = t.data<float>();
            for (int64_t i = 0; i < t.numel(); ++i) p[i] = normal(rng);
            return t;
        };
        q = random({B, T, H, D});
        k = random({B, S, Hkv, D});
        v = random({B, S, Hkv, Dv});
        sinks = random({H});
        q_pos = Tensor::empty({T}, DType::I64);
        for (int64_t t = 0; t < T; ++t) q_pos.data<int64_t>()[t] = (5 * t + 3) % S;
        segments = Tensor::empty({S}, DType::I32);
        for (int64_t j = 0; j < S; ++j) segments.data<int32_t>()[j] = static_cast<int32_t>(j / 4);
    }
    void save(const std::filesystem::path& path, bool with_extras = true) const {
        std::vector<std::pair<std::string, Tensor>> t = {{"q", q}, {"k", k}, {"v", v}};
        if (with_extras) {
            t.emplace_back("q_pos", q_pos);
            t.emplace_back("segments", segments);
            t.emplace_back("sinks", sinks);
        }
        save_safetensors(path.string(), t);
    }
};

TEST(AttnEval, MatchesTheFloat64Reference) {
    test::TempDir dir;
    Inputs x;
    x.save(dir.path() / "in.safetensors");
    const std::string spec = "alibi+causal+document+sinks";
    auto r = test::run_cli({"attn-eval", "--inputs", (dir.path() / "in.safetensors").string(), "--spec", spec, "--out",
                            (dir.path() / "out.safetensors").string()});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const SafetensorsFile got = load_safetensors((dir.path() / "out.safetensors").string());
    ASSERT_EQ(got.tensors.at("out").shape(), (Shape{x.B, x.T, x.H, x.Dv}));
    ASSERT_EQ(got.tensors.at("lse").shape(), (Shape{x.B, x.T, x.H}));

    AttentionInputs in = AttentionInputs::contiguous(DType::F32, x.q.raw(), x.k.raw(), x.v.raw(), x.B, x.T, x.S, x.H,
                                                     x.Hkv, x.D, x.Dv);
    in.q_pos = x.q_pos.data<int64_t>();
    in.segments = x.segments.data<int32_t>();
    in.sinks = x.sinks.data<float>();
    std::vector<float> out(static_cast<size_t>(x.B * x.T * x.H * x.Dv)), lse(static_cast<size_t>(x.B * x.T * x.H));
    const AttentionOutputs o = AttentionOutputs::contiguous(out.data(), lse.data(), x.T, x.H, x.Dv);
    attention_reference(AttentionSpec::parse(spec), in, o);
    const std::vector<float> got_out = got.tensors.at("out").to_floats(), got_lse = got.tensors.at("lse").to_floats();
    for (size_t i = 0; i < out.size(); ++i) EXPECT_NEAR(got_out[i], out[i], 1e-5) << i;
    for (size_t i = 0; i < lse.size(); ++i) {
        if (std::isinf(lse[i])) EXPECT_EQ(got_lse[i], lse[i]);
        else EXPECT_NEAR(got_lse[i], lse[i], 1e-5 * std::max(1.0f, std::fabs(lse[i])));
    }
}

TEST(AttnEval, BadInputGetsOneErrorLine) {
    test::TempDir dir;
    Inputs x;
    x.save(dir.path() / "in.safetensors");
    const std::string in = (dir.path() / "in.safetensors").string(), out = (dir.path() / "o.safetensors").string();
    Inputs wrong;
    wrong.k = Tensor::zeros({2, 19, 2, 8});  // D mismatch
    wrong.save(dir.path() / "wrong.safetensors");
    Inputs no_extras;
    no_extras.q = Tensor::zeros({2, 25, 6, 16});  // T > S without q_pos
    no_extras.save(dir.path() / "long.safetensors", false);
    const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
        {{"--inputs", in, "--spec", "causl", "--out", out}, "unknown mechanism 'causl'"},
        {{"--inputs", in, "--spec", "window(size=-2)", "--out", out}, "size must be >= 1"},
        {{"--inputs", (dir.path() / "wrong.safetensors").string(), "--spec", "causal", "--out", out}, "does not match"},
        {{"--inputs", (dir.path() / "long.safetensors").string(), "--spec", "causal", "--out", out}, "give q_pos"},
        {{"--inputs", (dir.path() / "missing.safetensors").string(), "--spec", "causal", "--out", out}, "missing"},
    };
    for (const auto& [args, message] : cases) {
        std::vector<std::string> full = {"attn-eval"};
        full.insert(full.end(), args.begin(), args.end());
        auto r = test::run_cli(full);
        EXPECT_EQ(r.exit_code, 1) << message;
        EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
        EXPECT_NE(r.err.find(message), std::string::npos) << r.err;
    }
    auto r = test::run_cli({"attn-eval", "--inputs", in, "--out", out});  // no --spec: usage error
    EXPECT_EQ(r.exit_code, 2);
}

}  // namespace
}  // namespace attnlab

namespace attnlab {
namespace {

// The benchmark commands run end to end on small shapes (timings are not checked).
TEST(BenchCommands, AttentionAndDepthRun) {
    auto r = test::run_cli({"bench", "attention", "--spec", "causal+window(size=64)", "-T", "64", "-S", "300", "-H",
                            "4", "--hkv", "2", "-D", "32", "-r", "1", "--rounds", "1", "--no-torch", "--no-peak",
                            "--dense", "--json"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const auto j = nlohmann::json::parse(r.out);
    EXPECT_EQ(j["spec"], "causal+window(size=64)");
    EXPECT_GT(j["kept_fraction"].get<double>(), 0.0);
    EXPECT_LE(j["kept_fraction"].get<double>(), 1.0);
    EXPECT_GT(j["median_s"].get<double>(), 0.0);
    r = test::run_cli({"bench", "attention", "--spec", "causl", "--no-torch", "--no-peak"});
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_NE(r.err.find("unknown mechanism"), std::string::npos) << r.err;
    r = test::run_cli({"bench"});
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_NE(r.err.find("-m/--model is required"), std::string::npos) << r.err;
    const std::string model = std::string(ATTNLAB_SOURCE_DIR) + "/models/tinylm";
    r = test::run_cli({"bench", "-m", model, "-p", "16", "-n", "4", "-d", "32", "-r", "1", "--json"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE(r.out.find("pp16 @ d32"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("tg4 @ d32"), std::string::npos) << r.out;
    r = test::run_cli({"bench", "-m", model, "-p", "16", "-n", "4", "-d", "5000", "-r", "1"});
    EXPECT_EQ(r.exit_code, 1);
}

}  // namespace
}  // namespace attnlab
