// Head-set search (papers-analysis primitive P7): which heads, intervened on together, move an
// objective the most? The driver is generic over the objective — a function of a head set that
// runs whatever intervention and measurement it likes — so the retrieval-head paper's top-K
// masking, ACT's per-head screen (§7) and HeadHunter's greedy rounds (§14) are all this:
//   - screen_heads: every candidate alone (one round, no state);
//   - greedy_head_search: each round adds, to the set chosen so far, the candidate whose addition
//     gives the best objective; it stops at a target value, a maximum size, or when no candidate
//     is left.
// src/interp/head_search.cpp; docs/patching.md ("Head search").
#pragma once

#include <attnlab/head_mask.h>
#include <attnlab/patching.h>
#include <attnlab/probes.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace attnlab {

// An objective's value for a head set: compared lexicographically (value first, then the
// tie-breakers), all in the search's direction.
using ObjectiveValue = std::vector<double>;
using HeadObjective = std::function<ObjectiveValue(const std::vector<HeadRef>& heads)>;

struct HeadSearchOptions {
    std::vector<HeadRef> candidates;  // empty: every head of the model
    bool minimise = true;             // lower objective values are better
    int64_t max_heads = 0;            // stop at this many heads (0: no limit)
    // Stop as soon as the chosen set's value (first component) is below / above this target.
    std::optional<double> stop_below, stop_above;
};

struct HeadSearchRound {
    HeadRef head;               // the head added this round
    ObjectiveValue objective;   // of the set chosen so far, this head included
    int64_t evaluated = 0;      // candidates evaluated this round
};

struct HeadSearchResult {
    ObjectiveValue initial;     // the objective of the empty set
    std::vector<HeadSearchRound> rounds;
    bool reached_target = false;
    bool interrupted = false;
    int64_t evaluations = 0;    // objective calls, the empty set included
    std::vector<HeadRef> heads() const;  // the chosen set, in the order chosen
    // {"initial", "heads": [{"layer", "head", "objective"}...], "reached_target", "interrupted",
    //  "evaluations"}
    std::string to_json() const;
};

struct HeadScreenEntry {
    HeadRef head;
    ObjectiveValue objective;
};
struct HeadScreenResult {
    ObjectiveValue initial;
    std::vector<HeadScreenEntry> entries;  // best first (the search's direction)
    bool interrupted = false;
    std::string to_json() const;
};

// Progress counts objective evaluations against the worst case of the run.
HeadSearchResult greedy_head_search(const HeadObjective& objective, const ModelConfig& config,
                                    const HeadSearchOptions& options, const ProbeControl& control = {});
HeadScreenResult screen_heads(const HeadObjective& objective, const ModelConfig& config,
                              const HeadSearchOptions& options, const ProbeControl& control = {});

// The objective "ablate these heads with `mode` (zero, uniform, mean, bos) and measure `metric`":
// the values named `value` then each of `tie_breakers` (a leading '-' negates one, e.g. {"-loss"}
// makes a higher loss count as lower, to break accuracy ties towards more damage). Mean mode takes
// its z means from the sequences themselves. The model, sequences and metric must outlive it.
HeadObjective ablation_objective(const Model& model, const Sequences& sequences, const Metric& metric,
                                 const std::string& mode, const std::string& value,
                                 const std::vector<std::string>& tie_breakers = {});

}  // namespace attnlab
