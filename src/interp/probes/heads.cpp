// The `heads` probe: per layer × head scores averaged over sequences, from the in-kernel
// attention statistics (O(T·H) per layer): BOS mass, previous-token score, entropy, induction
// score, local focus and ‖A‖_F; head diversity from the pattern of short sequences only (it
// compares whole maps across heads). Definitions: include/attnlab/probes.h, docs/probes.md.
#include <attnlab/error.h>
#include <attnlab/hooks.h>
#include <attnlab/probes.h>

#include "interp/probes/probe_util.h"

#include <nlohmann/json.hpp>

#include <cmath>
#include <fmt/format.h>

namespace attnlab {

namespace {

// Running float64 sums of one layer's scores.
struct LayerSums {
    std::vector<double> bos, prev, entropy, induction, frobenius;
    std::vector<std::array<double, 4>> local;
    int64_t rows_from1 = 0, induction_rows = 0;
    std::array<int64_t, 4> local_rows{};
    double diversity = 0;
    int64_t diversity_sequences = 0;
};

class HeadScoresHook : public Hooks {
public:
    HeadScoresHook(int64_t layers, int64_t heads, const HeadProbeOptions& options)
        : H_(heads), options_(options), sums_(static_cast<size_t>(layers)) {
        for (LayerSums& s : sums_) {
            s.bos.assign(heads, 0.0);
            s.prev.assign(heads, 0.0);
            s.entropy.assign(heads, 0.0);
            s.induction.assign(heads, 0.0);
            s.frobenius.assign(heads, 0.0);
            s.local.assign(heads, {0, 0, 0, 0});
        }
    }

    void start_sequence(int64_t T) { want_pattern_ = options_.diversity_max_tokens > 0 && T <= options_.diversity_max_tokens; }

    bool wants(const std::string& name) const override { return want_pattern_ && name.ends_with(".attn.hook_pattern"); }

    // Head diversity: mean over j <= i of the population std across heads of A_h[i, j].
    void on(const std::string& name, Tensor& pattern) override {  // (H, T, S)
        const int64_t layer = probe_util::hook_layer(name);
        const int64_t T = pattern.size(1), S = pattern.size(2), off = S - T;
        const float* p = pattern.data<float>();
        double total = 0;
        int64_t pairs = 0;
        for (int64_t t = 0; t < T; ++t)
            for (int64_t j = 0; j <= t + off; ++j) {
                double mean = 0, sq = 0;
                for (int64_t h = 0; h < H_; ++h) mean += p[(h * T + t) * S + j];
                mean /= double(H_);
                for (int64_t h = 0; h < H_; ++h) {
                    const double d = p[(h * T + t) * S + j] - mean;
                    sq += d * d;
                }
                total += std::sqrt(sq / double(H_));
                ++pairs;
            }
        sums_[layer].diversity += pairs ? total / double(pairs) : 0.0;
        sums_[layer].diversity_sequences += 1;
    }

    std::optional<AttentionStatsRequest> attention_stats(int64_t, int64_t) const override {
        AttentionStatsRequest r;
        r.entropy = true;
        r.sum_sq = true;
        r.keys = {0};
        r.offsets = {0, 1, 2, 3};
        if (options_.repeat > 0) r.offsets.push_back(options_.repeat - 1);
        return r;
    }

    void on_attention_stats(const LayerAttentionStats& st) override {
        LayerSums& s = sums_[st.layer];
        const float* entropy = st.entropy.data<float>();
        const float* sum_sq = st.sum_sq.data<float>();
        const float* bos = st.key_mass.data<float>();       // (T, H, 1)
        const float* offsets = st.offset_mass.data<float>();  // (T, H, R)
        const int64_t R = st.offset_mass.size(2);
        std::vector<double> frob(static_cast<size_t>(H_), 0.0);
        for (int64_t t = 0; t < st.T; ++t) {
            const int64_t i = st.pos0 + t;
            for (int64_t h = 0; h < H_; ++h) {
                const int64_t row = t * H_ + h;
                frob[h] += sum_sq[row];
                for (int64_t d = 0; d < 4; ++d)
                    if (i >= d) s.local[h][d] += offsets[row * R + d];
                if (i >= 1) {
                    s.bos[h] += bos[row];
                    s.prev[h] += offsets[row * R + 1];
                    s.entropy[h] += entropy[row];
                }
                if (options_.repeat > 0 && i >= options_.repeat + 1) s.induction[h] += offsets[row * R + 4];
            }
            for (int64_t d = 0; d < 4; ++d) s.local_rows[d] += i >= d;
            s.rows_from1 += i >= 1;
            s.induction_rows += options_.repeat > 0 && i >= options_.repeat + 1;
        }
        for (int64_t h = 0; h < H_; ++h) s.frobenius[h] += std::sqrt(frob[h]);
    }

