// Interventions: training-free edits of a forward pass, applied per layer / head / position and
// composable (papers-analysis §3, §5, §6, §7, §14; papers-multimodal VAR, PAINT, LocoRE, CCA,
// VISTA, SGL). Each intervention is a Hooks object, so any number chain with caches, probes and
// each other; they act through four kinds of hook point:
//   - tensors (hook_q, hook_z, hook_mlp_out, hook_resid_pre, ...): ablations, steering, patching;
//   - rewrite_attention: the spec a head runs (pre-softmax: logit boosts, temperatures);
//   - edit_attention: the layer's output after the kernel (post-softmax edits that keep rows
//     summing to 1, computed from lse and restricted re-runs of the kernel, never from T×S);
//   - the forward options (token segments, position ids).
// One intervention per file in src/interp/interventions/, registered by its JSON "type"
// (docs/interventions.md lists every type, its fields and its exact definition).
//
// JSON form (`attnlab run|generate|report --intervene FILE.json`):
//   {"interventions": [{"type": "ablate", "mode": "zero", "heads": "1:0,1:2"}, ...]}
// or a bare array of the same objects. Head targets are "L:H" items, comma separated, where L and
// H are an index, a range A-B (inclusive) or * (all): "1:*" is every head of layer 1.
#pragma once

#include <attnlab/head_mask.h>
#include <attnlab/hooks.h>
#include <attnlab/model.h>
#include <attnlab/segments.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace attnlab {

// What an intervention is built against.
struct InterventionEnv {
    const Model* model = nullptr;
    const TokenSegments* segments = nullptr;  // named ranges the spec may refer to (may be null)
};

class Intervention : public Hooks {
public:
    // The intervention as one line ("ablate zero 1:0,1:2"), for logs and reports.
    virtual std::string describe() const = 0;
};

// "1:0,1:2-3,0:*" -> heads, checked against (n_layer, n_head); throws InvalidArgument naming
// `where` and the bad item.
std::vector<HeadRef> parse_head_targets(std::string_view text, int64_t n_layer, int64_t n_head, const char* where);

// An ordered, owned list of interventions; a HookChain of them.
class InterventionSet : public HookChain {
public:
    InterventionSet() = default;
    InterventionSet(InterventionSet&&) = default;
    InterventionSet& operator=(InterventionSet&&) = default;

    // Parses the JSON text (see above). Throws InvalidArgument / FormatError naming `where`.
    static InterventionSet from_json(std::string_view json_text, const InterventionEnv& env,
                                     const std::string& where = "interventions");
    static InterventionSet from_file(const std::string& path, const InterventionEnv& env);

    void add(std::unique_ptr<Intervention> intervention);
    size_t size() const { return owned_.size(); }
    bool empty() const { return owned_.empty(); }
    const Intervention& at(size_t i) const { return *owned_.at(i); }
    std::vector<std::string> describe() const;

private:
    std::vector<std::unique_ptr<Intervention>> owned_;
};

// The registered types, with a one-line summary each (for --help and the docs' check).
struct InterventionType {
    const char* name;
    const char* summary;
};
const std::vector<InterventionType>& intervention_types();

}  // namespace attnlab
