// The split of float32 values into bf16 pieces that the AMX GEMM multiplies (amx_gemm.cc). Its own header so that
// bench/split_check.cc can check every float32 bit pattern through this very code on any AVX-512F machine.
#pragma once
#if defined(__AVX512F__)
#include <immintrin.h>

namespace uf {

// Round-to-nearest-even to bf16, the result kept as fp32 (low 16 bits zero).
inline __m512 bfround(__m512 x) {
  __m512i u = _mm512_castps_si512(x);
  __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
  u = _mm512_add_epi32(u, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7fff)));
  return _mm512_castsi512_ps(_mm512_and_si512(u, _mm512_set1_epi32((int)0xffff0000u)));
}
// x -> P pieces (fp32 values exactly representable in bf16): hi, mid, lo (the kernel uses P = 3).
// r = x − hi is a multiple of ulp24(x) of at most 2^15 of them; mid rounds r to 8 bits, so lo = r − mid is a
// multiple of ulp24(x) of at most 2^7 of them: at most 8 significant bits, already a bf16 value (with denormals
// flushed, a lo below the normal range is 0), so it is not rounded again.
template <int P>
inline void split(__m512 x, __m512* out) {
  __m512 h = bfround(x);
  out[0] = h;
  __m512 r = _mm512_sub_ps(x, h);  // exact
  __m512 m = bfround(r);
  out[1] = m;
  if (P == 3) out[2] = _mm512_sub_ps(r, m);  // exact, and a bf16 value (above)
}

}  // namespace uf
#endif
