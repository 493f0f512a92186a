// Kernel implementations. Parallelism: OpenMP over independent rows/heads; matrix products go to
// OpenBLAS (the OpenMP build, so a cblas call made inside one of our parallel regions runs on the
// calling thread instead of oversubscribing the cores).
// GCC 12 reports a false "may be used uninitialized" inside its own AVX-512 intrinsics (as in amx_gemm.cc).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include "kernels.h"
#include "amx_gemm.h"
#include "f32_packed.h"
#include "qknorm.h"
#include "vmath.h"

#include <cblas.h>
#include <omp.h>
#include <xmmintrin.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <utility>
#include <vector>

namespace uf {

static int g_threads = 0;

void enable_flush_denormals() { _mm_setcsr(_mm_getcsr() | 0x8040); }  // FTZ | DAZ

void set_num_threads(int n) {
  if (n < 1) n = 1;
  g_threads = n;
  omp_set_num_threads(n);
  openblas_set_num_threads(n);
  // Tiny gradients and Adam second moments underflow into denormals, which many cores handle through slow
  // microcode assists. Worker threads run only our kernels, so they flush denormals for good (as XLA's CPU
  // backend does); the calling thread does it per kernel call (see addon.cc) so JavaScript keeps IEEE semantics.
#pragma omp parallel
  enable_flush_denormals();
}
int get_num_threads() { return g_threads > 0 ? g_threads : omp_get_max_threads(); }

// ---------------------------------------------------------------------------------------------
static inline bool is_nan(float x) { return x != x; }

// Split [0, n) into one contiguous chunk per OpenMP thread and run f(lo, hi) on each; the body's
// own `omp simd` loop then vectorises (GCC does not vectorise these loops under `parallel for simd`).
template <typename F>
static void parallel_chunks(int64_t n, F f) {
#pragma omp parallel
  {
    int64_t nt = omp_get_num_threads(), t = omp_get_thread_num();
    int64_t per = ((n + nt - 1) / nt + 15) & ~int64_t(15);
    int64_t lo = std::min(n, t * per), hi = std::min(n, lo + per);
    if (lo < hi) f(lo, hi);
  }
}

// ---------------------------------------------------------------------------------------------
static int g_gemm_mode = -1;  // -1: not read from the environment yet

int get_gemm_mode() {
  if (g_gemm_mode < 0) {
    const char* e = getenv("UNFORGET_GEMM");
    g_gemm_mode = e && !strcmp(e, "blas") ? 1 : e && !strcmp(e, "amx") ? 2 : 0;
  }
  return g_gemm_mode;
}
void set_gemm_mode(int mode) { g_gemm_mode = mode < 0 || mode > 2 ? 0 : mode; }
bool gemm_amx_available() { return amx_available(); }

// AMX repacks both operands on every call, O(K(M+N)), so it pays off only when the product is long on both
// sides: activation × weight products with many rows (M tokens), and weight gradients Xᵀ·dY (K tokens) whose
// sides are not too unequal (amx_gemm swaps operands to keep the wider side in L2-sized chunks).
static bool want_amx(bool ta, int M, int N, int K) {
  int mode = get_gemm_mode();
  if (mode == 1 || omp_in_parallel()) return false;
  if (mode == 2) return true;
  if (2.0 * M * N * K < 4e6) return false;
  // Activation products need many rows (M tokens): with few (decoding), packing B on every call outweighs the tiles.
  if (!ta && M < 256) return false;
  // Weight gradients (A transposed, K tokens): the packing of the long side dominates once the short side is
  // 64 times shorter, and a side under 16 (a LoRA rank of 8: 256 × 8, 8 × 256) wastes most of each tile.
  if (ta && (std::max(M, N) >= 64 * std::min(M, N) || std::min(M, N) < 16)) return false;
  return true;
}

static void sgemm(bool ta, bool tb, int M, int N, int K, float alpha, const float* A, const float* B, float beta,
                  float* C) {
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M, N, K, alpha, A,
              ta ? M : K, B, tb ? K : N, beta, C, N);
}

