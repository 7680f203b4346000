// attnlab bench attention: the attention operator alone on one shape, against the machine's
// measured FP32 FMA peak and read bandwidth and against PyTorch's CPU attention, all in the
// same run (the VMs are shared: only ratios within one run are meaningful).
//
// Reported: median time of -r runs after a warm-up; effective GFLOP/s over the tiles the
// spec keeps (2·rows·keys·(D+Dv) each); % of FMA peak; K/V GB/s and % of read bandwidth
// (what bounds decode); with --dense, the time of the unmasked problem on the same shape and
// the sparse cost ratio time / (kept fraction × dense time).
#include "cli_common.h"

#include <attnlab/attention.h>
#include <attnlab/half.h>
#include <attnlab/threads.h>

#include "kernels/cpu/matmul_peak.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>

#ifndef ATTNLAB_SOURCE_DIR
#define ATTNLAB_SOURCE_DIR "."
#endif

namespace attnlab::cli {

namespace {

struct Options {
    std::string spec = "causal";
    int64_t T = 4096, S = 0, H = 32, Hkv = 8, D = 128, Dv = 0;
    std::string dtype = "f32";
    int repeats = 5;
    int rounds = 3;
    int threads = 0;
    bool dense = false, no_torch = false, no_peak = false, json = false;
    std::string stats = "none";  // also time the call with in-kernel statistics: rows / columns
    std::string python = "/usr/bin/python3";
    std::string torch_script = ATTNLAB_SOURCE_DIR "/bench/torch_attention_bench.py";
};

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    const size_t n = v.size();
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

template <typename Fn>
double median_seconds(int repeats, Fn&& fn) {
    fn();  // warm-up: page in the inputs, size the scratch buffers
    std::vector<double> times;
    for (int r = 0; r < repeats; ++r) {
        auto t0 = std::chrono::steady_clock::now();
        fn();
        times.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    return median(times);
}

// The mask PyTorch is asked for: the spec's masks when they are ones SDPA can express.
std::string torch_mask(const AttentionSpec& spec) {
    const std::string text = spec.text();
    if (text == "causal") return "causal";
    if (text.empty()) return "none";
    const std::string prefix = "causal+window(size=";
    if (text.rfind(prefix, 0) == 0 && text.back() == ')' && text.find('+', prefix.size()) == std::string::npos)
        return "window:" + text.substr(prefix.size(), text.size() - prefix.size() - 1);
    return "";
}

// Runs the PyTorch script; returns its median seconds and backend, or nothing with a reason.
std::optional<std::pair<double, std::string>> run_torch(const Options& o, const std::string& mask, int threads,
                                                        std::string* why) {
    const std::string cmd = fmt::format(
        "'{}' '{}' --T {} --S {} --H {} --hkv {} --D {} --Dv {} --dtype {} --mask {} --threads {} --repeats {} --json "
        "2>&1",
        o.python, o.torch_script, o.T, o.S, o.H, o.Hkv, o.D, o.Dv, o.dtype, mask, threads, o.repeats);
    FILE* pipe = popen(cmd.c_str(), "r");
    if (!pipe) {
        *why = "cannot start python";
        return std::nullopt;
    }
    std::string output;
    char buf[4096];
    while (size_t n = fread(buf, 1, sizeof buf, pipe)) output.append(buf, n);
    const int status = pclose(pipe);
    const size_t brace = output.rfind("\n{");
    const std::string last = brace == std::string::npos ? output : output.substr(brace + 1);
    auto j = nlohmann::json::parse(last, nullptr, false);
    if (status != 0 || !j.is_object() || !j.contains("median_s")) {
        *why = "PyTorch run failed: " + output.substr(0, 300);
        return std::nullopt;
    }
    return std::make_pair(j["median_s"].get<double>(), j.value("backend", std::string("?")));
}

int run_bench(Options o) {
    set_num_threads(o.threads);
    const int threads = num_threads();
    if (o.S == 0) o.S = o.T;
    if (o.Dv == 0) o.Dv = o.D;
    ATTNLAB_CHECK(o.T >= 1 && o.S >= o.T && o.H >= 1 && o.Hkv >= 1 && o.D >= 1, InvalidArgument,
                  "[bench attention] need 1 <= T <= S and positive H, Hkv, D");
    ATTNLAB_CHECK(o.dtype == "f32" || o.dtype == "bf16", InvalidArgument, "[bench attention] --dtype is f32 or bf16");
    const AttentionSpec spec = AttentionSpec::parse(o.spec);
    const DType dtype = o.dtype == "bf16" ? DType::BF16 : DType::F32;

    // Random inputs (normal, scores spread over a few units), stored in the benchmark dtype, in
    // Tensors: the allocator (and page backing) of the engine's own KV cache.
    std::mt19937 rng(1);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    auto make = [&](int64_t n) {
        Tensor t = Tensor::empty({n}, dtype);
        for (int64_t i = 0; i < n; ++i) {
            const float x = normal(rng);
            if (dtype == DType::BF16) t.data<uint16_t>()[i] = f32_to_bf16(x);
            else t.data<float>()[i] = x;
        }
        return t;
    };
    const Tensor q = make(o.T * o.H * o.D), k = make(o.S * o.Hkv * o.D), v = make(o.S * o.Hkv * o.Dv);
    std::vector<float> sinks(static_cast<size_t>(o.H), 0.0f);
    std::vector<int32_t> segments(static_cast<size_t>(o.S));
    for (int64_t j = 0; j < o.S; ++j) segments[j] = static_cast<int32_t>(j / 1024);  // 1k-token documents
    auto ptr = [](const Tensor& t) -> const void* { return t.raw(); };
    AttentionInputs in = AttentionInputs::contiguous(dtype, ptr(q), ptr(k), ptr(v), 1, o.T, o.S, o.H, o.Hkv, o.D, o.Dv);
    in.sinks = sinks.data();
    in.segments = segments.data();
    std::vector<float> out(static_cast<size_t>(o.T * o.H * o.Dv)), lse(static_cast<size_t>(o.T * o.H));
    const AttentionOutputs outs = AttentionOutputs::contiguous(out.data(), lse.data(), o.T, o.H, o.Dv);
    // The heads probe's per-row statistics (and column sums for "columns"), timed in the same rounds.
    const int64_t rows = o.T * o.H;
    std::vector<float> st_rows(static_cast<size_t>(rows * 4)), st_keys(static_cast<size_t>(rows)),
        st_offsets(static_cast<size_t>(rows * 4)), st_columns(static_cast<size_t>(o.H * o.S));
    std::vector<int64_t> st_top(static_cast<size_t>(rows));
    AttentionStats stats;
    stats.keys = {0};
    stats.offsets = {0, 1, 2, 3};
    stats.n_distance_bins = AttentionStats::distance_bins_for(o.S);
    std::vector<float> st_distance(static_cast<size_t>(rows * stats.n_distance_bins));
    stats.mass = st_rows.data();
    stats.entropy = st_rows.data() + rows;
    stats.sum_sq = st_rows.data() + 2 * rows;
    stats.top_prob = st_rows.data() + 3 * rows;
    stats.top_key = st_top.data();
    stats.key_mass = st_keys.data();
    stats.offset_mass = st_offsets.data();
    stats.distance_mass = st_distance.data();
    if (o.stats == "columns") stats.column_sum = st_columns.data();
    AttentionOutputs outs_stats = outs;
    outs_stats.stats = &stats;
    std::vector<double> round_stats_seconds;

    // Rounds of (attention timing, FMA peak, read bandwidth) back to back: the host's speed
    // drifts, so each round's ratios compare figures taken seconds apart, and the median round
    // is reported.
    namespace pk = attnlab::cpu::peak;
    const AttentionWork work = attention_work(spec, in);
    std::vector<double> round_seconds, round_peak, round_read, peak_ratio, read_ratio;
    for (int r = 0; r < o.rounds; ++r) {
        const double t = median_seconds(o.repeats, [&] { attention(spec, in, outs); });
        round_seconds.push_back(t);
        if (o.stats != "none")
            round_stats_seconds.push_back(median_seconds(o.repeats, [&] { attention(spec, in, outs_stats); }));
        if (o.no_peak) continue;
        round_peak.push_back(pk::fma_gflops(threads, 3));
        round_read.push_back(pk::read_gbs(threads, size_t{512} << 20, 3));
        peak_ratio.push_back(work.flops / t / 1e9 / round_peak.back());
        read_ratio.push_back(work.kv_bytes / t / 1e9 / round_read.back());
    }
    const double seconds = median(round_seconds);
    const double peak_gflops = o.no_peak ? 0 : median(round_peak), read_gbs = o.no_peak ? 0 : median(round_read);
    double dense_seconds = 0;
    if (o.dense) dense_seconds = median_seconds(std::max(1, o.repeats / 2), [&] { attention(AttentionSpec{}, in, outs); });
    std::optional<std::pair<double, std::string>> torch;
    std::string torch_note;
    const std::string mask = torch_mask(spec);
    if (o.no_torch) torch_note = "skipped (--no-torch)";
    else if (mask.empty()) torch_note = "n/a: SDPA has no such mask";
    else torch = run_torch(o, mask, threads, &torch_note);

    const double gflops = work.flops / seconds / 1e9;
    const double kv_gbs = work.kv_bytes / seconds / 1e9;
    if (o.json) {
        nlohmann::json j = {{"spec", spec.text()}, {"T", o.T}, {"S", o.S}, {"H", o.H}, {"Hkv", o.Hkv}, {"D", o.D},
                            {"Dv", o.Dv}, {"dtype", o.dtype}, {"threads", threads}, {"median_s", seconds},
                            {"gflops", gflops}, {"kept_fraction", work.kept_fraction()}, {"kv_gbs", kv_gbs},
                            {"tiles", work.tiles}, {"kept_tiles", work.kept_tiles}, {"partial_tiles", work.partial_tiles}};
        j["round_median_s"] = round_seconds;
        if (!o.no_peak) {
            j["fma_peak_gflops"] = peak_gflops;
            j["read_gbs"] = read_gbs;
            j["fraction_of_fma_peak"] = median(peak_ratio);
            j["fraction_of_read_bandwidth"] = median(read_ratio);
            j["round_fraction_of_fma_peak"] = peak_ratio;
            j["round_fraction_of_read_bandwidth"] = read_ratio;
        }
        if (o.dense) j["dense_median_s"] = dense_seconds;
        if (o.stats != "none") {
            j["stats"] = o.stats;
            j["stats_median_s"] = median(round_stats_seconds);
        }
        if (torch) {
            j["torch_median_s"] = torch->first;
            j["torch_backend"] = torch->second;
        } else {
            j["torch"] = torch_note;
        }
        std::puts(j.dump().c_str());
        return 0;
    }
    std::printf("attention %s  T=%lld S=%lld H=%lld Hkv=%lld D=%lld Dv=%lld %s, %d threads, %d rounds of %d runs\n",
                spec.text().empty() ? "(dense)" : spec.text().c_str(), (long long)o.T, (long long)o.S, (long long)o.H,
                (long long)o.Hkv, (long long)o.D, (long long)o.Dv, o.dtype.c_str(), threads, o.rounds, o.repeats);
    std::printf("tiles kept %lld of %lld (%lld partial), kept fraction %.4f\n", (long long)work.kept_tiles,
                (long long)work.tiles, (long long)work.partial_tiles, work.kept_fraction());
    std::printf("| what | value |\n| --- | ---: |\n");
    std::printf("| attnlab time | %.3f ms |\n", seconds * 1e3);
    std::printf("| effective GFLOP/s (kept tiles) | %.1f |\n", gflops);
    auto percents = [](const std::vector<double>& v) {
        std::string s;
        for (double x : v) s += fmt::format("{}{:.1f}", s.empty() ? "" : ", ", 100.0 * x);
        return s;
    };
    if (!o.no_peak) {
        std::printf("| FMA peak (median round) | %.1f GFLOP/s |\n", peak_gflops);
        std::printf("| %% of FMA peak (median of rounds: %s) | %.1f %% |\n", percents(peak_ratio).c_str(),
                    100.0 * median(peak_ratio));
    }
    std::printf("| K/V read | %.2f GB/s |\n", kv_gbs);
    if (!o.no_peak)
        std::printf("| %% of read bandwidth %.1f GB/s (median of rounds: %s) | %.1f %% |\n", read_gbs,
                    percents(read_ratio).c_str(), 100.0 * median(read_ratio));
    if (o.stats != "none") {
        const double ts = median(round_stats_seconds);
        std::printf("| with statistics (%s) time | %.3f ms |\n", o.stats.c_str(), ts * 1e3);
        std::printf("| statistics / plain | %.3f |\n", ts / seconds);
    }
    if (o.dense) {
        std::printf("| dense (no mask) time | %.3f ms |\n", dense_seconds * 1e3);
        std::printf("| time / (kept fraction x dense) | %.3f |\n", seconds / (work.kept_fraction() * dense_seconds));
    }
    if (torch) {
        std::printf("| PyTorch (%s) time | %.3f ms |\n", torch->second.c_str(), torch->first * 1e3);
        std::printf("| speedup vs PyTorch | %.2f x |\n", torch->first / seconds);
    } else {
        std::printf("| PyTorch | %s |\n", torch_note.c_str());
    }
    return 0;
}

}  // namespace

std::function<int()> add_bench_attention(CLI::App& bench) {
    auto o = std::make_shared<Options>();
    CLI::App* app = bench.add_subcommand("attention", "The attention operator alone vs FMA peak, bandwidth and PyTorch");
    app->add_option("--spec", o->spec, "Attention spec (see `attnlab attn-eval --help`)");
    app->add_option("-T", o->T, "Query positions (at S-T .. S-1)")->check(CLI::PositiveNumber);
    app->add_option("-S", o->S, "Key positions (default T)")->check(CLI::NonNegativeNumber);
    app->add_option("-H", o->H, "Query heads")->check(CLI::PositiveNumber);
    app->add_option("--hkv", o->Hkv, "Key/value heads")->check(CLI::PositiveNumber);
    app->add_option("-D", o->D, "Head dim of q and k")->check(CLI::PositiveNumber);
    app->add_option("--dv", o->Dv, "Head dim of v (default D)")->check(CLI::NonNegativeNumber);
    app->add_option("--dtype", o->dtype, "f32 or bf16 inputs (f32 accumulation)");
    app->add_option("-r,--repeats", o->repeats, "Timed runs per round (median)")->check(CLI::PositiveNumber);
    app->add_option("--rounds", o->rounds, "Rounds of (timing, FMA peak, bandwidth); the median round is reported")
        ->check(CLI::PositiveNumber);
    app->add_option("-t,--threads", o->threads, "Threads (default: all cores)")->check(CLI::NonNegativeNumber);
    app->add_flag("--dense", o->dense, "Also time the unmasked problem: sparse cost vs kept fraction");
    app->add_flag("--no-torch", o->no_torch, "Skip the PyTorch comparison");
    app->add_flag("--no-peak", o->no_peak, "Skip measuring FMA peak and read bandwidth");
    app->add_flag("--json", o->json, "One JSON object");
    app->add_option("--stats", o->stats,
                    "Also time the call with in-kernel statistics: rows (the heads probe's) or columns (rows + "
                    "column sums)")
        ->check(CLI::IsMember({"none", "rows", "columns"}));
    app->add_option("--python", o->python, "Python with torch for the comparison");
    app->add_option("--torch-script", o->torch_script, "The PyTorch benchmark script");
    return [o] { return run_bench(*o); };
}

}  // namespace attnlab::cli
