// RMSNorm over one head row followed by RoPE at its position, shared by the separate q/k kernel (kernels.cc,
// decoding) and the attention kernels that normalise q and k as they load them (attention.cc), and the backward
// of that (attention.cc). Halves in 8-lane AVX pieces when H/2 is a multiple of 8, plain loops otherwise.
#pragma once
#include <cmath>
#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include "kernels.h"

namespace uf {

// 1 / sqrt(mean(x²) + eps) over n values, a plain loop (RMSNorm's rows in kernels.cc, and the head rows below
// when H is not a multiple of 16).
inline float row_rstd(const float* x, int n, float eps = kRmsEps) {
  float ss = 0.f;
#pragma omp simd reduction(+ : ss)
  for (int i = 0; i < n; i++) ss += x[i] * x[i];
  return 1.0f / std::sqrt(ss / n + eps);
}

// One head row: the rstd of x over its H values.
inline float head_rstd(const float* x, int H) {
#if defined(__AVX512F__)
  if (H % 16 == 0) {
    __m512 acc = _mm512_setzero_ps();
    for (int h = 0; h < H; h += 16) {
      const __m512 v = _mm512_loadu_ps(x + h);
      acc = _mm512_fmadd_ps(v, v, acc);
    }
    return 1.0f / std::sqrt(_mm512_reduce_add_ps(acc) / H + kRmsEps);
  }
#endif
  return row_rstd(x, H);
}
// y = RoPE(x · r) with the position's cos c and sin s (H/2 each); y may be x.
inline void scale_rotate(float* y, const float* x, int H, float r, const float* c, const float* s) {
  const int half = H / 2;
#if defined(__AVX512F__)
  if (half % 8 == 0) {  // halves in 8-lane pieces (H = 16, 32, 48, 64, ...)
    const __m256 vr = _mm256_set1_ps(r);
    for (int i = 0; i < half; i += 8) {
      const __m256 x1 = _mm256_mul_ps(_mm256_loadu_ps(x + i), vr), x2 = _mm256_mul_ps(_mm256_loadu_ps(x + half + i), vr);
      const __m256 ci = _mm256_loadu_ps(c + i), si = _mm256_loadu_ps(s + i);
      _mm256_storeu_ps(y + i, _mm256_fnmadd_ps(x2, si, _mm256_mul_ps(x1, ci)));
      _mm256_storeu_ps(y + half + i, _mm256_fmadd_ps(x1, si, _mm256_mul_ps(x2, ci)));
    }
    return;
  }
#endif
#pragma omp simd
  for (int i = 0; i < half; i++) {
    const float x1 = x[i] * r, x2 = x[i + half] * r;
    y[i] = x1 * c[i] - x2 * s[i];
    y[i + half] = x2 * c[i] + x1 * s[i];
  }
}
// Its backward: dx = r · R⁻¹(dy − y · mean(dy · y)) with y the forward's output (rotation is orthogonal, so the
// mean is the same before and after it); dx may be dy.
inline void scale_rotate_backward(float* dx, const float* dy, const float* y, int H, float r, const float* c,
                                  const float* s) {
  const int half = H / 2;
#if defined(__AVX512F__)
  if (half % 8 == 0) {
    __m256 acc = _mm256_setzero_ps();
    for (int h = 0; h < H; h += 8) acc = _mm256_fmadd_ps(_mm256_loadu_ps(dy + h), _mm256_loadu_ps(y + h), acc);
    const __m128 a4 = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
    const __m128 a2 = _mm_add_ps(a4, _mm_movehl_ps(a4, a4));
    const float dot = _mm_cvtss_f32(_mm_add_ss(a2, _mm_movehdup_ps(a2)));
    const __m256 vm = _mm256_set1_ps(dot / H), vr = _mm256_set1_ps(r);
    for (int i = 0; i < half; i += 8) {
      const __m256 g1 = _mm256_mul_ps(_mm256_fnmadd_ps(_mm256_loadu_ps(y + i), vm, _mm256_loadu_ps(dy + i)), vr);
      const __m256 g2 =
          _mm256_mul_ps(_mm256_fnmadd_ps(_mm256_loadu_ps(y + half + i), vm, _mm256_loadu_ps(dy + half + i)), vr);
      const __m256 ci = _mm256_loadu_ps(c + i), si = _mm256_loadu_ps(s + i);
      _mm256_storeu_ps(dx + i, _mm256_fmadd_ps(g2, si, _mm256_mul_ps(g1, ci)));
      _mm256_storeu_ps(dx + half + i, _mm256_fnmadd_ps(g1, si, _mm256_mul_ps(g2, ci)));
    }
    return;
  }
#endif
  float dot = 0.f;
#pragma omp simd reduction(+ : dot)
  for (int h = 0; h < H; h++) dot += dy[h] * y[h];
  const float mean = dot / H;
#pragma omp simd
  for (int i = 0; i < half; i++) {
    const float g1 = (dy[i] - y[i] * mean) * r, g2 = (dy[i + half] - y[i + half] * mean) * r;
    dx[i] = g1 * c[i] + g2 * s[i];
    dx[i + half] = g2 * c[i] - g1 * s[i];
  }
}

}  // namespace uf
