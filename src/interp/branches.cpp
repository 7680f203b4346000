// Multi-branch decoding: the --branches spec, the combination rules and the decoding loop.
#include <attnlab/branches.h>
#include <attnlab/error.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <limits>
#include <sstream>

namespace attnlab {

namespace {

using nlohmann::json;

double number(const json& j, const char* key, double fallback, const std::string& where) {
    if (!j.contains(key)) return fallback;
    ATTNLAB_CHECK(j[key].is_number(), InvalidArgument, "[{}] \"{}\" must be a number", where, key);
    const double v = j[key].get<double>();
    ATTNLAB_CHECK(std::isfinite(v), InvalidArgument, "[{}] \"{}\" must be finite", where, key);
    return v;
}

void only(const json& j, std::initializer_list<const char*> keys, const std::string& where) {
    for (const auto& [key, value] : j.items()) {
        const bool known = std::any_of(keys.begin(), keys.end(), [&](const char* k) { return key == k; });
        ATTNLAB_CHECK(known, InvalidArgument, "[{}] unknown field \"{}\"", where, key);
    }
}

// The rule and its parameters; `names` are the branches' names (for "scales").
BranchRule parse_rule(const json& j, const std::vector<std::string>& names, const Model& model, const std::string& where) {
    ATTNLAB_CHECK(j.contains("rule") && j["rule"].is_string(), InvalidArgument,
                  "[{}] missing \"rule\" (contrastive, guidance, rvd, vista_sla)", where);
    const std::string name = j["rule"].get<std::string>();
    const size_t n = names.size();
    BranchRule rule;
    if (name == "contrastive") {
        only(j, {"rule", "branches", "alpha", "beta"}, where);
        ATTNLAB_CHECK(n == 2, InvalidArgument, "[{}] rule contrastive needs exactly 2 branches (main, other), got {}",
                      where, n);
        rule.kind = BranchRuleKind::Contrastive;
        rule.alpha = number(j, "alpha", 1.0, where);
        rule.beta = number(j, "beta", 0.1, where);
        ATTNLAB_CHECK(rule.beta >= 0 && rule.beta <= 1, InvalidArgument, "[{}] \"beta\" must be in [0, 1], got {}", where,
                      rule.beta);
    } else if (name == "guidance") {
        only(j, {"rule", "branches", "scale", "scales"}, where);
        ATTNLAB_CHECK(n >= 2, InvalidArgument, "[{}] rule guidance needs at least 2 branches, got {}", where, n);
        ATTNLAB_CHECK(j.contains("scale") != j.contains("scales"), InvalidArgument,
                      "[{}] rule guidance needs \"scale\" (every other branch) or \"scales\" ({{\"branch\": s, ...}})",
                      where);
        rule.kind = BranchRuleKind::Guidance;
        rule.scales.assign(n - 1, j.contains("scale") ? number(j, "scale", 1.0, where) : 1.0);
        if (j.contains("scales")) {
            const json& scales = j["scales"];
            ATTNLAB_CHECK(scales.is_object(), InvalidArgument, "[{}] \"scales\" must be an object {{\"branch\": s, ...}}",
                          where);
            for (size_t k = 1; k < n; ++k) {
                ATTNLAB_CHECK(scales.contains(names[k]), InvalidArgument, "[{}] \"scales\" has no scale for branch '{}'",
                              where, names[k]);
                rule.scales[k - 1] = number(scales, names[k].c_str(), 1.0, where + " scales");
            }
            for (const auto& [key, value] : scales.items())
                ATTNLAB_CHECK(std::find(names.begin() + 1, names.end(), key) != names.end(), InvalidArgument,
                              "[{}] \"scales\": '{}' is not a branch other than the main one", where, key);
        }
    } else if (name == "rvd") {
        only(j, {"rule", "branches", "alpha", "beta"}, where);
        ATTNLAB_CHECK(n == 2 || n == 3, InvalidArgument,
                      "[{}] rule rvd needs 3 branches (full, residual, blind) or 2 with a fixed \"alpha\", got {}", where, n);
        rule.kind = BranchRuleKind::Rvd;
        if (n == 2) {
            ATTNLAB_CHECK(j.contains("alpha"), InvalidArgument,
                          "[{}] rule rvd with 2 branches needs a fixed weight \"alpha\" (no blind branch for the JSD)", where);
            ATTNLAB_CHECK(!j.contains("beta"), InvalidArgument, "[{}] \"beta\" needs the blind branch (3 branches)", where);
        } else {
            ATTNLAB_CHECK(!j.contains("alpha"), InvalidArgument,
                          "[{}] rule rvd with 3 branches weighs by the JSD (\"beta\"); \"alpha\" is for 2 branches", where);
        }
        rule.alpha = number(j, "alpha", 0.0, where);
        rule.beta = number(j, "beta", 2.0, where);
        ATTNLAB_CHECK(rule.alpha >= 0 && rule.alpha <= 1 && rule.beta >= 0, InvalidArgument,
                      "[{}] rvd needs 0 <= alpha <= 1 and beta >= 0", where);
    } else if (name == "vista_sla") {
        only(j, {"rule", "branches", "alpha", "layers", "final_norm"}, where);
        ATTNLAB_CHECK(n == 1, InvalidArgument, "[{}] rule vista_sla reads one branch's layers, got {} branches", where, n);
        rule.kind = BranchRuleKind::VistaSla;
        rule.alpha = number(j, "alpha", 0.3, where);
        ATTNLAB_CHECK(rule.alpha >= 0 && rule.alpha <= 1, InvalidArgument, "[{}] \"alpha\" must be in [0, 1]", where);
        const int64_t L = model.config().n_layer;
        if (j.contains("layers")) {
            const json& layers = j["layers"];
            ATTNLAB_CHECK(layers.is_array() && !layers.empty(), InvalidArgument,
                          "[{}] \"layers\" must be a non-empty list of layer indices", where);
            for (const json& l : layers) {
                ATTNLAB_CHECK(l.is_number_integer() && l.get<int64_t>() >= 0 && l.get<int64_t>() < L, InvalidArgument,
                              "[{}] \"layers\": {} is not a layer of 0..{}", where, l.dump(), L - 1);
                rule.layers.push_back(l.get<int64_t>());
            }
            std::sort(rule.layers.begin(), rule.layers.end());
            rule.layers.erase(std::unique(rule.layers.begin(), rule.layers.end()), rule.layers.end());
        } else {
            // VISTA's layers 25..30 of LLaVA's 32, scaled to this depth.
            const int64_t lo = std::min(L - 1, (25 * L + 16) / 32), hi = std::min(L - 1, (30 * L + 16) / 32);
            for (int64_t l = lo; l <= hi; ++l) rule.layers.push_back(l);
        }
        if (j.contains("final_norm")) {
            ATTNLAB_CHECK(j["final_norm"].is_boolean(), InvalidArgument, "[{}] \"final_norm\" must be true or false", where);
            rule.final_norm = j["final_norm"].get<bool>();
        }
    } else {
        throw InvalidArgument(
            fmt::format("[{}] unknown rule '{}' (contrastive, guidance, rvd, vista_sla)", where, name));
    }
    return rule;
}

// One branch object of the spec.
std::unique_ptr<Branch> parse_branch(const json& j, size_t index, const Model& main_model,
                                     std::span<const int32_t> main_prompt, const TokenSegments& main_segments,
                                     BranchDecoding& decoding, const std::string& spec_where) {
    std::string where = fmt::format("{} branches[{}]", spec_where, index);
    ATTNLAB_CHECK(j.is_object(), InvalidArgument, "[{}] expected an object with a \"name\"", where);
    only(j, {"name", "prompt", "ids", "drop_segment", "segments", "interventions", "model"}, where);
    ATTNLAB_CHECK(j.contains("name") && j["name"].is_string() && !j["name"].get<std::string>().empty(), InvalidArgument,
                  "[{}] missing \"name\" (a non-empty string)", where);
    auto branch = std::make_unique<Branch>();
    branch->name = j["name"].get<std::string>();
    where = fmt::format("{} branch '{}'", spec_where, branch->name);

    branch->model = &main_model;
    if (j.contains("model")) {
        ATTNLAB_CHECK(j["model"].is_string(), InvalidArgument, "[{}] \"model\" must be a model directory", where);
        decoding.owned_models.push_back(Model::load(j["model"].get<std::string>()));
        branch->model = decoding.owned_models.back().get();
        ATTNLAB_CHECK(branch->model->config().vocab_size == main_model.config().vocab_size, InvalidArgument,
                      "[{}] the model {} has a vocabulary of {} tokens, the main model {}: branch logits cannot be combined",
                      where, j["model"].get<std::string>(), branch->model->config().vocab_size,
                      main_model.config().vocab_size);
    }

    ATTNLAB_CHECK(!(j.contains("prompt") && j.contains("ids")), InvalidArgument,
                  "[{}] give \"prompt\" (text) or \"ids\", not both", where);
    const bool own_prompt = j.contains("prompt") || j.contains("ids");
    if (j.contains("prompt")) {
        ATTNLAB_CHECK(j["prompt"].is_string(), InvalidArgument, "[{}] \"prompt\" must be a string", where);
        const Tokenizer* tok = branch->model->tokenizer();
        ATTNLAB_CHECK(tok != nullptr, InvalidArgument, "[{}] \"prompt\" is text but the model has no tokenizer: use \"ids\"",
                      where);
        branch->prompt = tok->encode(j["prompt"].get<std::string>(), true);
    } else if (j.contains("ids")) {
        ATTNLAB_CHECK(j["ids"].is_array(), InvalidArgument, "[{}] \"ids\" must be a list of token ids", where);
        for (const json& id : j["ids"]) {
            ATTNLAB_CHECK(id.is_number_integer() && id.get<int64_t>() >= 0 &&
                              id.get<int64_t>() < branch->model->config().vocab_size,
                          InvalidArgument, "[{}] \"ids\": {} is not a token id of the vocabulary ({} tokens)", where,
                          id.dump(), branch->model->config().vocab_size);
            branch->prompt.push_back(id.get<int32_t>());
        }
    } else {
        branch->prompt.assign(main_prompt.begin(), main_prompt.end());
    }

    if (j.contains("segments")) {
        ATTNLAB_CHECK(j["segments"].is_object(), InvalidArgument, "[{}] \"segments\" must be {{\"NAME\": \"A:B\", ...}}",
                      where);
        std::vector<std::string> items;
        for (const auto& [name, value] : j["segments"].items()) {
            ATTNLAB_CHECK(value.is_string(), InvalidArgument, "[{}] segment '{}' must be \"A:B\"", where, name);
            items.push_back(name + "=" + value.get<std::string>());
        }
        branch->segments = TokenSegments::parse(items, where.c_str());
    } else if (!own_prompt) {
        branch->segments = main_segments;
    }

    if (j.contains("drop_segment")) {
        // The prompt without a segment's tokens (a "no-image" twin); the remaining positions
        // shift, so the branch keeps only the segments it declares itself.
        ATTNLAB_CHECK(j["drop_segment"].is_string(), InvalidArgument, "[{}] \"drop_segment\" must be a segment name", where);
        const std::string name = j["drop_segment"].get<std::string>();
        const TokenSegments& source = j.contains("segments") ? branch->segments : main_segments;
        const int32_t id = source.id(name, where.c_str());
        const std::vector<int32_t> ids = source.ids(static_cast<int64_t>(branch->prompt.size()));
        std::vector<int32_t> kept;
        for (size_t p = 0; p < branch->prompt.size(); ++p)
            if (ids[p] != id) kept.push_back(branch->prompt[p]);
        branch->prompt = std::move(kept);
        if (!j.contains("segments")) branch->segments = TokenSegments();
    }
    ATTNLAB_CHECK(!branch->prompt.empty(), InvalidArgument, "[{}] the prompt is empty", where);

    if (j.contains("interventions")) {
        const json& list = j["interventions"];
        ATTNLAB_CHECK(list.is_array() || list.is_object(), InvalidArgument,
                      "[{}] \"interventions\" must be a list of intervention objects", where);
        branch->interventions = InterventionSet::from_json(list.dump(), InterventionEnv{branch->model, &branch->segments},
                                                           where + " interventions");
    }
    return branch;
}

// Softmax of (V) logits in float64.
std::vector<double> softmax(std::span<const float> logits) {
    const double max = *std::max_element(logits.begin(), logits.end());
    std::vector<double> p(logits.size());
    double sum = 0;
    for (size_t i = 0; i < logits.size(); ++i) sum += p[i] = std::exp(double(logits[i]) - max);
    for (double& x : p) x /= sum;
    return p;
}

// Jensen–Shannon divergence (natural log) of two distributions (V).
double jensen_shannon(const std::vector<double>& p, const std::vector<double>& q) {
    double js = 0;
    for (size_t i = 0; i < p.size(); ++i) {
        const double m = 0.5 * (p[i] + q[i]);
        if (p[i] > 0) js += 0.5 * p[i] * std::log(p[i] / m);
        if (q[i] > 0) js += 0.5 * q[i] * std::log(q[i] / m);
    }
    return std::max(0.0, js);
}

// The main branch's mean logit lens (V) over `layers`, from their resid_post rows (C each).
class LogitLens {
public:
    LogitLens(const Model& model, const BranchRule& rule) : model_(model), rule_(rule) {
        for (int64_t l : rule.layers) names_.push_back(fmt::format("blocks.{}.hook_resid_post", l));
        if (!rule.final_norm) {  // lm_head on the raw residual: the unembedding rows (V, C)
            std::vector<int32_t> all(static_cast<size_t>(model.config().vocab_size));
            for (size_t i = 0; i < all.size(); ++i) all[i] = static_cast<int32_t>(i);
            unembedding_ = model.unembedding_rows(all);
        }
    }
    const std::vector<std::string>& names() const { return names_; }

