// attnlab make-model: a random-weight checkpoint for any supported config.json, with exactly
// the tensor names and shapes the architecture loads (for benchmarks and tests).
#include "cli_common.h"

#include <attnlab/error.h>
#include <attnlab/safetensors.h>

#include <filesystem>
#include <fstream>
#include <sstream>

namespace attnlab::cli {

Command add_make_model(CLI::App& root) {
    struct Options {
        std::string config, out, dtype = "bf16";
        uint64_t seed = 0;
        double std = 0.02;
    };
    auto o = std::make_shared<Options>();
    CLI::App* app = root.add_subcommand("make-model", "Write a random-weight checkpoint for a config.json");
    app->add_option("--config", o->config, "config.json to instantiate")->required();
    app->add_option("--out", o->out, "Output model directory")->required();
    app->add_option("--dtype", o->dtype, "Weight dtype")->check(CLI::IsMember({"f32", "bf16", "f16"}));
    app->add_option("--seed", o->seed, "Random seed");
    app->add_option("--std", o->std, "Standard deviation of the weights")->check(CLI::PositiveNumber);
    return {app, [o] {
        namespace fs = std::filesystem;
        std::ifstream in(o->config, std::ios::binary);
        ATTNLAB_CHECK(in.good(), IoError, "[make-model] cannot read {}", o->config);
        std::ostringstream text;
        text << in.rdbuf();
        // Parse through the same code path as loading, so an invalid config fails here.
        ModelConfig config = parse_model_config(text.str(), o->config);
        const DType dtype = o->dtype == "f32" ? DType::F32 : o->dtype == "f16" ? DType::F16 : DType::BF16;
        fs::create_directories(o->out);
        fs::copy_file(o->config, fs::path(o->out) / "config.json", fs::copy_options::overwrite_existing);
        save_random_checkpoint(config, dtype, o->seed, o->std, (fs::path(o->out) / "model.safetensors").string());
        return 0;
    }};
}

}  // namespace attnlab::cli
