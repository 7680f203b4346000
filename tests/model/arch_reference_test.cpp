// Independent float64 references for the architectures without Hugging Face fixtures
// (Gemma-2, Gemma-3 text, Phi-3, OLMo-2), for Llama's RoPE scaling types and for GPT-2's
// scale_attn_by_inverse_layer_idx.
//
// Each case writes a tiny config.json (GQA, sliding windows crossed by odd sequence lengths),
// turns it into a random f32 checkpoint with `attnlab make-model --std 0.2` (large weights, so
// attention is far from uniform), then compares `attnlab run` / `attnlab generate` against a
// float64 forward pass written from the transformers modelling semantics (arch_reference.h):
// tensor names as the Hub checkpoints spell them, norms, scalings, soft-caps, windows and RoPE
// frequencies as the modeling_*.py files and modeling_rope_utils.py (transformers 5) define them.
#include "arch_reference.h"
#include "test_support.h"

#include <attnlab/model.h>
#include <attnlab/safetensors.h>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace attnlab::test {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using namespace arch_ref;

// ---------------------------------------------------------------------------------------------
// Harness: config -> checkpoint -> attnlab run/generate vs the reference.

std::vector<int32_t> token_ids(int64_t n, int64_t V, uint32_t seed) {
    std::vector<int32_t> ids;
    uint32_t x = seed * 2654435761u + 12345u;
    for (int64_t i = 0; i < n; ++i) {
        x = x * 1664525u + 1013904223u;
        ids.push_back(static_cast<int32_t>((x >> 8) % static_cast<uint32_t>(V)));
    }
    return ids;
}

std::string join_ids(const std::vector<int32_t>& ids) {
    std::string s;
    for (size_t i = 0; i < ids.size(); ++i) s += (i ? "," : "") + std::to_string(ids[i]);
    return s;
}

// max |a - r| / max |r| over a whole activation.
double relative_error(const std::vector<float>& got, const std::vector<Vec>& ref) {
    double err = 0, mag = 0;
    size_t k = 0;
    for (const Vec& row : ref)
        for (double r : row) {
            err = std::max(err, std::fabs(double(got[k++]) - r));
            mag = std::max(mag, std::fabs(r));
        }
    return err / std::max(mag, 1e-30);
}

// A checkpoint written by `attnlab make-model` for the config.
fs::path make_model(const TempDir& dir, const json& config, double std = 0.2, uint64_t seed = 7) {
    const fs::path config_path = dir / "config.json";
    write_file(config_path, config.dump(2));
    const fs::path model_dir = dir / "model";
    CommandResult r = run_cli({"make-model", "--config", config_path.string(), "--out", model_dir.string(),
                               "--dtype", "f32", "--std", std::to_string(std), "--seed", std::to_string(seed)});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return model_dir;
}

