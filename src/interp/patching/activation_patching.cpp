// Activation patching (patching.h): one run of the base input per (layer, head, position) unit
// with that unit's slice of a hook point taken from the source run.
#include <attnlab/error.h>
#include <attnlab/patching.h>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <numeric>

namespace attnlab {

namespace {

// Layers to sweep: the given ones (checked) or all.
std::vector<int64_t> sweep_layers(const std::vector<int64_t>& given, int64_t n_layer, const char* where) {
    if (given.empty()) {
        std::vector<int64_t> all(static_cast<size_t>(n_layer));
        std::iota(all.begin(), all.end(), 0);
        return all;
    }
    for (int64_t l : given)
        ATTNLAB_CHECK(l >= 0 && l < n_layer, InvalidArgument, "[{}] layer {} outside 0..{}", where, l, n_layer - 1);
    return given;
}

// Positions to sweep: the given ones, valid in every sequence, or all of a common length.
std::vector<int64_t> sweep_positions(const std::vector<int64_t>& given, const Sequences& seqs, const char* where) {
    size_t shortest = seqs.front().size(), longest = shortest;
    for (const auto& s : seqs) {
        shortest = std::min(shortest, s.size());
        longest = std::max(longest, s.size());
    }
    if (given.empty()) {
        ATTNLAB_CHECK(shortest == longest, InvalidArgument,
                      "[{}] sequences of {} to {} tokens: sweeping every position needs one length (give positions)",
                      where, shortest, longest);
        std::vector<int64_t> all(shortest);
        std::iota(all.begin(), all.end(), 0);
        return all;
    }
    for (int64_t t : given)
        ATTNLAB_CHECK(t >= 0 && t < static_cast<int64_t>(shortest), InvalidArgument,
                      "[{}] position {} outside 0..{} (the shortest sequence)", where, t, shortest - 1);
    return given;
}

}  // namespace

const char* direction_name(PatchDirection d) {
    return d == PatchDirection::CleanIntoCorrupted ? "clean->corrupted" : "corrupted->clean";
}

ActivationPatchingResult activation_patching(const Model& model, const RunPair& pair, const Metric& metric,
                                             const ActivationPatchingOptions& options, const ProbeControl& control) {
    const char* where = "activation patching";
    const ModelConfig& c = model.config();
    pair.check(where);
    metric.check(pair.clean, c.vocab_size, where);
    metric.check(pair.corrupted, c.vocab_size, where);
    patch_point_name(0, options.point, where);  // validates the kind
    const std::vector<int64_t> layers = sweep_layers(options.layers, c.n_layer, where);
    const std::vector<int64_t> positions =
        options.per_position ? sweep_positions(options.positions, pair.clean, where) : std::vector<int64_t>{-1};
    const int64_t n_heads = point_heads(c, options.point);
    std::vector<int64_t> heads(static_cast<size_t>(std::max<int64_t>(n_heads, 1)), -1);
    if (n_heads > 0) std::iota(heads.begin(), heads.end(), 0);

    const bool into_corrupted = options.direction == PatchDirection::CleanIntoCorrupted;
    const Sequences& base_input = into_corrupted ? pair.corrupted : pair.clean;
    const Sequences& source_input = into_corrupted ? pair.clean : pair.corrupted;
    std::vector<std::string> names;
    for (int64_t l : layers) names.push_back(patch_point_name(l, options.point));
    const CachedRun source = cached_run(model, source_input, metric, names);
    const MetricValues base = measure(model, base_input, metric);

    ActivationPatchingResult result;
    result.point = options.point;
    result.direction = direction_name(options.direction);
    result.metric_name = metric.names().at(0);
    result.clean = into_corrupted ? source.metric : base;
    result.corrupted = into_corrupted ? base : source.metric;
    result.total = static_cast<int64_t>(layers.size() * heads.size() * positions.size());
    for (size_t li = 0; li < layers.size(); ++li)
        for (int64_t h : heads)
            for (int64_t t : positions) {
                if (control.cancelled()) {
                    result.interrupted = true;
                    return result;
                }
                const int64_t l = layers[li];
                const std::string& name = names[li];
                std::vector<ActivationPatch> patches(base_input.size());
                for (size_t i = 0; i < patches.size(); ++i)
                    patches[i].add(name, source.activations[i].at(name), t < 0 ? std::vector<int64_t>{} : std::vector{t},
                                   h < 0 ? std::vector<int64_t>{} : std::vector{h});
                const double m = measure(model, base_input, metric, [&](size_t i) { return &patches[i]; }).primary();
                result.entries.push_back({l, h, t, m, patch_score(m, base.primary(), source.metric.primary())});
                control.report(static_cast<int64_t>(result.entries.size()), result.total);
            }
    return result;
}

std::string ActivationPatchingResult::to_json() const {
    nlohmann::ordered_json j;
    j["point"] = point;
    j["direction"] = direction;
    j["metric"] = metric_name;
    j["clean"] = nlohmann::ordered_json::parse(clean.to_json());
    j["corrupted"] = nlohmann::ordered_json::parse(corrupted.to_json());
    j["entries"] = nlohmann::ordered_json::array();
    for (const PatchEntry& e : entries)
        j["entries"].push_back({{"layer", e.layer}, {"head", e.head}, {"position", e.position}, {"metric", e.metric},
                                {"score", e.score}});
    j["total"] = total;
    j["interrupted"] = interrupted;
    return j.dump(1);
}

}  // namespace attnlab
