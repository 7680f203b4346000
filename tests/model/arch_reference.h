// The float64 reference decoder of arch_reference_test.cpp: a forward pass written from the
// transformers modelling files (modeling_llama/gemma2/gemma3/phi3/olmo2/gpt2.py and
// modeling_rope_utils.py, transformers 5), reading weights by their Hub names. It shares no code
// with src/model and is driven by a hand-written RefSpec, not by attnlab's ModelConfig.
#pragma once

#include <attnlab/safetensors.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace attnlab::test::arch_ref {

using Vec = std::vector<double>;

// ---------------------------------------------------------------------------------------------
// What the reference needs to know, written by hand per case (HF semantics).

enum class Arch { Llama, Gemma2, Gemma3, Phi3, Olmo2, Gpt2 };

struct RefRope {  // one entry of transformers' ROPE_INIT_FUNCTIONS
    std::string type = "default";
    double theta = 10000.0;
    double factor = 1.0;
    double partial = 1.0;          // partial_rotary_factor
    int64_t original_max = 0;      // original_max_position_embeddings (0: absent)
    double low_freq = 1.0, high_freq = 4.0;  // llama3
    double beta_fast = 32.0, beta_slow = 1.0;
    std::optional<double> attention_factor = std::nullopt;
};

struct RefSpec {
    Arch arch = Arch::Llama;
    int64_t V = 0, C = 0, I = 0, L = 0, H = 0, Hkv = 0, D = 0, P = 0;  // P: max_position_embeddings
    double eps = 1e-6;
    bool tied = false;
    double scale = 0.0;          // score scale; 0 = D^-1/2
    double attn_softcap = 0.0;   // Gemma-2 attn_logit_softcapping
    double final_softcap = 0.0;  // final_logit_softcapping
    std::vector<int64_t> window;  // per layer, 0 = full attention
    RefRope rope;
    std::optional<RefRope> rope_local;  // Gemma-3 sliding layers
    bool inverse_layer_scale = false;   // GPT-2 scale_attn_by_inverse_layer_idx
};

// ---------------------------------------------------------------------------------------------
// RoPE inverse frequencies (modeling_rope_utils.py, transformers 5).

struct RefFreq {
    Vec inv;  // (dim/2)
    double attention_factor = 1.0;
    int64_t dim = 0;
};

inline RefFreq rope_freq(const RefRope& r, int64_t head_dim, int64_t max_pos, int64_t seq_len) {
    RefFreq f;
    f.dim = static_cast<int64_t>(static_cast<double>(head_dim) * r.partial);
    const int64_t dim = f.dim;
    auto base_inv = [&](double base) {
        Vec inv(dim / 2);
        for (int64_t i = 0; i < dim / 2; ++i) inv[i] = 1.0 / std::pow(base, double(2 * i) / double(dim));
        return inv;
    };
    if (r.type == "default") {
        f.inv = base_inv(r.theta);
    } else if (r.type == "linear") {
        f.inv = base_inv(r.theta);
        for (double& x : f.inv) x /= r.factor;
    } else if (r.type == "dynamic") {
        const double len = std::max<double>(double(seq_len), double(max_pos));
        const double base =
            r.theta * std::pow(r.factor * len / double(max_pos) - (r.factor - 1.0), double(dim) / double(dim - 2));
        f.inv = base_inv(base);
    } else if (r.type == "llama3") {
        f.inv = base_inv(r.theta);
        const double old_len = double(r.original_max);
        const double low_wavelen = old_len / r.low_freq, high_wavelen = old_len / r.high_freq;
        for (double& x : f.inv) {
            const double wavelen = 2.0 * M_PI / x;
            double scaled = wavelen > low_wavelen ? x / r.factor : x;
            if (!(wavelen < high_wavelen) && !(wavelen > low_wavelen)) {
                const double smooth = (old_len / wavelen - r.low_freq) / (r.high_freq - r.low_freq);
                scaled = (1.0 - smooth) * scaled / r.factor + smooth * scaled;
            }
            x = scaled;
        }
    } else if (r.type == "yarn") {
        // transformers 5: the configured factor drives both the interpolation and the default
        // attention factor; original_max_position_embeddings only sets the correction range.
        const double factor = r.factor;
        const double original = r.original_max > 0 ? double(r.original_max) : double(max_pos);
        f.attention_factor = r.attention_factor ? *r.attention_factor
                                                : (factor <= 1.0 ? 1.0 : 0.1 * std::log(factor) + 1.0);
        auto correction_dim = [&](double rotations) {
            return double(dim) * std::log(original / (rotations * 2.0 * M_PI)) / (2.0 * std::log(r.theta));
        };
        double low = std::max(std::floor(correction_dim(r.beta_fast)), 0.0);
        double high = std::min(std::ceil(correction_dim(r.beta_slow)), double(dim - 1));
        if (low == high) high += 0.001;
        const Vec extrapolation = base_inv(r.theta);
        f.inv.resize(extrapolation.size());
        for (size_t i = 0; i < extrapolation.size(); ++i) {
            const double ramp = std::clamp((double(i) - low) / (high - low), 0.0, 1.0);
            const double extrapolation_factor = 1.0 - ramp;
            f.inv[i] = extrapolation[i] / factor * (1.0 - extrapolation_factor) +
                       extrapolation[i] * extrapolation_factor;
        }
    } else {
        ADD_FAILURE() << "reference: unknown rope type " << r.type;
    }
    return f;
}

