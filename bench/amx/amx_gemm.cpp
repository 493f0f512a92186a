// Prototype: fp32-accurate GEMM on AMX-BF16 via a 3-way bf16 split (x = hi + mid + lo), six bf16 products
// (hi·hi, hi·mid, mid·hi, hi·lo, lo·hi, mid·mid) accumulated in fp32 AMX tiles (TDPBF16PS).
// Also a cheaper 2-way split / 3-product variant (hi·hi, hi·mid, mid·hi) for accuracy comparison.
//
//   C = alpha·op(A)·op(B) + beta·C, row-major, op = transpose or not, any M, N, K, OpenMP (2 threads).
//
// Standalone prototype with benchmark and accuracy drivers; the kernel now runs in the addon as native/amx_gemm.cc.
// Build (see Makefile in this folder):
//   g++ -O3 -march=native -mamx-tile -mamx-bf16 -mavx512f -mavx512bf16 -fopenmp -std=c++17 \
//       -I/usr/include/x86_64-linux-gnu/openblas-openmp bench/amx/amx_gemm.cpp -o /tmp/amx_gemm \
//       -L/usr/lib/x86_64-linux-gnu/openblas-openmp -Wl,-rpath,/usr/lib/x86_64-linux-gnu/openblas-openmp -lopenblas
// Run:
//   /tmp/amx_gemm test            # correctness on odd shapes, all transposes, alpha/beta
//   /tmp/amx_gemm acc             # accuracy table vs float64 reference
//   env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE /tmp/amx_gemm bench   # speed table vs cblas_sgemm
#include <immintrin.h>
#include <omp.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <sys/mman.h>
#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#define ARCH_REQ_XCOMP_PERM 0x1023
#define XFEATURE_XTILEDATA 18

// ------------------------------------------------------------------------------------------------
// AMX per-thread setup
struct TileCfg {
  uint8_t palette, start_row, res[14];
  uint16_t colsb[16];
  uint8_t rows[16];
} __attribute__((packed));

static thread_local bool amx_perm_ok = false;
static bool amx_thread_init() {
  if (!amx_perm_ok) {
    if (syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)) return false;
    amx_perm_ok = true;
  }
  TileCfg c;
  memset(&c, 0, sizeof c);
  c.palette = 1;
  for (int i = 0; i < 8; i++) c.colsb[i] = 64, c.rows[i] = 16;  // all tiles 16 rows x 64 bytes
  _tile_loadconfig(&c);
  return true;
}

