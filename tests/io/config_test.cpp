// config.json parsing: both RoPE spellings, the fixture configs, and bad configs (each a typed
// error whose message names the file and the field at fault).
#include "test_support.h"

#include <attnlab/error.h>
#include <attnlab/model.h>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <functional>
#include <string>
#include <vector>

namespace attnlab {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

const std::string kOrigin = "test/config.json";

// A minimal valid llama config; tests patch fields into it.
json llama_base() {
    return json::parse(R"({
        "model_type": "llama", "architectures": ["LlamaForCausalLM"],
        "vocab_size": 1000, "hidden_size": 64, "intermediate_size": 128,
        "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
        "max_position_embeddings": 512, "rms_norm_eps": 1e-5, "hidden_act": "silu",
        "tie_word_embeddings": false
    })");
}

json with(json j, const json& patch) {
    j.merge_patch(patch);  // a null value removes the field
    return j;
}

ModelConfig parse(const json& j) { return parse_model_config(j.dump(), kOrigin); }

ModelConfig parse_fixture(const std::string& name) {
    fs::path p = test::fixtures_dir() / "models" / name / "config.json";
    return parse_model_config(test::read_file(p), p.string());
}

TEST(Config, TransformersFiveSpelling) {
    ModelConfig c = parse(with(llama_base(), {{"dtype", "bfloat16"},
                                              {"rope_parameters", {{"rope_type", "linear"},
                                                                   {"rope_theta", 500000.0},
                                                                   {"factor", 4.0}}}}));
    EXPECT_EQ(c.model_type, "llama");
    EXPECT_EQ(c.architecture, "LlamaForCausalLM");
    EXPECT_EQ(c.dtype, "bfloat16");
    EXPECT_EQ(c.rope.type, "linear");
    EXPECT_DOUBLE_EQ(c.rope.theta, 500000.0);
    EXPECT_DOUBLE_EQ(c.rope.factor, 4.0);
    EXPECT_EQ(c.head_dim, 16);
    EXPECT_EQ(c.n_head, 4);
    EXPECT_EQ(c.n_head_kv, 2);
    EXPECT_EQ(c.layer_window, (std::vector<int64_t>{0, 0}));
}

TEST(Config, ClassicSpellingWithType) {
    ModelConfig c = parse(with(llama_base(), {{"torch_dtype", "float16"},
                                              {"rope_theta", 250000.0},
                                              {"rope_scaling", {{"type", "dynamic"}, {"factor", 2.0}}}}));
    EXPECT_EQ(c.dtype, "float16");
    EXPECT_EQ(c.rope.type, "dynamic");
    EXPECT_DOUBLE_EQ(c.rope.theta, 250000.0);
    EXPECT_DOUBLE_EQ(c.rope.factor, 2.0);
}

TEST(Config, ClassicSpellingWithRopeType) {
    ModelConfig c = parse(with(llama_base(),
                               {{"torch_dtype", "bfloat16"},
                                {"rope_theta", 500000.0},
                                {"rope_scaling", {{"rope_type", "llama3"}, {"factor", 8.0},
                                                  {"low_freq_factor", 1.0}, {"high_freq_factor", 4.0},
                                                  {"original_max_position_embeddings", 8192}}}}));
    EXPECT_EQ(c.dtype, "bfloat16");
    EXPECT_EQ(c.rope.type, "llama3");
    EXPECT_DOUBLE_EQ(c.rope.theta, 500000.0);
    EXPECT_DOUBLE_EQ(c.rope.factor, 8.0);
    EXPECT_EQ(c.rope.original_max_position_embeddings, 8192);
}

TEST(Config, DtypeWinsOverTorchDtypeAndDefaultsToFloat32) {
    EXPECT_EQ(parse(with(llama_base(), {{"dtype", "bfloat16"}, {"torch_dtype", "float16"}})).dtype, "bfloat16");
    EXPECT_EQ(parse(llama_base()).dtype, "float32");
}

TEST(Config, RopeDefaultsAndYarn) {
    ModelConfig d = parse(llama_base());
    EXPECT_EQ(d.rope.type, "default");
    EXPECT_DOUBLE_EQ(d.rope.theta, 10000.0);
    EXPECT_DOUBLE_EQ(d.rope.factor, 1.0);
    // rope_scaling: null is the classic "no scaling".
    EXPECT_EQ(parse(with(llama_base(), {{"rope_scaling", nullptr}})).rope.type, "default");
    ModelConfig y = parse(with(llama_base(), {{"rope_parameters", {{"rope_type", "yarn"}, {"factor", 4.0},
                                                                   {"rope_theta", 1e6},
                                                                   {"original_max_position_embeddings", 4096},
                                                                   {"beta_fast", 16.0}}}}));
    EXPECT_EQ(y.rope.type, "yarn");
    EXPECT_DOUBLE_EQ(y.rope.beta_fast, 16.0);
    EXPECT_EQ(y.rope.original_max_position_embeddings, 4096);
    ModelConfig p = parse(with(llama_base(), {{"partial_rotary_factor", 0.5}}));
    EXPECT_DOUBLE_EQ(p.rope.partial_rotary_factor, 0.5);
}

