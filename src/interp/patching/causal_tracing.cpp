// Causal tracing (ROME; papers-multimodal §9 FCCT): corrupt the input with Gaussian noise on the
// embeddings of chosen positions, then restore one clean state (layer, position) at a time and
// measure how much of the clean metric comes back.
#include <attnlab/error.h>
#include <attnlab/patching.h>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <numeric>
#include <random>

namespace attnlab {

namespace {

// Adds a fixed noise tensor (T, C) to hook_embed: the same noise in every run of a sequence, so
// that restoring every state gives back exactly the clean run.
class EmbeddingNoise : public Hooks {
public:
    explicit EmbeddingNoise(std::vector<float> noise) : noise_(std::move(noise)) {}  // (T, C)
    bool wants(const std::string& name) const override { return name == "hook_embed"; }
    void on(const std::string& name, Tensor& x) override {  // x (T, C)
        ATTNLAB_CHECK(static_cast<size_t>(x.numel()) == noise_.size(), InvalidArgument,
                      "[causal tracing] hook_embed {} does not match the noise", x.shape_string());
        float* data = x.data<float>();
        for (size_t k = 0; k < noise_.size(); ++k) data[k] += noise_[k];
        (void)name;
    }

private:
    std::vector<float> noise_;
};

}  // namespace

CausalTracingResult causal_tracing(const Model& model, const Sequences& prompts, const Metric& metric,
                                   const CausalTracingOptions& options, const ProbeControl& control) {
    const char* where = "causal tracing";
    const ModelConfig& c = model.config();
    ATTNLAB_CHECK(!prompts.empty(), InvalidArgument, "[{}] no prompts", where);
    size_t shortest = prompts.front().size(), longest = shortest;
    for (const auto& p : prompts) {
        ATTNLAB_CHECK(!p.empty(), InvalidArgument, "[{}] an empty prompt", where);
        shortest = std::min(shortest, p.size());
        longest = std::max(longest, p.size());
    }
    metric.check(prompts, c.vocab_size, where);
    patch_point_name(0, options.point, where);
    ATTNLAB_CHECK(!is_head_point(options.point), InvalidArgument,
                  "[{}] the restored state must be a residual point (resid_pre, resid_mid, resid_post, attn_out, "
                  "mlp_out), got '{}'", where, options.point);
    ATTNLAB_CHECK(options.noise_multiplier >= 0 && options.noise_std >= 0 && std::isfinite(options.noise_multiplier) &&
                      std::isfinite(options.noise_std),
                  InvalidArgument, "[{}] the noise scale must be finite and >= 0", where);
    std::vector<int64_t> layers = options.layers, positions = options.positions;
    if (layers.empty()) {
        layers.resize(static_cast<size_t>(c.n_layer));
        std::iota(layers.begin(), layers.end(), 0);
    }
    for (int64_t l : layers)
        ATTNLAB_CHECK(l >= 0 && l < c.n_layer, InvalidArgument, "[{}] layer {} outside 0..{}", where, l, c.n_layer - 1);
    if (positions.empty()) {
        ATTNLAB_CHECK(shortest == longest, InvalidArgument,
                      "[{}] prompts of {} to {} tokens: tracing every position needs one length (give positions)", where,
                      shortest, longest);
        positions.resize(shortest);
        std::iota(positions.begin(), positions.end(), 0);
    }
    for (int64_t t : positions)
        ATTNLAB_CHECK(t >= 0 && t < static_cast<int64_t>(shortest), InvalidArgument,
                      "[{}] position {} outside 0..{} (the shortest prompt)", where, t, shortest - 1);
    for (int64_t t : options.noise_positions)
        ATTNLAB_CHECK(t >= 0 && t < static_cast<int64_t>(shortest), InvalidArgument,
                      "[{}] noise position {} outside 0..{} (the shortest prompt)", where, t, shortest - 1);

    // The clean runs: states to restore, and the input embeddings whose std scales the noise.
    std::vector<std::string> names = {"hook_embed"};
    for (int64_t l : layers) names.push_back(patch_point_name(l, options.point));
    const CachedRun clean = cached_run(model, prompts, metric, names);
    double noise_std = options.noise_std;
    if (noise_std == 0) {
        double sum = 0, sum_sq = 0, n = 0;
        for (const auto& acts : clean.activations)
            for (float v : acts.at("hook_embed").to_floats()) {
                sum += v;
                sum_sq += double(v) * v;
                n += 1;
            }
        const double mean = sum / n;
        noise_std = options.noise_multiplier * std::sqrt(std::max(0.0, sum_sq / n - mean * mean));
    }

    // Sequence i's noise (T, C): seeded by seed + i, drawn position by position over noise_positions.
    std::vector<EmbeddingNoise> noise;
    for (size_t i = 0; i < prompts.size(); ++i) {
        const int64_t T = static_cast<int64_t>(prompts[i].size()), C = c.hidden_size;
        std::vector<float> values(static_cast<size_t>(T * C), 0.0f);  // (T, C)
        std::mt19937_64 rng(options.seed + i);
        std::normal_distribution<double> normal(0.0, 1.0);
        std::vector<int64_t> noisy = options.noise_positions;
        if (noisy.empty()) {
            noisy.resize(static_cast<size_t>(T));
            std::iota(noisy.begin(), noisy.end(), 0);
        }
        for (int64_t t : noisy)
            for (int64_t k = 0; k < C; ++k) values[t * C + k] = static_cast<float>(noise_std * normal(rng));
        noise.emplace_back(std::move(values));
    }
    const MetricValues corrupted = measure(model, prompts, metric, [&](size_t i) { return &noise[i]; });

    CausalTracingResult result;
    result.point = options.point;
    result.metric_name = metric.names().at(0);
    result.noise_std = noise_std;
    result.clean = clean.metric;
    result.corrupted = corrupted;
    result.total = static_cast<int64_t>(layers.size() * positions.size());
    for (size_t li = 0; li < layers.size(); ++li)
        for (int64_t t : positions) {
            if (control.cancelled()) {
                result.interrupted = true;
                return result;
            }
            const std::string& name = names[li + 1];
            std::vector<ActivationPatch> restore(prompts.size());
            std::vector<HookChain> chains(prompts.size());
            for (size_t i = 0; i < prompts.size(); ++i) {
                restore[i].add(name, clean.activations[i].at(name), {t});
                chains[i].add(&noise[i]);
                chains[i].add(&restore[i]);
            }
            const double m = measure(model, prompts, metric, [&](size_t i) { return &chains[i]; }).primary();
            result.entries.push_back({layers[li], t, m, patch_score(m, corrupted.primary(), clean.metric.primary())});
            control.report(static_cast<int64_t>(result.entries.size()), result.total);
        }
    return result;
}

std::string CausalTracingResult::to_json() const {
    nlohmann::ordered_json j;
    j["point"] = point;
    j["metric"] = metric_name;
    j["noise_std"] = noise_std;
    j["clean"] = nlohmann::ordered_json::parse(clean.to_json());
    j["corrupted"] = nlohmann::ordered_json::parse(corrupted.to_json());
    j["entries"] = nlohmann::ordered_json::array();
    for (const TraceEntry& e : entries)
        j["entries"].push_back({{"layer", e.layer}, {"position", e.position}, {"metric", e.metric}, {"score", e.score}});
    j["total"] = total;
    j["interrupted"] = interrupted;
    return j.dump(1);
}

}  // namespace attnlab
