// Kernel implementations. Parallelism: OpenMP over independent rows/heads; matrix products go to
// OpenBLAS (the OpenMP build, so a cblas call made inside one of our parallel regions runs on the
// calling thread instead of oversubscribing the two cores).
#include "kernels.h"
#include "amx_gemm.h"

#include <cblas.h>
#include <omp.h>
#include <xmmintrin.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <vector>

namespace uf {

static int g_threads = 0;

void enable_flush_denormals() { _mm_setcsr(_mm_getcsr() | 0x8040); }  // FTZ | DAZ

void set_num_threads(int n) {
  if (n < 1) n = 1;
  g_threads = n;
  omp_set_num_threads(n);
  openblas_set_num_threads(n);
  // Tiny gradients and Adam second moments underflow into denormals, which Intel cores process
  // ~100x slower (measured: AdamW 0.5 ms → 8.8 ms inside a training step). Worker threads run
  // only our kernels, so they flush denormals for good (as XLA's CPU backend does); the calling
  // thread does it per kernel call (see addon.cc) so JavaScript keeps IEEE semantics.
#pragma omp parallel
  enable_flush_denormals();
}
int get_num_threads() { return g_threads > 0 ? g_threads : omp_get_max_threads(); }

// ---------------------------------------------------------------------------------------------
// Vectorisable exp: Cephes range reduction + degree-6 polynomial (max rel. error 8e-8 on [-87, 88]).
// Written so GCC vectorises loops over it: rounding by the 1.5·2^23 trick instead of floor (no
// vector floor without SSE4 rounding in GCC's cost model) and the exponent built with integer ops
// on the bit pattern instead of a float→int conversion. The clamps keep NaN (comparisons with NaN
// are false), so NaN propagates; inputs below -87 give ~1.6e-38 rather than 0.
static inline float fast_exp(float x) {
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

// AMX repacks B (the weights, in the model's products) on every call, O(KN), so it pays off only with many
// rows of A. Measured in `unforget bench`: with AMX on activation × weight products (M = tokens) training
// is 10–19% faster; on the decoder's M = 64 products sampling was 5–10% slower, and on the weight
// gradients Xᵀ·dY (K = tokens ≫ M, N: long transposed panels) training was 5–7% slower.
static bool want_amx(bool ta, int M, int N, int K) {
  int mode = get_gemm_mode();
  if (mode == 1 || omp_in_parallel()) return false;
  if (mode == 2) return true;
  if (M < 256 || 2.0 * M * N * K < 4e6) return false;
  if (ta && K >= 4 * std::max(M, N)) return false;
  return true;
}

void gemm(bool ta, bool tb, int M, int N, int K, float alpha, const float* A, const float* B, float beta, float* C) {
  if (M == 0 || N == 0) return;
  if (want_amx(ta, M, N, K) && amx_gemm(ta, tb, M, N, K, alpha, A, B, beta, C)) return;
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M, N, K, alpha, A,
              ta ? M : K, B, tb ? K : N, beta, C, N);
}

void gemm_batched(bool ta, bool tb, int batch, int M, int N, int K, float alpha, const float* A, int64_t sA,
                  const float* B, int64_t sB, float beta, float* C, int64_t sC) {
  // Small matrices: one single-threaded cblas call per thread; large ones: let OpenBLAS thread each.
  double flops = 2.0 * M * N * K;
  if (flops < 4e6 && batch > 1) {
#pragma omp parallel for schedule(dynamic, 1)
    for (int i = 0; i < batch; i++) gemm(ta, tb, M, N, K, alpha, A + i * sA, B + i * sB, beta, C + i * sC);
  } else {
    for (int i = 0; i < batch; i++) gemm(ta, tb, M, N, K, alpha, A + i * sA, B + i * sB, beta, C + i * sC);
  }
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
static constexpr float kRmsEps = 1e-6f;

static inline float row_rstd(const float* x, int C) {
  float ss = 0.f;
#pragma omp simd reduction(+ : ss)
  for (int c = 0; c < C; c++) ss += x[c] * x[c];
  return 1.0f / std::sqrt(ss / C + kRmsEps);
}

void rmsnorm_forward(float* y, float* rstd, const float* x, int64_t R, int C) {
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < R; r++) {
    const float* xr = x + r * C;
    float* yr = y + r * C;
    float s = row_rstd(xr, C);
    rstd[r] = s;
#pragma omp simd
    for (int c = 0; c < C; c++) yr[c] = xr[c] * s;
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
// cos/sin table [T, H/2] for absolute positions pos0..pos0+T-1, angles computed in double.
static void rope_table(std::vector<float>& cs, std::vector<float>& sn, int T, int H, int pos0) {
  int half = H / 2;
  cs.resize((size_t)T * half);
  sn.resize((size_t)T * half);
  for (int i = 0; i < half; i++) {
    double f = std::pow(10000.0, -2.0 * i / H);
    for (int t = 0; t < T; t++) {
      double a = (double)(pos0 + t) * f;
      cs[(size_t)t * half + i] = (float)std::cos(a);
      sn[(size_t)t * half + i] = (float)std::sin(a);
    }
  }
}

// Rotate one head vector in place; sign=+1 forward, -1 inverse (transpose).
static inline void rotate(float* x, const float* c, const float* s, int half, float sign) {
#pragma omp simd
  for (int i = 0; i < half; i++) {
    float x1 = x[i], x2 = x[i + half];
    float si = sign * s[i];
    x[i] = x1 * c[i] - x2 * si;
    x[i + half] = x2 * c[i] + x1 * si;
  }
}

static void rope_apply(float* x, int B, int T, int heads, int H, int64_t strideB, int64_t strideTok, int pos0,
                       float sign) {
  std::vector<float> cs, sn;
  rope_table(cs, sn, T, H, pos0);
  int half = H / 2;
#pragma omp parallel for collapse(2) schedule(static)
  for (int b = 0; b < B; b++)
    for (int t = 0; t < T; t++)
      for (int n = 0; n < heads; n++)
        rotate(x + b * strideB + t * strideTok + (int64_t)n * H, &cs[(size_t)t * half], &sn[(size_t)t * half], half,
               sign);
}

void rope_forward(float* x, int B, int T, int heads, int H, int64_t strideB, int64_t strideTok, int pos0) {
  rope_apply(x, B, T, heads, H, strideB, strideTok, pos0, 1.f);
}
void rope_backward(float* dx, int B, int T, int heads, int H, int64_t strideB, int64_t strideTok, int pos0) {
  rope_apply(dx, B, T, heads, H, strideB, strideTok, pos0, -1.f);
}

void qk_norm_rope_forward(float* y, float* rstd, const float* x, int B, int T, int N, int H, int pos0) {
  std::vector<float> cs, sn;
  rope_table(cs, sn, T, H, pos0);
  int half = H / 2;
  int64_t D = (int64_t)N * H, rows = (int64_t)B * T;
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; r++) {
    int t = (int)(r % T);
    const float* xr = x + r * 3 * D;
    float* yr = y + r * 3 * D;
    for (int j = 0; j < 2 * N; j++) {
      const float* xs = xr + (int64_t)j * H;
      float* ys = yr + (int64_t)j * H;
      float s = row_rstd(xs, H);
      rstd[r * 2 * N + j] = s;
#pragma omp simd
      for (int h = 0; h < H; h++) ys[h] = xs[h] * s;
      rotate(ys, &cs[(size_t)t * half], &sn[(size_t)t * half], half, 1.f);
    }
    std::memcpy(yr + 2 * D, xr + 2 * D, sizeof(float) * D);
  }
}

void qk_norm_rope_backward(float* dx, const float* dy, const float* y, const float* rstd, int B, int T, int N, int H,
                           int pos0) {
  // Rotation is orthogonal, so mean(dy_n · y_n) before RoPE equals mean(dy · y) after it, and
  // dx = rstd · R⁻¹(dy − y · mean(dy·y)).
  std::vector<float> cs, sn;
  rope_table(cs, sn, T, H, pos0);
  int half = H / 2;
  int64_t D = (int64_t)N * H, rows = (int64_t)B * T;
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; r++) {
    int t = (int)(r % T);
    const float* dyr = dy + r * 3 * D;
    const float* yr = y + r * 3 * D;
    float* dxr = dx + r * 3 * D;
    for (int j = 0; j < 2 * N; j++) {
      const float* dys = dyr + (int64_t)j * H;
      const float* ys = yr + (int64_t)j * H;
      float* dxs = dxr + (int64_t)j * H;
      float dot = 0.f;
#pragma omp simd reduction(+ : dot)
      for (int h = 0; h < H; h++) dot += dys[h] * ys[h];
      float mean = dot / H, s = rstd[r * 2 * N + j];
#pragma omp simd
      for (int h = 0; h < H; h++) dxs[h] = (dys[h] - ys[h] * mean) * s;
      rotate(dxs, &cs[(size_t)t * half], &sn[(size_t)t * half], half, -1.f);
    }
    std::memcpy(dxr + 2 * D, dyr + 2 * D, sizeof(float) * D);
  }
}

// ---------------------------------------------------------------------------------------------
// Attention. For each (b, n) head: S = scale·Q Kᵀ (causal), P = softmax(S), O = P V.
// Long sequences use single-threaded sgemm per head (parallel over heads); short ones plain loops,
// where cblas call overhead would dominate.

// In-place causal softmax of row i (length T) of scores; entries j > i are set to 0.
static inline void causal_softmax_row(float* s, int i, int T) {
  float m = -std::numeric_limits<float>::infinity();
#pragma omp simd reduction(max : m)
  for (int j = 0; j <= i; j++) m = s[j] > m ? s[j] : m;
  float sum = 0.f;
#pragma omp simd reduction(+ : sum)
  for (int j = 0; j <= i; j++) {
    float e = fast_exp(s[j] - m);
    s[j] = e;
    sum += e;
  }
  float inv = 1.f / sum;
#pragma omp simd
  for (int j = 0; j <= i; j++) s[j] *= inv;
  for (int j = i + 1; j < T; j++) s[j] = 0.f;
}

static inline float dot(const float* a, const float* b, int n) {
  float s = 0.f;
#pragma omp simd reduction(+ : s)
  for (int i = 0; i < n; i++) s += a[i] * b[i];
  return s;
}

static inline bool use_blas_attention(int T, int H) { return T >= 48 && H >= 16; }

void attention_forward(float* out, float* probs, const float* qkv, int B, int T, int N, int H) {
  const int64_t D = (int64_t)N * H, ld = 3 * D;
  const float scale = 1.0f / std::sqrt((float)H);
  const bool blas = use_blas_attention(T, H);
#pragma omp parallel for collapse(2) schedule(dynamic, 1)
  for (int b = 0; b < B; b++)
    for (int n = 0; n < N; n++) {
      const float* q = qkv + (int64_t)b * T * ld + (int64_t)n * H;
      const float* k = q + D;
      const float* v = q + 2 * D;
      float* P = probs + ((int64_t)b * N + n) * T * T;
      float* o = out + (int64_t)b * T * D + (int64_t)n * H;
      if (blas) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, H, scale, q, ld, k, ld, 0.f, P, T);
        for (int i = 0; i < T; i++) causal_softmax_row(P + (int64_t)i * T, i, T);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, H, T, 1.f, P, T, v, ld, 0.f, o, D);
      } else {
        for (int i = 0; i < T; i++) {
          float* Pi = P + (int64_t)i * T;
          for (int j = 0; j <= i; j++) Pi[j] = scale * dot(q + i * ld, k + j * ld, H);
          causal_softmax_row(Pi, i, T);
          float* oi = o + i * D;
          for (int h = 0; h < H; h++) oi[h] = 0.f;
          for (int j = 0; j <= i; j++) {
            float p = Pi[j];
            const float* vj = v + j * ld;
#pragma omp simd
            for (int h = 0; h < H; h++) oi[h] += p * vj[h];
          }
        }
      }
    }
}

