// Shared by the tokenizer tests: fixture tokenizers, loaded once per process.
#pragma once

#include <string>

#include "attnlab/tokenizer.h"

namespace attnlab::test {

// /work/shared/fixtures/tokenizers/<name>/tokenizer.json.xz, decompressed in memory.
const Tokenizer& fixture_tokenizer(const std::string& name);
// models/<name>/tokenizer.json.xz.
const Tokenizer& model_tokenizer(const std::string& name);

}  // namespace attnlab::test
