// config.json parsing: the fields decoder architectures share, RoPE in both spellings, and
// dispatch to the architecture for its quirks.
#include "model/architecture.h"
#include "model/config_json.h"

#include <cmath>

namespace attnlab {

namespace config_json {

namespace {
// Above this a "size" is certainly a corrupt or hostile config, not a model. Per-layer tables
// are allocated from num_hidden_layers while parsing, so the bound must keep those small
// (2^24 layers = 128 MB of windows) yet stay far above any real vocabulary or width.
constexpr int64_t kMaxSize = int64_t(1) << 24;
}  // namespace

std::optional<int64_t> get_int(const json& j, const char* key) {
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) return std::nullopt;
    if (it->is_number_integer()) return it->get<int64_t>();
    if (it->is_number_float()) {
        double v = it->get<double>();
        if (std::isfinite(v) && v == std::floor(v) && std::fabs(v) < 9e15)
            return static_cast<int64_t>(v);
    }
    throw FormatError(fmt::format("[config] field '{}' must be an integer, got {}", key, it->dump()));
}

std::optional<double> get_number(const json& j, const char* key) {
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) return std::nullopt;
    ATTNLAB_CHECK(it->is_number(), FormatError, "[config] field '{}' must be a number, got {}", key,
                  it->dump());
    double v = it->get<double>();
    ATTNLAB_CHECK(std::isfinite(v), FormatError, "[config] field '{}' is not finite", key);
    return v;
}

std::optional<bool> get_bool(const json& j, const char* key) {
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) return std::nullopt;
    ATTNLAB_CHECK(it->is_boolean(), FormatError, "[config] field '{}' must be true or false, got {}",
                  key, it->dump());
    return it->get<bool>();
}

std::optional<std::string> get_string(const json& j, const char* key) {
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) return std::nullopt;
    ATTNLAB_CHECK(it->is_string(), FormatError, "[config] field '{}' must be a string, got {}", key,
                  it->dump());
    return it->get<std::string>();
}

int64_t require_int(const json& j, const char* key) {
    auto v = get_int(j, key);
    ATTNLAB_CHECK(v.has_value(), FormatError, "[config] missing field '{}'", key);
    return *v;
}

int64_t require_size(const json& j, const char* key) {
    int64_t v = require_int(j, key);
    ATTNLAB_CHECK(v > 0 && v <= kMaxSize, FormatError, "[config] field '{}' = {} is not a valid size",
                  key, v);
    return v;
}

RopeConfig parse_rope_object(const json& p, const RopeConfig& defaults) {
    ATTNLAB_CHECK(p.is_object(), FormatError, "[config] rope parameters must be an object, got {}",
                  p.dump());
    RopeConfig r = defaults;
    auto type = get_string(p, "rope_type");
    if (!type) type = get_string(p, "type");
    if (type) r.type = *type;
    if (r.type == "default" || r.type.empty()) r.type = "default";
    if (auto v = get_number(p, "rope_theta")) r.theta = *v;
    if (auto v = get_number(p, "factor")) r.factor = *v;
    if (auto v = get_number(p, "partial_rotary_factor")) r.partial_rotary_factor = *v;
    if (auto v = get_int(p, "original_max_position_embeddings"))
        r.original_max_position_embeddings = *v;
    if (auto v = get_number(p, "low_freq_factor")) r.low_freq_factor = *v;
    if (auto v = get_number(p, "high_freq_factor")) r.high_freq_factor = *v;
    if (auto v = get_number(p, "beta_fast")) r.beta_fast = *v;
    if (auto v = get_number(p, "beta_slow")) r.beta_slow = *v;
    if (auto v = get_number(p, "attention_factor")) r.attention_factor = *v;
    if (auto v = get_number(p, "mscale")) r.mscale = *v;
    if (auto v = get_number(p, "mscale_all_dim")) r.mscale_all_dim = *v;
    if (auto v = get_bool(p, "truncate")) r.truncate = *v;
    const bool known = r.type == "default" || r.type == "linear" || r.type == "dynamic" ||
                       r.type == "llama3" || r.type == "yarn";
    ATTNLAB_CHECK(known, NotSupported,
                  "[config] rope type '{}' is not supported yet (supported: default, linear, "
                  "dynamic, llama3, yarn)",
                  r.type);
    ATTNLAB_CHECK(r.theta > 0, FormatError, "[config] rope_theta must be positive, got {}", r.theta);
    ATTNLAB_CHECK(r.factor > 0, FormatError, "[config] rope factor must be positive, got {}", r.factor);
    ATTNLAB_CHECK(r.partial_rotary_factor > 0 && r.partial_rotary_factor <= 1, FormatError,
                  "[config] partial_rotary_factor must be in (0, 1], got {}", r.partial_rotary_factor);
    if (r.type == "llama3") {
        ATTNLAB_CHECK(r.original_max_position_embeddings > 0 && r.high_freq_factor != r.low_freq_factor,
                      FormatError,
                      "[config] llama3 rope needs original_max_position_embeddings and distinct "
                      "low/high_freq_factor");
    }
    return r;
}

