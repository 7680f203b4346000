// Models: a Hugging Face checkpoint directory loaded into a runnable decoder.
//
// Model::load reads config.json (both the transformers-5 spelling with rope_parameters/dtype
// and the classic rope_theta/rope_scaling/torch_dtype one), maps the safetensors weights
// (never copied when used in their stored dtype) and, if present, tokenizer.json.
// Model::forward runs T tokens for one sequence on top of a KVCache, exposing every hook point.
#pragma once

#include <attnlab/attention.h>
#include <attnlab/hooks.h>
#include <attnlab/segments.h>
#include <attnlab/tensor.h>
#include <attnlab/tokenizer.h>

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace attnlab {

// Rotary position embedding parameters, as transformers' rope_parameters / rope_scaling.
struct RopeConfig {
    std::string type = "default";  // default | linear | dynamic | llama3 | yarn
    double theta = 10000.0;
    double factor = 1.0;
    double partial_rotary_factor = 1.0;
    int64_t original_max_position_embeddings = 0;  // llama3, yarn, dynamic
    double low_freq_factor = 1.0, high_freq_factor = 4.0;  // llama3
    double beta_fast = 32.0, beta_slow = 1.0;               // yarn
    std::optional<double> attention_factor;                 // yarn (default from factor)
    std::optional<double> mscale, mscale_all_dim;           // yarn (DeepSeek form)
    bool truncate = true;                                   // yarn
};

enum class NormKind { RMSNorm, RMSNormPlusOne, LayerNorm };  // PlusOne: Gemma's x·(1+w)
enum class Activation { SiLU, GELU, GELUTanh, ReLU };
enum class QKNorm { None, PerHead, FullWidth };  // Qwen3/Gemma3 per head, OLMo-2 full width

struct ModelConfig {
    std::string model_type;   // "llama", "qwen2", ...
    std::string architecture; // "LlamaForCausalLM", ...
    int64_t vocab_size = 0;
    int64_t hidden_size = 0;        // C
    int64_t intermediate_size = 0;  // I
    int64_t n_layer = 0;            // L
    int64_t n_head = 0;             // H
    int64_t n_head_kv = 0;          // Hkv
    int64_t head_dim = 0;           // D
    int64_t max_position_embeddings = 0;
    double norm_eps = 1e-6;
    NormKind norm_kind = NormKind::RMSNorm;
    Activation activation = Activation::SiLU;
    bool gated_mlp = true;
    bool tie_word_embeddings = false;
    bool attention_bias = false;  // q/k/v biases
    bool o_bias = false;
    bool mlp_bias = false;
    QKNorm qk_norm = QKNorm::None;
    bool learned_positions = false;  // GPT-2
    bool pre_norms = true;           // norm before attention/MLP
    bool post_norms = false;         // norm after attention/MLP, before the residual add
    double embedding_scale = 1.0;    // Gemma: sqrt(C)
    double attn_scale = 0.0;         // score scale; 0 = 1/sqrt(D)
    double attn_softcap = 0.0;       // Gemma-2: s = c·tanh(s/c); 0 = off
    double final_softcap = 0.0;      // Gemma-2: on the logits
    RopeConfig rope;
    std::optional<RopeConfig> rope_local;  // Gemma-3 sliding layers use their own base
    std::vector<int64_t> layer_window;     // per layer: 0 = full attention, W = i-j < W
    std::string dtype = "float32";         // as stored in config.json
    std::vector<int64_t> eos_token_ids;
    std::optional<int64_t> bos_token_id;
    bool scale_attn_by_inverse_layer_idx = false;  // GPT-2 option
};

// Per-sequence attention state: rotated keys and values of every layer.
class KVCache {
public:
    KVCache() = default;
    int64_t n_past() const { return n_past_; }
    void clear() {
        n_past_ = 0;
        layer_rows_.clear();
        row_positions_.clear();
    }
    // Drops everything after the first n positions (e.g. to re-run a suffix).
    void truncate(int64_t n);
    size_t bytes() const;

private:
    friend class Model;
    int64_t n_past_ = 0;
    int64_t capacity_ = 0;
    // Token dropping (SGL / FastV) compacts the rows of the layers after the drop: layer l then
    // holds layer_rows_[l] rows (-1: one per position, the usual case), the positions
    // row_positions_[l] in order.
    std::vector<int64_t> layer_rows_;
    std::vector<std::vector<int64_t>> row_positions_;
    int64_t layer_rows(size_t l) const { return layer_rows_.empty() || layer_rows_[l] < 0 ? n_past_ : layer_rows_[l]; }
    std::vector<Tensor> k_;  // per layer (capacity, Hkv, D) f32
    std::vector<Tensor> v_;  // per layer (capacity, Hkv, D) f32
    double dynamic_rope_seq_len_ = 0;  // dynamic NTK: the longest sequence seen so far
};

struct ForwardOptions {
    Hooks* hooks = nullptr;
    bool all_logits = false;  // false: logits of the last position only (T=1 row)
    // Run layers [0, stop_at_layer) only (-1: all): forward returns an undefined tensor and the
    // KV cache is not advanced (TransformerLens' stop_at_layer, for cheap early-layer probes).
    int64_t stop_at_layer = -1;
    // Labelled position ranges of the sequence (cache positions included): their ids reach the
    // attention kernel as `segments` (for `document`, `segment(id=N)`) and the edit hooks.
    const TokenSegments* segments = nullptr;
    // RoPE position ids of this call's T tokens (default pos0 .. pos0+T-1); masks and the KV
    // cache keep the sequence order. Models with learned positions ignore them.
    const std::vector<int64_t>* position_ids = nullptr;
};

// Re-assigns the attention of some layers (and optionally some heads) to a spec: LayerBoost /
// hybrid / Flux-style static routing. Later assignments win where they overlap. In `spec`, the
// name `native` stands for the layer's own spec (e.g. "native+temperature(t=2)").
struct AttentionAssignment {
    int64_t layer_begin = 0, layer_end = -1;  // [begin, end); -1 = to the last layer
    int64_t head_begin = 0, head_end = -1;    // [begin, end); -1 = to the last head
    std::string spec;
};
// "0-3:SPEC;4-:SPEC" — layer ranges (a, a-b inclusive, a-, comma lists) and their specs.
std::vector<AttentionAssignment> parse_attention_layers(std::string_view text);
// "LAYERS:HEADS:SPEC;..." — e.g. "2:0-3:causal+window(size=64)".
std::vector<AttentionAssignment> parse_attention_heads(std::string_view text);

// The heads [head_begin, head_end) of a layer that run one spec.
struct HeadRun {
    int64_t head_begin = 0, head_end = 0;
    AttentionSpec spec;
};

struct ModelWeights;  // private: src/model/weights.h

class Model {
public:
    // Loads a Hugging Face model directory. Throws IoError / FormatError / NotSupported.
    static std::unique_ptr<Model> load(const std::string& dir);
    ~Model();

    const ModelConfig& config() const { return config_; }
    const std::string& directory() const { return dir_; }
    const Tokenizer* tokenizer() const { return tokenizer_.get(); }
    int64_t parameter_count() const;
    // Parameters per stored dtype ("bf16" -> n, ...), as the checkpoint holds them.
    std::map<std::string, int64_t> parameters_by_dtype() const;
    size_t weight_bytes() const;
    // The loaded tensors (src/model/weights.h), for other backends (CudaModel uploads them).
    const ModelWeights& weights() const { return *weights_; }

    // Runs `ids` at positions cache.n_past() ... and appends them to the cache.
    // Returns logits (rows, V) f32: rows = T if options.all_logits, else 1 (the last position).
    Tensor forward(std::span<const int32_t> ids, KVCache& cache,
                   const ForwardOptions& options = {}) const;

    KVCache new_cache() const { return KVCache(); }

    // The spec a layer runs as its config defines it: causal, plus the layer's sliding window,
    // Gemma-2's softcap and the model's score scale.
    AttentionSpec native_attention(int64_t layer) const;
    // Replaces the current plan by native attention overridden by `assignments` (validated
    // against the model's layer and head counts; throws InvalidArgument).
    void set_attention(const std::vector<AttentionAssignment>& assignments);
    // What layer l runs now: runs of heads covering 0 .. H-1.
    const std::vector<HeadRun>& layer_attention(int64_t layer) const { return attention_plan_.at(layer); }

    // ---- The unembedding on its own (logit lens, direct logit attribution): src/model/unembed.cpp ----

    // Logits (T, V) f32 of residual-stream rows `residual` (T, C), row stride C: the final norm
    // and lm_head exactly as forward() ends, then the final logit softcap when `softcap` is true
    // and the config has one (Gemma-2). unembed(resid_post of the last layer) = forward's logits.
    Tensor unembed(const float* residual, int64_t T, bool softcap = true) const;

    // The final norm at one residual row x, frozen into an affine map so that a sum of
    // components x = Σ_k a_k can be pushed through it term by term (direct logit attribution):
    //   norm(x)_c = scale · (x_c − [centered] mean(x)) · weight_c + bias_c
    // `scale` = 1/sqrt(var(x) + eps) (RMSNorm: mean(x²) + eps) is that of the real x; `weight` is
    // the effective per-channel factor (1 + w for Gemma's RMSNormPlusOne); `bias` is LayerNorm's.
    struct FrozenFinalNorm {
        double scale = 1.0;
        bool centered = false;      // LayerNorm subtracts the row mean; RMSNorm does not
        std::vector<float> weight;  // (C)
        std::vector<float> bias;    // (C), empty when the norm has none
    };
    // The frozen final norm of each of T residual rows (T, C), row stride C.
    std::vector<FrozenFinalNorm> freeze_final_norm(const float* residual, int64_t T) const;
    // Rows of the unembedding (lm_head, or the embedding when tied) for `tokens`, widened to f32:
    // (K, C) row-major. Throws InvalidArgument for ids outside the vocabulary.
    std::vector<float> unembedding_rows(std::span<const int32_t> tokens) const;

private:
    Model();
    std::string dir_;
    ModelConfig config_;
    std::unique_ptr<ModelWeights> weights_;
    std::unique_ptr<Tokenizer> tokenizer_;
    std::vector<std::vector<HeadRun>> attention_plan_;  // per layer
    friend struct ModelLoader;

};

// Parses config.json text into a ModelConfig (architecture quirks included).
ModelConfig parse_model_config(const std::string& json_text, const std::string& origin);

// Writes a safetensors checkpoint of random weights (normal, std `init_std`; norms near 1)
// holding exactly the tensors the config's architecture loads.
void save_random_checkpoint(const ModelConfig& config, DType dtype, uint64_t seed, double init_std,
                            const std::string& path);

}  // namespace attnlab
