// The attnlab command line: dispatches to one subcommand per file (cmd_*.cpp).
#include <attnlab/error.h>

#include <cstdio>

int main(int argc, char** argv) {
    std::fprintf(stderr, "attnlab: no subcommand yet\n");
    return 1;
}
