// steer: adds a steering vector to a residual-width hook point (activation addition; VISTA's
// visual steering vector, papers-multimodal §6) at chosen token positions:
//   add              x' = x + scale·v
//   norm_preserving  VISTA's form, with λ = scale:
//                      λ_sim = 1 + max(0, cos(x, −v))
//                      x'    = ‖x‖ · normalize( normalize(x) + λ·λ_sim·normalize(v) )
//                    so ‖x'‖ = ‖x‖ (VISTA applies it to every layer's hook_mlp_out).
// Scale 0 is exactly the identity in both forms (the row is not touched).
#include "interp/interventions/residual_util.h"

#include <attnlab/safetensors.h>

#include <algorithm>
#include <cmath>

namespace attnlab::intervention_util {

namespace {

class Steer final : public RowIntervention {
public:
    Steer(std::string point, std::vector<float> vector, double scale, bool norm_preserving, PositionSelection positions,
          std::string where)
        : RowIntervention({point}, std::move(positions), std::move(where)), point_(std::move(point)),
          vector_(std::move(vector)), scale_(scale), norm_preserving_(norm_preserving) {
        double sq = 0;
        for (float x : vector_) sq += double(x) * x;
        vector_norm_ = std::sqrt(sq);
    }

    std::string describe() const override {
        return fmt::format("steer {} {} scale {} at {} (|v| = {:.4g})", point_, norm_preserving_ ? "norm_preserving" : "add",
                           scale_, positions().describe(), vector_norm_);
    }

protected:
    void edit_row(const std::string& name, float* row, int64_t width, int64_t) override {  // row (C)
        ATTNLAB_CHECK(width == static_cast<int64_t>(vector_.size()), InvalidArgument,
                      "[{}] {} rows have width {}, the vector {}", where(), name, width, vector_.size());
        if (scale_ == 0.0) return;
        if (!norm_preserving_) {
            const float s = static_cast<float>(scale_);
            for (int64_t c = 0; c < width; ++c) row[c] += s * vector_[c];
            return;
        }
        double x_sq = 0, x_dot_v = 0;
        for (int64_t c = 0; c < width; ++c) {
            x_sq += double(row[c]) * row[c];
            x_dot_v += double(row[c]) * vector_[c];
        }
        const double x_norm = std::sqrt(x_sq);
        if (x_norm == 0.0) return;  // normalize(0) is undefined; a zero row stays zero (‖x'‖ = ‖x‖)
        const double cos_x_minus_v = -x_dot_v / (x_norm * vector_norm_);
        const double lambda = scale_ * (1.0 + std::max(0.0, cos_x_minus_v));
        std::vector<double> y(static_cast<size_t>(width));  // (C) normalize(x) + λ·λ_sim·normalize(v)
        double y_sq = 0;
        for (int64_t c = 0; c < width; ++c) {
            y[c] = row[c] / x_norm + lambda * vector_[c] / vector_norm_;
            y_sq += y[c] * y[c];
        }
        const double y_norm = std::sqrt(y_sq);
        if (y_norm == 0.0) return;  // x exactly opposite to λ·v: no direction to keep
        for (int64_t c = 0; c < width; ++c) row[c] = static_cast<float>(x_norm * y[c] / y_norm);
    }

private:
    std::string point_;
    std::vector<float> vector_;  // (C)
    double scale_;
    bool norm_preserving_;
    double vector_norm_ = 0;
};

// The vector from "vector_file" (a safetensors file) and "tensor" (its name; optional when the
// file holds one tensor): any shape with C elements, any float dtype.
std::vector<float> vector_from_file(const Fields& f, int64_t C) {
    const std::string path = f.string("vector_file");
    const SafetensorsFile file = load_safetensors(path);
    std::string name;
    if (f.has("tensor")) {
        name = f.string("tensor");
        ATTNLAB_CHECK(file.tensors.count(name), InvalidArgument, "[{}] {} has no tensor '{}'", f.where(), path, name);
    } else {
        ATTNLAB_CHECK(file.tensors.size() == 1, InvalidArgument,
                      "[{}] {} holds {} tensors: name one with \"tensor\"", f.where(), path, file.tensors.size());
        name = file.tensors.begin()->first;
    }
    const Tensor& t = file.tensors.at(name);
    ATTNLAB_CHECK(t.dtype() == DType::F32 || t.dtype() == DType::BF16 || t.dtype() == DType::F16, InvalidArgument,
                  "[{}] {} '{}' is {}, expected a float tensor", f.where(), path, name, dtype_name(t.dtype()));
    ATTNLAB_CHECK(t.numel() == C, InvalidArgument, "[{}] {} '{}' has shape {} ({} values), the model's width is {}",
                  f.where(), path, name, t.shape_string(), t.numel(), C);
    return t.to_floats();
}

}  // namespace

std::unique_ptr<Intervention> make_steer(const Fields& f) {
    f.only({"layer", "hook", "vector", "vector_file", "tensor", "scale", "form", "positions", "segment"});
    const ModelConfig& c = f.model().config();
    ATTNLAB_CHECK(f.has("layer") != f.has("hook"), InvalidArgument,
                  "[{}] give exactly one of \"layer\" (its hook_resid_pre) or \"hook\" (a hook point name)", f.where());
    std::string point;
    if (f.has("layer")) {
        const int64_t layer = f.integer("layer");
        ATTNLAB_CHECK(layer < c.n_layer, InvalidArgument, "[{}] layer {} outside 0..{}", f.where(), layer, c.n_layer - 1);
        point = fmt::format("blocks.{}.hook_resid_pre", layer);
    } else {
        point = f.string("hook");
        ATTNLAB_CHECK(is_token_major_point(point, c.n_layer, /*width_c=*/true), InvalidArgument,
                      "[{}] \"hook\": '{}' is not a (T, C) hook point of this model (e.g. blocks.0.hook_resid_pre, "
                      "blocks.0.hook_mlp_out, blocks.0.hook_attn_out)",
                      f.where(), point);
    }
    ATTNLAB_CHECK(f.has("vector") != f.has("vector_file"), InvalidArgument,
                  "[{}] give exactly one of \"vector\" (a list of {} numbers) or \"vector_file\" (safetensors)", f.where(),
                  c.hidden_size);
    ATTNLAB_CHECK(!f.has("tensor") || f.has("vector_file"), InvalidArgument, "[{}] \"tensor\" needs \"vector_file\"",
                  f.where());
    std::vector<float> vector;
    if (f.has("vector")) {
        for (double v : f.numbers("vector")) vector.push_back(static_cast<float>(v));
        ATTNLAB_CHECK(static_cast<int64_t>(vector.size()) == c.hidden_size, InvalidArgument,
                      "[{}] \"vector\" has {} values, the model's width is {}", f.where(), vector.size(), c.hidden_size);
    } else {
        vector = vector_from_file(f, c.hidden_size);
    }
    const std::string form = f.string("form", "add");
    ATTNLAB_CHECK(form == "add" || form == "norm_preserving", InvalidArgument,
                  "[{}] unknown form '{}' (add, norm_preserving)", f.where(), form);
    const double scale = f.number("scale", 1.0);
    if (form == "norm_preserving") {
        ATTNLAB_CHECK(std::any_of(vector.begin(), vector.end(), [](float x) { return x != 0.0f; }), InvalidArgument,
                      "[{}] form norm_preserving needs a non-zero vector", f.where());
    }
    return std::make_unique<Steer>(point, std::move(vector), scale, form == "norm_preserving",
                                   PositionSelection::from_fields(f), f.where());
}

}  // namespace attnlab::intervention_util