// ---------------------------------------------------------------------------------------------
// The reference model.

struct RefCache {
    int64_t n_past = 0;
    std::vector<std::vector<Vec>> k, v;  // [layer][position] (Hkv*D), rotated keys
    // Dynamic NTK state, as transformers' dynamic_rope_update keeps it.
    int64_t max_seq_len_cached = 0;
    std::optional<RefFreq> dynamic_freq;
};

struct RefOutput {
    std::vector<Vec> logits;                  // [T] (V)
    std::vector<std::vector<Vec>> resid_pre;  // [L][T] (C)
    std::vector<Vec> final_normed;            // [T] (C)
    std::vector<Vec> pattern;                 // [L] (H, T, S)
};

class RefModel {
public:
    RefModel(RefSpec spec, const std::filesystem::path& checkpoint) : s_(std::move(spec)) {
        SafetensorsFile file = load_safetensors(checkpoint.string());
        for (const auto& [name, t] : file.tensors) {
            std::vector<float> f = t.to_floats();
            w_[name] = Vec(f.begin(), f.end());
        }
        if (s_.arch == Arch::Gpt2) root_ = w_.count("transformer.wte.weight") ? "transformer." : "";
    }
    const RefSpec& spec() const { return s_; }

    RefOutput forward(const std::vector<int32_t>& ids, RefCache& cache) const;

