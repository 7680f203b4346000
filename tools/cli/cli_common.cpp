#include "cli_common.h"

#include <attnlab/cuda.h>
#include <attnlab/error.h>
#include <attnlab/threads.h>

#include <cerrno>
#include <cstdlib>
#include <filesystem>

namespace attnlab::cli {

void ModelOptions::add_to(CLI::App& app, bool model_required) {
    auto* m = app.add_option("-m,--model", model_dir, "Hugging Face model directory");
    if (model_required) m->required();
    app.add_option("--attn", attn, "Attention spec for every layer, e.g. \"causal+window(size=256)\"");
    app.add_option("--attn-layers", attn_layers, "Per-layer specs: \"0-3:SPEC;4-:SPEC\" (`native` = the layer's own)");
    app.add_option("--attn-heads", attn_heads, "Per-head specs: \"LAYERS:HEADS:SPEC;...\", e.g. \"2:0-3:causal\"");
    app.add_option("-t,--threads", threads, "Threads (default: all cores)")->check(CLI::NonNegativeNumber);
    app.add_option("-c,--ctx-size", ctx_size, "Context length (default: the model's max_position_embeddings)")
        ->check(CLI::NonNegativeNumber);
}

int64_t ModelOptions::context_length(const Model& model) const {
    return ctx_size > 0 ? ctx_size : model.config().max_position_embeddings;
}

std::unique_ptr<Model> ModelOptions::load() const {
    set_num_threads(threads);
    std::unique_ptr<Model> model = Model::load(model_dir);
    // Later forms win where they overlap: all layers, then layer ranges, then heads.
    std::vector<AttentionAssignment> plan;
    if (!attn.empty()) plan.push_back({0, -1, 0, -1, attn});
    if (!attn_layers.empty())
        for (auto& a : parse_attention_layers(attn_layers)) plan.push_back(a);
    if (!attn_heads.empty())
        for (auto& a : parse_attention_heads(attn_heads)) plan.push_back(a);
    if (!plan.empty()) model->set_attention(plan);
    return model;
}

void DeviceOptions::add_to(CLI::App& app) {
    app.add_option("--device", device, "Where the forward pass runs: cpu or cuda (an NVIDIA GPU)")
        ->check(CLI::IsMember({"cpu", "cuda"}));
    app.add_option("--gpu-precision", precision,
                   "With --device cuda: bf16 (bf16 matrices, f32 accumulation) or f32 (reproduces the CPU)")
        ->check(CLI::IsMember({"bf16", "f32"}));
}

std::unique_ptr<CudaModel> DeviceOptions::load(const Model& model) const {
    ATTNLAB_CHECK(cuda_available(), NotSupported, "[cuda] --device cuda: no usable NVIDIA GPU (or built without CUDA)");
    CudaModelOptions options;
    options.precision = precision == "f32" ? CudaPrecision::F32 : CudaPrecision::BF16;
    return std::make_unique<CudaModel>(model, options);
}

void DeviceOptions::refuse(const char* command, bool used, const char* what) const {
    ATTNLAB_CHECK(!(cuda() && used), NotSupported, "[{}] {} is not supported with --device cuda yet", command, what);
}

void PromptOptions::add_to(CLI::App& app) {
    auto* p = app.add_option("-p,--prompt", text, "Prompt text");
    auto* i = app.add_option("--ids", ids, "Prompt token ids, comma separated (no special tokens added)");
    p->excludes(i);
    app.add_flag("--no-special", no_special, "Do not add special tokens when tokenising the prompt");
}

void InterventionOptions::add_to(CLI::App& app) {
    app.add_option("--segment", segment_items, "Label token positions: NAME=A:B (half-open; repeatable)");
    app.add_option("--segments", segments_file, "Segments JSON file {\"NAME\": \"A:B\" | [\"A:B\", ...]}");
    app.add_option("--intervene", intervene, "Interventions JSON file (see docs/interventions.md)");
}

TokenSegments InterventionOptions::segments() const {
    TokenSegments segs = segments_file.empty() ? TokenSegments() : TokenSegments::load(segments_file);
    const TokenSegments extra = TokenSegments::parse(segment_items, "--segment");
    for (const std::string& name : extra.names())
        for (const TokenRange& r : extra.ranges(name, TokenSegments::kOpenEnd)) segs.add(name, r, "--segment");
    return segs;
}

InterventionSet InterventionOptions::interventions(const Model& model, const TokenSegments& segs) const {
    if (intervene.empty()) return InterventionSet();
    return InterventionSet::from_file(intervene, InterventionEnv{&model, &segs});
}

std::vector<int32_t> parse_ids(const std::string& text) {
    std::vector<int32_t> ids;
    size_t start = 0;
    while (start <= text.size()) {
        size_t comma = text.find(',', start);
        std::string item = text.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
        // Trim spaces so "1, 2, 3" works.
        size_t a = item.find_first_not_of(" \t"), b = item.find_last_not_of(" \t");
        item = a == std::string::npos ? "" : item.substr(a, b - a + 1);
        ATTNLAB_CHECK(!item.empty(), InvalidArgument, "[ids] empty entry in '{}'", text);
        errno = 0;
        char* end = nullptr;
        long long v = std::strtoll(item.c_str(), &end, 10);
        ATTNLAB_CHECK(errno == 0 && *end == '\0' && v >= 0 && v <= INT32_MAX, InvalidArgument,
                      "[ids] '{}' is not a valid token id", item);
        ids.push_back(static_cast<int32_t>(v));
        if (comma == std::string::npos) break;
        start = comma + 1;
    }
    return ids;
}

const Tokenizer& require_tokenizer(const Model& model) {
    ATTNLAB_CHECK(model.tokenizer() != nullptr, InvalidArgument,
                  "[cli] {} has no tokenizer.json: pass token ids with --ids", model.directory());
    return *model.tokenizer();
}

Tokenizer load_tokenizer(const std::string& dir_or_file) {
    std::filesystem::path p(dir_or_file);
    if (std::filesystem::is_directory(p)) p /= "tokenizer.json";
    ATTNLAB_CHECK(std::filesystem::exists(p), IoError, "[cli] no tokenizer at {}", p.string());
    return Tokenizer::from_file(p.string());
}

std::vector<int32_t> PromptOptions::resolve(const Model& model) const {
    if (has_ids()) return parse_ids(ids);
    std::vector<int32_t> result = require_tokenizer(model).encode(text, !no_special);
    ATTNLAB_CHECK(!result.empty(), InvalidArgument, "[cli] the prompt is empty (give -p TEXT or --ids)");
    return result;
}

}  // namespace attnlab::cli
