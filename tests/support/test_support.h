// Helpers shared by the test suites: where the fixtures are, temporary directories,
// xz decompression (fixtures store large JSON as .xz), running the CLI.
#pragma once

#include <attnlab/model.h>

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

namespace attnlab::test {

// ../shared/fixtures relative to the project root (read-only).
std::filesystem::path fixtures_dir();
std::filesystem::path source_dir();
std::filesystem::path cli_path();  // build/attnlab

// A fresh directory under the system temp dir, removed when the object dies.
class TempDir {
public:
    TempDir();
    ~TempDir();
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    const std::filesystem::path& path() const { return path_; }
    std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

private:
    std::filesystem::path path_;
};

// Contents of an .xz file (runs `xz -dc`).
std::string decompress_xz(const std::filesystem::path& xz_file);

// A copy of a fixture model directory, with tokenizer.json.xz decompressed, as a user's
// model directory would look. Reference files are not copied.
std::filesystem::path prepare_model_dir(const std::string& name, const TempDir& into);

std::string read_file(const std::filesystem::path& path);
void write_file(const std::filesystem::path& path, const std::string& contents);

struct CommandResult {
    int exit_code = -1;
    std::string out;  // stdout
    std::string err;  // stderr
};
// A small random Llama-shaped f32 model (RoPE, RMSNorm, SwiGLU, GQA) written to dir/name and
// loaded: for tests that need a model whose weights nothing was trained into.
struct RandomModelShape {
    int64_t layers = 3, heads = 4, kv_heads = 2, head_dim = 8, width = 32, vocab = 64, intermediate = 48;
    int64_t max_positions = 4096;
    uint64_t seed = 7;
    double init_std = 0.3;
};
std::unique_ptr<Model> random_model(const TempDir& dir, const RandomModelShape& shape = {},
                                    const std::string& name = "random-model");

// Runs the attnlab CLI with the given arguments (no shell; arguments passed as they are).
CommandResult run_cli(const std::vector<std::string>& args);

}  // namespace attnlab::test