// Machines without AMX: activation products (many rows: M tokens) with a narrow output (N ≤ 384: the model's
// attention-output, down and lm-head input-gradient products at D = 256, most products at D = 128) run on the float32
// engine of f32_packed.cc, with B packed per call (O(K·N) against the product's O(M·N·K)), the one shape where it
// beats sgemm (docs/performance.md); wider outputs, and GELU fused into its blocks, do not, so they stay on sgemm.
// gemm and gemmGelu choose alike, so their values stay identical. Weight gradients (A transposed, K tokens) stay on
// sgemm too: their B is a long K × N activation gradient, which packing per call would stream through memory again.
static bool want_f32(bool ta, int M, int N, int K) {
  const int mode = get_gemm_mode();
  if (mode == 1 || omp_in_parallel() || amx_available()) return false;
  return !ta && M >= 256 && N <= 384 && 2.0 * M * N * K >= 4e6;
}

void gemm(bool ta, bool tb, int M, int N, int K, float alpha, const float* A, const float* B, float beta, float* C) {
  if (M == 0 || N == 0) return;
  if (want_amx(ta, M, N, K) && amx_gemm(ta, tb, M, N, K, alpha, A, B, beta, C)) return;
  if (want_f32(ta, M, N, K) && f32_gemm(ta, tb, M, N, K, alpha, A, B, beta, C, nullptr)) return;
  sgemm(ta, tb, M, N, K, alpha, A, B, beta, C);
}

// The packing is the AMX engine's where the machine has AMX, else float32 panels (f32_packed.cc, AVX-512F).
size_t gemm_pack_size(int N, int K) { return amx_available() ? amx_packed_b_size(N, K) : f32_packed_b_size(N, K); }

bool gemm_pack_b(bool tb, int N, int K, const float* B, uint16_t* packed) {
  return amx_available() ? amx_pack_b(tb, N, K, B, packed) : f32_pack_b(tb, N, K, B, packed);
}

void gemm_packed(bool ta, bool tb, int M, int N, int K, float alpha, const float* A, const float* B,
                 const uint16_t* packed, float beta, float* C) {
  if (M == 0 || N == 0) return;
  const int mode = get_gemm_mode();
  if (packed && mode != 1 && !omp_in_parallel()) {
    if (amx_available()) {
      // With B packed beforehand only A is packed per call, so AMX pays off from 8 rows (half a tile) up.
      if ((M >= 8 || mode == 2) && amx_gemm_packed(ta, M, N, K, alpha, A, packed, beta, C)) return;
    } else if (f32_gemm_packed(ta, M, N, K, alpha, A, packed, beta, C)) {
      return;
    }
  }
  sgemm(ta, tb, M, N, K, alpha, A, B, beta, C);
}

// ---------------------------------------------------------------------------------------------
int64_t embedding_forward(float* out, const float* table, const int32_t* ids, int64_t rows, int V, int D) {
  for (int64_t r = 0; r < rows; r++)
    if (ids[r] < 0 || ids[r] >= V) return r;
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; r++) std::memcpy(out + r * D, table + (int64_t)ids[r] * D, sizeof(float) * D);
  return -1;
}

int64_t embedding_backward(float* dtable, const float* dout, const int32_t* ids, int64_t rows, int V, int D) {
  for (int64_t r = 0; r < rows; r++)
    if (ids[r] < 0 || ids[r] >= V) return r;
  // Each thread owns the vocabulary rows id % nthreads == tid, so no two threads add to one row.
#pragma omp parallel
  {
    int nt = omp_get_num_threads(), tid = omp_get_thread_num();
    for (int64_t r = 0; r < rows; r++) {
      int id = ids[r];
      if (id % nt != tid) continue;
      float* dst = dtable + (int64_t)id * D;
      const float* src = dout + r * D;
#pragma omp simd
      for (int d = 0; d < D; d++) dst[d] += src[d];
    }
  }
  return -1;
}

// ---------------------------------------------------------------------------------------------

void rmsnorm_forward(float* y, float* rstd, const float* x, int64_t R, int C, const float* gain, float eps) {
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < R; r++) {
    const float* xr = x + r * C;
    float* yr = y + r * C;
    float s = row_rstd(xr, C, eps);
    rstd[r] = s;
    if (gain) {
      // (x·rstd)·gain, in transformers' order: the normalised row first, then the weight
#pragma omp simd
      for (int c = 0; c < C; c++) yr[c] = xr[c] * s * gain[c];
    } else {
#pragma omp simd
      for (int c = 0; c < C; c++) yr[c] = xr[c] * s;
    }
  }
}

