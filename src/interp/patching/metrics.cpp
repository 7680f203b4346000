// Metrics of patching experiments (patching.h): logit difference, answer probability and
// next-token accuracy / loss over loss-masked positions, all accumulated in float64.
#include <attnlab/error.h>
#include <attnlab/patching.h>
#include <attnlab/safetensors.h>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <limits>

namespace attnlab {

namespace {

// log Σ exp(row) in float64 (row (V)).
double log_sum_exp(const float* row, int64_t V) {
    const double m = *std::max_element(row, row + V);
    double s = 0;
    for (int64_t v = 0; v < V; ++v) s += std::exp(double(row[v]) - m);
    return m + std::log(s);
}

// Shared by the two metrics that read the logits at one position per sequence.
class TargetMetric : public Metric {
public:
    explicit TargetMetric(std::vector<LogitTarget> targets) : targets_(std::move(targets)) {
        ATTNLAB_CHECK(!targets_.empty(), InvalidArgument, "[metric] no answer token given");
    }
    bool needs_all_logits() const override {
        return std::any_of(targets_.begin(), targets_.end(), [](const LogitTarget& t) { return t.position >= 0; });
    }
    void check(const Sequences& sequences, int64_t V, const char* where) const override {
        ATTNLAB_CHECK(targets_.size() == 1 || targets_.size() == sequences.size(), InvalidArgument,
                      "[{}] {} answer targets for {} sequences (give one, or one per sequence)", where, targets_.size(),
                      sequences.size());
        for (size_t i = 0; i < sequences.size(); ++i) {
            const LogitTarget& t = target(i);
            const int64_t T = static_cast<int64_t>(sequences[i].size());
            ATTNLAB_CHECK(t.answer >= 0 && t.answer < V, InvalidArgument, "[{}] answer token {} outside the vocabulary (0..{})",
                          where, t.answer, V - 1);
            ATTNLAB_CHECK(t.distractor >= -1 && t.distractor < V, InvalidArgument,
                          "[{}] distractor token {} outside the vocabulary (0..{})", where, t.distractor, V - 1);
            ATTNLAB_CHECK(t.position >= -1 && t.position < T, InvalidArgument,
                          "[{}] metric position {} outside sequence {} of {} tokens", where, t.position, i, T);
        }
    }

protected:
    const LogitTarget& target(size_t i) const { return targets_.size() == 1 ? targets_[0] : targets_.at(i); }
    // The logits row (V) the target of sequence i reads; logits (R, V).
    const float* row(size_t i, std::span<const int32_t> ids, const Tensor& logits) const {
        const LogitTarget& t = target(i);
        const int64_t R = logits.size(0), V = logits.size(1);
        const int64_t r = t.position < 0 ? R - 1 : t.position - (static_cast<int64_t>(ids.size()) - R);
        ATTNLAB_CHECK(r >= 0 && r < R, InvalidArgument, "[metric] position {} has no logits row", t.position);
        return logits.data<float>() + r * V;
    }

private:
    std::vector<LogitTarget> targets_;
};

class LogitDiffMetric final : public TargetMetric {
public:
    using TargetMetric::TargetMetric;
    std::vector<std::string> names() const override {
        return {target(0).distractor >= 0 ? "logit_diff" : "logit"};
    }
    MetricSums score(size_t i, std::span<const int32_t> ids, const Tensor& logits) const override {
        const float* r = row(i, ids, logits);
        const LogitTarget& t = target(i);
        const double diff = double(r[t.answer]) - (t.distractor >= 0 ? double(r[t.distractor]) : 0.0);
        return {{diff}, 1.0};
    }
};

class AnswerProbabilityMetric final : public TargetMetric {
public:
    using TargetMetric::TargetMetric;
    std::vector<std::string> names() const override { return {"probability"}; }
    MetricSums score(size_t i, std::span<const int32_t> ids, const Tensor& logits) const override {
        const float* r = row(i, ids, logits);
        return {{std::exp(double(r[target(i).answer]) - log_sum_exp(r, logits.size(1)))}, 1.0};
    }
};

class NextTokenMetric final : public Metric {
public:
    explicit NextTokenMetric(std::vector<std::vector<float>> mask) : mask_(std::move(mask)) {}
    std::vector<std::string> names() const override { return {"accuracy", "loss"}; }
    bool needs_all_logits() const override { return true; }
    void check(const Sequences& sequences, int64_t V, const char* where) const override {
        ATTNLAB_CHECK(mask_.empty() || mask_.size() == sequences.size(), InvalidArgument,
                      "[{}] loss_mask has {} rows for {} sequences", where, mask_.size(), sequences.size());
        int64_t scored = 0;
        for (size_t i = 0; i < sequences.size(); ++i) {
            const size_t T = sequences[i].size();
            for (int32_t id : sequences[i])
                ATTNLAB_CHECK(id >= 0 && id < V, InvalidArgument, "[{}] token {} of sequence {} outside the vocabulary",
                              where, id, i);
            if (mask_.empty()) {
                scored += static_cast<int64_t>(T) - 1;
                continue;
            }
            ATTNLAB_CHECK(mask_[i].size() == T, InvalidArgument, "[{}] loss_mask row {} has {} entries for {} tokens",
                          where, i, mask_[i].size(), T);
            for (size_t t = 1; t < T; ++t) scored += mask_[i][t] != 0.0f;
        }
        ATTNLAB_CHECK(scored > 0, InvalidArgument, "[{}] no position to score (loss_mask selects none with t >= 1)", where);
    }
    MetricSums score(size_t i, std::span<const int32_t> ids, const Tensor& logits) const override {
        const int64_t T = static_cast<int64_t>(ids.size()), V = logits.size(1);
        double correct = 0, loss = 0, n = 0;
        for (int64_t t = 1; t < T; ++t) {
            if (!mask_.empty() && mask_[i][t] == 0.0f) continue;
            const float* row = logits.data<float>() + (t - 1) * V;  // the logits at t − 1 predict token t
            const int64_t argmax = std::max_element(row, row + V) - row;
            correct += argmax == ids[t];
            loss += log_sum_exp(row, V) - double(row[ids[t]]);
            n += 1;
        }
        return {{correct, loss}, n};
    }

private:
    std::vector<std::vector<float>> mask_;
};

}  // namespace

double MetricValues::at(std::string_view name) const {
    for (size_t k = 0; k < names.size(); ++k)
        if (names[k] == name) return values.at(k);
    std::string known;
    for (const std::string& n : names) known += (known.empty() ? "" : ", ") + n;
    throw InvalidArgument(fmt::format("[metric] no value '{}' (this metric has: {})", name, known));
}

std::string MetricValues::to_json() const {
    nlohmann::ordered_json j = nlohmann::ordered_json::object();
    for (size_t k = 0; k < names.size(); ++k) j[names[k]] = values.at(k);
    return j.dump();
}

std::unique_ptr<Metric> logit_diff_metric(std::vector<LogitTarget> targets) {
    return std::make_unique<LogitDiffMetric>(std::move(targets));
}

std::unique_ptr<Metric> answer_probability_metric(std::vector<LogitTarget> targets) {
    return std::make_unique<AnswerProbabilityMetric>(std::move(targets));
}

std::unique_ptr<Metric> next_token_metric(std::vector<std::vector<float>> loss_mask) {
    return std::make_unique<NextTokenMetric>(std::move(loss_mask));
}

std::vector<std::vector<float>> load_loss_mask(const std::string& file, const Sequences& sequences) {
    const SafetensorsFile st = load_safetensors(file);
    const auto it = st.tensors.find("loss_mask");
    if (it == st.tensors.end()) return {};
    const Tensor mask = it->second.to(DType::F64);  // any dtype -> (N, T) or (T) f64
    const int64_t N = mask.dim() == 2 ? mask.size(0) : 1, T = mask.size(mask.dim() - 1);
    ATTNLAB_CHECK((mask.dim() == 1 || mask.dim() == 2) && N == static_cast<int64_t>(sequences.size()), FormatError,
                  "[patch] {}: loss_mask {} does not match input_ids ({} sequences)", file, mask.shape_string(),
                  sequences.size());
    std::vector<std::vector<float>> out(static_cast<size_t>(N));
    for (int64_t n = 0; n < N; ++n) {
        ATTNLAB_CHECK(T == static_cast<int64_t>(sequences[n].size()), FormatError,
                      "[patch] {}: loss_mask {} does not match input_ids of length {}", file, mask.shape_string(),
                      sequences[n].size());
        for (int64_t t = 0; t < T; ++t) {
            const double v = mask.data<double>()[n * T + t];
            ATTNLAB_CHECK(std::isfinite(v), FormatError, "[patch] {}: loss_mask[{}, {}] is not finite", file, n, t);
            out[n].push_back(static_cast<float>(v));
        }
    }
    return out;
}

double patch_score(double patched, double base, double source) {
    if (source == base) return std::numeric_limits<double>::quiet_NaN();
    if (patched == base) return 0.0;  // not (0 / negative) = −0
    return (patched - base) / (source - base);
}

}  // namespace attnlab
