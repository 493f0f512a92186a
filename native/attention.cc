// Causal softmax attention (scale 1/sqrt(H)), fused per (batch, head), parallel over heads. Grouped-query
// attention: Nkv key/value heads, query head n uses key/value head n / (N/Nkv); the backward takes one key/value
// head and its group of query heads per item, so that their dK and dV sums stay in one thread.
//
// Each head is copied into zero-padded local buffers (T and H rounded up to 16), so the three
// products it needs are register-blocked AVX-512 micro-kernels without edge cases:
//   rows_abt:        C[i, j] = ep(Σ_h X[i, h] Yᵀ[h, j])  (S = Q Kᵀ, dP = dO Vᵀ)    j vectorised
//   rows_ab<false>:  C[i, :] =   Σ_j P[i, j] Z[j, :]    (O = P V, dQ = dS K)       h vectorised
//   rows_ab<true>:   C[j, :] =   Σ_i P[i, j] Z[i, :]    (dK = dSᵀ Q, dV = Pᵀ dO)   h vectorised
// Each works on a block of 8 rows and only over the causal part: row block [i0, i0+8) of S needs
// columns j < i0+8, and column j of P or dS is zero above row j: half the work of full-matrix
// products, and no per-head cblas calls for short sequences. The forward saves each score row's
// log-sum-exp; the backward recomputes P = exp(S − lse) from Q and K (one product more) instead of
// reading B·N·T² stored probabilities.
// rows_abt applies an epilogue to each stored vector: the plain scale, or the masked exp that turns a block of
// scores into softmax numerators (CausalExp), so the backward's P, and the forward's when q and k are
// normalised (bounded scores), need no separate pass over the rows.
// Builds without AVX-512 get the same loops in plain C++.
// GCC 12 flags its own AVX-512 intrinsics (_mm512_reduce_*, the unpacks of transpose16) as (maybe-)uninitialized, a
// false positive located in its headers, so the pragmas come before any include.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#include "kernels.h"
#include "qknorm.h"
#include "vmath.h"

#include <omp.h>
#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

