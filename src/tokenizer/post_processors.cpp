#include "tokenizer/post_processors.h"

#include <map>
#include <sstream>

#include "attnlab/error.h"
#include "tokenizer/bpe.h"

namespace attnlab::tok {

namespace {

struct TemplatePart {
    bool is_sequence = false;  // $A
    std::vector<int32_t> ids;  // a special token's ids
    std::vector<std::string> tokens;
};

// A fixed prefix and suffix around the sequence: the single template, or cls/sep.
class Surround final : public PostProcessor {
public:
    explicit Surround(std::vector<TemplatePart> parts) : parts_(std::move(parts)) {}
    void process(std::vector<int32_t>& ids, std::vector<std::string>& tokens) const override {
        std::vector<int32_t> out_ids;
        std::vector<std::string> out_tokens;
        for (const TemplatePart& p : parts_) {
            if (p.is_sequence) {
                out_ids.insert(out_ids.end(), ids.begin(), ids.end());
                for (std::string& t : tokens) out_tokens.push_back(std::move(t));
            } else {
                out_ids.insert(out_ids.end(), p.ids.begin(), p.ids.end());
                out_tokens.insert(out_tokens.end(), p.tokens.begin(), p.tokens.end());
            }
        }
        ids = std::move(out_ids);
        tokens = std::move(out_tokens);
    }
    std::vector<int32_t> emitted_ids() const override {
        std::vector<int32_t> all;
        for (const TemplatePart& p : parts_) all.insert(all.end(), p.ids.begin(), p.ids.end());
        return all;
    }

private:
    std::vector<TemplatePart> parts_;
};

class Identity final : public PostProcessor {
public:
    void process(std::vector<int32_t>&, std::vector<std::string>&) const override {}
    std::vector<int32_t> emitted_ids() const override { return {}; }
};

class Sequence final : public PostProcessor {
public:
    explicit Sequence(std::vector<std::unique_ptr<PostProcessor>> parts) : parts_(std::move(parts)) {}
    void process(std::vector<int32_t>& ids, std::vector<std::string>& tokens) const override {
        for (const auto& p : parts_) p->process(ids, tokens);
    }
    std::vector<int32_t> emitted_ids() const override {
        std::vector<int32_t> all;
        for (const auto& p : parts_) {
            auto v = p->emitted_ids();
            all.insert(all.end(), v.begin(), v.end());
        }
        return all;
    }

private:
    std::vector<std::unique_ptr<PostProcessor>> parts_;
};

int32_t checked_id(const Json& v, const Where& where) {
    if (!v.is_number_integer()) where.fail("expected an integer id");
    auto id = v.get<int64_t>();
    if (id < 0 || id >= kMaxTokenId) where.fail(fmt::format("id {} is out of range", id));
    return static_cast<int32_t>(id);
}

std::unique_ptr<PostProcessor> build_template(const Json& j, const Where& where) {
    // special_tokens: {name: {"id": name, "ids": [...], "tokens": [...]}}
    std::map<std::string, TemplatePart, std::less<>> specials;
    if (const Json* st = where.find(j, "special_tokens")) {
        Where ws = where.field("special_tokens");
        ws.object(*st);
        for (auto it = st->begin(); it != st->end(); ++it) {
            Where w = ws.field(it.key());
            w.object(it.value());
            TemplatePart part;
            const Json& ids = w.get_array(it.value(), "ids");
            const Json& toks = w.get_array(it.value(), "tokens");
            if (ids.size() != toks.size()) w.fail("'ids' and 'tokens' differ in length");
            for (size_t k = 0; k < ids.size(); ++k) {
                part.ids.push_back(checked_id(ids[k], w.field("ids").index(k)));
                if (!toks[k].is_string()) w.field("tokens").index(k).fail("expected a string");
                part.tokens.push_back(toks[k].get<std::string>());
            }
            specials[it.key()] = std::move(part);
        }
    }
    Where ws = where.field("single");
    const Json& single = where.require(j, "single");
    std::vector<std::pair<bool, std::string>> pieces;  // (is_sequence, special name)
    if (single.is_string()) {
        // "<s> $A" form: space-separated, $A/$B/$0/$1 (optionally ":type_id") are sequences.
        std::istringstream in(single.get<std::string>());
        std::string word;
        while (in >> word) {
            std::string name = word.substr(0, word.find(':'));
            bool seq = !name.empty() && name[0] == '$';
            pieces.emplace_back(seq, seq ? std::string() : name);
        }
    } else if (single.is_array()) {
        for (size_t k = 0; k < single.size(); ++k) {
            Where w = ws.index(k);
            const Json& item = w.object(single[k]);
            if (const Json* s = w.find(item, "SpecialToken")) {
                pieces.emplace_back(false, w.field("SpecialToken").get_string(*s, "id"));
            } else if (w.find(item, "Sequence")) {
                pieces.emplace_back(true, std::string());
            } else {
                w.fail("expected {\"SpecialToken\": ...} or {\"Sequence\": ...}");
            }
        }
    } else {
        ws.fail("expected a template string or array");
    }
    std::vector<TemplatePart> parts;
    for (auto& [seq, name] : pieces) {
        if (seq) {
            parts.push_back(TemplatePart{true, {}, {}});
            continue;
        }
        auto it = specials.find(name);
        if (it == specials.end()) ws.fail(fmt::format("special token '{}' is missing from special_tokens", name));
        parts.push_back(it->second);
    }
    return std::make_unique<Surround>(std::move(parts));
}

// RobertaProcessing / BertProcessing: "cls": [token, id], "sep": [token, id].
std::unique_ptr<PostProcessor> build_cls_sep(const Json& j, const Where& where) {
    auto read = [&](std::string_view key) {
        Where w = where.field(key);
        const Json& v = where.require(j, key);
        if (!v.is_array() || v.size() != 2 || !v[0].is_string()) w.fail("expected [token, id]");
        return TemplatePart{false, {checked_id(v[1], w.index(1))}, {v[0].get<std::string>()}};
    };
    std::vector<TemplatePart> parts;
    parts.push_back(read("cls"));
    parts.push_back(TemplatePart{true, {}, {}});
    parts.push_back(read("sep"));
    return std::make_unique<Surround>(std::move(parts));
}

}  // namespace

std::unique_ptr<PostProcessor> build_post_processor(const Json& j, const Where& where, int depth) {
    if (j.is_null()) return nullptr;
    where.object(j);
    if (depth > 32) where.fail("post-processors nested too deeply");
    std::string type = where.get_string(j, "type");
    if (type == "TemplateProcessing") return build_template(j, where);
    if (type == "ByteLevel") return std::make_unique<Identity>();
    if (type == "RobertaProcessing" || type == "BertProcessing") return build_cls_sep(j, where);
    if (type == "Sequence") {
        const Json& list = where.get_array(j, "processors");
        std::vector<std::unique_ptr<PostProcessor>> parts;
        for (size_t i = 0; i < list.size(); ++i) {
            auto p = build_post_processor(list[i], where.field("processors").index(i), depth + 1);
            if (p) parts.push_back(std::move(p));
        }
        return std::make_unique<Sequence>(std::move(parts));
    }
    where.field("type").unsupported(fmt::format("post-processor type '{}' is not supported", type));
}

}  // namespace attnlab::tok
