// The decoder forward pass shared by every architecture: embeddings, L blocks of
// (attention, MLP) with the norms/biases/windows the config names, final norm, logits.
//
// Activations are f32 (T, ...) buffers for one sequence; weights stay in their stored dtype.
// Every intermediate is offered to the hooks under its TransformerLens name; the expensive
// points (scores, pattern, per-head results) are computed only when a hook wants them.
#include "kernels/cpu/elementwise.h"
#include "kernels/cpu/matmul.h"
#include "model/architecture.h"
#include "model/rope.h"

#include <attnlab/attention.h>
#include <attnlab/error.h>
#include <attnlab/half.h>
#include <attnlab/hooks.h>
#include <attnlab/threads.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <optional>

namespace attnlab {

namespace {

// Offers hook points of one forward pass; names are built only when hooks are attached.
class HookSite {
public:
    explicit HookSite(Hooks* hooks) : hooks_(hooks) {}
    bool active() const { return hooks_ != nullptr; }
    bool wants(const std::string& name) const { return hooks_ && hooks_->wants(name); }

    // Shows `data` as a tensor of `shape`; a hook may edit it in place or replace it.
    void offer(const std::string& name, float* data, Shape shape) {
        if (!wants(name)) return;
        Tensor view = Tensor::wrap(data, DType::F32, shape);
        Tensor seen = view;
        hooks_->on(name, seen);
        if (seen.defined() && seen.raw() != view.raw()) {
            ATTNLAB_CHECK(seen.shape() == view.shape(), InvalidArgument,
                          "[hooks] {} was replaced by a tensor of shape {}, expected {}", name,
                          seen.shape_string(), view.shape_string());
            view.copy_from(seen);
        }
    }
    void offer_layer(int64_t layer, const char* suffix, float* data, Shape shape) {
        if (!hooks_) return;
        offer(fmt::format("blocks.{}.{}", layer, suffix), data, std::move(shape));
    }
    bool wants_layer(int64_t layer, const char* suffix) const {
        return hooks_ && hooks_->wants(fmt::format("blocks.{}.{}", layer, suffix));
    }

private:
    Hooks* hooks_;
};

// Buffers for the statistics a hook asked of one layer, and the kernel's view of them.
void prepare_layer_stats(const AttentionStatsRequest& req, int64_t layer, int64_t T, int64_t S, int64_t H,
                         int64_t pos0, LayerAttentionStats& result, AttentionStats& stats) {
    result.layer = layer;
    result.T = T;
    result.S = S;
    result.H = H;
    result.pos0 = pos0;
    auto rows = [&](Tensor& t, bool wanted, int64_t per_row) -> float* {
        if (!wanted) return nullptr;
        t = per_row > 0 ? Tensor::zeros({T, H, per_row}) : Tensor::zeros({T, H});
        return t.data<float>();
    };
    stats.mass = rows(result.mass, req.mass, 0);
    stats.entropy = rows(result.entropy, req.entropy, 0);
    stats.sum_sq = rows(result.sum_sq, req.sum_sq, 0);
    stats.top_prob = rows(result.top_prob, req.top, 0);
    if (req.top) {
        result.top_key = Tensor::zeros({T, H}, DType::I64);
        stats.top_key = result.top_key.data<int64_t>();
    }
    stats.keys = req.keys;
    stats.offsets = req.offsets;
    stats.key_mass = rows(result.key_mass, !req.keys.empty(), static_cast<int64_t>(req.keys.size()));
    stats.offset_mass = rows(result.offset_mass, !req.offsets.empty(), static_cast<int64_t>(req.offsets.size()));
    if (req.n_segments > 0) {
        ATTNLAB_CHECK(static_cast<int64_t>(req.segments.size()) >= S, InvalidArgument,
                      "[hooks] layer {} statistics: {} segment ids for {} key positions", layer, req.segments.size(), S);
        stats.segments = req.segments.data();
        stats.n_segments = req.n_segments;
        stats.segment_mass = rows(result.segment_mass, true, req.n_segments);
    }
    stats.n_distance_bins = req.n_distance_bins;
    stats.distance_mass = rows(result.distance_mass, req.n_distance_bins > 0, req.n_distance_bins);
    if (req.column_sum) {
        result.column_sum = Tensor::zeros({H, S});
        stats.column_sum = result.column_sum.data<float>();
    }
}

// y (T, N) = x (T, K) · Wᵀ + b, where `weight` is (N, K).
void project(const float* x, int64_t ldx, const Tensor& weight, const Tensor& bias, float* y,
             int64_t T) {
    cpu::linear(x, ldx, weight, bias.defined() ? bias.data<float>() : nullptr, y, weight.size(0), T);
}

void apply_norm(const ModelConfig& c, const NormWeights& w, const float* x, float* y, int64_t rows,
                int64_t n) {
    cpu::norm(c.norm_kind, x, n, w.weight.data<float>(),
              w.bias.defined() ? w.bias.data<float>() : nullptr, static_cast<float>(c.norm_eps), y,
              n, rows, n);
}

void gather_embeddings(const Tensor& table, std::span<const int32_t> ids, float* out, int64_t C) {
    for (size_t t = 0; t < ids.size(); ++t) {
        Tensor row = table.select(0, ids[t]);
        float* dst = out + static_cast<int64_t>(t) * C;
        switch (row.dtype()) {
            case DType::F32: std::memcpy(dst, row.raw(), C * 4); break;
            case DType::BF16:
                for (int64_t i = 0; i < C; ++i) dst[i] = bf16_to_f32(row.data<uint16_t>()[i]);
                break;
            case DType::F16:
                for (int64_t i = 0; i < C; ++i) dst[i] = f16_to_f32(row.data<uint16_t>()[i]);
                break;
            default:
                throw FormatError(fmt::format("[model] embedding dtype {} is not supported",
                                              dtype_name(row.dtype())));
        }
    }
}

// Grows every layer's K/V buffers to hold `needed` positions (amortised doubling).
void reserve_cache(std::vector<Tensor>& k, std::vector<Tensor>& v, int64_t& capacity, int64_t n_past,
                   int64_t needed, const ModelConfig& c) {
    if (needed <= capacity && !k.empty()) return;
    const int64_t new_capacity = std::max<int64_t>({needed, 2 * capacity, 64});
    const int64_t row = c.n_head_kv * c.head_dim;
    k.resize(c.n_layer);
    v.resize(c.n_layer);
    for (int64_t l = 0; l < c.n_layer; ++l) {
        for (Tensor* t : {&k[l], &v[l]}) {
            Tensor grown = Tensor::empty({new_capacity, c.n_head_kv, c.head_dim});
            if (t->defined() && n_past > 0)
                std::memcpy(grown.raw(), t->raw(), static_cast<size_t>(n_past * row) * 4);
            *t = grown;
        }
    }
    capacity = new_capacity;
}

// Token dropping before layer `layer`: removes rows `drop` (indices into the current rows,
// ascending, unique) from the residual stream x (R, C), their positions from row_pos and their
// rows from the RoPE tables (cos/sin (R, half) each), keeping the order of the rest.
void drop_rows(const std::vector<int64_t>& drop, int64_t layer, std::vector<int64_t>& row_pos, std::vector<float>& x,
               int64_t C, std::initializer_list<std::vector<float>*> tables, int64_t half_global, int64_t half_local) {
    const int64_t R = static_cast<int64_t>(row_pos.size());
    for (size_t k = 0; k < drop.size(); ++k)
        ATTNLAB_CHECK(drop[k] >= 0 && drop[k] < R && (k == 0 || drop[k] > drop[k - 1]), InvalidArgument,
                      "[hooks] layer {}: token drop list must be ascending row indices in [0, {})", layer, R);
    ATTNLAB_CHECK(drop.empty() || drop.back() != R - 1, InvalidArgument,
                  "[hooks] layer {}: the last token of a call cannot be dropped (its logits are the output)", layer);
    std::vector<bool> gone(static_cast<size_t>(R), false);
    for (int64_t r : drop) gone[r] = true;
    auto compact = [&](float* data, int64_t width) {  // rows of `width` floats
        int64_t out = 0;
        for (int64_t r = 0; r < R; ++r)
            if (!gone[r]) std::memmove(data + (out++) * width, data + r * width, static_cast<size_t>(width) * 4);
    };
    compact(x.data(), C);
    size_t i = 0;
    for (std::vector<float>* table : tables) {
        const int64_t half = i++ < 2 ? half_global : half_local;
        if (!table->empty() && half > 0) compact(table->data(), half);
    }
    int64_t out = 0;
    for (int64_t r = 0; r < R; ++r)
        if (!gone[r]) row_pos[out++] = row_pos[r];
    row_pos.resize(static_cast<size_t>(out));
}

}  // namespace

Tensor Model::forward(std::span<const int32_t> ids, KVCache& cache, const ForwardOptions& options) const {
    const ModelConfig& c = config_;
    const ModelWeights& w = *weights_;
    const int64_t T = static_cast<int64_t>(ids.size());
    const int64_t C = c.hidden_size, H = c.n_head, Hkv = c.n_head_kv, D = c.head_dim;
    const int64_t I = c.intermediate_size, V = c.vocab_size;
    ATTNLAB_CHECK(T > 0, InvalidArgument, "[forward] no tokens to run");
    for (int32_t id : ids)
        ATTNLAB_CHECK(id >= 0 && id < V, InvalidArgument,
                      "[forward] token id {} is out of range for vocabulary size {}", id, V);
    const int64_t pos0 = cache.n_past_, total = pos0 + T;
    if (c.learned_positions)
        ATTNLAB_CHECK(total <= c.max_position_embeddings, InvalidArgument,
                      "[forward] {} positions exceed the model's context of {} (learned positions)",
                      total, c.max_position_embeddings);
    reserve_cache(cache.k_, cache.v_, cache.capacity_, pos0, total, c);
    if (cache.layer_rows_.empty()) {
        cache.layer_rows_.assign(static_cast<size_t>(c.n_layer), -1);
        cache.row_positions_.resize(static_cast<size_t>(c.n_layer));
    }
    HookSite hooks(options.hooks);
    if (options.hooks) options.hooks->begin_forward(pos0, T);

    // Embeddings.
    std::vector<float> x(static_cast<size_t>(T * C));  // (T, C) residual stream
    gather_embeddings(w.embed, ids, x.data(), C);
    if (c.embedding_scale != 1.0) cpu::scale_inplace(x.data(), static_cast<float>(c.embedding_scale), T * C);
    hooks.offer("hook_embed", x.data(), {T, C});
    if (c.learned_positions) {
        std::vector<int32_t> positions(static_cast<size_t>(T));
        for (int64_t t = 0; t < T; ++t) positions[t] = static_cast<int32_t>(pos0 + t);
        std::vector<float> pos(static_cast<size_t>(T * C));  // (T, C)
        gather_embeddings(w.pos_embed, positions, pos.data(), C);
        hooks.offer("hook_pos_embed", pos.data(), {T, C});
        cpu::add_inplace(x.data(), pos.data(), T * C);
    }

    // RoPE tables for this call's positions (global layers, and local ones for Gemma-3):
    // the sequence positions or the caller's, then any hook's remapping (CCA); only RoPE sees
    // them — masks keep the sequence order.
    CallRope rope;
    const bool has_rope = !c.learned_positions;
    if (has_rope) {
        std::vector<int64_t> position_ids = call_position_ids(pos0, T, options.position_ids);
        if (options.hooks && options.hooks->remaps_positions()) {
            options.hooks->remap_positions(pos0, position_ids);
            ATTNLAB_CHECK(static_cast<int64_t>(position_ids.size()) == T, InvalidArgument,
                          "[hooks] a position remapping returned {} ids for {} tokens", position_ids.size(), T);
        }
        rope = call_rope(c, total, position_ids, cache.dynamic_rope_seq_len_);
    }

    // Segment ids of positions 0 .. total-1 for the kernel and the edit hooks.
    std::vector<int32_t> segment_ids;
    if (options.segments) segment_ids = options.segments->ids(total);
    const int32_t* segments = options.segments ? segment_ids.data() : nullptr;

    std::vector<float> h(static_cast<size_t>(T * C));       // (T, C) normalised input
    std::vector<float> q(static_cast<size_t>(T * H * D));   // (T, H, D)
    std::vector<float> kv(static_cast<size_t>(T * Hkv * D) * 2);  // k then v, (T, Hkv, D) each
    std::vector<float> z(static_cast<size_t>(T * H * D));   // (T, H, D) attention output per head
    std::vector<float> sub(static_cast<size_t>(T * C));     // (T, C) sublayer output
    std::vector<float> gate(static_cast<size_t>(T * I));    // (T, I)
    std::vector<float> up(c.gated_mlp ? static_cast<size_t>(T * I) : 0);  // (T, I)
    float* k_new = kv.data();
    float* v_new = kv.data() + T * Hkv * D;

    // Rows of the residual stream: the call's T tokens, fewer once a hook drops some (SGL /
    // FastV token dropping); row_pos holds each row's sequence position.
    int64_t R = T;
    std::vector<int64_t> row_pos(static_cast<size_t>(T));
    for (int64_t t = 0; t < T; ++t) row_pos[t] = pos0 + t;
    bool dropped = false;
    std::vector<bool> compacted_layers(static_cast<size_t>(c.n_layer), false);  // committed at the end
    const int64_t n_run = options.stop_at_layer >= 0 ? std::min(options.stop_at_layer, c.n_layer) : c.n_layer;
    for (int64_t l = 0; l < n_run; ++l) {
        const LayerWeights& L = w.layers[l];
        if (options.hooks && options.hooks->drops_tokens(l)) {
            drop_rows(options.hooks->drop_tokens(l, row_pos), l, row_pos, x, C,
                      {&rope.cos_global, &rope.sin_global, &rope.cos_local, &rope.sin_local}, rope.half_global(),
                      rope.half_local());
            R = static_cast<int64_t>(row_pos.size());
            dropped = true;
        }
        // This layer's cache rows: the positions it holds (compacted once tokens were dropped
        // before it, now or in an earlier call) and this call's rows after them.
        const bool compacted = dropped || cache.layer_rows_[l] >= 0;
        const int64_t rows_before = cache.layer_rows(l), keys = rows_before + R;
        if (compacted) {
            std::vector<int64_t>& held = cache.row_positions_[l];
            if (cache.layer_rows_[l] < 0) {  // first compaction of this layer: rows were positions
                held.resize(static_cast<size_t>(rows_before));
                for (int64_t p = 0; p < rows_before; ++p) held[p] = p;
            }
            held.resize(static_cast<size_t>(rows_before));  // (rows of a stop_at_layer run are stale)
            held.insert(held.end(), row_pos.begin(), row_pos.end());
            compacted_layers[l] = true;
        }
        std::vector<int32_t> compacted_segments;
        const int32_t* layer_segments = segments;
        if (compacted && options.segments) {
            const std::vector<int64_t>& held = cache.row_positions_[l];
            compacted_segments.resize(held.size());
            for (size_t r = 0; r < held.size(); ++r) compacted_segments[r] = segment_ids[held[r]];
            layer_segments = compacted_segments.data();
        }
        hooks.offer_layer(l, "hook_resid_pre", x.data(), {R, C});

        // --- attention ---
        const float* attn_in = x.data();
        if (c.pre_norms) {
            apply_norm(c, L.attn_norm, x.data(), h.data(), R, C);
            hooks.offer_layer(l, "ln1.hook_normalized", h.data(), {R, C});
            attn_in = h.data();
        }
        project(attn_in, C, L.wq, L.bq, q.data(), R);
        project(attn_in, C, L.wk, L.bk, k_new, R);
        project(attn_in, C, L.wv, L.bv, v_new, R);
        if (c.qk_norm == QKNorm::PerHead) {
            apply_norm(c, L.q_norm, q.data(), q.data(), R * H, D);
            apply_norm(c, L.k_norm, k_new, k_new, R * Hkv, D);
        } else if (c.qk_norm == QKNorm::FullWidth) {
            apply_norm(c, L.q_norm, q.data(), q.data(), R, H * D);
            apply_norm(c, L.k_norm, k_new, k_new, R, Hkv * D);
        }
        hooks.offer_layer(l, "attn.hook_q", q.data(), {R, H, D});
        hooks.offer_layer(l, "attn.hook_k", k_new, {R, Hkv, D});
        hooks.offer_layer(l, "attn.hook_v", v_new, {R, Hkv, D});
        const int64_t window = c.layer_window[l];
        if (has_rope) {
            const bool local = window > 0 && c.rope_local.has_value();
            const RopeFrequencies& f = local ? rope.local : rope.global;
            const float* cs = local ? rope.cos_local.data() : rope.cos_global.data();
            const float* sn = local ? rope.sin_local.data() : rope.sin_global.data();
            cpu::rope_rotate_half(q.data(), H * D, R, H, D, f.rot_dim, cs, sn);
            cpu::rope_rotate_half(k_new, Hkv * D, R, Hkv, D, f.rot_dim, cs, sn);
            hooks.offer_layer(l, "attn.hook_rot_q", q.data(), {R, H, D});
            hooks.offer_layer(l, "attn.hook_rot_k", k_new, {R, Hkv, D});
        }
        float* k_cache = cache.k_[l].data<float>();
        float* v_cache = cache.v_[l].data<float>();
        std::memcpy(k_cache + rows_before * Hkv * D, k_new, static_cast<size_t>(R * Hkv * D) * 4);
        std::memcpy(v_cache + rows_before * Hkv * D, v_new, static_cast<size_t>(R * Hkv * D) * 4);

        // q (R, H, D) at cache rows rows_before .. keys-1 over the cached keys and values (keys, Hkv, D).
        AttentionInputs in = AttentionInputs::contiguous(DType::F32, q.data(), k_cache, v_cache, 1, R, keys, H, Hkv, D, D);
        in.segments = layer_segments;
        AttentionOutputs out = AttentionOutputs::contiguous(z.data(), nullptr, R, H, D);
        const bool want_scores = hooks.wants_layer(l, "attn.hook_attn_scores");
        const bool want_pattern = hooks.wants_layer(l, "attn.hook_pattern");
        const bool edits = options.hooks && options.hooks->edits_attention(l);
        const bool want_lse = hooks.wants_layer(l, "attn.hook_lse") || edits;
        std::vector<float> scores, pattern, lse;
        if (want_scores) out.scores = (scores.resize(static_cast<size_t>(H * R * keys)), scores.data());
        if (want_pattern) out.pattern = (pattern.resize(static_cast<size_t>(H * R * keys)), pattern.data());
        if (want_lse) out.lse = (lse.resize(static_cast<size_t>(R * H)), lse.data());
        const std::optional<AttentionStatsRequest> stats_request =
            options.hooks ? options.hooks->attention_stats(l, keys) : std::nullopt;
        LayerAttentionStats layer_stats;
        AttentionStats stats;
        if (stats_request) {
            prepare_layer_stats(*stats_request, l, R, keys, H, rows_before, layer_stats, stats);
            out.stats = &stats;
        }
        // The specs the heads run in this pass: the plan, rewritten by hooks (pre-softmax edits).
        const std::vector<HeadRun>* runs = &layer_attention(l);
        std::vector<HeadRun> rewritten;
        std::vector<AttentionSpec> head_specs;
        if ((options.hooks && options.hooks->rewrites_attention(l)) || edits) {
            for (const HeadRun& run : *runs)
                for (int64_t head = run.head_begin; head < run.head_end; ++head) head_specs.push_back(run.spec);
        }
        if (options.hooks && options.hooks->rewrites_attention(l)) {
            options.hooks->rewrite_attention(l, head_specs);
            ATTNLAB_CHECK(static_cast<int64_t>(head_specs.size()) == H, InvalidArgument,
                          "[hooks] layer {}: an attention rewrite left {} head specs for {} heads", l, head_specs.size(), H);
            for (int64_t head = 0; head < H; ++head) {  // runs of consecutive heads with one spec
                if (head > 0 && head_specs[head].text() == rewritten.back().spec.text()) rewritten.back().head_end = head + 1;
                else rewritten.push_back({head, head + 1, head_specs[head]});
            }
            runs = &rewritten;
        }
        if (compacted)
            for (const HeadRun& run : *runs)
                for (const auto& m : run.spec.mechanisms)
                    ATTNLAB_CHECK(!m->uses_distance(), NotSupported,
                                  "[forward] layer {} runs '{}', which depends on distances between positions: after "
                                  "token dropping its keys are compacted, so only order-based specs are supported",
                                  l, m->text());
        for (const HeadRun& run : *runs) {  // one call per run of heads sharing a spec
            in.head_begin = run.head_begin;
            in.head_end = run.head_end;
            attention(run.spec, in, out);
        }
        if (stats_request) options.hooks->on_attention_stats(layer_stats);
        if (edits) {  // post-softmax edits, on the output (and the pattern when it exists)
            AttentionEditContext edit;
            edit.layer = l;
            edit.T = R;
            edit.S = keys;
            edit.H = H;
            edit.Hkv = Hkv;
            edit.D = D;
            edit.pos0 = rows_before;
            edit.q = q.data();
            edit.k = k_cache;
            edit.v = v_cache;
            edit.z = z.data();
            edit.lse = lse.data();
            edit.pattern = want_pattern ? pattern.data() : nullptr;
            edit.head_specs = &head_specs;
            edit.segments = layer_segments;
            edit.run = [&](const AttentionSpec& spec, int64_t h0, int64_t h1, const int32_t* key_segments, float* o,
                           float* o_lse) {
                AttentionInputs again = in;
                again.head_begin = h0;
                again.head_end = h1;
                again.segments = key_segments;
                AttentionOutputs again_out = AttentionOutputs::contiguous(o, o_lse, R, H, D);
                attention(spec, again, again_out);
            };
            options.hooks->edit_attention(edit);
        }
        if (want_scores) hooks.offer_layer(l, "attn.hook_attn_scores", scores.data(), {H, R, keys});
        if (want_pattern) hooks.offer_layer(l, "attn.hook_pattern", pattern.data(), {H, R, keys});
        if (want_lse) hooks.offer_layer(l, "attn.hook_lse", lse.data(), {R, H});
        hooks.offer_layer(l, "attn.hook_z", z.data(), {R, H, D});
        if (hooks.wants_layer(l, "attn.hook_result")) {
            // Per-head outputs: z_h (R, D) · W_O[:, h·D:(h+1)·D]ᵀ -> (R, H, C).
            std::vector<float> result(static_cast<size_t>(R * H * C));
            for (int64_t head = 0; head < H; ++head) {
                Tensor wo_h = L.wo.slice(1, head * D, (head + 1) * D);  // (C, D)
                cpu::linear(z.data() + head * D, H * D, wo_h, nullptr, result.data() + head * C,
                            H * C, R);
            }
            hooks.offer_layer(l, "attn.hook_result", result.data(), {R, H, C});
        }
        project(z.data(), H * D, L.wo, L.bo, sub.data(), R);
        if (c.post_norms) apply_norm(c, L.post_attn_norm, sub.data(), sub.data(), R, C);
        hooks.offer_layer(l, "hook_attn_out", sub.data(), {R, C});
        cpu::add_inplace(x.data(), sub.data(), R * C);
        hooks.offer_layer(l, "hook_resid_mid", x.data(), {R, C});

        // --- MLP ---
        const float* mlp_in = x.data();
        if (c.pre_norms) {
            apply_norm(c, L.mlp_norm, x.data(), h.data(), R, C);
            hooks.offer_layer(l, "ln2.hook_normalized", h.data(), {R, C});
            mlp_in = h.data();
        }
        if (c.gated_mlp) {
            project(mlp_in, C, L.w_gate, L.b_gate, gate.data(), R);
            project(mlp_in, C, L.w_up, L.b_up, up.data(), R);
            hooks.offer_layer(l, "mlp.hook_pre", gate.data(), {R, I});
            hooks.offer_layer(l, "mlp.hook_pre_linear", up.data(), {R, I});
            cpu::activate(c.activation, gate.data(), up.data(), R * I);
        } else {
            project(mlp_in, C, L.w_up, L.b_up, gate.data(), R);
            hooks.offer_layer(l, "mlp.hook_pre", gate.data(), {R, I});
            cpu::activate(c.activation, gate.data(), nullptr, R * I);
        }
        hooks.offer_layer(l, "mlp.hook_post", gate.data(), {R, I});
        project(gate.data(), I, L.w_down, L.b_down, sub.data(), R);
        if (c.post_norms) apply_norm(c, L.post_mlp_norm, sub.data(), sub.data(), R, C);
        hooks.offer_layer(l, "hook_mlp_out", sub.data(), {R, C});
        cpu::add_inplace(x.data(), sub.data(), R * C);
        hooks.offer_layer(l, "hook_resid_post", x.data(), {R, C});
    }
    if (n_run < c.n_layer) return Tensor();  // stopped early: no logits, the cache stays where it was
    cache.n_past_ = total;
    for (int64_t l = 0; l < c.n_layer; ++l)
        if (compacted_layers[l]) cache.layer_rows_[l] = static_cast<int64_t>(cache.row_positions_[l].size());

    // Final norm and logits: every row for `run`, only the last for generation.
    const bool final_hooks = hooks.wants("ln_final.hook_normalized") || hooks.wants("unembed.hook_out");
    const int64_t rows = (options.all_logits || final_hooks) ? R : 1;
    const float* last = x.data() + (R - rows) * C;
    std::vector<float> normed(static_cast<size_t>(rows * C));  // (rows, C)
    apply_norm(c, w.final_norm, last, normed.data(), rows, C);
    hooks.offer("ln_final.hook_normalized", normed.data(), {rows, C});
    Tensor logits = Tensor::empty({rows, V});  // (rows, V)
    cpu::linear(normed.data(), C, w.lm_head, nullptr, logits.data<float>(), V, rows);
    if (c.final_softcap > 0)
        cpu::softcap_inplace(logits.data<float>(), static_cast<float>(c.final_softcap), rows * V);
    hooks.offer("unembed.hook_out", logits.data<float>(), {rows, V});
    if (!options.all_logits && rows > 1) return logits.slice(0, rows - 1, rows).contiguous();
    return logits;
}

}  // namespace attnlab