namespace uf {

namespace {

constexpr int kRows = 8;  // rows per micro-kernel block

inline int round16(int x) { return (x + 15) & ~15; }

// What rows_abt stores for C[r, j..j+15] given the sums Σ_h X[r, h] Yt[h, j..j+15] (v: 16 lanes, s: one lane).
// alpha ·: the plain scaled product.
struct Scaled {
  float alpha;
#if defined(__AVX512F__)
  inline __m512 v(int, int, __m512 a) const { return _mm512_mul_ps(_mm512_set1_ps(alpha), a); }
#else
  inline float s(int, int, float a) const { return alpha * a; }
#endif
};
// exp(alpha · a − shift) on the causal part j ≤ row0 + r, 0 above it: a block of softmax numerators straight from
// the scores (one pass less over each row). shift: per row (rows[r], the backward's log-sum-exps), or the
// constant c. With `sum`, each row's stored values are also summed (sum[r], 16 lanes or one).
struct CausalExp {
  float alpha, c;
  const float* rows;  // or null: c for every row
  int row0;
#if defined(__AVX512F__)
  using Sum = __m512;  // a row's running sum, 16 lanes
  static float total(Sum x) { return _mm512_reduce_add_ps(x); }
  Sum* sum = nullptr;
  inline __m512 v(int r, int j, __m512 a) const {
    const __m512 x = _mm512_fmsub_ps(_mm512_set1_ps(alpha), a, _mm512_set1_ps(rows ? rows[r] : c));
    const __m512 e = _mm512_maskz_mov_ps(mask_n(row0 + r + 1 - j), fast_exp512(x));
    if (sum) sum[r] = _mm512_add_ps(sum[r], e);
    return e;
  }
#else
  using Sum = float;
  static float total(Sum x) { return x; }
  Sum* sum = nullptr;
  inline float s(int r, int j, float a) const {
    const float e = j <= row0 + r ? fast_exp(alpha * a - (rows ? rows[r] : c)) : 0.f;
    if (sum) sum[r] += e;
    return e;
  }
#endif
};
// C[r, j] = ep(Σ_{h<H} X[r, h] Yt[h, j]) for r < 8, j < jEnd (jEnd a multiple of 16).
template <class Ep>
void rows_abt(float* C, int ldc, const float* X, int ldx, const float* Yt, int ldy, int H, int jEnd, Ep ep) {
#if defined(__AVX512F__)
  int j = 0;
  for (; j + 32 <= jEnd; j += 32) {
    __m512 c0[kRows], c1[kRows];
#pragma GCC unroll 8
    for (int r = 0; r < kRows; r++) c0[r] = c1[r] = _mm512_setzero_ps();
    for (int h = 0; h < H; h++) {
      const __m512 y0 = _mm512_loadu_ps(Yt + (int64_t)h * ldy + j);
      const __m512 y1 = _mm512_loadu_ps(Yt + (int64_t)h * ldy + j + 16);
#pragma GCC unroll 8
      for (int r = 0; r < kRows; r++) {
        const __m512 x = _mm512_set1_ps(X[(int64_t)r * ldx + h]);
        c0[r] = _mm512_fmadd_ps(x, y0, c0[r]);
        c1[r] = _mm512_fmadd_ps(x, y1, c1[r]);
      }
    }
#pragma GCC unroll 8
    for (int r = 0; r < kRows; r++) {
      _mm512_storeu_ps(C + (int64_t)r * ldc + j, ep.v(r, j, c0[r]));
      _mm512_storeu_ps(C + (int64_t)r * ldc + j + 16, ep.v(r, j + 16, c1[r]));
    }
  }
  if (j < jEnd) {
    __m512 c0[kRows];
#pragma GCC unroll 8
    for (int r = 0; r < kRows; r++) c0[r] = _mm512_setzero_ps();
    for (int h = 0; h < H; h++) {
      const __m512 y0 = _mm512_loadu_ps(Yt + (int64_t)h * ldy + j);
#pragma GCC unroll 8
      for (int r = 0; r < kRows; r++) c0[r] = _mm512_fmadd_ps(_mm512_set1_ps(X[(int64_t)r * ldx + h]), y0, c0[r]);
    }
#pragma GCC unroll 8
    for (int r = 0; r < kRows; r++) _mm512_storeu_ps(C + (int64_t)r * ldc + j, ep.v(r, j, c0[r]));
  }
#else
  for (int r = 0; r < kRows; r++)
    for (int j = 0; j < jEnd; j++) {
      float s = 0.f;
      for (int h = 0; h < H; h++) s += X[(int64_t)r * ldx + h] * Yt[(int64_t)h * ldy + j];
      C[(int64_t)r * ldc + j] = ep.s(r, j, s);
    }
#endif
}

// C[r, :Hp] = Σ_{j in [lo, hi)} P(r, j) Z[j, :Hp] for r < 8, where P(r, j) = P[r·ldp + j] or, when
// Transposed, P[j·ldp + r] (the "column r" form). Hp is a multiple of 16.
// With rs, row r is multiplied by rs[r] as it is stored. With Accumulate, the sum is added to C instead of
// written over it (the dK, dV of a key/value head shared by several query heads).
template <bool Transposed, bool Accumulate = false>
void rows_ab(float* C, int ldc, const float* P, int ldp, const float* Z, int ldz, int lo, int hi, int Hp,
             const float* rs = nullptr) {
  auto p = [&](int r, int j) -> float { return Transposed ? P[(int64_t)j * ldp + r] : P[(int64_t)r * ldp + j]; };
#if defined(__AVX512F__)
  int h = 0;
  for (; h + 32 <= Hp; h += 32) {
    __m512 c0[kRows], c1[kRows];
#pragma GCC unroll 8
    for (int r = 0; r < kRows; r++) c0[r] = c1[r] = _mm512_setzero_ps();
    for (int j = lo; j < hi; j++) {
      const __m512 z0 = _mm512_loadu_ps(Z + (int64_t)j * ldz + h);
      const __m512 z1 = _mm512_loadu_ps(Z + (int64_t)j * ldz + h + 16);
#pragma GCC unroll 8
      for (int r = 0; r < kRows; r++) {
        const __m512 x = _mm512_set1_ps(p(r, j));
        c0[r] = _mm512_fmadd_ps(x, z0, c0[r]);
        c1[r] = _mm512_fmadd_ps(x, z1, c1[r]);
      }
    }
#pragma GCC unroll 8
    for (int r = 0; r < kRows; r++) {
      const __m512 f = _mm512_set1_ps(rs ? rs[r] : 1.f);
      float* c = C + (int64_t)r * ldc + h;
      if (Accumulate) {
        _mm512_storeu_ps(c, _mm512_fmadd_ps(f, c0[r], _mm512_loadu_ps(c)));
        _mm512_storeu_ps(c + 16, _mm512_fmadd_ps(f, c1[r], _mm512_loadu_ps(c + 16)));
      } else {
        _mm512_storeu_ps(c, _mm512_mul_ps(f, c0[r]));
        _mm512_storeu_ps(c + 16, _mm512_mul_ps(f, c1[r]));
      }
    }
  }
  if (h < Hp) {
    __m512 c0[kRows];
#pragma GCC unroll 8
    for (int r = 0; r < kRows; r++) c0[r] = _mm512_setzero_ps();
    for (int j = lo; j < hi; j++) {
      const __m512 z0 = _mm512_loadu_ps(Z + (int64_t)j * ldz + h);
#pragma GCC unroll 8
      for (int r = 0; r < kRows; r++) c0[r] = _mm512_fmadd_ps(_mm512_set1_ps(p(r, j)), z0, c0[r]);
    }
#pragma GCC unroll 8
    for (int r = 0; r < kRows; r++) {
      const __m512 f = _mm512_set1_ps(rs ? rs[r] : 1.f);
      float* c = C + (int64_t)r * ldc + h;
      if (Accumulate) _mm512_storeu_ps(c, _mm512_fmadd_ps(f, c0[r], _mm512_loadu_ps(c)));
      else _mm512_storeu_ps(c, _mm512_mul_ps(f, c0[r]));
    }
  }
#else
  for (int r = 0; r < kRows; r++) {
    float* c = C + (int64_t)r * ldc;
    if (Accumulate) {
      for (int h = 0; h < Hp; h++) {
        float sum = 0.f;
        for (int j = lo; j < hi; j++) sum += p(r, j) * Z[(int64_t)j * ldz + h];
        c[h] += (rs ? rs[r] : 1.f) * sum;
      }
      continue;
    }
    for (int h = 0; h < Hp; h++) c[h] = 0.f;
    for (int j = lo; j < hi; j++) {
      const float pj = p(r, j);
      const float* z = Z + (int64_t)j * ldz;
      for (int h = 0; h < Hp; h++) c[h] += pj * z[h];
    }
    if (rs)
      for (int h = 0; h < Hp; h++) c[h] *= rs[r];
  }
#endif
}

// In-place causal softmax of row i of scores (row length n ≥ i+1); entries j > i are set to 0.
// Used by the generic decoding path (rows of any length, any H).
inline void causal_softmax_row(float* s, int i, int n) {
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
  for (int j = i + 1; j < n; j++) s[j] = 0.f;
}

// The same on a padded row of length Tp (a multiple of 16), 16 lanes at a time with a mask for
// j ≤ i (short rows: a scalar loop's exp would dominate the whole head). Returns the row's
// log-sum-exp, from which the backward pass recomputes the row: P[j] = exp(s[j] − lse).
inline float causal_softmax_padded(float* s, int i, int Tp) {
#if defined(__AVX512F__)
  const int chunks = i / 16 + 1;  // chunks holding some j ≤ i
  auto mask = [&](int c) { return mask_n(i + 1 - 16 * c); };
  __m512 vm = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
  for (int c = 0; c < chunks; c++) vm = _mm512_mask_max_ps(vm, mask(c), vm, _mm512_loadu_ps(s + 16 * c));
  const float mx = _mm512_reduce_max_ps(vm);
  const __m512 m = _mm512_set1_ps(mx);
  __m512 vs = _mm512_setzero_ps();
  for (int c = 0; c < chunks; c++) {
    __m512 e = _mm512_maskz_mov_ps(mask(c), fast_exp512(_mm512_sub_ps(_mm512_loadu_ps(s + 16 * c), m)));
    _mm512_storeu_ps(s + 16 * c, e);
    vs = _mm512_add_ps(vs, e);
  }
  const float sum = _mm512_reduce_add_ps(vs);
  const __m512 inv = _mm512_set1_ps(1.f / sum);
  for (int c = 0; c < chunks; c++) _mm512_storeu_ps(s + 16 * c, _mm512_mul_ps(inv, _mm512_loadu_ps(s + 16 * c)));
  for (int c = chunks; c < Tp / 16; c++) _mm512_storeu_ps(s + 16 * c, _mm512_setzero_ps());
  return mx + std::log(sum);
#else
  float mx = -std::numeric_limits<float>::infinity();
  for (int j = 0; j <= i; j++) mx = s[j] > mx ? s[j] : mx;
  float sum = 0.f;
  for (int j = 0; j <= i; j++) sum += (s[j] = fast_exp(s[j] - mx));
  for (int j = 0; j <= i; j++) s[j] *= 1.f / sum;
  for (int j = i + 1; j < Tp; j++) s[j] = 0.f;
  return mx + std::log(sum);
#endif
}

// dS row i = P ⊙ (dP − Σ_j P dP) · scale over a padded row whose P is 0 for j > i; columns
// [0, jEnd) hold dP, columns from jEnd on are already 0 (jEnd a multiple of 16).
inline void softmax_grad_padded(float* di, const float* Pi, int jEnd, float scale) {
#if defined(__AVX512F__)
  __m512 va = _mm512_setzero_ps();
  for (int j = 0; j < jEnd; j += 16) va = _mm512_fmadd_ps(_mm512_loadu_ps(Pi + j), _mm512_loadu_ps(di + j), va);
  const __m512 acc = _mm512_set1_ps(_mm512_reduce_add_ps(va)), vsc = _mm512_set1_ps(scale);
  for (int j = 0; j < jEnd; j += 16) {
    const __m512 d = _mm512_sub_ps(_mm512_loadu_ps(di + j), acc);
    _mm512_storeu_ps(di + j, _mm512_mul_ps(_mm512_mul_ps(_mm512_loadu_ps(Pi + j), d), vsc));
  }
#else
  float acc = 0.f;
  for (int j = 0; j < jEnd; j++) acc += Pi[j] * di[j];
  for (int j = 0; j < jEnd; j++) di[j] = Pi[j] * (di[j] - acc) * scale;
#endif
}

// n floats; inline, since per-head rows are only 16–64 floats and a memcpy call per row would cost more than
// the copy.
inline void copy_row(float* __restrict dst, const float* __restrict src, int n) {
#if defined(__AVX512F__)
  int i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(dst + i, _mm512_loadu_ps(src + i));
  if (i < n) {
    const __mmask16 m = mask_n(n - i);
    _mm512_mask_storeu_ps(dst + i, m, _mm512_maskz_loadu_ps(m, src + i));
  }
#else
  std::memcpy(dst, src, sizeof(float) * n);
#endif
}

// Copy rows [0, T) of a strided [T, H] head into a zeroed [Tp, Hp] buffer.
inline void load_head(float* dst, int Hp, const float* src, int64_t ld, int T, int H) {
  for (int t = 0; t < T; t++) copy_row(dst + (int64_t)t * Hp, src + (int64_t)t * ld, H);
}

// dst[h, t] = src[t, h] for t < Tp, from a padded [Tp, Hp] buffer into a [Hp, Tp] one (rows h ≥ H come
// out as the source's zero padding). 16×16 blocks transposed in registers: reading single floats back
// from lines just written by vector stores would stall on store forwarding.
inline void transpose_head(float* __restrict dst, int Tp, const float* __restrict src, int Hp, int H) {
#if defined(__AVX512F__)
  (void)H;
  for (int t0 = 0; t0 < Tp; t0 += 16)
    for (int h0 = 0; h0 < Hp; h0 += 16) {
      __m512i r[16];
      for (int i = 0; i < 16; i++) r[i] = _mm512_castps_si512(_mm512_loadu_ps(src + (int64_t)(t0 + i) * Hp + h0));
      transpose16(r);
      for (int i = 0; i < 16; i++) _mm512_storeu_ps(dst + (int64_t)(h0 + i) * Tp + t0, _mm512_castsi512_ps(r[i]));
    }
#else
  for (int t = 0; t < Tp; t++)
    for (int h = 0; h < H; h++) dst[(int64_t)h * Tp + t] = src[(int64_t)t * Hp + h];
#endif
}

inline void store_head(float* dst, int64_t ld, const float* src, int Hp, int T, int H) {
  for (int t = 0; t < T; t++) copy_row(dst + (int64_t)t * ld, src + (int64_t)t * Hp, H);
}

// ---- RMSNorm + RoPE of q and k inside the attention kernels (see attention_forward; row helpers in qknorm.h) ----
// Whether and how a head's q and k rows are normalised and rotated on load. After head(b, n), out (forward:
// written) or in (backward: read) points at that head's q rstd of position 0; its k rstd is N further on,
// and positions are 2N apart.
struct QkNorm {
  float* out = nullptr;
  const float* in = nullptr;
  const float *cs = nullptr, *sn = nullptr;  // RoPE tables from position 0
  int N = 0;
  bool on() const { return out || in; }
  QkNorm head(int64_t b, int64_t n, int T) const {  // the same, pointing at head (b, n)
    QkNorm h = *this;
    const int64_t off = b * T * 2 * N + n;
    if (out) h.out = out + off;
    if (in) h.in = in + off;
    return h;
  }
  // Rows [0, T) of a padded q (k: 1) buffer with row stride ld, in place.
  void apply(float* X, int64_t ld, int T, int H, int k) const {
    const int half = H / 2;
    for (int t = 0; t < T; t++) {
      float* x = X + (int64_t)t * ld;
      const int64_t at = (int64_t)t * 2 * N + (int64_t)k * N;
      float r;
      if (out) out[at] = r = head_rstd(x, H);
      else r = in[at];
      scale_rotate(x, x, H, r, cs + (size_t)t * half, sn + (size_t)t * half);
    }
  }
  // The gradient rows [0, T) of a padded buffer dX, in place, given the normalised rows Y (same strides).
  void backward(float* dX, const float* Y, int64_t ld, int T, int H, int k) const {
    const int half = H / 2;
    for (int t = 0; t < T; t++)
      scale_rotate_backward(dX + (int64_t)t * ld, dX + (int64_t)t * ld, Y + (int64_t)t * ld, H,
                            in[(int64_t)t * 2 * N + (int64_t)k * N], cs + (size_t)t * half, sn + (size_t)t * half);
  }
};

// The q of one query head into a padded [Tp, Hp] buffer, normalised and rotated when nq is on.
inline void load_q(float* Q, const float* q, int64_t ld, int T, int H, int Hp, const QkNorm& nq) {
  load_head(Q, Hp, q, ld, T, H);
  if (nq.on()) nq.apply(Q, Hp, T, H, 0);
}

// k and v of one key/value head into padded [Tp, Hp] buffers, plus Kᵀ [Hp, Tp], the layout the score kernel
// wants; k normalised and rotated when nq is on.
inline void load_kv(float* K, float* Kt, float* V, const float* k, const float* v, int64_t ld, int T, int H, int Tp,
                    int Hp, const QkNorm& nq) {
  load_head(K, Hp, k, ld, T, H);
  if (nq.on()) nq.apply(K, Hp, T, H, 1);
  transpose_head(Kt, Tp, K, Hp, H);
  load_head(V, Hp, v, ld, T, H);
}

// Per-thread scratch, kept between calls: `nh` [Tp, Hp]-sized head slots, then `nr` slots of `row_size` floats
// that are written before they are read. Padded rows (≥ T) and columns (≥ H) of the head slots never reach a
// stored result, but they are kept zero so that no stale value of another shape (NaN, denormals) enters the
// arithmetic: only [0,T)×[0,H) is ever written, so head slots are zeroed only when T or H changes or a call's
// row slots overlapped them. (Allocating and zeroing the scratch in every call would push the heads' data out
// of L2.)
struct Scratch {
  std::vector<float> buf;
  int T = -1, H = -1, clean = 0;  // head slots [0, clean) are zero outside [0,T)×[0,H)
  size_t head = 0, rows_at = 0, row_size = 0;
  void prepare(int T_, int H_, int nh, int nr, size_t row_size_) {
    if (T_ != T || H_ != H) T = T_, H = H_, clean = 0, head = (size_t)round16(T_) * round16(H_);
    rows_at = head * nh, row_size = row_size_;
    if (buf.size() < rows_at + row_size * nr) buf.resize(rows_at + row_size * nr);
    if (clean < nh) std::fill(buf.begin() + head * clean, buf.begin() + rows_at, 0.f);
    clean = nh;  // the row slots start at head slot nh
  }
  float* at(int i) { return buf.data() + head * i; }                 // head slot i
  float* row(int i) { return buf.data() + rows_at + row_size * i; }  // row slot i
};
thread_local Scratch g_scratch;

#if defined(__AVX512F__)
// Heads with H = 16 and T ≤ 16: every row of q, k, v and dO is one vector, so a head is handled in registers and
// a few L1 rows, without the padded copies and row-block bookkeeping of the general path, whose fixed cost would
// outweigh such a head's few thousand FLOP.
constexpr int kSmall = 16;

// Rows [0, T) of a strided [T, 16] head (zeros below), transposed: X[h] holds column h over the 16 positions.
inline void load_cols16(__m512i* X, const float* src, int64_t ld, int T) {
  for (int r = 0; r < 16; r++)
    X[r] = r < T ? _mm512_castps_si512(_mm512_loadu_ps(src + (int64_t)r * ld)) : _mm512_setzero_si512();
  transpose16(X);
}
// Σ_h a[h] · Xt[h]: one row against every position (a is 16 floats in memory).
inline __m512 row_dot_cols16(const float* a, const __m512i* Xt) {
  __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
  for (int h = 0; h < 16; h += 2) {
    s0 = _mm512_fmadd_ps(_mm512_set1_ps(a[h]), _mm512_castsi512_ps(Xt[h]), s0);
    s1 = _mm512_fmadd_ps(_mm512_set1_ps(a[h + 1]), _mm512_castsi512_ps(Xt[h + 1]), s1);
  }
  return _mm512_add_ps(s0, s1);
}
// Σ_{j in [lo, hi)} w_j · Z_j, rows Z_j = z + j·ld of 16 floats; wj(j) gives w_j broadcast to all lanes.
template <typename WeightAt>
inline __m512 weighted_rows16(WeightAt wj, const float* z, int64_t ld, int lo, int hi) {
  __m512 o0 = _mm512_setzero_ps(), o1 = _mm512_setzero_ps();
  int j = lo;
  for (; j + 1 < hi; j += 2) {
    o0 = _mm512_fmadd_ps(wj(j), _mm512_loadu_ps(z + (int64_t)j * ld), o0);
    o1 = _mm512_fmadd_ps(wj(j + 1), _mm512_loadu_ps(z + (int64_t)(j + 1) * ld), o1);
  }
  if (j < hi) o0 = _mm512_fmadd_ps(wj(j), _mm512_loadu_ps(z + (int64_t)j * ld), o0);
  return _mm512_add_ps(o0, o1);
}
// Weights from a row in memory, or from a register (a row just computed: no store and reload).
inline auto weights_at(const float* w) {
  return [w](int j) { return _mm512_set1_ps(w[j]); };
}
inline auto weights_in(__m512 w) {
  return [w](int j) { return _mm512_permutexvar_ps(_mm512_set1_epi32(j), w); };
}
// A 16×16 block in place (row stride 16).
inline void transpose_block16(float* a) {
  __m512i r[16];
  for (int i = 0; i < 16; i++) r[i] = _mm512_castps_si512(_mm512_load_ps(a + 16 * i));
  transpose16(r);
  for (int i = 0; i < 16; i++) _mm512_store_ps(a + 16 * i, _mm512_castsi512_ps(r[i]));
}

// Rows [0, T) of a strided [T, 16] head into a local 16×16 block (rows from T on zero), normalised and rotated
// (q: k = 0, k: k = 1) when nq is on.
inline void load_rows16(float* X, const float* src, int64_t ld, int T, const QkNorm& nq, int k) {
  for (int r = 0; r < 16; r++)
    _mm512_store_ps(X + 16 * r, r < T ? _mm512_loadu_ps(src + (int64_t)r * ld) : _mm512_setzero_ps());
  if (nq.on()) nq.apply(X, 16, T, 16, k);
}

// Forward of one head: q, k and v point at its first q row and its key/value head's first k and v rows (rows ld
// apart), out at its first output row (rows D apart), L at its T log-sum-exps.
void small_head_forward(float* out, float* L, const float* q, const float* k, const float* v, int64_t D, int64_t ld,
                        int T, float scale, const QkNorm& nq) {
  alignas(64) float Qn[16 * 16], Kn[16 * 16];
  load_rows16(Qn, q, ld, T, nq, 0);
  load_rows16(Kn, k, ld, T, nq, 1);
  __m512i Kt[16];
  load_cols16(Kt, Kn, 16, T);
  const __m512 vs = _mm512_set1_ps(scale);
  for (int i = 0; i < T; i++) {
    const __m512 s = _mm512_mul_ps(vs, row_dot_cols16(Qn + 16 * i, Kt));
    const __mmask16 mi = mask_n(i + 1);
    const float mx = _mm512_mask_reduce_max_ps(mi, s);
    const __m512 e = _mm512_maskz_mov_ps(mi, fast_exp512(_mm512_sub_ps(s, _mm512_set1_ps(mx))));
    const float sum = _mm512_reduce_add_ps(e);
    L[i] = mx + std::log(sum);
    const __m512 p = _mm512_mul_ps(e, _mm512_set1_ps(1.f / sum));
    _mm512_storeu_ps(out + (int64_t)i * D, weighted_rows16(weights_in(p), v, ld, 0, i + 1));
  }
}

// Backward of one head that has its own key/value head (no grouping): dq points at its first dq row (dk, dv at
// +D, +2D; rows ld apart), g at its first dO row (rows D apart). q, k and v are read in full before anything is
// written, so dq may be q.
void small_head_backward(float* dq, const float* g, const float* L, const float* q, int64_t D, int64_t ld, int T,
                         float scale, const QkNorm& nq) {
  alignas(64) float P[16 * 16], dS[16 * 16], Qn[16 * 16], Kn[16 * 16], dQ[16 * 16], dK[16 * 16];
  load_rows16(Qn, q, ld, T, nq, 0);
  load_rows16(Kn, q + D, ld, T, nq, 1);
  const __m512 vs = _mm512_set1_ps(scale);
  {
    __m512i Kt[16];
    load_cols16(Kt, Kn, 16, T);
    for (int i = 0; i < 16; i++) {
      __m512 pi = _mm512_setzero_ps();
      if (i < T) {
        const __m512 s = _mm512_mul_ps(vs, row_dot_cols16(Qn + 16 * i, Kt));
        pi = _mm512_maskz_mov_ps(mask_n(i + 1), fast_exp512(_mm512_sub_ps(s, _mm512_set1_ps(L[i]))));
      }
      _mm512_store_ps(P + 16 * i, pi);
    }
  }
  {
    __m512i Vt[16];
    load_cols16(Vt, q + 2 * D, ld, T);
    for (int i = 0; i < 16; i++) {
      __m512 di = _mm512_setzero_ps();
      if (i < T) {
        const __m512 pi = _mm512_load_ps(P + 16 * i), dp = row_dot_cols16(g + (int64_t)i * D, Vt);
        const __m512 acc = _mm512_set1_ps(_mm512_reduce_add_ps(_mm512_mul_ps(pi, dp)));
        di = _mm512_mul_ps(_mm512_mul_ps(pi, _mm512_sub_ps(dp, acc)), vs);
      }
      _mm512_store_ps(dS + 16 * i, di);
    }
  }
  // dQ_i = Σ_{j ≤ i} dS_ij K_j
  for (int i = 0; i < T; i++) _mm512_store_ps(dQ + 16 * i, weighted_rows16(weights_at(dS + 16 * i), Kn, 16, 0, i + 1));
  // dK_j = Σ_{i ≥ j} dS_ij Q_i and dV_j = Σ_{i ≥ j} P_ij dO_i: rows of the transposed blocks.
  transpose_block16(dS);
  transpose_block16(P);
  for (int j = 0; j < T; j++) {
    _mm512_store_ps(dK + 16 * j, weighted_rows16(weights_at(dS + 16 * j), Qn, 16, j, T));
    _mm512_storeu_ps(dq + 2 * D + (int64_t)j * ld, weighted_rows16(weights_at(P + 16 * j), g, D, j, T));
  }
  if (nq.on()) {
    nq.backward(dQ, Qn, 16, T, 16, 0);
    nq.backward(dK, Kn, 16, T, 16, 1);
  }
  for (int i = 0; i < T; i++) {
    _mm512_storeu_ps(dq + (int64_t)i * ld, _mm512_load_ps(dQ + 16 * i));
    _mm512_storeu_ps(dq + D + (int64_t)i * ld, _mm512_load_ps(dK + 16 * i));
  }
}
#endif

// The training kernels' buffers: qkv rows [N·H q | Nkv·H k | Nkv·H v] per token ([B, T, N + 2Nkv, H]), out and
// dout [B, T, N, H], lse [B, N, T]. Query head n uses key/value head n / group. q_at(b, n), out_at(b, n) and
// lse_at(b, n) give where query head (b, n) starts, k_at(b, kv) and v_at(b, kv) where key/value head (b, kv) does.
struct Layout {
  int T, N, H, Nkv, group;
  int64_t D, Dkv, ld;  // N·H, Nkv·H, and the row stride of qkv (D + 2·Dkv)
  int Tp, Hp;          // T and H rounded up to 16 (the padded head buffers)
  float scale;         // of the scores, 1/√H
  Layout(int T_, int N_, int H_, int Nkv_)
      : T(T_), N(N_), H(H_), Nkv(Nkv_), group(Nkv_ > 0 ? N_ / Nkv_ : 1), D((int64_t)N_ * H_),
        Dkv((int64_t)Nkv_ * H_), ld(D + 2 * Dkv), Tp(round16(T_)), Hp(round16(H_)),
        scale(1.0f / std::sqrt((float)H_)) {}
  int64_t q_at(int b, int n) const { return (int64_t)b * T * ld + (int64_t)n * H; }
  int64_t k_at(int b, int kv) const { return (int64_t)b * T * ld + D + (int64_t)kv * H; }
  int64_t v_at(int b, int kv) const { return (int64_t)b * T * ld + D + Dkv + (int64_t)kv * H; }
  int64_t out_at(int b, int n) const { return (int64_t)b * T * D + (int64_t)n * H; }
  int64_t lse_at(int b, int n) const { return ((int64_t)b * N + n) * T; }
};
}  // namespace

// The RoPE tables and rstd of the fused q/k normalisation, or none.
static QkNorm qk_norm(float* out, const float* in, int T, int N, int H) {
  QkNorm nq;
  if (!out && !in) return nq;
  nq.out = out, nq.in = in, nq.N = N;
  rope_tables(nq.cs, nq.sn, T, H, 0);
  return nq;
}

void attention_forward(float* out, float* lse, const float* qkv, int B, int T, int N, int H, float* qk_rstd,
                       int Nkv) {
  const Layout at(T, N, H, Nkv);
  const int group = at.group;
  const int64_t D = at.D, ld = at.ld;
  const float scale = at.scale;
  const int Tp = at.Tp, Hp = at.Hp;
  const QkNorm nq = qk_norm(qk_rstd, nullptr, T, N, H);
  // With q and k normalised (|q| = |k| ≤ √H), every score lies in [−√H, √H]: exp(s − √H) can neither overflow
  // nor (for H ≤ 1024, down to e^-64) underflow, so the row maximum is not needed and the numerators come
  // straight out of the score kernel.
  const bool bounded = nq.on() && H <= 1024;
  const float shift = std::sqrt((float)H);
#if defined(__AVX512F__)
  if (H == kSmall && T <= kSmall) {
#pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < B; b++)
      for (int n = 0; n < N; n++)
        small_head_forward(out + at.out_at(b, n), lse + at.lse_at(b, n), qkv + at.q_at(b, n),
                           qkv + at.k_at(b, n / group), qkv + at.v_at(b, n / group), D, ld, T, scale,
                           nq.head(b, n, T));
    return;
  }
#endif
#pragma omp parallel
  {
    Scratch& sc = g_scratch;
    sc.prepare(T, H, 5, 1, (size_t)kRows * Tp);
    float *Q = sc.at(0), *K = sc.at(1), *Kt = sc.at(2), *V = sc.at(3), *O = sc.at(4);
    float* S = sc.row(0);  // one block of 8 score rows
    // The key/value head (b·Nkv + kv) whose K, Kᵀ and V are in this thread's slots: the query heads of a group
    // are consecutive items, so a thread loads each key/value head it meets once.
    int64_t loaded = -1;
#pragma omp for collapse(2) schedule(static)
    for (int b = 0; b < B; b++)
      for (int n = 0; n < N; n++) {
        // Padded rows and columns of the head slots are zero (Scratch::prepare): only [0,T)×[0,H) is ever written.
        const QkNorm hn = nq.head(b, n, T);
        load_q(Q, qkv + at.q_at(b, n), ld, T, H, Hp, hn);
        const int kv = n / group;
        if ((int64_t)b * Nkv + kv != loaded) {
          load_kv(K, Kt, V, qkv + at.k_at(b, kv), qkv + at.v_at(b, kv), ld, T, H, Tp, Hp, hn);
          loaded = (int64_t)b * Nkv + kv;
        }
        float* L = lse + at.lse_at(b, n);
        for (int i0 = 0; i0 < T; i0 += kRows) {
          const int jEnd = std::min(round16(i0 + kRows), Tp);
          const int iEnd = std::min(i0 + kRows, T);
          if (bounded) {
            // Numerators exp(s − √H) written by the score kernel, the row sums beside; O scaled by 1/sum.
            CausalExp::Sum sum[kRows] = {};
            CausalExp ep{scale, shift, nullptr, i0};
            ep.sum = sum;
            rows_abt(S, Tp, Q + (int64_t)i0 * Hp, Hp, Kt, Tp, H, jEnd, ep);
            float inv[kRows];
            for (int r = 0; r < kRows; r++) {
              const float total = CausalExp::total(sum[r]);
              inv[r] = 1.f / total;
              if (i0 + r < iEnd) L[i0 + r] = shift + std::log(total);
            }
            rows_ab<false>(O + (int64_t)i0 * Hp, Hp, S, Tp, V, Hp, 0, iEnd, Hp, inv);
          } else {
            rows_abt(S, Tp, Q + (int64_t)i0 * Hp, Hp, Kt, Tp, H, jEnd, Scaled{scale});
            for (int i = i0; i < iEnd; i++) L[i] = causal_softmax_padded(S + (int64_t)(i - i0) * Tp, i, Tp);
            rows_ab<false>(O + (int64_t)i0 * Hp, Hp, S, Tp, V, Hp, 0, iEnd, Hp);
          }
        }
        store_head(out + at.out_at(b, n), D, O, Hp, T, H);
      }
  }
}

void attention_backward(float* dqkv, const float* dout, const float* lse, const float* qkv, int B, int T, int N,
                        int H, const float* qk_rstd, int Nkv) {
  const Layout at(T, N, H, Nkv);
  const int64_t D = at.D, ld = at.ld;
  const float scale = at.scale;
  const int Tp = at.Tp, Hp = at.Hp, group = at.group;
  const QkNorm nq = qk_norm(nullptr, qk_rstd, T, N, H);
#if defined(__AVX512F__)
  if (H == kSmall && T <= kSmall && group == 1) {
#pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < B; b++)
      for (int n = 0; n < N; n++)
        small_head_backward(dqkv + at.q_at(b, n), dout + at.out_at(b, n), lse + at.lse_at(b, n),
                            qkv + at.q_at(b, n), D, ld, T, scale, nq.head(b, n, T));
    return;
  }
#endif
  // One item per key/value head: its dK and dV sum over the group's query heads, in head order, inside one thread
  // (no races, and the same sums whatever the thread count).
#pragma omp parallel
  {
    Scratch& sc = g_scratch;
    sc.prepare(T, H, 9, 2, (size_t)Tp * Tp);
    float *Q = sc.at(0), *K = sc.at(1), *Kt = sc.at(2), *V = sc.at(3), *Vt = sc.at(4), *G = sc.at(5);
    float *dQ = sc.at(6), *dK = sc.at(7), *dV = sc.at(8), *P = sc.row(0), *dS = sc.row(1);
#pragma omp for collapse(2) schedule(static)
    for (int b = 0; b < B; b++)
      for (int kv = 0; kv < Nkv; kv++) {
        const QkNorm hk = nq.head(b, kv, T);  // q/k normalisation comes only without grouping: kv is the query head
        load_kv(K, Kt, V, qkv + at.k_at(b, kv), qkv + at.v_at(b, kv), ld, T, H, Tp, Hp, hk);
        transpose_head(Vt, Tp, V, Hp, H);
        for (int r = 0; r < group; r++) {
          const int n = kv * group + r;
          const QkNorm hq = nq.head(b, n, T);
          load_q(Q, qkv + at.q_at(b, n), ld, T, H, Hp, hq);
          load_head(G, Hp, dout + at.out_at(b, n), D, T, H);
          const float* L = lse + at.lse_at(b, n);
          for (int i0 = 0; i0 < T; i0 += kRows) {
            const int jEnd = std::min(round16(i0 + kRows), Tp);
            const int iEnd = std::min(i0 + kRows, T);
            // P = exp(s − lse) recomputed by the score kernel (the rows past T are zeroed below).
            float lse_rows[kRows] = {};
            for (int i = i0; i < iEnd; i++) lse_rows[i - i0] = L[i];
            rows_abt(P + (int64_t)i0 * Tp, Tp, Q + (int64_t)i0 * Hp, Hp, Kt, Tp, H, jEnd,
                     CausalExp{scale, 0.f, lse_rows, i0});
            // dP = dO Vᵀ on the causal block, then dS = P ⊙ (dP − rowsum(P ⊙ dP)) · scale.
            rows_abt(dS + (int64_t)i0 * Tp, Tp, G + (int64_t)i0 * Hp, Hp, Vt, Tp, H, jEnd, Scaled{1.f});
            for (int i = i0; i < iEnd; i++)
              softmax_grad_padded(dS + (int64_t)i * Tp, P + (int64_t)i * Tp, jEnd, scale);
            for (int i = iEnd; i < i0 + kRows; i++) {
              std::memset(P + (int64_t)i * Tp, 0, sizeof(float) * Tp);
              std::memset(dS + (int64_t)i * Tp, 0, sizeof(float) * Tp);
            }
            // dQ rows of this block: dS K over j ≤ i.
            rows_ab<false>(dQ + (int64_t)i0 * Hp, Hp, dS + (int64_t)i0 * Tp, Tp, K, Hp, 0, iEnd, Hp);
          }
          // dK = dSᵀ Q and dV = Pᵀ dO (written by the group's first head, added by the others): column block j0
          // only meets rows i ≥ j0.
          for (int j0 = 0; j0 < T; j0 += kRows) {
            if (r == 0) {
              rows_ab<true>(dK + (int64_t)j0 * Hp, Hp, dS + j0, Tp, Q, Hp, j0, T, Hp);
              rows_ab<true>(dV + (int64_t)j0 * Hp, Hp, P + j0, Tp, G, Hp, j0, T, Hp);
            } else {
              rows_ab<true, true>(dK + (int64_t)j0 * Hp, Hp, dS + j0, Tp, Q, Hp, j0, T, Hp);
              rows_ab<true, true>(dV + (int64_t)j0 * Hp, Hp, P + j0, Tp, G, Hp, j0, T, Hp);
            }
          }
          if (hq.on()) hq.backward(dQ, Q, Hp, T, H, 0);
          // this head's q has been read for the last time: its gradient may overwrite it
          store_head(dqkv + at.q_at(b, n), ld, dQ, Hp, T, H);
        }
        if (hk.on()) hk.backward(dK, K, Hp, T, H, 1);
        store_head(dqkv + at.k_at(b, kv), ld, dK, Hp, T, H);
        store_head(dqkv + at.v_at(b, kv), ld, dV, Hp, T, H);
      }
  }
}

namespace {

inline float dot(const float* a, const float* b, int n) {
  float s = 0.f;
#pragma omp simd reduction(+ : s)
  for (int i = 0; i < n; i++) s += a[i] * b[i];
  return s;
}

// One query row against cached rows 0..last of one head (rows `stride` floats apart): out = softmax(scale·q·Kᵀ)·V.
// s: scratch of at least round16(last+1) floats. Generic form (any H).
void decode_row(float* out, const float* q, const float* kc, const float* vc, int64_t stride, int H, int last,
                float scale, float* s) {
  for (int j = 0; j <= last; j++) s[j] = scale * dot(q, kc + (int64_t)j * stride, H);
  causal_softmax_row(s, last, last + 1);
  for (int h = 0; h < H; h++) out[h] = 0.f;
  for (int j = 0; j <= last; j++) {
    const float p = s[j];
    const float* vj = vc + (int64_t)j * stride;
#pragma omp simd
    for (int h = 0; h < H; h++) out[h] += p * vj[h];
  }
}

#if defined(__AVX512F__)
// The same for H = 16·NC: q and the output accumulator live in registers, four cached rows per step.
template <int NC>
void decode_row_v(float* out, const float* q, const float* kc, const float* vc, int64_t stride, int last, float scale,
                  float* s) {
  __m512 qv[NC];
  for (int c = 0; c < NC; c++) qv[c] = _mm512_mul_ps(_mm512_loadu_ps(q + 16 * c), _mm512_set1_ps(scale));
  int j = 0;
  for (; j + 4 <= last + 1; j += 4) {
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    const float* k0 = kc + (int64_t)j * stride;
    for (int c = 0; c < NC; c++) {
      a0 = _mm512_fmadd_ps(qv[c], _mm512_loadu_ps(k0 + 16 * c), a0);
      a1 = _mm512_fmadd_ps(qv[c], _mm512_loadu_ps(k0 + stride + 16 * c), a1);
      a2 = _mm512_fmadd_ps(qv[c], _mm512_loadu_ps(k0 + 2 * stride + 16 * c), a2);
      a3 = _mm512_fmadd_ps(qv[c], _mm512_loadu_ps(k0 + 3 * stride + 16 * c), a3);
    }
    s[j] = _mm512_reduce_add_ps(a0);
    s[j + 1] = _mm512_reduce_add_ps(a1);
    s[j + 2] = _mm512_reduce_add_ps(a2);
    s[j + 3] = _mm512_reduce_add_ps(a3);
  }
  for (; j <= last; j++) {
    __m512 a0 = _mm512_setzero_ps();
    for (int c = 0; c < NC; c++) a0 = _mm512_fmadd_ps(qv[c], _mm512_loadu_ps(kc + (int64_t)j * stride + 16 * c), a0);
    s[j] = _mm512_reduce_add_ps(a0);
  }
  causal_softmax_padded(s, last, round16(last + 1));
  __m512 acc[NC];
  for (int c = 0; c < NC; c++) acc[c] = _mm512_setzero_ps();
  for (j = 0; j <= last; j++) {
    const __m512 p = _mm512_set1_ps(s[j]);
    const float* vj = vc + (int64_t)j * stride;
    for (int c = 0; c < NC; c++) acc[c] = _mm512_fmadd_ps(p, _mm512_loadu_ps(vj + 16 * c), acc[c]);
  }
  for (int c = 0; c < NC; c++) _mm512_storeu_ps(out + 16 * c, acc[c]);
}
#endif

#if defined(__AVX512F__)
// All NH heads of one sequence (H = 16·NC each, NH·NC ≤ 16) in one pass over its cached rows: each key and
// value row (NH·H contiguous floats) is read once, as one sequential stream per sequence, instead of NH
// strided passes that each take a quarter of every row. Per head the arithmetic is decode_row_v's, in the
// same order, so the results are the same bit for bit. s: NH rows of round16(last+1) floats.
// The pass over the keys also requests the start of this sequence's value rows into L2, and the pass over the
// values the start of the next sequence's key rows (next_k, or null), so each pass has a second stream from
// memory and the next pass starts without waiting for the hardware prefetcher to ramp up.
template <int NC, int NH>
void decode_rows_all(float* out, const float* q, const float* kc, const float* vc, int64_t stride, int last,
                     float scale, float* s, const float* next_k) {
  // The first quarter of each row's 64-byte lines (NC·NH lines a row; at least one): requesting more of the row
  // only adds instructions, as the hardware prefetcher follows the rest (docs/performance.md).
  constexpr int kLines = NC * NH / 4 > 0 ? NC * NH / 4 : 1;
  auto fetch_row = [](const float* row) {
    for (int l = 0; l < kLines; l++) _mm_prefetch((const char*)row + 64 * l, _MM_HINT_T1);
  };
  constexpr int H = 16 * NC;
  const int Tp = round16(last + 1);
  __m512 qv[NH][NC];
  for (int n = 0; n < NH; n++)
    for (int c = 0; c < NC; c++) qv[n][c] = _mm512_mul_ps(_mm512_loadu_ps(q + n * H + 16 * c), _mm512_set1_ps(scale));
  for (int j = 0; j <= last; j++) {
    const float* kj = kc + (int64_t)j * stride;
    fetch_row(vc + (int64_t)j * stride);
    for (int n = 0; n < NH; n++) {
      __m512 a = _mm512_setzero_ps();
      for (int c = 0; c < NC; c++) a = _mm512_fmadd_ps(qv[n][c], _mm512_loadu_ps(kj + n * H + 16 * c), a);
      s[n * Tp + j] = _mm512_reduce_add_ps(a);
    }
  }
  for (int n = 0; n < NH; n++) causal_softmax_padded(s + n * Tp, last, Tp);
  __m512 acc[NH][NC];
  for (int n = 0; n < NH; n++)
    for (int c = 0; c < NC; c++) acc[n][c] = _mm512_setzero_ps();
  for (int j = 0; j <= last; j++) {
    const float* vj = vc + (int64_t)j * stride;
    if (next_k) fetch_row(next_k + (int64_t)j * stride);
    for (int n = 0; n < NH; n++) {
      const __m512 p = _mm512_set1_ps(s[n * Tp + j]);
      for (int c = 0; c < NC; c++) acc[n][c] = _mm512_fmadd_ps(p, _mm512_loadu_ps(vj + n * H + 16 * c), acc[n][c]);
    }
  }
  for (int n = 0; n < NH; n++)
    for (int c = 0; c < NC; c++) _mm512_storeu_ps(out + n * H + 16 * c, acc[n][c]);
}
#endif

#if defined(__AVX512F__)
// Sixteen heads of H = 16 at once (one query row; q, the cached key/value rows and the output are 256
// contiguous floats each, head h at 16·h). Lanes are heads: the 16 dot products of a cached row come out of
// one transpose-and-add tree as a vector of scores, the softmax is lane-wise (no horizontal reductions), and
// the weighted sum broadcasts each head's weight from memory. Per cached row this is 16 multiplies, 30
// shuffles and 16 FMAs for all sixteen heads, instead of a horizontal reduction per head and row, and the
// per-head fixed cost (two reductions, an exp, a division) is shared sixteen ways.
inline __m512 hsum16(const __m512* p) {
  __m512 w[8], x[4], y[2];
  for (int i = 0; i < 8; i++)
    w[i] = _mm512_add_ps(_mm512_unpacklo_ps(p[2 * i], p[2 * i + 1]), _mm512_unpackhi_ps(p[2 * i], p[2 * i + 1]));
  for (int i = 0; i < 4; i++) {
    const __m512d a = _mm512_castps_pd(w[2 * i]), b = _mm512_castps_pd(w[2 * i + 1]);
    x[i] = _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(a, b)), _mm512_castpd_ps(_mm512_unpackhi_pd(a, b)));
  }
  for (int i = 0; i < 2; i++)
    y[i] = _mm512_add_ps(_mm512_shuffle_f32x4(x[2 * i], x[2 * i + 1], _MM_SHUFFLE(2, 0, 2, 0)),
                         _mm512_shuffle_f32x4(x[2 * i], x[2 * i + 1], _MM_SHUFFLE(3, 1, 3, 1)));
  // lane 4k+e of the result sums vector 4k+e: the four 128-bit lanes hold vectors 0-3, 4-7, 8-11, 12-15
  return _mm512_add_ps(_mm512_shuffle_f32x4(y[0], y[1], _MM_SHUFFLE(2, 0, 2, 0)),
                       _mm512_shuffle_f32x4(y[0], y[1], _MM_SHUFFLE(3, 1, 3, 1)));
}