void rmsnorm_backward(float* dx, const float* dy, const float* y, const float* rstd, int64_t R, int C) {
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < R; r++) {
    const float* dyr = dy + r * C;
    const float* yr = y + r * C;
    float* dxr = dx + r * C;
    float dot = 0.f;
#pragma omp simd reduction(+ : dot)
    for (int c = 0; c < C; c++) dot += dyr[c] * yr[c];
    float mean = dot / C, s = rstd[r];
#pragma omp simd
    for (int c = 0; c < C; c++) dxr[c] += (dyr[c] - yr[c] * mean) * s;
  }
}

// ---------------------------------------------------------------------------------------------
// RoPE's cos and sin rows for positions 0..n-1 of head size H, kept between calls. Kernels run on the JavaScript
// thread, one at a time, so a single cache needs no lock.
struct CosSinTable {
  int H = 0, n = 0;
  std::vector<float> c, s;
};
// cos/sin of position · f_i, computed in double once and kept: a training step asks for the same table in every
// layer.
static CosSinTable g_rope;

// Pointers to the rows for positions pos0 .. pos0+T-1 (row p at offset p·H/2).
void rope_tables(const float*& cs, const float*& sn, int T, int H, int pos0) {
  const int need = pos0 + T, half = H / 2;
  if (g_rope.H != H || g_rope.n < need) {
    const int n = std::max(need, g_rope.H == H ? 2 * g_rope.n : 0);
    g_rope.c.resize((size_t)n * half);
    g_rope.s.resize((size_t)n * half);
    for (int i = 0; i < half; i++) {
      double f = std::pow(10000.0, -2.0 * i / H);
      for (int t = 0; t < n; t++) {
        double a = (double)t * f;
        g_rope.c[(size_t)t * half + i] = (float)std::cos(a);
        g_rope.s[(size_t)t * half + i] = (float)std::sin(a);
      }
    }
    g_rope.H = H;
    g_rope.n = n;
  }
  cs = g_rope.c.data() + (size_t)pos0 * half;
  sn = g_rope.s.data() + (size_t)pos0 * half;
}

// A head at a time through the row helpers (qknorm.h): any even H, in AVX pieces when H is a multiple of 16.
static void qk_norm_rope_forward_rows(float* y, float* rstd, const float* x, int64_t r0, int64_t r1, int T, int N, int H,
                                      const float* cs, const float* sn) {
  const int half = H / 2;
  const int64_t D = (int64_t)N * H;
  for (int64_t r = r0; r < r1; r++) {
    const int t = (int)(r % T);
    for (int j = 0; j < 2 * N; j++) {
      const float* xs = x + r * 3 * D + (int64_t)j * H;
      const float s = head_rstd(xs, H);
      rstd[r * 2 * N + j] = s;
      scale_rotate(y + r * 3 * D + (int64_t)j * H, xs, H, s, &cs[(size_t)t * half], &sn[(size_t)t * half]);
    }
  }
}

#if defined(__AVX512F__)
// H = 2, 4, 8 and 16: a vector holds 16/H whole heads; per-head sums are butterflies inside groups of H lanes,
// and the rotation is y·C + halfswap(y)·S with C = (c, c), S = (−s, s) per head, tiled over the 16 lanes
// (rope16). Larger heads go through the row helpers.
static inline __m512 group_sum(__m512 v, int H) {  // sum over each aligned group of H lanes, in all its lanes
  v = _mm512_add_ps(v, _mm512_permute_ps(v, 0xB1));
  if (H >= 4) v = _mm512_add_ps(v, _mm512_permute_ps(v, 0x4E));
  if (H >= 8) v = _mm512_add_ps(v, _mm512_shuffle_f32x4(v, v, 0xB1));
  if (H >= 16) v = _mm512_add_ps(v, _mm512_shuffle_f32x4(v, v, 0x4E));
  return v;
}
static inline __m512 half_swap(__m512 v, int H) {  // exchange the two halves of each head
  switch (H) {
    case 2: return _mm512_permute_ps(v, 0xB1);
    case 4: return _mm512_permute_ps(v, 0x4E);
    case 8: return _mm512_shuffle_f32x4(v, v, 0xB1);
    default: return _mm512_shuffle_f32x4(v, v, 0x4E);
  }
}
static inline bool qk_lanes_ok(int H) { return H == 2 || H == 4 || H == 8 || H == 16; }

