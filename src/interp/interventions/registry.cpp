// The intervention registry and InterventionSet: adding an intervention is one file in this
// folder plus one line here (and its section in docs/interventions.md).
#include "interp/interventions/intervention_util.h"

#include <algorithm>
#include <charconv>
#include <fstream>
#include <sstream>

namespace attnlab {

namespace intervention_util {
std::unique_ptr<Intervention> make_head_ablation(const Fields&);
std::unique_ptr<Intervention> make_act(const Fields&);
std::unique_ptr<Intervention> make_var(const Fields&);
std::unique_ptr<Intervention> make_softpag(const Fields&);
std::unique_ptr<Intervention> make_locore(const Fields&);
std::unique_ptr<Intervention> make_temperature(const Fields&);
std::unique_ptr<Intervention> make_boost(const Fields&);
std::unique_ptr<Intervention> make_cca(const Fields&);
std::unique_ptr<Intervention> make_drop_tokens(const Fields&);
std::unique_ptr<Intervention> make_steer(const Fields&);
std::unique_ptr<Intervention> make_scale_mlp(const Fields&);
std::unique_ptr<Intervention> make_replace(const Fields&);
}  // namespace intervention_util

namespace {

using intervention_util::Factory;
using intervention_util::Fields;

struct Entry {
    InterventionType type;
    Factory factory;
};

const std::vector<Entry>& registry() {
    static const std::vector<Entry> entries = {
        {{"ablate", "head ablation: zero, mean (of a reference run), uniform attention, one-hot to BOS, or scale"},
         intervention_util::make_head_ablation},
        {{"act", "ACT calibration: scale the prefill's non-first attention sinks by beta, give their mass to the other keys"},
         intervention_util::make_act},
        {{"var", "VAR: move (1-p) of the sink tokens' attention onto a segment, in image-centric rows"},
         intervention_util::make_var},
        {{"softpag", "SoftPAG: A' = (1-alpha)A + alpha*I on chosen heads"}, intervention_util::make_softpag},
        {{"locore", "LocoRE: boost the attention to the W most recent tokens by (1+gamma), rows renormalised"},
         intervention_util::make_locore},
        {{"temperature", "per-head softmax temperature: scores / t (pre-softmax)"}, intervention_util::make_temperature},
        {{"boost", "PAINT logit boost on a segment's keys: s += alpha*|s| (pre-softmax)"}, intervention_util::make_boost},
        {{"cca", "CCA concentric RoPE position ids for an image segment laid out as a grid"}, intervention_util::make_cca},
        {{"drop_tokens", "token dropping before a layer, keeping position ids (SGL / FastV ranking by attention received)"},
         intervention_util::make_drop_tokens},
        {{"steer", "add a steering vector to a residual-width hook point (or VISTA's norm-preserving form)"},
         intervention_util::make_steer},
        {{"scale_mlp", "multiply MLP outputs of chosen layers and positions (secondary-sink test)"},
         intervention_util::make_scale_mlp},
        {{"replace", "replace a hook point's rows with a cached activation from `attnlab run --save`"},
         intervention_util::make_replace},
    };
    return entries;
}

// "3", "1-4", "*" -> [lo, hi] within [0, n).
std::pair<int64_t, int64_t> parse_index_range(std::string_view s, int64_t n, std::string_view item, const char* where,
                                              const char* what) {
    if (s == "*") return {0, n - 1};
    auto number = [&](std::string_view t) {
        int64_t v = 0;
        const auto [end, ec] = std::from_chars(t.data(), t.data() + t.size(), v);
        ATTNLAB_CHECK(!t.empty() && ec == std::errc() && end == t.data() + t.size(), InvalidArgument,
                      "[{}] bad head target '{}': expected L:H with L and H an index, A-B or *", where, item);
        return v;
    };
    const size_t dash = s.find('-');
    const int64_t lo = number(s.substr(0, dash)), hi = dash == std::string_view::npos ? lo : number(s.substr(dash + 1));
    ATTNLAB_CHECK(lo >= 0 && lo <= hi && hi < n, InvalidArgument, "[{}] head target '{}': {} {} outside 0..{}", where,
                  item, what, s, n - 1);
    return {lo, hi};
}

}  // namespace

std::vector<HeadRef> parse_head_targets(std::string_view text, int64_t n_layer, int64_t n_head, const char* where) {
    std::vector<HeadRef> heads;
    size_t start = 0;
    while (start <= text.size()) {
        const size_t comma = std::min(text.find(',', start), text.size());
        const std::string_view item = text.substr(start, comma - start);
        const size_t colon = item.find(':');
        ATTNLAB_CHECK(colon != std::string_view::npos, InvalidArgument,
                      "[{}] bad head target '{}': expected L:H, e.g. 1:0, 1:0-3 or 0:*", where, item);
        const auto [l0, l1] = parse_index_range(item.substr(0, colon), n_layer, item, where, "layer");
        const auto [h0, h1] = parse_index_range(item.substr(colon + 1), n_head, item, where, "head");
        for (int64_t l = l0; l <= l1; ++l)
            for (int64_t h = h0; h <= h1; ++h) heads.push_back({l, h});
        start = comma + 1;
    }
    return heads;
}

const std::vector<InterventionType>& intervention_types() {
    static const std::vector<InterventionType> types = [] {
        std::vector<InterventionType> out;
        for (const Entry& e : registry()) out.push_back(e.type);
        return out;
    }();
    return types;
}

InterventionSet InterventionSet::from_json(std::string_view json_text, const InterventionEnv& env,
                                           const std::string& where) {
    ATTNLAB_CHECK(env.model != nullptr, InvalidArgument, "[{}] interventions need a model", where);
    nlohmann::json j;
    try {
        j = nlohmann::json::parse(json_text);
    } catch (const nlohmann::json::exception& e) {
        throw FormatError(fmt::format("[{}] not JSON: {}", where, e.what()));
    }
    if (j.is_object() && j.contains("interventions")) j = j["interventions"];
    ATTNLAB_CHECK(j.is_array(), FormatError,
                  "[{}] expected {{\"interventions\": [...]}} or a list of intervention objects", where);
    InterventionSet set;
    for (size_t i = 0; i < j.size(); ++i) {
        const nlohmann::json& item = j[i];
        ATTNLAB_CHECK(item.is_object() && item.contains("type") && item["type"].is_string(), FormatError,
                      "[{}[{}]] expected an object with a \"type\"", where, i);
        const std::string type = item["type"].get<std::string>();
        const auto& entries = registry();
        const auto it = std::find_if(entries.begin(), entries.end(), [&](const Entry& e) { return type == e.type.name; });
        if (it == entries.end()) {
            std::string known;
            for (const Entry& e : entries) known += (known.empty() ? "" : ", ") + std::string(e.type.name);
            throw InvalidArgument(fmt::format("[{}[{}]] unknown intervention type '{}' (known: {})", where, i, type, known));
        }
        set.add(it->factory(Fields(item, env, fmt::format("{}[{}] ({})", where, i, type))));
    }
    return set;
}

InterventionSet InterventionSet::from_file(const std::string& path, const InterventionEnv& env) {
    std::ifstream file(path);
    if (!file) throw IoError(fmt::format("[interventions] cannot open {}", path));
    std::stringstream text;
    text << file.rdbuf();
    return from_json(text.str(), env, path);
}

void InterventionSet::add(std::unique_ptr<Intervention> intervention) {
    HookChain::add(intervention.get());
    owned_.push_back(std::move(intervention));
}

std::vector<std::string> InterventionSet::describe() const {
    std::vector<std::string> out;
    for (const auto& i : owned_) out.push_back(i->describe());
    return out;
}


}  // namespace attnlab