void expect_matches_reference(const json& config, const RefSpec& spec, std::vector<int64_t> lengths = {13, 37},
                              int n_generate = 8, double std = 0.2) {
    TempDir dir;
    const fs::path model_dir = make_model(dir, config, std);
    ASSERT_TRUE(fs::exists(model_dir / "model.safetensors"));
    RefModel ref(spec, model_dir / "model.safetensors");
    uint32_t seed = 1;
    for (int64_t T : lengths) {
        SCOPED_TRACE("T = " + std::to_string(T));
        const std::vector<int32_t> ids = token_ids(T, spec.V, seed++);
        const fs::path saved = dir / ("run_" + std::to_string(T) + ".safetensors");
        CommandResult r = run_cli({"run", "-m", model_dir.string(), "--ids", join_ids(ids), "--save", saved.string(),
                                   "--hooks",
                                   "blocks\\.[0-9]+\\.hook_resid_pre|blocks\\.[0-9]+\\.attn\\.hook_pattern|"
                                   "ln_final\\.hook_normalized"});
        ASSERT_EQ(r.exit_code, 0) << r.err;
        SafetensorsFile got = load_safetensors(saved.string());
        RefCache cache;
        RefOutput want = ref.forward(ids, cache);

        const Tensor& logits = got.tensors.at("logits");
        ASSERT_EQ(logits.shape(), (Shape{T, spec.V}));
        EXPECT_LE(relative_error(logits.to_floats(), want.logits), 1e-4) << "logits";
        for (int64_t l = 0; l < spec.L; ++l) {
            const std::string name = "blocks." + std::to_string(l) + ".hook_resid_pre";
            ASSERT_TRUE(got.tensors.count(name)) << name;
            EXPECT_LE(relative_error(got.tensors.at(name).to_floats(), want.resid_pre[l]), 1e-4) << name;
            const std::string pname = "blocks." + std::to_string(l) + ".attn.hook_pattern";
            ASSERT_TRUE(got.tensors.count(pname)) << pname;
            const Tensor& pattern = got.tensors.at(pname);
            ASSERT_EQ(pattern.shape(), (Shape{spec.H, T, T})) << pname;
            std::vector<float> pf = pattern.to_floats();
            double err = 0;
            for (size_t i = 0; i < pf.size(); ++i) err = std::max(err, std::fabs(double(pf[i]) - want.pattern[l][i]));
            EXPECT_LE(err, 1e-5) << pname;
        }
        ASSERT_TRUE(got.tensors.count("ln_final.hook_normalized"));
        EXPECT_LE(relative_error(got.tensors.at("ln_final.hook_normalized").to_floats(), want.final_normed), 1e-4)
            << "ln_final.hook_normalized";
    }

    // Greedy decoding with the KV cache against the reference's continuation.
    if (n_generate > 0) {
        const std::vector<int32_t> prompt = token_ids(lengths.front(), spec.V, 99);
        CommandResult r = run_cli({"generate", "-m", model_dir.string(), "--ids", join_ids(prompt), "-n",
                                   std::to_string(n_generate), "--temp", "0", "--json"});
        ASSERT_EQ(r.exit_code, 0) << r.err;
        const json out = json::parse(r.out);
        const std::vector<int32_t> got = out.at("ids").get<std::vector<int32_t>>();
        double margin = 0;
        const std::vector<int32_t> want = ref.greedy(prompt, n_generate, &margin);
        EXPECT_EQ(got, want) << "greedy continuation (smallest top-2 logit gap in the reference: " << margin << ")";
    }
}

// ---------------------------------------------------------------------------------------------
// Configs. Sizes shared by the llama-family cases: C 48, 4 heads / 2 kv heads, D 16 (not C/H
// where the architecture allows it), I 80, vocab 101, 3 layers.

json llama_family_base(const std::string& model_type, const std::string& architecture) {
    return json{{"model_type", model_type},
                {"architectures", {architecture}},
                {"vocab_size", 101},
                {"hidden_size", 48},
                {"intermediate_size", 80},
                {"num_hidden_layers", 3},
                {"num_attention_heads", 4},
                {"num_key_value_heads", 2},
                {"head_dim", 16},
                {"max_position_embeddings", 64},
                {"rms_norm_eps", 1e-6},
                {"tie_word_embeddings", false},
                {"dtype", "float32"}};
}

RefSpec llama_family_spec(Arch arch) {
    RefSpec s;
    s.arch = arch;
    s.V = 101, s.C = 48, s.I = 80, s.L = 3, s.H = 4, s.Hkv = 2, s.D = 16, s.P = 64;
    s.eps = 1e-6;
    s.window.assign(3, 0);
    return s;
}

// --- Gemma-2 ---

TEST(ArchReference, Gemma2ClassicEvenLayersSlide) {
    json c = llama_family_base("gemma2", "Gemma2ForCausalLM");
    c.erase("tie_word_embeddings");  // Gemma ties by default
    c["hidden_activation"] = "gelu_pytorch_tanh";
    c["rope_theta"] = 10000.0;
    c["query_pre_attn_scalar"] = 24;
    c["attn_logit_softcapping"] = 4.0;
    c["final_logit_softcapping"] = 6.0;
    c["sliding_window"] = 6;
    RefSpec s = llama_family_spec(Arch::Gemma2);
    s.tied = true;
    s.scale = 1.0 / std::sqrt(24.0);
    s.attn_softcap = 4.0;
    s.final_softcap = 6.0;
    s.window = {6, 0, 6};  // no layer_types: layers 0, 2, ... slide
    expect_matches_reference(c, s);
}