    std::vector<float> mean(const ActivationCache& cache) const {
        const int64_t V = model_.config().vocab_size, C = model_.config().hidden_size;
        std::vector<double> sum(static_cast<size_t>(V), 0.0);
        for (const std::string& name : names_) {
            const Tensor& resid = cache.at(name);  // (T, C): the last row is the next token's
            const float* h = resid.data<float>() + (resid.size(0) - 1) * C;
            if (rule_.final_norm) {
                const Tensor logits = model_.unembed(h, 1);  // (1, V)
                for (int64_t v = 0; v < V; ++v) sum[v] += logits.data<float>()[v];
            } else {
                for (int64_t v = 0; v < V; ++v) {
                    const float* w = unembedding_.data() + v * C;  // (C)
                    double dot = 0;
                    for (int64_t c = 0; c < C; ++c) dot += double(w[c]) * h[c];
                    sum[v] += dot;
                }
            }
        }
        std::vector<float> out(static_cast<size_t>(V));
        for (int64_t v = 0; v < V; ++v) out[v] = static_cast<float>(sum[v] / double(names_.size()));
        return out;
    }

private:
    const Model& model_;
    const BranchRule& rule_;
    std::vector<std::string> names_;
    std::vector<float> unembedding_;  // (V, C) when the lens skips the final norm
};

}  // namespace

BranchDecoding BranchDecoding::from_json(std::string_view json_text, const Model& model, std::span<const int32_t> prompt,
                                         const TokenSegments& segments, const std::string& where) {
    json j;
    try {
        j = json::parse(json_text);
    } catch (const json::exception& e) {
        throw FormatError(fmt::format("[{}] not JSON: {}", where, e.what()));
    }
    ATTNLAB_CHECK(j.is_object(), FormatError, "[{}] expected an object {{\"rule\": ..., \"branches\": [...]}}", where);
    ATTNLAB_CHECK(j.contains("branches") && j["branches"].is_array() && !j["branches"].empty(), InvalidArgument,
                  "[{}] missing \"branches\" (a non-empty list of {{\"name\", \"prompt\" | \"ids\", \"interventions\"}})",
                  where);
    BranchDecoding decoding;
    std::vector<std::string> names;
    for (size_t i = 0; i < j["branches"].size(); ++i) {
        decoding.branches.push_back(parse_branch(j["branches"][i], i, model, prompt, segments, decoding, where));
        const std::string& name = decoding.branches.back()->name;
        ATTNLAB_CHECK(std::find(names.begin(), names.end(), name) == names.end(), InvalidArgument,
                      "[{}] two branches are named '{}'", where, name);
        names.push_back(name);
    }
    decoding.rule = parse_rule(j, names, model, where);
    return decoding;
}

BranchDecoding BranchDecoding::from_file(const std::string& path, const Model& model, std::span<const int32_t> prompt,
                                         const TokenSegments& segments) {
    std::ifstream file(path);
    if (!file) throw IoError(fmt::format("[branches] cannot open {}", path));
    std::stringstream text;
    text << file.rdbuf();
    return from_json(text.str(), model, prompt, segments, path);
}

std::vector<float> combine_branch_logits(const BranchRule& rule, const std::vector<std::span<const float>>& logits,
                                         std::span<const float> lens, double* weight) {
    ATTNLAB_CHECK(!logits.empty(), InvalidArgument, "[branches] no branch logits to combine");
    const size_t V = logits[0].size();
    for (const auto& l : logits)
        ATTNLAB_CHECK(l.size() == V, InvalidArgument, "[branches] branch logits of {} and {} entries", V, l.size());
    const std::span<const float> m = logits[0];
    std::vector<float> out(V);
    if (weight) *weight = 0;
    switch (rule.kind) {
        case BranchRuleKind::Contrastive: {
            ATTNLAB_CHECK(logits.size() == 2, InvalidArgument, "[branches] contrastive combines 2 branches, got {}",
                          logits.size());
            // p_m(y) >= β·max p_m  <=>  m_y >= max m + ln β.
            const double cut = rule.beta > 0 ? double(*std::max_element(m.begin(), m.end())) + std::log(rule.beta)
                                             : -std::numeric_limits<double>::infinity();
            for (size_t v = 0; v < V; ++v)
                out[v] = double(m[v]) >= cut ? static_cast<float>(double(m[v]) + rule.alpha * (double(m[v]) - logits[1][v]))
                                             : -std::numeric_limits<float>::infinity();
            break;
        }
        case BranchRuleKind::Guidance: {
            ATTNLAB_CHECK(rule.scales.size() + 1 == logits.size(), InvalidArgument,
                          "[branches] guidance has {} scales for {} branches", rule.scales.size(), logits.size());
            for (size_t v = 0; v < V; ++v) {
                double l = m[v];
                for (size_t k = 1; k < logits.size(); ++k) l += (rule.scales[k - 1] - 1.0) * (double(m[v]) - logits[k][v]);
                out[v] = static_cast<float>(l);
            }
            break;
        }
        case BranchRuleKind::Rvd: {
            ATTNLAB_CHECK(logits.size() == 2 || logits.size() == 3, InvalidArgument,
                          "[branches] rvd combines 2 or 3 branches, got {}", logits.size());
            double s = rule.alpha;
            if (logits.size() == 3)
                s = std::min(rule.beta * jensen_shannon(softmax(logits[1]), softmax(logits[2])), 1.0);
            for (size_t v = 0; v < V; ++v) out[v] = static_cast<float>((1.0 - s) * m[v] + s * logits[1][v]);
            if (weight) *weight = s;
            break;
        }
        case BranchRuleKind::VistaSla: {
            ATTNLAB_CHECK(lens.size() == V, InvalidArgument, "[branches] vista_sla needs the logit lens ({} entries), got {}",
                          V, lens.size());
            for (size_t v = 0; v < V; ++v) out[v] = static_cast<float>(rule.alpha * lens[v] + (1.0 - rule.alpha) * m[v]);
            break;
        }
    }
    return out;
}

BranchGeneration generate_branches(BranchDecoding& decoding, const GenerateOptions& options) {
    ATTNLAB_CHECK(!decoding.branches.empty(), InvalidArgument, "[branches] no branches");
    ATTNLAB_CHECK(options.interventions == nullptr && options.segments == nullptr, InvalidArgument,
                  "[branches] interventions and segments belong to each branch of the spec");
    ATTNLAB_CHECK(options.max_new_tokens >= 0, InvalidArgument, "[branches] number of tokens to generate must be >= 0");
    const Model& main_model = *decoding.branches[0]->model;
    const ModelConfig& c = main_model.config();
    const size_t n = decoding.branches.size();
    auto context_of = [&](const Model& model) {
        const int64_t trained = model.config().max_position_embeddings;
        return options.context_length > 0 ? options.context_length : trained;
    };
    for (const auto& b : decoding.branches)
        ATTNLAB_CHECK(static_cast<int64_t>(b->prompt.size()) <= context_of(*b->model), InvalidArgument,
                      "[branches] branch '{}': prompt of {} tokens does not fit the context of {} tokens (see --ctx-size)",
                      b->name, b->prompt.size(), context_of(*b->model));

    BranchGeneration result;
    if (options.max_new_tokens == 0) return result;
    std::unique_ptr<LogitLens> lens;
    std::unique_ptr<ActivationCache> lens_cache;
    if (decoding.rule.kind == BranchRuleKind::VistaSla) {
        lens = std::make_unique<LogitLens>(main_model, decoding.rule);
        lens_cache = std::make_unique<ActivationCache>(lens->names());
    }
    // Per branch: its cache, its hooks (interventions first, then the observers of the main branch).
    std::vector<KVCache> caches(n);
    std::vector<HookChain> chains(n);
    std::vector<ForwardOptions> forward(n);
    for (size_t b = 0; b < n; ++b) {
        Branch& branch = *decoding.branches[b];
        branch.interventions.begin_sequence();
        caches[b] = branch.model->new_cache();
        chains[b].add(&branch.interventions);
        if (b == 0 && options.hooks) chains[b].add(options.hooks);
        if (b == 0 && lens_cache) chains[b].add(lens_cache.get());
        forward[b].hooks = &chains[b];
        forward[b].segments = branch.segments.empty() ? nullptr : &branch.segments;
    }
    std::vector<Tensor> logits(n);  // (1, V) each
    for (size_t b = 0; b < n; ++b)
        logits[b] = decoding.branches[b]->model->forward(decoding.branches[b]->prompt, caches[b], forward[b]);

    Sampler sampler(options.sampling);
    std::vector<int32_t> history = decoding.branches[0]->prompt;
    for (int64_t step = 0; step < options.max_new_tokens; ++step) {
        std::vector<std::span<const float>> rows;
        for (const Tensor& l : logits) rows.emplace_back(l.data<float>(), static_cast<size_t>(c.vocab_size));
        std::vector<float> lens_logits;
        if (lens) lens_logits = lens->mean(*lens_cache);
        double weight = 0;
        const std::vector<float> combined = combine_branch_logits(decoding.rule, rows, lens_logits, &weight);
        if (decoding.rule.kind == BranchRuleKind::Rvd) result.weights.push_back(weight);
        const int32_t next = sampler.sample(combined, history);
        result.ids.push_back(next);
        history.push_back(next);
        if (options.on_token) options.on_token(next);
        const bool is_eos = std::find(c.eos_token_ids.begin(), c.eos_token_ids.end(), next) != c.eos_token_ids.end();
        if ((options.stop_at_eos && is_eos) || step + 1 == options.max_new_tokens) break;
        bool full = false;  // stop when any branch's context is full
        for (size_t b = 0; b < n; ++b) full |= caches[b].n_past() >= context_of(*decoding.branches[b]->model);
        if (full) break;
        const int32_t one[1] = {next};
        if (lens_cache) lens_cache->clear();
        for (size_t b = 0; b < n; ++b) logits[b] = decoding.branches[b]->model->forward(one, caches[b], forward[b]);
    }
    return result;
}

}  // namespace attnlab
