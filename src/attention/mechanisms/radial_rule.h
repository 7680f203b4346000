// Radial Attention's spatiotemporal rule (NeurIPS 2025, arXiv 2506.19852), shared by `radial`
// (token level) and `radial_blocks` (its block form). As papers-efficiency.md B2 defines it:
// positions are frames of F tokens (frame t = ⌊pos/F⌋, spatial index x = pos mod F);
// for a query frame t_i and key frame t_j with Δt = |t_i - t_j|:
//   t_j = 0 (the sink frame) or Δt <= 1       -> the whole frame pair is kept;
//   otherwise, with g = bit_length(Δt) and w0 = 2^bit_length(F) / 2^g:
//     if w0 < block and Δt mod ⌊block / w0⌋ != 0 -> the frame pair is dropped (fewer diagonals);
//     else keep |x_i - x_j| <= max(w0·decay, block).
// `block` is the reference code's hard-coded threshold, equal to its block size (128); it is a
// parameter so the rule can be studied at small sizes. Text tokens (always dense in the
// paper's video models) are not modelled: every position is a video token.
#pragma once

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdlib>

namespace attnlab::mech {

struct RadialRule {
    int64_t frame = 1;
    double decay = 1.0;
    int64_t block = 128;

    enum class Kind { All, None, Band };
    struct Pair {
        Kind kind;
        int64_t width;  // Band: keep |x_i - x_j| <= width
    };

    static int bit_length(int64_t v) { return static_cast<int>(std::bit_width(static_cast<uint64_t>(v))); }

    Pair pair(int64_t t_i, int64_t t_j) const {
        const int64_t dt = std::llabs(t_i - t_j);
        if (t_j == 0 || dt <= 1) return {Kind::All, 0};
        const double w0 = std::ldexp(1.0, bit_length(frame) - bit_length(dt));
        if (w0 < double(block)) {
            const int64_t split = static_cast<int64_t>(std::floor(double(block) / w0));
            if (dt % split != 0) return {Kind::None, 0};
        }
        const int64_t width = static_cast<int64_t>(std::floor(std::max(w0 * decay, double(block))));
        if (width >= frame - 1) return {Kind::All, 0};
        return {Kind::Band, width};
    }

    bool keep(int64_t i, int64_t j) const {
        const Pair p = pair(i / frame, j / frame);
        if (p.kind != Kind::Band) return p.kind == Kind::All;
        return std::llabs(i % frame - j % frame) <= p.width;
    }
};

}  // namespace attnlab::mech
