// The `position-bias` probe (papers-analysis §1, P13): received mass per absolute key position
// (column sums), mass per relative-distance bin and the first token's mass (row statistics),
// all O(T·H) per layer; and attention rollout, the one T×T piece, from attn.hook_pattern for
// sequences up to a length limit. Definitions: include/attnlab/probe_position_bias.h,
// docs/probes.md#position-bias.
#include "probe_util.h"

#include <attnlab/attention.h>
#include <attnlab/error.h>
#include <attnlab/probe_position_bias.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>

namespace attnlab {

using probe_util::Mean;

void rollout_step(std::vector<double>& P, const std::vector<double>& A, int64_t T, bool residual) {  // (T, T) each
    const size_t n = static_cast<size_t>(T * T);
    ATTNLAB_CHECK(P.size() == n && A.size() == n, InvalidArgument,
                  "[probe position-bias] rollout wants ({0}, {0}) matrices, got {1} and {2} values", T, P.size(), A.size());
    // Row j of P is zero past its last non-zero column (causal maps make P lower triangular), so
    // each update only touches that prefix: about T³/6 multiply-adds instead of T³.
    std::vector<int64_t> extent(static_cast<size_t>(T), 0);  // (T)
    for (int64_t j = 0; j < T; ++j)
        for (int64_t c = T - 1; c >= 0; --c)
            if (P[j * T + c] != 0.0) {
                extent[j] = c + 1;
                break;
            }
    const double w = residual ? 0.5 : 1.0;
    std::vector<double> next(n, 0.0);  // (T, T)
    for (int64_t i = 0; i < T; ++i) {
        double* out = next.data() + i * T;
        for (int64_t j = 0; j < T; ++j) {
            const double a = w * A[i * T + j];
            if (a == 0.0) continue;
            const double* row = P.data() + j * T;
            for (int64_t c = 0; c < extent[j]; ++c) out[c] += a * row[c];
        }
        if (residual)
            for (int64_t c = 0; c < T; ++c) out[c] += 0.5 * P[i * T + c];
    }
    P.swap(next);
}

std::vector<std::vector<double>> attention_rollout(const std::vector<std::vector<double>>& layers, int64_t T,
                                                   bool residual) {
    std::vector<double> P(static_cast<size_t>(T * T), 0.0);  // (T, T) identity
    for (int64_t i = 0; i < T; ++i) P[i * T + i] = 1.0;
    std::vector<std::vector<double>> out;
    for (const std::vector<double>& A : layers) {
        rollout_step(P, A, T, residual);
        out.push_back(P);
    }
    return out;
}

namespace {

class PositionBiasHook : public Hooks {
public:
    PositionBiasHook(const ModelConfig& c, const PositionBiasOptions& options, int64_t distance_bins)
        : L_(c.n_layer), H_(c.n_head), options_(options), n_bins_(distance_bins), received_(L_),
          distance_(L_, std::vector<Mean>(static_cast<size_t>(distance_bins))), first_(L_), rollout_first_(L_),
          rollout_last_(L_) {}

    void start_sequence(int64_t T) {
        T_ = T;
        reached_ = std::max(reached_, T);
        rolling_ = options_.rollout_max_tokens > 0 && T <= options_.rollout_max_tokens;
        rollout_sequences_ += rolling_;
    }

    bool wants(const std::string& name) const override { return rolling_ && name.ends_with(".attn.hook_pattern"); }

    void on(const std::string& name, Tensor& pattern) override {  // (H, T, S)
        const int64_t l = probe_util::hook_layer(name);
        const int64_t T = pattern.size(1), S = pattern.size(2);
        // A prefill from an empty cache: queries and keys are the same T positions.
        ATTNLAB_ASSERT(T == S && T == T_);
        if (l == 0) {  // P^(0) = I
            P_.assign(static_cast<size_t>(T * T), 0.0);
            for (int64_t i = 0; i < T; ++i) P_[i * T + i] = 1.0;
        }
        const float* p = pattern.data<float>();
        std::vector<double> A(static_cast<size_t>(T * T), 0.0);  // (T, T) mean over heads
        for (int64_t h = 0; h < H_; ++h)
            for (size_t e = 0; e < A.size(); ++e) A[e] += p[h * T * T + static_cast<int64_t>(e)];
        for (double& a : A) a /= double(H_);
        rollout_step(P_, A, T, options_.rollout_residual);
        double first = 0;
        for (int64_t i = 0; i < T; ++i) first += P_[i * T];
        rollout_first_[l].add(first / double(T));
        rollout_last_[l].add(std::vector<double>(P_.end() - T, P_.end()));
    }

    std::optional<AttentionStatsRequest> attention_stats(int64_t, int64_t) const override {
        AttentionStatsRequest r;
        r.column_sum = true;
        r.keys = {0};
        r.n_distance_bins = n_bins_;
        return r;
    }

    void on_attention_stats(const LayerAttentionStats& st) override {
        const int64_t l = st.layer;
        received_[l].add(probe_util::received_mass(st));
        const float* first = st.key_mass.data<float>();      // (T, H, 1)
        const float* dist = st.distance_mass.data<float>();  // (T, H, n_bins)
        for (int64_t t = 0; t < st.T; ++t)
            for (int64_t h = 0; h < H_; ++h) {
                const int64_t row = t * H_ + h;
                if (st.pos0 + t >= 1) first_[l].add(first[row]);
                for (int64_t b = 0; b < n_bins_; ++b) distance_[l][b].add(dist[row * n_bins_ + b]);
            }
    }

    int64_t reached() const { return reached_; }  // the longest sequence run

