// scale_mlp: multiplies the MLP output (blocks.L.hook_mlp_out) of chosen layers at chosen token
// positions: the causal test of secondary attention sinks (papers-analysis §2), whose sink score
// and lifetime follow the ℓ2 norm of the MLP output that creates them.
//   factor  row' = factor · row                 (factor 1 is exactly the identity)
//   norm    row' = norm · row / ‖row‖           (the paper's rescale to a fixed norm, default 100
//                                                 there; a zero row stays zero)
#include "interp/interventions/residual_util.h"

#include <cmath>

namespace attnlab::intervention_util {

namespace {

class ScaleMlp final : public RowIntervention {
public:
    ScaleMlp(std::vector<int64_t> layers, std::set<std::string> points, bool to_norm, double value,
             PositionSelection positions, std::string where)
        : RowIntervention(std::move(points), std::move(positions), std::move(where)), layers_(std::move(layers)),
          to_norm_(to_norm), value_(value) {}

    std::string describe() const override {
        std::string layers;
        for (int64_t l : layers_) {
            if (!layers.empty()) layers += ',';
            layers += std::to_string(l);
        }
        return fmt::format("scale_mlp layers {} {} {} at {}", layers, to_norm_ ? "to norm" : "factor", value_,
                           positions().describe());
    }

protected:
    void edit_row(const std::string&, float* row, int64_t width, int64_t) override {  // row (C)
        double factor = value_;
        if (to_norm_) {
            double sq = 0;
            for (int64_t c = 0; c < width; ++c) sq += double(row[c]) * row[c];
            if (sq == 0.0) return;
            factor = value_ / std::sqrt(sq);
        }
        const float f = static_cast<float>(factor);
        for (int64_t c = 0; c < width; ++c) row[c] *= f;
    }

private:
    std::vector<int64_t> layers_;
    bool to_norm_;
    double value_;
};

}  // namespace

std::unique_ptr<Intervention> make_scale_mlp(const Fields& f) {
    f.only({"layers", "factor", "norm", "positions", "segment"});
    const std::vector<int64_t> layers = parse_layers(f.string("layers"), f.model().config().n_layer, f.where());
    ATTNLAB_CHECK(f.has("factor") != f.has("norm"), InvalidArgument,
                  "[{}] give exactly one of \"factor\" (multiply) or \"norm\" (rescale each row to this ℓ2 norm)",
                  f.where());
    const bool to_norm = f.has("norm");
    const double value = to_norm ? f.number_in("norm", 0.0, 1e30) : f.number("factor");
    std::set<std::string> points;
    for (int64_t l : layers) points.insert(fmt::format("blocks.{}.hook_mlp_out", l));
    return std::make_unique<ScaleMlp>(layers, std::move(points), to_norm, value, PositionSelection::from_fields(f),
                                      f.where());
}

}  // namespace attnlab::intervention_util
