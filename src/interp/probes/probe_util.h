// Pieces several probes share: reading a layer index from a hook name, the received-mass
// normalisation of column sums (sinks and position-bias report the same α_k), per-position means
// over sequences of different lengths, the run-every-sequence loop with progress and
// cancellation, and NaN-as-null JSON numbers.
#pragma once

#include <attnlab/error.h>
#include <attnlab/hooks.h>
#include <attnlab/probes.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace attnlab::probe_util {

// "blocks.12.attn.hook_v" -> 12.
inline int64_t hook_layer(const std::string& name) {
    const size_t dot = name.find('.', 7);
    ATTNLAB_ASSERT(name.starts_with("blocks.") && dot != std::string::npos);
    return std::stoll(name.substr(7, dot - 7));
}

// NaN (no data) is written as null: JSON has no NaN.
inline nlohmann::json json_number(double v) { return std::isnan(v) ? nlohmann::json(nullptr) : nlohmann::json(v); }

inline nlohmann::json json_numbers(const std::vector<double>& v) {
    nlohmann::json out = nlohmann::json::array();
    for (double x : v) out.push_back(json_number(x));
    return out;
}

// α_k = (1/H) Σ_h column_sum[h, k] / n_k: the mean over heads of the mean attention that key k
// receives from the queries at positions >= k (the causal queries that can see it), n_k of them
// among this call's queries pos0 .. pos0+T-1. A mask that hides k from some of those queries
// (window, streaming) still counts them: α_k is then the mean over q >= k of A[q, k] with the
// hidden entries as 0, the definition of papers-analysis §2. Returns (S).
inline std::vector<double> received_mass(const LayerAttentionStats& st) {
    ATTNLAB_ASSERT(st.column_sum.defined());
    const float* col = st.column_sum.data<float>();  // (H, S)
    std::vector<double> alpha(static_cast<size_t>(st.S), 0.0);
    for (int64_t k = 0; k < st.S; ++k) {
        const int64_t n = st.pos0 + st.T - std::max(k, st.pos0);
        if (n <= 0) continue;  // no query of this call can see k
        double sum = 0;
        for (int64_t h = 0; h < st.H; ++h) sum += col[h * st.S + k];
        alpha[k] = sum / double(st.H * n);
    }
    return alpha;
}

// Mean per position over vectors of different lengths: position p averages the vectors that
// reach it (sequences of different lengths in one batch).
class PositionMean {
public:
    void add(const std::vector<double>& v) {  // (n)
        if (v.size() > sum_.size()) sum_.resize(v.size(), 0.0), count_.resize(v.size(), 0);
        for (size_t p = 0; p < v.size(); ++p) sum_[p] += v[p], count_[p] += 1;
    }
    std::vector<double> mean() const {
        std::vector<double> m(sum_.size());
        for (size_t p = 0; p < sum_.size(); ++p) m[p] = count_[p] > 0 ? sum_[p] / double(count_[p]) : NAN;
        return m;
    }
    bool empty() const { return sum_.empty(); }

private:
    std::vector<double> sum_;
    std::vector<int64_t> count_;
};

// A float64 sum and how many terms it has: mean() is NaN when there are none.
struct Mean {
    double sum = 0;
    int64_t n = 0;
    void add(double v, int64_t count = 1) { sum += v, n += count; }
    double mean() const { return n > 0 ? sum / double(n) : NAN; }
};

inline std::vector<double> means(const std::vector<Mean>& v) {
    std::vector<double> out;
    for (const Mean& m : v) out.push_back(m.mean());
    return out;
}

// Runs one full forward pass per sequence with `hooks`, calling before(index) first; stops early
// when control is cancelled. Returns the number of sequences run.
inline int64_t run_sequences(const Model& model, const std::vector<std::vector<int32_t>>& sequences, Hooks& hooks,
                             const ProbeControl& control, const std::function<void(size_t)>& before,
                             const std::function<void(size_t)>& after) {
    int64_t done = 0;
    for (size_t s = 0; s < sequences.size(); ++s) {
        if (control.cancelled()) break;
        before(s);
        KVCache cache = model.new_cache();
        ForwardOptions fo;
        fo.hooks = &hooks;
        model.forward(sequences[s], cache, fo);
        after(s);
        control.report(++done, static_cast<int64_t>(sequences.size()));
    }
    return done;
}

}  // namespace attnlab::probe_util
