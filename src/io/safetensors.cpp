// safetensors reader and writer; see include/attnlab/safetensors.h for the byte layout.
#include <attnlab/error.h>
#include <attnlab/safetensors.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <random>

namespace attnlab {

namespace {

using json = nlohmann::json;

// Headers of real checkpoints are at most a few MB; 100 MB is the limit the reference
// implementation uses too, and it stops a hostile length from allocating gigabytes.
constexpr uint64_t kMaxHeaderBytes = 100ull << 20;

bool parse_dtype(const std::string& s, DType& out) {
    if (s == "F32") out = DType::F32;
    else if (s == "F64") out = DType::F64;
    else if (s == "BF16") out = DType::BF16;
    else if (s == "F16") out = DType::F16;
    else if (s == "I32") out = DType::I32;
    else if (s == "I64") out = DType::I64;
    else return false;
    return true;
}

const char* dtype_tag(DType d) {
    switch (d) {
        case DType::F32: return "F32";
        case DType::F64: return "F64";
        case DType::BF16: return "BF16";
        case DType::F16: return "F16";
        case DType::I32: return "I32";
        case DType::I64: return "I64";
    }
    return "?";
}

struct Entry {
    std::string name;
    uint64_t begin, end;
};

}  // namespace

SafetensorsFile load_safetensors(const std::string& path) {
    SafetensorsFile file;
    file.path = path;
    file.mapping = std::make_shared<MappedFile>(path);
    const size_t file_size = file.mapping->size();
    ATTNLAB_CHECK(file_size >= 8, FormatError,
                  "[safetensors] {}: file is {} bytes, too short for the 8-byte header length", path,
                  file_size);
    uint64_t header_len = 0;
    std::memcpy(&header_len, file.mapping->data(), 8);  // little-endian, as x86-64 is
    ATTNLAB_CHECK(header_len <= kMaxHeaderBytes, FormatError,
                  "[safetensors] {}: header length {} exceeds the 100 MB limit", path, header_len);
    ATTNLAB_CHECK(header_len <= file_size - 8, FormatError,
                  "[safetensors] {}: header length {} runs past the end of the file ({} bytes)",
                  path, header_len, file_size);
    const char* header_begin = reinterpret_cast<const char*>(file.mapping->data() + 8);
    json header;
    try {
        header = json::parse(header_begin, header_begin + header_len);
    } catch (const json::exception& e) {
        throw FormatError(fmt::format("[safetensors] {}: header is not valid JSON: {}", path, e.what()));
    }
    ATTNLAB_CHECK(header.is_object(), FormatError, "[safetensors] {}: header is not a JSON object",
                  path);
    const uint64_t data_start = 8 + header_len;
    const uint64_t data_size = file_size - data_start;

    std::vector<Entry> entries;
    for (auto it = header.begin(); it != header.end(); ++it) {
        const std::string& name = it.key();
        const json& info = it.value();
        if (name == "__metadata__") {
            ATTNLAB_CHECK(info.is_object(), FormatError,
                          "[safetensors] {}: __metadata__ is not an object", path);
            for (auto m = info.begin(); m != info.end(); ++m) {
                ATTNLAB_CHECK(m.value().is_string(), FormatError,
                              "[safetensors] {}: metadata value of '{}' is not a string", path,
                              m.key());
                file.metadata[m.key()] = m.value().get<std::string>();
            }
            continue;
        }
        ATTNLAB_CHECK(info.is_object() && info.contains("dtype") && info.contains("shape") &&
                          info.contains("data_offsets"),
                      FormatError,
                      "[safetensors] {}: tensor '{}' needs dtype, shape and data_offsets", path,
                      name);
        ATTNLAB_CHECK(info["dtype"].is_string(), FormatError,
                      "[safetensors] {}: dtype of '{}' is not a string", path, name);
        DType dtype;
        std::string dtype_str = info["dtype"].get<std::string>();
        ATTNLAB_CHECK(parse_dtype(dtype_str, dtype), NotSupported,
                      "[safetensors] {}: tensor '{}' has dtype {}, which is not supported", path,
                      name, dtype_str);
        const json& shape_json = info["shape"];
        ATTNLAB_CHECK(shape_json.is_array() && shape_json.size() <= 8, FormatError,
                      "[safetensors] {}: shape of '{}' is not an array of at most 8 sizes", path,
                      name);
        Shape shape;
        // Count bytes in 128-bit-safe steps: every product is checked before it can overflow.
        uint64_t count = 1;
        for (const json& d : shape_json) {
            ATTNLAB_CHECK(d.is_number_unsigned() || (d.is_number_integer() && d.get<int64_t>() >= 0),
                          FormatError, "[safetensors] {}: shape of '{}' has a non-integer or negative size",
                          path, name);
            uint64_t v = d.get<uint64_t>();
            ATTNLAB_CHECK(v <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) &&
                              (v == 0 || count <= std::numeric_limits<uint64_t>::max() / 16 / v),
                          FormatError, "[safetensors] {}: shape of '{}' overflows", path, name);
            count *= v;
            shape.push_back(static_cast<int64_t>(v));
        }
        const json& offsets = info["data_offsets"];
        ATTNLAB_CHECK(offsets.is_array() && offsets.size() == 2 && offsets[0].is_number_unsigned() &&
                          offsets[1].is_number_unsigned(),
                      FormatError,
                      "[safetensors] {}: data_offsets of '{}' must be two non-negative integers",
                      path, name);
        uint64_t begin = offsets[0].get<uint64_t>(), end = offsets[1].get<uint64_t>();
        ATTNLAB_CHECK(begin <= end, FormatError,
                      "[safetensors] {}: data_offsets [{}, {}] of '{}' are reversed (begin > end)",
                      path, begin, end, name);
        ATTNLAB_CHECK(end <= data_size, FormatError,
                      "[safetensors] {}: data_offsets [{}, {}] of '{}' are outside the data section "
                      "({} bytes)",
                      path, begin, end, name, data_size);
        uint64_t expected = count * dtype_size(dtype);
        ATTNLAB_CHECK(end - begin == expected, FormatError,
                      "[safetensors] {}: tensor '{}' is {} {} of shape {} = {} bytes, but its "
                      "data_offsets span {} bytes",
                      path, name, count, dtype_str, shape_string(shape), expected, end - begin);
        entries.push_back({name, begin, end});

        size_t file_offset = static_cast<size_t>(data_start + begin);
        Tensor view(file.mapping, file_offset, dtype, shape);
        if (file_offset % dtype_size(dtype) != 0) view = view.clone();  // misaligned: copy
        file.tensors.emplace(name, std::move(view));
    }
    // Tensors must tile the data section: no overlap (a hostile file could alias tensors)
    // and no holes (the reference implementation rejects both).
    std::sort(entries.begin(), entries.end(),
              [](const Entry& a, const Entry& b) { return a.begin < b.begin || (a.begin == b.begin && a.end < b.end); });
    uint64_t cursor = 0;
    for (const Entry& e : entries) {
        ATTNLAB_CHECK(e.begin >= cursor, FormatError,
                      "[safetensors] {}: tensor '{}' at [{}, {}] overlaps the previous tensor", path,
                      e.name, e.begin, e.end);
        ATTNLAB_CHECK(e.begin == cursor, FormatError,
                      "[safetensors] {}: gap in the data section before tensor '{}' (offset {}, "
                      "expected {})",
                      path, e.name, e.begin, cursor);
        cursor = e.end;
    }
    ATTNLAB_CHECK(cursor == data_size, FormatError,
                  "[safetensors] {}: data section is {} bytes but tensors cover {}", path, data_size,
                  cursor);
    return file;
}