// s: scratch of at least 16·(last+1) floats.
void decode_heads16(float* out, const float* q, const float* kc, const float* vc, int64_t stride, int last,
                    float scale, float* s) {
  __m512 qv[16];
  for (int h = 0; h < 16; h++) qv[h] = _mm512_mul_ps(_mm512_loadu_ps(q + 16 * h), _mm512_set1_ps(scale));
  __m512 m = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
  for (int j = 0; j <= last; j++) {
    const float* kj = kc + (int64_t)j * stride;
    __m512 p[16];
    for (int h = 0; h < 16; h++) p[h] = _mm512_mul_ps(qv[h], _mm512_loadu_ps(kj + 16 * h));
    const __m512 sj = hsum16(p);
    _mm512_storeu_ps(s + 16 * j, sj);
    m = _mm512_max_ps(m, sj);
  }
  __m512 sum = _mm512_setzero_ps();
  for (int j = 0; j <= last; j++) {
    const __m512 e = fast_exp512(_mm512_sub_ps(_mm512_loadu_ps(s + 16 * j), m));
    _mm512_storeu_ps(s + 16 * j, e);
    sum = _mm512_add_ps(sum, e);
  }
  __m512 acc[16];
  for (int h = 0; h < 16; h++) acc[h] = _mm512_setzero_ps();
  for (int j = 0; j <= last; j++) {
    const float* vj = vc + (int64_t)j * stride;
    const float* pj = s + 16 * j;
    for (int h = 0; h < 16; h++) acc[h] = _mm512_fmadd_ps(_mm512_set1_ps(pj[h]), _mm512_loadu_ps(vj + 16 * h), acc[h]);
  }
  alignas(64) float inv[16];
  _mm512_store_ps(inv, _mm512_div_ps(_mm512_set1_ps(1.f), sum));
  for (int h = 0; h < 16; h++) _mm512_storeu_ps(out + 16 * h, _mm512_mul_ps(acc[h], _mm512_set1_ps(inv[h])));
}
#endif