    HeadScores result(int64_t sequences) const {
        HeadScores out;
        out.sequences = sequences;
        out.repeat = options_.repeat;
        auto mean = [](const std::vector<double>& v, int64_t n) {
            std::vector<double> m(v.size());
            for (size_t h = 0; h < v.size(); ++h) m[h] = n > 0 ? v[h] / double(n) : NAN;
            return m;
        };
        for (size_t l = 0; l < sums_.size(); ++l) {
            const LayerSums& s = sums_[l];
            LayerHeadScores scores;
            scores.layer = static_cast<int64_t>(l);
            scores.bos_mass = mean(s.bos, s.rows_from1);
            scores.prev_token = mean(s.prev, s.rows_from1);
            scores.entropy = mean(s.entropy, s.rows_from1);
            if (options_.repeat > 0) scores.induction = mean(s.induction, s.induction_rows);
            scores.frobenius = mean(s.frobenius, sequences);
            for (int64_t h = 0; h < H_; ++h) {
                std::array<double, 4> f{};
                for (int64_t d = 0; d < 4; ++d) f[d] = s.local_rows[d] > 0 ? s.local[h][d] / double(s.local_rows[d]) : NAN;
                scores.local_focus.push_back(f);
            }
            if (s.diversity_sequences > 0) scores.diversity = s.diversity / double(s.diversity_sequences);
            out.layers.push_back(std::move(scores));
        }
        return out;
    }

private:
    int64_t H_;
    HeadProbeOptions options_;
    std::vector<LayerSums> sums_;
    bool want_pattern_ = false;
};

}  // namespace

HeadScores probe_heads(const Model& model, const std::vector<std::vector<int32_t>>& sequences,
                       const HeadProbeOptions& options, const ProbeControl& control) {
    ATTNLAB_CHECK(!sequences.empty(), InvalidArgument, "[probe heads] no sequences");
    ATTNLAB_CHECK(options.repeat >= 0, InvalidArgument, "[probe heads] --repeat must be >= 0, got {}", options.repeat);
    const ModelConfig& c = model.config();
    for (const std::vector<int32_t>& ids : sequences)
        ATTNLAB_CHECK(options.repeat == 0 || static_cast<int64_t>(ids.size()) >= 2 * options.repeat + 1, InvalidArgument,
                      "[probe heads] --repeat {} needs sequences of at least {} tokens (BOS + the block twice), got {}",
                      options.repeat, 2 * options.repeat + 1, ids.size());
    HeadScoresHook hook(c.n_layer, c.n_head, options);
    const int64_t done = probe_util::run_sequences(
        model, sequences, hook, control, [&](size_t s) { hook.start_sequence(static_cast<int64_t>(sequences[s].size())); },
        [](size_t) {});
    HeadScores scores = hook.result(done);
    scores.interrupted = done < static_cast<int64_t>(sequences.size());
    return scores;
}

std::string HeadScores::to_json() const {
    nlohmann::json layers_json = nlohmann::json::array();
    const auto number = probe_util::json_number;
    for (const LayerHeadScores& l : layers) {
        nlohmann::json j;
        j["layer"] = l.layer;
        j["bos_mass"] = l.bos_mass;
        j["prev_token"] = l.prev_token;
        j["entropy"] = l.entropy;
        if (!l.induction.empty()) j["induction"] = l.induction;
        nlohmann::json local = nlohmann::json::array();
        for (const auto& f : l.local_focus) local.push_back({number(f[0]), number(f[1]), number(f[2]), number(f[3])});
        j["local_focus"] = local;
        j["frobenius"] = l.frobenius;
        j["diversity"] = number(l.diversity);
        layers_json.push_back(j);
    }
    nlohmann::json root;
    root["head_scores"] = layers_json;
    root["sequences"] = sequences;
    root["repeat"] = repeat;
    root["interrupted"] = interrupted;
    return root.dump(1);
}

}  // namespace attnlab