// Short sequences: gradients of one head through contiguous local copies, so the per-row loops
// over the head dimension vectorise (the strided qkv rows would alias as far as GCC can tell).
// dS (in dp) already holds P ⊙ (dP − rowsum) · scale.
static void small_head_backward(float* dq, float* dk, float* dv, const float* dS, const float* P, const float* q,
                                const float* k, const float* v, const float* dO, int T, int H, int64_t ld,
                                int64_t ldo, float* scratch) {
  (void)v;
  float* __restrict Q = scratch;
  float* __restrict Kc = Q + (size_t)T * H;
  float* __restrict G = Kc + (size_t)T * H;  // dO
  float* __restrict dQ = G + (size_t)T * H;
  float* __restrict dK = dQ + (size_t)T * H;
  float* __restrict dV = dK + (size_t)T * H;
  for (int i = 0; i < T; i++) {
    std::memcpy(Q + i * H, q + i * ld, sizeof(float) * H);
    std::memcpy(Kc + i * H, k + i * ld, sizeof(float) * H);
    std::memcpy(G + i * H, dO + i * ldo, sizeof(float) * H);
  }
  std::memset(dQ, 0, sizeof(float) * 3 * T * H);
  for (int i = 0; i < T; i++) {
    const float* di = dS + (int64_t)i * T;
    const float* Pi = P + (int64_t)i * T;
    float* __restrict dqi = dQ + i * H;
    const float* __restrict qi = Q + i * H;
    const float* __restrict gi = G + i * H;
    for (int j = 0; j <= i; j++) {
      const float g = di[j], p = Pi[j];
      const float* __restrict kj = Kc + j * H;
      float* __restrict dkj = dK + j * H;
      float* __restrict dvj = dV + j * H;
#pragma omp simd
      for (int h = 0; h < H; h++) dqi[h] += g * kj[h];
#pragma omp simd
      for (int h = 0; h < H; h++) dkj[h] += g * qi[h];
#pragma omp simd
      for (int h = 0; h < H; h++) dvj[h] += p * gi[h];
    }
  }
  for (int i = 0; i < T; i++) {
    std::memcpy(dq + i * ld, dQ + i * H, sizeof(float) * H);
    std::memcpy(dk + i * ld, dK + i * H, sizeof(float) * H);
    std::memcpy(dv + i * ld, dV + i * H, sizeof(float) * H);
  }
}

