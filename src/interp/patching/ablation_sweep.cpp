// Ablation sweeps (patching.h): the metric with each head, and each layer's heads together,
// knocked out by the `ablate` intervention's modes (papers-analysis §5 uniform masking, §6 zero
// and one-hot-BOS ablation; the fixtures' ablations.json).
#include <attnlab/error.h>
#include <attnlab/intervention.h>
#include <attnlab/patching.h>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>

namespace attnlab {

namespace {

constexpr const char* kModes[][2] = {
    {"zero", "zero_output"}, {"uniform", "uniform_attention"}, {"mean", "mean_output"}, {"bos", "bos_attention"}};

// Mean z (H·D) per layer over every position of the reference sequences, in float64 and rounded
// once, as the `ablate` intervention's mean mode computes it.
std::vector<std::vector<float>> mean_z(const Model& model, const Sequences& reference) {
    const ModelConfig& c = model.config();
    const int64_t HD = c.n_head * c.head_dim;
    std::vector<std::string> names;
    for (int64_t l = 0; l < c.n_layer; ++l) names.push_back(patch_point_name(l, "z"));
    std::vector<std::vector<double>> sums(static_cast<size_t>(c.n_layer), std::vector<double>(size_t(HD), 0.0));
    int64_t rows = 0;
    for (const std::vector<int32_t>& ids : reference) {
        ATTNLAB_CHECK(!ids.empty(), InvalidArgument, "[ablation sweep] an empty mean reference sequence");
        ActivationCache cache(names);
        KVCache kv = model.new_cache();
        ForwardOptions options;
        options.hooks = &cache;
        model.forward(ids, kv, options);
        for (int64_t l = 0; l < c.n_layer; ++l) {
            const Tensor& z = cache.at(names[l]);  // (T, H, D)
            for (int64_t t = 0; t < z.size(0); ++t)
                for (int64_t k = 0; k < HD; ++k) sums[l][k] += z.data<float>()[t * HD + k];
        }
        rows += static_cast<int64_t>(ids.size());
    }
    std::vector<std::vector<float>> means(sums.size());
    for (size_t l = 0; l < sums.size(); ++l)
        for (double s : sums[l]) means[l].push_back(static_cast<float>(s / double(rows)));
    return means;
}

}  // namespace

HeadAblator::HeadAblator(const Model& model, Sequences sequences, const Metric& metric, std::string mode,
                         const Sequences& mean_reference)
    : model_(model), sequences_(std::move(sequences)), metric_(metric), mode_(std::move(mode)) {
    ablation_result_key(mode_);  // validates the mode
    if (mode_ == "mean") means_ = mean_z(model_, mean_reference.empty() ? sequences_ : mean_reference);
}

MetricValues HeadAblator::operator()(const std::vector<HeadRef>& heads) const {
    const ModelConfig& c = model_.config();
    for (const HeadRef& h : heads)
        ATTNLAB_CHECK(h.layer >= 0 && h.layer < c.n_layer && h.head >= 0 && h.head < c.n_head, InvalidArgument,
                      "[ablation] head {}:{} outside the model ({} layers x {} heads)", h.layer, h.head, c.n_layer,
                      c.n_head);
    if (heads.empty()) return measure(model_, sequences_, metric_);
    if (mode_ == "mean") {
        // z_h := its mean at every position, at hook_z (the ablate intervention writes the same
        // values in its attention edit, just before hook_z).
        const int64_t H = c.n_head, D = c.head_dim;
        std::map<int64_t, std::vector<int64_t>> by_layer;
        for (const HeadRef& h : heads) by_layer[h.layer].push_back(h.head);
        std::vector<ActivationPatch> patches(sequences_.size());
        for (size_t i = 0; i < sequences_.size(); ++i) {
            const int64_t T = static_cast<int64_t>(sequences_[i].size());
            for (const auto& [layer, list] : by_layer) {
                Tensor source = Tensor::empty({T, H, D});  // (T, H, D): the layer's means on every row
                for (int64_t t = 0; t < T; ++t) std::copy_n(means_[layer].data(), H * D, source.data<float>() + t * H * D);
                patches[i].add(patch_point_name(layer, "z"), source, {}, list);
            }
        }
        return measure(model_, sequences_, metric_, [&](size_t i) { return &patches[i]; });
    }
    std::string targets;
    for (const HeadRef& h : heads) targets += fmt::format("{}{}:{}", targets.empty() ? "" : ",", h.layer, h.head);
    const InterventionEnv env{&model_, nullptr};
    InterventionSet set = InterventionSet::from_json(
        fmt::format(R"([{{"type": "ablate", "mode": "{}", "heads": "{}"}}])", mode_, targets), env, "ablation");
    return measure(model_, sequences_, metric_, [&](size_t) {
        set.begin_sequence();
        return &set;
    });
}

std::string ablation_result_key(std::string_view mode) {
    for (const auto& m : kModes)
        if (mode == m[0]) return m[1];
    throw InvalidArgument(fmt::format("[ablation sweep] unknown mode '{}' (zero, uniform, mean, bos)", mode));
}

AblationSweepResult ablation_sweep(const Model& model, const Sequences& sequences, const Metric& metric,
                                   const AblationSweepOptions& options, const ProbeControl& control) {
    const char* where = "ablation sweep";
    const ModelConfig& c = model.config();
    ATTNLAB_CHECK(!sequences.empty(), InvalidArgument, "[{}] no sequences", where);
    for (const auto& s : sequences) ATTNLAB_CHECK(!s.empty(), InvalidArgument, "[{}] an empty sequence", where);
    ATTNLAB_CHECK(!options.modes.empty(), InvalidArgument, "[{}] no ablation mode", where);
    for (const std::string& m : options.modes) ablation_result_key(m);
    metric.check(sequences, c.vocab_size, where);

    AblationSweepResult result;
    result.modes = options.modes;
    result.total = (options.single_heads ? c.n_layer * c.n_head : 0) + (options.whole_layers ? c.n_layer : 0);
    result.total *= static_cast<int64_t>(options.modes.size());
    result.baseline = measure(model, sequences, metric);

    std::vector<HeadAblator> ablators;
    for (const std::string& mode : options.modes)
        ablators.emplace_back(model, sequences, metric, mode, options.mean_reference);
    auto sweep = [&](int64_t layer, int64_t head, std::vector<AblationEntry>& into) {
        std::vector<HeadRef> heads;
        for (int64_t h = 0; h < c.n_head; ++h)
            if (head < 0 || h == head) heads.push_back({layer, h});
        AblationEntry entry{layer, head, {}};
        for (const HeadAblator& ablate : ablators) {
            if (control.cancelled()) break;
            entry.by_mode.push_back(ablate(heads));
            control.report(++result.done, result.total);
        }
        if (!entry.by_mode.empty()) into.push_back(std::move(entry));
        result.interrupted = control.cancelled() && result.done < result.total;
    };
    for (int64_t l = 0; options.single_heads && l < c.n_layer && !result.interrupted; ++l)
        for (int64_t h = 0; h < c.n_head && !result.interrupted; ++h) sweep(l, h, result.heads);
    for (int64_t l = 0; options.whole_layers && l < c.n_layer && !result.interrupted; ++l) sweep(l, -1, result.layers);
    return result;
}

std::string AblationSweepResult::to_json() const {
    using json = nlohmann::ordered_json;
    auto entry_json = [&](const AblationEntry& e) {
        json j;
        j["layer"] = e.layer;
        if (e.head >= 0) j["head"] = e.head;
        for (size_t m = 0; m < e.by_mode.size(); ++m) j[ablation_result_key(modes[m])] = json::parse(e.by_mode[m].to_json());
        return j;
    };
    json j;
    j["baseline"] = json::parse(baseline.to_json());
    j["heads"] = json::array();
    for (const AblationEntry& e : heads) j["heads"].push_back(entry_json(e));
    j["all_heads_of_layer"] = json::array();
    for (const AblationEntry& e : layers) j["all_heads_of_layer"].push_back(entry_json(e));
    j["interrupted"] = interrupted;
    return j.dump(1);
}

}  // namespace attnlab