TEST(Config, EosTokenIdAsIntAndList) {
    EXPECT_EQ(parse(with(llama_base(), {{"eos_token_id", 7}})).eos_token_ids, (std::vector<int64_t>{7}));
    EXPECT_EQ(parse(with(llama_base(), {{"eos_token_id", {128001, 128008, 128009}}})).eos_token_ids,
              (std::vector<int64_t>{128001, 128008, 128009}));
    EXPECT_TRUE(parse(llama_base()).eos_token_ids.empty());
    EXPECT_TRUE(parse(with(llama_base(), {{"eos_token_id", nullptr}})).eos_token_ids.empty());
    ModelConfig c = parse(with(llama_base(), {{"bos_token_id", 3}}));
    ASSERT_TRUE(c.bos_token_id.has_value());
    EXPECT_EQ(*c.bos_token_id, 3);
}

TEST(Config, IntegralFloatsAreAcceptedAsIntegers) {
    // Some exporters write 4096.0; a fractional value is an error (see BadConfigs).
    ModelConfig c = parse(with(llama_base(), {{"hidden_size", 64.0}}));
    EXPECT_EQ(c.hidden_size, 64);
}

// ---- the fixture configs ----

TEST(ConfigFixtures, Gpt2Tiny) {
    ModelConfig c = parse_fixture("gpt2-tiny");
    EXPECT_EQ(c.model_type, "gpt2");
    EXPECT_EQ(c.vocab_size, 50257);
    EXPECT_EQ(c.hidden_size, 16);
    EXPECT_EQ(c.n_layer, 2);
    EXPECT_EQ(c.n_head, 4);
    EXPECT_EQ(c.n_head_kv, 4);
    EXPECT_EQ(c.head_dim, 4);
    EXPECT_EQ(c.intermediate_size, 64);  // n_inner: null -> 4 * n_embd
    EXPECT_EQ(c.max_position_embeddings, 256);
    EXPECT_EQ(c.rope.type, "none");
    EXPECT_TRUE(c.learned_positions);
    EXPECT_TRUE(c.tie_word_embeddings);
    EXPECT_EQ(c.norm_kind, NormKind::LayerNorm);
    EXPECT_EQ(c.activation, Activation::GELUTanh);
    EXPECT_EQ(c.eos_token_ids, (std::vector<int64_t>{50256}));
    EXPECT_EQ(c.layer_window, (std::vector<int64_t>{0, 0}));
}

TEST(ConfigFixtures, LlamaTiny) {
    ModelConfig c = parse_fixture("llama-tiny");
    EXPECT_EQ(c.model_type, "llama");
    EXPECT_EQ(c.n_head, 4);
    EXPECT_EQ(c.n_head_kv, 2);
    EXPECT_EQ(c.head_dim, 12);
    EXPECT_EQ(c.rope.type, "default");
    EXPECT_DOUBLE_EQ(c.rope.theta, 10000.0);
    EXPECT_DOUBLE_EQ(c.rope.factor, 1.0);
    EXPECT_FALSE(c.tie_word_embeddings);
    EXPECT_EQ(c.dtype, "bfloat16");
    EXPECT_EQ(c.vocab_size, 32000);
    EXPECT_EQ(c.eos_token_ids, (std::vector<int64_t>{2}));
    EXPECT_EQ(c.layer_window, (std::vector<int64_t>{0, 0}));
}

TEST(ConfigFixtures, Llama3TinyClassicSpelling) {
    ModelConfig c = parse_fixture("llama3-tiny");
    EXPECT_EQ(c.n_head, 4);
    EXPECT_EQ(c.n_head_kv, 1);
    EXPECT_EQ(c.head_dim, 8);
    EXPECT_EQ(c.rope.type, "llama3");
    EXPECT_DOUBLE_EQ(c.rope.theta, 500000.0);
    EXPECT_DOUBLE_EQ(c.rope.factor, 32.0);
    EXPECT_DOUBLE_EQ(c.rope.low_freq_factor, 1.0);
    EXPECT_DOUBLE_EQ(c.rope.high_freq_factor, 4.0);
    EXPECT_EQ(c.rope.original_max_position_embeddings, 16);
    EXPECT_TRUE(c.tie_word_embeddings);
    EXPECT_EQ(c.dtype, "bfloat16");  // from torch_dtype
    EXPECT_EQ(c.vocab_size, 4096);
    EXPECT_EQ(c.max_position_embeddings, 1024);
}

