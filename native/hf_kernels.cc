// Kernels of the Hugging Face family (Llama, Qwen2, Qwen3): RMSNorm with a weight, q/k preparation with given RoPE
// frequencies and an optional per-head RMSNorm, SwiGLU, biases, and frozen weights kept in half precision (bf16 or
// IEEE binary16). Semantics in src/backend/native.ts. Sums across rows go in a fixed order: the column sums below
// do not depend on the thread count at all, the gains of qk_rope_backward only through it.
// GCC 12 flags its own _mm512_reduce_add_ps as (maybe-)uninitialized, a false positive located in its headers, so
// the pragmas come before any include.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#include "kernels.h"
#include "qknorm.h"
#include "vmath.h"

#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

namespace uf {

namespace {

// out[c] += Σ_r term over rows in order, in float64, with the columns (not the rows) split between the threads:
// each sum is then the same whatever the thread count. term(r, c0, c1, acc) adds row r's column c to acc[c − c0]
// for c in [c0, c1).
template <typename Term>
void add_column_sums(float* out, int64_t R, int C, Term term) {
#pragma omp parallel
  {
    const int nt = omp_get_num_threads(), t = omp_get_thread_num();
    const int c0 = (int)((int64_t)C * t / nt), c1 = (int)((int64_t)C * (t + 1) / nt);
    if (c0 < c1) {
      std::vector<double> acc((size_t)(c1 - c0), 0.0);
      for (int64_t r = 0; r < R; r++) term(r, c0, c1, acc.data());
      for (int c = c0; c < c1; c++) out[c] = (float)((double)out[c] + acc[c - c0]);
    }
  }
}

}  // namespace

// ---------------------------------------------------------------------------------------------
void rmsnorm_gain_backward(float* dx, float* dgain, const float* dy, const float* x, const float* rstd,
                           const float* gain, int64_t R, int C) {
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < R; r++) {
    const float* dyr = dy + r * C;
    const float* xr = x + r * C;
    float* dxr = dx + r * C;
    const float s = rstd[r];
    float dot = 0.f;
#pragma omp simd reduction(+ : dot)
    for (int c = 0; c < C; c++) dot += gain[c] * dyr[c] * (xr[c] * s);
    const float mean = dot / C;
#pragma omp simd
    for (int c = 0; c < C; c++) dxr[c] += (gain[c] * dyr[c] - xr[c] * s * mean) * s;
  }
  if (dgain)
    add_column_sums(dgain, R, C, [=](int64_t r, int c0, int c1, double* acc) {
      const float* dyr = dy + r * C;
      const float* xr = x + r * C;
      const float s = rstd[r];
#pragma omp simd
      for (int c = c0; c < c1; c++) acc[c - c0] += (double)dyr[c] * (xr[c] * s);
    });
}

