// attnlab report: the self-contained HTML report of a model's attention on a prompt
// (attention_report.h): OUT_DIR/report.html, report.json, patterns/*.png.
#include "probe_common.h"

#include <attnlab/attention_report.h>

#include <cstdio>

namespace attnlab::cli {

Command add_report(CLI::App& root) {
    struct Options {
        ModelOptions model;
        InterventionOptions intervene;
        std::string text, file, ids, out_dir;
        bool no_special = false;
        int64_t repeat_block = 50, max_pattern_tokens = 256;
    };
    auto o = std::make_shared<Options>();
    CLI::App* app = root.add_subcommand("report", "Write an HTML report of what every head does on a prompt");
    o->model.add_to(*app);
    o->intervene.add_to(*app);
    app->add_option("-p,--prompt", o->text, "The prompt");
    app->add_option("-f,--file", o->file, "A text file as the prompt");
    app->add_option("--ids", o->ids, "The prompt as token ids, e.g. 0,5,7");
    app->add_flag("--no-special", o->no_special, "Do not add the tokenizer's special tokens (BOS)");
    app->add_option("-o,--out", o->out_dir, "Output directory (report.html, report.json, patterns/)")->required();
    app->add_option("--repeat-block", o->repeat_block, "Induction scores on BOS + N random tokens twice (0: skip)")
        ->check(CLI::NonNegativeNumber);
    app->add_option("--max-pattern-tokens", o->max_pattern_tokens, "Pattern images show at most the last N tokens")
        ->check(CLI::PositiveNumber);
    return {app, [o] {
        auto model = o->model.load();
        ProbeInputOptions input;
        input.text = o->text;
        input.file = o->file;
        input.ids = o->ids;
        input.no_special = o->no_special;
        const std::vector<int32_t> prompt = input.resolve(*model).front();
        AttentionReportOptions options;
        options.prompt_label = !o->text.empty() ? o->text : (!o->file.empty() ? o->file : "");
        options.repeat_block = o->repeat_block;
        options.max_pattern_tokens = o->max_pattern_tokens;
        const TokenSegments segments = o->intervene.segments();
        InterventionSet interventions = o->intervene.interventions(*model, segments);
        options.segments = &segments;
        if (!interventions.empty()) {
            options.intervention = &interventions;
            options.intervention_lines = interventions.describe();
        }
        AttentionReportFiles files;
        {
            ProgressBar bar("report");
            files = write_attention_report(*model, prompt, o->out_dir, options, bar.control());
        }
        std::printf("wrote %s\n      %s\n      %zu pattern images in %s\n", files.html.c_str(), files.json.c_str(),
                    files.patterns.size(), (std::filesystem::path(o->out_dir) / "patterns").c_str());
        return 0;
    }};
}

}  // namespace attnlab::cli