// ------------------------------------------------------------------------------------------------
// Splitting helpers. bfround: round-to-nearest-even to bf16, result kept as fp32 (low 16 bits zero).
static inline __m512 bfround(__m512 x) {
  __m512i u = _mm512_castps_si512(x);
  __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
  u = _mm512_add_epi32(u, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7fff)));
  return _mm512_castsi512_ps(_mm512_and_si512(u, _mm512_set1_epi32((int)0xffff0000u)));
}
// x -> P pieces (fp32 values exactly representable in bf16). P = 3: hi, mid, lo; P = 2: hi, mid.
template <int P>
static inline void split(__m512 x, __m512* out) {
  __m512 h = bfround(x);
  out[0] = h;
  __m512 r = _mm512_sub_ps(x, h);  // exact
  __m512 m = bfround(r);
  out[1] = m;
  if (P == 3) out[2] = bfround(_mm512_sub_ps(r, m));
}
// 32 contiguous values (two vectors) -> 16 dwords = 32 bf16 in order
static inline __m512i pack_contig(__m512 lo16, __m512 hi16) {
  const __m512i idx = _mm512_set_epi16(63, 61, 59, 57, 55, 53, 51, 49, 47, 45, 43, 41, 39, 37, 35, 33, 31, 29, 27, 25,
                                       23, 21, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1);
  return _mm512_permutex2var_epi16(_mm512_castps_si512(lo16), idx, _mm512_castps_si512(hi16));
}
// two rows (k even, k odd) of 16 values -> 16 dwords, each (bf16 even | bf16 odd << 16): the VNNI pair
static inline __m512i pack_pair(__m512 even, __m512 odd) {
  return _mm512_or_si512(_mm512_castps_si512(odd), _mm512_srli_epi32(_mm512_castps_si512(even), 16));
}
// in-register 16x16 dword transpose
static inline void transpose16(__m512i* r) {
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
static inline __mmask16 mask_n(int n) { return n >= 16 ? (__mmask16)0xffff : n <= 0 ? (__mmask16)0 : (__mmask16)((1u << n) - 1); }

// ------------------------------------------------------------------------------------------------
// Packed layouts (uint16 bf16 words, every tile = 16 rows x 32 words = 1 KiB, contiguous):
//   A: tile (ib, kt, p) at ((ib*Kt + kt)*P + p)*512: rows = 16 rows of op(A), 32 consecutive k
//   B: tile (jb, kt, p) at ((jb*Kt + kt)*P + p)*512: row r = k pair (2r, 2r+1), 16 columns x 2 (VNNI)
// Padding (rows >= M, cols >= N, k >= K) is zero.
struct Dims {
  int M, N, K, Mt, Nt, Kt;  // Mt, Nt: number of 16-blocks (rounded up to even), Kt: number of 32-blocks
};
static Dims dims_of(int M, int N, int K) {
  Dims d{M, N, K, 0, 0, 0};
  d.Mt = ((M + 31) / 32) * 2;
  d.Nt = ((N + 31) / 32) * 2;
  d.Kt = (K + 31) / 32;
  return d;
}

// One (16 x 32) A block for rows ib*16.., k = kt*32.. -> P tiles.
template <int P>
static void pack_A_tile(bool ta, const float* A, int lda, const Dims& d, int ib, int kt, uint16_t* out) {
  __m512i rows[P][16];
  int i0 = ib * 16, k0 = kt * 32;
  if (!ta) {  // A[M][lda]: row i has k contiguous
    __mmask16 m0 = mask_n(d.K - k0), m1 = mask_n(d.K - k0 - 16);
    for (int r = 0; r < 16; r++) {
      int i = i0 + r;
      __m512 x0 = _mm512_setzero_ps(), x1 = _mm512_setzero_ps();
      if (i < d.M) {
        x0 = _mm512_maskz_loadu_ps(m0, A + (size_t)i * lda + k0);
        x1 = _mm512_maskz_loadu_ps(m1, A + (size_t)i * lda + k0 + 16);
      }
      __m512 s0[3], s1[3];
      split<P>(x0, s0);
      split<P>(x1, s1);
      for (int p = 0; p < P; p++) rows[p][r] = pack_contig(s0[p], s1[p]);
    }
  } else {  // A stored [K][lda], op(A)[i][k] = A[k*lda + i]: pair rows k, k+1, then transpose
    __mmask16 mi = mask_n(d.M - i0);
    for (int kp = 0; kp < 16; kp++) {
      int ka = k0 + 2 * kp, kb = ka + 1;
      __m512 xe = ka < d.K ? _mm512_maskz_loadu_ps(mi, A + (size_t)ka * lda + i0) : _mm512_setzero_ps();
      __m512 xo = kb < d.K ? _mm512_maskz_loadu_ps(mi, A + (size_t)kb * lda + i0) : _mm512_setzero_ps();
      __m512 se[3], so[3];
      split<P>(xe, se);
      split<P>(xo, so);
      for (int p = 0; p < P; p++) rows[p][kp] = pack_pair(se[p], so[p]);
    }
    for (int p = 0; p < P; p++) transpose16(rows[p]);
  }
  for (int p = 0; p < P; p++)
    for (int r = 0; r < 16; r++) _mm512_store_si512((void*)(out + p * 512 + r * 32), rows[p][r]);
}

// One (32 k x 16 n) B block -> P VNNI tiles.
template <int P>
static void pack_B_tile(bool tb, const float* B, int ldb, const Dims& d, int jb, int kt, uint16_t* out) {
  __m512i rows[P][16];
  int j0 = jb * 16, k0 = kt * 32;
  if (!tb) {  // B[K][ldb]: pair rows k, k+1 directly give VNNI rows
    __mmask16 mj = mask_n(d.N - j0);
    for (int kp = 0; kp < 16; kp++) {
      int ka = k0 + 2 * kp, kb = ka + 1;
      __m512 xe = ka < d.K ? _mm512_maskz_loadu_ps(mj, B + (size_t)ka * ldb + j0) : _mm512_setzero_ps();
      __m512 xo = kb < d.K ? _mm512_maskz_loadu_ps(mj, B + (size_t)kb * ldb + j0) : _mm512_setzero_ps();
      __m512 se[3], so[3];
      split<P>(xe, se);
      split<P>(xo, so);
      for (int p = 0; p < P; p++) rows[p][kp] = pack_pair(se[p], so[p]);
    }
  } else {  // B stored [N][ldb], op(B)[k][n] = B[n*ldb + k]: column n has k contiguous, then transpose
    __mmask16 m0 = mask_n(d.K - k0), m1 = mask_n(d.K - k0 - 16);
    for (int c = 0; c < 16; c++) {
      int j = j0 + c;
      __m512 x0 = _mm512_setzero_ps(), x1 = _mm512_setzero_ps();
      if (j < d.N) {
        x0 = _mm512_maskz_loadu_ps(m0, B + (size_t)j * ldb + k0);
        x1 = _mm512_maskz_loadu_ps(m1, B + (size_t)j * ldb + k0 + 16);
      }
      __m512 s0[3], s1[3];
      split<P>(x0, s0);
      split<P>(x1, s1);
      for (int p = 0; p < P; p++) rows[p][c] = pack_contig(s0[p], s1[p]);
    }
    for (int p = 0; p < P; p++) transpose16(rows[p]);
  }
  for (int p = 0; p < P; p++)
    for (int r = 0; r < 16; r++) _mm512_store_si512((void*)(out + p * 512 + r * 32), rows[p][r]);
}

// ------------------------------------------------------------------------------------------------
// Micro-kernel: a 32x32 block of C = 2x2 accumulator tiles (0..3), operand tiles 4,5 (A) and 6,7 (B).
#define DP4()                  \
  _tile_dpbf16ps(0, 4, 6);     \
  _tile_dpbf16ps(1, 4, 7);     \
  _tile_dpbf16ps(2, 5, 6);     \
  _tile_dpbf16ps(3, 5, 7)

template <int P>
static inline void kernel_32x32(const uint16_t* a0, const uint16_t* a1, const uint16_t* b0, const uint16_t* b1, int Kt,
                                float* c, int ldc, bool load_c) {  // c: 32x32 block (cbuf or C itself)
  if (load_c) {  // accumulate onto C (alpha = 1, beta = 1 or a later k chunk)
    _tile_loadd(0, c, ldc * 4);
    _tile_loadd(1, c + 16, ldc * 4);
    _tile_loadd(2, c + (size_t)16 * ldc, ldc * 4);
    _tile_loadd(3, c + (size_t)16 * ldc + 16, ldc * 4);
  } else {
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
  }
  const int S = P * 512;  // words per kt step
  for (int kt = 0; kt < Kt; kt++, a0 += S, a1 += S, b0 += S, b1 += S) {
    if (P == 3) {  // 14 tile loads for 24 TDPBF16PS; small products first
      _tile_loadd(4, a0, 64);            // A hi
      _tile_loadd(5, a1, 64);
      _tile_loadd(6, b0 + 1024, 64);     // B lo
      _tile_loadd(7, b1 + 1024, 64);
      DP4();                             // hi*lo
      _tile_loadd(6, b0 + 512, 64);      // B mid
      _tile_loadd(7, b1 + 512, 64);
      DP4();                             // hi*mid
      _tile_loadd(4, a0 + 512, 64);      // A mid
      _tile_loadd(5, a1 + 512, 64);
      DP4();                             // mid*mid
      _tile_loadd(6, b0, 64);            // B hi
      _tile_loadd(7, b1, 64);
      DP4();                             // mid*hi
      _tile_loadd(4, a0 + 1024, 64);     // A lo
      _tile_loadd(5, a1 + 1024, 64);
      DP4();                             // lo*hi
      _tile_loadd(4, a0, 64);            // A hi
      _tile_loadd(5, a1, 64);
      DP4();                             // hi*hi
    } else {  // P == 2: hi*mid, hi*hi, mid*hi
      _tile_loadd(4, a0, 64);
      _tile_loadd(5, a1, 64);
      _tile_loadd(6, b0 + 512, 64);
      _tile_loadd(7, b1 + 512, 64);
      DP4();
      _tile_loadd(6, b0, 64);
      _tile_loadd(7, b1, 64);
      DP4();
      _tile_loadd(4, a0 + 512, 64);
      _tile_loadd(5, a1 + 512, 64);
      DP4();
    }
  }
  _tile_stored(0, c, ldc * 4);
  _tile_stored(1, c + 16, ldc * 4);
  _tile_stored(2, c + (size_t)16 * ldc, ldc * 4);
  _tile_stored(3, c + (size_t)16 * ldc + 16, ldc * 4);
}

static inline void writeback(const float* cbuf, float alpha, float beta, float* C, int ldc, const Dims& d, int i0, int j0) {
  int mr = std::min(32, d.M - i0);
  __mmask16 m0 = mask_n(d.N - j0), m1 = mask_n(d.N - j0 - 16);
  __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
  for (int r = 0; r < mr; r++) {
    float* c = C + (size_t)(i0 + r) * ldc + j0;
    __m512 x0 = _mm512_mul_ps(va, _mm512_load_ps(cbuf + r * 32)), x1 = _mm512_mul_ps(va, _mm512_load_ps(cbuf + r * 32 + 16));
    if (beta != 0.f) {
      x0 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m0, c), x0);
      x1 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m1, c + 16), x1);
    }
    _mm512_mask_storeu_ps(c, m0, x0);
    _mm512_mask_storeu_ps(c + 16, m1, x1);
  }
}

