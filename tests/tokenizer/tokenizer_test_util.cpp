#include "tokenizer_test_util.h"

#include <map>
#include <memory>
#include <mutex>

#include "test_support.h"

namespace attnlab::test {

namespace {

const Tokenizer& load_cached(const std::filesystem::path& xz) {
    static std::mutex mutex;
    static std::map<std::string, std::unique_ptr<Tokenizer>> cache;
    std::lock_guard lock(mutex);
    auto& slot = cache[xz.string()];
    if (!slot) slot = std::make_unique<Tokenizer>(Tokenizer::from_json(decompress_xz(xz), xz.string()));
    return *slot;
}

}  // namespace

const Tokenizer& fixture_tokenizer(const std::string& name) {
    return load_cached(fixtures_dir() / "tokenizers" / name / "tokenizer.json.xz");
}

const Tokenizer& model_tokenizer(const std::string& name) {
    return load_cached(fixtures_dir() / "models" / name / "tokenizer.json.xz");
}

}  // namespace attnlab::test