// C and S tiled to 16 lanes, for positions pos0 .. pos0+T-1 of head size H ≤ 16 (row p at offset 16·p).
static CosSinTable g_rope16;
static void rope16(const float*& c16, const float*& s16, const float* cs, const float* sn, int T, int H, int pos0) {
  const int need = pos0 + T, half = H / 2;
  if (g_rope16.H != H || g_rope16.n < need) {
    // cs/sn point at pos0's row; rows 0 .. need-1 are there (rope_tables made at least need rows)
    const float* c0 = cs - (size_t)pos0 * half;
    const float* s0 = sn - (size_t)pos0 * half;
    g_rope16.c.resize((size_t)need * 16);
    g_rope16.s.resize((size_t)need * 16);
    for (int t = 0; t < need; t++)
      for (int l = 0; l < 16; l++) {
        int h = l % H, i = h % half;
        g_rope16.c[(size_t)t * 16 + l] = c0[(size_t)t * half + i];
        g_rope16.s[(size_t)t * 16 + l] = h < half ? -s0[(size_t)t * half + i] : s0[(size_t)t * half + i];
      }
    g_rope16.H = H;
    g_rope16.n = need;
  }
  c16 = g_rope16.c.data() + (size_t)pos0 * 16;
  s16 = g_rope16.s.data() + (size_t)pos0 * 16;
}

static void qk_norm_rope_forward_lanes(float* y, float* rstd, const float* x, int64_t r0, int64_t r1, int T, int N,
                                       int H, const float* c16, const float* s16) {
  const int n = 2 * N * H;  // q and k of a row: 2N heads, contiguous
  const int64_t D = (int64_t)N * H;
  const __m512 eps = _mm512_set1_ps(kRmsEps), invH = _mm512_set1_ps(1.f / H), one = _mm512_set1_ps(1.f);
  const __m512i heads = _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                                           _mm512_set1_epi32(H));  // lane i ← lane i·H (a head's first)
  for (int64_t r = r0; r < r1; r++) {
    const int t = (int)(r % T);
    const float* xr = x + r * 3 * D;
    float* yr = y + r * 3 * D;
    float* rr = rstd + r * 2 * N;
    const __m512 C = _mm512_loadu_ps(c16 + (size_t)t * 16), S = _mm512_loadu_ps(s16 + (size_t)t * 16);
    for (int i = 0; i < n; i += 16) {
      const __mmask16 m = mask_n(n - i);
      const __m512 v = _mm512_maskz_loadu_ps(m, xr + i);
      const __m512 ss = group_sum(_mm512_mul_ps(v, v), H);
      const __m512 s = _mm512_div_ps(one, _mm512_sqrt_ps(_mm512_fmadd_ps(ss, invH, eps)));
      const __m512 u = _mm512_mul_ps(v, s);
      _mm512_mask_storeu_ps(yr + i, m, _mm512_fmadd_ps(u, C, _mm512_mul_ps(half_swap(u, H), S)));
      const int nh = std::min(16, n - i) / H;  // heads in this vector
      _mm512_mask_storeu_ps(rr + i / H, (__mmask16)((1u << nh) - 1), _mm512_permutexvar_ps(heads, s));
    }
  }
}

#endif