// ---------------------------------------------------------------------------------------------
// RoPE with the caller's inverse frequencies (llama3 scaling, any theta): cos and sin of pos·invFreq[i] in double,
// rounded once, for the positions of the last call. A training step asks every layer for the same positions;
// decoding asks for one new position per step, which costs H/2 sin/cos pairs.
namespace {
struct FreqRows {
  std::vector<double> inv;
  int lo = 0, hi = 0;  // positions [lo, hi)
  std::vector<float> c, s;
};
FreqRows g_freq_rows;  // kernels run on the JavaScript thread one at a time, so one cache needs no lock

void freq_rows(const float*& cs, const float*& sn, const double* inv, int half, int pos0, int T) {
  FreqRows& f = g_freq_rows;
  const bool same = (int)f.inv.size() == half && std::equal(inv, inv + half, f.inv.begin());
  if (!same || pos0 < f.lo || pos0 + T > f.hi) {
    f.inv.assign(inv, inv + half);
    f.lo = pos0;
    f.hi = pos0 + T;
    f.c.resize((size_t)T * half);
    f.s.resize((size_t)T * half);
    for (int t = 0; t < T; t++)
      for (int i = 0; i < half; i++) {
        const double a = (double)(pos0 + t) * inv[i];
        f.c[(size_t)t * half + i] = (float)std::cos(a);
        f.s[(size_t)t * half + i] = (float)std::sin(a);
      }
  }
  cs = f.c.data() + (size_t)(pos0 - f.lo) * half;
  sn = f.s.data() + (size_t)(pos0 - f.lo) * half;
}

// y = RoPE(x·k·g) for one head (g null: no weight); y may be x.
inline void scale_gain_rotate(float* y, const float* x, int H, float k, const float* g, const float* c,
                              const float* s) {
  const int half = H / 2;
  if (g) {
#pragma omp simd
    for (int i = 0; i < half; i++) {
      const float x1 = x[i] * k * g[i], x2 = x[i + half] * k * g[i + half];
      y[i] = x1 * c[i] - x2 * s[i];
      y[i + half] = x2 * c[i] + x1 * s[i];
    }
  } else {
#pragma omp simd
    for (int i = 0; i < half; i++) {
      const float x1 = x[i] * k, x2 = x[i + half] * k;
      y[i] = x1 * c[i] - x2 * s[i];
      y[i + half] = x2 * c[i] + x1 * s[i];
    }
  }
}
}  // namespace

void qk_rope_forward(float* y, float* rstd, const float* x, int B, int T, int N, int Nkv, int H, int pos0,
                     const double* inv_freq, int mode, const float* gq, const float* gk, float eps) {
  const int half = H / 2, heads = N + Nkv;
  const int64_t W = ((int64_t)N + 2 * (int64_t)Nkv) * H, rows = (int64_t)B * T, V = (int64_t)Nkv * H;
  if (rows == 0) return;
  const float *cs, *sn;
  freq_rows(cs, sn, inv_freq, half, pos0, T);
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; r++) {
    const int64_t t = r % T;
    const float* c = cs + t * half;
    const float* s = sn + t * half;
    for (int j = 0; j < heads; j++) {
      const float* xh = x + r * W + (int64_t)j * H;
      float k = 1.f;  // mode 0: x·1 is x exactly
      if (mode > 0) {
        k = row_rstd(xh, H, eps);
        rstd[r * heads + j] = k;
      }
      scale_gain_rotate(y + r * W + (int64_t)j * H, xh, H, k, mode == 2 ? (j < N ? gq : gk) : nullptr, c, s);
    }
    if (y != x) std::memcpy(y + r * W + (int64_t)heads * H, x + r * W + (int64_t)heads * H, sizeof(float) * V);
  }
}