void attention_backward(float* dqkv, const float* dout, const float* probs, const float* qkv, int B, int T, int N,
                        int H) {
  const int64_t D = (int64_t)N * H, ld = 3 * D;
  const float scale = 1.0f / std::sqrt((float)H);
  const bool blas = use_blas_attention(T, H);
#pragma omp parallel
  {
    std::vector<float> dS((size_t)T * T);
    std::vector<float> local(blas ? 0 : (size_t)7 * T * H);
#pragma omp for collapse(2) schedule(dynamic, 1)
    for (int b = 0; b < B; b++)
      for (int n = 0; n < N; n++) {
        const float* q = qkv + (int64_t)b * T * ld + (int64_t)n * H;
        const float* k = q + D;
        const float* v = q + 2 * D;
        float* dq = dqkv + (int64_t)b * T * ld + (int64_t)n * H;
        float* dk = dq + D;
        float* dv = dq + 2 * D;
        const float* P = probs + ((int64_t)b * N + n) * T * T;
        const float* dO = dout + (int64_t)b * T * D + (int64_t)n * H;
        float* dp = dS.data();
        // dP = dO Vᵀ
        if (blas) {
          cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, H, 1.f, dO, D, v, ld, 0.f, dp, T);
        } else {
          for (int i = 0; i < T; i++)
            for (int j = 0; j <= i; j++) dp[(int64_t)i * T + j] = dot(dO + i * D, v + j * ld, H);
        }
        // dS = P ⊙ (dP − rowsum(P ⊙ dP)) · scale, causal
        for (int i = 0; i < T; i++) {
          const float* Pi = P + (int64_t)i * T;
          float* di = dp + (int64_t)i * T;
          float acc = 0.f;
#pragma omp simd reduction(+ : acc)
          for (int j = 0; j <= i; j++) acc += Pi[j] * di[j];
#pragma omp simd
          for (int j = 0; j <= i; j++) di[j] = Pi[j] * (di[j] - acc) * scale;
          for (int j = i + 1; j < T; j++) di[j] = 0.f;
        }
        if (blas) {
          cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, H, T, 1.f, dp, T, k, ld, 0.f, dq, ld);
          cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, H, T, 1.f, dp, T, q, ld, 0.f, dk, ld);
          cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, H, T, 1.f, P, T, dO, D, 0.f, dv, ld);
        } else {
          small_head_backward(dq, dk, dv, dp, P, q, k, v, dO, T, H, ld, D, local.data());
        }
      }
  }
}