// The rows of B·T split evenly over the threads, each thread's rows through the lane kernel (H ≤ 16) or the row
// helpers, then v (the last D of each 3D-wide row) copied unless in place.
void qk_norm_rope_forward(float* y, float* rstd, const float* x, int B, int T, int N, int H, int pos0) {
  const float *cs, *sn;
  rope_tables(cs, sn, T, H, pos0);
  const int64_t D = (int64_t)N * H, nrows = (int64_t)B * T;
#if defined(__AVX512F__)
  const float *c16 = nullptr, *s16 = nullptr;
  const bool vec = qk_lanes_ok(H);
  if (vec) rope16(c16, s16, cs, sn, T, H, pos0);
#endif
#pragma omp parallel
  {
    const int nth = omp_get_num_threads(), tid = omp_get_thread_num();
    const int64_t r0 = nrows * tid / nth, r1 = nrows * (tid + 1) / nth;
#if defined(__AVX512F__)
    if (vec) qk_norm_rope_forward_lanes(y, rstd, x, r0, r1, T, N, H, c16, s16);
    else
#endif
      qk_norm_rope_forward_rows(y, rstd, x, r0, r1, T, N, H, cs, sn);
    if (y != x)
      for (int64_t r = r0; r < r1; r++) std::memcpy(y + r * 3 * D + 2 * D, x + r * 3 * D + 2 * D, sizeof(float) * D);
  }
}

// ---------------------------------------------------------------------------------------------

static inline float tanh_fast(float u) {
  // tanh(u) = 1 − 2/(exp(2u)+1); saturates correctly at ±inf through fast_exp's clamps.
  return 1.f - 2.f / (fast_exp(2.f * u) + 1.f);
}
// GELU-tanh's tanh(√(2/π)(x + A x³)).
static inline float gelu_tanh(float x) { return tanh_fast(kGeluC * (x + kGeluA * x * x * x)); }

#if defined(__AVX512F__)
static void gelu_forward_range(float* y, const float* x, int64_t n) {
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = mask_n(n - i);
    _mm512_mask_storeu_ps(y + i, m, gelu512(_mm512_maskz_loadu_ps(m, x + i)));
  }
}

// c = c · gelu'(x), in place (the backward of GELU written over the incoming gradient).
static void gelu_grad_range(float* c, const float* x, int64_t n) {
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = mask_n(n - i);
    const __m512 g = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, c + i), gelu_grad512(_mm512_maskz_loadu_ps(m, x + i)),
                                     _mm512_setzero_ps());
    _mm512_mask_storeu_ps(c + i, m, g);
  }
}
#else
static void gelu_forward_range(float* y, const float* x, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; i++) {
    float xi = x[i];
    y[i] = 0.5f * xi * (1.f + gelu_tanh(xi));
  }
}

static void gelu_grad_range(float* c, const float* x, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; i++) {
    float xi = x[i];
    float t = gelu_tanh(xi);
    float d = 0.5f * (1.f + t) + 0.5f * xi * (1.f - t * t) * kGeluC * (1.f + 3.f * kGeluA * xi * xi);
    c[i] = 0.f + c[i] * d;
  }
}
#endif

void gelu_forward(float* y, const float* x, int64_t n) {
  parallel_chunks(n, [=](int64_t lo, int64_t hi) { gelu_forward_range(y + lo, x + lo, hi - lo); });
}

static void gelu_grad(float* c, const float* x, int64_t n) {
  parallel_chunks(n, [=](int64_t lo, int64_t hi) { gelu_grad_range(c + lo, x + lo, hi - lo); });
}

// ---------------------------------------------------------------------------------------------
// GELU fused into a product's output (see GemmEpilogue): the same arithmetic as gelu_forward and gelu_grad, so the
// fused and the separate forms give identical values.
void gemm_epilogue_block(const GemmEpilogue& ep, float* C, int ldc, int i0, int i1, int j0, int j1) {
  for (int i = i0; i < i1; i++) {
    float* c = C + (int64_t)i * ldc;
    const int64_t n = j1 - j0;
    if (ep.kind == 1) gelu_forward_range(ep.y + (int64_t)i * ldc + j0, c + j0, n);
    else gelu_grad_range(c + j0, ep.x + (int64_t)i * ldc + j0, n);
  }
}

