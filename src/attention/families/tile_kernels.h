// The inner loops of the tiled CPU attention kernel (softmax_tiled.cpp), one row or one small
// block of rows each; defined in tile_kernels.cpp with target_clones (AVX-512 / AVX2 / baseline
// chosen at load time).
#pragma once

#include <cstdint>

namespace attnlab::detail {

// ---- one score row of a tile ----
float row_max(const float* s, int64_t n);                  // max_k s[k] (-inf if all masked)
float exp_shift_sum(float* s, int64_t n, float m);         // s = e^(s - m) (0 where -inf); returns Σ s
// exp_shift_sum that also returns Σ p·(s - m) over the kept entries (the entropy part of the
// statistics) and Σ p², in the same pass.
float exp_shift_sum_stats(float* s, int64_t n, float m, float* entropy_part, float* sum_sq);
float p_log_p_sum(const float* p, int64_t n);              // Σ p·ln p over p > 0 (sigmoid, relu statistics)
void add_softmax_probabilities(float* col, const float* s, int64_t n, float lse);  // col += e^(s - lse)
float sigmoid_sum(float* s, int64_t n, float bias);        // s = σ(s + bias); returns Σ s
float relu_sum(float* s, int64_t n, int64_t* kept);        // s = max(s, 0); returns Σ s, counts kept entries
void scale_row(float* x, int64_t n, float f);              // x *= f
void add_scaled_row(float* y, const float* x, int64_t n, float a);  // y += a·x

// ---- few rows (decode) ----
// O (R, Dv) += P (R, n) · V (n, Dv), V rows ldv elements apart: each V row is read once for all R rows.
void pv_small_f32(int64_t R, int64_t n, const float* P, int64_t ldp, const float* V, int64_t ldv, int64_t Dv,
                  float* O);
void pv_small_bf16(int64_t R, int64_t n, const float* P, int64_t ldp, const uint16_t* V, int64_t ldv, int64_t Dv,
                   float* O);
// Scores of a split-KV decode tile: for n positions and the n_kv kv heads marked active, S rows
// (g·R + r) = q rows of head group g · k (positions k_stride apart, heads D apart); meanwhile
// prefetches the positions' V rows (pf + p·pf_stride, pf_bytes each).
void decode_scores_f32(int64_t n, int64_t n_kv, const uint8_t* active, int64_t R, const float* q, int64_t D,
                       const float* k, int64_t k_stride, float* S, int64_t ld_s, const char* pf, int64_t pf_stride,
                       int64_t pf_bytes);
void decode_scores_bf16(int64_t n, int64_t n_kv, const uint8_t* active, int64_t R, const float* q, int64_t D,
                        const uint16_t* k, int64_t k_stride, float* S, int64_t ld_s, const char* pf, int64_t pf_stride,
                        int64_t pf_bytes);

}  // namespace attnlab::detail