void save_safetensors(const std::string& path,
                      const std::vector<std::pair<std::string, Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata) {
    json header = json::object();
    if (!metadata.empty()) header["__metadata__"] = metadata;
    uint64_t offset = 0;
    std::vector<Tensor> contiguous;
    for (const auto& [name, tensor] : tensors) {
        ATTNLAB_CHECK(name != "__metadata__" && !header.contains(name), InvalidArgument,
                      "[safetensors] {}: duplicate or reserved tensor name '{}'", path, name);
        Tensor c = tensor.contiguous();
        json entry;
        entry["dtype"] = dtype_tag(c.dtype());
        entry["shape"] = c.shape();
        entry["data_offsets"] = {offset, offset + c.nbytes()};
        offset += c.nbytes();
        header[name] = entry;
        contiguous.push_back(std::move(c));
    }
    std::string header_text = header.dump();
    // Pad with spaces so the data section starts 8-byte aligned, as the reference writer does.
    while ((8 + header_text.size()) % 8 != 0) header_text.push_back(' ');
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    ATTNLAB_CHECK(out.good(), IoError, "[safetensors] cannot write {}", path);
    uint64_t len = header_text.size();
    out.write(reinterpret_cast<const char*>(&len), 8);
    out.write(header_text.data(), static_cast<std::streamsize>(header_text.size()));
    for (const Tensor& t : contiguous)
        out.write(reinterpret_cast<const char*>(t.raw()), static_cast<std::streamsize>(t.nbytes()));
    out.close();
    ATTNLAB_CHECK(out.good(), IoError, "[safetensors] error writing {}", path);
}

