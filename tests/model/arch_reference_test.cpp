// Independent float64 references for the architectures without Hugging Face fixtures
// (Gemma-2, Gemma-3 text, Phi-3, OLMo-2), for Llama's RoPE scaling types and for GPT-2's
// scale_attn_by_inverse_layer_idx.
//
// Each case writes a tiny config.json (GQA, sliding windows crossed by odd sequence lengths),
// turns it into a random f32 checkpoint with `attnlab make-model --std 0.2` (large weights, so
// attention is far from uniform), then compares `attnlab run` / `attnlab generate` against a
// forward pass written here from the transformers modelling semantics: tensor names as the
// Hub checkpoints spell them, norms, scalings, soft-caps, windows and RoPE frequencies as the
// modeling_*.py files and modeling_rope_utils.py (transformers 5) define them. The reference
// shares no code with src/model: it reads the weights itself and is driven by a hand-written
// RefSpec, not by attnlab's ModelConfig.
#include "test_support.h"

#include <attnlab/model.h>
#include <attnlab/safetensors.h>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace attnlab::test {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
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
    std::optional<double> attention_factor;
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

RefFreq rope_freq(const RefRope& r, int64_t head_dim, int64_t max_pos, int64_t seq_len) {
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
    RefModel(RefSpec spec, const fs::path& checkpoint) : s_(std::move(spec)) {
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

RefOutput RefModel::forward(const std::vector<int32_t>& ids, RefCache& cache) const {
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

// ---------------------------------------------------------------------------------------------
// Harness: config -> checkpoint -> attnlab run/generate vs the reference.

std::vector<int32_t> token_ids(int64_t n, int64_t V, uint32_t seed) {
    std::vector<int32_t> ids;
    uint32_t x = seed * 2654435761u + 12345u;
    for (int64_t i = 0; i < n; ++i) {
        x = x * 1664525u + 1013904223u;
        ids.push_back(static_cast<int32_t>((x >> 8) % static_cast<uint32_t>(V)));
    }
    return ids;
}

std::string join_ids(const std::vector<int32_t>& ids) {
    std::string s;
    for (size_t i = 0; i < ids.size(); ++i) s += (i ? "," : "") + std::to_string(ids[i]);
    return s;
}

// max |a - r| / max |r| over a whole activation.
double relative_error(const std::vector<float>& got, const std::vector<Vec>& ref) {
    double err = 0, mag = 0;
    size_t k = 0;
    for (const Vec& row : ref)
        for (double r : row) {
            err = std::max(err, std::fabs(double(got[k++]) - r));
            mag = std::max(mag, std::fabs(r));
        }
    return err / std::max(mag, 1e-30);
}

// A checkpoint written by `attnlab make-model` for the config.
fs::path make_model(const TempDir& dir, const json& config, double std = 0.2, uint64_t seed = 7) {
    const fs::path config_path = dir / "config.json";
    write_file(config_path, config.dump(2));
    const fs::path model_dir = dir / "model";
    CommandResult r = run_cli({"make-model", "--config", config_path.string(), "--out", model_dir.string(),
                               "--dtype", "f32", "--std", std::to_string(std), "--seed", std::to_string(seed)});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return model_dir;
}

void expect_matches_reference(const json& config, const RefSpec& spec, std::vector<int64_t> lengths = {13, 37},
                              int n_generate = 8, double std = 0.2) {
    TempDir dir;
    const fs::path model_dir = make_model(dir, config, std);
    ASSERT_TRUE(fs::exists(model_dir / "model.safetensors"));
    RefModel ref(spec, model_dir / "model.safetensors");
    uint32_t seed = 1;
    for (int64_t T : lengths) {
        SCOPED_TRACE("T = " + std::to_string(T));
        const std::vector<int32_t> ids = token_ids(T, spec.V, seed++);
        const fs::path saved = dir / ("run_" + std::to_string(T) + ".safetensors");
        CommandResult r = run_cli({"run", "-m", model_dir.string(), "--ids", join_ids(ids), "--save", saved.string(),
                                   "--hooks",
                                   "blocks\\.[0-9]+\\.hook_resid_pre|blocks\\.[0-9]+\\.attn\\.hook_pattern|"
                                   "ln_final\\.hook_normalized"});
        ASSERT_EQ(r.exit_code, 0) << r.err;
        SafetensorsFile got = load_safetensors(saved.string());
        RefCache cache;
        RefOutput want = ref.forward(ids, cache);

        const Tensor& logits = got.tensors.at("logits");
        ASSERT_EQ(logits.shape(), (Shape{T, spec.V}));
        EXPECT_LE(relative_error(logits.to_floats(), want.logits), 1e-4) << "logits";
        for (int64_t l = 0; l < spec.L; ++l) {
            const std::string name = "blocks." + std::to_string(l) + ".hook_resid_pre";
            ASSERT_TRUE(got.tensors.count(name)) << name;
            EXPECT_LE(relative_error(got.tensors.at(name).to_floats(), want.resid_pre[l]), 1e-4) << name;
            const std::string pname = "blocks." + std::to_string(l) + ".attn.hook_pattern";
            ASSERT_TRUE(got.tensors.count(pname)) << pname;
            const Tensor& pattern = got.tensors.at(pname);
            ASSERT_EQ(pattern.shape(), (Shape{spec.H, T, T})) << pname;
            std::vector<float> pf = pattern.to_floats();
            double err = 0;
            for (size_t i = 0; i < pf.size(); ++i) err = std::max(err, std::fabs(double(pf[i]) - want.pattern[l][i]));
            EXPECT_LE(err, 1e-5) << pname;
        }
        ASSERT_TRUE(got.tensors.count("ln_final.hook_normalized"));
        EXPECT_LE(relative_error(got.tensors.at("ln_final.hook_normalized").to_floats(), want.final_normed), 1e-4)
            << "ln_final.hook_normalized";
    }

    // Greedy decoding with the KV cache against the reference's continuation.
    if (n_generate > 0) {
        const std::vector<int32_t> prompt = token_ids(lengths.front(), spec.V, 99);
        CommandResult r = run_cli({"generate", "-m", model_dir.string(), "--ids", join_ids(prompt), "-n",
                                   std::to_string(n_generate), "--temp", "0", "--json"});
        ASSERT_EQ(r.exit_code, 0) << r.err;
        const json out = json::parse(r.out);
        const std::vector<int32_t> got = out.at("ids").get<std::vector<int32_t>>();
        double margin = 0;
        const std::vector<int32_t> want = ref.greedy(prompt, n_generate, &margin);
        EXPECT_EQ(got, want) << "greedy continuation (smallest top-2 logit gap in the reference: " << margin << ")";
    }
}

// ---------------------------------------------------------------------------------------------
// Configs. Sizes shared by the llama-family cases: C 48, 4 heads / 2 kv heads, D 16 (not C/H
// where the architecture allows it), I 80, vocab 101, 3 layers.

json llama_family_base(const std::string& model_type, const std::string& architecture) {
    return json{{"model_type", model_type},
                {"architectures", {architecture}},
                {"vocab_size", 101},
                {"hidden_size", 48},
                {"intermediate_size", 80},
                {"num_hidden_layers", 3},
                {"num_attention_heads", 4},
                {"num_key_value_heads", 2},
                {"head_dim", 16},
                {"max_position_embeddings", 64},
                {"rms_norm_eps", 1e-6},
                {"tie_word_embeddings", false},
                {"dtype", "float32"}};
}

RefSpec llama_family_spec(Arch arch) {
    RefSpec s;
    s.arch = arch;
    s.V = 101, s.C = 48, s.I = 80, s.L = 3, s.H = 4, s.Hkv = 2, s.D = 16, s.P = 64;
    s.eps = 1e-6;
    s.window.assign(3, 0);
    return s;
}

// --- Gemma-2 ---

TEST(ArchReference, Gemma2ClassicEvenLayersSlide) {
    json c = llama_family_base("gemma2", "Gemma2ForCausalLM");
    c.erase("tie_word_embeddings");  // Gemma ties by default
    c["hidden_activation"] = "gelu_pytorch_tanh";
    c["rope_theta"] = 10000.0;
    c["query_pre_attn_scalar"] = 24;
    c["attn_logit_softcapping"] = 4.0;
    c["final_logit_softcapping"] = 6.0;
    c["sliding_window"] = 6;
    RefSpec s = llama_family_spec(Arch::Gemma2);
    s.tied = true;
    s.scale = 1.0 / std::sqrt(24.0);
    s.attn_softcap = 4.0;
    s.final_softcap = 6.0;
    s.window = {6, 0, 6};  // no layer_types: layers 0, 2, ... slide
    expect_matches_reference(c, s);
}

TEST(ArchReference, Gemma2LayerTypesAndRopeParameters) {
    json c = llama_family_base("gemma2", "Gemma2ForCausalLM");
    c["tie_word_embeddings"] = true;
    c["hidden_activation"] = "gelu_pytorch_tanh";
    c["rope_parameters"] = {{"rope_type", "default"}, {"rope_theta", 500.0}};
    c["query_pre_attn_scalar"] = 16;
    c["attn_logit_softcapping"] = 3.0;
    c["final_logit_softcapping"] = 5.0;
    c["sliding_window"] = 5;
    c["layer_types"] = {"full_attention", "sliding_attention", "sliding_attention"};
    RefSpec s = llama_family_spec(Arch::Gemma2);
    s.tied = true;
    s.scale = 0.25;
    s.attn_softcap = 3.0;
    s.final_softcap = 5.0;
    s.rope.theta = 500.0;
    s.window = {0, 5, 5};
    expect_matches_reference(c, s);
}

// --- Gemma-3 (text) ---

TEST(ArchReference, Gemma3ClassicPatternLocalBaseLinearGlobal) {
    json c = llama_family_base("gemma3_text", "Gemma3ForCausalLM");
    c["tie_word_embeddings"] = true;
    c["hidden_activation"] = "gelu_pytorch_tanh";
    c["rope_theta"] = 50000.0;
    c["rope_local_base_freq"] = 100.0;
    c["rope_scaling"] = {{"rope_type", "linear"}, {"factor", 4.0}};
    c["query_pre_attn_scalar"] = 16;
    c["sliding_window"] = 7;
    c["sliding_window_pattern"] = 2;  // layers 0, 2 slide; layer 1 is global
    c["attn_logit_softcapping"] = nullptr;
    c["final_logit_softcapping"] = nullptr;
    RefSpec s = llama_family_spec(Arch::Gemma3);
    s.tied = true;
    s.scale = 0.25;
    s.rope = RefRope{.type = "linear", .theta = 50000.0, .factor = 4.0};
    s.rope_local = RefRope{.type = "default", .theta = 100.0};
    s.window = {7, 0, 7};
    expect_matches_reference(c, s);
}

TEST(ArchReference, Gemma3LayerTypesPerTypeRopeParameters) {
    json c = llama_family_base("gemma3_text", "Gemma3ForCausalLM");
    c["tie_word_embeddings"] = true;
    c["hidden_activation"] = "gelu_pytorch_tanh";
    c["rope_parameters"] = {
        {"full_attention", {{"rope_type", "linear"}, {"factor", 8.0}, {"rope_theta", 1000000.0}}},
        {"sliding_attention", {{"rope_type", "default"}, {"rope_theta", 10000.0}}}};
    c["query_pre_attn_scalar"] = 20;
    c["sliding_window"] = 6;
    c["layer_types"] = {"sliding_attention", "sliding_attention", "full_attention"};
    c["final_logit_softcapping"] = 7.0;
    RefSpec s = llama_family_spec(Arch::Gemma3);
    s.tied = true;
    s.scale = 1.0 / std::sqrt(20.0);
    s.final_softcap = 7.0;
    s.rope = RefRope{.type = "linear", .theta = 1000000.0, .factor = 8.0};
    s.rope_local = RefRope{.type = "default", .theta = 10000.0};
    s.window = {6, 6, 0};
    expect_matches_reference(c, s);
}

// --- Phi-3 ---

json phi3_config() {
    json c = llama_family_base("phi3", "Phi3ForCausalLM");
    c.erase("head_dim");  // Phi-3 derives it: 64 / 4
    c["hidden_size"] = 64;
    c["hidden_act"] = "silu";
    c["rms_norm_eps"] = 1e-5;
    c["sliding_window"] = 7;
    return c;
}

TEST(ArchReference, Phi3FusedPartialRotarySlidingWindow) {
    json c = phi3_config();
    c["rope_theta"] = 10000.0;
    c["partial_rotary_factor"] = 0.5;
    RefSpec s = llama_family_spec(Arch::Phi3);
    s.C = 64;
    s.eps = 1e-5;
    s.rope.partial = 0.5;
    s.window = {7, 7, 7};  // config.sliding_window applies to every layer
    expect_matches_reference(c, s);
}

TEST(ArchReference, Phi3RopeParametersNoWindow) {
    json c = phi3_config();
    c["sliding_window"] = nullptr;
    c["rope_parameters"] = {{"rope_type", "default"}, {"rope_theta", 2000.0}, {"partial_rotary_factor", 0.75}};
    RefSpec s = llama_family_spec(Arch::Phi3);
    s.C = 64;
    s.eps = 1e-5;
    s.rope = RefRope{.type = "default", .theta = 2000.0, .partial = 0.75};
    expect_matches_reference(c, s);
}

// --- OLMo-2 ---

TEST(ArchReference, Olmo2PostNormsFullWidthQKNorm) {
    json c = llama_family_base("olmo2", "Olmo2ForCausalLM");
    c.erase("head_dim");  // 48 / 4 = 12
    c["hidden_act"] = "silu";
    c["rms_norm_eps"] = 1e-6;
    c["rope_parameters"] = {{"rope_type", "default"}, {"rope_theta", 500000.0}};
    RefSpec s = llama_family_spec(Arch::Olmo2);
    s.D = 12;
    s.rope.theta = 500000.0;
    expect_matches_reference(c, s);
}

TEST(ArchReference, Olmo2ClassicTied) {
    json c = llama_family_base("olmo2", "Olmo2ForCausalLM");
    c["tie_word_embeddings"] = true;
    c["rope_theta"] = 1000.0;
    c["rms_norm_eps"] = 1e-5;
    RefSpec s = llama_family_spec(Arch::Olmo2);
    s.tied = true;
    s.eps = 1e-5;
    s.rope.theta = 1000.0;
    expect_matches_reference(c, s);
}

// --- Llama RoPE scaling types ---

TEST(ArchReference, LlamaLinearRopeScalingClassic) {
    json c = llama_family_base("llama", "LlamaForCausalLM");
    c["rope_theta"] = 10000.0;
    c["rope_scaling"] = {{"type", "linear"}, {"factor", 2.5}};
    RefSpec s = llama_family_spec(Arch::Llama);
    s.rope = RefRope{.type = "linear", .theta = 10000.0, .factor = 2.5};
    expect_matches_reference(c, s);
}

TEST(ArchReference, LlamaLlama3RopeParameters) {
    json c = llama_family_base("llama", "LlamaForCausalLM");
    // Wavelengths 2π·10000^(2i/16): i = 0 is high-frequency (kept), i = 1, 2 are smoothed,
    // i >= 3 are divided by the factor.
    c["rope_parameters"] = {{"rope_type", "llama3"},       {"rope_theta", 10000.0},
                            {"factor", 8.0},               {"low_freq_factor", 1.0},
                            {"high_freq_factor", 4.0},     {"original_max_position_embeddings", 80}};
    RefSpec s = llama_family_spec(Arch::Llama);
    s.rope = RefRope{.type = "llama3", .theta = 10000.0, .factor = 8.0, .original_max = 80};
    expect_matches_reference(c, s);
}

TEST(ArchReference, LlamaYarnFactorMatchesContextRatio) {
    json c = llama_family_base("llama", "LlamaForCausalLM");
    c["max_position_embeddings"] = 128;
    c["rope_parameters"] = {{"rope_type", "yarn"}, {"rope_theta", 10000.0}, {"factor", 4.0},
                            {"original_max_position_embeddings", 32}};
    RefSpec s = llama_family_spec(Arch::Llama);
    s.P = 128;
    s.rope = RefRope{.type = "yarn", .theta = 10000.0, .factor = 4.0, .original_max = 32};
    expect_matches_reference(c, s);
}

// Qwen2.5-style YaRN block: factor 4 with original_max_position_embeddings equal to
// max_position_embeddings. transformers 5 uses the explicit factor (it only warns about the
// mismatch), for the frequencies and for the default attention factor 0.1·ln(4) + 1.
TEST(ArchReference, LlamaYarnExplicitFactorWinsOverContextRatio) {
    json c = llama_family_base("llama", "LlamaForCausalLM");
    c["rope_theta"] = 10000.0;
    c["rope_scaling"] = {{"type", "yarn"}, {"factor", 4.0}, {"original_max_position_embeddings", 64}};
    RefSpec s = llama_family_spec(Arch::Llama);
    s.rope = RefRope{.type = "yarn", .theta = 10000.0, .factor = 4.0, .original_max = 64};
    expect_matches_reference(c, s);
}

// The same block with an explicit attention_factor: the frequencies alone (the ramp over the
// correction range of original_max_position_embeddings) must agree.
TEST(ArchReference, LlamaYarnExplicitAttentionFactor) {
    json c = llama_family_base("llama", "LlamaForCausalLM");
    c["rope_parameters"] = {{"rope_type", "yarn"}, {"rope_theta", 10000.0}, {"factor", 4.0},
                            {"original_max_position_embeddings", 64}, {"attention_factor", 1.25},
                            {"beta_fast", 16.0}, {"beta_slow", 2.0}};
    RefSpec s = llama_family_spec(Arch::Llama);
    s.rope = RefRope{.type = "yarn", .theta = 10000.0, .factor = 4.0, .original_max = 64,
                     .beta_fast = 16.0, .beta_slow = 2.0, .attention_factor = 1.25};
    expect_matches_reference(c, s);
}

// Dynamic NTK only changes anything past max_position_embeddings; `attnlab run` and
// `generate` refuse such lengths, so this case drives the library directly.
TEST(ArchReference, LlamaDynamicNtkBeyondMaxPositions) {
    json c = llama_family_base("llama", "LlamaForCausalLM");
    c["max_position_embeddings"] = 24;
    c["rope_theta"] = 10000.0;
    c["rope_scaling"] = {{"type", "dynamic"}, {"factor", 3.0}};
    RefSpec s = llama_family_spec(Arch::Llama);
    s.P = 24;
    s.rope = RefRope{.type = "dynamic", .theta = 10000.0, .factor = 3.0};

    TempDir dir;
    const fs::path model_dir = make_model(dir, c);
    RefModel ref(s, model_dir / "model.safetensors");
    auto model = Model::load(model_dir.string());

    // One pass over 37 > 24 tokens: every row, frequencies for length 37.
    const std::vector<int32_t> ids = token_ids(37, s.V, 5);
    KVCache kv = model->new_cache();
    ForwardOptions options;
    options.all_logits = true;
    Tensor logits = model->forward(ids, kv, options);
    RefCache cache;
    RefOutput want = ref.forward(ids, cache);
    EXPECT_LE(relative_error(logits.to_floats(), want.logits), 1e-4);

    // Also within the context (13 tokens): the plain frequencies.
    const std::vector<int32_t> short_ids = token_ids(13, s.V, 6);
    KVCache kv_short = model->new_cache();
    Tensor short_logits = model->forward(short_ids, kv_short, options);
    RefCache short_cache;
    EXPECT_LE(relative_error(short_logits.to_floats(), ref.forward(short_ids, short_cache).logits), 1e-4);

    // Greedy decode from 13 tokens to 35: the frequencies change at every step past 24, while
    // cached keys keep the rotation of their time (as in transformers' generate()).
    const std::vector<int32_t> prompt = token_ids(13, s.V, 7);
    double margin = 0;
    const std::vector<int32_t> want_ids = ref.greedy(prompt, 22, &margin);
    KVCache kv_gen = model->new_cache();
    std::vector<int32_t> got_ids;
    Tensor step = model->forward(prompt, kv_gen);
    for (int i = 0; i < 22; ++i) {
        std::vector<float> row = step.to_floats();
        const int32_t next = static_cast<int32_t>(std::max_element(row.begin(), row.end()) - row.begin());
        got_ids.push_back(next);
        const int32_t one[1] = {next};
        step = model->forward(one, kv_gen);
    }
    EXPECT_EQ(got_ids, want_ids) << "smallest top-2 gap in the reference: " << margin;
}

// --- GPT-2 ---

TEST(ArchReference, Gpt2ScaleAttnByInverseLayerIdx) {
    json c = {{"model_type", "gpt2"},
              {"architectures", {"GPT2LMHeadModel"}},
              {"vocab_size", 97},
              {"n_embd", 48},
              {"n_layer", 3},
              {"n_head", 4},
              {"n_positions", 64},
              {"layer_norm_epsilon", 1e-5},
              {"activation_function", "gelu_new"},
              {"scale_attn_by_inverse_layer_idx", true}};
    RefSpec s;
    s.arch = Arch::Gpt2;
    s.V = 97, s.C = 48, s.I = 192, s.L = 3, s.H = 4, s.Hkv = 4, s.D = 12, s.P = 64;
    s.eps = 1e-5;
    s.tied = true;
    s.window.assign(3, 0);
    s.inverse_layer_scale = true;
    expect_matches_reference(c, s);
}

// --- Fields left out: transformers falls back to the config class defaults ---
// (Gemma2Config: query_pre_attn_scalar 256, attn/final soft-caps 50/30; Gemma3TextConfig:
// query_pre_attn_scalar 256, rope_theta 1e6, rope_local_base_freq 1e4; Phi3Config and
// Olmo2Config: rms_norm_eps 1e-5.) Hub configs normally spell these out; hand-written ones may not.

TEST(ArchReferenceDefaults, Gemma2OmittedScalarAndSoftcaps) {
    json c = llama_family_base("gemma2", "Gemma2ForCausalLM");
    c["tie_word_embeddings"] = true;
    c["hidden_activation"] = "gelu_pytorch_tanh";
    c["sliding_window"] = 6;
    RefSpec s = llama_family_spec(Arch::Gemma2);
    s.tied = true;
    s.scale = 1.0 / 16.0;  // 256^-1/2
    s.attn_softcap = 50.0;
    s.final_softcap = 30.0;
    s.window = {6, 0, 6};
    expect_matches_reference(c, s, {13}, 0);
}

TEST(ArchReferenceDefaults, Gemma3OmittedScalarAndRopeBases) {
    json c = llama_family_base("gemma3_text", "Gemma3ForCausalLM");
    c["tie_word_embeddings"] = true;
    c["hidden_activation"] = "gelu_pytorch_tanh";
    c["sliding_window"] = 6;
    c["sliding_window_pattern"] = 2;
    RefSpec s = llama_family_spec(Arch::Gemma3);
    s.tied = true;
    s.scale = 1.0 / 16.0;
    s.rope = RefRope{.type = "default", .theta = 1000000.0};
    s.rope_local = RefRope{.type = "default", .theta = 10000.0};
    s.window = {6, 0, 6};
    expect_matches_reference(c, s, {13}, 0);
}

TEST(ArchReferenceDefaults, Phi3AndOlmo2OmittedRmsNormEps) {
    for (const char* type : {"phi3", "olmo2"}) {
        SCOPED_TRACE(type);
        const bool phi3 = std::string(type) == "phi3";
        json c = phi3 ? phi3_config() : llama_family_base("olmo2", "Olmo2ForCausalLM");
        c.erase("rms_norm_eps");
        RefSpec s = llama_family_spec(phi3 ? Arch::Phi3 : Arch::Olmo2);
        if (phi3) {
            s.C = 64;
            s.window = {7, 7, 7};
        }
        s.eps = 1e-5;
        // Small weights (std 0.01) bring mean squares near eps, where 1e-5 and 1e-6 differ.
        expect_matches_reference(c, s, {13}, 0, 0.01);
    }
}

// ---------------------------------------------------------------------------------------------
// Bad configs and checkpoints: one "attnlab: error:" line naming the problem.

void expect_one_error_line(const CommandResult& r, const std::string& must_contain) {
    EXPECT_NE(r.exit_code, 0);
    EXPECT_EQ(r.err.rfind("attnlab: error:", 0), 0u) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    EXPECT_NE(r.err.find(must_contain), std::string::npos) << "expected '" << must_contain << "' in: " << r.err;
}

// make-model on the config, and inspect on a directory holding only that config.json.
void expect_config_rejected(const json& config, const std::string& must_contain) {
    TempDir dir;
    const fs::path config_path = dir / "config.json";
    write_file(config_path, config.dump(2));
    CommandResult made = run_cli({"make-model", "--config", config_path.string(), "--out", (dir / "m").string(),
                                  "--dtype", "f32"});
    SCOPED_TRACE("make-model");
    expect_one_error_line(made, must_contain);
    CommandResult inspected = run_cli({"inspect", "-m", dir.path().string()});
    SCOPED_TRACE("inspect");
    expect_one_error_line(inspected, must_contain);
}

TEST(ArchReferenceErrors, UnknownModelType) {
    json c = llama_family_base("gemma7", "Gemma7ForCausalLM");
    expect_config_rejected(c, "gemma7");
}

TEST(ArchReferenceErrors, MissingRequiredField) {
    json c = llama_family_base("gemma2", "Gemma2ForCausalLM");
    c.erase("intermediate_size");
    expect_config_rejected(c, "intermediate_size");
    json p = phi3_config();
    p.erase("num_hidden_layers");
    expect_config_rejected(p, "num_hidden_layers");
}

TEST(ArchReferenceErrors, HeadsNotAMultipleOfKvHeads) {
    json c = llama_family_base("olmo2", "Olmo2ForCausalLM");
    c["num_attention_heads"] = 6;
    c["num_key_value_heads"] = 4;
    expect_config_rejected(c, "num_key_value_heads");
}

TEST(ArchReferenceErrors, LongRopeNotSupported) {
    json c = phi3_config();
    c["original_max_position_embeddings"] = 32;
    c["rope_scaling"] = {{"type", "longrope"},
                         {"short_factor", std::vector<double>(8, 1.0)},
                         {"long_factor", std::vector<double>(8, 2.0)}};
    expect_config_rejected(c, "longrope");
}

// Rewrites the checkpoint of `model_dir` into `out_dir` with one tensor dropped or replaced.
void rewrite_checkpoint(const fs::path& model_dir, const fs::path& out_dir, const std::string& name,
                        std::optional<Tensor> replacement) {
    fs::create_directories(out_dir);
    fs::copy_file(model_dir / "config.json", out_dir / "config.json");
    SafetensorsFile file = load_safetensors((model_dir / "model.safetensors").string());
    ASSERT_TRUE(file.tensors.count(name)) << name;
    std::vector<std::pair<std::string, Tensor>> tensors;
    for (const auto& [n, t] : file.tensors) {
        if (n != name) tensors.emplace_back(n, t);
        else if (replacement) tensors.emplace_back(n, *replacement);
    }
    save_safetensors((out_dir / "model.safetensors").string(), tensors);
}

TEST(ArchReferenceErrors, MissingOrMisshapenTensorIsNamed) {
    struct Case {
        json config;
        std::string tensor;
        Shape wrong_shape;
    };
    json gemma3 = llama_family_base("gemma3_text", "Gemma3ForCausalLM");
    json phi3 = phi3_config();
    json olmo2 = llama_family_base("olmo2", "Olmo2ForCausalLM");
    const std::vector<Case> cases = {
        {gemma3, "model.layers.1.self_attn.k_norm.weight", {12}},
        {gemma3, "model.layers.2.pre_feedforward_layernorm.weight", {47}},
        {phi3, "model.layers.1.self_attn.qkv_proj.weight", {120, 64}},  // right: (64 + 2·32, 64)
        {phi3, "model.layers.0.mlp.gate_up_proj.weight", {80, 64}},
        {olmo2, "model.layers.2.self_attn.q_norm.weight", {16}},
        {olmo2, "lm_head.weight", {101, 47}},
    };
    for (const Case& c : cases) {
        SCOPED_TRACE(c.tensor);
        TempDir dir;
        const fs::path model_dir = make_model(dir, c.config);
        const std::vector<int32_t> ids = {1, 2, 3};
        for (bool remove : {true, false}) {
            SCOPED_TRACE(remove ? "removed" : "wrong shape");
            const fs::path bad = dir / (remove ? "removed" : "reshaped");
            std::optional<Tensor> replacement;
            if (!remove) replacement = Tensor::full(c.wrong_shape, 0.5);
            rewrite_checkpoint(model_dir, bad, c.tensor, replacement);
            CommandResult r = run_cli({"run", "-m", bad.string(), "--ids", join_ids(ids), "--save",
                                       (dir / "out.safetensors").string()});
            expect_one_error_line(r, c.tensor);
        }
    }
}

}  // namespace
}  // namespace attnlab::test
