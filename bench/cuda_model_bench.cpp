// Whole-model timing on the GPU (CudaModel, BF16): prefill of a prompt and greedy decode steps
// against the KV cache, for a random model of a named shape (weights do not change the time).
//
//   cuda_model_bench [--shape qwen2.5-0.5b] [--prompt 512] [--decode 128] [--repeats 5] [--dir DIR]
//
// The checkpoint (random bf16 weights, ~1 GB for Qwen2.5-0.5B) is written to DIR (default
// /tmp/attnlab-bench-<shape>) once and reused. Prints medians of `repeats` runs.

#include <attnlab/cuda.h>
#include <attnlab/cuda_model.h>
#include <attnlab/error.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

using namespace attnlab;
using json = nlohmann::json;

namespace {

// transformers' Qwen2.5-0.5B config (the shape only).
json qwen25_05b() {
    return {{"architectures", {"Qwen2ForCausalLM"}},
            {"model_type", "qwen2"},
            {"vocab_size", 151936},
            {"hidden_size", 896},
            {"intermediate_size", 4864},
            {"num_hidden_layers", 24},
            {"num_attention_heads", 14},
            {"num_key_value_heads", 2},
            {"max_position_embeddings", 32768},
            {"rms_norm_eps", 1e-6},
            {"rope_theta", 1000000.0},
            {"tie_word_embeddings", true},
            {"torch_dtype", "bfloat16"}};
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
    std::string shape = "qwen2.5-0.5b", dir;
    int64_t prompt_len = 512, decode_steps = 128, repeats = 5;
    for (int i = 1; i + 1 < argc; i += 2) {
        const std::string a = argv[i], v = argv[i + 1];
        if (a == "--shape") shape = v;
        else if (a == "--prompt") prompt_len = std::stoll(v);
        else if (a == "--decode") decode_steps = std::stoll(v);
        else if (a == "--repeats") repeats = std::stoll(v);
        else if (a == "--dir") dir = v;
        else {
            std::fprintf(stderr, "cuda_model_bench: unknown option %s\n", a.c_str());
            return 2;
        }
    }
    try {
        if (shape != "qwen2.5-0.5b") throw InvalidArgument("[bench] known shapes: qwen2.5-0.5b");
        if (!cuda_available()) throw NotSupported("[bench] no CUDA device");
        if (dir.empty()) dir = "/tmp/attnlab-bench-" + shape;
        const json config = qwen25_05b();
        if (!std::filesystem::exists(std::filesystem::path(dir) / "model.safetensors")) {
            const auto t0 = std::chrono::steady_clock::now();
            std::filesystem::create_directories(dir);
            std::ofstream(std::filesystem::path(dir) / "config.json") << config.dump(2);
            const ModelConfig parsed = parse_model_config(config.dump(), dir + "/config.json");
            save_random_checkpoint(parsed, DType::BF16, 1, 0.02, dir + "/model.safetensors");
            std::printf("wrote a random %s checkpoint in %.1f s\n", shape.c_str(), seconds_since(t0));
        }
        const auto model = Model::load(dir);
        const ModelConfig& c = model->config();
        auto t0 = std::chrono::steady_clock::now();
        const CudaModel gpu(*model, {CudaPrecision::BF16});
        std::printf("%s: %ld params, uploaded %.1f MB of bf16 weights in %.1f s\n", shape.c_str(),
                    long(model->parameter_count()), gpu.weight_bytes() / 1e6, seconds_since(t0));

        std::mt19937 rng(3);
        std::vector<int32_t> prompt(static_cast<size_t>(prompt_len));
        for (int32_t& id : prompt) id = static_cast<int32_t>(rng() % c.vocab_size);

        std::vector<double> prefill_s, decode_s, enqueue_s, plans_s, wait_s;  // enqueue/wait: per decode step
        for (int64_t r = 0; r < repeats + 1; ++r) {  // the first run warms up (cuBLAS heuristics, allocations)
            CudaKVCache cache = gpu.new_cache();
            t0 = std::chrono::steady_clock::now();
            int32_t next = gpu.forward_greedy(prompt, cache);
            const double p = seconds_since(t0);
            t0 = std::chrono::steady_clock::now();
            double enqueue = 0, plans = 0, wait = 0;
            for (int64_t s = 0; s < decode_steps; ++s) {
                const int32_t one[1] = {next};
                next = gpu.forward_greedy(one, cache);
                enqueue += gpu.last_call_timing().enqueue_s;
                plans += gpu.last_call_timing().plans_s;
                wait += gpu.last_call_timing().wait_s;
            }
            const double d = seconds_since(t0);
            if (r > 0) {
                prefill_s.push_back(p), decode_s.push_back(d);
                enqueue_s.push_back(enqueue / decode_steps), plans_s.push_back(plans / decode_steps);
                wait_s.push_back(wait / decode_steps);
            }
        }
        const double p = median(prefill_s), d = median(decode_s);
        std::printf("prefill %ld tokens: %.2f ms (%.0f tokens/s)\n", long(prompt_len), p * 1e3, prompt_len / p);
        std::printf("greedy decode %ld steps after it: %.3f ms/token (%.0f tokens/s); weights read per step %.0f MB "
                    "-> %.0f GB/s\n",
                    long(decode_steps), d / decode_steps * 1e3, decode_steps / d, gpu.weight_bytes() / 1e6,
                    gpu.weight_bytes() / (d / decode_steps) / 1e9);
        std::printf("decode step: host enqueue %.3f ms (of which attention plans %.3f ms), then GPU wait %.3f ms\n",
                    median(enqueue_s) * 1e3, median(plans_s) * 1e3, median(wait_s) * 1e3);
        std::printf("end-to-end (prefill + %ld tokens): %.1f ms\n", long(decode_steps), (p + d) * 1e3);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "cuda_model_bench: %s\n", e.what());
        return 1;
    }
    return 0;
}
