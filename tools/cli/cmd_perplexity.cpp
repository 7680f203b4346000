// attnlab perplexity: perplexity of a model on a text file, by windows (see perplexity.h).
#include "cli_common.h"

#include <attnlab/perplexity.h>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace attnlab::cli {

namespace {

std::string read_text_file(const std::string& path) {
    namespace fs = std::filesystem;
    std::error_code ec;
    ATTNLAB_CHECK(fs::exists(path, ec), IoError, "[perplexity] no such file: {}", path);
    ATTNLAB_CHECK(fs::is_regular_file(path, ec), IoError, "[perplexity] {} is not a regular file", path);
    std::ifstream in(path, std::ios::binary);
    std::ostringstream text;
    text << in.rdbuf();
    ATTNLAB_CHECK(!in.bad(), IoError, "[perplexity] cannot read {}", path);
    ATTNLAB_CHECK(!text.str().empty(), InvalidArgument, "[perplexity] {} is empty", path);
    return text.str();
}

}  // namespace

Command add_perplexity(CLI::App& root) {
    struct Options {
        ModelOptions model;
        std::string file;
        int64_t context = 0;
        int64_t stride = 0;
        bool no_bos = false;
        std::string json;
    };
    auto o = std::make_shared<Options>();
    CLI::App* app = root.add_subcommand("perplexity", "Perplexity of the model on a text file");
    o->model.add_to(*app);
    app->add_option("-f,--file", o->file, "Text file to evaluate")->required();
    app->add_option("--context", o->context, "Tokens per window, BOS included (default: min(ctx-size, 1024))")
        ->check(CLI::NonNegativeNumber);
    app->add_option("--stride", o->stride, "Tokens each window advances by (default: the context)")
        ->check(CLI::NonNegativeNumber);
    app->add_flag("--no-bos", o->no_bos, "Do not start each window with the BOS token");
    app->add_option("--json", o->json, "Also write the result as JSON to this file");
    return {app, [o] {
        const std::string text = read_text_file(o->file);
        auto model = o->model.load();
        ATTNLAB_CHECK(model->tokenizer() != nullptr, InvalidArgument,
                      "[perplexity] {} has no tokenizer.json to tokenise {}", model->directory(), o->file);
        // BOS is the windows' business, not the tokenizer's.
        const std::vector<int32_t> ids = model->tokenizer()->encode(text, /*add_special_tokens=*/false);

        PerplexityOptions options;
        const int64_t limit = o->model.context_length(*model);
        options.context = o->context > 0 ? o->context : std::min<int64_t>(limit, 1024);
        ATTNLAB_CHECK(options.context <= limit, InvalidArgument,
                      "[perplexity] a context of {} exceeds the model's {} (raise it with --ctx-size)",
                      options.context, limit);
        options.stride = o->stride;
        options.add_bos = !o->no_bos;
        const bool show_progress = ::isatty(STDERR_FILENO) == 1;
        if (show_progress)
            options.progress = [](int64_t done, int64_t total) {
                std::fprintf(stderr, "\r[perplexity] window %lld/%lld", static_cast<long long>(done),
                             static_cast<long long>(total));
                std::fflush(stderr);
            };

        const auto t0 = std::chrono::steady_clock::now();
        PerplexityResult r;
        try {
            r = perplexity(*model, ids, options);
        } catch (...) {
            if (show_progress) std::fputs("\r\033[K", stderr);  // the error line replaces the progress
            throw;
        }
        const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        if (show_progress) std::fputs("\r\033[K", stderr);

        if (!o->json.empty()) {
            nlohmann::json out;
            out["model"] = model->directory();
            out["file"] = o->file;
            out["ppl"] = r.ppl;
            out["ppl_stderr"] = r.ppl_stderr;
            out["mean_nll"] = r.mean_nll;
            out["nll_stderr"] = r.nll_stderr;
            out["tokens"] = ids.size();
            out["tokens_scored"] = r.tokens_scored;
            out["windows"] = r.windows;
            out["context"] = r.context;
            out["stride"] = r.stride;
            out["add_bos"] = options.add_bos && model->config().bos_token_id.has_value();
            out["seconds"] = seconds;
            std::ofstream f(o->json, std::ios::binary);
            f << out.dump(2) << '\n';
            ATTNLAB_CHECK(f.good(), IoError, "[perplexity] cannot write {}", o->json);
        }
        std::fputs(fmt::format("{} tokens, {} scored in {} windows of {} (stride {}), {:.2f} s\n", ids.size(),
                               r.tokens_scored, r.windows, r.context, r.stride, seconds)
                       .c_str(),
                   stdout);
        std::fputs(fmt::format("PPL = {:.4f} +/- {:.4f}\n", r.ppl, r.ppl_stderr).c_str(), stdout);
        return 0;
    }};
}

}  // namespace attnlab::cli
