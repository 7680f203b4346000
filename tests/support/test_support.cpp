#include "test_support.h"

#include <nlohmann/json.hpp>

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <random>
#include <sstream>
#include <stdexcept>

namespace attnlab::test {

namespace fs = std::filesystem;

fs::path fixtures_dir() { return fs::path(ATTNLAB_FIXTURES_DIR); }
fs::path source_dir() { return fs::path(ATTNLAB_SOURCE_DIR); }
fs::path cli_path() { return fs::path(ATTNLAB_CLI_PATH); }

TempDir::TempDir() {
    std::random_device rd;
    for (int attempt = 0; attempt < 100; ++attempt) {
        fs::path candidate = fs::temp_directory_path() / ("attnlab-test-" + std::to_string(rd()));
        if (fs::create_directory(candidate)) {
            path_ = candidate;
            return;
        }
    }
    throw std::runtime_error("[TempDir] could not create a temporary directory");
}

TempDir::~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
}

std::string read_file(const fs::path& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw std::runtime_error("[test] cannot read " + path.string());
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

void write_file(const fs::path& path, const std::string& contents) {
    std::ofstream out(path, std::ios::binary);
    out << contents;
    if (!out) throw std::runtime_error("[test] cannot write " + path.string());
}

// Runs argv[0] with args; captures stdout and stderr through temporary files so that large
// outputs on both streams cannot deadlock.
static CommandResult run_process(const std::vector<std::string>& argv) {
    TempDir tmp;
    fs::path out_path = tmp / "stdout", err_path = tmp / "stderr";
    pid_t pid = fork();
    if (pid < 0) throw std::runtime_error("[test] fork failed");
    if (pid == 0) {
        int out_fd = ::open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
        int err_fd = ::open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
        int null_fd = ::open("/dev/null", O_RDONLY);
        dup2(out_fd, 1);
        dup2(err_fd, 2);
        dup2(null_fd, 0);
        std::vector<char*> cargv;
        for (const auto& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
        cargv.push_back(nullptr);
        execv(cargv[0], cargv.data());
        _exit(127);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    CommandResult result;
    result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    result.out = read_file(out_path);
    result.err = read_file(err_path);
    return result;
}

std::string decompress_xz(const fs::path& xz_file) {
    CommandResult r = run_process({"/usr/bin/xz", "-dc", xz_file.string()});
    if (r.exit_code != 0) throw std::runtime_error("[test] xz -dc failed on " + xz_file.string());
    return r.out;
}

fs::path prepare_model_dir(const std::string& name, const TempDir& into) {
    fs::path src = fixtures_dir() / "models" / name;
    fs::path dst = into / name;
    fs::create_directories(dst);
    for (const auto& entry : fs::directory_iterator(src)) {
        std::string file = entry.path().filename().string();
        if (file.rfind("ref_", 0) == 0) continue;
        if (file == "tokenizer.json.xz") {
            write_file(dst / "tokenizer.json", decompress_xz(entry.path()));
        } else {
            fs::copy_file(entry.path(), dst / file);
            fs::permissions(dst / file, fs::perms::owner_write, fs::perm_options::add);
        }
    }
    return dst;
}

CommandResult run_cli(const std::vector<std::string>& args) {
    std::vector<std::string> argv{cli_path().string()};
    argv.insert(argv.end(), args.begin(), args.end());
    return run_process(argv);
}

std::unique_ptr<Model> random_model(const TempDir& dir, const RandomModelShape& shape, const std::string& name) {
    const std::filesystem::path model_dir = dir / name;
    std::filesystem::create_directories(model_dir);
    const nlohmann::json config = {{"architectures", {"LlamaForCausalLM"}},
                                   {"model_type", "llama"},
                                   {"vocab_size", shape.vocab},
                                   {"hidden_size", shape.width},
                                   {"intermediate_size", shape.intermediate},
                                   {"num_hidden_layers", shape.layers},
                                   {"num_attention_heads", shape.heads},
                                   {"num_key_value_heads", shape.kv_heads},
                                   {"head_dim", shape.head_dim},
                                   {"max_position_embeddings", shape.max_positions},
                                   {"rms_norm_eps", 1e-5},
                                   {"rope_theta", 10000.0},
                                   {"tie_word_embeddings", false},
                                   {"bos_token_id", 0},
                                   {"torch_dtype", "float32"}};
    write_file(model_dir / "config.json", config.dump(2));
    const ModelConfig parsed = parse_model_config(config.dump(), (model_dir / "config.json").string());
    save_random_checkpoint(parsed, DType::F32, shape.seed, shape.init_std, (model_dir / "model.safetensors").string());
    return Model::load(model_dir.string());
}

}  // namespace attnlab::test
