// attnlab run: one forward pass; saves logits and the hook points matching --hooks.
#include "cli_common.h"

#include <attnlab/safetensors.h>

namespace attnlab::cli {

Command add_run(CLI::App& root) {
    struct Options {
        ModelOptions model;
        DeviceOptions device;
        PromptOptions prompt;
        InterventionOptions intervene;
        std::string save;
        std::string hooks;
        std::string positions;  // "A:B": keep query positions [A, B) of each hook point
        int64_t stop_at_layer = -1;
    };
    auto o = std::make_shared<Options>();
    CLI::App* app = root.add_subcommand("run", "Run one forward pass and save logits and activations");
    o->model.add_to(*app);
    o->device.add_to(*app);
    o->prompt.add_to(*app);
    o->intervene.add_to(*app);
    app->add_option("--save", o->save, "Output .safetensors file")->required();
    app->add_option("--hooks", o->hooks, "Regex of hook point names to save (full match)");
    app->add_option("--positions", o->positions, "Save only query positions A:B (half-open) of each hook point");
    app->add_option("--stop-at-layer", o->stop_at_layer, "Run layers 0..N-1 only (no logits are saved)")
        ->check(CLI::NonNegativeNumber);
    return {app, [o] {
        auto model = o->model.load();
        o->device.refuse("run", !o->hooks.empty(), "--hooks");
        o->device.refuse("run", !o->intervene.intervene.empty(), "--intervene");
        o->device.refuse("run", o->stop_at_layer >= 0, "--stop-at-layer");
        std::vector<int32_t> ids = o->prompt.resolve(*model);
        ATTNLAB_CHECK(static_cast<int64_t>(ids.size()) <= o->model.context_length(*model), InvalidArgument,
                      "[run] {} tokens exceed the context of {} (raise it with --ctx-size)", ids.size(),
                      o->model.context_length(*model));
        std::unique_ptr<ActivationCache> cache;
        if (!o->hooks.empty()) cache = std::make_unique<ActivationCache>(o->hooks);
        if (!o->positions.empty()) {
            ATTNLAB_CHECK(cache != nullptr, InvalidArgument, "[run] --positions needs --hooks");
            const size_t colon = o->positions.find(':');
            int64_t begin = -1, end = -1;
            try {
                ATTNLAB_CHECK(colon != std::string::npos, InvalidArgument, "");
                begin = std::stoll(o->positions.substr(0, colon));
                end = std::stoll(o->positions.substr(colon + 1));
            } catch (const std::exception&) {
                begin = end = -1;
            }
            ATTNLAB_CHECK(begin >= 0 && end > begin, InvalidArgument,
                          "[run] --positions must be A:B with 0 <= A < B, got '{}'", o->positions);
            cache->keep_positions(begin, end);
        }
        const TokenSegments segments = o->intervene.segments();
        InterventionSet interventions = o->intervene.interventions(*model, segments);
        HookChain hooks;  // interventions first, so the cache sees their effect
        hooks.add(&interventions);
        if (cache) hooks.add(cache.get());
        ForwardOptions options;
        options.all_logits = true;
        options.hooks = &hooks;
        options.segments = &segments;
        options.stop_at_layer = o->stop_at_layer;
        Tensor logits;
        if (o->device.cuda()) {  // logits only: the GPU offers no hook points
            std::unique_ptr<CudaModel> gpu = o->device.load(*model);
            CudaKVCache kv = gpu->new_cache();
            ForwardOptions gpu_options;
            gpu_options.all_logits = true;
            gpu_options.segments = &segments;
            logits = gpu->forward(ids, kv, gpu_options);
        } else {
            KVCache kv = model->new_cache();
            logits = model->forward(ids, kv, options);
        }
        std::vector<std::pair<std::string, Tensor>> out;
        if (logits.defined()) out.emplace_back("logits", logits);
        std::vector<int64_t> ids64(ids.begin(), ids.end());
        Tensor input_ids = Tensor::empty({static_cast<int64_t>(ids.size())}, DType::I64);
        std::copy(ids64.begin(), ids64.end(), input_ids.data<int64_t>());
        out.emplace_back("input_ids", input_ids);
        if (cache)
            for (const auto& [name, t] : cache->entries()) out.emplace_back(name, t);
        save_safetensors(o->save, out);
        return 0;
    }};
}

}  // namespace attnlab::cli