void qk_rope_backward(float* dx, float* dgq, float* dgk, const float* dy, const float* x, const float* rstd, int B,
                      int T, int N, int Nkv, int H, int pos0, const double* inv_freq, int mode, const float* gq,
                      const float* gk) {
  const int half = H / 2, heads = N + Nkv;
  const int64_t W = ((int64_t)N + 2 * (int64_t)Nkv) * H, rows = (int64_t)B * T, V = (int64_t)Nkv * H;
  if (rows == 0) return;
  const float *cs, *sn;
  freq_rows(cs, sn, inv_freq, half, pos0, T);
  // The gains' gradients: a float64 partial sum per thread over its static share of rows, added in thread order.
  const bool gains = mode == 2 && (dgq || dgk);
  const int max_threads = omp_get_max_threads();
  std::vector<double> part(gains ? (size_t)max_threads * 2 * H : 0, 0.0);
#pragma omp parallel
  {
    std::vector<float> gu((size_t)H), xn((size_t)H);
    double* pq = gains ? part.data() + (size_t)omp_get_thread_num() * 2 * H : nullptr;
#pragma omp for schedule(static)
    for (int64_t r = 0; r < rows; r++) {
      const int64_t t = r % T;
      const float* c = cs + t * half;
      const float* s = sn + t * half;
      for (int j = 0; j < heads; j++) {
        const float* dyh = dy + r * W + (int64_t)j * H;
        float* dxh = dx + r * W + (int64_t)j * H;
        // the gradient before the rotation (its transpose), taken in full before dx (maybe dy) is written
#pragma omp simd
        for (int i = 0; i < half; i++) {
          gu[i] = dyh[i] * c[i] + dyh[i + half] * s[i];
          gu[i + half] = dyh[i + half] * c[i] - dyh[i] * s[i];
        }
        if (mode == 0) {
          std::memcpy(dxh, gu.data(), sizeof(float) * H);
          continue;
        }
        const float k = rstd[r * heads + j];
        const float* xh = x + r * W + (int64_t)j * H;
#pragma omp simd
        for (int h = 0; h < H; h++) xn[h] = xh[h] * k;
        if (mode == 2) {
          double* acc = pq ? pq + (j < N ? 0 : H) : nullptr;
          if (acc)
            for (int h = 0; h < H; h++) acc[h] += (double)gu[h] * xn[h];
          const float* g = j < N ? gq : gk;
#pragma omp simd
          for (int h = 0; h < H; h++) gu[h] *= g[h];
        }
        float dot = 0.f;
#pragma omp simd reduction(+ : dot)
        for (int h = 0; h < H; h++) dot += gu[h] * xn[h];
        const float mean = dot / H;
#pragma omp simd
        for (int h = 0; h < H; h++) dxh[h] = (gu[h] - xn[h] * mean) * k;
      }
      if (dx != dy) std::memcpy(dx + r * W + (int64_t)heads * H, dy + r * W + (int64_t)heads * H, sizeof(float) * V);
    }
  }
  if (gains)
    for (int part_of = 0; part_of < 2; part_of++) {
      float* dg = part_of == 0 ? dgq : dgk;
      if (!dg) continue;
      for (int h = 0; h < H; h++) {
        double sum = dg[h];
        for (int t = 0; t < max_threads; t++) sum += part[((size_t)t * 2 + part_of) * H + h];
        dg[h] = (float)sum;
      }
    }
}

// ---------------------------------------------------------------------------------------------
// silu(z) = z·σ(z); σ from the project's vectorisable exp (relative error under 1e-7; its clamps keep NaN).
void swiglu_forward(float* act, const float* gu, int64_t R, int F) {
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < R; r++) {
    const float* g = gu + r * 2 * F;
    const float* u = g + F;
    float* a = act + r * F;
#pragma omp simd
    for (int f = 0; f < F; f++) {
      const float z = g[f];
      a[f] = z / (1.f + fast_exp(-z)) * u[f];
    }
  }
}

// silu'(z) = σ(z)·(1 + z·(1 − σ(z))). Element f of gate and of up is read before either is written, so dgu may be gu.
void swiglu_backward(float* dgu, const float* dact, const float* gu, int64_t R, int F) {
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < R; r++) {
    const float* g = gu + r * 2 * F;
    const float* u = g + F;
    const float* d = dact + r * F;
    float* dg = dgu + r * 2 * F;
    float* du = dg + F;
#pragma omp simd
    for (int f = 0; f < F; f++) {
      const float z = g[f], up = u[f], sig = 1.f / (1.f + fast_exp(-z));
      dg[f] = d[f] * up * (sig * (1.f + z * (1.f - sig)));
      du[f] = d[f] * (z * sig);
    }
  }
}

// ---------------------------------------------------------------------------------------------
void bias_forward(float* y, const float* b, int64_t R, int C) {
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < R; r++) {
    float* yr = y + r * C;
#pragma omp simd
    for (int c = 0; c < C; c++) yr[c] += b[c];
  }
}

void bias_backward(float* db, const float* dy, int64_t R, int C) {
  add_column_sums(db, R, C, [=](int64_t r, int c0, int c1, double* acc) {
    const float* dyr = dy + r * C;
#pragma omp simd
    for (int c = c0; c < c1; c++) acc[c - c0] += dyr[c];
  });
}