WeightStore WeightStore::open_directory(const std::string& dir) {
    namespace fs = std::filesystem;
    WeightStore store;
    fs::path index_path = fs::path(dir) / "model.safetensors.index.json";
    fs::path single_path = fs::path(dir) / "model.safetensors";
    std::map<std::string, std::string> expected_shard;  // tensor -> shard file
    std::vector<std::string> shard_files;
    if (fs::exists(index_path)) {
        std::ifstream in(index_path);
        json index;
        try {
            index = json::parse(in);
        } catch (const json::exception& e) {
            throw FormatError(fmt::format("[safetensors] {}: invalid JSON: {}", index_path.string(), e.what()));
        }
        ATTNLAB_CHECK(index.is_object() && index.contains("weight_map") && index["weight_map"].is_object(),
                      FormatError, "[safetensors] {}: missing the weight_map object", index_path.string());
        for (auto it = index["weight_map"].begin(); it != index["weight_map"].end(); ++it) {
            ATTNLAB_CHECK(it.value().is_string(), FormatError,
                          "[safetensors] {}: shard of '{}' is not a string", index_path.string(), it.key());
            std::string shard = it.value().get<std::string>();
            ATTNLAB_CHECK(shard.find('/') == std::string::npos && shard != ".." && shard != "." &&
                              !shard.empty(),
                          FormatError, "[safetensors] {}: shard name '{}' must be a plain file name",
                          index_path.string(), shard);
            expected_shard[it.key()] = shard;
            if (std::find(shard_files.begin(), shard_files.end(), shard) == shard_files.end())
                shard_files.push_back(shard);
        }
    } else if (fs::exists(single_path)) {
        shard_files.push_back("model.safetensors");
    } else {
        throw IoError(fmt::format("[model] {}: no model.safetensors or model.safetensors.index.json", dir));
    }
    for (const std::string& shard : shard_files) {
        // A listed shard that is absent is an inconsistent checkpoint, not an I/O failure.
        ATTNLAB_CHECK(expected_shard.empty() || fs::exists(fs::path(dir) / shard), FormatError,
                      "[safetensors] {}: lists shard '{}', which does not exist", index_path.string(),
                      shard);
        SafetensorsFile f = load_safetensors((fs::path(dir) / shard).string());
        for (auto& [name, tensor] : f.tensors) {
            ATTNLAB_CHECK(!store.tensors_.count(name), FormatError,
                          "[safetensors] tensor '{}' appears in both {} and {}", name,
                          store.origin_[name], shard);
            if (!expected_shard.empty()) {
                auto it = expected_shard.find(name);
                ATTNLAB_CHECK(it != expected_shard.end() && it->second == shard, FormatError,
                              "[safetensors] tensor '{}' is in {} but the index puts it in {}", name,
                              shard, it == expected_shard.end() ? "no shard" : it->second);
            }
            store.tensors_.emplace(name, tensor);
            store.origin_[name] = shard;
        }
        store.files_.push_back(std::move(f));
    }
    for (const auto& [name, shard] : expected_shard)
        ATTNLAB_CHECK(store.tensors_.count(name), FormatError,
                      "[safetensors] the index lists '{}' in {} but that shard does not hold it", name,
                      shard);
    return store;
}

const Tensor* WeightStore::find(const std::string& name) const {
    auto it = tensors_.find(name);
    if (it == tensors_.end()) return nullptr;
    used_[name] = true;
    return &it->second;
}

WeightStore WeightStore::synthesize(DType dtype, uint64_t seed, double init_std) {
    WeightStore store;
    store.synthesize_ = true;
    store.synth_dtype_ = dtype;
    store.synth_seed_ = seed;
    store.synth_std_ = init_std;
    return store;
}

Tensor WeightStore::invent(const std::string& name, const Shape& shape) const {
    // Each tensor gets its own stream so names, not load order, decide the values.
    std::mt19937_64 rng(synth_seed_ ^ std::hash<std::string>{}(name));
    std::normal_distribution<double> normal(0.0, synth_std_);
    const bool is_norm = name.find("norm") != std::string::npos || name.find("ln_") != std::string::npos;
    const bool is_bias = name.size() >= 5 && name.compare(name.size() - 5, 5, ".bias") == 0;
    Tensor t = Tensor::empty(shape, DType::F64);
    double* p = t.data<double>();
    for (int64_t i = 0; i < t.numel(); ++i) {
        double v = normal(rng);
        if (is_norm && !is_bias) v = 1.0 + 0.1 * v / synth_std_ * 0.1;  // near 1, slightly varied
        p[i] = v;
    }
    return t.to(synth_dtype_);
}

Tensor WeightStore::get(const std::string& name, const Shape& expected_shape) const {
    if (synthesize_ && !tensors_.count(name)) tensors_.emplace(name, invent(name, expected_shape));
    const Tensor* t = find(name);
    ATTNLAB_CHECK(t != nullptr, FormatError, "[model] missing tensor '{}'", name);
    ATTNLAB_CHECK(t->shape() == expected_shape, FormatError,
                  "[model] tensor '{}' has shape {}, expected {}", name, t->shape_string(),
                  shape_string(expected_shape));
    return *t;
}

std::vector<std::string> WeightStore::unused() const {
    std::vector<std::string> names;
    for (const auto& [name, _] : tensors_)
        if (!used_.count(name)) names.push_back(name);
    return names;
}

size_t WeightStore::total_bytes() const {
    size_t n = 0;
    for (const auto& [_, t] : tensors_) n += t.nbytes();
    return n;
}

}  // namespace attnlab