Activation parse_activation(const std::string& name) {
    if (name == "silu" || name == "swish") return Activation::SiLU;
    if (name == "gelu") return Activation::GELU;
    if (name == "gelu_new" || name == "gelu_pytorch_tanh" || name == "gelu_fast" ||
        name == "gelu_python_tanh")
        return Activation::GELUTanh;
    if (name == "relu") return Activation::ReLU;
    throw NotSupported(fmt::format("[config] activation '{}' is not supported yet", name));
}

}  // namespace config_json

using json = nlohmann::json;
using namespace config_json;

// Fields of the llama family of configs (llama, mistral, qwen2/3, gemma, phi3, olmo2).
void parse_decoder_common(const json& j, ModelConfig& c) {
    c.vocab_size = require_size(j, "vocab_size");
    c.hidden_size = require_size(j, "hidden_size");
    c.intermediate_size = require_size(j, "intermediate_size");
    c.n_layer = require_size(j, "num_hidden_layers");
    c.n_head = require_size(j, "num_attention_heads");
    c.n_head_kv = get_int(j, "num_key_value_heads").value_or(c.n_head);
    ATTNLAB_CHECK(c.n_head_kv > 0 && c.n_head % c.n_head_kv == 0, FormatError,
                  "[config] num_attention_heads ({}) must be a multiple of num_key_value_heads ({})",
                  c.n_head, c.n_head_kv);
    auto head_dim = get_int(j, "head_dim");
    if (!head_dim) {
        ATTNLAB_CHECK(c.hidden_size % c.n_head == 0, FormatError,
                      "[config] hidden_size ({}) is not a multiple of num_attention_heads ({}) and "
                      "head_dim is not given",
                      c.hidden_size, c.n_head);
        head_dim = c.hidden_size / c.n_head;
    }
    c.head_dim = *head_dim;
    ATTNLAB_CHECK(c.head_dim > 0 && c.head_dim % 2 == 0 && c.head_dim <= 1024, FormatError,
                  "[config] head_dim {} must be even and in [2, 1024]", c.head_dim);
    c.max_position_embeddings = get_int(j, "max_position_embeddings").value_or(2048);
    ATTNLAB_CHECK(c.max_position_embeddings > 0, FormatError,
                  "[config] max_position_embeddings must be positive");
    if (auto v = get_number(j, "rms_norm_eps")) c.norm_eps = *v;
    auto act = get_string(j, "hidden_act");
    if (!act) act = get_string(j, "hidden_activation");
    c.activation = parse_activation(act.value_or("silu"));
    c.tie_word_embeddings = get_bool(j, "tie_word_embeddings").value_or(c.tie_word_embeddings);
    c.attention_bias = get_bool(j, "attention_bias").value_or(c.attention_bias);
    c.o_bias = c.attention_bias;
    c.mlp_bias = get_bool(j, "mlp_bias").value_or(c.mlp_bias);

    // RoPE: transformers 5 writes rope_parameters (theta inside); older configs rope_theta at
    // the top level and an optional rope_scaling object (with "type" or "rope_type").
    RopeConfig rope = c.rope;  // an architecture may preset defaults (Gemma-3: theta 1e6)
    if (auto v = get_number(j, "rope_theta")) rope.theta = *v;
    if (auto v = get_number(j, "partial_rotary_factor")) rope.partial_rotary_factor = *v;
    if (j.contains("rope_parameters") && !j["rope_parameters"].is_null()) {
        const json& p = j["rope_parameters"];
        ATTNLAB_CHECK(p.is_object(), FormatError, "[config] rope_parameters must be an object");
        // Per-layer-type form (Gemma-3 in transformers 5): {"full_attention": {...}, ...}.
        if (p.contains("full_attention") && p["full_attention"].is_object()) {
            rope = parse_rope_object(p["full_attention"], rope);
            if (p.contains("sliding_attention"))
                c.rope_local = parse_rope_object(p["sliding_attention"], RopeConfig{});
        } else {
            rope = parse_rope_object(p, rope);
        }
    } else if (j.contains("rope_scaling") && !j["rope_scaling"].is_null()) {
        rope = parse_rope_object(j["rope_scaling"], rope);
    } else {
        rope = parse_rope_object(json::object(), rope);
    }
    c.rope = rope;
    c.layer_window.assign(static_cast<size_t>(c.n_layer), 0);
}