TEST(ArchReference, Gemma2LayerTypesAndRopeParameters) {
    json c = llama_family_base("gemma2", "Gemma2ForCausalLM");
    c["tie_word_embeddings"] = true;
    c["hidden_activation"] = "gelu_pytorch_tanh";
    c["rope_parameters"] = {{"rope_type", "default"}, {"rope_theta", 500.0}};
    c["query_pre_attn_scalar"] = 16;
    c["attn_logit_softcapping"] = 3.0;
    c["final_logit_softcapping"] = 5.0;
    c["sliding_window"] = 5;
    c["layer_types"] = {"full_attention", "sliding_attention", "sliding_attention"};
    RefSpec s = llama_family_spec(Arch::Gemma2);
    s.tied = true;
    s.scale = 0.25;
    s.attn_softcap = 3.0;
    s.final_softcap = 5.0;
    s.rope.theta = 500.0;
    s.window = {0, 5, 5};
    expect_matches_reference(c, s);
}

// --- Gemma-3 (text) ---

TEST(ArchReference, Gemma3ClassicPatternLocalBaseLinearGlobal) {
    json c = llama_family_base("gemma3_text", "Gemma3ForCausalLM");
    c["tie_word_embeddings"] = true;
    c["hidden_activation"] = "gelu_pytorch_tanh";
    c["rope_theta"] = 50000.0;
    c["rope_local_base_freq"] = 100.0;
    c["rope_scaling"] = {{"rope_type", "linear"}, {"factor", 4.0}};
    c["query_pre_attn_scalar"] = 16;
    c["sliding_window"] = 7;
    c["sliding_window_pattern"] = 2;  // layers 0, 2 slide; layer 1 is global
    c["attn_logit_softcapping"] = nullptr;
    c["final_logit_softcapping"] = nullptr;
    RefSpec s = llama_family_spec(Arch::Gemma3);
    s.tied = true;
    s.scale = 0.25;
    s.rope = RefRope{.type = "linear", .theta = 50000.0, .factor = 4.0};
    s.rope_local = RefRope{.type = "default", .theta = 100.0};
    s.window = {7, 0, 7};
    expect_matches_reference(c, s);
}

TEST(ArchReference, Gemma3LayerTypesPerTypeRopeParameters) {
    json c = llama_family_base("gemma3_text", "Gemma3ForCausalLM");
    c["tie_word_embeddings"] = true;
    c["hidden_activation"] = "gelu_pytorch_tanh";
    c["rope_parameters"] = {
        {"full_attention", {{"rope_type", "linear"}, {"factor", 8.0}, {"rope_theta", 1000000.0}}},
        {"sliding_attention", {{"rope_type", "default"}, {"rope_theta", 10000.0}}}};
    c["query_pre_attn_scalar"] = 20;
    c["sliding_window"] = 6;
    c["layer_types"] = {"sliding_attention", "sliding_attention", "full_attention"};
    c["final_logit_softcapping"] = 7.0;
    RefSpec s = llama_family_spec(Arch::Gemma3);
    s.tied = true;
    s.scale = 1.0 / std::sqrt(20.0);
    s.final_softcap = 7.0;
    s.rope = RefRope{.type = "linear", .theta = 1000000.0, .factor = 8.0};
    s.rope_local = RefRope{.type = "default", .theta = 10000.0};
    s.window = {6, 6, 0};
    expect_matches_reference(c, s);
}

// --- Phi-3 ---

json phi3_config() {
    json c = llama_family_base("phi3", "Phi3ForCausalLM");
    c.erase("head_dim");  // Phi-3 derives it: 64 / 4
    c["hidden_size"] = 64;
    c["hidden_act"] = "silu";
    c["rms_norm_eps"] = 1e-5;
    c["sliding_window"] = 7;
    return c;
}

TEST(ArchReference, Phi3FusedPartialRotarySlidingWindow) {
    json c = phi3_config();
    c["rope_theta"] = 10000.0;
    c["partial_rotary_factor"] = 0.5;
    RefSpec s = llama_family_spec(Arch::Phi3);
    s.C = 64;
    s.eps = 1e-5;
    s.rope.partial = 0.5;
    s.window = {7, 7, 7};  // config.sliding_window applies to every layer
    expect_matches_reference(c, s);
}

