// attnlab bench: llama-bench-style prompt processing (ppN) and generation (tgN) throughput;
// `attnlab bench attention` (cmd_bench_attention.cpp) times the attention operator alone.
//
// Each test runs once to warm up, then -r times; rows give mean ± sample stddev of tokens/s.
// Token ids are deterministic pseudo-random (tokenisation and sampling are excluded).
#include "cli_common.h"

#include <attnlab/hooks.h>
#include <attnlab/intervention.h>
#include <attnlab/threads.h>

#include <nlohmann/json.hpp>
#include <sys/resource.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <random>

namespace attnlab::cli {

namespace {

struct BenchRow {
    std::string test;
    double mean = 0, stddev = 0;
    std::vector<double> samples;
};

std::vector<int32_t> random_ids(int64_t n, int64_t vocab, uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::uniform_int_distribution<int64_t> pick(0, vocab - 1);
    std::vector<int32_t> ids(static_cast<size_t>(n));
    for (auto& id : ids) id = static_cast<int32_t>(pick(rng));
    return ids;
}

// prepare() runs untimed before each run (e.g. filling the KV cache to the test's depth).
template <typename Prepare, typename Fn>
BenchRow measure(const std::string& name, int64_t tokens, int repetitions, Prepare&& prepare, Fn&& run_once) {
    BenchRow row;
    row.test = name;
    prepare();
    run_once();  // warm-up: page in the weights, size the caches
    for (int r = 0; r < repetitions; ++r) {
        prepare();
        auto t0 = std::chrono::steady_clock::now();
        run_once();
        double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        row.samples.push_back(static_cast<double>(tokens) / seconds);
    }
    for (double s : row.samples) row.mean += s;
    row.mean /= static_cast<double>(row.samples.size());
    for (double s : row.samples) row.stddev += (s - row.mean) * (s - row.mean);
    row.stddev = row.samples.size() > 1 ? std::sqrt(row.stddev / static_cast<double>(row.samples.size() - 1)) : 0.0;
    return row;
}

// Asks every layer for in-kernel attention statistics and drops them: what a statistics-only
// probe costs on top of the forward pass. "rows": the per-row statistics of the heads probe
// (one pass); "columns": also the column sums (a second pass over the kept tiles).
class StatsOnlyHook : public Hooks {
public:
    explicit StatsOnlyHook(bool columns) : columns_(columns) {}
    bool wants(const std::string&) const override { return false; }
    void on(const std::string&, Tensor&) override {}
    std::optional<AttentionStatsRequest> attention_stats(int64_t, int64_t S) const override {
        AttentionStatsRequest r;
        r.mass = r.entropy = r.sum_sq = r.top = true;
        r.keys = {0};
        r.offsets = {0, 1, 2, 3};
        r.n_distance_bins = AttentionStats::distance_bins_for(S);
        r.column_sum = columns_;
        return r;
    }

private:
    bool columns_;
};

// The table rows of one bench run (text or JSON), for either backend.
void print_rows(const std::vector<BenchRow>& rows, const Model& model, const std::string& backend, int threads,
                size_t weight_bytes, double peak_bytes, const char* peak_key, const char* peak_label, bool json,
                const nlohmann::json& extra = {}) {
    const ModelConfig& c = model.config();
    const double size_gib = static_cast<double>(weight_bytes) / (1024.0 * 1024.0 * 1024.0);
    if (json) {
        nlohmann::json out = nlohmann::json::array();
        for (const BenchRow& r : rows)
            out.push_back({{"model", model.directory()}, {"model_type", c.model_type}, {"size_bytes", weight_bytes},
                           {"params", model.parameter_count()}, {"backend", backend}, {"threads", threads},
                           {"test", r.test}, {"avg_ts", r.mean}, {"stddev_ts", r.stddev}, {"samples_ts", r.samples},
                           {peak_key, peak_bytes}});
        if (extra.is_object())
            for (nlohmann::json& row : out) row.update(extra);
        std::puts(out.dump().c_str());
        return;
    }
    std::printf("| model | size | params | backend | threads | test | t/s |\n");
    std::printf("| --- | ---: | ---: | --- | ---: | ---: | ---: |\n");
    for (const BenchRow& r : rows)
        std::printf("| %s | %.2f GiB | %.2f M | %s | %d | %s | %.2f ± %.2f |\n", c.model_type.c_str(), size_gib,
                    model.parameter_count() / 1e6, backend.c_str(), threads, r.test.c_str(), r.mean, r.stddev);
    std::printf("\n%s %.1f MiB (weights %.1f MiB)\n", peak_label, peak_bytes / 1048576.0,
                static_cast<double>(weight_bytes) / 1048576.0);
}

// ppN / tgN on the GPU (--device cuda): the same tests, token ids and depth fill; generation
// picks each next token on the device (argmax), as greedy decoding does.
int run_gpu_bench(const Model& model, const DeviceOptions& device, int64_t n_prompt, int64_t n_gen, int64_t depth,
                  int repetitions, bool json) {
    const ModelConfig& c = model.config();
    std::unique_ptr<CudaModel> gpu = device.load(model);
    const std::vector<int32_t> depth_ids = random_ids(depth, c.vocab_size, 3);
    CudaKVCache cache = gpu->new_cache();
    auto fill = [&] {
        cache.clear();
        if (!depth_ids.empty()) gpu->forward(depth_ids, cache);
        gpu->synchronize();
    };
    const std::string at = depth > 0 ? fmt::format(" @ d{}", depth) : "";
    std::vector<BenchRow> rows;
    if (n_prompt > 0) {
        const std::vector<int32_t> ids = random_ids(n_prompt, c.vocab_size, 1);
        rows.push_back(measure(fmt::format("pp{}{}", n_prompt, at), n_prompt, repetitions, fill, [&] {
            gpu->forward(ids, cache);  // returns host logits: the work is done
        }));
    }
    // Where a decode step's time goes, over every timed and warm-up step: the host queueing the
    // step's launches (of which building attention plans), then the wait for the GPU.
    CudaModel::CallTiming step_sum;
    int64_t steps = 0;
    if (n_gen > 0) {
        const int32_t first = random_ids(1, c.vocab_size, 2)[0];
        rows.push_back(measure(fmt::format("tg{}{}", n_gen, at), n_gen, repetitions, fill, [&] {
            int32_t next = first;
            for (int64_t i = 0; i < n_gen; ++i) {
                next = gpu->forward_greedy(std::span<const int32_t>(&next, 1), cache);
                const CudaModel::CallTiming t = gpu->last_call_timing();
                step_sum.enqueue_s += t.enqueue_s, step_sum.plans_s += t.plans_s, step_sum.wait_s += t.wait_s;
                ++steps;
            }
        }));
    }
    const double per_step_ms = steps > 0 ? 1e3 / static_cast<double>(steps) : 0.0;
    nlohmann::json extra;
    if (steps > 0)
        extra = {{"decode_host_enqueue_ms", step_sum.enqueue_s * per_step_ms},
                 {"decode_attention_plans_ms", step_sum.plans_s * per_step_ms},
                 {"decode_gpu_wait_ms", step_sum.wait_s * per_step_ms}};
    const std::string backend = device.precision == "f32" ? "CUDA f32" : "CUDA bf16";
    print_rows(rows, model, backend, 1, gpu->weight_bytes(), static_cast<double>(cache.bytes()), "kv_cache_bytes",
               "KV cache on the GPU", json, extra);
    if (!json && steps > 0)
        std::printf("decode step: host queues its launches in %.3f ms (attention plans %.3f ms), then waits %.3f ms for "
                    "the GPU\n", step_sum.enqueue_s * per_step_ms, step_sum.plans_s * per_step_ms,
                    step_sum.wait_s * per_step_ms);
    return 0;
}

}  // namespace

Command add_bench(CLI::App& root) {
    struct Options {
        ModelOptions model;
        DeviceOptions device;
        int64_t n_prompt = 512, n_gen = 128, depth = 0;
        int repetitions = 5;
        bool json = false;
        std::string stats = "none";
        InterventionOptions intervene;
    };
    auto o = std::make_shared<Options>();
    CLI::App* app = root.add_subcommand("bench", "Prompt-processing and generation throughput (llama-bench style)");
    o->model.add_to(*app, /*model_required=*/false);
    o->device.add_to(*app);
    std::function<int()> run_attention = add_bench_attention(*app);
    CLI::App* attention_app = app->get_subcommand("attention");
    app->add_option("-p,--n-prompt", o->n_prompt, "Prompt tokens (0 = skip)")->check(CLI::NonNegativeNumber);
    app->add_option("-n,--n-gen", o->n_gen, "Generated tokens (0 = skip)")->check(CLI::NonNegativeNumber);
    app->add_option("-d,--depth", o->depth, "Tokens already in the KV cache before each test (not timed)")
        ->check(CLI::NonNegativeNumber);
    app->add_option("-r,--repetitions", o->repetitions, "Repetitions per test")->check(CLI::PositiveNumber);
    app->add_flag("--json", o->json, "Print the rows as JSON");
    app->add_option("--stats", o->stats,
                    "Prompt processing also computes attention statistics in every layer: rows (the heads "
                    "probe's, one pass) or columns (rows + column sums, a second pass)")
        ->check(CLI::IsMember({"none", "rows", "columns"}));
    o->intervene.add_to(*app);  // every test (and the untimed depth fill) runs with the interventions
    return {app, [o, run_attention, attention_app] {
        if (attention_app->parsed()) return run_attention();
        ATTNLAB_CHECK(!o->model.model_dir.empty(), InvalidArgument, "[bench] -m/--model is required");
        auto model = o->model.load();
        o->device.refuse("bench", o->stats != "none", "--stats");
        o->device.refuse("bench", !o->intervene.intervene.empty(), "--intervene");
        const int64_t longest = o->depth + std::max(o->n_prompt, o->n_gen);
        ATTNLAB_CHECK(longest <= o->model.context_length(*model), InvalidArgument,
                      "[bench] depth {} + {} tokens exceed the context of {} (-c to raise it)", o->depth,
                      std::max(o->n_prompt, o->n_gen), o->model.context_length(*model));
        if (o->device.cuda())
            return run_gpu_bench(*model, o->device, o->n_prompt, o->n_gen, o->depth, o->repetitions, o->json);
        const ModelConfig& c = model->config();
        // Interventions (--intervene, on the --segment/--segments labels) act in every pass.
        const TokenSegments segments = o->intervene.segments();
        InterventionSet interventions = o->intervene.interventions(*model, segments);
        ForwardOptions with_interventions;
        if (!interventions.empty()) with_interventions.hooks = &interventions;
        if (!segments.empty()) with_interventions.segments = &segments;
        std::string intervened;
        for (const std::string& line : interventions.describe()) intervened += (intervened.empty() ? "" : "; ") + line;
        if (!intervened.empty()) intervened = " +intervene(" + intervened + ")";
        // The cache holds `depth` tokens before each timed run; it is refilled untimed (a new
        // sequence for the interventions, whose per-sequence state starts at the fill).
        const std::vector<int32_t> depth_ids = random_ids(o->depth, c.vocab_size, 3);
        KVCache cache = model->new_cache();
        auto fill = [&] {
            cache.clear();
            interventions.begin_sequence();
            if (!depth_ids.empty()) model->forward(depth_ids, cache, with_interventions);
        };
        const std::string at = o->depth > 0 ? fmt::format(" @ d{}", o->depth) : "";
        std::vector<BenchRow> rows;
        if (o->n_prompt > 0) {
            std::vector<int32_t> ids = random_ids(o->n_prompt, c.vocab_size, 1);
            StatsOnlyHook stats_hook(o->stats == "columns");
            HookChain hooks;
            if (o->stats != "none") hooks.add(&stats_hook);
            if (!interventions.empty()) hooks.add(&interventions);
            ForwardOptions options = with_interventions;
            if (o->stats != "none" || !interventions.empty()) options.hooks = &hooks;
            const std::string stats = o->stats != "none" ? " +stats(" + o->stats + ")" : "";
            rows.push_back(measure(fmt::format("pp{}{}{}{}", o->n_prompt, at, stats, intervened), o->n_prompt,
                                   o->repetitions, fill, [&] { model->forward(ids, cache, options); }));
        }
        if (o->n_gen > 0) {
            std::vector<int32_t> ids = random_ids(o->n_gen, c.vocab_size, 2);
            rows.push_back(measure(fmt::format("tg{}{}{}", o->n_gen, at, intervened), o->n_gen, o->repetitions, fill, [&] {
                for (int32_t id : ids) model->forward(std::span<const int32_t>(&id, 1), cache, with_interventions);
            }));
        }
        struct rusage usage {};
        getrusage(RUSAGE_SELF, &usage);
        const double peak_rss = static_cast<double>(usage.ru_maxrss) * 1024.0;
        print_rows(rows, *model, "CPU", num_threads(), model->weight_bytes(), peak_rss, "peak_rss_bytes", "peak RSS", o->json);
        return 0;
    }};
}

}  // namespace attnlab::cli
