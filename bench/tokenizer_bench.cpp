// Tokenizer benchmark: load time of a tokenizer.json and single-thread encode/decode
// throughput on a text file (medians of 5 runs).
//
//   tokenizer_bench <tokenizer.json> <text file>
//
// The text is encoded as one string, as a prompt would be. Each encode run uses a freshly
// loaded tokenizer, so the word cache starts cold every time, as in a new process.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "attnlab/error.h"
#include "attnlab/tokenizer.h"

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

std::string read_all(const char* path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw attnlab::IoError(fmt::format("[tokenizer_bench] cannot open '{}'", path));
    return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 3) {
        std::fprintf(stderr, "usage: %s <tokenizer.json> <text file>\n", argv[0]);
        return 2;
    }
    try {
        const std::string json = read_all(argv[1]);
        const std::string text = read_all(argv[2]);
        constexpr int kRuns = 5;
        const double mb = static_cast<double>(text.size()) / 1e6;

        std::vector<double> load_s, encode_s, decode_s;
        size_t n_tokens = 0;
        for (int r = 0; r < kRuns; ++r) {
            auto t0 = std::chrono::steady_clock::now();
            attnlab::Tokenizer tok = attnlab::Tokenizer::from_json(json, argv[1]);
            load_s.push_back(seconds_since(t0));

            t0 = std::chrono::steady_clock::now();
            std::vector<int32_t> ids = tok.encode(text, false);
            encode_s.push_back(seconds_since(t0));
            n_tokens = ids.size();

            t0 = std::chrono::steady_clock::now();
            std::string back = tok.decode(ids, false);
            decode_s.push_back(seconds_since(t0));
            if (r == 0 && back != text) std::fprintf(stderr, "warning: decode(encode(text)) != text\n");
        }
        fmt::print("tokenizer      {} ({:.1f} MB of JSON)\n", argv[1], static_cast<double>(json.size()) / 1e6);
        fmt::print("text           {} ({:.2f} MB, {} tokens, {:.2f} bytes/token)\n", argv[2], mb, n_tokens,
                   static_cast<double>(text.size()) / static_cast<double>(std::max<size_t>(n_tokens, 1)));
        fmt::print("load           {:.3f} s (median of {})\n", median(load_s), kRuns);
        fmt::print("encode         {:.2f} MB/s, {:.0f} tokens/s (median of {})\n", mb / median(encode_s),
                   static_cast<double>(n_tokens) / median(encode_s), kRuns);
        fmt::print("decode         {:.2f} MB/s (median of {})\n", mb / median(decode_s), kRuns);
    } catch (const attnlab::Error& e) {
        std::fprintf(stderr, "%s\n", e.what());
        return 1;
    }
    return 0;
}