    void fill(PositionBias& out, int64_t bins) const {
        for (int64_t l = 0; l < L_; ++l) {
            LayerPositionBias s;
            s.layer = l;
            s.received_mass = received_[l].mean();
            for (int64_t b = 0; b < bins; ++b) {
                Mean m;
                for (int64_t k = out.bin_edges[b]; k < out.bin_edges[b + 1]; ++k) m.add(s.received_mass[k]);
                s.received_mass_binned.push_back(m.mean());
            }
            s.distance_mass = probe_util::means(distance_[l]);
            s.first_token_mass = first_[l].mean();
            out.layers.push_back(std::move(s));
        }
        if (rollout_sequences_ == 0) return;
        RolloutResult r;
        r.residual = options_.rollout_residual;
        r.sequences = rollout_sequences_;
        r.first_token_mass = probe_util::means(rollout_first_);
        for (const auto& last : rollout_last_) r.last_row.push_back(last.mean());
        out.rollout = std::move(r);
    }

private:
    int64_t L_, H_, T_ = 0, reached_ = 0;
    PositionBiasOptions options_;
    int64_t n_bins_;
    std::vector<probe_util::PositionMean> received_;  // (L) of (S_max)
    std::vector<std::vector<Mean>> distance_;         // (L, n_bins) pooled over rows and heads
    std::vector<Mean> first_;                         // (L) pooled over rows i >= 1 and heads
    bool rolling_ = false;
    int64_t rollout_sequences_ = 0;
    std::vector<double> P_;                              // (T, T) this sequence's running product
    std::vector<Mean> rollout_first_;                    // (L)
    std::vector<probe_util::PositionMean> rollout_last_; // (L) of (T_max)
};

}  // namespace

PositionBias probe_position_bias(const Model& model, const std::vector<std::vector<int32_t>>& sequences,
                                 const PositionBiasOptions& options, const ProbeControl& control) {
    ATTNLAB_CHECK(!sequences.empty(), InvalidArgument, "[probe position-bias] no sequences");
    ATTNLAB_CHECK(options.bins >= 1, InvalidArgument, "[probe position-bias] --bins must be >= 1, got {}", options.bins);
    ATTNLAB_CHECK(options.rollout_max_tokens >= 0, InvalidArgument,
                  "[probe position-bias] --rollout-max-tokens must be >= 0, got {}", options.rollout_max_tokens);
    int64_t T_max = 0;
    for (size_t s = 0; s < sequences.size(); ++s) {
        ATTNLAB_CHECK(!sequences[s].empty(), InvalidArgument, "[probe position-bias] sequence {} is empty", s);
        T_max = std::max<int64_t>(T_max, static_cast<int64_t>(sequences[s].size()));
    }
    // One set of distance bins for the whole batch, enough for its longest sequence.
    const int64_t n_distance_bins = AttentionStats::distance_bins_for(T_max);
    PositionBiasHook hook(model.config(), options, n_distance_bins);
    PositionBias out;
    out.rollout_max_tokens = options.rollout_max_tokens;
    out.sequences = probe_util::run_sequences(
        model, sequences, hook, control, [&](size_t s) { hook.start_sequence(static_cast<int64_t>(sequences[s].size())); },
        [](size_t) {});
    out.interrupted = out.sequences < static_cast<int64_t>(sequences.size());
    // Equal-width bins over the positions the batch reached (fewer bins than positions if short).
    const int64_t S_reached = hook.reached();
    const int64_t bins = std::min(options.bins, S_reached);
    for (int64_t b = 0; b <= bins; ++b) out.bin_edges.push_back(b * S_reached / std::max<int64_t>(bins, 1));
    hook.fill(out, bins);
    return out;
}

std::string PositionBias::to_json() const {
    using nlohmann::json;
    using probe_util::json_number;
    using probe_util::json_numbers;
    json layers_json = json::array();
    for (const LayerPositionBias& l : layers)
        layers_json.push_back({{"layer", l.layer},
                               {"received_mass", json_numbers(l.received_mass)},
                               {"received_mass_binned", json_numbers(l.received_mass_binned)},
                               {"distance_mass", json_numbers(l.distance_mass)},
                               {"first_token_mass", json_number(l.first_token_mass)}});
    json distance_bins = json::array();
    const int64_t n_bins = layers.empty() ? 0 : static_cast<int64_t>(layers[0].distance_mass.size());
    for (int64_t b = 0; b < n_bins; ++b) {
        // Bin 0 holds keys after the query; bin b >= 2 holds d in [2^(b-2), 2^(b-1) - 1]; the last
        // bin takes every longer distance too.
        const json lo = b == 0 ? json(nullptr) : b == 1 ? json(0) : json(int64_t{1} << (b - 2));
        const json hi = b == 0 ? json(-1) : b + 1 == n_bins ? json(nullptr) : b == 1 ? json(0) : json((int64_t{1} << (b - 1)) - 1);
        distance_bins.push_back({{"bin", b}, {"min", lo}, {"max", hi}});
    }
    json root;
    root["probe"] = "position-bias";
    root["sequences"] = sequences;
    root["interrupted"] = interrupted;
    root["bin_edges"] = bin_edges;
    root["distance_bins"] = distance_bins;
    root["layers"] = layers_json;
    root["rollout_max_tokens"] = rollout_max_tokens;
    if (rollout) {
        json last = json::array();
        for (const auto& row : rollout->last_row) last.push_back(json_numbers(row));
        root["rollout"] = {{"residual", rollout->residual},
                           {"sequences", rollout->sequences},
                           {"first_token_mass", json_numbers(rollout->first_token_mass)},
                           {"last_row", last}};
    } else {
        root["rollout"] = nullptr;
    }
    return root.dump(1);
}

}  // namespace attnlab
