// cca: CCA's concentric position ids (Xing et al., NeurIPS 2024; papers-multimodal §7, the
// `concentric_pos` of xing0047/cca-llava) for an image segment laid out row-major as an R×C grid
// starting at sequence position p:
//   c(i,j) = min(i, j, R−1−i, C−1−j)        the ring: 0 on the border, rings−1 at the centre
//   before the image   position ids unchanged (0 .. p−1)
//   image token (i,j)  p + c(i,j)
//   after the image    shifted by −(R·C − rings), rings = ⌊(min(R,C)+1)/2⌋ (LLaVA's 24×24: −564),
//                      decode steps included.
// Only RoPE sees the new ids (remap_positions); masks and the KV cache keep the sequence order.
// The ids are offsets added to whatever ids the call already has, so explicit
// ForwardOptions::position_ids compose. CCA's ring-causal image mask is not part of this edit
// (CCA retrains LLaVA with both; the mask is an attention spec of its own).
#include "interp/interventions/attention_edit_util.h"

#include <algorithm>

namespace attnlab::intervention_util {

namespace {

class Cca final : public Intervention {
public:
    Cca(std::string segment, int64_t begin, int64_t rows, int64_t cols)
        : segment_(std::move(segment)), begin_(begin), rows_(rows), cols_(cols), rings_((std::min(rows, cols) + 1) / 2) {}

    std::string describe() const override {
        return fmt::format("cca segment {} grid {}x{} at {}", segment_, rows_, cols_, begin_);
    }

    bool wants(const std::string&) const override { return false; }
    void on(const std::string&, Tensor&) override {}

    bool remaps_positions() const override { return true; }
    void remap_positions(int64_t pos0, std::vector<int64_t>& positions) override {
        const int64_t n_image = rows_ * cols_;
        for (size_t t = 0; t < positions.size(); ++t) {
            const int64_t s = pos0 + static_cast<int64_t>(t);  // sequence position
            if (s < begin_) continue;
            if (s >= begin_ + n_image) {
                positions[t] -= n_image - rings_;
                continue;
            }
            const int64_t i = (s - begin_) / cols_, j = (s - begin_) % cols_;
            const int64_t ring = std::min({i, j, rows_ - 1 - i, cols_ - 1 - j});
            positions[t] += begin_ + ring - s;
        }
    }

private:
    std::string segment_;
    int64_t begin_, rows_, cols_, rings_;
};

}  // namespace

std::unique_ptr<Intervention> make_cca(const Fields& f) {
    f.only({"segment", "grid"});
    const std::string segment = f.string("segment");
    f.segment_id("segment");  // a defined segment name
    const std::vector<double> grid = f.numbers("grid");
    ATTNLAB_CHECK(grid.size() == 2 && grid[0] >= 1 && grid[1] >= 1 && grid[0] == std::floor(grid[0]) &&
                      grid[1] == std::floor(grid[1]) && grid[0] * grid[1] < 1e12,
                  InvalidArgument, "[{}] \"grid\" must be [rows, cols], two integers >= 1", f.where());
    const int64_t rows = static_cast<int64_t>(grid[0]), cols = static_cast<int64_t>(grid[1]);
    const std::vector<TokenRange> ranges = f.env().segments->ranges(segment, TokenSegments::kOpenEnd);
    ATTNLAB_CHECK(ranges.size() == 1 && ranges[0].end != TokenSegments::kOpenEnd, InvalidArgument,
                  "[{}] segment '{}' must be one closed range A:B to be laid out as a grid", f.where(), segment);
    ATTNLAB_CHECK(ranges[0].end - ranges[0].begin == rows * cols, InvalidArgument,
                  "[{}] segment '{}' has {} tokens, the grid {}x{} needs {}", f.where(), segment,
                  ranges[0].end - ranges[0].begin, rows, cols, rows * cols);
    return std::make_unique<Cca>(segment, ranges[0].begin, rows, cols);
}

}  // namespace attnlab::intervention_util