// ------------------------------------------------------------------------------------------------
// Workspace (grown on demand, reused across calls; not thread-safe across concurrent gemm calls).
// 2 MiB-aligned + MADV_HUGEPAGE so that packed panels sit on huge pages (THP is "madvise" here).
static uint16_t* grow(uint16_t*& p, size_t& cap, size_t n) {
  if (n > cap) {
    free(p);
    size_t bytes = ((n * 2 + (2u << 20) - 1) >> 21) << 21;
    p = (uint16_t*)aligned_alloc(2u << 20, bytes);
    madvise(p, bytes, MADV_HUGEPAGE);
    cap = bytes / 2;
  }
  return p;
}
static uint16_t *g_pa = nullptr, *g_pb = nullptr;
static size_t g_pa_n = 0, g_pb_n = 0;
static uint16_t* g_pa_local[64];
static size_t g_pa_local_n[64];

// Blocking parameters (env-tunable for experiments): k-chunk in 32-wide k tiles, A chunk and B chunk bytes.
static int g_kct = 16;                // k chunk = 512
static int g_mc_bytes = 512 * 1024;   // packed A chunk per thread (L2)
static int g_nc_bytes = 1024 * 1024;  // packed B chunk swept per A row pair (L2)
static bool g_profile = false;        // AMX_PROFILE=1: per-thread phase times of amx_gemm (test use only)
static bool g_direct = true;          // alpha == 1, beta == 0, full block: tile store straight into C

