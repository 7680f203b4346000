// Tokenizer: loads tokenizer.json and runs tokenizers' pipeline — added tokens in the raw
// text, normalizer, added tokens in the normalized text, pre-tokenizer, BPE, post-processor —
// and the decoder chain the other way.
#include "attnlab/tokenizer.h"

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <unordered_map>

#include "attnlab/error.h"
#include "tokenizer/added_tokens.h"
#include "tokenizer/bpe.h"
#include "tokenizer/decoders.h"
#include "tokenizer/json_reader.h"
#include "tokenizer/normalizers.h"
#include "tokenizer/post_processors.h"
#include "tokenizer/pre_tokenizers.h"
#include "tokenizer/unicode.h"

namespace attnlab {

using tok::Json;
using tok::Where;

struct Tokenizer::Impl {
    std::string origin;
    std::unique_ptr<tok::Normalizer> normalizer;
    std::unique_ptr<tok::PreTokenizer> pre_tokenizer;
    std::unique_ptr<tok::BpeModel> model;
    std::unique_ptr<tok::PostProcessor> post_processor;
    std::unique_ptr<tok::Decoder> decoder;
    std::vector<tok::AddedToken> added;
    std::unordered_map<int32_t, size_t> added_by_id;  // id -> index into `added`
    tok::StringIdMap added_by_content;
    tok::AddedTokenMatcher raw_matcher;         // added tokens with normalized=false
    tok::AddedTokenMatcher normalized_matcher;  // normalized=true, matched after the normalizer
    int64_t vocab_size = 0;

    // Appends the encoding of `text` (no post-processing). `tokens` may be null.
    void encode_into(std::string_view text, std::vector<int32_t>& ids, std::vector<std::string>* tokens) const;
    void encode_normalized(std::string&& text, bool at_start, std::vector<int32_t>& ids,
                           std::vector<std::string>* tokens) const;
    void encode_words(tok::Piece&& piece, std::vector<int32_t>& ids, std::vector<std::string>* tokens) const;
    std::string token_text(int32_t id) const;