// Window sizes per layer from `layer_types` ("sliding_attention" / "full_attention").
// Returns false when the config has no layer_types.
bool parse_layer_types(const json& j, ModelConfig& c, int64_t window) {
    if (!j.contains("layer_types") || j["layer_types"].is_null()) return false;
    const json& types = j["layer_types"];
    ATTNLAB_CHECK(types.is_array() && static_cast<int64_t>(types.size()) == c.n_layer, FormatError,
                  "[config] layer_types must list {} entries", c.n_layer);
    for (int64_t l = 0; l < c.n_layer; ++l) {
        ATTNLAB_CHECK(types[l].is_string(), FormatError, "[config] layer_types[{}] is not a string", l);
        std::string t = types[l].get<std::string>();
        if (t == "sliding_attention") {
            ATTNLAB_CHECK(window > 0, FormatError,
                          "[config] layer {} is sliding_attention but sliding_window is not set", l);
            c.layer_window[l] = window;
        } else if (t == "full_attention") {
            c.layer_window[l] = 0;
        } else {
            throw NotSupported(fmt::format("[config] layer type '{}' is not supported yet", t));
        }
    }
    return true;
}

bool parse_qwen_windows(const json& j, ModelConfig& c) {
    const bool use_window = get_bool(j, "use_sliding_window").value_or(false);
    if (!use_window) return false;  // layer_types, if written, then says full_attention everywhere
    const int64_t window = get_int(j, "sliding_window").value_or(0);
    ATTNLAB_CHECK(window > 0, FormatError, "[config] use_sliding_window needs a positive sliding_window, got {}",
                  window);
    if (parse_layer_types(j, c, window)) return true;
    const int64_t first = get_int(j, "max_window_layers").value_or(c.n_layer);
    ATTNLAB_CHECK(first >= 0 && first <= c.n_layer, FormatError,
                  "[config] max_window_layers {} must be in [0, num_hidden_layers = {}]", first, c.n_layer);
    for (int64_t l = first; l < c.n_layer; ++l) c.layer_window[l] = window;
    return true;
}

ModelConfig parse_model_config(const std::string& json_text, const std::string& origin) {
    json j;
    try {
        j = json::parse(json_text);
    } catch (const json::exception& e) {
        throw FormatError(fmt::format("[config] {}: invalid JSON: {}", origin, e.what()));
    }
    ATTNLAB_CHECK(j.is_object(), FormatError, "[config] {}: not a JSON object", origin);
    ModelConfig c;
    try {
        auto model_type = get_string(j, "model_type");
        ATTNLAB_CHECK(model_type.has_value(), FormatError, "[config] missing field 'model_type'");
        const Architecture* arch = find_architecture(*model_type);
        if (!arch) {
            std::string names;
            for (auto n : architecture_names()) names += (names.empty() ? "" : ", ") + std::string(n);
            throw NotSupported(fmt::format("[config] model_type '{}' is not supported (supported: {})",
                                           *model_type, names));
        }
        c.model_type = *model_type;
        if (j.contains("architectures") && j["architectures"].is_array() &&
            !j["architectures"].empty() && j["architectures"][0].is_string())
            c.architecture = j["architectures"][0].get<std::string>();
        auto dtype = get_string(j, "dtype");
        if (!dtype) dtype = get_string(j, "torch_dtype");
        c.dtype = dtype.value_or("float32");
        if (auto bos = get_int(j, "bos_token_id")) c.bos_token_id = *bos;
        if (j.contains("eos_token_id")) {
            const json& e = j["eos_token_id"];
            if (e.is_number_integer()) c.eos_token_ids = {e.get<int64_t>()};
            else if (e.is_array())
                for (const json& x : e)
                    if (x.is_number_integer()) c.eos_token_ids.push_back(x.get<int64_t>());
        }
        arch->configure(j, c);
        // Every architecture fills layer_window its own way; a negative window would mask
        // every key (a silent NaN), so check them all here.
        ATTNLAB_ASSERT(static_cast<int64_t>(c.layer_window.size()) == c.n_layer);
        for (size_t l = 0; l < c.layer_window.size(); ++l)
            ATTNLAB_CHECK(c.layer_window[l] >= 0, FormatError,
                          "[config] layer {} has sliding window {}: sliding_window must be >= 0", l,
                          c.layer_window[l]);
    } catch (const Error& e) {
        std::string msg = e.what();
        // Name the file once: "[config] config.json: ..." instead of "[config] ...".
        if (msg.rfind("[config] ", 0) == 0 && msg.find(origin) == std::string::npos)
            msg = "[config] " + origin + ": " + msg.substr(9);
        if (dynamic_cast<const NotSupported*>(&e)) throw NotSupported(msg);
        throw FormatError(msg);
    }
    return c;
}

}  // namespace attnlab