// ---------------------------------------------------------------------------------------------
// Half precision by integer operations on the bit patterns, so the FTZ/DAZ mode the kernels run under cannot flush
// a subnormal half or a subnormal float32 on its way through.
namespace {
inline float bf16_to_f32(uint16_t h) { return __builtin_bit_cast(float, (uint32_t)h << 16); }

inline float f16_to_f32(uint16_t h) {
  const uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
  const uint32_t normal = ((e + 112u) << 23) | (m << 13);  // rebias 15 → 127
  const uint32_t special = 0x7f800000u | (m << 13);        // inf, and NaN with its payload (quiet bit on quiet bit)
  // m·2⁻²⁴: an integer below 2¹⁰ times a power of two, exact, and a normal float32 (or zero)
  const uint32_t sub = __builtin_bit_cast(uint32_t, (float)(int)m * 0x1p-24f);
  return __builtin_bit_cast(float, sign | (e == 0x1fu ? special : e == 0 ? sub : normal));
}

inline uint16_t f32_to_bf16(float f) {
  const uint32_t u = __builtin_bit_cast(uint32_t, f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u);  // NaN: quiet, never rounded to inf
  return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);                  // nearest, ties to even; overflow → inf
}

inline uint16_t f32_to_f16(float f) {
  const uint32_t u = __builtin_bit_cast(uint32_t, f);
  const uint32_t sign = (u >> 16) & 0x8000u, a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return (uint16_t)(sign | 0x7e00u | ((a >> 13) & 0x3ffu));  // NaN: quiet, payload's top bits
  if (a >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u);  // from halfway between 65504 and 65536 up: inf
  if (a >= 0x38800000u)                                     // normal: rebias, round the 13 dropped bits to even
    return (uint16_t)(sign | ((a - 0x38000000u + 0xfffu + ((a >> 13) & 1u)) >> 13));
  if (a <= 0x33000000u) return (uint16_t)sign;  // up to half the smallest subnormal, 2⁻²⁵: zero (the tie to even)
  // subnormal: m = value·2²⁴ = significand·2^(e − 126), rounded to even
  const uint32_t e = a >> 23, sig = (a & 0x7fffffu) | 0x800000u, sh = 126u - e;
  uint32_t m = sig >> sh;
  const uint32_t rem = sig & ((1u << sh) - 1u), halfway = 1u << (sh - 1u);
  m += (rem > halfway || (rem == halfway && (m & 1u))) ? 1u : 0u;
  return (uint16_t)(sign | m);  // m = 0x400 (rounded up to 2⁻¹⁴) is the smallest normal's pattern
}

void widen_run(float* dst, const uint16_t* src, int64_t n, int kind) {
  if (kind == 0) {
#pragma omp simd
    for (int64_t i = 0; i < n; i++) dst[i] = bf16_to_f32(src[i]);
  } else {
#pragma omp simd
    for (int64_t i = 0; i < n; i++) dst[i] = f16_to_f32(src[i]);
  }
}

// Rows [n0, n0 + nb) of the [N, K] half matrix B (tb), or its columns [n0, n0 + nb) when B is [K, N], widened to
// dst as op(B)'s columns would be read by sgemm: [nb, K] (tb) or [K, nb]. Parallel over k when `parallel`.
void widen_columns(float* dst, const uint16_t* B, bool tb, int N, int K, int n0, int nb, int kind, bool parallel) {
  if (tb) {
#pragma omp parallel for schedule(static) if (parallel)
    for (int j = 0; j < nb; j++) widen_run(dst + (int64_t)j * K, B + (int64_t)(n0 + j) * K, K, kind);
  } else {
#pragma omp parallel for schedule(static) if (parallel)
    for (int k = 0; k < K; k++) widen_run(dst + (int64_t)k * nb, B + (int64_t)k * N + n0, nb, kind);
  }
}
}  // namespace

