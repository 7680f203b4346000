// The runs every patching experiment is made of: a batch measured under per-sequence hooks,
// cached runs, aligned clean/corrupted pairs, and the hook that overwrites parts of hook points.
#include <attnlab/error.h>
#include <attnlab/patching.h>

#include <fmt/format.h>

#include <algorithm>
#include <cstring>

namespace attnlab {

namespace {

struct PointKind {
    const char* kind;
    const char* suffix;  // after "blocks.L."
    bool per_head;
};
constexpr PointKind kPointKinds[] = {
    {"z", "attn.hook_z", true},          {"q", "attn.hook_q", true},         {"k", "attn.hook_k", true},
    {"v", "attn.hook_v", true},          {"resid_pre", "hook_resid_pre", false},
    {"resid_mid", "hook_resid_mid", false}, {"resid_post", "hook_resid_post", false},
    {"attn_out", "hook_attn_out", false}, {"mlp_out", "hook_mlp_out", false},
};

const PointKind* find_kind(std::string_view kind) {
    for (const PointKind& k : kPointKinds)
        if (kind == k.kind) return &k;
    return nullptr;
}

// Runs one sequence and adds its metric contribution to sums / weight.
void run_one(const Model& model, const std::vector<int32_t>& ids, size_t i, const Metric& metric, Hooks* hooks,
             std::vector<double>& sums, double& weight) {
    KVCache kv = model.new_cache();
    ForwardOptions options;
    options.hooks = hooks;
    options.all_logits = metric.needs_all_logits();
    const Tensor logits = model.forward(ids, kv, options);  // (T or 1, V)
    const MetricSums s = metric.score(i, ids, logits);
    for (size_t k = 0; k < sums.size(); ++k) sums[k] += s.sums.at(k);
    weight += s.weight;
}

MetricValues finish(const Metric& metric, const std::vector<double>& sums, double weight) {
    MetricValues out;
    out.names = metric.names();
    for (double s : sums) out.values.push_back(s / weight);
    return out;
}

}  // namespace

bool is_head_point(std::string_view kind) {
    const PointKind* k = find_kind(kind);
    return k && k->per_head;
}

std::string patch_point_name(int64_t layer, std::string_view kind, const char* where) {
    const PointKind* k = find_kind(kind);
    if (!k) {
        std::string known;
        for (const PointKind& p : kPointKinds) known += (known.empty() ? "" : ", ") + std::string(p.kind);
        throw InvalidArgument(fmt::format("[{}] unknown point '{}' (known: {})", where, kind, known));
    }
    return fmt::format("blocks.{}.{}", layer, k->suffix);
}

int64_t point_heads(const ModelConfig& c, std::string_view kind) {
    if (!is_head_point(kind)) return 0;
    return kind == "k" || kind == "v" ? c.n_head_kv : c.n_head;
}

MetricValues measure(const Model& model, const Sequences& sequences, const Metric& metric,
                     const std::function<Hooks*(size_t)>& hooks_for) {
    std::vector<double> sums(metric.names().size(), 0.0);
    double weight = 0;
    for (size_t i = 0; i < sequences.size(); ++i)
        run_one(model, sequences[i], i, metric, hooks_for ? hooks_for(i) : nullptr, sums, weight);
    return finish(metric, sums, weight);
}

CachedRun cached_run(const Model& model, const Sequences& sequences, const Metric& metric,
                     const std::vector<std::string>& points, const std::function<Hooks*(size_t)>& hooks_for) {
    CachedRun run;
    std::vector<double> sums(metric.names().size(), 0.0);
    double weight = 0;
    for (size_t i = 0; i < sequences.size(); ++i) {
        ActivationCache cache(points);
        HookChain chain;
        if (Hooks* extra = hooks_for ? hooks_for(i) : nullptr) chain.add(extra);
        chain.add(&cache);  // after the other hooks: it keeps what the run really used
        run_one(model, sequences[i], i, metric, &chain, sums, weight);
        run.activations.push_back(cache.entries());
    }
    run.metric = finish(metric, sums, weight);
    return run;
}

void RunPair::check(const char* where) const {
    ATTNLAB_CHECK(!clean.empty(), InvalidArgument, "[{}] no sequences", where);
    ATTNLAB_CHECK(clean.size() == corrupted.size(), InvalidArgument, "[{}] {} clean but {} corrupted sequences", where,
                  clean.size(), corrupted.size());
    for (size_t i = 0; i < clean.size(); ++i) {
        ATTNLAB_CHECK(!clean[i].empty(), InvalidArgument, "[{}] clean sequence {} is empty", where, i);
        ATTNLAB_CHECK(clean[i].size() == corrupted[i].size(), InvalidArgument,
                      "[{}] pair {}: the clean sequence has {} tokens, the corrupted one {} (positions must align)",
                      where, i, clean[i].size(), corrupted[i].size());
    }
}

void ActivationPatch::add(const std::string& point, Tensor source, std::vector<int64_t> positions,
                          std::vector<int64_t> heads) {
    ATTNLAB_CHECK(source.defined() && source.dim() >= 2 && source.dtype() == DType::F32, InvalidArgument,
                  "[patch] {}: the source must be an f32 tensor (T, ...)", point);
    ATTNLAB_CHECK(heads.empty() || source.dim() == 3, InvalidArgument, "[patch] {}: heads given for a point of shape {}",
                  point, source.shape_string());
    rules_[point].push_back({source.contiguous(), std::move(positions), std::move(heads)});
}

void ActivationPatch::on(const std::string& name, Tensor& value) {  // value (T, ...) f32, contiguous
    for (const Rule& rule : rules_.at(name)) {
        ATTNLAB_CHECK(rule.source.shape() == value.shape(), InvalidArgument,
                      "[patch] {}: the source has shape {}, the run {}", name, rule.source.shape_string(),
                      value.shape_string());
        const int64_t T = value.size(0), row = value.numel() / T;  // one position's elements
        // Per-head points (T, H, D): a head's slice of a row is D elements at h·D.
        const int64_t D = value.dim() == 3 ? value.size(2) : row;
        const float* src = rule.source.data<float>();
        float* dst = value.data<float>();
        auto patch_row = [&](int64_t t) {
            ATTNLAB_CHECK(t >= 0 && t < T, InvalidArgument, "[patch] {}: position {} outside 0..{}", name, t, T - 1);
            if (rule.heads.empty()) {
                std::memcpy(dst + t * row, src + t * row, sizeof(float) * size_t(row));
                return;
            }
            for (int64_t h : rule.heads) {
                ATTNLAB_CHECK(h >= 0 && h < value.size(1), InvalidArgument, "[patch] {}: head {} outside 0..{}", name, h,
                              value.size(1) - 1);
                std::memcpy(dst + t * row + h * D, src + t * row + h * D, sizeof(float) * size_t(D));
            }
        };
        if (rule.positions.empty())
            for (int64_t t = 0; t < T; ++t) patch_row(t);
        else
            for (int64_t t : rule.positions) patch_row(t);
    }
}

}  // namespace attnlab