TEST(ArchReference, Phi3RopeParametersNoWindow) {
    json c = phi3_config();
    c["sliding_window"] = nullptr;
    c["rope_parameters"] = {{"rope_type", "default"}, {"rope_theta", 2000.0}, {"partial_rotary_factor", 0.75}};
    RefSpec s = llama_family_spec(Arch::Phi3);
    s.C = 64;
    s.eps = 1e-5;
    s.rope = RefRope{.type = "default", .theta = 2000.0, .partial = 0.75};
    expect_matches_reference(c, s);
}

// --- OLMo-2 ---

TEST(ArchReference, Olmo2PostNormsFullWidthQKNorm) {
    json c = llama_family_base("olmo2", "Olmo2ForCausalLM");
    c.erase("head_dim");  // 48 / 4 = 12
    c["hidden_act"] = "silu";
    c["rms_norm_eps"] = 1e-6;
    c["rope_parameters"] = {{"rope_type", "default"}, {"rope_theta", 500000.0}};
    RefSpec s = llama_family_spec(Arch::Olmo2);
    s.D = 12;
    s.rope.theta = 500000.0;
    expect_matches_reference(c, s);
}

TEST(ArchReference, Olmo2ClassicTied) {
    json c = llama_family_base("olmo2", "Olmo2ForCausalLM");
    c["tie_word_embeddings"] = true;
    c["rope_theta"] = 1000.0;
    c["rms_norm_eps"] = 1e-5;
    RefSpec s = llama_family_spec(Arch::Olmo2);
    s.tied = true;
    s.eps = 1e-5;
    s.rope.theta = 1000.0;
    expect_matches_reference(c, s);
}

// --- Llama RoPE scaling types ---

TEST(ArchReference, LlamaLinearRopeScalingClassic) {
    json c = llama_family_base("llama", "LlamaForCausalLM");
    c["rope_theta"] = 10000.0;
    c["rope_scaling"] = {{"type", "linear"}, {"factor", 2.5}};
    RefSpec s = llama_family_spec(Arch::Llama);
    s.rope = RefRope{.type = "linear", .theta = 10000.0, .factor = 2.5};
    expect_matches_reference(c, s);
}

TEST(ArchReference, LlamaLlama3RopeParameters) {
    json c = llama_family_base("llama", "LlamaForCausalLM");
    // Wavelengths 2π·10000^(2i/16): i = 0 is high-frequency (kept), i = 1, 2 are smoothed,
    // i >= 3 are divided by the factor.
    c["rope_parameters"] = {{"rope_type", "llama3"},       {"rope_theta", 10000.0},
                            {"factor", 8.0},               {"low_freq_factor", 1.0},
                            {"high_freq_factor", 4.0},     {"original_max_position_embeddings", 80}};
    RefSpec s = llama_family_spec(Arch::Llama);
    s.rope = RefRope{.type = "llama3", .theta = 10000.0, .factor = 8.0, .original_max = 80};
    expect_matches_reference(c, s);
}

TEST(ArchReference, LlamaYarnFactorMatchesContextRatio) {
    json c = llama_family_base("llama", "LlamaForCausalLM");
    c["max_position_embeddings"] = 128;
    c["rope_parameters"] = {{"rope_type", "yarn"}, {"rope_theta", 10000.0}, {"factor", 4.0},
                            {"original_max_position_embeddings", 32}};
    RefSpec s = llama_family_spec(Arch::Llama);
    s.P = 128;
    s.rope = RefRope{.type = "yarn", .theta = 10000.0, .factor = 4.0, .original_max = 32};
    expect_matches_reference(c, s);
}

// Qwen2.5-style YaRN block: factor 4 with original_max_position_embeddings equal to
// max_position_embeddings. transformers 5 uses the explicit factor (it only warns about the
// mismatch), for the frequencies and for the default attention factor 0.1·ln(4) + 1.
TEST(ArchReference, LlamaYarnExplicitFactorWinsOverContextRatio) {
    json c = llama_family_base("llama", "LlamaForCausalLM");
    c["rope_theta"] = 10000.0;
    c["rope_scaling"] = {{"type", "yarn"}, {"factor", 4.0}, {"original_max_position_embeddings", 64}};
    RefSpec s = llama_family_spec(Arch::Llama);
    s.rope = RefRope{.type = "yarn", .theta = 10000.0, .factor = 4.0, .original_max = 64};
    expect_matches_reference(c, s);
}

