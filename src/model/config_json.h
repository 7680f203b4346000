// Typed access to config.json fields with clear errors ("[config] <file>: field 'x' ...").
#pragma once

#include <attnlab/error.h>
#include <attnlab/model.h>

#include <nlohmann/json.hpp>

#include <optional>
#include <string>

namespace attnlab::config_json {

using json = nlohmann::json;

// A present, non-null field, or nullopt. Throws FormatError when the type is wrong.
std::optional<int64_t> get_int(const json& j, const char* key);
std::optional<double> get_number(const json& j, const char* key);
std::optional<bool> get_bool(const json& j, const char* key);
std::optional<std::string> get_string(const json& j, const char* key);

int64_t require_int(const json& j, const char* key);
// A positive size (layers, heads, widths); rejects 0, negatives and absurd values.
int64_t require_size(const json& j, const char* key);

// Parses one rope parameter object (rope_parameters / rope_scaling + rope_theta).
RopeConfig parse_rope_object(const json& params, const RopeConfig& defaults);

Activation parse_activation(const std::string& name);

}  // namespace attnlab::config_json
