// float32 GEMM with a packed right operand, for machines without AMX (AVX-512F). See f32_packed.h.
//
// Decoding multiplies a few rows (the batch being sampled, typically 64) by the same frozen weights at every
// position, and cblas_sgemm repacks the weights in every call, which so few rows cannot amortise. Here op(B) is
// packed once into panels of 32 columns, k-major (for each k, the panel's 32 values: two zmm loads), zero-padded to
// a whole panel; a call broadcasts A's values straight from its rows (no packing: A is small and stays in L2)
// and keeps an 8 × 32 block of C in 16 registers over each 256-deep k block, the blocks' sums added in order.
// Training's activation products with a narrow output use the same kernel with B packed per call (f32_gemm).
#include "f32_packed.h"

#include "amx_gemm.h"  // GemmEpilogue, uf::gemm_epilogue_block

#include <omp.h>

#include <algorithm>
#include <vector>

#ifdef __AVX512F__
#include <immintrin.h>

namespace {

constexpr int kNR = 32;  // panel width (columns)
constexpr int kMR = 8;   // rows per register block
// rows per chunk: a chunk's rows of A (64 × K) stay in L1/L2 across all of the thread's panels, where with more rows
// (a sampling batch of 256) A would be read again from L3 for every panel.
constexpr int kMC = 64;
// k steps per block: each block's FMA chains start from zero and are added to the running sum, which keeps the
// rounding error of long K at sgemm's (one chain over the whole of K would not).
constexpr int kKC = 256;

inline int panels(int N) { return (N + kNR - 1) / kNR; }
// Start of thread t's share of x items split evenly over n threads (its share ends at part(x, t + 1, n)).
inline int part(int x, int t, int n) { return (int)((int64_t)x * t / n); }

// C[0..MR) × [0..ncols) of one panel: acc = op(A)[rows]·panel, then C = alpha·acc + beta·C.
// A's element (r, k) is at A[r·rs + k·ks].
template <int MR>
inline void block(const float* A, int64_t rs, int64_t ks, const float* P, int K, float alpha, float beta, float* C,
                  int ldc, int ncols) {
  __m512 tot0[MR], tot1[MR];  // the sum over the k blocks done so far (spilled to L1 by the compiler if need be)
  for (int r = 0; r < MR; r++) tot0[r] = tot1[r] = _mm512_setzero_ps();
  const float* a = A;
  for (int kb = 0; kb < K; kb += kKC) {
    const int ke = std::min(K, kb + kKC);
    __m512 acc0[MR], acc1[MR];
    for (int r = 0; r < MR; r++) acc0[r] = acc1[r] = _mm512_setzero_ps();
    for (int k = kb; k < ke; k++, a += ks, P += kNR) {
      const __m512 b0 = _mm512_loadu_ps(P), b1 = _mm512_loadu_ps(P + 16);
      for (int r = 0; r < MR; r++) {
        const __m512 x = _mm512_set1_ps(a[r * rs]);
        acc0[r] = _mm512_fmadd_ps(x, b0, acc0[r]);
        acc1[r] = _mm512_fmadd_ps(x, b1, acc1[r]);
      }
    }
    for (int r = 0; r < MR; r++) {
      tot0[r] = _mm512_add_ps(tot0[r], acc0[r]);
      tot1[r] = _mm512_add_ps(tot1[r], acc1[r]);
    }
  }
  const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
  const __mmask16 m0 = ncols >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << ncols) - 1);
  const __mmask16 m1 = ncols >= 32 ? (__mmask16)0xffff : ncols <= 16 ? 0 : (__mmask16)((1u << (ncols - 16)) - 1);
  for (int r = 0; r < MR; r++) {
    float* c = C + (int64_t)r * ldc;
    __m512 y0 = _mm512_mul_ps(va, tot0[r]), y1 = _mm512_mul_ps(va, tot1[r]);
    if (beta != 0.f) {  // beta = 0 never reads C (it may hold NaN)
      y0 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m0, c), y0);
      y1 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m1, c + 16), y1);
    }
    _mm512_mask_storeu_ps(c, m0, y0);
    _mm512_mask_storeu_ps(c + 16, m1, y1);
  }
}

using BlockFn = void (*)(const float*, int64_t, int64_t, const float*, int, float, float, float*, int, int);
constexpr BlockFn kBlocks[kMR + 1] = {nullptr,  block<1>, block<2>, block<3>, block<4>,
                                      block<5>, block<6>, block<7>, block<8>};

