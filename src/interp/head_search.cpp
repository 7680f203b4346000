// The head-set search driver (head_search.h): greedy rounds and one-round screens over any
// objective of a head set.
#include <attnlab/error.h>
#include <attnlab/head_search.h>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <memory>

namespace attnlab {

namespace {

// a better than b in the search's direction (lexicographic; shorter vectors compare as prefixes).
bool better(const ObjectiveValue& a, const ObjectiveValue& b, bool minimise) {
    return minimise ? std::lexicographical_compare(a.begin(), a.end(), b.begin(), b.end())
                    : std::lexicographical_compare(b.begin(), b.end(), a.begin(), a.end());
}

std::vector<HeadRef> candidate_heads(const ModelConfig& c, const HeadSearchOptions& options, const char* where) {
    std::vector<HeadRef> out = options.candidates;
    if (out.empty())
        for (int64_t l = 0; l < c.n_layer; ++l)
            for (int64_t h = 0; h < c.n_head; ++h) out.push_back({l, h});
    for (const HeadRef& h : out)
        ATTNLAB_CHECK(h.layer >= 0 && h.layer < c.n_layer && h.head >= 0 && h.head < c.n_head, InvalidArgument,
                      "[{}] candidate head {}:{} outside the model ({} layers x {} heads)", where, h.layer, h.head,
                      c.n_layer, c.n_head);
    std::sort(out.begin(), out.end());
    out.erase(std::unique(out.begin(), out.end()), out.end());
    ATTNLAB_CHECK(options.max_heads >= 0, InvalidArgument, "[{}] max_heads must be >= 0", where);
    return out;
}

ObjectiveValue evaluate(const HeadObjective& objective, const std::vector<HeadRef>& heads, const char* where) {
    ObjectiveValue v = objective(heads);
    ATTNLAB_CHECK(!v.empty(), InvalidArgument, "[{}] the objective returned no value", where);
    return v;
}

nlohmann::ordered_json objective_json(const ObjectiveValue& v) {
    return v.size() == 1 ? nlohmann::ordered_json(v[0]) : nlohmann::ordered_json(v);
}

}  // namespace

HeadSearchResult greedy_head_search(const HeadObjective& objective, const ModelConfig& c,
                                    const HeadSearchOptions& options, const ProbeControl& control) {
    const char* where = "head search";
    std::vector<HeadRef> remaining = candidate_heads(c, options, where);
    const int64_t n = static_cast<int64_t>(remaining.size());
    const int64_t rounds = options.max_heads > 0 ? std::min(options.max_heads, n) : n;
    const int64_t worst = 1 + rounds * n - rounds * (rounds - 1) / 2;  // 1 + n + (n−1) + ... over the rounds
    auto reached = [&](const ObjectiveValue& v) {
        return (options.stop_below && v[0] < *options.stop_below) || (options.stop_above && v[0] > *options.stop_above);
    };

    HeadSearchResult result;
    std::vector<HeadRef> chosen;
    result.initial = evaluate(objective, chosen, where);
    result.evaluations = 1;
    control.report(result.evaluations, worst);
    result.reached_target = reached(result.initial);
    while (!result.reached_target && !remaining.empty() && static_cast<int64_t>(chosen.size()) < rounds) {
        size_t best = 0;
        ObjectiveValue best_value;
        for (size_t k = 0; k < remaining.size(); ++k) {
            if (control.cancelled()) {
                result.interrupted = true;
                return result;
            }
            std::vector<HeadRef> trial = chosen;
            trial.push_back(remaining[k]);
            ObjectiveValue v = evaluate(objective, trial, where);
            ++result.evaluations;
            control.report(result.evaluations, worst);
            if (k == 0 || better(v, best_value, options.minimise)) {  // ties keep the earlier head
                best = k;
                best_value = std::move(v);
            }
        }
        chosen.push_back(remaining[best]);
        result.rounds.push_back({remaining[best], best_value, static_cast<int64_t>(remaining.size())});
        remaining.erase(remaining.begin() + static_cast<std::ptrdiff_t>(best));
        result.reached_target = reached(best_value);
    }
    return result;
}

HeadScreenResult screen_heads(const HeadObjective& objective, const ModelConfig& c, const HeadSearchOptions& options,
                              const ProbeControl& control) {
    const char* where = "head screen";
    const std::vector<HeadRef> candidates = candidate_heads(c, options, where);
    const int64_t total = 1 + static_cast<int64_t>(candidates.size());
    HeadScreenResult result;
    result.initial = evaluate(objective, {}, where);
    control.report(1, total);
    for (const HeadRef& h : candidates) {
        if (control.cancelled()) {
            result.interrupted = true;
            break;
        }
        result.entries.push_back({h, evaluate(objective, {h}, where)});
        control.report(1 + static_cast<int64_t>(result.entries.size()), total);
    }
    std::stable_sort(result.entries.begin(), result.entries.end(), [&](const HeadScreenEntry& a, const HeadScreenEntry& b) {
        return better(a.objective, b.objective, options.minimise);
    });
    return result;
}

std::vector<HeadRef> HeadSearchResult::heads() const {
    std::vector<HeadRef> out;
    for (const HeadSearchRound& r : rounds) out.push_back(r.head);
    return out;
}

std::string HeadSearchResult::to_json() const {
    nlohmann::ordered_json j;
    j["initial"] = objective_json(initial);
    j["heads"] = nlohmann::ordered_json::array();
    for (const HeadSearchRound& r : rounds)
        j["heads"].push_back({{"layer", r.head.layer}, {"head", r.head.head}, {"objective", objective_json(r.objective)},
                              {"evaluated", r.evaluated}});
    j["reached_target"] = reached_target;
    j["interrupted"] = interrupted;
    j["evaluations"] = evaluations;
    return j.dump(1);
}

std::string HeadScreenResult::to_json() const {
    nlohmann::ordered_json j;
    j["initial"] = objective_json(initial);
    j["heads"] = nlohmann::ordered_json::array();
    for (const HeadScreenEntry& e : entries)
        j["heads"].push_back({{"layer", e.head.layer}, {"head", e.head.head}, {"objective", objective_json(e.objective)}});
    j["interrupted"] = interrupted;
    return j.dump(1);
}

HeadObjective ablation_objective(const Model& model, const Sequences& sequences, const Metric& metric,
                                 const std::string& mode, const std::string& value,
                                 const std::vector<std::string>& tie_breakers) {
    metric.check(sequences, model.config().vocab_size, "head search");
    auto ablate = std::make_shared<HeadAblator>(model, sequences, metric, mode);
    // Check the value names now rather than in the first round.
    std::vector<std::pair<std::string, double>> parts = {{value, 1.0}};
    for (const std::string& t : tie_breakers)
        parts.push_back(t.starts_with("-") ? std::pair{t.substr(1), -1.0} : std::pair{t, 1.0});
    const std::vector<std::string> names = metric.names();
    for (const auto& [name, sign] : parts)
        ATTNLAB_CHECK(std::find(names.begin(), names.end(), name) != names.end(), InvalidArgument,
                      "[head search] the metric has no value '{}' (it has: {})", name, fmt::join(names, ", "));
    return [ablate, parts](const std::vector<HeadRef>& heads) {
        const MetricValues m = (*ablate)(heads);
        ObjectiveValue v;
        for (const auto& [name, sign] : parts) v.push_back(sign * m.at(name));
        return v;
    };
}

}  // namespace attnlab