void gemm_gelu(bool ta, bool tb, int M, int N, int K, float alpha, const float* A, const float* B, float beta,
               float* C, int kind, float* aux) {
  if (M == 0 || N == 0) return;
  GemmEpilogue ep{kind, kind == 1 ? aux : nullptr, kind == 2 ? aux : nullptr};
  if (want_amx(ta, M, N, K) && amx_gemm_ep(ta, tb, M, N, K, alpha, A, B, beta, C, &ep)) return;
  if (want_f32(ta, M, N, K) && f32_gemm(ta, tb, M, N, K, alpha, A, B, beta, C, &ep)) return;
  sgemm(ta, tb, M, N, K, alpha, A, B, beta, C);
  if (kind == 1) gelu_forward(aux, C, (int64_t)M * N);
  else gelu_grad(C, aux, (int64_t)M * N);
}

// ---------------------------------------------------------------------------------------------
static inline float row_max(const float* x, int V) {
  float m = -std::numeric_limits<float>::infinity();
#pragma omp simd reduction(max : m)
  for (int v = 0; v < V; v++) m = x[v] > m ? x[v] : m;
  return m;
}

// Σ exp(x − m), optionally storing the exponentials.
static inline double row_sumexp(const float* x, int V, float m, float* store) {
  float s = 0.f;
  if (store) {
#pragma omp simd reduction(+ : s)
    for (int v = 0; v < V; v++) {
      float e = fast_exp(x[v] - m);
      store[v] = e;
      s += e;
    }
  } else {
#pragma omp simd reduction(+ : s)
    for (int v = 0; v < V; v++) s += fast_exp(x[v] - m);
  }
  return s;
}

// A row of weight 0 contributes nothing: its loss and its gradient row are 0 (its target may be anything).
static inline bool skipped_row(float w, float* row_loss, float* g, int V) {
  if (w != 0.f) return false;
  if (row_loss) *row_loss = 0.f;
  if (g) std::memset(g, 0, sizeof(float) * V);
  return true;
}

double cross_entropy(const float* logits, const int32_t* targets, const float* w, int64_t R, int V, float* row_loss,
                     float* dlogits, float grad_scale, int64_t* bad_row) {
  *bad_row = -1;
  for (int64_t r = 0; r < R; r++)
    if (w[r] != 0.f && (targets[r] < 0 || targets[r] >= V)) {
      *bad_row = r;
      return 0.0;
    }
  double total = 0.0;
#pragma omp parallel for reduction(+ : total) schedule(static)
  for (int64_t r = 0; r < R; r++) {
    const float* x = logits + r * V;
    float* g = dlogits ? dlogits + r * V : nullptr;
    if (skipped_row(w[r], row_loss ? row_loss + r : nullptr, g, V)) continue;
    const float xt = x[targets[r]];  // read first: dlogits may be logits itself
    float m = row_max(x, V);
    double s = row_sumexp(x, V, m, g);
    double lse = (double)m + std::log(s);
    double loss = lse - (double)xt;
    if (row_loss) row_loss[r] = (float)loss;
    total += (double)w[r] * loss;
    if (g) {
      float c = (float)((double)grad_scale * w[r] / s);
#pragma omp simd
      for (int v = 0; v < V; v++) g[v] *= c;
      g[targets[r]] -= grad_scale * w[r];
    }
  }
  return total;
}