// Rows [m0, m1) × panels [p0, p1) of C.
void run(bool ta, int M, int N, int K, float alpha, const float* A, const float* packed, float beta, float* C,
         int m0, int m1, int p0, int p1, const GemmEpilogue* ep = nullptr) {
  const int64_t rs = ta ? 1 : K, ks = ta ? M : 1;
  for (int ic = m0; ic < m1; ic += kMC) {
    const int ie = std::min(m1, ic + kMC);
    for (int p = p0; p < p1; p++) {
      const float* P = packed + (int64_t)p * K * kNR;
      const int j0 = p * kNR, ncols = std::min(kNR, N - j0);
      for (int i = ic; i < ie; i += kMR) {
        const int mr = std::min(kMR, ie - i);
        kBlocks[mr](A + i * rs, rs, ks, P, K, alpha, beta, C + (int64_t)i * N + j0, N, ncols);
        if (ep) uf::gemm_epilogue_block(*ep, C, N, i, i + mr, j0, j0 + ncols);  // the block is in L1
      }
    }
  }
}

}  // namespace

size_t f32_packed_b_size(int N, int K) { return (size_t)panels(N) * kNR * (size_t)K * 2; }

bool f32_pack_b(bool tb, int N, int K, const float* B, uint16_t* packed_words) {
  float* P = reinterpret_cast<float*>(packed_words);
  const int np = panels(N);
#pragma omp parallel for schedule(static)
  for (int p = 0; p < np; p++) {
    float* dst = P + (int64_t)p * K * kNR;
    const int j0 = p * kNR, nc = std::min(kNR, N - j0);
    for (int k = 0; k < K; k++, dst += kNR) {
      int j = 0;
      if (!tb)
        for (; j < nc; j++) dst[j] = B[(int64_t)k * N + j0 + j];
      else
        for (; j < nc; j++) dst[j] = B[(int64_t)(j0 + j) * K + k];
      for (; j < kNR; j++) dst[j] = 0.f;
    }
  }
  return true;
}

bool f32_gemm_packed(bool ta, int M, int N, int K, float alpha, const float* A, const uint16_t* packed_words,
                     float beta, float* C) {
  if (M <= 0 || N <= 0 || K <= 0 || alpha == 0.f) return false;  // the caller's sgemm handles these
  if ((reinterpret_cast<uintptr_t>(packed_words) & 3) != 0) return false;
  const float* P = reinterpret_cast<const float*>(packed_words);
  const int np = panels(N);
  // Small products (under about 0.2 MFLOP a thread) on the calling thread alone.
  const int nth = std::max(1, std::min(omp_get_max_threads(), (int)(2.0 * M * N * K / 2e5) + 1));
  // Each thread its own panels (B, the larger operand, is read once in all) while there are at least two per
  // thread; otherwise (a narrow output: a small vocabulary's logits) each thread its own register blocks of rows.
  const bool by_panels = np >= 2 * nth;
  const int nb = (M + kMR - 1) / kMR;
#pragma omp parallel num_threads(nth) if (nth > 1)
  {
    const int t = omp_get_thread_num(), n = omp_get_num_threads();
    if (by_panels) {
      run(ta, M, N, K, alpha, A, P, beta, C, 0, M, part(np, t, n), part(np, t + 1, n));
    } else {
      const int b0 = part(nb, t, n), b1 = part(nb, t + 1, n);
      if (b0 < b1) run(ta, M, N, K, alpha, A, P, beta, C, b0 * kMR, std::min(M, b1 * kMR), 0, np);
    }
  }
  return true;
}

// Products whose B is not packed beforehand (training on machines without AMX): B is packed into a scratch buffer
// kept between calls, then the threads split C's rows in chunks of kMC.
static std::vector<float> g_scratch;

bool f32_gemm(bool ta, bool tb, int M, int N, int K, float alpha, const float* A, const float* B, float beta,
              float* C, const GemmEpilogue* ep) {
  if (M <= 0 || N <= 0 || K <= 0 || alpha == 0.f) return false;
  const size_t words = f32_packed_b_size(N, K);
  if (g_scratch.size() < words / 2) g_scratch.resize(words / 2);
  uint16_t* P16 = reinterpret_cast<uint16_t*>(g_scratch.data());
  f32_pack_b(tb, N, K, B, P16);
  const float* P = g_scratch.data();
  const int np = panels(N);
  const int nc = (M + kMC - 1) / kMC;
#pragma omp parallel
  {
    const int t = omp_get_thread_num(), n = omp_get_num_threads();
    const int c0 = part(nc, t, n), c1 = part(nc, t + 1, n);
    if (c0 < c1) run(ta, M, N, K, alpha, A, P, beta, C, c0 * kMC, std::min(M, c1 * kMC), 0, np, ep);
  }
  return true;
}

#else  // no AVX-512F: no packing (gemm_packed falls back to sgemm on B)

size_t f32_packed_b_size(int, int) { return 0; }
bool f32_pack_b(bool, int, int, const float*, uint16_t*) { return false; }
bool f32_gemm_packed(bool, int, int, int, float, const float*, const uint16_t*, float, float*) { return false; }
bool f32_gemm(bool, bool, int, int, int, float, const float*, const float*, float, float*, const GemmEpilogue*) {
  return false;
}

#endif