TEST(ConfigFixtures, MistralTinyWindowsPerLayer) {
    ModelConfig c = parse_fixture("mistral-tiny");
    EXPECT_EQ(c.model_type, "mistral");
    EXPECT_EQ(c.n_head, 4);
    EXPECT_EQ(c.n_head_kv, 2);
    EXPECT_EQ(c.head_dim, 8);
    EXPECT_EQ(c.rope.type, "default");
    EXPECT_DOUBLE_EQ(c.rope.theta, 10000.0);
    EXPECT_EQ(c.layer_window, (std::vector<int64_t>{8, 8}));
    EXPECT_FALSE(c.tie_word_embeddings);
}

TEST(ConfigFixtures, Qwen2Tiny) {
    ModelConfig c = parse_fixture("qwen2-tiny");
    EXPECT_EQ(c.model_type, "qwen2");
    EXPECT_EQ(c.n_head, 4);
    EXPECT_EQ(c.n_head_kv, 2);
    EXPECT_EQ(c.head_dim, 8);  // hidden_size / heads
    EXPECT_DOUBLE_EQ(c.rope.theta, 1000000.0);
    EXPECT_EQ(c.rope.type, "default");
    EXPECT_TRUE(c.tie_word_embeddings);
    EXPECT_TRUE(c.attention_bias);
    EXPECT_FALSE(c.o_bias);
    EXPECT_EQ(c.layer_window, (std::vector<int64_t>{0, 0}));  // use_sliding_window: false
}

TEST(ConfigFixtures, Qwen3Tiny) {
    ModelConfig c = parse_fixture("qwen3-tiny");
    EXPECT_EQ(c.model_type, "qwen3");
    EXPECT_EQ(c.n_layer, 3);
    EXPECT_EQ(c.n_head, 4);
    EXPECT_EQ(c.n_head_kv, 2);
    EXPECT_EQ(c.head_dim, 16);  // explicit, != hidden_size / heads
    EXPECT_DOUBLE_EQ(c.rope.theta, 1000000.0);
    EXPECT_EQ(c.qk_norm, QKNorm::PerHead);
    EXPECT_TRUE(c.tie_word_embeddings);
    EXPECT_EQ(c.layer_window, (std::vector<int64_t>{0, 0, 0}));
}

TEST(ConfigFixtures, TinylmAndInduction) {
    ModelConfig t = parse_fixture("tinylm");
    EXPECT_EQ(t.n_layer, 6);
    EXPECT_EQ(t.n_head, 8);
    EXPECT_EQ(t.n_head_kv, 4);
    EXPECT_EQ(t.head_dim, 32);
    EXPECT_DOUBLE_EQ(t.rope.theta, 10000.0);
    EXPECT_TRUE(t.tie_word_embeddings);
    EXPECT_EQ(t.eos_token_ids, (std::vector<int64_t>{1}));
    ModelConfig i = parse_fixture("induction-tiny");
    EXPECT_EQ(i.n_head, 4);
    EXPECT_EQ(i.n_head_kv, 4);
    EXPECT_EQ(i.head_dim, 16);
    EXPECT_FALSE(i.tie_word_embeddings);
    EXPECT_EQ(i.dtype, "float32");
}

TEST(ConfigFixtures, EveryFixtureConfigParses) {
    int n = 0;
    for (const auto& entry : fs::directory_iterator(test::fixtures_dir() / "models")) {
        fs::path p = entry.path() / "config.json";
        if (!fs::exists(p)) continue;
        SCOPED_TRACE(p.string());
        ModelConfig c = parse_model_config(test::read_file(p), p.string());
        EXPECT_GT(c.vocab_size, 0);
        EXPECT_EQ(c.n_head % c.n_head_kv, 0);
        EXPECT_EQ(static_cast<int64_t>(c.layer_window.size()), c.n_layer);
        ++n;
    }
    EXPECT_GE(n, 8);
}

// ---- bad configs ----

struct BadConfig {
    std::string name;
    std::string text;
    bool not_supported = false;
    std::vector<std::string> needles;  // besides the origin
};