// Per thread (inside a parallel region). B is packed in full (pb). A is either packed in full (pa_full != null,
// "excluding packing" timing) or packed here chunk by chunk into a thread-local L2-sized buffer (fused).
template <int P>
static void compute_thread(bool ta, const float* A, int lda, const Dims& d, const uint16_t* pa_full, const uint16_t* pb,
                           float alpha, float beta, float* C, int ldc, int tid, int nth) {
  int nIp = d.Mt / 2, nJp = d.Nt / 2;
  int ip0 = 0, ip1 = nIp, jp0 = 0, jp1 = nJp;
  if (nIp >= 4 * nth || nIp >= nJp) {  // split M (pairs of 16-row blocks)
    ip0 = (int)((int64_t)nIp * tid / nth);
    ip1 = (int)((int64_t)nIp * (tid + 1) / nth);
  } else {                              // split N; each thread packs the (small) A itself
    jp0 = (int)((int64_t)nJp * tid / nth);
    jp1 = (int)((int64_t)nJp * (tid + 1) / nth);
  }
  const size_t T = P * 512;              // words per tile group (one kt, P pieces)
  const size_t fullS = (size_t)d.Kt * T;  // words per full-K 16-panel
  int kct = std::min(d.Kt, g_kct);
  int mcp = std::max(1, (int)(g_mc_bytes / (2 * kct * T * 2)));  // row pairs per A chunk
  int ncp = std::max(1, (int)(g_nc_bytes / (2 * kct * T * 2)));  // col pairs per B chunk
  uint16_t* loc = nullptr;
  if (!pa_full) loc = grow(g_pa_local[tid], g_pa_local_n[tid], (size_t)mcp * 2 * kct * T);
  alignas(64) float cbuf[32 * 32];
  for (int kt0 = 0; kt0 < d.Kt; kt0 += kct) {
    int nk = std::min(kct, d.Kt - kt0);
    float beta_eff = kt0 == 0 ? beta : 1.f;
    for (int ic = ip0; ic < ip1; ic += mcp) {
      int ice = std::min(ip1, ic + mcp);
      const uint16_t* pa;
      size_t aS;  // words between consecutive 16-row panels
      if (pa_full) {
        pa = pa_full + (size_t)(2 * ic) * fullS + kt0 * T;
        aS = fullS;
      } else {
        for (int ib = 2 * ic; ib < 2 * ice; ib++)
          for (int k = 0; k < nk; k++) pack_A_tile<P>(ta, A, lda, d, ib, kt0 + k, loc + ((size_t)(ib - 2 * ic) * nk + k) * T);
        pa = loc;
        aS = (size_t)nk * T;
      }
      for (int jc = jp0; jc < jp1; jc += ncp) {
        int jce = std::min(jp1, jc + ncp);
        for (int ip = ic; ip < ice; ip++) {
          const uint16_t* a0 = pa + (size_t)(2 * (ip - ic)) * aS;
          for (int jp = jc; jp < jce; jp++) {
            const uint16_t* b0 = pb + (size_t)(2 * jp) * fullS + kt0 * T;
            bool full = ip * 32 + 32 <= d.M && jp * 32 + 32 <= d.N;
            // alpha = 1, beta = 0 (first k chunk), full block: store the tiles straight into C. Accumulating onto C
            // (loading C into the tiles) would also work but lengthens the serial fp32 sum: measured 2x worse max
            // error at K = 4096, so later k chunks / beta != 0 go through cbuf and add the chunk's partial sum.
            if (g_direct && full && alpha == 1.f && beta_eff == 0.f) {
              kernel_32x32<P>(a0, a0 + aS, b0, b0 + fullS, nk, C + (size_t)ip * 32 * ldc + jp * 32, ldc, false);
            } else {
              kernel_32x32<P>(a0, a0 + aS, b0, b0 + fullS, nk, cbuf, 32, false);
              writeback(cbuf, alpha, beta_eff, C, ldc, d, ip * 32, jp * 32);
            }
          }
        }
      }
    }
  }
}

