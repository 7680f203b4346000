// attnlab probe logit-lens: the residual after each layer through the final norm and
// unembedding, and direct logit attribution of target tokens (see probe_logit_lens.h,
// docs/probes.md).
#include "probe_common.h"

#include <attnlab/probe_logit_lens.h>

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>

namespace attnlab::cli {

namespace {

constexpr const char* kWhere = "probe logit-lens";

// "-1,5" -> {-1, 5}: positions may count from the end.
std::vector<int64_t> parse_positions(const std::string& text) {
    std::vector<int64_t> out;
    size_t start = 0;
    while (start <= text.size()) {
        const size_t comma = std::min(text.find(',', start), text.size());
        const std::string item = text.substr(start, comma - start);
        char* end = nullptr;
        errno = 0;
        const long long v = std::strtoll(item.c_str(), &end, 10);
        ATTNLAB_CHECK(!item.empty() && errno == 0 && *end == '\0', InvalidArgument,
                      "[{}] --positions: '{}' is not an integer", kWhere, item);
        out.push_back(v);
        start = comma + 1;
    }
    return out;
}

// A target is a token id, or a text that the tokenizer encodes as exactly one token.
int32_t resolve_target(const Model& model, const std::string& text) {
    if (!text.empty() && std::all_of(text.begin(), text.end(), [](char ch) { return ch >= '0' && ch <= '9'; }))
        return parse_ids(text).front();
    const std::vector<int32_t> ids = require_tokenizer(model).encode(text, false);
    ATTNLAB_CHECK(ids.size() == 1, InvalidArgument,
                  "[{}] --target '{}' is {} tokens; give a single token (mind a leading space) or its id", kWhere, text,
                  ids.size());
    return ids.front();
}

std::string show(const std::string& text) {  // one line per token in the table
    std::string s;
    for (char ch : text) s += ch == '\n' ? std::string("\\n") : ch == '|' ? std::string("\\|") : std::string(1, ch);
    return s;
}

std::string token_label(int32_t id, const std::string& text) {
    return text.empty() ? fmt::format("{}", id) : fmt::format("{} '{}'", id, show(text));
}

}  // namespace

Command add_probe_logit_lens(CLI::App& probe) {
    struct Options {
        ModelOptions model;
        ProbeInputOptions input;
        int64_t sequence = 0;
        std::string positions;
        std::vector<std::string> targets;
        int64_t top_k = 5;
        bool no_attribution = false;
        std::string json;
    };
    auto o = std::make_shared<Options>();
    CLI::App* app = probe.add_subcommand(
        "logit-lens", "The residual after each layer read as logits, and direct logit attribution of target tokens");
    o->model.add_to(*app);
    o->input.add_to(*app);
    app->add_option("--sequence", o->sequence, "Which sequence of --input to probe (default 0)")
        ->check(CLI::NonNegativeNumber);
    app->add_option("--positions", o->positions, "Positions to read, e.g. -1,5 (negative: from the end; default -1)");
    app->add_option("--target", o->targets,
                    "Target tokens (ids, or texts of one token); default: the model's own next token");
    app->add_option("--top-k", o->top_k, "Tokens listed per layer (default 5)");
    app->add_flag("--no-attribution", o->no_attribution, "Skip direct logit attribution");
    app->add_option("--json", o->json, "Write the result as JSON");
    return {app, [o] {
        auto model = o->model.load();
        const auto sequences = o->input.resolve(*model);
        ATTNLAB_CHECK(o->sequence < static_cast<int64_t>(sequences.size()), InvalidArgument,
                      "[{}] --sequence {}: the input holds {} sequence(s)", kWhere, o->sequence, sequences.size());
        LogitLensOptions options;
        if (!o->positions.empty()) options.positions = parse_positions(o->positions);
        for (const std::string& t : o->targets) options.targets.push_back(resolve_target(*model, t));
        options.top_k = o->top_k;
        options.attribution = !o->no_attribution;
        LogitLensResult result;
        {
            ProgressBar bar(kWhere);
            result = probe_logit_lens(*model, sequences[o->sequence], options, bar.control());
        }
        for (const LensPosition& p : result.positions) {
            std::printf("position %lld (token %lld, next %s)\n", (long long)p.position, (long long)p.token,
                        p.next_token >= 0 ? fmt::format("{}", p.next_token).c_str() : "-");
            std::string header = "| layer | top tokens (prob) |";
            for (size_t k = 0; k < p.targets.size(); ++k)
                header += fmt::format(" target {} logit / prob / rank |",
                                      token_label(p.targets[k], k < p.target_text.size() ? p.target_text[k] : ""));
            std::printf("%s\n", header.c_str());
            std::printf("| ---: | --- |%s\n", [&] {
                std::string s;
                for (size_t k = 0; k < p.targets.size(); ++k) s += " ---: |";
                return s;
            }().c_str());
            for (const LensLayer& l : p.layers) {
                std::string top;
                for (const LensToken& t : l.top) top += fmt::format("{}{} ({:.3f})", top.empty() ? "" : ", ",
                                                                    token_label(t.id, t.text), t.prob);
                std::string cells;
                for (size_t k = 0; k < l.target_logit.size(); ++k)
                    cells += fmt::format(" {:.3f} / {:.4f} / {} |", l.target_logit[k], l.target_prob[k], l.target_rank[k]);
                std::printf("| %lld | %s |%s\n", (long long)l.layer, top.c_str(), cells.c_str());
            }
            for (const LogitAttribution& a : p.attribution) {
                // The largest components by |DLA|, so the summary fits a terminal.
                std::vector<std::pair<double, std::string>> parts = {{a.embed, "embed"}};
                if (a.pos_embed != 0) parts.push_back({a.pos_embed, "pos_embed"});
                if (a.norm_bias != 0) parts.push_back({a.norm_bias, "norm_bias"});
                for (size_t l = 0; l < a.mlp.size(); ++l) {
                    parts.push_back({a.mlp[l], fmt::format("mlp {}", l)});
                    if (a.heads.empty()) parts.push_back({a.attn[l], fmt::format("attn {}", l)});
                    else
                        for (size_t h = 0; h < a.heads[l].size(); ++h)
                            parts.push_back({a.heads[l][h], fmt::format("head {}:{}", l, h)});
                }
                std::sort(parts.begin(), parts.end(),
                          [](const auto& x, const auto& y) { return std::fabs(x.first) > std::fabs(y.first); });
                std::string list;
                for (size_t i = 0; i < parts.size() && i < 6; ++i)
                    list += fmt::format("{}{} {:+.3f}", i ? ", " : "", parts[i].second, parts[i].first);
                std::printf("DLA of %d: logit %.4f (pre-softcap) = sum %.4f; largest: %s\n", a.target, a.logit, a.total,
                            list.c_str());
            }
        }
        if (!o->json.empty()) {
            write_text_file(o->json, result.to_json(), kWhere);
            std::printf("wrote %s\n", o->json.c_str());
        }
        return 0;
    }};
}

}  // namespace attnlab::cli
