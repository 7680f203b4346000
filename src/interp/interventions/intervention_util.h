// Pieces every intervention file shares: reading its JSON object (typed fields with one clear
// error line each), head targets grouped by layer, and the factory signature of the registry.
#pragma once

#include <attnlab/error.h>
#include <attnlab/intervention.h>

#include <nlohmann/json.hpp>

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace attnlab::intervention_util {

// One intervention object of a spec, with the `where` prefix of its errors ("interventions[2] (act)").
class Fields {
public:
    Fields(const nlohmann::json& object, const InterventionEnv& env, std::string where)
        : j_(object), env_(env), where_(std::move(where)) {}

    const std::string& where() const { return where_; }
    const InterventionEnv& env() const { return env_; }
    const Model& model() const { return *env_.model; }
    bool has(const char* key) const { return j_.contains(key); }

    double number(const char* key, std::optional<double> fallback = std::nullopt) const {
        if (!j_.contains(key)) {
            ATTNLAB_CHECK(fallback.has_value(), InvalidArgument, "[{}] missing \"{}\"", where_, key);
            return *fallback;
        }
        ATTNLAB_CHECK(j_[key].is_number(), InvalidArgument, "[{}] \"{}\" must be a number", where_, key);
        return j_[key].get<double>();
    }
    // A number in [lo, hi].
    double number_in(const char* key, double lo, double hi, std::optional<double> fallback = std::nullopt) const {
        const double v = number(key, fallback);
        ATTNLAB_CHECK(v >= lo && v <= hi, InvalidArgument, "[{}] \"{}\" must be in [{}, {}], got {}", where_, key, lo, hi, v);
        return v;
    }
    int64_t integer(const char* key, std::optional<int64_t> fallback = std::nullopt, int64_t min_value = 0) const {
        const double v = number(key, fallback ? std::optional<double>(double(*fallback)) : std::nullopt);
        ATTNLAB_CHECK(v == double(int64_t(v)) && v >= double(min_value), InvalidArgument,
                      "[{}] \"{}\" must be an integer >= {}, got {}", where_, key, min_value, v);
        return static_cast<int64_t>(v);
    }
    std::string string(const char* key, std::optional<std::string> fallback = std::nullopt) const {
        if (!j_.contains(key)) {
            ATTNLAB_CHECK(fallback.has_value(), InvalidArgument, "[{}] missing \"{}\"", where_, key);
            return *fallback;
        }
        ATTNLAB_CHECK(j_[key].is_string(), InvalidArgument, "[{}] \"{}\" must be a string", where_, key);
        return j_[key].get<std::string>();
    }
    std::vector<double> numbers(const char* key) const {
        ATTNLAB_CHECK(j_.contains(key) && j_[key].is_array(), InvalidArgument, "[{}] \"{}\" must be a list of numbers",
                      where_, key);
        std::vector<double> out;
        for (const auto& v : j_[key]) {
            ATTNLAB_CHECK(v.is_number(), InvalidArgument, "[{}] \"{}\" must be a list of numbers", where_, key);
            out.push_back(v.get<double>());
        }
        return out;
    }
    // "heads": "L:H,..." (see parse_head_targets).
    std::vector<HeadRef> heads(const char* key = "heads") const {
        const ModelConfig& c = model().config();
        return parse_head_targets(string(key), c.n_layer, c.n_head, where_.c_str());
    }
    // A segment name of the environment's segments -> its id.
    int32_t segment_id(const char* key) const {
        const std::string name = string(key);
        ATTNLAB_CHECK(env_.segments != nullptr, InvalidArgument,
                      "[{}] \"{}\": segment '{}' is not defined (use --segment NAME=A:B)", where_, key, name);
        return env_.segments->id(name, where_.c_str());
    }
    // Fails on keys the type does not know (a typo must not be silently ignored).
    void only(std::initializer_list<const char*> keys) const {
        for (const auto& [key, value] : j_.items()) {
            bool known = key == "type";
            for (const char* k : keys) known |= key == k;
            ATTNLAB_CHECK(known, InvalidArgument, "[{}] unknown field \"{}\"", where_, key);
        }
    }

private:
    const nlohmann::json& j_;
    const InterventionEnv& env_;
    std::string where_;
};

// Heads grouped by layer: layer -> ascending head indices.
inline std::map<int64_t, std::vector<int64_t>> heads_by_layer(const std::vector<HeadRef>& heads) {
    std::map<int64_t, std::vector<int64_t>> out;
    for (const HeadRef& h : heads) out[h.layer].push_back(h.head);
    for (auto& [layer, list] : out) {
        std::sort(list.begin(), list.end());
        list.erase(std::unique(list.begin(), list.end()), list.end());
    }
    return out;
}

inline std::string heads_text(const std::vector<HeadRef>& heads) {
    std::string out;
    for (const HeadRef& h : heads) out += (out.empty() ? "" : ",") + std::to_string(h.layer) + ":" + std::to_string(h.head);
    return out;
}

using Factory = std::unique_ptr<Intervention> (*)(const Fields&);

}  // namespace attnlab::intervention_util