std::string patched(const json& patch) { return with(llama_base(), patch).dump(); }

std::vector<BadConfig> bad_configs() {
    json no_type = llama_base();
    no_type.erase("model_type");
    return {
        {"not JSON", "{\"model_type\": \"llama\",", false, {"invalid JSON"}},
        {"empty", "", false, {"invalid JSON"}},
        {"not an object", "[1, 2, 3]", false, {"not a JSON object"}},
        {"a bare string", "\"llama\"", false, {"not a JSON object"}},
        {"missing model_type", no_type.dump(), false, {"'model_type'"}},
        {"model_type not a string", patched({{"model_type", 5}}), false, {"'model_type'", "string"}},
        {"unknown model_type", patched({{"model_type", "bert"}}), true, {"'bert'", "not supported", "llama"}},
        {"missing vocab_size", patched({{"vocab_size", nullptr}}), false, {"'vocab_size'", "missing"}},
        {"hidden_size a string", patched({{"hidden_size", "64"}}), false, {"'hidden_size'", "integer", "\"64\""}},
        {"hidden_size fractional", patched({{"hidden_size", 64.5}}), false, {"'hidden_size'", "integer"}},
        {"num_hidden_layers an array", patched({{"num_hidden_layers", {2}}}), false, {"'num_hidden_layers'"}},
        {"tie_word_embeddings a string", patched({{"tie_word_embeddings", "yes"}}), false,
         {"'tie_word_embeddings'", "true or false"}},
        {"rms_norm_eps a string", patched({{"rms_norm_eps", "1e-5"}}), false, {"'rms_norm_eps'", "number"}},
        {"rope_theta a string", patched({{"rope_theta", "big"}}), false, {"'rope_theta'", "number"}},
        {"hidden_act a number", patched({{"hidden_act", 1}}), false, {"'hidden_act'", "string"}},
        {"unknown activation", patched({{"hidden_act", "mish"}}), true, {"'mish'"}},
        {"rope_parameters an array", patched({{"rope_parameters", {1, 2}}}), false, {"rope_parameters"}},
        {"rope_scaling a string", patched({{"rope_scaling", "linear"}}), false, {"rope"}},
        {"rope type a number", patched({{"rope_scaling", {{"type", 3}}}}), false, {"'type'", "string"}},
        {"zero vocab_size", patched({{"vocab_size", 0}}), false, {"'vocab_size'", "= 0", "not a valid size"}},
        {"zero hidden_size", patched({{"hidden_size", 0}}), false, {"'hidden_size'", "not a valid size"}},
        {"negative heads", patched({{"num_attention_heads", -4}}), false,
         {"'num_attention_heads'", "-4", "not a valid size"}},
        {"zero layers", patched({{"num_hidden_layers", 0}}), false, {"'num_hidden_layers'"}},
        {"negative intermediate_size", patched({{"intermediate_size", -1}}), false, {"'intermediate_size'"}},
        {"absurd hidden_size", patched({{"hidden_size", int64_t(1) << 40}}), false, {"'hidden_size'"}},
        {"absurd layer count", patched({{"num_hidden_layers", int64_t(1) << 30}}), false, {"'num_hidden_layers'"}},
        {"uint64 max size", R"({"model_type":"llama","vocab_size":18446744073709551615})", false, {"'vocab_size'"}},
        {"heads not divisible by kv heads", patched({{"num_key_value_heads", 3}}), false,
         {"num_attention_heads (4)", "num_key_value_heads (3)"}},
        {"zero kv heads", patched({{"num_key_value_heads", 0}}), false, {"num_key_value_heads (0)"}},
        {"negative kv heads", patched({{"num_key_value_heads", -2}}), false, {"num_key_value_heads (-2)"}},
        {"hidden not divisible by heads", patched({{"hidden_size", 66}}), false, {"hidden_size (66)"}},
        {"odd head_dim", patched({{"head_dim", 7}}), false, {"head_dim 7"}},
        {"zero head_dim", patched({{"head_dim", 0}}), false, {"head_dim 0"}},
        {"negative max_position_embeddings", patched({{"max_position_embeddings", -1}}), false,
         {"max_position_embeddings"}},
        {"rope type longrope", patched({{"rope_scaling", {{"rope_type", "longrope"}, {"factor", 4.0}}}}), true,
         {"'longrope'", "not supported"}},
        {"rope type su", patched({{"rope_scaling", {{"type", "su"}}}}), true, {"'su'", "not supported"}},
        {"rope type longrope (transformers 5)", patched({{"rope_parameters", {{"rope_type", "longrope"}}}}), true,
         {"'longrope'"}},
        {"partial_rotary_factor 0", patched({{"partial_rotary_factor", 0}}), false,
         {"partial_rotary_factor", "(0, 1]"}},
        {"partial_rotary_factor 0 in rope_parameters",
         patched({{"rope_parameters", {{"rope_type", "default"}, {"partial_rotary_factor", 0.0}}}}), false,
         {"partial_rotary_factor"}},
        {"partial_rotary_factor above 1", patched({{"partial_rotary_factor", 1.5}}), false,
         {"partial_rotary_factor"}},
        {"negative rope_theta", patched({{"rope_theta", -10000.0}}), false, {"rope_theta"}},
        {"zero rope factor", patched({{"rope_scaling", {{"type", "linear"}, {"factor", 0}}}}), false,
         {"factor"}},
        {"llama3 rope without original_max_position_embeddings",
         patched({{"rope_scaling", {{"rope_type", "llama3"}, {"factor", 8.0}}}}), false,
         {"original_max_position_embeddings"}},
        {"layer_types wrong length", patched({{"model_type", "mistral"}, {"layer_types", {"full_attention"}}}), false,
         {"layer_types", "2 entries"}},
        {"negative sliding_window (mistral)", patched({{"model_type", "mistral"}, {"sliding_window", -8}}), false,
         {"sliding_window", "-8"}},
        {"sliding layer without window (mistral)",
         patched({{"model_type", "mistral"}, {"layer_types", {"sliding_attention", "full_attention"}}}), false,
         {"sliding_window"}},
        {"unknown layer type",
         patched({{"model_type", "mistral"}, {"sliding_window", 8}, {"layer_types", {"chunked", "full_attention"}}}),
         true, {"'chunked'"}},
        {"gpt2 missing n_embd", R"({"model_type":"gpt2","vocab_size":10,"n_layer":1,"n_head":1,"n_positions":8})",
         false, {"'n_embd'"}},
        {"gpt2 n_embd not divisible by n_head",
         R"({"model_type":"gpt2","vocab_size":10,"n_embd":10,"n_layer":1,"n_head":4,"n_positions":8})", false,
         {"n_embd (10)", "n_head (4)"}},
    };
}

