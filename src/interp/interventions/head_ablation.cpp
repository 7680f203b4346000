// ablate: head ablation, the knock-out experiments of papers-analysis §5 and §6, per head:
//   zero     z_h = 0: the head's slice of o_proj's input is zeroed (its output removed from the
//            residual stream; the fixtures' `zero_output`). Pattern rows become 0 (A := 0).
//   mean     z_h = the mean of z_h over every position of a reference run ("reference": a
//            prompt, or "reference_input": a safetensors file of input_ids (N, T)).
//   uniform  the head's query is 0 (at hook_q), so it attends uniformly to whatever its mask
//            keeps visible — the retrieval-head paper's masking, the fixtures'
//            `uniform_attention`. The pattern follows by itself.
//   bos      A := one-hot on position 0 (Guo et al.'s MoveAttentionToBOS): z_h = v_0 of the
//            head's kv head.
//   scale    z_h *= factor (VHR-style head scaling; factor 1 is the identity).
#include "interp/interventions/intervention_util.h"

#include <attnlab/probes.h>

#include <algorithm>
#include <cstring>

namespace attnlab::intervention_util {

namespace {

enum class Mode { Zero, Mean, Uniform, Bos, Scale };

class HeadAblation final : public Intervention {
public:
    HeadAblation(Mode mode, std::string mode_name, std::vector<HeadRef> heads, double factor, const ModelConfig& c)
        : mode_(mode), mode_name_(std::move(mode_name)), heads_(std::move(heads)), factor_(factor),
          by_layer_(heads_by_layer(heads_)), group_(c.n_head / c.n_head_kv),
          zero_query_(heads_, c.n_layer, c.n_head, "ablate") {}

    std::string describe() const override {
        std::string text = fmt::format("ablate {} {}", mode_name_, heads_text(heads_));
        if (mode_ == Mode::Scale) text += fmt::format(" factor {}", factor_);
        return text;
    }

    // Mean mode: z means (H, D) per layer, from the reference run.
    void set_means(std::map<int64_t, std::vector<float>> means) { means_ = std::move(means); }

    // uniform: the query of each head is zeroed at hook_q (head_mask.h).
    bool wants(const std::string& name) const override { return mode_ == Mode::Uniform && zero_query_.wants(name); }
    void on(const std::string& name, Tensor& q) override { zero_query_.on(name, q); }

