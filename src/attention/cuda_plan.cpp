// The host half of the GPU attention operator: validation, the mechanisms turned into plain
// data for the kernels, the choice between the tensor-core kernels and the general kernel, and
// the block map from the mechanisms' own visit(). Also the stand-ins for the CUDA entry points
// when attnlab is built without CUDA.
#include "attention/cuda_plan.h"

#include "attention/call.h"

#include <attnlab/cuda.h>
#include <attnlab/error.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <numeric>
#include <string_view>
#include <utility>

namespace attnlab::gpu {

namespace {

// "window(size=5)" -> name "window", {("size", 5)}: the canonical text every mechanism prints.
struct ParsedText {
    std::string name;
    std::vector<std::pair<std::string, double>> params;
    double get(const std::string& key) const {
        for (const auto& [k, v] : params)
            if (k == key) return v;
        throw Error(fmt::format("[cuda] internal: mechanism {} printed no '{}'", name, key));
    }
};

ParsedText parse_text(const std::string& text) {
    ParsedText p;
    const size_t open = text.find('(');
    p.name = text.substr(0, open);
    if (open == std::string::npos) return p;
    std::string_view rest(text);
    rest = rest.substr(open + 1, rest.size() - open - 2);  // drop "(" and ")"
    while (!rest.empty()) {
        const size_t comma = std::min(rest.find(','), rest.size());
        const std::string_view item = rest.substr(0, comma);
        const size_t eq = item.find('=');
        ATTNLAB_ASSERT(eq != std::string_view::npos);
        p.params.emplace_back(std::string(item.substr(0, eq)), std::strtod(std::string(item.substr(eq + 1)).c_str(), nullptr));
        rest = rest.substr(std::min(comma + 1, rest.size()));
    }
    return p;
}

int32_t to_i32(double v, const std::string& what) {
    ATTNLAB_CHECK(std::fabs(v) < 2147483647.0, NotSupported, "[cuda] {} = {} exceeds the GPU's 32-bit positions", what, v);
    return static_cast<int32_t>(v);
}

Mask mask_of(const std::string& text) {
    const ParsedText p = parse_text(text);
    Mask m;
    if (p.name == "segment") return {MaskKind::Segment, to_i32(p.get("id"), text)};
    if (p.name == "radial") {
        m = {MaskKind::Radial, to_i32(p.get("frame"), text), to_i32(p.get("block"), text)};
        m.real = p.get("decay");
        return m;
    }
    // The keep table is filled by radial_blocks_table(), which needs the call.
    if (p.name == "radial_blocks") return {MaskKind::RadialBlocks, to_i32(p.get("block"), text)};
    if (p.name == "causal") m.kind = MaskKind::Causal;
    else if (p.name == "window") m = {MaskKind::Window, to_i32(p.get("size"), text)};
    else if (p.name == "streaming") m = {MaskKind::Streaming, to_i32(p.get("sink"), text), to_i32(p.get("window"), text)};
    else if (p.name == "chunked") m = {MaskKind::Chunked, to_i32(p.get("size"), text)};
    else if (p.name == "prefix") m = {MaskKind::Prefix, to_i32(p.get("len"), text)};
    else if (p.name == "document") m.kind = MaskKind::Document;
    else if (p.name == "power")
        m = {MaskKind::Power, to_i32(p.get("block"), text), to_i32(p.get("window"), text), to_i32(p.get("sink"), text)};
    else
        throw NotSupported(fmt::format("[cuda] mechanism `{}` is not on the GPU yet (GPU: {})", text, supported_mechanisms()));
    return m;
}

Mod mod_of(const std::string& text) {
    const ParsedText p = parse_text(text);
    if (p.name == "alibi") return {ModKind::Alibi, 0.0f};
    if (p.name == "softcap") return {ModKind::Softcap, static_cast<float>(p.get("cap"))};
    if (p.name == "decay") return {ModKind::Decay, static_cast<float>(std::log(p.get("gamma")))};
    if (p.name == "temperature") return {ModKind::Temperature, static_cast<float>(1.0 / p.get("t"))};
    if (p.name == "boost") return {ModKind::Boost, static_cast<float>(p.get("alpha")), to_i32(p.get("segment"), text)};
    throw NotSupported(fmt::format("[cuda] mechanism `{}` is not on the GPU yet (GPU: {})", text, supported_mechanisms()));
}

bool aligned(const void* p, uintptr_t bytes) { return (reinterpret_cast<uintptr_t>(p) & (bytes - 1)) == 0; }

// What no GPU kernel runs, and layouts no kernel can read.
void check_call(const AttentionInputs& in, const AttentionOutputs& out) {
    ATTNLAB_CHECK(in.dtype == DType::F32 || in.dtype == DType::BF16 || in.dtype == DType::F16, InvalidArgument,
                  "[cuda] q, k, v must be f32, bf16 or f16, got {}", dtype_name(in.dtype));
    ATTNLAB_CHECK(!out.scores && !out.pattern, NotSupported,
                  "[cuda] the scores/pattern outputs are not on the GPU yet (use the CPU operator)");
    // out.stats: validated by the AttentionCall above (the CPU operator's errors); run on the GPU.
    const uintptr_t elem = uintptr_t(dtype_size(in.dtype));
    ATTNLAB_CHECK(aligned(in.q, elem) && aligned(in.k, elem) && aligned(in.v, elem) && aligned(out.out, 4) &&
                      aligned(out.lse, 4),
                  InvalidArgument, "[cuda] q, k, v, out and lse must be aligned to their element size");
    const int64_t limit = std::numeric_limits<int32_t>::max() / 2;
    ATTNLAB_CHECK(in.T < limit && in.S < limit && in.B * in.T * in.H < limit && in.B <= 65535, NotSupported,
                  "[cuda] B={} T={} S={} exceed the GPU's 32-bit indexing (or B > 65535)", in.B, in.T, in.S);
}

// The tensor-core kernels load q, k, v rows with 16-byte copies and write out in pairs.
bool tensor_core_layout(const AttentionInputs& in, const AttentionOutputs& out) {
    return in.q_stride % 8 == 0 && in.k_stride % 8 == 0 && in.v_stride % 8 == 0 &&
           (in.B == 1 || (in.q_batch_stride % 8 == 0 && in.k_batch_stride % 8 == 0 && in.v_batch_stride % 8 == 0)) &&
           aligned(in.q, 16) && aligned(in.k, 16) && aligned(in.v, 16) && out.out_stride % 2 == 0 &&
           (in.B == 1 || out.out_batch_stride % 2 == 0) && aligned(out.out, 8);
}

// The tensor-core kernels (prefill, decode) run bf16/f16, D = Dv ∈ {64, 128, 256}, softmax and
// the masks and modifiers they were written for; the general kernel runs everything else, and
// everything when the environment says ATTNLAB_CUDA_KERNEL=general (A/B runs).
bool tensor_core_kernels_run(const Spec& g, const AttentionInputs& in, const AttentionOutputs& out) {
    if (const char* choice = std::getenv("ATTNLAB_CUDA_KERNEL"); choice && std::string_view(choice) == "general") return false;
    const bool masks = std::all_of(g.masks, g.masks + g.n_masks, [](const Mask& m) {
        return m.kind != MaskKind::Segment && m.kind != MaskKind::Radial && m.kind != MaskKind::RadialBlocks;
    });
    const bool mods = std::all_of(g.mods, g.mods + g.n_mods, [](const Mod& m) { return m.kind != ModKind::Boost; });
    return (in.dtype == DType::BF16 || in.dtype == DType::F16) && in.D == in.Dv && (in.D == 64 || in.D == 128 || in.D == 256) &&
           g.normalizer == NormKind::Softmax && g.has_sinks <= 1 && masks && mods && tensor_core_layout(in, out);
}

// radial_blocks keeps whole (block × block) cells, each decided by a density count over the
// cell's token pairs. The kernels look the decision up per element in a table of the query
// cells the call's positions fall in × every key cell, filled here from the mechanism's own
// visit() of each single cell (which it computes once and caches).
void radial_blocks_table(const Mechanism& mech, Mask& mask, const detail::AttentionCall& call, int64_t S,
                         std::vector<uint8_t>& tables) {
    const int64_t block = mask.a;
    const auto [lo, hi] = std::minmax_element(call.positions.begin(), call.positions.end());
    const int64_t q_first = *lo / block, q_cells = *hi / block - q_first + 1;
    const int64_t k_cells = (S + block - 1) / block;
    // Each cell costs the mechanism O(block·(1 + block/frame)) and a cache entry: bound the count.
    constexpr int64_t kMaxCells = int64_t(1) << 21;
    ATTNLAB_CHECK(q_cells * k_cells <= kMaxCells, NotSupported,
                  "[cuda] `{}` over {} query × {} key cells is more than the GPU plan's {} (use a larger block)",
                  mech.text(), q_cells, k_cells, kMaxCells);
    ATTNLAB_CHECK(tables.size() + size_t(q_cells * k_cells) < size_t(std::numeric_limits<int32_t>::max()), NotSupported,
                  "[cuda] radial_blocks tables exceed 2^31 entries");
    mask.b = to_i32(double(q_first), "a radial_blocks query cell");
    mask.c = int32_t(k_cells);
    mask.table = int32_t(tables.size());
    for (int64_t qc = q_first; qc < q_first + q_cells; ++qc)
        for (int64_t kc = 0; kc < k_cells; ++kc) {
            const TileCoord cell{0, call.head_begin, qc * block, qc * block + block - 1, kc * block, kc * block + block - 1,
                                 &call.ctx};
            tables.push_back(mech.visit(cell) == TileVisit::Skip ? 0 : 1);
        }
}

// Verdict of every mask on one tile: Skip if any skips, Full if all keep it whole.
TileVisit visit_all(const std::vector<const Mechanism*>& masks, const TileCoord& tile) {
    TileVisit v = TileVisit::Full;
    for (const Mechanism* m : masks) {
        const TileVisit mv = m->visit(tile);
        if (mv == TileVisit::Skip) return TileVisit::Skip;
        if (mv == TileVisit::Partial) v = TileVisit::Partial;
    }
    return v;
}

}  // namespace

std::string supported_mechanisms() {
    std::string names;
    for (const MechanismInfo& info : mechanism_registry()) names += (names.empty() ? "" : ", ") + info.name;
    return names;
}

double HostPlan::kept_flops() const {
    return double(kept_blocks) * kBlockM * kBlockN * 2.0 * double(D + Dv) * double(head_end - head_begin) * double(B);
}

HostPlan build_host_plan(const AttentionSpec& spec, const AttentionInputs& in, const AttentionOutputs& out) {
    // The CPU operator's validation (shapes, positions, each mechanism's inputs). It reads no
    // q/k/v data, so it is given a dtype it accepts; ours is checked in check_layout.
    AttentionInputs as_cpu = in;
    as_cpu.dtype = DType::BF16;
    const detail::AttentionCall call(spec, as_cpu, out);
    check_call(in, out);

    HostPlan plan;
    plan.B = in.B, plan.T = in.T, plan.S = in.S, plan.H = in.H, plan.Hkv = in.Hkv, plan.D = in.D, plan.Dv = in.Dv;
    plan.head_begin = call.head_begin, plan.head_end = call.head_end;

    Spec& g = plan.spec;
    g.normalizer = call.normalizer.kind == NormalizerKind::Softmax   ? NormKind::Softmax
                   : call.normalizer.kind == NormalizerKind::Sigmoid ? NormKind::Sigmoid
                                                                     : NormKind::Relu;
    g.norm_bias = static_cast<float>(call.normalizer.bias);
    ATTNLAB_CHECK(call.masks.size() <= size_t(kMaxMasks) && call.score_mods.size() <= size_t(kMaxMods), NotSupported,
                  "[cuda] more than {} masks or {} score modifiers are not on the GPU yet", kMaxMasks, kMaxMods);
    for (const Mechanism* m : call.masks) {
        Mask& mask = g.masks[g.n_masks++];
        mask = mask_of(m->text());
        if (mask.kind == MaskKind::RadialBlocks && in.T > 0) radial_blocks_table(*m, mask, call, in.S, plan.keep_tables);
    }
    for (const Mechanism* m : call.score_mods) g.mods[g.n_mods++] = mod_of(m->text());
    for (const Mechanism* m : call.extra_logits) {
        ATTNLAB_CHECK(m->text() == "sinks", NotSupported, "[cuda] mechanism `{}` is not on the GPU yet (GPU: {})",
                      m->text(), supported_mechanisms());
        ++g.has_sinks;  // `sinks` twice joins the sink logit twice (the general kernel adds ln 2)
    }
    double scale = call.scale;
    // Temperatures alone are a rescale of the scores: fold them so the kernels skip the mods.
    if (std::all_of(g.mods, g.mods + g.n_mods, [](const Mod& m) { return m.kind == ModKind::Temperature; })) {
        for (int k = 0; k < g.n_mods; ++k) scale *= g.mods[k].value;
        g.n_mods = 0;
    }
    g.scale = static_cast<float>(scale);
    while (int64_t(g.pow2_heads) * 2 <= in.H) g.pow2_heads *= 2;

    plan.positions.resize(size_t(in.T));
    for (int64_t t = 0; t < in.T; ++t) plan.positions[t] = to_i32(double(call.positions[t]), "a query position");
    if (in.segments) plan.segments.assign(in.segments, in.segments + in.S);
    if (g.has_sinks) plan.sinks.assign(in.sinks, in.sinks + in.H);

    // The block map over 64×64 tiles, shared by every head (see HostPlan).
    plan.n_qblocks = (in.T + kBlockM - 1) / kBlockM;
    plan.n_kblocks = (in.S + kBlockN - 1) / kBlockN;
    plan.offsets.assign(size_t(plan.n_qblocks + 1), 0);
    std::vector<int32_t> kept_count(size_t(plan.n_qblocks), 0);
    for (int64_t qb = 0; qb < plan.n_qblocks; ++qb) {
        const int64_t t0 = qb * kBlockM, t1 = std::min(in.T, t0 + kBlockM);
        const auto [lo, hi] = std::minmax_element(call.positions.begin() + t0, call.positions.begin() + t1);
        for (int64_t kb = 0; kb < plan.n_kblocks; ++kb) {
            const int64_t j0 = kb * kBlockN, j1 = std::min(in.S, j0 + kBlockN);
            const TileCoord tile{0, call.head_begin, *lo, *hi, j0, j1 - 1, &call.ctx};
            TileVisit v = visit_all(call.masks, tile);
            if (v == TileVisit::Skip) continue;
            // A tile past the last key masks the overhang per element.
            if (j0 + kBlockN > in.S) v = TileVisit::Partial;
            plan.entries.push_back(int32_t(kb) | (v == TileVisit::Partial ? kPartialBit : 0));
            plan.partial_blocks += v == TileVisit::Partial;
            ++kept_count[qb];
        }
        plan.offsets[qb + 1] = int32_t(plan.entries.size());
    }
    plan.kept_blocks = int64_t(plan.entries.size());
    // Heaviest query blocks launch first, so the long ones do not straggle in the last wave.
    plan.order.resize(size_t(plan.n_qblocks));
    std::iota(plan.order.begin(), plan.order.end(), 0);
    std::stable_sort(plan.order.begin(), plan.order.end(),
                     [&](int32_t a, int32_t b) { return kept_count[a] > kept_count[b]; });
    plan.general = !tensor_core_kernels_run(g, in, out);
    ATTNLAB_CHECK(in.D <= kMaxHeadDim && in.Dv <= kMaxHeadDim, NotSupported,
                  "[cuda] head dims D={} Dv={} are not on the GPU (at most {})", in.D, in.Dv, kMaxHeadDim);
    // Decode: few query rows per kv head read long key ranges; the MMA kernel would waste
    // 16-row tiles on them, so the split-KV kernel takes them (one query block by construction).
    plan.decode = !plan.general && in.T * (in.H / in.Hkv) <= 16;
    return plan;
}

}  // namespace attnlab::gpu

#ifndef ATTNLAB_HAVE_CUDA
// Built without CUDA: the API exists and says so.
namespace attnlab {

namespace {
[[noreturn]] void no_cuda() { throw NotSupported("[cuda] attnlab was built without CUDA (ATTNLAB_CUDA=OFF or no nvcc)"); }
}  // namespace

bool cuda_available() { return false; }
void attention_cuda(const AttentionSpec&, const AttentionInputs&, const AttentionOutputs&, CUstream_st*) { no_cuda(); }

struct CudaAttentionPlan::Impl {};
CudaAttentionPlan::CudaAttentionPlan(const AttentionSpec&, const AttentionInputs&, const AttentionOutputs&) { no_cuda(); }
CudaAttentionPlan::~CudaAttentionPlan() = default;
CudaAttentionPlan::CudaAttentionPlan(CudaAttentionPlan&&) noexcept = default;
CudaAttentionPlan& CudaAttentionPlan::operator=(CudaAttentionPlan&&) noexcept = default;
void CudaAttentionPlan::run(const AttentionInputs&, const AttentionOutputs&, CUstream_st*) const { no_cuda(); }
CudaAttentionPlan::Stats CudaAttentionPlan::stats() const { no_cuda(); }
}  // namespace attnlab
#endif