TEST(Config, BadConfigsAreTypedErrorsNamingFileAndField) {
    for (const BadConfig& b : bad_configs()) {
        SCOPED_TRACE(b.name);
        try {
            parse_model_config(b.text, kOrigin);
            ADD_FAILURE() << "no exception";
        } catch (const Error& e) {
            const std::string msg = e.what();
            if (b.not_supported) {
                EXPECT_NE(dynamic_cast<const NotSupported*>(&e), nullptr) << "not NotSupported: " << msg;
            } else {
                EXPECT_NE(dynamic_cast<const FormatError*>(&e), nullptr) << "not FormatError: " << msg;
            }
            EXPECT_EQ(msg.rfind("[config] " + kOrigin + ": ", 0), 0u) << msg;
            EXPECT_EQ(msg.find(kOrigin), msg.rfind(kOrigin)) << "origin named twice: " << msg;
            EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
            for (const auto& n : b.needles)
                EXPECT_NE(msg.find(n), std::string::npos) << "'" << n << "' not in: " << msg;
        } catch (const std::exception& e) {
            ADD_FAILURE() << "not an attnlab::Error: " << e.what();
        }
    }
}

TEST(Config, SlidingWindowsAreNeverNegative) {
    // A negative window would mask every key (softmax over nothing): reject it for every
    // architecture, not just those that check their own field.
    for (const char* type : {"mistral", "phi3", "gemma2", "gemma3_text"}) {
        SCOPED_TRACE(type);
        json j = with(llama_base(), {{"model_type", type}, {"sliding_window", -4}});
        EXPECT_THROW(parse(j), FormatError);
    }
    json q = with(llama_base(), {{"model_type", "qwen2"}, {"use_sliding_window", true}, {"sliding_window", -4},
                                 {"max_window_layers", 0}});
    EXPECT_THROW(parse(q), FormatError);
}

// A negative max_window_layers once indexed layer_window before its start.
TEST(Config, NegativeMaxWindowLayersIsAnError) {
    for (const char* type : {"qwen2", "qwen3"}) {
        SCOPED_TRACE(type);
        json j = with(llama_base(), {{"model_type", type}, {"use_sliding_window", true}, {"sliding_window", 8},
                                     {"max_window_layers", -1000000}});
        EXPECT_THROW(parse(j), FormatError);
    }
}

}  // namespace
}  // namespace attnlab
