// The parameters of one mechanism as written in a spec ("window(size=1024)"), with typed
// accessors that produce the errors a user needs: unknown key, missing key, bad value.
#pragma once

#include <attnlab/attention.h>
#include <attnlab/error.h>

#include <cmath>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace attnlab {

struct MechanismParams {
    std::string mechanism;  // its name, for messages
    std::vector<std::pair<std::string, double>> values;
    std::vector<bool> used;

    // A real number; `fallback` when absent (required if no fallback).
    double number(const std::string& key, std::optional<double> fallback = std::nullopt) {
        for (size_t k = 0; k < values.size(); ++k) {
            if (values[k].first == key) {
                used[k] = true;
                ATTNLAB_CHECK(std::isfinite(values[k].second), InvalidArgument,
                              "[attention spec] {}: {} must be finite", mechanism, key);
                return values[k].second;
            }
        }
        ATTNLAB_CHECK(fallback.has_value(), InvalidArgument,
                      "[attention spec] {} needs parameter '{}'", mechanism, key);
        return *fallback;
    }
    // An integer >= min_value.
    int64_t integer(const std::string& key, std::optional<int64_t> fallback, int64_t min_value) {
        double v = number(key, fallback ? std::optional<double>(double(*fallback)) : std::nullopt);
        ATTNLAB_CHECK(v == std::floor(v) && std::fabs(v) < 9.0e15, InvalidArgument,
                      "[attention spec] {}: {} must be an integer, got {}", mechanism, key, v);
        ATTNLAB_CHECK(v >= double(min_value), InvalidArgument,
                      "[attention spec] {}: {} must be >= {}, got {}", mechanism, key, min_value, v);
        return static_cast<int64_t>(v);
    }
    // A number > 0.
    double positive(const std::string& key, std::optional<double> fallback = std::nullopt) {
        double v = number(key, fallback);
        ATTNLAB_CHECK(v > 0, InvalidArgument, "[attention spec] {}: {} must be > 0, got {}",
                      mechanism, key, v);
        return v;
    }
    // Every key given must have been read by the mechanism's factory.
    void finish(const std::string& accepted) const {
        for (size_t k = 0; k < values.size(); ++k)
            ATTNLAB_CHECK(used[k], InvalidArgument,
                          "[attention spec] {} has no parameter '{}' (parameters: {})", mechanism,
                          values[k].first, accepted.empty() ? "none" : accepted);
    }
};

// Formats a parameter value the way a user would write it (integers without a decimal point).
std::string format_param(double value);

}  // namespace attnlab