template <int P>
static void pack_B_all(bool tb, const Dims& d, const float* B, int ldb, uint16_t* pb) {
#pragma omp for schedule(static) nowait
  for (int t = 0; t < d.Nt * d.Kt; t++) pack_B_tile<P>(tb, B, ldb, d, t / d.Kt, t % d.Kt, pb + (size_t)t * P * 512);
}
template <int P>
static void pack_A_all(bool ta, const Dims& d, const float* A, int lda, uint16_t* pa) {
#pragma omp for schedule(static) nowait
  for (int t = 0; t < d.Mt * d.Kt; t++) pack_A_tile<P>(ta, A, lda, d, t / d.Kt, t % d.Kt, pa + (size_t)t * P * 512);
}

static void scale_only(int M, int N, float beta, float* C, int ldc) {
  for (int i = 0; i < M; i++)
    for (int j = 0; j < N; j++) C[(size_t)i * ldc + j] = beta == 0.f ? 0.f : beta * C[(size_t)i * ldc + j];
}

// Public entry, same argument convention as the project's gemm(): row-major, lda = ta ? M : K, ldb = tb ? K : N, ldc = N.
template <int P>
void amx_gemm(bool ta, bool tb, int M, int N, int K, float alpha, const float* A, const float* B, float beta, float* C) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0 || alpha == 0.f) { scale_only(M, N, beta, C, N); return; }
  Dims d = dims_of(M, N, K);
  uint16_t* pb = grow(g_pb, g_pb_n, (size_t)d.Nt * d.Kt * P * 512);
  int lda = ta ? M : K, ldb = tb ? K : N;
#pragma omp parallel
  {
    double t0 = omp_get_wtime();
    pack_B_all<P>(tb, d, B, ldb, pb);
    if (!amx_thread_init()) abort();
    double t1 = omp_get_wtime();
#pragma omp barrier
    double t2 = omp_get_wtime();
    compute_thread<P>(ta, A, lda, d, nullptr, pb, alpha, beta, C, N, omp_get_thread_num(), omp_get_num_threads());
    _tile_release();
    double t3 = omp_get_wtime();
    if (g_profile) printf("  [thread %d] pack B %.3f ms, wait %.3f ms, pack A + compute %.3f ms\n", omp_get_thread_num(),
                          (t1 - t0) * 1e3, (t2 - t1) * 1e3, (t3 - t2) * 1e3);
  }
}

// For timing: packing separately (A and B in full), and compute on already-packed operands.
template <int P>
void amx_pack(bool ta, bool tb, int M, int N, int K, const float* A, const float* B) {
  Dims d = dims_of(M, N, K);
  uint16_t* pa = grow(g_pa, g_pa_n, (size_t)d.Mt * d.Kt * P * 512);
  uint16_t* pb = grow(g_pb, g_pb_n, (size_t)d.Nt * d.Kt * P * 512);
#pragma omp parallel
  {
    pack_A_all<P>(ta, d, A, ta ? M : K, pa);
    pack_B_all<P>(tb, d, B, tb ? K : N, pb);
  }
}
template <int P>
void amx_compute_packed(int M, int N, int K, float alpha, float beta, float* C) {
  Dims d = dims_of(M, N, K);
#pragma omp parallel
  {
    if (!amx_thread_init()) abort();
    compute_thread<P>(false, nullptr, 0, d, g_pa, g_pb, alpha, beta, C, N, omp_get_thread_num(), omp_get_num_threads());
    _tile_release();
  }
}

