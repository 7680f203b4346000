// attnlab tokenize / detokenize.
#include "cli_common.h"

#include <nlohmann/json.hpp>

#include <cstdio>

namespace attnlab::cli {

static std::string dump(const nlohmann::json& j) {
    return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

Command add_tokenize(CLI::App& root) {
    struct Options {
        std::string model_dir, text;
        bool no_special = false, json = false;
    };
    auto o = std::make_shared<Options>();
    CLI::App* app = root.add_subcommand("tokenize", "Text to token ids");
    app->add_option("-m,--model", o->model_dir, "Model directory (or a tokenizer.json file)")->required();
    app->add_option("--text", o->text, "Text to tokenise")->required();
    app->add_flag("--no-special", o->no_special, "Do not add special tokens");
    app->add_flag("--json", o->json, "Print {\"ids\": [...], \"tokens\": [...]}");
    return {app, [o] {
        Tokenizer tok = load_tokenizer(o->model_dir);
        std::vector<int32_t> ids = tok.encode(o->text, !o->no_special);
        if (o->json) {
            nlohmann::json out;
            out["ids"] = ids;
            out["tokens"] = tok.encode_tokens(o->text, !o->no_special);
            std::puts(dump(out).c_str());
        } else {
            for (size_t i = 0; i < ids.size(); ++i) std::printf("%s%d", i ? "," : "", ids[i]);
            std::puts("");
        }
        return 0;
    }};
}

Command add_detokenize(CLI::App& root) {
    struct Options {
        std::string model_dir, ids;
        bool skip_special = false;
    };
    auto o = std::make_shared<Options>();
    CLI::App* app = root.add_subcommand("detokenize", "Token ids to text");
    app->add_option("-m,--model", o->model_dir, "Model directory (or a tokenizer.json file)")->required();
    app->add_option("--ids", o->ids, "Token ids, comma separated")->required();
    app->add_flag("--skip-special", o->skip_special, "Leave special tokens out");
    return {app, [o] {
        Tokenizer tok = load_tokenizer(o->model_dir);
        std::vector<int32_t> ids = parse_ids(o->ids);
        std::string text = tok.decode(ids, o->skip_special);
        std::fwrite(text.data(), 1, text.size(), stdout);
        std::puts("");
        return 0;
    }};
}

}  // namespace attnlab::cli