#if defined(__AVX512F__)
// Key/value heads [kv0, kv1) of one sequence with their G query heads each (grouped-query attention, H = 16·NC):
// one query row (q and out: the query heads' rows, G·H floats per key/value head, contiguous) against cached rows
// 0..last (rows `stride` floats apart, key/value head kv at kv·H). The rows are taken in blocks of about 16 KB of the
// heads in range: each block comes from memory once (with all key/value heads in range, as one sequential stream)
// and stays in L1 while every query head goes over its part. Per query head the arithmetic is decode_row_v's, in
// the same order whatever the range and block size (scores four rows at a time, the padded softmax, then the
// weighted value rows, carried from block to block in `out`), so any split of the heads gives the same bits.
// s: G·(kv1 − kv0) rows of round16(last+1) floats.
template <int NC>
void decode_rows_grouped(float* out, const float* q, const float* kc, const float* vc, int64_t stride, int kv0,
                         int kv1, int G, int last, float scale, float* s) {
  constexpr int H = 16 * NC;
  const int heads = (kv1 - kv0) * G;
  const int block = std::max(4, 4096 / ((kv1 - kv0) * H) / 4 * 4);
  const int Tp = round16(last + 1), rows = last + 1;
  const __m512 vs = _mm512_set1_ps(scale);
  for (int j0 = 0; j0 < rows; j0 += block) {
    const int j1 = std::min(j0 + block, rows);
    for (int n = 0; n < heads; n++) {
      const float* k = kc + (int64_t)(kv0 + n / G) * H;
      __m512 qv[NC];
      for (int c = 0; c < NC; c++) qv[c] = _mm512_mul_ps(_mm512_loadu_ps(q + n * H + 16 * c), vs);
      float* sn = s + (int64_t)n * Tp;
      int j = j0;
      for (; j + 4 <= j1; j += 4) {
        __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        const float* k0 = k + (int64_t)j * stride;
        for (int c = 0; c < NC; c++) {
          a0 = _mm512_fmadd_ps(qv[c], _mm512_loadu_ps(k0 + 16 * c), a0);
          a1 = _mm512_fmadd_ps(qv[c], _mm512_loadu_ps(k0 + stride + 16 * c), a1);
          a2 = _mm512_fmadd_ps(qv[c], _mm512_loadu_ps(k0 + 2 * stride + 16 * c), a2);
          a3 = _mm512_fmadd_ps(qv[c], _mm512_loadu_ps(k0 + 3 * stride + 16 * c), a3);
        }
        sn[j] = _mm512_reduce_add_ps(a0);
        sn[j + 1] = _mm512_reduce_add_ps(a1);
        sn[j + 2] = _mm512_reduce_add_ps(a2);
        sn[j + 3] = _mm512_reduce_add_ps(a3);
      }
      for (; j < j1; j++) {
        __m512 a0 = _mm512_setzero_ps();
        for (int c = 0; c < NC; c++) a0 = _mm512_fmadd_ps(qv[c], _mm512_loadu_ps(k + (int64_t)j * stride + 16 * c), a0);
        sn[j] = _mm512_reduce_add_ps(a0);
      }
    }
  }
  for (int n = 0; n < heads; n++) causal_softmax_padded(s + (int64_t)n * Tp, last, Tp);
  for (int j0 = 0; j0 < rows; j0 += block) {
    const int j1 = std::min(j0 + block, rows);
    for (int n = 0; n < heads; n++) {
      const float* v = vc + (int64_t)(kv0 + n / G) * H;
      float* o = out + n * H;
      const float* p = s + (int64_t)n * Tp;
      __m512 acc[NC];
      for (int c = 0; c < NC; c++) acc[c] = j0 == 0 ? _mm512_setzero_ps() : _mm512_loadu_ps(o + 16 * c);
      for (int j = j0; j < j1; j++) {
        const __m512 pj = _mm512_set1_ps(p[j]);
        const float* vj = v + (int64_t)j * stride;
        for (int c = 0; c < NC; c++) acc[c] = _mm512_fmadd_ps(pj, _mm512_loadu_ps(vj + 16 * c), acc[c]);
      }
      for (int c = 0; c < NC; c++) _mm512_storeu_ps(o + 16 * c, acc[c]);
    }
  }
}
#endif

