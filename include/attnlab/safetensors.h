// safetensors: read (single file or sharded with model.safetensors.index.json) and write.
//
// Byte layout: 8-byte little-endian header length N, then N bytes of JSON
//   {"name": {"dtype": "BF16", "shape": [..], "data_offsets": [begin, end]}, ...,
//    "__metadata__": {"key": "value"}}
// then the data section; offsets are relative to its start. Reading validates everything a
// hostile file could get wrong (header length beyond the file, invalid JSON, unknown dtypes,
// offsets out of range, overlapping or with gaps that do not match dtype x shape) and maps
// the file: tensors are views into the mapping, never copies (unless a tensor is misaligned
// for its dtype, in which case that one tensor is copied to aligned memory).
#pragma once

#include <attnlab/tensor.h>

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace attnlab {

struct SafetensorsFile {
    std::string path;
    std::shared_ptr<MappedFile> mapping;
    std::map<std::string, Tensor> tensors;
    std::map<std::string, std::string> metadata;
};

SafetensorsFile load_safetensors(const std::string& path);

// Writes tensors (any dtype, any strides: written contiguous) with optional metadata.
void save_safetensors(const std::string& path,
                      const std::vector<std::pair<std::string, Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata = {});

// All tensors of a model directory: model.safetensors, or the shards listed in
// model.safetensors.index.json (every listed shard must exist and hold the tensors the index
// assigns to it).
class WeightStore {
public:
    static WeightStore open_directory(const std::string& dir);
    // A store that invents every tensor asked for with get(): random normal values (std
    // `init_std`; norm weights ~1) in `dtype`. Used by `make-model` to write random checkpoints
    // with exactly the names and shapes an architecture loads; find() of an absent name still
    // returns nullptr, so optional tensors are not invented.
    static WeightStore synthesize(DType dtype, uint64_t seed, double init_std);

    bool contains(const std::string& name) const { return tensors_.count(name) != 0; }
    // The tensor, checked against the expected shape; throws FormatError naming the tensor.
    Tensor get(const std::string& name, const Shape& expected_shape) const;
    const Tensor* find(const std::string& name) const;
    // Marks a tensor as used; unused() lists what the architecture did not consume.
    std::vector<std::string> unused() const;
    const std::map<std::string, Tensor>& tensors() const { return tensors_; }
    size_t total_bytes() const;

private:
    Tensor invent(const std::string& name, const Shape& shape) const;

    std::vector<SafetensorsFile> files_;
    mutable std::map<std::string, Tensor> tensors_;  // mutable: synthesize mode adds on get()
    bool synthesize_ = false;
    DType synth_dtype_ = DType::F32;
    mutable uint64_t synth_seed_ = 0;
    double synth_std_ = 0.02;
    std::map<std::string, std::string> origin_;  // tensor -> file it came from
    mutable std::map<std::string, bool> used_;
};

}  // namespace attnlab