    bool edits_attention(int64_t layer) const override { return mode_ != Mode::Uniform && by_layer_.count(layer); }
    void edit_attention(AttentionEditContext& ctx) override {
        const int64_t T = ctx.T, H = ctx.H, D = ctx.D, S = ctx.S;
        for (int64_t h : by_layer_.at(ctx.layer)) {
            const float* v0 = ctx.v + (h / group_) * D;  // v of position 0, kv head of h
            const float* mean = mode_ == Mode::Mean ? means_.at(ctx.layer).data() + h * D : nullptr;
            for (int64_t t = 0; t < T; ++t) {
                float* z = ctx.z + (t * H + h) * D;  // (D)
                switch (mode_) {
                    case Mode::Zero: std::fill_n(z, D, 0.0f); break;
                    case Mode::Mean: std::copy_n(mean, D, z); break;
                    case Mode::Bos: std::copy_n(v0, D, z); break;
                    case Mode::Scale:
                        for (int64_t d = 0; d < D; ++d) z[d] *= static_cast<float>(factor_);
                        break;
                    case Mode::Uniform: break;
                }
                if (!ctx.pattern) continue;
                float* row = ctx.pattern + (h * T + t) * S;  // (S)
                if (mode_ == Mode::Zero) std::fill_n(row, S, 0.0f);
                if (mode_ == Mode::Bos) {
                    std::fill_n(row, S, 0.0f);
                    row[0] = 1.0f;
                }
            }
        }
    }

private:
    Mode mode_;
    std::string mode_name_;
    std::vector<HeadRef> heads_;
    double factor_;
    std::map<int64_t, std::vector<int64_t>> by_layer_;
    int64_t group_;                            // query heads per kv head
    std::map<int64_t, std::vector<float>> means_;
    QueryZeroHook zero_query_;
};

// Mean z (H, D) per target layer over every position of the reference sequences.
std::map<int64_t, std::vector<float>> reference_means(const Model& model, const std::vector<std::vector<int32_t>>& seqs,
                                                      const std::map<int64_t, std::vector<int64_t>>& layers,
                                                      const std::string& where) {
    const ModelConfig& c = model.config();
    const int64_t HD = c.n_head * c.head_dim;
    std::vector<std::string> names;
    for (const auto& [layer, heads] : layers) names.push_back(fmt::format("blocks.{}.attn.hook_z", layer));
    std::map<int64_t, std::vector<double>> sums;
    int64_t rows = 0;
    for (const std::vector<int32_t>& ids : seqs) {
        ATTNLAB_CHECK(!ids.empty(), InvalidArgument, "[{}] an empty reference sequence", where);
        ActivationCache cache(names);
        KVCache kv = model.new_cache();
        ForwardOptions options;
        options.hooks = &cache;
        model.forward(ids, kv, options);
        for (const auto& [layer, heads] : layers) {
            const Tensor& z = cache.at(fmt::format("blocks.{}.attn.hook_z", layer));  // (T, H, D)
            std::vector<double>& sum = sums[layer];
            sum.resize(static_cast<size_t>(HD), 0.0);
            const float* data = z.data<float>();
            for (int64_t t = 0; t < z.size(0); ++t)
                for (int64_t k = 0; k < HD; ++k) sum[k] += data[t * HD + k];
        }
        rows += static_cast<int64_t>(ids.size());
    }
    std::map<int64_t, std::vector<float>> means;
    for (const auto& [layer, sum] : sums) {
        std::vector<float>& m = means[layer];
        for (double s : sum) m.push_back(static_cast<float>(s / double(rows)));
    }
    return means;
}

}  // namespace

std::unique_ptr<Intervention> make_head_ablation(const Fields& f) {
    const std::string mode_name = f.string("mode");
    static const std::map<std::string, Mode> modes = {
        {"zero", Mode::Zero}, {"mean", Mode::Mean}, {"uniform", Mode::Uniform}, {"bos", Mode::Bos}, {"scale", Mode::Scale}};
    const auto it = modes.find(mode_name);
    ATTNLAB_CHECK(it != modes.end(), InvalidArgument, "[{}] unknown mode '{}' (zero, mean, uniform, bos, scale)", f.where(),
                  mode_name);
    const Mode mode = it->second;
    if (mode == Mode::Scale) f.only({"mode", "heads", "factor"});
    else if (mode == Mode::Mean) f.only({"mode", "heads", "reference", "reference_input"});
    else f.only({"mode", "heads"});
    const double factor = mode == Mode::Scale ? f.number("factor") : 1.0;
    auto ablation = std::make_unique<HeadAblation>(mode, mode_name, f.heads(), factor, f.model().config());
    if (mode == Mode::Mean) {
        std::vector<std::vector<int32_t>> seqs;
        if (f.has("reference_input")) {
            seqs = load_input_ids(f.string("reference_input"));
        } else {
            ATTNLAB_CHECK(f.has("reference"), InvalidArgument,
                          "[{}] mode mean needs \"reference\" (a prompt) or \"reference_input\" (input_ids file)", f.where());
            const Tokenizer* tok = f.model().tokenizer();
            ATTNLAB_CHECK(tok != nullptr, InvalidArgument,
                          "[{}] \"reference\" is a prompt but the model has no tokenizer: use \"reference_input\"", f.where());
            seqs.push_back(tok->encode(f.string("reference"), true));
        }
        ablation->set_means(reference_means(f.model(), seqs, heads_by_layer(f.heads()), f.where()));
    }
    return ablation;
}

}  // namespace attnlab::intervention_util