// ------------------------------------------------------------------------------------------------
// Driver
static void sgemm(bool ta, bool tb, int M, int N, int K, float alpha, const float* A, const float* B, float beta, float* C) {
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M, N, K, alpha, A, ta ? M : K,
              B, tb ? K : N, beta, C, N);
}

// float64 reference and the error scale |alpha|·Σ|a||b| + |beta·C0|
static void reference(bool ta, bool tb, int M, int N, int K, float alpha, const float* A, const float* B, float beta,
                      const float* C0, std::vector<double>& ref, std::vector<double>& scale) {
  ref.assign((size_t)M * N, 0.0);
  scale.assign((size_t)M * N, 0.0);
  std::vector<double> opA((size_t)M * K), opB((size_t)K * N);  // opB stored transposed: [N][K]
  for (int i = 0; i < M; i++)
    for (int k = 0; k < K; k++) opA[(size_t)i * K + k] = ta ? A[(size_t)k * M + i] : A[(size_t)i * K + k];
  for (int k = 0; k < K; k++)
    for (int j = 0; j < N; j++) opB[(size_t)j * K + k] = tb ? B[(size_t)j * K + k] : B[(size_t)k * N + j];
#pragma omp parallel for schedule(dynamic, 4)
  for (int i = 0; i < M; i++)
    for (int j = 0; j < N; j++) {
      const double* a = &opA[(size_t)i * K];
      const double* b = &opB[(size_t)j * K];
      double s = 0, sa = 0;
      for (int k = 0; k < K; k++) s += a[k] * b[k], sa += std::fabs(a[k] * b[k]);
      double c0 = beta != 0.f ? (double)C0[(size_t)i * N + j] : 0.0;
      ref[(size_t)i * N + j] = (double)alpha * s + (double)beta * c0;
      scale[(size_t)i * N + j] = std::fabs((double)alpha) * sa + std::fabs((double)beta * c0);
    }
}
struct Err { double max_rel, mean_rel; };
static Err error_of(const std::vector<float>& C, const std::vector<double>& ref, const std::vector<double>& scale) {
  double mx = 0, sum = 0;
  for (size_t i = 0; i < C.size(); i++) {
    double e = scale[i] > 0 ? std::fabs((double)C[i] - ref[i]) / scale[i] : std::fabs((double)C[i] - ref[i]);
    if (!(e == e)) e = INFINITY;
    mx = std::max(mx, e);
    sum += e;
  }
  return {mx, sum / C.size()};
}

static void fill(std::vector<float>& v, int mode, std::mt19937& g) {
  std::normal_distribution<float> nd(0.f, 1.f);
  std::uniform_real_distribution<float> ud(-4.f, 4.f);
  for (auto& x : v) {
    x = nd(g);
    if (mode == 1) x *= std::pow(10.f, ud(g));  // magnitudes spanning 1e-4 .. 1e4
  }
}

static int run_test() {
  std::mt19937 g(1);
  int shapes[][3] = {{1, 1, 1}, {37, 53, 71}, {16, 16, 32}, {33, 17, 65}, {100, 200, 300}, {64, 768, 256}, {5, 300, 1000}, {96, 64, 1100}};
  bool ok = true;
  for (auto& s : shapes)
    for (int tr = 0; tr < 4; tr++) {
      bool ta = tr & 1, tb = tr & 2;
      int M = s[0], N = s[1], K = s[2];
      std::vector<float> A((size_t)M * K), B((size_t)K * N), C0((size_t)M * N);
      fill(A, 0, g), fill(B, 0, g), fill(C0, 0, g);
      float alpha = (tr == 1 || tr == 2) ? 1.f : 0.7f, beta = tr == 0 ? 0.3f : tr == 1 ? 1.f : 0.f;
      std::vector<double> ref, scale;
      reference(ta, tb, M, N, K, alpha, A.data(), B.data(), beta, C0.data(), ref, scale);
      std::vector<float> Cs = C0, C6 = C0, C3 = C0;
      if (beta == 0.f) std::fill(C6.begin(), C6.end(), NAN), std::fill(C3.begin(), C3.end(), NAN);  // beta = 0 must not read C
      sgemm(ta, tb, M, N, K, alpha, A.data(), B.data(), beta, Cs.data());
      amx_gemm<3>(ta, tb, M, N, K, alpha, A.data(), B.data(), beta, C6.data());
      amx_gemm<2>(ta, tb, M, N, K, alpha, A.data(), B.data(), beta, C3.data());
      Err es = error_of(Cs, ref, scale), e6 = error_of(C6, ref, scale), e3 = error_of(C3, ref, scale);
      bool pass = e6.max_rel <= std::max(2.5 * es.max_rel, 1e-7) && e3.max_rel < 1e-4;
      ok &= pass;
      printf("%-4s M=%4d N=%4d K=%4d ta=%d tb=%d  max rel err: sgemm %.2e  amx6 %.2e  amx3 %.2e\n", pass ? "ok" : "FAIL", M,
             N, K, ta, tb, es.max_rel, e6.max_rel, e3.max_rel);
    }
  printf(ok ? "ALL OK\n" : "SOME FAILED\n");
  return ok ? 0 : 1;
}