void attention_decode(float* out, const float* qkv, const float* kcache, const float* vcache, int B, int Tq, int N,
                      int H, int Tmax, int pos0) {
  const int64_t D = (int64_t)N * H, ld = 3 * D;
  const float scale = 1.0f / std::sqrt((float)H);
  const int Tk = pos0 + Tq;
#pragma omp parallel
  {
    std::vector<float> s((size_t)Tk);
#pragma omp for collapse(2) schedule(static)
    for (int b = 0; b < B; b++)
      for (int n = 0; n < N; n++) {
        const float* kc = kcache + (int64_t)b * Tmax * D + (int64_t)n * H;
        const float* vc = vcache + (int64_t)b * Tmax * D + (int64_t)n * H;
        for (int i = 0; i < Tq; i++) {
          const float* qi = qkv + ((int64_t)b * Tq + i) * ld + (int64_t)n * H;
          int last = pos0 + i;
          for (int j = 0; j <= last; j++) s[j] = scale * dot(qi, kc + (int64_t)j * D, H);
          causal_softmax_row(s.data(), last, last + 1);
          float* oi = out + ((int64_t)b * Tq + i) * D + (int64_t)n * H;
          for (int h = 0; h < H; h++) oi[h] = 0.f;
          for (int j = 0; j <= last; j++) {
            const float p = s[j];
            const float* vj = vc + (int64_t)j * D;
#pragma omp simd
            for (int h = 0; h < H; h++) oi[h] += p * vj[h];
          }
        }
      }
  }
}

