// Post-processors of tokenizer.json: what add_special_tokens=true adds around an encoded
// sequence (TemplateProcessing, RobertaProcessing, BertProcessing; ByteLevel only trims
// offsets, which attnlab does not report). Pair templates are not used.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "tokenizer/json_reader.h"

namespace attnlab::tok {

class PostProcessor {
public:
    virtual ~PostProcessor() = default;
    // Called only when add_special_tokens is true. `tokens` runs parallel to `ids`.
    virtual void process(std::vector<int32_t>& ids, std::vector<std::string>& tokens) const = 0;
    // Ids this processor can emit, to check them against the vocabulary.
    virtual std::vector<int32_t> emitted_ids() const = 0;
};

std::unique_ptr<PostProcessor> build_post_processor(const Json& j, const Where& where, int depth = 0);

}  // namespace attnlab::tok