// The same block with an explicit attention_factor: the frequencies alone (the ramp over the
// correction range of original_max_position_embeddings) must agree.
TEST(ArchReference, LlamaYarnExplicitAttentionFactor) {
    json c = llama_family_base("llama", "LlamaForCausalLM");
    c["rope_parameters"] = {{"rope_type", "yarn"}, {"rope_theta", 10000.0}, {"factor", 4.0},
                            {"original_max_position_embeddings", 64}, {"attention_factor", 1.25},
                            {"beta_fast", 16.0}, {"beta_slow", 2.0}};
    RefSpec s = llama_family_spec(Arch::Llama);
    s.rope = RefRope{.type = "yarn", .theta = 10000.0, .factor = 4.0, .original_max = 64,
                     .beta_fast = 16.0, .beta_slow = 2.0, .attention_factor = 1.25};
    expect_matches_reference(c, s);
}

// Dynamic NTK only changes anything past max_position_embeddings; `attnlab run` and
// `generate` refuse such lengths, so this case drives the library directly.
TEST(ArchReference, LlamaDynamicNtkBeyondMaxPositions) {
    json c = llama_family_base("llama", "LlamaForCausalLM");
    c["max_position_embeddings"] = 24;
    c["rope_theta"] = 10000.0;
    c["rope_scaling"] = {{"type", "dynamic"}, {"factor", 3.0}};
    RefSpec s = llama_family_spec(Arch::Llama);
    s.P = 24;
    s.rope = RefRope{.type = "dynamic", .theta = 10000.0, .factor = 3.0};

    TempDir dir;
    const fs::path model_dir = make_model(dir, c);
    RefModel ref(s, model_dir / "model.safetensors");
    auto model = Model::load(model_dir.string());

    // One pass over 37 > 24 tokens: every row, frequencies for length 37.
    const std::vector<int32_t> ids = token_ids(37, s.V, 5);
    KVCache kv = model->new_cache();
    ForwardOptions options;
    options.all_logits = true;
    Tensor logits = model->forward(ids, kv, options);
    RefCache cache;
    RefOutput want = ref.forward(ids, cache);
    EXPECT_LE(relative_error(logits.to_floats(), want.logits), 1e-4);

    // Also within the context (13 tokens): the plain frequencies.
    const std::vector<int32_t> short_ids = token_ids(13, s.V, 6);
    KVCache kv_short = model->new_cache();
    Tensor short_logits = model->forward(short_ids, kv_short, options);
    RefCache short_cache;
    EXPECT_LE(relative_error(short_logits.to_floats(), ref.forward(short_ids, short_cache).logits), 1e-4);

    // Greedy decode from 13 tokens to 35: the frequencies change at every step past 24, while
    // cached keys keep the rotation of their time (as in transformers' generate()).
    const std::vector<int32_t> prompt = token_ids(13, s.V, 7);
    double margin = 0;
    const std::vector<int32_t> want_ids = ref.greedy(prompt, 22, &margin);
    KVCache kv_gen = model->new_cache();
    std::vector<int32_t> got_ids;
    Tensor step = model->forward(prompt, kv_gen);
    for (int i = 0; i < 22; ++i) {
        std::vector<float> row = step.to_floats();
        const int32_t next = static_cast<int32_t>(std::max_element(row.begin(), row.end()) - row.begin());
        got_ids.push_back(next);
        const int32_t one[1] = {next};
        step = model->forward(one, kv_gen);
    }
    EXPECT_EQ(got_ids, want_ids) << "smallest top-2 gap in the reference: " << margin;
}

// --- GPT-2 ---

