// Shared pieces of the attnlab subcommands: registration, input parsing, model loading.
#pragma once

#include <attnlab/cuda_model.h>
#include <attnlab/error.h>
#include <attnlab/intervention.h>
#include <attnlab/model.h>
#include <attnlab/segments.h>

#include <CLI/CLI.hpp>

#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace attnlab::cli {

// One subcommand: its CLI11 parser and what to run when it is chosen (returns the exit code).
struct Command {
    CLI::App* app = nullptr;
    std::function<int()> run;
};

Command add_generate(CLI::App& root);
Command add_run(CLI::App& root);
Command add_tokenize(CLI::App& root);
Command add_detokenize(CLI::App& root);
Command add_inspect(CLI::App& root);
Command add_bench(CLI::App& root);
Command add_make_model(CLI::App& root);
Command add_perplexity(CLI::App& root);
Command add_attn_eval(CLI::App& root);
std::function<int()> add_bench_attention(CLI::App& bench);
Command add_patch(CLI::App& root);  // cmd_patch.cpp

// Options most subcommands share.
struct ModelOptions {
    std::string model_dir;
    int threads = 0;  // 0 = all cores
    int64_t ctx_size = 0;  // 0 = the model's max_position_embeddings
    std::string attn, attn_layers, attn_heads;  // attention re-assignments (see docs/cli.md)
    void add_to(CLI::App& app, bool model_required = true);
    // The longest sequence a run may reach: --ctx-size, or the model's trained context.
    // RoPE models may be run past it on request (e.g. with dynamic NTK scaling); models with
    // learned positions cannot, and forward() refuses.
    int64_t context_length(const Model& model) const;
    // Also applies the thread count and the attention re-assignments.
    std::unique_ptr<Model> load() const;
};

// --device cpu|cuda and --gpu-precision bf16|f32 (run, generate, bench): where the forward
// pass runs. The GPU runs the model's attention plan but no hooks or interventions.
struct DeviceOptions {
    std::string device = "cpu";
    std::string precision = "bf16";
    void add_to(CLI::App& app);
    bool cuda() const { return device == "cuda"; }
    // The model's GPU twin (weights uploaded); throws NotSupported without a usable GPU.
    std::unique_ptr<CudaModel> load(const Model& model) const;
    // For --device cuda: refuses, naming the option, what the GPU does not run (one line).
    void refuse(const char* command, bool used, const char* what) const;
};

struct PromptOptions {
    std::string text;
    std::string ids;  // "1,2,3"
    bool no_special = false;
    void add_to(CLI::App& app);
    bool has_ids() const { return !ids.empty(); }
    // Token ids of the prompt: --ids as given, or the text tokenised (special tokens added as the
    // tokenizer's post-processor says, unless --no-special).
    std::vector<int32_t> resolve(const Model& model) const;
};

// --segment NAME=A:B (repeatable), --segments FILE.json, --intervene FILE.json.
struct InterventionOptions {
    std::vector<std::string> segment_items;
    std::string segments_file;
    std::string intervene;
    void add_to(CLI::App& app);
    TokenSegments segments() const;  // the labelled ranges (empty without either option)
    // The interventions of --intervene (an empty set without it).
    InterventionSet interventions(const Model& model, const TokenSegments& segments) const;
};

std::vector<int32_t> parse_ids(const std::string& text);
const Tokenizer& require_tokenizer(const Model& model);
// tokenizer.json of a model directory, or the file itself.
Tokenizer load_tokenizer(const std::string& dir_or_file);

}  // namespace attnlab::cli
