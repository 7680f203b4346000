// ActivationCache and HookChain.
#include <attnlab/error.h>
#include <attnlab/hooks.h>

#include <algorithm>

namespace attnlab {

ActivationCache::ActivationCache(const std::string& name_regex) {
    try {
        regex_ = std::make_unique<std::regex>(name_regex, std::regex::ECMAScript);
    } catch (const std::regex_error& e) {
        throw InvalidArgument(fmt::format("[hooks] invalid hook regex '{}': {}", name_regex, e.what()));
    }
}

ActivationCache::ActivationCache(std::vector<std::string> names) : names_(std::move(names)) {}

bool ActivationCache::wants(const std::string& name) const {
    if (regex_) return std::regex_match(name, *regex_);
    return std::find(names_.begin(), names_.end(), name) != names_.end();
}

void ActivationCache::on(const std::string& name, Tensor& value) {
    entries_[name] = value.to(DType::F32).clone();
}

const Tensor& ActivationCache::at(const std::string& name) const {
    auto it = entries_.find(name);
    ATTNLAB_CHECK(it != entries_.end(), InvalidArgument, "[hooks] no cached activation '{}'", name);
    return it->second;
}

bool HookChain::wants(const std::string& name) const {
    for (Hooks* h : chain_)
        if (h->wants(name)) return true;
    return false;
}

void HookChain::on(const std::string& name, Tensor& value) {
    for (Hooks* h : chain_)
        if (h->wants(name)) h->on(name, value);
}

}  // namespace attnlab