void widen_half(float* dst, const uint16_t* src, int64_t n, int kind) {
#pragma omp parallel
  {
    const int64_t nt = omp_get_num_threads(), t = omp_get_thread_num();
    const int64_t lo = n * t / nt, hi = n * (t + 1) / nt;
    widen_run(dst + lo, src + lo, hi - lo, kind);
  }
}

void narrow_half(uint16_t* dst, const float* src, int64_t n, int kind) {
  if (kind == 0) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) dst[i] = f32_to_bf16(src[i]);
  } else {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) dst[i] = f32_to_f16(src[i]);
  }
}

int64_t embedding_forward_half(float* out, const uint16_t* table, int kind, const int32_t* ids, int64_t rows, int V,
                               int D) {
  for (int64_t r = 0; r < rows; r++)
    if (ids[r] < 0 || ids[r] >= V) return r;
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; r++) widen_run(out + r * D, table + (int64_t)ids[r] * D, D, kind);
  return -1;
}

// ---------------------------------------------------------------------------------------------
// C's columns in blocks: each block of op(B) widened into a scratch buffer of the thread's own (kept between calls,
// at most 256·K floats) and multiplied by sgemm with C's leading dimension, so no float32 copy of the whole of B is
// made. With enough blocks each thread takes whole blocks (its sgemm, inside the parallel region, single-threaded);
// with few (a narrow B) the blocks go one after another, each sgemm on all the threads.
#if defined(__AVX512F__)
namespace {
// C = alpha·A·Bᵀ + beta·C for MR ≤ 8 rows of A [MR, K] and B [N, K] in half precision (decoding a few sequences):
// each of B's rows is read from memory once and multiplied by all of A's rows (which stay in cache); bf16 is widened
// in registers (a shift), f16 into a buffer that stays in L1/L2 (the exact integer conversion of widen_run). NR rows
// of B at a time keep NR·MR ≥ 4 independent accumulators in flight.
template <int MR, int NR>
void few_rows_half_bt(int N, int K, float alpha, const float* A, const uint16_t* B, int kind, float beta, float* C) {
  const __mmask16 tail = (__mmask16)((1u << (K % 16)) - 1u);
  const int K16 = K - K % 16;
  const bool in_registers = kind == 0;
#pragma omp parallel
  {
    std::vector<float> w((size_t)NR * (in_registers ? 16 : K));
#pragma omp for schedule(static)
    for (int nb = 0; nb < (N + NR - 1) / NR; nb++) {
      const int n0 = nb * NR, nr = std::min(NR, N - n0);
      const int64_t ldw = in_registers ? 16 : K;
      if (!in_registers)
        for (int j = 0; j < nr; j++) widen_run(w.data() + (int64_t)j * K, B + (int64_t)(n0 + j) * K, K, kind);
      __m512 acc[NR][MR];
      for (int j = 0; j < NR; j++)
        for (int m = 0; m < MR; m++) acc[j][m] = _mm512_setzero_ps();
      for (int k = 0; k <= K16; k += 16) {
        const __mmask16 mk = k < K16 ? (__mmask16)0xffff : tail;
        if (!mk) break;
        __m512 a[MR];
        for (int m = 0; m < MR; m++) a[m] = _mm512_maskz_loadu_ps(mk, A + (int64_t)m * K + k);
        for (int j = 0; j < NR; j++) {
          __m512 wj;
          if (!in_registers) {
            wj = _mm512_maskz_loadu_ps(mk, w.data() + (int64_t)j * K + k);
          } else if (k < K16) {
            const __m256i h = _mm256_loadu_si256((const __m256i*)(B + (int64_t)(n0 + std::min(j, nr - 1)) * K + k));
            wj = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
          } else {
            widen_run(w.data() + j * ldw, B + (int64_t)(n0 + std::min(j, nr - 1)) * K + k, K - k, kind);
            wj = _mm512_maskz_loadu_ps(mk, w.data() + j * ldw);
          }
          for (int m = 0; m < MR; m++) acc[j][m] = _mm512_fmadd_ps(a[m], wj, acc[j][m]);
        }
      }
      for (int j = 0; j < nr; j++)
        for (int m = 0; m < MR; m++) {
          float* c = C + (int64_t)m * N + n0 + j;
          const float s = alpha * _mm512_reduce_add_ps(acc[j][m]);
          *c = beta == 0.f ? s : s + beta * *c;
        }
    }
  }
}

template <int MR>
void few_rows_half_bt(int N, int K, float alpha, const float* A, const uint16_t* B, int kind, float beta, float* C) {
  constexpr int NR = MR == 1 ? 4 : MR == 2 ? 2 : 1;
  few_rows_half_bt<MR, NR>(N, K, alpha, A, B, kind, beta, C);
}
}  // namespace
#endif