TEST(ArchReference, Gpt2ScaleAttnByInverseLayerIdx) {
    json c = {{"model_type", "gpt2"},
              {"architectures", {"GPT2LMHeadModel"}},
              {"vocab_size", 97},
              {"n_embd", 48},
              {"n_layer", 3},
              {"n_head", 4},
              {"n_positions", 64},
              {"layer_norm_epsilon", 1e-5},
              {"activation_function", "gelu_new"},
              {"scale_attn_by_inverse_layer_idx", true}};
    RefSpec s;
    s.arch = Arch::Gpt2;
    s.V = 97, s.C = 48, s.I = 192, s.L = 3, s.H = 4, s.Hkv = 4, s.D = 12, s.P = 64;
    s.eps = 1e-5;
    s.tied = true;
    s.window.assign(3, 0);
    s.inverse_layer_scale = true;
    expect_matches_reference(c, s);
}

// --- Fields left out: transformers falls back to the config class defaults ---
// (Gemma2Config: query_pre_attn_scalar 256, attn/final soft-caps 50/30; Gemma3TextConfig:
// query_pre_attn_scalar 256, rope_theta 1e6, rope_local_base_freq 1e4; Phi3Config and
// Olmo2Config: rms_norm_eps 1e-5.) Hub configs normally spell these out; hand-written ones may not.

TEST(ArchReferenceDefaults, Gemma2OmittedScalarAndSoftcaps) {
    json c = llama_family_base("gemma2", "Gemma2ForCausalLM");
    c["tie_word_embeddings"] = true;
    c["hidden_activation"] = "gelu_pytorch_tanh";
    c["sliding_window"] = 6;
    RefSpec s = llama_family_spec(Arch::Gemma2);
    s.tied = true;
    s.scale = 1.0 / 16.0;  // 256^-1/2
    s.attn_softcap = 50.0;
    s.final_softcap = 30.0;
    s.window = {6, 0, 6};
    expect_matches_reference(c, s, {13}, 0);
}

TEST(ArchReferenceDefaults, Gemma3OmittedScalarAndRopeBases) {
    json c = llama_family_base("gemma3_text", "Gemma3ForCausalLM");
    c["tie_word_embeddings"] = true;
    c["hidden_activation"] = "gelu_pytorch_tanh";
    c["sliding_window"] = 6;
    c["sliding_window_pattern"] = 2;
    RefSpec s = llama_family_spec(Arch::Gemma3);
    s.tied = true;
    s.scale = 1.0 / 16.0;
    s.rope = RefRope{.type = "default", .theta = 1000000.0};
    s.rope_local = RefRope{.type = "default", .theta = 10000.0};
    s.window = {6, 0, 6};
    expect_matches_reference(c, s, {13}, 0);
}

TEST(ArchReferenceDefaults, Phi3AndOlmo2OmittedRmsNormEps) {
    for (const char* type : {"phi3", "olmo2"}) {
        SCOPED_TRACE(type);
        const bool phi3 = std::string(type) == "phi3";
        json c = phi3 ? phi3_config() : llama_family_base("olmo2", "Olmo2ForCausalLM");
        c.erase("rms_norm_eps");
        RefSpec s = llama_family_spec(phi3 ? Arch::Phi3 : Arch::Olmo2);
        if (phi3) {
            s.C = 64;
            s.window = {7, 7, 7};
        }
        s.eps = 1e-5;
        // Small weights (std 0.01) bring mean squares near eps, where 1e-5 and 1e-6 differ.
        expect_matches_reference(c, s, {13}, 0, 0.01);
    }
}

// ---------------------------------------------------------------------------------------------
// Bad configs and checkpoints: one "attnlab: error:" line naming the problem.

void expect_one_error_line(const CommandResult& r, const std::string& must_contain) {
    EXPECT_NE(r.exit_code, 0);
    EXPECT_EQ(r.err.rfind("attnlab: error:", 0), 0u) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    EXPECT_NE(r.err.find(must_contain), std::string::npos) << "expected '" << must_contain << "' in: " << r.err;
}

// make-model on the config, and inspect on a directory holding only that config.json.
void expect_config_rejected(const json& config, const std::string& must_contain) {
    TempDir dir;
    const fs::path config_path = dir / "config.json";
    write_file(config_path, config.dump(2));
    CommandResult made = run_cli({"make-model", "--config", config_path.string(), "--out", (dir / "m").string(),
                                  "--dtype", "f32"});
    SCOPED_TRACE("make-model");
    expect_one_error_line(made, must_contain);
    CommandResult inspected = run_cli({"inspect", "-m", dir.path().string()});
    SCOPED_TRACE("inspect");
    expect_one_error_line(inspected, must_contain);
}