    // Greedy continuation. Non-dynamic RoPE: the whole sequence is recomputed at every step (no
    // cache at all, an independent check of attnlab's KV cache). Dynamic NTK: one cache, as
    // transformers' generate() keeps the keys rotated with the frequencies of their time.
    std::vector<int32_t> greedy(const std::vector<int32_t>& prompt, int n, double* min_margin) const {
        std::vector<int32_t> seq = prompt, out;
        const bool incremental = s_.rope.type == "dynamic";
        RefCache cache;
        std::vector<int32_t> chunk = prompt;
        *min_margin = 1e300;
        for (int step = 0; step < n; ++step) {
            RefOutput o;
            if (incremental) {
                o = forward(chunk, cache);
            } else {
                RefCache fresh;
                o = forward(seq, fresh);
            }
            const Vec& row = o.logits.back();
            const int32_t best = static_cast<int32_t>(std::max_element(row.begin(), row.end()) - row.begin());
            double second = -1e300;
            for (size_t i = 0; i < row.size(); ++i)
                if (static_cast<int32_t>(i) != best) second = std::max(second, row[i]);
            *min_margin = std::min(*min_margin, row[best] - second);
            out.push_back(best);
            seq.push_back(best);
            chunk = {best};
        }
        return out;
    }

private:
    const Vec& get(const std::string& name, size_t numel) const {
        auto it = w_.find(name);
        if (it == w_.end()) throw std::runtime_error("reference: checkpoint has no tensor " + name);
        if (it->second.size() != numel)
            throw std::runtime_error("reference: tensor " + name + " has an unexpected size");
        return it->second;
    }
    // nn.Linear: W (N, K), y = x Wᵀ + b.
    static Vec linear(const Vec& x, const Vec& W, int64_t N, int64_t K, const Vec* b = nullptr,
                      int64_t row0 = 0) {
        Vec y(N);
        for (int64_t n = 0; n < N; ++n) {
            double acc = b ? (*b)[n] : 0.0;
            const double* wr = W.data() + (row0 + n) * K;
            for (int64_t k = 0; k < K; ++k) acc += x[k] * wr[k];
            y[n] = acc;
        }
        return y;
    }
    // GPT-2 Conv1D: W (K, N), y = x W + b; columns [col0, col0+N).
    static Vec conv1d(const Vec& x, const Vec& W, int64_t K, int64_t Ntotal, int64_t col0, int64_t N,
                      const Vec& b) {
        Vec y(N);
        for (int64_t n = 0; n < N; ++n) {
            double acc = b[col0 + n];
            for (int64_t k = 0; k < K; ++k) acc += x[k] * W[k * Ntotal + col0 + n];
            y[n] = acc;
        }
        return y;
    }
    // Llama/OLMo-2 RMSNorm: w · x/rms; Gemma: (1 + w) · x/rms. `off` picks a slice of x.
    static void rms_norm(double* x, int64_t n, const Vec& w, double eps, bool plus_one) {
        double sq = 0;
        for (int64_t i = 0; i < n; ++i) sq += x[i] * x[i];
        const double inv = 1.0 / std::sqrt(sq / double(n) + eps);
        for (int64_t i = 0; i < n; ++i) x[i] = x[i] * inv * (plus_one ? 1.0 + w[i] : w[i]);
    }
    static void layer_norm(double* x, int64_t n, const Vec& w, const Vec& b, double eps) {
        double mean = 0;
        for (int64_t i = 0; i < n; ++i) mean += x[i];
        mean /= double(n);
        double var = 0;
        for (int64_t i = 0; i < n; ++i) var += (x[i] - mean) * (x[i] - mean);
        var /= double(n);
        const double inv = 1.0 / std::sqrt(var + eps);
        for (int64_t i = 0; i < n; ++i) x[i] = (x[i] - mean) * inv * w[i] + b[i];
    }
    Vec norm(const Vec& x, const std::string& prefix) const {
        Vec y = x;
        const int64_t n = static_cast<int64_t>(x.size());
        switch (s_.arch) {
            case Arch::Gpt2:
                layer_norm(y.data(), n, get(prefix + ".weight", n), get(prefix + ".bias", n), s_.eps);
                break;
            case Arch::Gemma2:
            case Arch::Gemma3: rms_norm(y.data(), n, get(prefix + ".weight", n), s_.eps, true); break;
            default: rms_norm(y.data(), n, get(prefix + ".weight", n), s_.eps, false); break;
        }
        return y;
    }
    static double gelu_tanh(double x) {
        return 0.5 * x * (1.0 + std::tanh(std::sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x)));
    }
    static double silu(double x) { return x / (1.0 + std::exp(-x)); }
    static void rotate(double* x, const RefFreq& f, int64_t pos) {
        const int64_t half = f.dim / 2;
        for (int64_t i = 0; i < half; ++i) {
            const double angle = double(pos) * f.inv[i];
            const double c = std::cos(angle) * f.attention_factor, s = std::sin(angle) * f.attention_factor;
            const double x1 = x[i], x2 = x[i + half];
            x[i] = x1 * c - x2 * s;
            x[i + half] = x2 * c + x1 * s;
        }
    }

    RefSpec s_;
    std::map<std::string, Vec> w_;
    std::string root_;
};

