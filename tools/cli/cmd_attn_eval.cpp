// attnlab attn-eval: the attention operator on tensors from a safetensors file — for checking
// attnlab against another implementation, or trying a spec on captured q/k/v.
#include "cli_common.h"

#include <attnlab/attention.h>
#include <attnlab/safetensors.h>
#include <attnlab/threads.h>

namespace attnlab::cli {

namespace {

// The grammar and every registered mechanism, for --help.
std::string spec_help() {
    std::string text =
        "Spec grammar: spec := mech ('+' mech)*, mech := name | name(key=value, ...).\n"
        "i = query position, j = key position. s = scale*q.k (scale 1/sqrt(D) unless --scale);\n"
        "score modifiers apply in the order written, masks are ANDed, then the normalizer\n"
        "(softmax unless sigmoid/relu is named). Rows with no kept key give out = 0, lse = -inf.\n"
        "Mechanisms (parameters: name=meaning, or name=meaning=default):\n";
    for (const MechanismInfo& info : mechanism_registry())
        text += fmt::format("  {:<14} {:<32} {}\n", info.name, info.params.empty() ? "-" : info.params, info.meaning);
    return text;
}

// The named tensor as contiguous f32 (or the given integer dtype), checked against a shape.
Tensor require(const SafetensorsFile& f, const std::string& name, size_t dims, DType dtype) {
    auto it = f.tensors.find(name);
    ATTNLAB_CHECK(it != f.tensors.end(), InvalidArgument, "[attn-eval] {} has no tensor '{}'", f.path, name);
    const Tensor& t = it->second;
    ATTNLAB_CHECK(static_cast<size_t>(t.dim()) == dims, InvalidArgument, "[attn-eval] '{}' must be {}-D, got shape {}",
                  name, dims, t.shape_string());
    ATTNLAB_CHECK(t.dtype() == dtype || (dtype == DType::F32 && (t.dtype() == DType::BF16 || t.dtype() == DType::F16)),
                  InvalidArgument, "[attn-eval] '{}' must be {}, got {}", name, dtype_name(dtype), dtype_name(t.dtype()));
    return t.to(dtype);
}

}  // namespace

Command add_attn_eval(CLI::App& root) {
    struct Options {
        std::string inputs, spec, out;
        double scale = 0.0;
        bool reference = false, pattern = false;
        int threads = 0;
    };
    auto o = std::make_shared<Options>();
    CLI::App* app = root.add_subcommand("attn-eval", "Run an attention spec on q/k/v from a safetensors file");
    app->footer(spec_help());
    app->add_option("--inputs", o->inputs,
                    "q (B,T,H,D), k (B,S,Hkv,D), v (B,S,Hkv,Dv) f32; optional q_pos (T) i64, segments (S) i32, "
                    "sinks (H) f32")
        ->required();
    app->add_option("--spec", o->spec, "Attention spec, e.g. \"causal+window(size=128)\"")->required();
    app->add_option("--out", o->out, "Output safetensors: out (B,T,H,Dv) f32, lse (B,T,H) f32")->required();
    app->add_option("--scale", o->scale, "Score scale (default 1/sqrt(D))")->check(CLI::PositiveNumber);
    app->add_flag("--reference", o->reference, "Use the float64 reference instead of the tiled kernel");
    app->add_flag("--pattern", o->pattern, "Also write pattern (B,H,T,S) f32 (T x S memory)");
    app->add_option("-t,--threads", o->threads, "Threads (default: all cores)")->check(CLI::NonNegativeNumber);
    return {app, [o] {
        set_num_threads(o->threads);
        AttentionSpec spec = AttentionSpec::parse(o->spec);
        spec.scale = o->scale;
        const SafetensorsFile f = load_safetensors(o->inputs);
        const Tensor q = require(f, "q", 4, DType::F32), k = require(f, "k", 4, DType::F32),
                     v = require(f, "v", 4, DType::F32);
        const int64_t B = q.size(0), T = q.size(1), H = q.size(2), D = q.size(3);
        const int64_t S = k.size(1), Hkv = k.size(2), Dv = v.size(3);
        ATTNLAB_CHECK(k.size(0) == B && k.size(3) == D, InvalidArgument,
                      "[attn-eval] k {} does not match q {}: expected (B={}, S, Hkv, D={})", k.shape_string(),
                      q.shape_string(), B, D);
        ATTNLAB_CHECK(v.size(0) == B && v.size(1) == S && v.size(2) == Hkv, InvalidArgument,
                      "[attn-eval] v {} does not match k {}: expected (B, S, Hkv, Dv)", v.shape_string(), k.shape_string());
        ATTNLAB_CHECK(H % Hkv == 0, InvalidArgument, "[attn-eval] q heads ({}) must be a multiple of k/v heads ({})", H,
                      Hkv);
        AttentionInputs in = AttentionInputs::contiguous(DType::F32, q.raw(), k.raw(), v.raw(), B, T, S, H, Hkv, D, Dv);
        ATTNLAB_CHECK(T <= S || f.tensors.count("q_pos"), InvalidArgument,
                      "[attn-eval] T ({}) > S ({}): give q_pos for queries that are not the last T keys", T, S);
        Tensor q_pos, segments, sinks;
        if (f.tensors.count("q_pos")) {
            q_pos = require(f, "q_pos", 1, DType::I64);
            ATTNLAB_CHECK(q_pos.size(0) == T, InvalidArgument, "[attn-eval] q_pos has {} entries, q has T = {}",
                          q_pos.size(0), T);
            in.q_pos = q_pos.data<int64_t>();
        }
        if (f.tensors.count("segments")) {
            segments = require(f, "segments", 1, DType::I32);
            ATTNLAB_CHECK(segments.size(0) == S, InvalidArgument, "[attn-eval] segments has {} entries, k has S = {}",
                          segments.size(0), S);
            in.segments = segments.data<int32_t>();
        }
        if (f.tensors.count("sinks")) {
            sinks = require(f, "sinks", 1, DType::F32);
            ATTNLAB_CHECK(sinks.size(0) == H, InvalidArgument, "[attn-eval] sinks has {} entries, q has H = {}",
                          sinks.size(0), H);
            in.sinks = sinks.data<float>();
        }
        Tensor out = Tensor::zeros({B, T, H, Dv}), lse = Tensor::zeros({B, T, H}), pattern;
        AttentionOutputs outs = AttentionOutputs::contiguous(out.data<float>(), lse.data<float>(), T, H, Dv);
        if (o->pattern) {
            pattern = Tensor::zeros({B, H, T, S});
            outs.pattern = pattern.data<float>();
        }
        if (o->reference) attention_reference(spec, in, outs);
        else attention(spec, in, outs);
        std::vector<std::pair<std::string, Tensor>> tensors = {{"out", out}, {"lse", lse}};
        if (o->pattern) tensors.emplace_back("pattern", pattern);
        save_safetensors(o->out, tensors, {{"spec", spec.text()}});
        return 0;
    }};
}

}  // namespace attnlab::cli
