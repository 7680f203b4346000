#include "tokenizer/bpe.h"

#include <algorithm>

#include "attnlab/error.h"
#include "tokenizer/unicode.h"

namespace attnlab::tok {

namespace {

constexpr uint32_t kNoToken = 0xFFFFFFFFu;
constexpr size_t kMaxCachedWord = 256;     // bytes; longer words are rare and not worth keeping
constexpr size_t kMaxCacheEntries = 1 << 17;
constexpr size_t kMaxCacheIds = 1 << 21;
constexpr std::string_view kMetaspace = "\xE2\x96\x81";  // U+2581

// True when `token` has '▁' right after a character other than '▁'.
bool has_inner_metaspace(std::string_view token) {
    for (size_t pos = token.find(kMetaspace, 1); pos != std::string_view::npos; pos = token.find(kMetaspace, pos + 1))
        if (pos < kMetaspace.size() || token.substr(pos - kMetaspace.size(), kMetaspace.size()) != kMetaspace)
            return true;
    return false;
}

struct Symbol {
    int32_t id;
    int32_t prev;
    int32_t next;
    bool removed;
};

struct QueuedMerge {
    uint32_t rank;
    int32_t pos;
    int32_t new_id;
};

// Heap order: lowest rank first, then leftmost.
struct LaterMerge {
    bool operator()(const QueuedMerge& a, const QueuedMerge& b) const {
        return a.rank != b.rank ? a.rank > b.rank : a.pos > b.pos;
    }
};

}  // namespace

BpeModel::BpeModel(const TokenizerJson& tj, const Json& model, const Where& where) {
    if (const Json* d = where.find(model, "dropout")) {
        if (!d->is_number()) where.field("dropout").fail("expected a number or null");
        if (d->get<double>() > 0.0)
            where.field("dropout").unsupported("BPE dropout is random at encode time and not supported");
    }
    unk_token_ = where.get_optional_string(model, "unk_token");
    prefix_ = where.get_string(model, "continuing_subword_prefix", "");
    suffix_ = where.get_string(model, "end_of_word_suffix", "");
    fuse_unk_ = where.get_bool(model, "fuse_unk", false);
    byte_fallback_ = where.get_bool(model, "byte_fallback", false);
    ignore_merges_ = where.get_bool(model, "ignore_merges", false);

    if (!tj.vocab_captured) {
        if (where.find(model, "vocab")) where.field("vocab").fail("expected an object of token: id");
        where.fail("missing field 'vocab'");
    }
    if (!tj.merges_captured) {
        if (where.find(model, "merges")) where.field("merges").fail("expected an array of merges");
        where.fail("missing field 'merges'");
    }

    int64_t max_id = -1;
    for (const VocabEntry& e : tj.vocab) {
        if (e.id < 0 || e.id >= kMaxTokenId)
            where.field("vocab").fail(fmt::format("token '{}' has id {}, outside [0, {})", tj.vocab_token(e), e.id, kMaxTokenId));
        max_id = std::max(max_id, e.id);
    }
    vocab_.reserve(tj.vocab.size());
    id_offset_.assign(static_cast<size_t>(max_id + 1), 0);
    id_len_.assign(static_cast<size_t>(max_id + 1), kNoToken);
    id_text_.reserve(tj.vocab_text.size());
    for (const VocabEntry& e : tj.vocab) {
        std::string_view token = tj.vocab_token(e);
        auto id = static_cast<int32_t>(e.id);
        vocab_.assign(token, id);
        id_offset_[id] = static_cast<uint32_t>(id_text_.size());
        id_len_[id] = static_cast<uint32_t>(token.size());
        id_text_.append(token);
    }

    merges_.reserve(tj.merges.size());
    std::string merged;
    for (size_t rank = 0; rank < tj.merges.size(); ++rank) {
        const MergeEntry& m = tj.merges[rank];
        std::string_view a = tj.merge_left(m), b = tj.merge_right(m);
        auto w = [&] { return where.field("merges").index(rank); };  // only built for an error
        int32_t a_id = vocab_.find(a);
        if (a_id < 0) w().fail(fmt::format("merge token '{}' is not in the vocabulary", a));
        int32_t b_id = vocab_.find(b);
        if (b_id < 0) w().fail(fmt::format("merge token '{}' is not in the vocabulary", b));
        if (b.size() < prefix_.size()) w().fail(fmt::format("merge token '{}' is shorter than continuing_subword_prefix", b));
        merged.assign(a);
        merged.append(b.substr(prefix_.size()));
        int32_t new_id = vocab_.find(merged);
        if (new_id < 0) w().fail(fmt::format("merged token '{}' is not in the vocabulary", merged));
        merges_.assign(a_id, b_id, MergeValue{static_cast<uint32_t>(rank), new_id});
    }

    if (unk_token_) unk_id_ = vocab_.find(*unk_token_);
    split_before_metaspace_ = !ignore_merges_ && prefix_.empty() && suffix_.empty();
    for (size_t k = 0; k < tj.vocab.size() && split_before_metaspace_; ++k)
        if (has_inner_metaspace(tj.vocab_token(tj.vocab[k]))) split_before_metaspace_ = false;
    for (int b = 0; b < 256; ++b)
        byte_fallback_ids_[b] = vocab_.find(fmt::format("<0x{:02X}>", b));
    for (int c = 0; c < 128; ++c) {
        char ch = static_cast<char>(c);
        ascii_ids_[c] = prefix_.empty() && suffix_.empty() ? vocab_.find(std::string_view(&ch, 1)) : -1;
    }
}

std::optional<std::string_view> BpeModel::id_to_token(int32_t id) const {
    if (id < 0 || static_cast<size_t>(id) >= id_len_.size() || id_len_[id] == kNoToken) return std::nullopt;
    return std::string_view(id_text_.data() + id_offset_[id], id_len_[id]);
}

int32_t BpeModel::unk_id() const {
    if (unk_id_ < 0)
        throw InvalidArgument(fmt::format("[tokenizer] unk_token '{}' is not in the vocabulary", *unk_token_));
    return unk_id_;
}

void BpeModel::tokenize(std::string_view word, std::vector<int32_t>& ids) const {
    if (word.empty()) return;
    if (ignore_merges_) {
        int32_t id = vocab_.find(word);
        if (id >= 0) {
            ids.push_back(id);
            return;
        }
    }
    if (!split_before_metaspace_) {
        tokenize_piece(word, ids);
        return;
    }
    size_t begin = 0;
    for (size_t pos = word.find(kMetaspace, 1); pos != std::string_view::npos;
         pos = word.find(kMetaspace, pos + kMetaspace.size())) {
        bool after_metaspace = pos >= begin + kMetaspace.size() &&
                               word.substr(pos - kMetaspace.size(), kMetaspace.size()) == kMetaspace;
        if (after_metaspace || pos == begin) continue;
        tokenize_piece(word.substr(begin, pos - begin), ids);
        begin = pos;
    }
    tokenize_piece(word.substr(begin), ids);
}

void BpeModel::tokenize_piece(std::string_view word, std::vector<int32_t>& ids) const {
    bool cacheable = word.size() <= kMaxCachedWord;
    if (cacheable) {
        std::lock_guard lock(cache_mutex_);
        int32_t at = cache_index_.find(word);
        if (at >= 0) {
            const int32_t* p = cache_ids_.data() + at;
            ids.insert(ids.end(), p + 1, p + 1 + p[0]);
            return;
        }
    }
    size_t first = ids.size();
    merge_word(word, ids);
    if (cacheable) {
        std::lock_guard lock(cache_mutex_);
        if (cache_index_.size() >= kMaxCacheEntries || cache_ids_.size() >= kMaxCacheIds) {
            cache_index_.clear();
            cache_ids_.clear();
        }
        cache_index_.assign(word, static_cast<int32_t>(cache_ids_.size()));
        cache_ids_.push_back(static_cast<int32_t>(ids.size() - first));
        cache_ids_.insert(cache_ids_.end(), ids.begin() + static_cast<ptrdiff_t>(first), ids.end());
    }
}

void BpeModel::merge_word(std::string_view word, std::vector<int32_t>& ids) const {
    std::vector<Symbol> symbols;
    symbols.reserve(word.size());
    auto add = [&](int32_t id) {
        auto n = static_cast<int32_t>(symbols.size());
        if (n > 0) symbols.back().next = n;
        symbols.push_back({id, n - 1, -1, false});
    };

    // Initial symbols: one per character (Word construction in tokenizers' merge_word),
    // with byte fallback and unknown-character handling in the same order as there.
    int32_t pending_unk = -1;  // an unk symbol not yet added (fuse_unk merges a run of them)
    std::string symbol;
    size_t i = 0;
    while (i < word.size()) {
        size_t begin = i;
        auto lead = static_cast<unsigned char>(word[i]);
        i += std::min(utf8_seq_len(lead), word.size() - i);
        int32_t id;
        if (lead < 0x80 && ascii_ids_[lead] >= 0) {
            id = ascii_ids_[lead];
        } else {
            symbol.clear();
            if (begin > 0) symbol.append(prefix_);
            symbol.append(word.substr(begin, i - begin));
            if (i == word.size()) symbol.append(suffix_);
            id = vocab_.find(symbol);
        }
        if (id >= 0) {
            if (pending_unk >= 0) {
                add(pending_unk);
                pending_unk = -1;
            }
            add(id);
            continue;
        }
        if (byte_fallback_) {
            bool all = true;
            for (unsigned char b : symbol) all = all && byte_fallback_ids_[b] >= 0;
            if (all) {
                // A pending unk stays pending here, as in tokenizers.
                for (unsigned char b : symbol) add(byte_fallback_ids_[b]);
                continue;
            }
        }
        if (unk_token_) {
            if (pending_unk >= 0 && !fuse_unk_) add(pending_unk);
            if (pending_unk < 0 || !fuse_unk_) pending_unk = unk_id();
        }
        // Without unk_token an unknown character is dropped, as tokenizers does.
    }
    if (pending_unk >= 0) add(pending_unk);

    if (symbols.size() > 1) {
        std::vector<QueuedMerge> heap;
        heap.reserve(symbols.size());
        for (size_t k = 0; k + 1 < symbols.size(); ++k)
            if (const MergeValue* m = merges_.find(symbols[k].id, symbols[k + 1].id))
                heap.push_back({m->rank, static_cast<int32_t>(k), m->new_id});
        std::make_heap(heap.begin(), heap.end(), LaterMerge{});
        while (!heap.empty()) {
            std::pop_heap(heap.begin(), heap.end(), LaterMerge{});
            QueuedMerge top = heap.back();
            heap.pop_back();
            Symbol& left = symbols[top.pos];
            if (left.removed || left.next < 0) continue;
            Symbol& right = symbols[left.next];
            // Skip entries made stale by an earlier merge of either side.
            const MergeValue* current = merges_.find(left.id, right.id);
            if (!current || current->new_id != top.new_id) continue;
            left.id = top.new_id;
            right.removed = true;
            left.next = right.next;
            if (left.next >= 0) symbols[left.next].prev = top.pos;
            if (left.prev >= 0)
                if (const MergeValue* m = merges_.find(symbols[left.prev].id, left.id)) {
                    heap.push_back({m->rank, left.prev, m->new_id});
                    std::push_heap(heap.begin(), heap.end(), LaterMerge{});
                }
            if (left.next >= 0)
                if (const MergeValue* m = merges_.find(left.id, symbols[left.next].id)) {
                    heap.push_back({m->rank, top.pos, m->new_id});
                    std::push_heap(heap.begin(), heap.end(), LaterMerge{});
                }
        }
    }
    for (const Symbol& s : symbols)
        if (!s.removed) ids.push_back(s.id);
}

}  // namespace attnlab::tok