TEST(ArchReferenceErrors, UnknownModelType) {
    json c = llama_family_base("gemma7", "Gemma7ForCausalLM");
    expect_config_rejected(c, "gemma7");
}

TEST(ArchReferenceErrors, MissingRequiredField) {
    json c = llama_family_base("gemma2", "Gemma2ForCausalLM");
    c.erase("intermediate_size");
    expect_config_rejected(c, "intermediate_size");
    json p = phi3_config();
    p.erase("num_hidden_layers");
    expect_config_rejected(p, "num_hidden_layers");
}

TEST(ArchReferenceErrors, HeadsNotAMultipleOfKvHeads) {
    json c = llama_family_base("olmo2", "Olmo2ForCausalLM");
    c["num_attention_heads"] = 6;
    c["num_key_value_heads"] = 4;
    expect_config_rejected(c, "num_key_value_heads");
}

TEST(ArchReferenceErrors, LongRopeNotSupported) {
    json c = phi3_config();
    c["original_max_position_embeddings"] = 32;
    c["rope_scaling"] = {{"type", "longrope"},
                         {"short_factor", std::vector<double>(8, 1.0)},
                         {"long_factor", std::vector<double>(8, 2.0)}};
    expect_config_rejected(c, "longrope");
}

// Rewrites the checkpoint of `model_dir` into `out_dir` with one tensor dropped or replaced.
void rewrite_checkpoint(const fs::path& model_dir, const fs::path& out_dir, const std::string& name,
                        std::optional<Tensor> replacement) {
    fs::create_directories(out_dir);
    fs::copy_file(model_dir / "config.json", out_dir / "config.json");
    SafetensorsFile file = load_safetensors((model_dir / "model.safetensors").string());
    ASSERT_TRUE(file.tensors.count(name)) << name;
    std::vector<std::pair<std::string, Tensor>> tensors;
    for (const auto& [n, t] : file.tensors) {
        if (n != name) tensors.emplace_back(n, t);
        else if (replacement) tensors.emplace_back(n, *replacement);
    }
    save_safetensors((out_dir / "model.safetensors").string(), tensors);
}

TEST(ArchReferenceErrors, MissingOrMisshapenTensorIsNamed) {
    struct Case {
        json config;
        std::string tensor;
        Shape wrong_shape;
    };
    json gemma3 = llama_family_base("gemma3_text", "Gemma3ForCausalLM");
    json phi3 = phi3_config();
    json olmo2 = llama_family_base("olmo2", "Olmo2ForCausalLM");
    const std::vector<Case> cases = {
        {gemma3, "model.layers.1.self_attn.k_norm.weight", {12}},
        {gemma3, "model.layers.2.pre_feedforward_layernorm.weight", {47}},
        {phi3, "model.layers.1.self_attn.qkv_proj.weight", {120, 64}},  // right: (64 + 2·32, 64)
        {phi3, "model.layers.0.mlp.gate_up_proj.weight", {80, 64}},
        {olmo2, "model.layers.2.self_attn.q_norm.weight", {16}},
        {olmo2, "lm_head.weight", {101, 47}},
    };
    for (const Case& c : cases) {
        SCOPED_TRACE(c.tensor);
        TempDir dir;
        const fs::path model_dir = make_model(dir, c.config);
        const std::vector<int32_t> ids = {1, 2, 3};
        for (bool remove : {true, false}) {
            SCOPED_TRACE(remove ? "removed" : "wrong shape");
            const fs::path bad = dir / (remove ? "removed" : "reshaped");
            std::optional<Tensor> replacement;
            if (!remove) replacement = Tensor::full(c.wrong_shape, 0.5);
            rewrite_checkpoint(model_dir, bad, c.tensor, replacement);
            CommandResult r = run_cli({"run", "-m", bad.string(), "--ids", join_ids(ids), "--save",
                                       (dir / "out.safetensors").string()});
            expect_one_error_line(r, c.tensor);
        }
    }
}

}  // namespace
}  // namespace attnlab::test