// ---------------------------------------------------------------------------------------------
static constexpr float kGeluC = 0.7978845608028654f;  // sqrt(2/pi)
static constexpr float kGeluA = 0.044715f;

static inline float tanh_fast(float u) {
  // tanh(u) = 1 − 2/(exp(2u)+1); saturates correctly at ±inf through fast_exp's clamps.
  return 1.f - 2.f / (fast_exp(2.f * u) + 1.f);
}

void gelu_forward(float* y, const float* x, int64_t n) {
  parallel_chunks(n, [=](int64_t lo, int64_t hi) {
#pragma omp simd
    for (int64_t i = lo; i < hi; i++) {
      float xi = x[i];
      float u = kGeluC * (xi + kGeluA * xi * xi * xi);
      y[i] = 0.5f * xi * (1.f + tanh_fast(u));
    }
  });
}

void gelu_backward(float* dx, const float* dy, const float* x, int64_t n) {
  parallel_chunks(n, [=](int64_t lo, int64_t hi) {
#pragma omp simd
    for (int64_t i = lo; i < hi; i++) {
      float xi = x[i];
      float u = kGeluC * (xi + kGeluA * xi * xi * xi);
      float t = tanh_fast(u);
      float d = 0.5f * (1.f + t) + 0.5f * xi * (1.f - t * t) * kGeluC * (1.f + 3.f * kGeluA * xi * xi);
      dx[i] += dy[i] * d;
    }
  });
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
    if (w[r] == 0.f) {
      if (row_loss) row_loss[r] = 0.f;
      if (g) std::memset(g, 0, sizeof(float) * V);
      continue;
    }
    float m = row_max(x, V);
    double s = row_sumexp(x, V, m, g);
    double lse = (double)m + std::log(s);
    double loss = lse - (double)x[targets[r]];
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
#pragma omp parallel for reduction(+ : total) schedule(static)
  for (int64_t r = 0; r < R; r++) {
    const float* P = lp + r * V;
    const float* Q = lq + r * V;
    float* g = dlq ? dlq + r * V : nullptr;
    if (w[r] == 0.f) {
      if (row_loss) row_loss[r] = 0.f;
      if (g) std::memset(g, 0, sizeof(float) * V);
      continue;
    }
    float mp = row_max(P, V), mq = row_max(Q, V);
    // Both sums in one loop (one vectorisation, one summation order), so θ = π gives bit-identical
    // normalisers: KL and its gradient are then exactly zero, as at the first finetuning step.
    float spf = 0.f, sqf = 0.f;
#pragma omp simd reduction(+ : spf, sqf)
    for (int v = 0; v < V; v++) {
      spf += fast_exp(P[v] - mp);
      sqf += fast_exp(Q[v] - mq);
    }
    double sp = spf, sq = sqf;
    // KL = Σ p (P − Q) − lse(P) + lse(Q)
    float invp = (float)(1.0 / sp);
    float acc = 0.f;
#pragma omp simd reduction(+ : acc)
    for (int v = 0; v < V; v++) acc += fast_exp(P[v] - mp) * invp * (P[v] - Q[v]);
    double kl = (double)acc - ((double)mp + std::log(sp)) + ((double)mq + std::log(sq));
    if (kl < 0.0 && kl > -1e-6) kl = 0.0;  // float rounding of an exactly-zero divergence
    if (row_loss) row_loss[r] = (float)kl;
    total += (double)w[r] * kl;
    if (g) {
      float c = grad_scale * w[r];
      float invq = (float)(1.0 / sq);
#pragma omp simd
      for (int v = 0; v < V; v++) g[v] = c * (fast_exp(Q[v] - mq) * invq - fast_exp(P[v] - mp) * invp);
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
void sample_rows(const float* logits, int64_t R, int V, float temperature, int top_k, const double* u, int32_t* out) {
#pragma omp parallel
  {
    std::vector<float> buf((size_t)V), tmp;
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
      double total = 0.0;
      for (int v = 0; v < V; v++) {
        float e = x[v] >= thresh ? fast_exp((x[v] - m) * it) : 0.f;
        buf[v] = e;
        total += e;
      }
      double target = u[r] * total, cum = 0.0;
      int pick = -1;
      for (int v = 0; v < V; v++) {
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
