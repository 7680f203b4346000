// The BPE model of tokenizer.json: byte-level vocabularies (GPT-2, Llama-3, Qwen) and
// SentencePiece-style ones (Llama-2, Mistral: byte_fallback <0xNN> tokens, unk, fuse_unk).
// Merges are applied lowest rank first, leftmost first among equal ranks, with a heap over a
// linked list of symbols (no quadratic loop on long words) and a cache of word -> ids.
#pragma once

#include <array>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/json_reader.h"
#include "tokenizer/string_map.h"

namespace attnlab::tok {

// Ids at or above this are refused: tables are indexed by id, and no real vocabulary comes
// near it (the largest known are ~260k).
constexpr int64_t kMaxTokenId = int64_t{1} << 24;

class BpeModel {
public:
    // `model` is the "model" object of tokenizer.json; vocab and merges come from `tj`.
    BpeModel(const TokenizerJson& tj, const Json& model, const Where& where);
    BpeModel(const BpeModel&) = delete;
    BpeModel& operator=(const BpeModel&) = delete;

    // Appends the ids of one pre-token (tokenizers' Model::tokenize).
    void tokenize(std::string_view word, std::vector<int32_t>& ids) const;

    int32_t token_to_id(std::string_view token) const { return vocab_.find(token); }
    std::optional<std::string_view> id_to_token(int32_t id) const;
    int64_t max_id() const { return static_cast<int64_t>(id_offset_.size()) - 1; }

private:
    void tokenize_piece(std::string_view word, std::vector<int32_t>& ids) const;
    void merge_word(std::string_view word, std::vector<int32_t>& ids) const;
    int32_t unk_id() const;

    StringIdMap vocab_;
    std::string id_text_;               // token strings, indexed through id_offset_/id_len_
    std::vector<uint32_t> id_offset_;
    std::vector<uint32_t> id_len_;      // kNoToken: no token has this id
    PairMap merges_;
    std::optional<std::string> unk_token_;
    int32_t unk_id_ = -1;
    bool fuse_unk_ = false;
    bool byte_fallback_ = false;
    bool ignore_merges_ = false;
    std::string prefix_;   // continuing_subword_prefix
    std::string suffix_;   // end_of_word_suffix
    std::array<int32_t, 256> byte_fallback_ids_{};  // id of "<0xNN>", or -1
    std::array<int32_t, 128> ascii_ids_{};          // id of a 1-char ASCII symbol, when no prefix/suffix
    // SentencePiece-style vocabularies without a pre-tokenizer hand the model whole texts.
    // When no token has '▁' after another character, no merge can cross the start of a
    // '▁' that follows another character, so the text is cut there first: the result is the
    // same, and the pieces are short and cacheable.
    bool split_before_metaspace_ = false;

    // Word cache, shared by threads: word -> offset into cache_ids_ ([count, ids...]).
    mutable std::mutex cache_mutex_;
    mutable StringIdMap cache_index_;
    mutable std::vector<int32_t> cache_ids_;
};

}  // namespace attnlab::tok