void gemm_half_b(bool ta, bool tb, int M, int N, int K, float alpha, const float* A, const uint16_t* B, int kind,
                 float beta, float* C) {
  if (M == 0 || N == 0) return;
  if (K == 0) {  // sgemm rejects a leading dimension of 0; the product is empty, C = beta·C
    for (int64_t i = 0; i < (int64_t)M * N; i++) C[i] = beta == 0.f ? 0.f : beta * C[i];
    return;
  }
#if defined(__AVX512F__)
  // A few rows times a transposed B (the decoder's products): B's rows one by one, no sgemm on a widened block.
  if (!ta && tb && M <= 8 && !omp_in_parallel()) {
    using Fn = void (*)(int, int, float, const float*, const uint16_t*, int, float, float*);
    static const Fn kFew[9] = {nullptr, few_rows_half_bt<1>, few_rows_half_bt<2>, few_rows_half_bt<3>, few_rows_half_bt<4>,
                               few_rows_half_bt<5>, few_rows_half_bt<6>, few_rows_half_bt<7>, few_rows_half_bt<8>};
    kFew[M](N, K, alpha, A, B, kind, beta, C);
    return;
  }
#endif
  const int nth = omp_in_parallel() ? 1 : omp_get_max_threads();
  int nb = 256;
  while (nb > 64 && (N + nb - 1) / nb < 4 * nth) nb /= 2;
  const int nblk = (N + nb - 1) / nb;
  const bool by_blocks = nth > 1 && nblk >= 2 * nth;
  static thread_local std::vector<float> scratch;
  auto block = [&](int b, bool parallel_widen) {
    const int n0 = b * nb, w = std::min(nb, N - n0);
    if (scratch.size() < (size_t)w * K) scratch.resize((size_t)w * K);
    widen_columns(scratch.data(), B, tb, N, K, n0, w, kind, parallel_widen);
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M, w, K, alpha, A,
                ta ? M : K, scratch.data(), tb ? K : w, beta, C + n0, N);
  };
  if (by_blocks) {
#pragma omp parallel for schedule(dynamic, 1)
    for (int b = 0; b < nblk; b++) block(b, false);
  } else {
    for (int b = 0; b < nblk; b++) block(b, nth > 1);
  }
}

// Both packings (AMX tiles, float32 panels) lay op(B) out in blocks of 32 columns, each block's words contiguous
// and in column order, so a block of columns starting at a multiple of 32 packs on its own at offset
// gemm_pack_size(n0, K).
bool gemm_pack_b_half(bool tb, int N, int K, const uint16_t* B, int kind, uint16_t* packed) {
  if (gemm_pack_size(N, K) == 0) return false;
  static float dummy = 0.f;
  if (N == 0 || K == 0) return gemm_pack_b(tb, N, K, &dummy, packed);
  constexpr int kCols = 256;  // a multiple of 32
  std::vector<float> buf((size_t)std::min(N, kCols) * K);
  for (int n0 = 0; n0 < N; n0 += kCols) {
    const int w = std::min(kCols, N - n0);
    widen_columns(buf.data(), B, tb, N, K, n0, w, kind, !omp_in_parallel());
    if (!gemm_pack_b(tb, w, K, buf.data(), packed + gemm_pack_size(n0, K))) return false;
  }
  return true;
}

}  // namespace uf