// fp-contract off: with FMA contraction, q·a − p·b is evaluated as fma(q, a, −round(p·b)), which is
// the rounding error of p·b (non-zero) even when q·a and p·b are bit-identical (θ = π).
__attribute__((optimize("fp-contract=off")))
double kl_div(const float* lp, const float* lq, const float* w, int64_t R, int V, float* row_loss, float* dlq,
              float grad_scale) {
  double total = 0.0;
#pragma omp parallel reduction(+ : total)
  {
    // exp(P − max P) and exp(Q − max Q) of the current row, computed once and kept for the later passes. The
    // gradient is written only in the last pass over the row, after every read of Q, so dlq may be lq itself
    // (the gradient written over θ's logits).
    std::vector<float> ep_row((size_t)V), eq_row((size_t)V);
    float* ep = ep_row.data();
    float* eq = eq_row.data();
#pragma omp for schedule(static)
    for (int64_t r = 0; r < R; r++) {
      const float* P = lp + r * V;
      const float* Q = lq + r * V;
      float* g = dlq ? dlq + r * V : nullptr;
      if (skipped_row(w[r], row_loss ? row_loss + r : nullptr, g, V)) continue;
      float mp = row_max(P, V), mq = row_max(Q, V);
      // Both sums in one loop (one vectorisation, one summation order), so θ = π gives bit-identical
      // normalisers: KL and its gradient are then exactly zero, as at the first finetuning step. exp(Q − max Q)
      // is kept when there is a gradient to write.
      float spf = 0.f, sqf = 0.f;
      if (g) {
#pragma omp simd reduction(+ : spf, sqf)
        for (int v = 0; v < V; v++) {
          const float a = fast_exp(P[v] - mp), b = fast_exp(Q[v] - mq);
          ep[v] = a;
          eq[v] = b;
          spf += a;
          sqf += b;
        }
      } else {
#pragma omp simd reduction(+ : spf, sqf)
        for (int v = 0; v < V; v++) {
          const float a = fast_exp(P[v] - mp);
          ep[v] = a;
          spf += a;
          sqf += fast_exp(Q[v] - mq);
        }
      }
      double sp = spf, sq = sqf;
      // KL = Σ p (P − Q) − lse(P) + lse(Q)
      float invp = (float)(1.0 / sp);
      float acc = 0.f;
#pragma omp simd reduction(+ : acc)
      for (int v = 0; v < V; v++) acc += ep[v] * invp * (P[v] - Q[v]);
      double kl = (double)acc - ((double)mp + std::log(sp)) + ((double)mq + std::log(sq));
      if (kl < 0.0 && kl > -1e-6) kl = 0.0;  // float rounding of an exactly-zero divergence
      if (row_loss) row_loss[r] = (float)kl;
      total += (double)w[r] * kl;
      if (g) {
        float c = grad_scale * w[r];
        float invq = (float)(1.0 / sq);
#pragma omp simd
        for (int v = 0; v < V; v++) g[v] = c * (eq[v] * invq - ep[v] * invp);
      }
    }
  }
  return total;
}

// ---------------------------------------------------------------------------------------------
void adamw_step(float* p, const float* g, float* m, float* v, int64_t n, float lr, float b1, float b2, float eps,
                float wd, float bc1, float bc2) {
  const float decay = 1.f - lr * wd, ib1 = 1.f - b1, ib2 = 1.f - b2;
  const float step = lr / bc1, ibc2 = 1.f / bc2;
  parallel_chunks(n, [=](int64_t lo, int64_t hi) {
#pragma omp simd
    for (int64_t i = lo; i < hi; i++) {
      float gi = g[i];
      float mi = b1 * m[i] + ib1 * gi;
      float vi = b2 * v[i] + ib2 * gi * gi;
      m[i] = mi;
      v[i] = vi;
      p[i] = p[i] * decay - step * mi / (std::sqrt(vi * ibc2) + eps);
    }
  });
}

void sgd_step(float* p, const float* g, int64_t n, float lr, float wd) {
  parallel_chunks(n, [=](int64_t lo, int64_t hi) {
#pragma omp simd
    for (int64_t i = lo; i < hi; i++) p[i] -= lr * (g[i] + wd * p[i]);
  });
}

void axpy(int64_t n, float a, const float* x, float* y) {
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; i++) y[i] += a * x[i];
}

void add(int64_t n, const float* x, const float* y, float* out) {
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; i++) out[i] = x[i] + y[i];
}

double sum_squares(const float* x, int64_t n) {
  double s = 0.0;
#pragma omp parallel for simd reduction(+ : s) schedule(static)
  for (int64_t i = 0; i < n; i++) s += (double)x[i] * x[i];
  return s;
}

double diff_sum_squares(const float* x, const float* y, int64_t n) {
  double s = 0.0;
#pragma omp parallel for simd reduction(+ : s) schedule(static)
  for (int64_t i = 0; i < n; i++) {
    double d = (double)x[i] - y[i];
    s += d * d;
  }
  return s;
}

