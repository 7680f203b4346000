// Path patching (papers-analysis §3, Merullo et al.'s patching_utils.path_patching): the effect of
// one sender head on chosen receivers only, by three runs per sender (see patching.h).
#include <attnlab/intervention.h>

#include <attnlab/error.h>
#include <attnlab/patching.h>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <numeric>
#include <set>

namespace attnlab {

namespace {

// The last layer whose heads can reach the receiver: a head receiver's q/k/v/z and resid_pre of
// layer l read the residual stream before layer l's attention; resid_mid, attn_out, resid_post and
// mlp_out of layer l already hold layer l's heads.
int64_t deepest_sender_layer(const PathReceiver& r) {
    return r.head >= 0 || r.point == "resid_pre" ? r.layer - 1 : r.layer;
}

std::string receiver_text(const PathReceiver& r) {
    return r.head >= 0 ? fmt::format("{}:{}:{}", r.layer, r.head, r.point) : fmt::format("{}:{}", r.layer, r.point);
}

}  // namespace

std::vector<PathReceiver> parse_path_receivers(std::string_view text, const ModelConfig& c, const char* where) {
    std::vector<PathReceiver> out;
    size_t start = 0;
    while (start <= text.size()) {
        const size_t comma = std::min(text.find(',', start), text.size());
        const std::string item(text.substr(start, comma - start));
        start = comma + 1;
        if (item == "logits") {
            out.push_back({c.n_layer - 1, -1, "resid_post"});
            continue;
        }
        const size_t first = item.find(':'), last = item.rfind(':');
        ATTNLAB_CHECK(first != std::string::npos, InvalidArgument,
                      "[{}] bad receiver '{}': expected L:H:q|k|v|z, L:resid_pre|resid_mid|resid_post|attn_out|mlp_out "
                      "or logits", where, item);
        const std::string kind = item.substr(last + 1);
        patch_point_name(0, kind, where);  // validates the kind
        if (first == last) {
            ATTNLAB_CHECK(!is_head_point(kind), InvalidArgument, "[{}] receiver '{}': {} needs a head (L:H:{})", where,
                          item, kind, kind);
            int64_t layer = -1;
            try {
                size_t used = 0;
                layer = std::stoll(item.substr(0, first), &used);
                ATTNLAB_CHECK(used == first, InvalidArgument, "[{}] bad receiver layer in '{}'", where, item);
            } catch (const std::logic_error&) {
                throw InvalidArgument(fmt::format("[{}] bad receiver layer in '{}'", where, item));
            }
            ATTNLAB_CHECK(layer >= 0 && layer < c.n_layer, InvalidArgument, "[{}] receiver '{}': layer outside 0..{}",
                          where, item, c.n_layer - 1);
            out.push_back({layer, -1, kind});
            continue;
        }
        ATTNLAB_CHECK(is_head_point(kind), InvalidArgument, "[{}] receiver '{}': {} is not a per-head point (q, k, v, z)",
                      where, item, kind);
        const int64_t n_heads = point_heads(c, kind);
        for (const HeadRef& h : parse_head_targets(item.substr(0, last), c.n_layer, n_heads, where))
            out.push_back({h.layer, h.head, kind});
    }
    return out;
}

PathPatchingResult path_patching(const Model& model, const RunPair& pair, const Metric& metric,
                                 const PathPatchingOptions& options, const ProbeControl& control) {
    const char* where = "path patching";
    const ModelConfig& c = model.config();
    pair.check(where);
    metric.check(pair.clean, c.vocab_size, where);
    metric.check(pair.corrupted, c.vocab_size, where);
    std::vector<PathReceiver> receivers = options.receivers;
    if (receivers.empty()) receivers.push_back({c.n_layer - 1, -1, "resid_post"});
    int64_t reach = -1, deepest = 0;  // the last sender layer, the last receiver layer
    for (const PathReceiver& r : receivers) {
        ATTNLAB_CHECK(r.layer >= 0 && r.layer < c.n_layer, InvalidArgument, "[{}] receiver layer {} outside 0..{}", where,
                      r.layer, c.n_layer - 1);
        patch_point_name(r.layer, r.point, where);
        ATTNLAB_CHECK((r.head >= 0) == is_head_point(r.point) && r.head < std::max<int64_t>(point_heads(c, r.point), 1),
                      InvalidArgument, "[{}] bad receiver {}", where, receiver_text(r));
        reach = std::max(reach, deepest_sender_layer(r));
        deepest = std::max(deepest, r.layer);
    }
    std::vector<HeadRef> senders = options.senders;
    if (senders.empty()) {
        ATTNLAB_CHECK(reach >= 0, InvalidArgument, "[{}] no head comes before the receivers", where);
        for (int64_t l = 0; l <= reach; ++l)
            for (int64_t h = 0; h < c.n_head; ++h) senders.push_back({l, h});
    }
    for (const HeadRef& s : senders)
        ATTNLAB_CHECK(s.layer >= 0 && s.layer < c.n_layer && s.head >= 0 && s.head < c.n_head, InvalidArgument,
                      "[{}] sender {}:{} outside the model ({} layers x {} heads)", where, s.layer, s.head, c.n_layer,
                      c.n_head);
    // END positions per sequence.
    std::vector<std::vector<int64_t>> ends(pair.clean.size());
    for (size_t i = 0; i < ends.size(); ++i) {
        const int64_t T = static_cast<int64_t>(pair.clean[i].size());
        ends[i] = options.positions.empty() ? std::vector<int64_t>{T - 1} : options.positions;
        for (int64_t t : ends[i])
            ATTNLAB_CHECK(t >= 0 && t < T, InvalidArgument, "[{}] position {} outside sequence {} of {} tokens", where, t,
                          i, T);
    }

    // Run 1: the clean and corrupted caches of every head's z (and MLP outputs when frozen).
    std::vector<std::string> z_names, mlp_names, receiver_names;
    for (int64_t l = 0; l < c.n_layer; ++l) {
        z_names.push_back(patch_point_name(l, "z"));
        mlp_names.push_back(patch_point_name(l, "mlp_out"));
    }
    std::vector<std::string> clean_points = z_names;
    if (options.freeze_mlps) clean_points.insert(clean_points.end(), mlp_names.begin(), mlp_names.end());
    const CachedRun clean = cached_run(model, pair.clean, metric, clean_points);
    const CachedRun corrupted = cached_run(model, pair.corrupted, metric, z_names);
    std::set<std::string> receiver_set;
    std::map<int64_t, std::set<int64_t>> z_receivers;  // layer -> heads whose z is a receiver (not frozen)
    for (const PathReceiver& r : receivers) {
        receiver_set.insert(patch_point_name(r.layer, r.point));
        if (r.point == "z") z_receivers[r.layer].insert(r.head);
    }
    receiver_names.assign(receiver_set.begin(), receiver_set.end());

    PathPatchingResult result;
    result.metric_name = metric.names().at(0);
    for (const PathReceiver& r : receivers) result.receivers += (result.receivers.empty() ? "" : ",") + receiver_text(r);
    result.clean = clean.metric;
    result.corrupted = corrupted.metric;
    result.total = static_cast<int64_t>(senders.size());
    for (const HeadRef& sender : senders) {
        if (control.cancelled()) {
            result.interrupted = true;
            return result;
        }
        std::vector<ActivationPatch> receiver_patches(pair.clean.size());
        for (size_t i = 0; i < pair.clean.size(); ++i) {
            // Run 2: sender from the corrupted run at END, every other head frozen to the clean run.
            ActivationPatch freeze;
            for (int64_t l = 0; l <= deepest; ++l) {
                std::vector<int64_t> frozen;
                for (int64_t h = 0; h < c.n_head; ++h)
                    if (!(l == sender.layer && h == sender.head) && !z_receivers[l].count(h)) frozen.push_back(h);
                if (!frozen.empty()) freeze.add(z_names[l], clean.activations[i].at(z_names[l]), {}, frozen);
                if (options.freeze_mlps) freeze.add(mlp_names[l], clean.activations[i].at(mlp_names[l]));
            }
            freeze.add(z_names[sender.layer], corrupted.activations[i].at(z_names[sender.layer]), ends[i], {sender.head});
            ActivationCache record(receiver_names);
            HookChain chain;
            chain.add(&freeze);
            chain.add(&record);  // after the freeze: records what the receivers really received
            KVCache kv = model.new_cache();
            ForwardOptions forward;
            forward.hooks = &chain;
            forward.stop_at_layer = deepest + 1 < c.n_layer ? deepest + 1 : -1;  // nothing later is recorded
            model.forward(pair.clean[i], kv, forward);
            // Run 3's patch: only the receivers, to what run 2 recorded.
            for (const PathReceiver& r : receivers) {
                const std::string name = patch_point_name(r.layer, r.point);
                receiver_patches[i].add(name, record.at(name), {}, r.head >= 0 ? std::vector{r.head} : std::vector<int64_t>{});
            }
        }
        const double patched =
            measure(model, pair.clean, metric, [&](size_t i) { return &receiver_patches[i]; }).primary();
        result.entries.push_back({sender.layer, sender.head, patched,
                                  patch_score(patched, clean.metric.primary(), corrupted.metric.primary())});
        control.report(static_cast<int64_t>(result.entries.size()), result.total);
    }
    return result;
}

std::string PathPatchingResult::to_json() const {
    nlohmann::ordered_json j;
    j["metric"] = metric_name;
    j["receivers"] = receivers;
    j["clean"] = nlohmann::ordered_json::parse(clean.to_json());
    j["corrupted"] = nlohmann::ordered_json::parse(corrupted.to_json());
    j["senders"] = nlohmann::ordered_json::array();
    for (const PathPatchEntry& e : entries)
        j["senders"].push_back({{"layer", e.layer}, {"head", e.head}, {"metric", e.metric}, {"score", e.score}});
    j["total"] = total;
    j["interrupted"] = interrupted;
    return j.dump(1);
}

}  // namespace attnlab
