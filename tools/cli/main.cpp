// The attnlab command line: one subcommand per file (cmd_*.cpp). Every error is one line on
// stderr and a non-zero exit: 2 for usage errors, 1 for everything else.
#include "cli_common.h"
#include "probe_common.h"

#include <attnlab/error.h>

#include <cstdio>
#include <exception>

int main(int argc, char** argv) {
    using namespace attnlab::cli;
    CLI::App app{"attnlab: attention research and inference engine"};
    app.require_subcommand(1);
    std::vector<Command> commands = {add_generate(app), add_run(app),   add_tokenize(app),
                                     add_detokenize(app), add_inspect(app), add_bench(app),
                                     add_make_model(app), add_perplexity(app), add_attn_eval(app),
                                     add_probe(app), add_report(app),
                                     add_patch(app)};
    // CLI11 reports an unknown subcommand only as "a subcommand is required": name it instead.
    if (argc > 1 && argv[1][0] != '-') {
        std::string known;
        bool found = false;
        for (const Command& c : commands) {
            found = found || c.app->get_name() == argv[1];
            known += (known.empty() ? "" : ", ") + c.app->get_name();
        }
        if (!found) {
            std::fprintf(stderr, "attnlab: error: unknown subcommand '%s' (expected one of: %s)\n", argv[1],
                         known.c_str());
            return 2;
        }
    }
    try {
        app.parse(argc, argv);
    } catch (const CLI::CallForHelp& e) {
        return app.exit(e);
    } catch (const CLI::CallForAllHelp& e) {
        return app.exit(e);
    } catch (const CLI::ParseError& e) {
        std::fprintf(stderr, "attnlab: error: %s\n", e.what());
        return 2;
    }
    try {
        for (const Command& c : commands)
            if (c.app->parsed()) return c.run();
    } catch (const attnlab::Error& e) {
        std::fflush(stdout);
        std::fprintf(stderr, "attnlab: error: %s\n", e.what());
        return 1;
    } catch (const std::bad_alloc&) {
        std::fprintf(stderr, "attnlab: error: out of memory\n");
        return 1;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "attnlab: error: %s\n", e.what());
        return 1;
    }
    return 2;
}
