// replace: overwrites rows of a hook point with a cached activation of the same point, read from
// a safetensors file written by `attnlab run --save F --hooks REGEX` (a patching source: FCCT /
// IRI-style restoring of a clean state, papers-multimodal §9). The file's tensor of the same name
// holds rows for positions offset .. offset+N-1 ("offset": the A of `run --positions A:B`, default
// 0); by default exactly those positions are replaced. Replacing a run's rows with its own cached
// rows is exactly the identity.
#include "interp/interventions/residual_util.h"

#include <attnlab/safetensors.h>

#include <cstring>

namespace attnlab::intervention_util {

namespace {

class Replace final : public RowIntervention {
public:
    Replace(std::string point, Tensor cached, int64_t offset, std::string file, PositionSelection positions,
            std::string where)
        : RowIntervention({point}, std::move(positions), std::move(where)), point_(std::move(point)),
          cached_(std::move(cached)), offset_(offset), file_(std::move(file)),
          row_width_(cached_.numel() / cached_.size(0)) {}

    std::string describe() const override {
        return fmt::format("replace {} at {} from {} (rows {}..{})", point_, positions().describe(), file_, offset_,
                           offset_ + cached_.size(0) - 1);
    }

protected:
    void edit_row(const std::string& name, float* row, int64_t width, int64_t position) override {
        ATTNLAB_CHECK(width == row_width_, InvalidArgument,
                      "[{}] {}: the cached tensor in {} has shape {}, but the model's rows have {} values each", where(),
                      name, file_, cached_.shape_string(), width);
        const int64_t r = position - offset_;
        ATTNLAB_CHECK(r >= 0 && r < cached_.size(0), InvalidArgument,
                      "[{}] position {} is not in {} (it holds positions {}..{} of {})", where(), position, file_,
                      offset_, offset_ + cached_.size(0) - 1, name);
        std::memcpy(row, cached_.data<float>() + r * width, static_cast<size_t>(width) * sizeof(float));
    }

private:
    std::string point_;
    Tensor cached_;  // (N, ...) f32 contiguous: rows of positions offset .. offset+N-1
    int64_t offset_;
    std::string file_;
    int64_t row_width_;
};

}  // namespace

std::unique_ptr<Intervention> make_replace(const Fields& f) {
    f.only({"hook", "file", "tensor", "offset", "positions", "segment"});
    const ModelConfig& c = f.model().config();
    const std::string point = f.string("hook");
    ATTNLAB_CHECK(is_token_major_point(point, c.n_layer, /*width_c=*/false), InvalidArgument,
                  "[{}] \"hook\": '{}' is not a token-major hook point of this model (e.g. blocks.0.hook_resid_pre, "
                  "blocks.0.attn.hook_z, blocks.0.hook_mlp_out; hook_pattern and hook_attn_scores are not supported)",
                  f.where(), point);
    const std::string path = f.string("file");
    const std::string name = f.string("tensor", point);
    const SafetensorsFile file = load_safetensors(path);
    ATTNLAB_CHECK(file.tensors.count(name), InvalidArgument,
                  "[{}] {} has no tensor '{}' (save it with `attnlab run --save {} --hooks '{}'`)", f.where(), path, name,
                  path, name);
    const Tensor& t = file.tensors.at(name);
    ATTNLAB_CHECK(t.dim() >= 2 && t.size(0) > 0 &&
                      (t.dtype() == DType::F32 || t.dtype() == DType::BF16 || t.dtype() == DType::F16),
                  InvalidArgument, "[{}] {} '{}': expected a float tensor (T, ...), got {} {}", f.where(), path, name,
                  dtype_name(t.dtype()), t.shape_string());
    if (is_token_major_point(point, c.n_layer, /*width_c=*/true))
        ATTNLAB_CHECK(t.dim() == 2 && t.size(1) == c.hidden_size, InvalidArgument,
                      "[{}] {} '{}' has shape {}, expected (T, {}) for {}", f.where(), path, name, t.shape_string(),
                      c.hidden_size, point);
    const int64_t offset = f.integer("offset", 0);
    const int64_t n = t.size(0);
    PositionSelection positions =
        PositionSelection::from_fields(f, fmt::format("{}:{}", offset, offset + n));
    for (const TokenRange& r : positions.ranges(TokenSegments::kOpenEnd))
        ATTNLAB_CHECK(r.begin >= offset && r.end <= offset + n, InvalidArgument,
                      "[{}] positions {}:{} are not all in {} (it holds positions {}..{})", f.where(), r.begin,
                      r.end == TokenSegments::kOpenEnd ? std::string() : std::to_string(r.end), path, offset,
                      offset + n - 1);
    return std::make_unique<Replace>(point, t.to(DType::F32).clone(), offset, path, std::move(positions), f.where());
}

}  // namespace attnlab::intervention_util