inline RefOutput RefModel::forward(const std::vector<int32_t>& ids, RefCache& cache) const {
    const RefSpec& s = s_;
    const int64_t T = static_cast<int64_t>(ids.size()), C = s.C, H = s.H, Hkv = s.Hkv, D = s.D, I = s.I;
    const int64_t pos0 = cache.n_past, S = pos0 + T;
    const bool gemma = s.arch == Arch::Gemma2 || s.arch == Arch::Gemma3;
    const bool gpt2 = s.arch == Arch::Gpt2;
    if (cache.k.empty()) {
        cache.k.assign(s.L, {});
        cache.v.assign(s.L, {});
    }

    // RoPE for this call (dynamic NTK: transformers' dynamic_rope_update on max(position) + 1).
    RefFreq global, local;
    if (!gpt2) {
        if (s.rope.type == "dynamic") {
            if (!cache.dynamic_freq) {
                cache.dynamic_freq = rope_freq(s.rope, D, s.P, 0);
                cache.max_seq_len_cached = s.P;
            }
            const int64_t seq_len = S;
            if (seq_len > cache.max_seq_len_cached) {
                cache.dynamic_freq = rope_freq(s.rope, D, s.P, seq_len);
                cache.max_seq_len_cached = seq_len;
            }
            if (seq_len < s.P && cache.max_seq_len_cached > s.P) {
                cache.dynamic_freq = rope_freq(s.rope, D, s.P, 0);
                cache.max_seq_len_cached = s.P;
            }
            global = *cache.dynamic_freq;
        } else {
            global = rope_freq(s.rope, D, s.P, 0);
        }
        if (s.rope_local) local = rope_freq(*s.rope_local, D, s.P, 0);
    }

    // Embeddings.
    std::vector<Vec> x(T);
    const std::string embed_name = gpt2 ? root_ + "wte.weight" : "model.embed_tokens.weight";
    const Vec& embed = get(embed_name, size_t(s.V * C));
    for (int64_t t = 0; t < T; ++t) {
        x[t].assign(embed.begin() + ids[t] * C, embed.begin() + (ids[t] + 1) * C);
        if (gemma)
            for (double& e : x[t]) e *= std::sqrt(double(C));
        if (gpt2) {
            const Vec& wpe = get(root_ + "wpe.weight", size_t(s.P * C));
            for (int64_t c = 0; c < C; ++c) x[t][c] += wpe[(pos0 + t) * C + c];
        }
    }

    RefOutput out;
    out.resid_pre.resize(s.L);
    out.pattern.resize(s.L);
    const int64_t qw = H * D, kw = Hkv * D;
    for (int64_t l = 0; l < s.L; ++l) {
        out.resid_pre[l] = x;
        const std::string p = gpt2 ? root_ + "h." + std::to_string(l) + "."
                                   : "model.layers." + std::to_string(l) + ".";
        const int64_t window = s.window[l];
        const bool sliding_rope = s.rope_local && window > 0;
        double scale = s.scale > 0 ? s.scale : 1.0 / std::sqrt(double(D));
        if (s.inverse_layer_scale) scale /= double(l + 1);

        // Projections, q/k norms, RoPE; new keys/values go to the cache.
        std::vector<Vec> q(T);
        for (int64_t t = 0; t < T; ++t) {
            Vec h = x[t];
            if (s.arch != Arch::Olmo2) h = norm(x[t], p + (gpt2 ? "ln_1" : "input_layernorm"));
            Vec k, v;
            if (gpt2) {
                const Vec& W = get(p + "attn.c_attn.weight", size_t(C * 3 * C));
                const Vec& b = get(p + "attn.c_attn.bias", size_t(3 * C));
                q[t] = conv1d(h, W, C, 3 * C, 0, C, b);
                k = conv1d(h, W, C, 3 * C, C, C, b);
                v = conv1d(h, W, C, 3 * C, 2 * C, C, b);
            } else if (s.arch == Arch::Phi3) {
                const Vec& W = get(p + "self_attn.qkv_proj.weight", size_t((qw + 2 * kw) * C));
                q[t] = linear(h, W, qw, C, nullptr, 0);
                k = linear(h, W, kw, C, nullptr, qw);
                v = linear(h, W, kw, C, nullptr, qw + kw);
            } else {
                q[t] = linear(h, get(p + "self_attn.q_proj.weight", size_t(qw * C)), qw, C);
                k = linear(h, get(p + "self_attn.k_proj.weight", size_t(kw * C)), kw, C);
                v = linear(h, get(p + "self_attn.v_proj.weight", size_t(kw * C)), kw, C);
            }
            if (s.arch == Arch::Gemma3) {  // per head, Gemma's (1 + w), before RoPE
                const Vec& wq = get(p + "self_attn.q_norm.weight", size_t(D));
                const Vec& wk = get(p + "self_attn.k_norm.weight", size_t(D));
                for (int64_t hd = 0; hd < H; ++hd) rms_norm(q[t].data() + hd * D, D, wq, s.eps, true);
                for (int64_t hd = 0; hd < Hkv; ++hd) rms_norm(k.data() + hd * D, D, wk, s.eps, true);
            } else if (s.arch == Arch::Olmo2) {  // over the whole projection
                rms_norm(q[t].data(), qw, get(p + "self_attn.q_norm.weight", size_t(qw)), s.eps, false);
                rms_norm(k.data(), kw, get(p + "self_attn.k_norm.weight", size_t(kw)), s.eps, false);
            }
            if (!gpt2) {
                const RefFreq& f = sliding_rope ? local : global;
                for (int64_t hd = 0; hd < H; ++hd) rotate(q[t].data() + hd * D, f, pos0 + t);
                for (int64_t hd = 0; hd < Hkv; ++hd) rotate(k.data() + hd * D, f, pos0 + t);
            }
            cache.k[l].push_back(k);
            cache.v[l].push_back(v);
        }

        // Attention: causal, window keeps i - j < W, soft-cap before masking, GQA h -> h / (H/Hkv).
        Vec& pattern = out.pattern[l];
        pattern.assign(size_t(H * T * S), 0.0);
        std::vector<Vec> z(T, Vec(qw, 0.0));
        for (int64_t hd = 0; hd < H; ++hd) {
            const int64_t g = hd / (H / Hkv);
            for (int64_t t = 0; t < T; ++t) {
                const int64_t i = pos0 + t;
                Vec sc(S, -INFINITY);
                double mx = -INFINITY;
                for (int64_t j = 0; j <= i; ++j) {
                    if (window > 0 && i - j >= window) continue;
                    double acc = 0;
                    for (int64_t d = 0; d < D; ++d) acc += q[t][hd * D + d] * cache.k[l][j][g * D + d];
                    acc *= scale;
                    if (s.attn_softcap > 0) acc = s.attn_softcap * std::tanh(acc / s.attn_softcap);
                    sc[j] = acc;
                    mx = std::max(mx, acc);
                }
                double sum = 0;
                for (int64_t j = 0; j < S; ++j) sum += std::isinf(sc[j]) ? 0.0 : std::exp(sc[j] - mx);
                for (int64_t j = 0; j < S; ++j) {
                    const double pr = std::isinf(sc[j]) ? 0.0 : std::exp(sc[j] - mx) / sum;
                    pattern[(hd * T + t) * S + j] = pr;
                    for (int64_t d = 0; d < D; ++d) z[t][hd * D + d] += pr * cache.v[l][j][g * D + d];
                }
            }
        }

        for (int64_t t = 0; t < T; ++t) {
            Vec o;
            if (gpt2)
                o = conv1d(z[t], get(p + "attn.c_proj.weight", size_t(C * C)), C, C, 0, C,
                           get(p + "attn.c_proj.bias", size_t(C)));
            else
                o = linear(z[t], get(p + "self_attn.o_proj.weight", size_t(C * qw)), C, qw);
            if (gemma || s.arch == Arch::Olmo2) o = norm(o, p + "post_attention_layernorm");
            for (int64_t c = 0; c < C; ++c) x[t][c] += o[c];

            // MLP.
            Vec h = x[t];
            if (gpt2) h = norm(x[t], p + "ln_2");
            else if (gemma) h = norm(x[t], p + "pre_feedforward_layernorm");
            else if (s.arch != Arch::Olmo2) h = norm(x[t], p + "post_attention_layernorm");
            Vec m;
            if (gpt2) {
                Vec a = conv1d(h, get(p + "mlp.c_fc.weight", size_t(C * I)), C, I, 0, I,
                               get(p + "mlp.c_fc.bias", size_t(I)));
                for (double& e : a) e = gelu_tanh(e);
                m = conv1d(a, get(p + "mlp.c_proj.weight", size_t(I * C)), I, C, 0, C,
                           get(p + "mlp.c_proj.bias", size_t(C)));
            } else {
                Vec gate, up;
                if (s.arch == Arch::Phi3) {  // gate_up_proj: gate rows first, then up
                    const Vec& W = get(p + "mlp.gate_up_proj.weight", size_t(2 * I * C));
                    gate = linear(h, W, I, C, nullptr, 0);
                    up = linear(h, W, I, C, nullptr, I);
                } else {
                    gate = linear(h, get(p + "mlp.gate_proj.weight", size_t(I * C)), I, C);
                    up = linear(h, get(p + "mlp.up_proj.weight", size_t(I * C)), I, C);
                }
                for (int64_t i = 0; i < I; ++i) gate[i] = (gemma ? gelu_tanh(gate[i]) : silu(gate[i])) * up[i];
                m = linear(gate, get(p + "mlp.down_proj.weight", size_t(C * I)), C, I);
            }
            if (gemma || s.arch == Arch::Olmo2) m = norm(m, p + "post_feedforward_layernorm");
            for (int64_t c = 0; c < C; ++c) x[t][c] += m[c];
        }
    }
    cache.n_past = S;

    const Vec& lm_head = s.tied ? embed : get("lm_head.weight", size_t(s.V * C));
    for (int64_t t = 0; t < T; ++t) {
        Vec h = norm(x[t], gpt2 ? root_ + "ln_f" : "model.norm");
        out.final_normed.push_back(h);
        Vec logits = linear(h, lm_head, s.V, C);
        if (s.final_softcap > 0)
            for (double& e : logits) e = s.final_softcap * std::tanh(e / s.final_softcap);
        out.logits.push_back(logits);
    }
    return out;
}

}  // namespace attnlab::test::arch_ref