static void run_acc() {
  std::mt19937 g(2);
  int shapes[][3] = {{512, 512, 256}, {256, 256, 1024}, {4096, 768, 256}, {4096, 256, 1024}, {512, 512, 4096}};
  printf("| dist | M | N | K | trans | sgemm max | 6-prod max | 3-prod max | sgemm mean | 6-prod mean | 3-prod mean |\n");
  printf("|---|---|---|---|---|---|---|---|---|---|---|\n");
  for (int mode = 0; mode < 2; mode++)
    for (auto& s : shapes)
      for (int tr = 0; tr < 2; tr++) {
        bool ta = false, tb = tr == 1;
        int M = s[0], N = s[1], K = s[2];
        std::vector<float> A((size_t)M * K), B((size_t)K * N);
        fill(A, mode, g), fill(B, mode, g);
        std::vector<double> ref, scale;
        reference(ta, tb, M, N, K, 1.f, A.data(), B.data(), 0.f, nullptr, ref, scale);
        std::vector<float> Cs((size_t)M * N), C6((size_t)M * N), C3((size_t)M * N);
        sgemm(ta, tb, M, N, K, 1.f, A.data(), B.data(), 0.f, Cs.data());
        amx_gemm<3>(ta, tb, M, N, K, 1.f, A.data(), B.data(), 0.f, C6.data());
        amx_gemm<2>(ta, tb, M, N, K, 1.f, A.data(), B.data(), 0.f, C3.data());
        Err es = error_of(Cs, ref, scale), e6 = error_of(C6, ref, scale), e3 = error_of(C3, ref, scale);
        printf("| %s | %d | %d | %d | %s | %.2e | %.2e | %.2e | %.2e | %.2e | %.2e |\n", mode ? "mixed 1e±4" : "normal", M, N,
               K, tb ? "N,T" : "N,N", es.max_rel, e6.max_rel, e3.max_rel, es.mean_rel, e6.mean_rel, e3.mean_rel);
        fflush(stdout);
      }
}

template <typename F>
static double time_batch(F f, double min_s) {  // seconds per call, one batch
  int n = 0;
  double t0 = omp_get_wtime(), t;
  do { f(); n++; t = omp_get_wtime() - t0; } while (t < min_s);
  return t / n;
}

