// Model loading: config.json (+ generation_config.json), safetensors weights, tokenizer.json.
#include "model/architecture.h"

#include <attnlab/error.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace attnlab {

namespace fs = std::filesystem;

Model::Model() = default;
Model::~Model() = default;

static std::string read_text(const fs::path& path) {
    std::ifstream in(path, std::ios::binary);
    ATTNLAB_CHECK(in.good(), IoError, "[model] cannot read {}", path.string());
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

struct ModelLoader {
    static std::unique_ptr<Model> load(const std::string& dir) {
        ATTNLAB_CHECK(fs::is_directory(dir), IoError, "[model] {} is not a directory", dir);
        const fs::path config_path = fs::path(dir) / "config.json";
        ATTNLAB_CHECK(fs::exists(config_path), IoError, "[model] {}: no config.json", dir);
        std::unique_ptr<Model> model(new Model());
        model->dir_ = dir;
        model->config_ = parse_model_config(read_text(config_path), config_path.string());
        ModelConfig& c = model->config_;
        // generation_config.json decides when generation stops, as in transformers.
        const fs::path gen_path = fs::path(dir) / "generation_config.json";
        if (fs::exists(gen_path)) {
            auto gen = nlohmann::json::parse(read_text(gen_path), nullptr, false);
            if (gen.is_object() && gen.contains("eos_token_id")) {
                const auto& e = gen["eos_token_id"];
                std::vector<int64_t> ids;
                if (e.is_number_integer()) ids.push_back(e.get<int64_t>());
                if (e.is_array())
                    for (const auto& x : e)
                        if (x.is_number_integer()) ids.push_back(x.get<int64_t>());
                if (!ids.empty()) c.eos_token_ids = ids;
            }
        }
        const Architecture* arch = find_architecture(c.model_type);
        model->weights_ = std::make_unique<ModelWeights>();
        ModelWeights& w = *model->weights_;
        w.store = WeightStore::open_directory(dir);
        arch->load_weights(w.store, c, w);
        std::vector<std::string> unused = w.store.unused();
        if (!unused.empty()) {
            std::string list;
            for (size_t i = 0; i < unused.size() && i < 5; ++i) list += (i ? ", " : "") + unused[i];
            if (unused.size() > 5) list += fmt::format(" (and {} more)", unused.size() - 5);
            throw FormatError(fmt::format(
                "[model] {}: {} tensor(s) in the checkpoint are not used by the {} architecture: {}",
                dir, unused.size(), c.model_type, list));
        }
        const fs::path tok_path = fs::path(dir) / "tokenizer.json";
        if (fs::exists(tok_path))
            model->tokenizer_ = std::make_unique<Tokenizer>(Tokenizer::from_file(tok_path.string()));
        model->set_attention({});
        return model;
    }
};

std::unique_ptr<Model> Model::load(const std::string& dir) { return ModelLoader::load(dir); }

void save_random_checkpoint(const ModelConfig& config, DType dtype, uint64_t seed, double init_std,
                            const std::string& path) {
    const Architecture* arch = find_architecture(config.model_type);
    ATTNLAB_CHECK(arch != nullptr, NotSupported, "[make-model] unknown model_type '{}'", config.model_type);
    // The architecture asks for every tensor it needs; the synthesizing store invents each one.
    ModelWeights weights;
    weights.store = WeightStore::synthesize(dtype, seed, init_std);
    arch->load_weights(weights.store, config, weights);
    std::vector<std::pair<std::string, Tensor>> tensors(weights.store.tensors().begin(),
                                                        weights.store.tensors().end());
    save_safetensors(path, tensors);
}

int64_t Model::parameter_count() const {
    int64_t n = 0;
    for (const auto& [_, t] : weights_->store.tensors()) n += t.numel();
    return n;
}

std::map<std::string, int64_t> Model::parameters_by_dtype() const {
    std::map<std::string, int64_t> counts;
    for (const auto& [_, t] : weights_->store.tensors()) counts[std::string(dtype_name(t.dtype()))] += t.numel();
    return counts;
}

size_t Model::weight_bytes() const { return weights_->store.total_bytes(); }

void KVCache::truncate(int64_t n) {
    ATTNLAB_CHECK(n >= 0 && n <= n_past_, InvalidArgument,
                  "[kv-cache] cannot truncate {} positions to {}", n_past_, n);
    ATTNLAB_CHECK(std::all_of(layer_rows_.begin(), layer_rows_.end(), [](int64_t r) { return r < 0; }) || n == n_past_,
                  NotSupported, "[kv-cache] cannot truncate a cache whose tokens were dropped (positions and rows differ)");
    n_past_ = n;
}

size_t KVCache::bytes() const {
    size_t n = 0;
    for (const Tensor& t : k_) n += t.nbytes();
    for (const Tensor& t : v_) n += t.nbytes();
    return n;
}

}  // namespace attnlab