// Decoding with grouped key/value heads (Nkv < N): caches [B, Tmax, Nkv, H], qkv rows [N·H q | Nkv·H k | Nkv·H v].
// With at least as many sequences as threads, one item per sequence and query row, which reads the sequence's
// cached rows as one stream; with fewer, one item per (sequence, key/value head), so that every thread has work.
// Both give the same bits (decode_rows_grouped), so the result does not depend on the thread count.
void decode_grouped(float* out, const float* qkv, float* kcache, float* vcache, int B, int Tq, int N, int Nkv, int H,
                    int Tmax, int pos0) {
  const int G = N / Nkv;
  const int64_t D = (int64_t)N * H, Dkv = (int64_t)Nkv * H, ld = D + 2 * Dkv;
  const float scale = 1.0f / std::sqrt((float)H);
  const int Tk = pos0 + Tq;
  const int parts = B >= omp_get_max_threads() ? 1 : Nkv;  // key/value heads split into this many items
  const int per = Nkv / parts;
#if defined(__AVX512F__)
  using GroupFn = void (*)(float*, const float*, const float*, const float*, int64_t, int, int, int, int, float, float*);
  static const GroupFn kGroup[9] = {nullptr,
                                    decode_rows_grouped<1>,
                                    decode_rows_grouped<2>,
                                    decode_rows_grouped<3>,
                                    decode_rows_grouped<4>,
                                    decode_rows_grouped<5>,
                                    decode_rows_grouped<6>,
                                    decode_rows_grouped<7>,
                                    decode_rows_grouped<8>};
  const GroupFn grouped = H % 16 == 0 && H / 16 <= 8 ? kGroup[H / 16] : nullptr;
#endif
#pragma omp parallel
  {
    // The new keys and values first; the loop's closing barrier orders the appends before any read.
#pragma omp for schedule(static)
    for (int b = 0; b < B; b++)
      for (int i = 0; i < Tq; i++) {
        const float* src = qkv + ((int64_t)b * Tq + i) * ld;
        const int64_t dst = ((int64_t)b * Tmax + pos0 + i) * Dkv;
        memcpy(kcache + dst, src + D, Dkv * sizeof(float));
        memcpy(vcache + dst, src + D + Dkv, Dkv * sizeof(float));
      }
    std::vector<float> s((size_t)round16(Tk) * G * per);
#pragma omp for collapse(3) schedule(static)
    for (int b = 0; b < B; b++)
      for (int part = 0; part < parts; part++)
        for (int i = 0; i < Tq; i++) {
          const int kv0 = part * per;
          const float* kc = kcache + (int64_t)b * Tmax * Dkv;
          const float* vc = vcache + (int64_t)b * Tmax * Dkv;
          const float* qi = qkv + ((int64_t)b * Tq + i) * ld + (int64_t)kv0 * G * H;
          float* oi = out + ((int64_t)b * Tq + i) * D + (int64_t)kv0 * G * H;
#if defined(__AVX512F__)
          if (grouped) {
            grouped(oi, qi, kc, vc, Dkv, kv0, kv0 + per, G, pos0 + i, scale, s.data());
            continue;
          }
#endif
          for (int n = 0; n < per * G; n++)
            decode_row(oi + n * H, qi + n * H, kc + (int64_t)(kv0 + n / G) * H, vc + (int64_t)(kv0 + n / G) * H, Dkv, H,
                       pos0 + i, scale, s.data());
        }
  }
}

}  // namespace