static void run_bench(int rounds, double min_s) {
  struct S { int M, N, K; bool ta, tb; } shapes[] = {
      {4096, 768, 256, 0, 0},  {4096, 256, 256, 0, 0}, {4096, 1024, 256, 0, 0}, {4096, 256, 1024, 0, 0},
      {3584, 768, 256, 0, 0},  {4096, 4096, 128, 0, 0}, {4096, 4096, 128, 0, 1}, {1024, 1024, 1024, 0, 0},
      {64, 768, 256, 0, 0},    {64, 1024, 256, 0, 0},
      // backward-pass forms used by the project (dX = dY·W^T: N,T; dW = X^T·dY: T,N)
      {4096, 256, 768, 0, 1},  {256, 768, 4096, 1, 0}};
  printf("threads=%d rounds=%d (each round: batch of calls >= %.2fs; median over rounds, best in parentheses)\n",
         omp_get_max_threads(), rounds, min_s);
  printf("| M | N | K | op | sgemm GFLOP/s | AMX 6-prod incl. pack | AMX 6-prod excl. pack | pack ms | speedup incl. | speedup excl. |\n");
  printf("|---|---|---|---|---|---|---|---|---|---|\n");
  std::mt19937 g(3);
  const char* only = getenv("AMX_ONLY");  // e.g. "0,5,11": run only these rows
  int idx = -1;
  for (auto& s : shapes) {
    idx++;
    if (only && !strstr((std::string(",") + only + ",").c_str(), (std::string(",") + std::to_string(idx) + ",").c_str())) continue;
    int M = s.M, N = s.N, K = s.K;
    std::vector<float> A((size_t)M * K), B((size_t)K * N), C((size_t)M * N, 0.f);
    fill(A, 0, g), fill(B, 0, g);
    double fl = 2.0 * M * N * K;
    auto f_s = [&] { sgemm(s.ta, s.tb, M, N, K, 1.f, A.data(), B.data(), 0.f, C.data()); };
    auto f_a = [&] { amx_gemm<3>(s.ta, s.tb, M, N, K, 1.f, A.data(), B.data(), 0.f, C.data()); };
    auto f_p = [&] { amx_pack<3>(s.ta, s.tb, M, N, K, A.data(), B.data()); };
    auto f_c = [&] { amx_compute_packed<3>(M, N, K, 1.f, 0.f, C.data()); };
    f_s(), f_a(), f_p(), f_c();  // warm-up
    std::vector<double> ts, ta, tp, tc;
    for (int r = 0; r < rounds; r++) {
      ts.push_back(time_batch(f_s, min_s));
      ta.push_back(time_batch(f_a, min_s));
      tp.push_back(time_batch(f_p, min_s / 2));
      f_p();  // make sure the packed buffers hold this shape
      tc.push_back(time_batch(f_c, min_s));
    }
    auto med = [](std::vector<double> v) { std::sort(v.begin(), v.end()); return v[v.size() / 2]; };
    auto best = [](const std::vector<double>& v) { return *std::min_element(v.begin(), v.end()); };
    double s_m = med(ts), a_m = med(ta), c_m = med(tc), p_m = med(tp);
    printf("| %d | %d | %d | %s | %.0f (%.0f) | %.0f (%.0f) | %.0f (%.0f) | %.3f | %.2fx | %.2fx |\n", M, N, K,
           s.ta ? (s.tb ? "T,T" : "T,N") : (s.tb ? "N,T" : "N,N"), fl / s_m / 1e9, fl / best(ts) / 1e9, fl / a_m / 1e9,
           fl / best(ta) / 1e9, fl / c_m / 1e9, fl / best(tc) / 1e9, p_m * 1e3, s_m / a_m, s_m / c_m);
    fflush(stdout);
  }
}

int main(int argc, char** argv) {
  std::string mode = argc > 1 ? argv[1] : "test";
  if (getenv("AMX_MC_KB")) g_mc_bytes = atoi(getenv("AMX_MC_KB")) * 1024;
  if (getenv("AMX_NC_KB")) g_nc_bytes = atoi(getenv("AMX_NC_KB")) * 1024;
  if (getenv("AMX_PROFILE")) g_profile = atoi(getenv("AMX_PROFILE"));
  if (getenv("AMX_DIRECT")) g_direct = atoi(getenv("AMX_DIRECT"));
  if (getenv("AMX_KCT")) g_kct = atoi(getenv("AMX_KCT"));
  if (mode == "test") return run_test();
  if (mode == "acc") { run_acc(); return 0; }
  if (mode == "bench") {
    int rounds = argc > 2 ? atoi(argv[2]) : 7;
    double min_s = argc > 3 ? atof(argv[3]) : 0.15;
    run_bench(rounds, min_s);
    return 0;
  }
  if (mode == "profile" && argc >= 7) {  // profile M N K ta tb: phase times of a few amx_gemm calls
    int M = atoi(argv[2]), N = atoi(argv[3]), K = atoi(argv[4]);
    bool ta = atoi(argv[5]), tb = atoi(argv[6]);
    std::mt19937 g(4);
    std::vector<float> A((size_t)M * K), B((size_t)K * N), C((size_t)M * N);
    fill(A, 0, g), fill(B, 0, g);
    for (int r = 0; r < 4; r++) {
      g_profile = r > 0;
      double t = omp_get_wtime();
      amx_gemm<3>(ta, tb, M, N, K, 1.f, A.data(), B.data(), 0.f, C.data());
      if (r) printf("total %.3f ms\n", (omp_get_wtime() - t) * 1e3);
    }
    return 0;
  }
  fprintf(stderr, "usage: %s test|acc|bench [rounds] [min_seconds_per_batch]\n", argv[0]);
  return 2;
}
