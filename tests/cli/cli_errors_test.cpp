// The CLI on bad input: every failure is one line "attnlab: error: ..." on stderr, a non-zero
// exit (2 for usage errors, 1 otherwise), never a crash or a hang.
#include "test_support.h"

#include <attnlab/cuda.h>

#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <string>
#include <vector>

namespace attnlab {
namespace {

namespace fs = std::filesystem;
using test::run_cli;
using test::TempDir;

struct Expect {
    int exit_code;                   // 1 or 2
    std::vector<std::string> needles;  // in the error line
};

// Runs the CLI and checks the error contract; returns the error line.
std::string expect_cli_error(const std::vector<std::string>& args, const Expect& e) {
    std::string cmdline;
    for (const auto& a : args) {
        if (!cmdline.empty()) cmdline += ' ';
        cmdline += a.size() > 60 ? a.substr(0, 60) + "..." : a;
    }
    SCOPED_TRACE("attnlab " + cmdline);
    const auto start = std::chrono::steady_clock::now();
    test::CommandResult r = run_cli(args);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    EXPECT_LT(seconds, 10.0);
    EXPECT_LT(r.exit_code, 128) << "crashed (signal " << r.exit_code - 128 << "): " << r.err;
    EXPECT_EQ(r.exit_code, e.exit_code) << r.err;
    EXPECT_EQ(r.err.rfind("attnlab: error: ", 0), 0u) << r.err;
    // Exactly one line: a single newline, at the end.
    EXPECT_FALSE(r.err.empty());
    if (!r.err.empty()) {
        EXPECT_EQ(r.err.find('\n'), r.err.size() - 1) << "not one line: " << r.err;
    }
    for (const auto& n : e.needles) EXPECT_NE(r.err.find(n), std::string::npos) << "'" << n << "' not in: " << r.err;
    return r.err;
}

std::string fixture(const std::string& name) { return (test::fixtures_dir() / "models" / name).string(); }

std::string many_ids(int n, int id = 1) {
    std::string s;
    for (int i = 0; i < n; ++i) {
        if (i) s += ',';
        s += std::to_string(id);
    }
    return s;
}

// ---- usage errors (exit 2) ----

// CLI11 reports a missing subcommand rather than naming the unknown word.
TEST(CliErrors, UnknownSubcommand) { expect_cli_error({"frobnicate"}, {2, {"subcommand"}}); }

TEST(CliErrors, NoSubcommand) { expect_cli_error({}, {2, {"subcommand"}}); }

TEST(CliErrors, UnknownFlag) {
    expect_cli_error({"run", "-m", fixture("llama3-tiny"), "--ids", "1", "--save", "x.safetensors", "--bogus"},
                     {2, {"--bogus"}});
    expect_cli_error({"generate", "-m", fixture("llama3-tiny"), "--ids", "1", "--frobnicate=3"},
                     {2, {"--frobnicate"}});
}

TEST(CliErrors, MissingModelOption) {
    expect_cli_error({"generate", "--ids", "1,2"}, {2, {"--model"}});
    expect_cli_error({"run", "--ids", "1,2", "--save", "x.safetensors"}, {2, {"--model"}});
    expect_cli_error({"inspect"}, {2, {"--model"}});
}

TEST(CliErrors, BadOptionValues) {
    expect_cli_error({"generate", "-m", fixture("llama3-tiny"), "--ids", "1", "-n", "many"}, {2, {"many"}});
    expect_cli_error({"generate", "-m", fixture("llama3-tiny"), "--ids", "1", "--top-p", "2"}, {2, {"top-p"}});
    expect_cli_error({"generate", "-m", fixture("llama3-tiny"), "--ids", "1", "-p", "hi"}, {2, {}});
}

// ---- runtime errors (exit 1) ----

TEST(CliErrors, NonexistentModelDirectory) {
    TempDir tmp;
    const std::string dir = (tmp / "no-such-model").string();
    expect_cli_error({"generate", "-m", dir, "--ids", "1"}, {1, {dir}});
    expect_cli_error({"inspect", "-m", dir}, {1, {dir}});
}

TEST(CliErrors, ModelDirectoryWithoutConfig) {
    TempDir tmp;
    fs::path dir = test::prepare_model_dir("llama3-tiny", tmp);
    fs::remove(dir / "config.json");
    expect_cli_error({"run", "-m", dir.string(), "--ids", "1", "--save", (tmp / "o.safetensors").string()},
                     {1, {"config.json"}});
}

TEST(CliErrors, ModelPathIsAFile) {
    const std::string file = fixture("llama3-tiny") + "/config.json";
    expect_cli_error({"generate", "-m", file, "--ids", "1"}, {1, {"config.json"}});
}

TEST(CliErrors, IdsNotANumber) {
    for (const char* ids : {"1,abc,3", "1,,2", "-5", "1.5", "99999999999999999999", "1;2"}) {
        SCOPED_TRACE(ids);
        expect_cli_error({"generate", "-m", fixture("llama3-tiny"), "--ids", ids, "-n", "1"}, {1, {"[ids]"}});
    }
    TempDir tmp;
    expect_cli_error({"run", "-m", fixture("llama3-tiny"), "--ids", "x", "--save", (tmp / "o.safetensors").string()},
                     {1, {"'x'"}});
}

TEST(CliErrors, IdAtOrBeyondVocabulary) {
    TempDir tmp;
    // llama3-tiny: vocab 4096.
    expect_cli_error({"generate", "-m", fixture("llama3-tiny"), "--ids", "1,4096", "-n", "2"}, {1, {"4096"}});
    expect_cli_error({"run", "-m", fixture("llama3-tiny"), "--ids", "2147483647", "--save",
                      (tmp / "o.safetensors").string()},
                     {1, {"2147483647"}});
    EXPECT_FALSE(fs::exists(tmp / "o.safetensors"));
}

TEST(CliErrors, PromptLongerThanContext) {
    TempDir tmp;
    // gpt2-tiny: n_positions 256.
    const std::string ids = many_ids(300);
    expect_cli_error({"run", "-m", fixture("gpt2-tiny"), "--ids", ids, "--save", (tmp / "o.safetensors").string()},
                     {1, {"300", "256"}});
    expect_cli_error({"generate", "-m", fixture("gpt2-tiny"), "--ids", ids, "-n", "4"}, {1, {"300", "256"}});
}

TEST(CliErrors, GenerationRunningPastTheContextDoesNotCrash) {
    // A prompt that fits, with more tokens asked for than the context leaves: either stop at the
    // context or refuse with one error line; never crash.
    test::CommandResult r = run_cli({"generate", "-m", fixture("gpt2-tiny"), "--ids", many_ids(250), "-n", "20"});
    EXPECT_LT(r.exit_code, 128) << r.err;
    if (r.exit_code != 0) {
        EXPECT_EQ(r.err.rfind("attnlab: error: ", 0), 0u) << r.err;
        EXPECT_EQ(r.err.find('\n'), r.err.size() - 1) << r.err;
    }
}

TEST(CliErrors, TextPromptWithoutTokenizer) {
    // llama3-tiny has no tokenizer.json.
    expect_cli_error({"generate", "-m", fixture("llama3-tiny"), "-p", "hello", "-n", "2"}, {1, {"tokenizer", "--ids"}});
    expect_cli_error({"tokenize", "-m", fixture("llama3-tiny"), "--text", "hello"}, {1, {"tokenizer"}});
}

TEST(CliErrors, TruncatedWeights) {
    TempDir tmp;
    fs::path dir = test::prepare_model_dir("llama3-tiny", tmp);
    fs::path weights = dir / "model.safetensors";
    const uintmax_t size = fs::file_size(weights);
    for (uintmax_t keep : {uintmax_t(4), uintmax_t(64), size / 2, size - 1}) {
        SCOPED_TRACE(keep);
        fs::resize_file(weights, keep);
        expect_cli_error({"generate", "-m", dir.string(), "--ids", "1,2", "-n", "2"}, {1, {"model.safetensors"}});
    }
}

TEST(CliErrors, CorruptWeightsHeader) {
    TempDir tmp;
    fs::path dir = test::prepare_model_dir("llama3-tiny", tmp);
    std::string bytes = test::read_file(dir / "model.safetensors");
    bytes[12] = '[';  // inside the JSON header
    test::write_file(dir / "model.safetensors", bytes);
    expect_cli_error({"inspect", "-m", dir.string()}, {1, {"model.safetensors"}});
}

TEST(CliErrors, InvalidConfigJson) {
    TempDir tmp;
    fs::path dir = test::prepare_model_dir("llama3-tiny", tmp);
    test::write_file(dir / "config.json", "{\"model_type\": \"llama\", ");
    expect_cli_error({"generate", "-m", dir.string(), "--ids", "1"}, {1, {"config.json", "invalid JSON"}});
    test::write_file(dir / "config.json", R"({"model_type": "bert"})");
    expect_cli_error({"generate", "-m", dir.string(), "--ids", "1"}, {1, {"config.json", "bert"}});
}

TEST(CliErrors, InvalidTokenizerJson) {
    TempDir tmp;
    fs::path dir = test::prepare_model_dir("gpt2-tiny", tmp);
    for (const std::string& contents : {std::string("{\"model\": {\"type\": \"BPE\", "), std::string("[]"),
                                        std::string(R"({"model": 5})"), std::string("")}) {
        SCOPED_TRACE(contents);
        test::write_file(dir / "tokenizer.json", contents);
        expect_cli_error({"generate", "-m", dir.string(), "-p", "hello", "-n", "2"}, {1, {"tokenizer.json"}});
        expect_cli_error({"tokenize", "-m", dir.string(), "--text", "hello"}, {1, {"tokenizer.json"}});
    }
}

TEST(CliErrors, DetokenizeBadIds) {
    TempDir tmp;
    fs::path dir = test::prepare_model_dir("gpt2-tiny", tmp);
    expect_cli_error({"detokenize", "-m", dir.string(), "--ids", "1,x"}, {1, {"'x'"}});
    // An id beyond the vocabulary: an error line or a replacement, never a crash.
    test::CommandResult r = run_cli({"detokenize", "-m", dir.string(), "--ids", "1,999999"});
    EXPECT_LT(r.exit_code, 128) << r.err;
    if (r.exit_code != 0) {
        EXPECT_EQ(r.err.rfind("attnlab: error: ", 0), 0u) << r.err;
    }
}

// --device cuda: what the GPU does not run is refused by name, and without a usable GPU (CI's
// machines have nvcc but no GPU, or the build has no CUDA) the device itself is the error.
TEST(CliErrors, DeviceCuda) {
    TempDir tmp;
    const std::string model = fixture("llama3-tiny"), save = (tmp / "o.safetensors").string();
    expect_cli_error({"run", "-m", model, "--ids", "1,2", "--save", save, "--device", "cuda", "--hooks", ".*"},
                     {1, {"--hooks", "--device cuda"}});
    expect_cli_error({"run", "-m", model, "--ids", "1,2", "--save", save, "--device", "cuda", "--stop-at-layer", "1"},
                     {1, {"--stop-at-layer"}});
    expect_cli_error({"bench", "-m", model, "-p", "4", "-n", "0", "--device", "cuda", "--stats", "rows"},
                     {1, {"--stats"}});
    expect_cli_error({"generate", "-m", model, "--ids", "1", "--device", "gpu"}, {2, {"--device"}});
    expect_cli_error({"generate", "-m", model, "--ids", "1", "--device", "cuda", "--gpu-precision", "fp8"},
                     {2, {"--gpu-precision"}});
    if (!cuda_available()) {
        expect_cli_error({"generate", "-m", model, "--ids", "1,2", "-n", "2", "--device", "cuda"},
                         {1, {"[cuda]", "GPU"}});
        EXPECT_FALSE(fs::exists(save));
    } else {  // on a GPU machine the same command generates
        test::CommandResult r = run_cli({"generate", "-m", model, "--ids", "1,2", "-n", "2", "--device", "cuda"});
        EXPECT_EQ(r.exit_code, 0) << r.err;
    }
}

}  // namespace
}  // namespace attnlab
