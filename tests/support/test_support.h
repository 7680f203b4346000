// Helpers shared by the test suites: where the fixtures are, temporary directories,
// xz decompression (fixtures store large JSON as .xz), running the CLI.
#pragma once

#include <filesystem>
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
// Runs the attnlab CLI with the given arguments (no shell; arguments passed as they are).
CommandResult run_cli(const std::vector<std::string>& args);

}  // namespace attnlab::test
