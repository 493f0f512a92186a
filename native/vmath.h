// Small inline math shared by the kernel files.
#pragma once
#include <cstdint>
#if defined(__AVX512F__)
#include <immintrin.h>
#endif

namespace uf {

// Vectorisable exp: Cephes range reduction + degree-6 polynomial (max rel. error 8e-8 on [-87, 88]).
// Written so GCC vectorises loops over it: rounding by the 1.5·2^23 trick instead of floor (no
// vector floor without SSE4 rounding in GCC's cost model) and the exponent built with integer ops
// on the bit pattern instead of a float→int conversion. The clamps keep NaN (comparisons with NaN
// are false), so NaN propagates; inputs below -87 give ~1.6e-38 rather than 0.
inline float fast_exp(float x) {
  x = x > 88.0f ? 88.0f : x;
  x = x < -87.0f ? -87.0f : x;
  float k = x * 1.44269504088896341f + 12582912.f;  // round(x·log2 e) lands in the low mantissa bits
  int32_t ki = __builtin_bit_cast(int32_t, k) - 0x4B400000;
  float n = k - 12582912.f;
  float r = x - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  float p = 1.9875691500E-4f;
  p = p * r + 1.3981999507E-3f;
  p = p * r + 8.3334519073E-3f;
  p = p * r + 4.1665795894E-2f;
  p = p * r + 1.6666665459E-1f;
  p = p * r + 5.0000001201E-1f;
  float y = p * r * r + r + 1.0f;
  return y * __builtin_bit_cast(float, (ki + 127) << 23);
}

// GELU-tanh constants (kernels.cc, and the AVX-512 forms below).
constexpr float kGeluC = 0.7978845608028654f;  // sqrt(2/pi)
constexpr float kGeluA = 0.044715f;

#if defined(__AVX512F__)
// fast_exp on 16 lanes: the same range reduction and polynomial.
inline __m512 fast_exp512(__m512 x) {
  // min/max return their second operand when one is NaN: x second, so NaN propagates.
  x = _mm512_min_ps(_mm512_set1_ps(88.0f), x);
  x = _mm512_max_ps(_mm512_set1_ps(-87.0f), x);
  const __m512 magic = _mm512_set1_ps(12582912.f);
  __m512 k = _mm512_fmadd_ps(x, _mm512_set1_ps(1.44269504088896341f), magic);
  __m512i ki = _mm512_sub_epi32(_mm512_castps_si512(k), _mm512_set1_epi32(0x4B400000));
  __m512 n = _mm512_sub_ps(k, magic);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.9875691500E-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507E-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073E-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894E-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459E-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201E-1f));
  __m512 y = _mm512_add_ps(_mm512_fmadd_ps(_mm512_mul_ps(p, r), r, r), _mm512_set1_ps(1.0f));
  __m512 scale = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(ki, _mm512_set1_epi32(127)), 23));
  return _mm512_mul_ps(y, scale);
}

// GELU-tanh. With u = √(2/π)(x + A x³), e = exp(2u) and r = 1/(e+1): tanh(u) = 1 − 2r, so gelu(x) = x(1 − r) and
// gelu'(x) = (1 − r)(1 + 2·C·x·r·(1 + 3A x²)). r comes from rcp14 and one Newton step (relative error ~1e-7)
// instead of a division, whose throughput would bound these loops. Used by kernels.cc's GELU loops and by the
// AMX kernel's fused GELU step, so both give identical values.
inline __m512 gelu_r512(__m512 x, __m512 x2) {
  const __m512 u2 = _mm512_mul_ps(_mm512_mul_ps(x, _mm512_set1_ps(2.f * kGeluC)),
                                  _mm512_fmadd_ps(x2, _mm512_set1_ps(kGeluA), _mm512_set1_ps(1.f)));
  const __m512 d = _mm512_add_ps(fast_exp512(u2), _mm512_set1_ps(1.f));
  const __m512 r = _mm512_rcp14_ps(d);
  return _mm512_mul_ps(r, _mm512_fnmadd_ps(d, r, _mm512_set1_ps(2.f)));
}
inline __m512 gelu512(__m512 x) { return _mm512_fnmadd_ps(x, gelu_r512(x, _mm512_mul_ps(x, x)), x); }
inline __m512 gelu_grad512(__m512 x) {  // gelu'(x)
  const __m512 one = _mm512_set1_ps(1.f), x2 = _mm512_mul_ps(x, x);
  const __m512 r = gelu_r512(x, x2);
  const __m512 poly = _mm512_fmadd_ps(x2, _mm512_set1_ps(3.f * kGeluA), one);
  const __m512 inner = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(2.f * kGeluC), x), r), poly, one);
  return _mm512_mul_ps(_mm512_sub_ps(one, r), inner);
}

// Lanes [0, n) of 16: all for n ≥ 16, none for n ≤ 0 (the tail of a row of floats).
inline __mmask16 mask_n(int64_t n) {
  return n >= 16 ? (__mmask16)0xffff : n <= 0 ? (__mmask16)0 : (__mmask16)((1u << n) - 1);
}

// In-register 16×16 transpose of 32-bit lanes: r[i] lane j ↔ r[j] lane i.
inline void transpose16(__m512i* r) {
  __m512i t[16], u[16];
  for (int i = 0; i < 8; i++) {
    t[2 * i] = _mm512_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
  }
  for (int g = 0; g < 4; g++) {  // R[4g+j], lane l = rows 4g..4g+3 of column 4l+j
    u[4 * g + 0] = _mm512_unpacklo_epi64(t[4 * g + 0], t[4 * g + 2]);
    u[4 * g + 1] = _mm512_unpackhi_epi64(t[4 * g + 0], t[4 * g + 2]);
    u[4 * g + 2] = _mm512_unpacklo_epi64(t[4 * g + 1], t[4 * g + 3]);
    u[4 * g + 3] = _mm512_unpackhi_epi64(t[4 * g + 1], t[4 * g + 3]);
  }
  for (int j = 0; j < 4; j++) {
    __m512i p01 = _mm512_shuffle_i32x4(u[j], u[4 + j], 0x44), p23 = _mm512_shuffle_i32x4(u[j], u[4 + j], 0xEE);
    __m512i q01 = _mm512_shuffle_i32x4(u[8 + j], u[12 + j], 0x44), q23 = _mm512_shuffle_i32x4(u[8 + j], u[12 + j], 0xEE);
    r[0 + j] = _mm512_shuffle_i32x4(p01, q01, 0x88);
    r[4 + j] = _mm512_shuffle_i32x4(p01, q01, 0xDD);
    r[8 + j] = _mm512_shuffle_i32x4(p23, q23, 0x88);
    r[12 + j] = _mm512_shuffle_i32x4(p23, q23, 0xDD);
  }
}
#endif

}  // namespace uf