// ---------------------------------------------------------------------------------------------
// Nucleus: keeps in w (the unnormalised probabilities of one row, 0 for tokens already left out) only the smallest set
// of the most probable tokens whose sum reaches top_p of the row's total, ties taken in vocabulary order. The top
// 64, 128, ... are found with nth_element until their sum is enough, so a peaked row costs O(V), not a sort of V.
static void nucleus(float* w, int V, double top_p, std::vector<std::pair<float, int>>& cand) {
  cand.clear();
  double total = 0.0;
  for (int v = 0; v < V; v++)
    if (w[v] > 0.f) {
      cand.emplace_back(w[v], v);
      total += w[v];
    }
  const size_t n = cand.size();
  if (n == 0) return;
  const double target = top_p * total;
  auto before = [](const std::pair<float, int>& a, const std::pair<float, int>& b) {
    return a.first > b.first || (a.first == b.first && a.second < b.second);
  };
  for (size_t k = std::min<size_t>(64, n);; k = std::min(n, 2 * k)) {
    if (k < n) std::nth_element(cand.begin(), cand.begin() + k, cand.end(), before);
    std::sort(cand.begin(), cand.begin() + k, before);
    double cum = 0.0;
    size_t keep = 0;
    for (size_t i = 0; i < k && !keep; i++) {
      cum += cand[i].first;
      if (cum >= target) keep = i + 1;
    }
    if (!keep && k < n) continue;
    if (!keep) return;  // rounding left the whole row short of top_p·total: the nucleus is all of it
    std::fill(w, w + V, 0.f);
    for (size_t i = 0; i < keep; i++) w[cand[i].second] = cand[i].first;
    return;
  }
}

void sample_rows(const float* logits, int64_t R, int V, float temperature, int top_k, const double* u, int32_t* out,
                 double top_p) {
#pragma omp parallel
  {
    std::vector<float> buf((size_t)V), tmp;
    std::vector<std::pair<float, int>> cand;
    std::vector<double> bsum((size_t)V / 64 + 1);
#pragma omp for schedule(static)
    for (int64_t r = 0; r < R; r++) {
      const float* x = logits + r * V;
      if (temperature <= 0.f || top_k == 1) {
        int best = 0;
        for (int v = 1; v < V; v++)
          if (x[v] > x[best] || (is_nan(x[best]) && !is_nan(x[v]))) best = v;
        out[r] = best;
        continue;
      }
      float thresh = -std::numeric_limits<float>::infinity();
      if (top_k > 0 && top_k < V) {
        tmp.assign(x, x + V);
        std::nth_element(tmp.begin(), tmp.begin() + (top_k - 1), tmp.end(), std::greater<float>());
        thresh = tmp[top_k - 1];
      }
      float m = row_max(x, V);
      const float it = 1.f / temperature;
#pragma omp simd
      for (int v = 0; v < V; v++) buf[v] = x[v] >= thresh ? fast_exp((x[v] - m) * it) : 0.f;
      if (top_p < 1.0) nucleus(buf.data(), V, top_p, cand);
      // Sums of blocks of 64 (float64), so the inverse-CDF search skips whole blocks.
      constexpr int kBlock = 64;
      const int nb = (V + kBlock - 1) / kBlock;
      double total = 0.0;
      for (int bi = 0; bi < nb; bi++) {
        double sb = 0.0;
        const int hi = std::min(V, (bi + 1) * kBlock);
#pragma omp simd reduction(+ : sb)
        for (int v = bi * kBlock; v < hi; v++) sb += buf[v];
        bsum[bi] = sb;
        total += sb;
      }
      const double target = u[r] * total;
      double cum = 0.0;
      int start = -1, lastNonzero = -1;
      for (int bi = 0; bi < nb; bi++) {
        if (bsum[bi] <= 0.0) continue;
        lastNonzero = bi;
        if (cum + bsum[bi] > target) {
          start = bi;
          break;
        }
        cum += bsum[bi];
      }
      if (start < 0 && lastNonzero >= 0) {  // rounding left the target at the total: the last nonzero entry
        start = lastNonzero;
        cum = total - bsum[lastNonzero];
      }
      int pick = -1;
      for (int v = start < 0 ? V : start * kBlock; v < V; v++) {
        if (buf[v] == 0.f) continue;
        cum += buf[v];
        pick = v;
        if (cum > target) break;
      }
      out[r] = pick < 0 ? 0 : pick;
    }
  }
}

}  // namespace uf