    static std::unique_ptr<Impl> build(std::string_view json_text, const std::string& origin);
    void load_added_tokens(const Json& root, const Where& where);
};

void Tokenizer::Impl::load_added_tokens(const Json& root, const Where& where) {
    Impl& impl = *this;
    const Json* list = where.find(root, "added_tokens");
    if (!list) return;
    Where wl = where.field("added_tokens");
    if (!list->is_array()) wl.fail("expected an array");
    for (size_t k = 0; k < list->size(); ++k) {
        Where w = wl.index(k);
        const Json& j = w.object((*list)[k]);
        tok::AddedToken t;
        t.content = w.get_string(j, "content");
        int64_t id = w.get_int(j, "id");
        if (id < 0 || id >= tok::kMaxTokenId) w.field("id").fail(fmt::format("id {} is out of range", id));
        t.special = w.get_bool(j, "special", false);
        t.single_word = w.get_bool(j, "single_word", false);
        t.lstrip = w.get_bool(j, "lstrip", false);
        t.rstrip = w.get_bool(j, "rstrip", false);
        t.normalized = w.get_bool(j, "normalized", !t.special);
        if (t.content.empty()) continue;  // tokenizers ignores empty added tokens
        // A content already in the vocabulary keeps the vocabulary's id, as in tokenizers.
        int32_t existing = impl.added_by_content.find(t.content);
        if (existing < 0) existing = impl.model->token_to_id(t.content);
        t.id = existing >= 0 ? existing : static_cast<int32_t>(id);
        impl.added_by_content.assign(t.content, t.id);
        impl.added_by_id[t.id] = impl.added.size();
        impl.added.push_back(std::move(t));
    }
    for (const tok::AddedToken& t : impl.added) {
        if (!t.normalized) {
            impl.raw_matcher.add(t.content, t);
        } else {
            std::string pattern = t.content;
            bool at_start = true;
            if (impl.normalizer) impl.normalizer->normalize(pattern, at_start);
            impl.normalized_matcher.add(pattern, t);
        }
    }
}

std::unique_ptr<Tokenizer::Impl> Tokenizer::Impl::build(std::string_view json_text, const std::string& origin) {
    auto impl = std::make_unique<Impl>();
    impl->origin = origin;
    tok::TokenizerJson tj = tok::parse_tokenizer_json(json_text, impl->origin);
    Where root(impl->origin, "");
    const Json& r = tj.root;

    const Json* model = root.find(r, "model");
    if (!model) root.fail("missing field 'model'");
    Where wm = root.field("model");
    wm.object(*model);
    auto type = wm.get_optional_string(*model, "type");
    if (!type) {
        // Old files leave out "type"; tokenizers then recognises BPE by its merges.
        if (!tj.merges_captured) wm.fail("missing field 'type'");
        type = "BPE";
    }
    if (*type != "BPE")
        wm.field("type").unsupported(fmt::format("model type '{}' is not supported (only BPE)", *type));

    impl->normalizer = tok::build_normalizer(r.value("normalizer", Json()), root.field("normalizer"));
    impl->pre_tokenizer = tok::build_pre_tokenizer(r.value("pre_tokenizer", Json()), root.field("pre_tokenizer"));
    impl->post_processor = tok::build_post_processor(r.value("post_processor", Json()), root.field("post_processor"));
    impl->decoder = tok::build_decoder(r.value("decoder", Json()), root.field("decoder"));
    impl->model = std::make_unique<tok::BpeModel>(tj, *model, wm);
    impl->load_added_tokens(r, root);

    int64_t max_id = impl->model->max_id();
    for (const tok::AddedToken& t : impl->added) max_id = std::max<int64_t>(max_id, t.id);
    impl->vocab_size = max_id + 1;
    return impl;
}

std::string Tokenizer::Impl::token_text(int32_t id) const {
    auto t = model->id_to_token(id);
    return t ? std::string(*t) : std::string();
}

void Tokenizer::Impl::encode_words(tok::Piece&& piece, std::vector<int32_t>& ids,
                                   std::vector<std::string>* tokens) const {
    size_t first = ids.size();
    if (pre_tokenizer) {
        pre_tokenizer->split(std::move(piece), [&](tok::Piece&& word) { model->tokenize(word.text, ids); });
    } else {
        model->tokenize(piece.text, ids);
    }
    if (tokens)
        for (size_t k = first; k < ids.size(); ++k) tokens->push_back(token_text(ids[k]));
}

void Tokenizer::Impl::encode_normalized(std::string&& text, bool at_start, std::vector<int32_t>& ids,
                                        std::vector<std::string>* tokens) const {
    if (normalizer) normalizer->normalize(text, at_start);
    if (text.empty()) return;
    if (normalized_matcher.empty()) {
        encode_words(tok::Piece{std::move(text), -1, at_start}, ids, tokens);
        return;
    }
    std::vector<tok::Segment> segments;
    normalized_matcher.split(text, segments);
    for (const tok::Segment& s : segments) {
        if (s.id >= 0) {
            ids.push_back(s.id);
            if (tokens) tokens->push_back(text.substr(s.begin, s.end - s.begin));
        } else {
            encode_words(tok::Piece{text.substr(s.begin, s.end - s.begin), -1, at_start && s.begin == 0}, ids, tokens);
        }
    }
}

void Tokenizer::Impl::encode_into(std::string_view text, std::vector<int32_t>& ids,
                                  std::vector<std::string>* tokens) const {
    size_t bad = tok::find_invalid_utf8(text);
    if (bad != std::string_view::npos)
        throw InvalidArgument(fmt::format("[tokenizer] {}: input text is not valid UTF-8 (byte {} at offset {})",
                                          origin, static_cast<unsigned>(static_cast<unsigned char>(text[bad])), bad));
    if (text.empty()) return;
    if (raw_matcher.empty()) {
        encode_normalized(std::string(text), true, ids, tokens);
        return;
    }
    std::vector<tok::Segment> segments;
    raw_matcher.split(text, segments);
    for (const tok::Segment& s : segments) {
        if (s.id >= 0) {
            ids.push_back(s.id);
            if (tokens) tokens->emplace_back(text.substr(s.begin, s.end - s.begin));
        } else {
            encode_normalized(std::string(text.substr(s.begin, s.end - s.begin)), s.begin == 0, ids, tokens);
        }
    }
}

Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;
Tokenizer::~Tokenizer() = default;

Tokenizer Tokenizer::from_file(const std::string& path) {
    std::error_code ec;
    if (std::filesystem::is_directory(path, ec))
        throw IoError(fmt::format("[tokenizer] '{}' is a directory, expected a tokenizer.json file", path));
    std::ifstream in(path, std::ios::binary);
    if (!in) throw IoError(fmt::format("[tokenizer] cannot open '{}': {}", path, std::strerror(errno)));
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (in.bad()) throw IoError(fmt::format("[tokenizer] cannot read '{}'", path));
    return from_json(text, path);
}

Tokenizer Tokenizer::from_json(std::string_view json_text, const std::string& origin) {
    return Tokenizer(Impl::build(json_text, origin));
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_special_tokens) const {
    std::vector<int32_t> ids;
    impl_->encode_into(text, ids, nullptr);
    if (add_special_tokens && impl_->post_processor) {
        std::vector<std::string> unused;
        impl_->post_processor->process(ids, unused);
    }
    return ids;
}

std::vector<std::string> Tokenizer::encode_tokens(std::string_view text, bool add_special_tokens) const {
    std::vector<int32_t> ids;
    std::vector<std::string> tokens;
    impl_->encode_into(text, ids, &tokens);
    if (add_special_tokens && impl_->post_processor) impl_->post_processor->process(ids, tokens);
    return tokens;
}

std::string Tokenizer::decode(std::span<const int32_t> ids, bool skip_special_tokens) const {
    std::vector<std::string> tokens;
    tokens.reserve(ids.size());
    for (size_t k = 0; k < ids.size(); ++k) {
        int32_t id = ids[k];
        if (id < 0 || id >= impl_->vocab_size)
            throw InvalidArgument(fmt::format("[tokenizer] decode: id {} at position {} is outside the vocabulary [0, {})",
                                              id, k, impl_->vocab_size));
        auto it = impl_->added_by_id.find(id);
        if (it != impl_->added_by_id.end()) {
            const tok::AddedToken& t = impl_->added[it->second];
            if (!(skip_special_tokens && t.special)) tokens.push_back(t.content);
        } else if (auto t = impl_->model->id_to_token(id)) {
            tokens.emplace_back(*t);
        }
        // An id inside the range that no token has is skipped, as tokenizers does.
    }
    std::string out;
    if (impl_->decoder) {
        impl_->decoder->decode_chain(tokens);
        for (const std::string& t : tokens) out.append(t);
    } else {
        for (size_t k = 0; k < tokens.size(); ++k) {
            if (k > 0) out.push_back(' ');
            out.append(tokens[k]);
        }
    }
    return out;
}

int64_t Tokenizer::vocab_size() const { return impl_->vocab_size; }

std::optional<std::string> Tokenizer::id_to_token(int32_t id) const {
    auto it = impl_->added_by_id.find(id);
    if (it != impl_->added_by_id.end()) return impl_->added[it->second].content;
    if (auto t = impl_->model->id_to_token(id)) return std::string(*t);
    return std::nullopt;
}

std::optional<int32_t> Tokenizer::token_to_id(std::string_view token) const {
    int32_t id = impl_->added_by_content.find(token);
    if (id < 0) id = impl_->model->token_to_id(token);
    if (id < 0) return std::nullopt;
    return id;
}

bool Tokenizer::is_special(int32_t id) const {
    auto it = impl_->added_by_id.find(id);
    return it != impl_->added_by_id.end() && impl_->added[it->second].special;
}

// Streaming follows tokenizers' DecodeStream: decode a window of context ids plus the new
// one, and return what the decode adds after the window's previous text. A decode that ends
// in U+FFFD may be a character still missing bytes, so it is held back.
DetokenizeStream::DetokenizeStream(const Tokenizer& tokenizer, bool skip_special_tokens)
    : tokenizer_(tokenizer), skip_special_(skip_special_tokens) {}

std::string DetokenizeStream::push(int32_t id) {
    ids_.push_back(id);
    std::string text;
    try {
        text = tokenizer_.decode(ids_, skip_special_);
    } catch (...) {
        ids_.pop_back();
        throw;
    }
    static constexpr std::string_view kReplacement = "\xEF\xBF\xBD";
    bool held = text.size() >= kReplacement.size() &&
                text.compare(text.size() - kReplacement.size(), kReplacement.size(), kReplacement) == 0;
    if (text.size() <= prefix_.size() || held) return {};
    // The window's text normally extends its previous text; if a decoder rewrote earlier
    // characters, return only what lies past the common part (already-returned text cannot
    // be taken back).
    size_t common = 0;
    while (common < prefix_.size() && prefix_[common] == text[common]) ++common;
    std::string fresh = text.substr(common == prefix_.size() ? prefix_.size() : common);
    size_t new_prefix_index = ids_.size() - prefix_index_;
    ids_.erase(ids_.begin(), ids_.begin() + static_cast<ptrdiff_t>(prefix_index_));
    prefix_ = tokenizer_.decode(ids_, skip_special_);
    prefix_index_ = new_prefix_index;
    emitted_bytes_ += fresh.size();
    return fresh;
}

std::string DetokenizeStream::finish() {
    std::string text = tokenizer_.decode(ids_, skip_special_);
    std::string rest;
    if (text.size() > prefix_.size() && text.compare(0, prefix_.size(), prefix_) == 0) rest = text.substr(prefix_.size());
    ids_.clear();
    prefix_.clear();
    prefix_index_ = 0;
    emitted_bytes_ += rest.size();
    return rest;
}

}  // namespace attnlab