void attention_decode(float* out, const float* qkv, float* kcache, float* vcache, int B, int Tq, int N,
                      int H, int Tmax, int pos0, int Nkv) {
  if (Nkv > 0 && Nkv < N) {
    decode_grouped(out, qkv, kcache, vcache, B, Tq, N, Nkv, H, Tmax, pos0);
    return;
  }
  // One key/value head per query head from here on: D = N·H throughout, qkv rows 3D.
  const int64_t D = (int64_t)N * H, ld = 3 * D;
  const float scale = 1.0f / std::sqrt((float)H);
  const int Tk = pos0 + Tq;
#if defined(__AVX512F__)
  using RowFn = void (*)(float*, const float*, const float*, const float*, int64_t, int, float, float*);
  using AllFn = void (*)(float*, const float*, const float*, const float*, int64_t, int, float, float*, const float*);
  // kAll[NC][NH]: decode_rows_all<NC, NH> for NC·NH ≤ 16, NH ≥ 2.
  static const AllFn kAll[5][17] = {
      {},
      {nullptr, nullptr, decode_rows_all<1, 2>, decode_rows_all<1, 3>, decode_rows_all<1, 4>, decode_rows_all<1, 5>,
       decode_rows_all<1, 6>, decode_rows_all<1, 7>, decode_rows_all<1, 8>, decode_rows_all<1, 9>,
       decode_rows_all<1, 10>, decode_rows_all<1, 11>, decode_rows_all<1, 12>, decode_rows_all<1, 13>,
       decode_rows_all<1, 14>, decode_rows_all<1, 15>, decode_rows_all<1, 16>},
      {nullptr, nullptr, decode_rows_all<2, 2>, decode_rows_all<2, 3>, decode_rows_all<2, 4>, decode_rows_all<2, 5>,
       decode_rows_all<2, 6>, decode_rows_all<2, 7>, decode_rows_all<2, 8>},
      {nullptr, nullptr, decode_rows_all<3, 2>, decode_rows_all<3, 3>, decode_rows_all<3, 4>, decode_rows_all<3, 5>},
      {nullptr, nullptr, decode_rows_all<4, 2>, decode_rows_all<4, 3>, decode_rows_all<4, 4>},
  };
  static const RowFn kVec[9] = {nullptr, decode_row_v<1>, decode_row_v<2>, decode_row_v<3>, decode_row_v<4>,
                                decode_row_v<5>, decode_row_v<6>, decode_row_v<7>, decode_row_v<8>};
  const RowFn vec = H % 16 == 0 && H / 16 <= 8 ? kVec[H / 16] : nullptr;
  const bool heads16 = H == 16 && N % 16 == 0;  // sixteen heads at a time, lanes = heads
  // Otherwise, with 2 to 16 heads of H ≤ 64 whose rows together fit 16 vectors (D ≤ 256, H a multiple of 16), all
  // heads of a sequence in one pass over its rows: one sequential stream per sequence.
  const AllFn all = !heads16 && H % 16 == 0 && H <= 64 && N >= 2 && (H / 16) * N <= 16 ? kAll[H / 16][N] : nullptr;
#else
  const bool heads16 = false;
#endif
  // Work items: (row, head) pairs, or (row, group of sixteen heads).
  const int G = heads16 ? N / 16 : N;
#pragma omp parallel
  {
    // Append the new keys and values (rows pos0 .. pos0+Tq-1 of each sequence's cache) first, split over
    // the threads; the loop's closing barrier orders the appends before any read.
#pragma omp for schedule(static)
    for (int b = 0; b < B; b++)
      for (int i = 0; i < Tq; i++) {
        const float* src = qkv + ((int64_t)b * Tq + i) * ld;
        const int64_t dst = ((int64_t)b * Tmax + pos0 + i) * D;
        memcpy(kcache + dst, src + D, D * sizeof(float));
        memcpy(vcache + dst, src + 2 * D, D * sizeof(float));
      }
    std::vector<float> s((size_t)round16(Tk) * (heads16 ? 16 : N));
#if defined(__AVX512F__)
    if (all) {
#pragma omp for schedule(static)
      for (int b = 0; b < B; b++)
        for (int i = 0; i < Tq; i++) {
          // the next sequence's keys are fetched during the last query's pass over the values
          const float* next_k = i + 1 == Tq && b + 1 < B ? kcache + (int64_t)(b + 1) * Tmax * D : nullptr;
          all(out + ((int64_t)b * Tq + i) * D, qkv + ((int64_t)b * Tq + i) * ld, kcache + (int64_t)b * Tmax * D,
              vcache + (int64_t)b * Tmax * D, D, pos0 + i, scale, s.data(), next_k);
        }
    } else
#endif
#pragma omp for collapse(2) schedule(static)
    for (int b = 0; b < B; b++)
      for (int g = 0; g < G; g++) {
        const int64_t off = (int64_t)g * (heads16 ? 16 * H : H);
        const float* kc = kcache + (int64_t)b * Tmax * D + off;
        const float* vc = vcache + (int64_t)b * Tmax * D + off;
        for (int i = 0; i < Tq; i++) {
          const float* qi = qkv + ((int64_t)b * Tq + i) * ld + off;
          float* oi = out + ((int64_t)b * Tq + i) * D + off;
#if defined(__AVX512F__)
          if (heads16) {
            decode_heads16(oi, qi, kc, vc, D, pos0 + i, scale, s.data());
            continue;
          }
          if (vec) {
            vec(oi, qi, kc, vc, D, pos0 + i, scale, s.data());
            continue;
          }
#endif
          decode_row(oi, qi, kc, vc, D, H, pos0 + i, scale, s.data());
        }
      }
  }
}

}  // namespace uf
