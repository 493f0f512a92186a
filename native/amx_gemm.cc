// fp32-accurate GEMM on AMX-BF16 (Intel Sapphire Rapids and later), behind kernels.cc's gemm().
//
// Each float32 x is split into three bf16 pieces x = hi + mid + lo (exact up to 2^-24 relative; bf16_split.h); C = Σ
// of the six products hi·hi, hi·mid, mid·hi, hi·lo, lo·hi, mid·mid, accumulated in fp32 AMX tiles (TDPBF16PS), which
// keeps its error against a float64 reference at or below cblas_sgemm's (the kernel tests hold it to that).
// Differences from sgemm: denormals are flushed to zero and an ±Inf input gives NaN (either way the result is
// non-finite).
//
// Built only where the compiler targets AMX (-march=native on such a CPU); elsewhere amx_gemm() returns false
// and gemm() uses another engine.
// GCC 12 reports false "(may be) used uninitialized" warnings inside its own AVX-512 intrinsics
// (_mm512_srli_epi32, and the unpacks of transpose16 once inlined here); before any include, since the
// warnings are located in its headers.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#include "amx_gemm.h"
#include "bf16_split.h"
#include "vmath.h"

#if defined(__AMX_TILE__) && defined(__AMX_BF16__) && defined(__AVX512BF16__) && defined(__AVX512BW__)
#include <immintrin.h>
#include <omp.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#define ARCH_REQ_XCOMP_PERM 0x1023
// The side work called between the tile products must be inlined into the kernel loop, which GCC stops doing by
// itself once compute_thread is this large, and a call there holds up the queued tile products.
#define UF_INLINE inline __attribute__((always_inline))
#define XFEATURE_XTILEDATA 18

namespace {

struct TileCfg {
  uint8_t palette, start_row, res[14];
  uint16_t colsb[16];
  uint8_t rows[16];
} __attribute__((packed));

// The kernel asks once per process for permission to use the AMX tile state (Linux ≥ 5.16).
int g_available = -1;  // -1: not asked yet

// All tiles 16 rows x 64 bytes. A constant in memory: built on the stack, GCC dropped the stores the
// LDTILECFG reads once the function was not inlined (only the first 32 bytes were written).
alignas(64) const TileCfg kTileCfg = {1, 0, {0}, {64, 64, 64, 64, 64, 64, 64, 64}, {16, 16, 16, 16, 16, 16, 16, 16}};

void load_tile_config() { _tile_loadconfig(&kTileCfg); }

// 32 contiguous values (two vectors) -> 16 dwords = 32 bf16 in order
inline __m512i pack_contig(__m512 lo16, __m512 hi16) {
  const __m512i idx = _mm512_set_epi16(63, 61, 59, 57, 55, 53, 51, 49, 47, 45, 43, 41, 39, 37, 35, 33, 31, 29, 27, 25,
                                       23, 21, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1);
  return _mm512_permutex2var_epi16(_mm512_castps_si512(lo16), idx, _mm512_castps_si512(hi16));
}
// two rows (k even, k odd) of 16 values -> 16 dwords, each (bf16 even | bf16 odd << 16): the VNNI pair
inline __m512i pack_pair(__m512 even, __m512 odd) {
  return _mm512_or_si512(_mm512_castps_si512(odd), _mm512_srli_epi32(_mm512_castps_si512(even), 16));
}

// ------------------------------------------------------------------------------------------------
// Packed layouts (uint16 bf16 words, every tile = 16 rows x 32 words = 1 KiB, contiguous):
//   A: tile (ib, kt, p) at ((ib*Kt + kt)*P + p)*512: rows = 16 rows of op(A), 32 consecutive k
//   B: tile (jb, kt, p) at ((jb*Kt + kt)*P + p)*512: row r = k pair (2r, 2r+1), 16 columns x 2 (VNNI)
// Padding (rows >= M, cols >= N, k >= K) is zero.
struct Dims {
  int M, N, K, Mt, Nt, Kt;  // Mt, Nt: number of 16-blocks (rounded up to even), Kt: number of 32-blocks
};
Dims dims_of(int M, int N, int K) {
  Dims d{M, N, K, 0, 0, 0};
  d.Mt = ((M + 31) / 32) * 2;
  d.Nt = ((N + 31) / 32) * 2;
  d.Kt = (K + 31) / 32;
  return d;
}

// Both operands are packed from one of two source shapes into 16 rows of 16 dwords (32 bf16) per piece:
//   lines:  16 lines (rows of A, or columns of a transposed B) with k contiguous, 32 consecutive k per line;
//           each dword holds the bf16 of k and k+1 of one line.
//   kpairs: 16 pairs of k rows (A transposed, or B) of 16 consecutive lines; each dword holds the bf16 of
//           k and k+1 of one line (the VNNI pair).
// A tile wants the lines layout, a B (VNNI) tile the kpairs layout; a 16x16 dword transpose turns one into
// the other. Lines ≥ n_lines and k ≥ K are zero.
// One line of the lines layout: k = k0 .. k0+31 of `line` (zero when line ≥ n_lines) → one row per piece.
template <int P>
inline void line_pieces(const float* X, int ld, int line, int n_lines, int K, int k0, __m512i* piece) {
  __m512 x0 = _mm512_setzero_ps(), x1 = _mm512_setzero_ps();
  if (line < n_lines) {
    x0 = _mm512_maskz_loadu_ps(uf::mask_n(K - k0), X + (size_t)line * ld + k0);
    x1 = _mm512_maskz_loadu_ps(uf::mask_n(K - k0 - 16), X + (size_t)line * ld + k0 + 16);
  }
  __m512 s0[3], s1[3];
  uf::split<P>(x0, s0);
  uf::split<P>(x1, s1);
  for (int p = 0; p < P; p++) piece[p] = pack_contig(s0[p], s1[p]);
}
// One k pair of the kpairs layout: rows ka, ka+1 (zero from K on), 16 lines from line0 (lanes outside ml zero).
template <int P>
inline void kpair_pieces(const float* X, int ld, int line0, __mmask16 ml, int K, int ka, __m512i* piece) {
  const int kb = ka + 1;
  const __m512 xe = ka < K ? _mm512_maskz_loadu_ps(ml, X + (size_t)ka * ld + line0) : _mm512_setzero_ps();
  const __m512 xo = kb < K ? _mm512_maskz_loadu_ps(ml, X + (size_t)kb * ld + line0) : _mm512_setzero_ps();
  __m512 se[3], so[3];
  uf::split<P>(xe, se);
  uf::split<P>(xo, so);
  for (int p = 0; p < P; p++) piece[p] = pack_pair(se[p], so[p]);
}
template <int P>
inline void gather_lines(const float* X, int ld, int line0, int n_lines, int K, int k0, __m512i (*rows)[16]) {
  for (int r = 0; r < 16; r++) {
    __m512i piece[P];
    line_pieces<P>(X, ld, line0 + r, n_lines, K, k0, piece);
    for (int p = 0; p < P; p++) rows[p][r] = piece[p];
  }
}
template <int P>
inline void gather_kpairs(const float* X, int ld, int line0, int n_lines, int K, int k0, __m512i (*rows)[16]) {
  const __mmask16 ml = uf::mask_n(n_lines - line0);
  for (int kp = 0; kp < 16; kp++) {
    __m512i piece[P];
    kpair_pieces<P>(X, ld, line0, ml, K, k0 + 2 * kp, piece);
    for (int p = 0; p < P; p++) rows[p][kp] = piece[p];
  }
}

// One tile group (P pieces): 16 lines from line0, k = k0 .. k0+31 of a matrix stored with k contiguous
// (`k_contiguous`) or k-major; `want_lines`: the A layout, else the B (VNNI) layout.
template <int P>
inline void pack_tile(const float* X, int ld, bool k_contiguous, bool want_lines, int line0, int n_lines, int K, int k0,
                      uint16_t* out) {
  __m512i rows[P][16];
  if (k_contiguous) gather_lines<P>(X, ld, line0, n_lines, K, k0, rows);
  else gather_kpairs<P>(X, ld, line0, n_lines, K, k0, rows);
  if (k_contiguous != want_lines)
    for (int p = 0; p < P; p++) uf::transpose16(rows[p]);
  for (int p = 0; p < P; p++)
    for (int r = 0; r < 16; r++) _mm512_storeu_si512((void*)(out + p * 512 + r * 32), rows[p][r]);
}

// Rows r0..r1-1, columns c0..c1-1 of a row-major float matrix (leading dimension ld) into L2, a line at a time.
inline void prefetch_l2(const float* X, int ld, int r0, int r1, int c0, int c1) {
  for (int r = r0; r < r1; r++)
    for (int c = c0; c < c1; c += 16) _mm_prefetch((const char*)(X + (size_t)r * ld + c), _MM_HINT_T1);
}

// One (16 x 32) A block for rows ib*16.., k = kt*32.. -> P tiles. A is [M][lda], or [K][lda] when transposed.
template <int P>
void pack_A_tile(bool ta, const float* A, int lda, const Dims& d, int ib, int kt, uint16_t* out) {
  pack_tile<P>(A, lda, !ta, true, ib * 16, d.M, d.K, kt * 32, out);
}

// One (32 k x 16 n) B block -> P VNNI tiles. B is [K][ldb], or [N][ldb] when transposed.
template <int P>
void pack_B_tile(bool tb, const float* B, int ldb, const Dims& d, int jb, int kt, uint16_t* out) {
  pack_tile<P>(B, ldb, tb, false, jb * 16, d.N, d.K, kt * 32, out);
}

// ------------------------------------------------------------------------------------------------
// Micro-kernel: a 32x32 block of C = 2x2 accumulator tiles (0..3), operand tiles 4,5 (A) and 6,7 (B).
#define DP4()                  \
  _tile_dpbf16ps(0, 4, 6);     \
  _tile_dpbf16ps(1, 4, 7);     \
  _tile_dpbf16ps(2, 5, 6);     \
  _tile_dpbf16ps(3, 5, 7)

// The sum over Kt k-tiles into c (a 32x32 block of cbuf or of C itself), overwritten. side(): vector work run
// between the tile products (the fused step of the previous block, see PendingStep), or nothing; it is called
// kSideCalls times per k step (once per group of four products), which callers use to spread their work.
constexpr int kSideCalls = 6;
// pace: with a 1 KiB scratch (64-byte aligned), the first accumulator is also stored there once per k step: a tile
// store waits for its tile's queued products, so this keeps the front end within about one k step of the tile unit
// and the four stores at the end of a long block do not stall it. The GELU step's products, whose vector stores
// sit between the tile products anyway, go without.
template <int P, class Side>
UF_INLINE void kernel_32x32(const uint16_t* a0, const uint16_t* a1, const uint16_t* b0, const uint16_t* b1, int Kt,
                            float* c, int ldc, Side& side, float* pace = nullptr) {
  static_assert(P == 3, "the tile schedule below is for three pieces");
  _tile_zero(0);
  _tile_zero(1);
  _tile_zero(2);
  _tile_zero(3);
  const int S = P * 512;  // words per kt step
  for (int kt = 0; kt < Kt; kt++, a0 += S, a1 += S, b0 += S, b1 += S) {
    // 14 tile loads for 24 TDPBF16PS; small products first. Side work that stores (packing the next A chunk, the
    // GELU step: Side::kBeforeProducts) runs between each group's tile loads and its products, so that its stores
    // overlap them; side work that only prefetches runs after the products.
#define GROUP(loads)                          \
  loads;                                      \
  if constexpr (Side::kBeforeProducts) side(); \
  DP4();                                      \
  if constexpr (!Side::kBeforeProducts) side();
    GROUP(_tile_loadd(4, a0, 64); _tile_loadd(5, a1, 64); _tile_loadd(6, b0 + 1024, 64); _tile_loadd(7, b1 + 1024, 64))  // hi*lo
    GROUP(_tile_loadd(6, b0 + 512, 64); _tile_loadd(7, b1 + 512, 64))      // hi*mid
    GROUP(_tile_loadd(4, a0 + 512, 64); _tile_loadd(5, a1 + 512, 64))      // mid*mid
    if (pace) _tile_stored(0, pace, 64);
    GROUP(_tile_loadd(6, b0, 64); _tile_loadd(7, b1, 64))                  // mid*hi
    GROUP(_tile_loadd(4, a0 + 1024, 64); _tile_loadd(5, a1 + 1024, 64))    // lo*hi
    GROUP(_tile_loadd(4, a0, 64); _tile_loadd(5, a1, 64))                  // hi*hi
#undef GROUP
  }
  _tile_stored(0, c, ldc * 4);
  _tile_stored(1, c + 16, ldc * 4);
  _tile_stored(2, c + (size_t)16 * ldc, ldc * 4);
  _tile_stored(3, c + (size_t)16 * ldc + 16, ldc * 4);
}

// The lines of one 32×32 block of a row-major matrix X, requested a few at a time between the tile products of
// the kernel computing that block (into L1; for writing when `write`).
struct BlockLines {
  static constexpr bool kBeforeProducts = false;
  const float* X = nullptr;
  int ld = 0, rows = 0, cols = 0;  // X's own rows and columns
  bool write = false;
  int r0 = 0, c0 = 0, n = 0, p = 0, per_call = 1;
  BlockLines(const float* x, int ldx, int nrows, int ncols, bool w) : X(x), ld(ldx), rows(nrows), cols(ncols), write(w) {}
  // The block covering X rows r .. r+31, columns c .. c+31, computed by a kernel making `calls` side calls.
  void computing(int r, int c, int calls) {
    r0 = r, c0 = c, p = 0;
    n = 2 * std::min(32, rows - r);
    per_call = (n + calls - 1) / calls;
  }
  UF_INLINE void operator()() {
    for (int k = 0; k < per_call && p < n; k++, p++) {
      const int col = c0 + 16 * (p & 1);
      if (col >= cols) continue;
      const char* line = (const char*)(X + (size_t)(r0 + (p >> 1)) * ld + col);
      if (write) _mm_prefetch(line, _MM_HINT_ET0);
      else _mm_prefetch(line, _MM_HINT_T0);
    }
  }
};

// The destination lines of the block being computed are fetched for writing (prefetchw): in a training step
// the output buffer was last touched a step ago, and without this each tile store (and each write-back)
// would wait on a read-for-ownership from memory, holding up the products behind it.
inline BlockLines dst_lines(float* C, int ldc, int rows, int cols) { return BlockLines(C, ldc, rows, cols, true); }

// The fused elementwise step (GemmEpilogue) of one finished 32x32 block of C, done a few vectors at a time
// between the next block's tile products: the tile unit and the vector units then work at once, instead of
// the tiles idling through a separate pass over C. Meanwhile the
// lines of x (kind 2) or y (kind 1) of the block being computed are fetched, so that the step, when its turn
// comes, does not stall the products behind it on a cache miss (in a training step x and y are cold).
struct PendingStep {
  static constexpr bool kBeforeProducts = true;
  float* C = nullptr;
  const int kind;                     // 1: y = gelu(C); 2: C ·= gelu'(x)
  float* other = nullptr;             // y (kind 1) or x (kind 2), laid out as C
  int ldc = 0, N = 0;
  float *crow = nullptr, *orow = nullptr;  // pending block: its next row in C and in y / x
  int nr = 0, r = 0;                  // its rows in all, done
  __mmask16 m0 = 0, m1 = 0;           // lanes of its two 16-column halves inside C
  int per_call = 1;                   // rows per call from the kernel
  BlockLines dst, src;                // block being computed: its lines of C, and of y (written) or x (read)

  PendingStep(const GemmEpilogue* e, float* c, int ld, const Dims& d)
      : C(c), kind(e ? e->kind : 0), other(e ? (e->kind == 1 ? e->y : const_cast<float*>(e->x)) : nullptr), ldc(ld),
        N(d.N), dst(dst_lines(c, ld, d.M, d.N)), src(other, ld, d.M, d.N, kind == 1) {}
  // Block (i, j) is about to be computed by a kernel making `calls` side calls.
  void computing(int i, int j, int calls) {
    dst.computing(i, j, calls);
    src.computing(i, j, calls);
    per_call = (nr - r + calls - 1) / calls;
  }
  // ... and is now final; its step becomes the pending one (the previous one must be finished).
  void computed() {
    const size_t off = (size_t)dst.r0 * ldc + dst.c0;
    crow = C + off, orow = other + off;
    nr = dst.n / 2, r = 0;
    m0 = uf::mask_n(N - dst.c0), m1 = uf::mask_n(N - dst.c0 - 16);
  }
  UF_INLINE void row_gelu() {
    const __m512 c0 = _mm512_maskz_loadu_ps(m0, crow), c1 = _mm512_maskz_loadu_ps(m1, crow + 16);
    _mm512_mask_storeu_ps(orow, m0, uf::gelu512(c0));
    _mm512_mask_storeu_ps(orow + 16, m1, uf::gelu512(c1));
    crow += ldc, orow += ldc, r++;
  }
  UF_INLINE void row_grad() {
    const __m512 c0 = _mm512_maskz_loadu_ps(m0, crow), c1 = _mm512_maskz_loadu_ps(m1, crow + 16);
    const __m512 x0 = _mm512_maskz_loadu_ps(m0, orow), x1 = _mm512_maskz_loadu_ps(m1, orow + 16);
    _mm512_mask_storeu_ps(crow, m0, _mm512_mul_ps(c0, uf::gelu_grad512(x0)));
    _mm512_mask_storeu_ps(crow + 16, m1, _mm512_mul_ps(c1, uf::gelu_grad512(x1)));
    crow += ldc, orow += ldc, r++;
  }
  UF_INLINE void operator()() {
    dst();
    src();
    const int end = std::min(nr, r + per_call);
    if (kind == 1)
      while (r < end) row_gelu();
    else
      while (r < end) row_grad();
  }
  void finish() {
    if (kind == 1)
      while (r < nr) row_gelu();
    else
      while (r < nr) row_grad();
  }
};

// The next A chunk, packed a little at a time between the current chunk's tile products: the tile unit runs its
// queued products while the vector units split the next rows into pieces, and the source lines a little ahead
// are fetched into L2 meanwhile, so that packing a cold A mostly hides behind the products.
//   k-contiguous source (op(A) = A): a unit is one row of one tile (two vectors of 32 k), rows in source order.
//   k-major source (op(A) = Aᵀ): a unit is one k pair of a tile (16 lines), into a staging tile; three more
//   units transpose its pieces into place. Tiles in the order of pack_A_tile's caller (16-line blocks inner).
template <int P>
struct PackAhead {
  const float* A = nullptr;
  int lda = 0, M = 0, K = 0;
  bool kmajor = false;
  uint16_t* out = nullptr;
  int ib0 = 0, ib1 = 0, kt0 = 0, nk = 0;  // row tiles [ib0, ib1), k tiles kt0 .. kt0+nk-1
  int ib = 0, r = 0, k = 0;               // next unit (k-contiguous: row r of tile (ib, k); k-major: unit r of it)
  int per_call = 0;
  bool busy = false;
  alignas(64) __m512i stage[P][16];
  // Pack row tiles [b0, b1) × k tiles [kt, kt+n) into dst over `calls` side calls.
  void start(uint16_t* dst, int b0, int b1, int kt, int n, long calls) {
    out = dst, ib0 = ib = b0, ib1 = b1, kt0 = kt, nk = n, r = 0, k = 0, busy = b1 > b0 && n > 0;
    const long units = (long)(b1 - b0) * n * (kmajor ? 16 + P : 16);
    per_call = (int)std::max(1L, (units + calls - 1) / std::max(1L, calls));
    if (!kmajor)
      for (int line = b0 * 16; line < std::min(M, b0 * 16 + 2); line++)
        for (int c = kt * 32; c < std::min(K, (kt + n) * 32); c += 16) _mm_prefetch((const char*)(A + (size_t)line * lda + c), _MM_HINT_T1);
    else
      for (int kk = kt * 32; kk < std::min(K, kt * 32 + 32); kk++)
        if (b0 * 16 < M) _mm_prefetch((const char*)(A + (size_t)kk * lda + b0 * 16), _MM_HINT_T1);
  }
  UF_INLINE void unit_lines() {
    const int line = ib * 16 + r, k0 = (kt0 + k) * 32;
    const int ahead = line + 2;
    if (ahead < M && k0 < K) {
      _mm_prefetch((const char*)(A + (size_t)ahead * lda + k0), _MM_HINT_T1);
      if (k0 + 16 < K) _mm_prefetch((const char*)(A + (size_t)ahead * lda + k0 + 16), _MM_HINT_T1);
    }
    __m512i piece[P];
    line_pieces<P>(A, lda, line, M, K, k0, piece);
    uint16_t* o = out + ((size_t)(ib - ib0) * nk + k) * P * 512 + r * 32;
    for (int p = 0; p < P; p++) _mm512_storeu_si512((void*)(o + p * 512), piece[p]);
    if (++k == nk) {
      k = 0;
      if (++r == 16) r = 0, busy = ++ib < ib1;
    }
  }
  UF_INLINE void unit_kpairs() {
    const int line0 = ib * 16;
    if (r < 16) {
      const int ka = (kt0 + k) * 32 + 2 * r, kb = ka + 1;
      // the same k pair of the next strip, and (first strip) of the next tile
      if (ka + 32 < K && line0 < M) {
        _mm_prefetch((const char*)(A + (size_t)(ka + 32) * lda + line0), _MM_HINT_T1);
        _mm_prefetch((const char*)(A + (size_t)(kb + 32) * lda + line0), _MM_HINT_T1);
      }
      if (k == 0 && line0 + 16 < M && ib + 1 < ib1) {
        _mm_prefetch((const char*)(A + (size_t)ka * lda + line0 + 16), _MM_HINT_T1);
        if (kb < K) _mm_prefetch((const char*)(A + (size_t)kb * lda + line0 + 16), _MM_HINT_T1);
      }
      __m512i piece[P];
      kpair_pieces<P>(A, lda, line0, uf::mask_n(M - line0), K, ka, piece);
      for (int p = 0; p < P; p++) stage[p][r] = piece[p];
    } else {
      const int p = r - 16;
      uf::transpose16(stage[p]);
      uint16_t* o = out + ((size_t)(ib - ib0) * nk + k) * P * 512 + p * 512;
      for (int row = 0; row < 16; row++) _mm512_storeu_si512((void*)(o + row * 32), stage[p][row]);
    }
    if (++r == 16 + P) {
      r = 0;
      if (++ib == ib1) ib = ib0, busy = ++k < nk;
    }
  }
  UF_INLINE void operator()() {
    for (int i = 0; i < per_call && busy; i++) kmajor ? unit_kpairs() : unit_lines();
  }
  void finish() {
    while (busy) kmajor ? unit_kpairs() : unit_lines();
  }
};

// Side work of the plain products: the destination lines, and the next A chunk when it is packed ahead.
template <int P>
struct DstAndPack {
  static constexpr bool kBeforeProducts = true;
  BlockLines* dst;
  PackAhead<P>* pack;
  UF_INLINE void operator()() {
    (*dst)();
    (*pack)();
  }
};

// c[r, :] = alpha · cbuf[r, :] + beta · c[r, :] for the mr × nc block at c.
inline void writeback_block(const float* cbuf, float alpha, float beta, float* C, int ldc, int mr, int nc) {
  __mmask16 m0 = uf::mask_n(nc), m1 = uf::mask_n(nc - 16);
  __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
  for (int r = 0; r < mr; r++) {
    float* c = C + (size_t)r * ldc;
    __m512 x0 = _mm512_mul_ps(va, _mm512_load_ps(cbuf + r * 32)), x1 = _mm512_mul_ps(va, _mm512_load_ps(cbuf + r * 32 + 16));
    if (beta != 0.f) {
      x0 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m0, c), x0);
      x1 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m1, c + 16), x1);
    }
    _mm512_mask_storeu_ps(c, m0, x0);
    _mm512_mask_storeu_ps(c + 16, m1, x1);
  }
}
inline void writeback(const float* cbuf, float alpha, float beta, float* C, int ldc, const Dims& d, int i0, int j0) {
  writeback_block(cbuf, alpha, beta, C + (size_t)i0 * ldc + j0, ldc, std::min(32, d.M - i0), d.N - j0);
}

// The same for a block of Cᵀ (the operands were swapped): cbuf row r is column i0+r of C, cbuf column c is
// row j0+c of C (d is the swapped problem's: d.M counts C's columns, d.N its rows); cbuf's rows are ldb apart
// (64-byte aligned).
inline void writeback_t(const float* cbuf, int ldb, float alpha, float beta, float* C, int ldc, const Dims& d, int i0,
                        int j0) {
  const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
  for (int hb = 0; hb < 2; hb++) {
    const __mmask16 mc = uf::mask_n(d.M - i0 - 16 * hb);
    if (!mc) break;
    for (int cb = 0; cb < 2; cb++) {
      __m512i r[16];
      for (int t = 0; t < 16; t++) r[t] = _mm512_castps_si512(_mm512_load_ps(cbuf + (size_t)(16 * hb + t) * ldb + 16 * cb));
      uf::transpose16(r);
      for (int u = 0; u < 16; u++) {
        const int row = j0 + 16 * cb + u;
        if (row >= d.N) break;
        float* c = C + (size_t)row * ldc + i0 + 16 * hb;
        __m512 x = _mm512_mul_ps(va, _mm512_castsi512_ps(r[u]));
        if (beta != 0.f) x = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(mc, c), x);
        _mm512_mask_storeu_ps(c, mc, x);
      }
    }
  }
}

// ------------------------------------------------------------------------------------------------
// Workspace: packed B for the whole call, packed A chunks per thread; grown on demand and reused. Only
// gemm() calls from outside an OpenMP parallel region come here (see kernels.cc), one at a time.
template <class E>
E* grow(E*& p, size_t& cap, size_t n) {
  if (n > cap) {
    free(p);
    size_t bytes = ((n * sizeof(E) + (2u << 20) - 1) >> 21) << 21;
    p = (E*)aligned_alloc(2u << 20, bytes);
    if (!p) {
      cap = 0;
      return nullptr;
    }
    madvise(p, bytes, MADV_HUGEPAGE);
    cap = bytes / sizeof(E);
  }
  return p;
}
uint16_t* g_pb = nullptr;
size_t g_pb_n = 0;
uint16_t* g_pa = nullptr;  // A packed in full (column-split calls)
size_t g_pa_n = 0;
constexpr int kMaxThreads = 64;
uint16_t* g_pa_local[kMaxThreads];
size_t g_pa_local_n[kMaxThreads];
float* g_acc[kMaxThreads];  // per thread: the running sum of Cᵀ's k chunks (see compute_thread)
size_t g_acc_n[kMaxThreads];

constexpr int kKct = 16;                  // k chunk: 16 tiles of 32 = 512
constexpr int kMcBytes = 512 * 1024;      // packed A chunk per thread (L2)
constexpr int kNcBytes = 1024 * 1024;     // packed B chunk swept per A row pair (L2)

// Threads split the rows of C (each packs its own rows of A, chunk by chunk) when there are enough row
// pairs; otherwise they split the columns, and A is packed in full first, once, shared.
inline bool split_m(const Dims& d, int nth) { return d.Mt / 2 >= 4 * nth || d.Mt / 2 >= d.Nt / 2; }

// Per thread (inside a parallel region). B is packed in full (pb). A is either packed in full (pa_full != null:
// the column split, packed once by all threads) or packed here chunk by chunk into a thread-local L2-sized buffer.
template <int P>
void compute_thread(bool ta, const float* A, int lda, const Dims& d, const uint16_t* pa_full, const uint16_t* pb,
                           float alpha, float beta, float* C, int ldc, bool trans_c, int tid, int nth,
                           const GemmEpilogue* ep = nullptr, int slot = -1) {
  if (slot < 0) slot = tid;  // which thread's workspaces
  int nIp = d.Mt / 2, nJp = d.Nt / 2;
  int ip0 = 0, ip1 = nIp, jp0 = 0, jp1 = nJp;
  const bool by_rows = !pa_full;  // the caller packed A in full for a column split
  if (by_rows) {  // split M (pairs of 16-row blocks)
    ip0 = (int)((int64_t)nIp * tid / nth);
    ip1 = (int)((int64_t)nIp * (tid + 1) / nth);
  } else {                // split N; A was packed in full, once, by all threads together
    jp0 = (int)((int64_t)nJp * tid / nth);
    jp1 = (int)((int64_t)nJp * (tid + 1) / nth);
  }
  const size_t T = P * 512;              // words per tile group (one kt, P pieces)
  const size_t fullS = (size_t)d.Kt * T;  // words per full-K 16-panel
  int kct = std::min(d.Kt, kKct);
  int mcp = std::max(1, (int)(kMcBytes / (2 * kct * T * 2)));  // row pairs per A chunk
  int ncp = std::max(1, (int)(kNcBytes / (2 * kct * T * 2)));  // col pairs per B chunk
  // With A split by rows, each chunk after the first is packed while the previous one is multiplied
  // (PackAhead), into the other half of a double buffer of half-size chunks (two 512 KiB chunks and the B
  // chunk would not fit in L2 together).
  // Only for K ≥ 512: in shallower products the overlap saves less than the half-size chunks cost, since they make
  // B stream in from L3 twice as often.
  // With the whole K in one chunk, each block of C is final when its kernel ends, and its fused step runs
  // between the next block's tile products; the last block's runs at the end.
  const bool interleave = ep && d.Kt <= kct && !trans_c;
  const bool ahead = !pa_full && !interleave && d.K >= 512;
  if (ahead) mcp = std::max(1, mcp / 2);
  const size_t chunk_words = (size_t)mcp * 2 * kct * T;
  uint16_t* loc = nullptr;
  if (!pa_full) loc = grow(g_pa_local[slot], g_pa_local_n[slot], ahead ? 2 * chunk_words : chunk_words);
  if (!pa_full && !loc) abort();  // out of memory for a few MiB: nothing sensible to do
  // Cᵀ over several k chunks: the chunks' partial sums are added in a thread-local buffer of this thread's rows
  // (padded to whole blocks) and C gets each block once, transposed, at the last chunk, instead of every chunk
  // going into C through the 16×16 transposes. The sums are added in the same order.
  const bool acc_t = trans_c && d.Kt > kct && by_rows;
  const int ldacc = d.Nt * 16;
  float* acc = nullptr;
  if (acc_t) {
    acc = grow(g_acc[slot], g_acc_n[slot], (size_t)(ip1 - ip0) * 32 * ldacc);
    if (!acc) abort();
  }
  PackAhead<P> pack;
  pack.A = A, pack.lda = lda, pack.M = d.M, pack.K = d.K, pack.kmajor = ta;  // idle until start()
  DstAndPack<P> dst_pack;
  int cur = 0;              // which half of loc holds the chunk being multiplied
  bool packed_next = false;  // whether it was packed ahead
  alignas(64) float cbuf[32 * 32];
  alignas(64) float pace[16 * 16];  // see kernel_32x32
  PendingStep pending(ep, C, ldc, d);
  BlockLines pdst = dst_lines(C, ldc, trans_c ? d.N : d.M, trans_c ? d.M : d.N);  // trans_c: d is the swapped problem's
  dst_pack.dst = &pdst, dst_pack.pack = &pack;
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
        // Along the rows of the source: k inner when k is contiguous (op(A) = A), else 16-row blocks inner,
        // so consecutive tiles read adjacent 64-byte pieces of the same source rows (one stream per row
        // instead of a cache miss per row and tile).
        // While one strip is packed, the next strip's source lines are fetched into L2: the strips are short
        // streams (a few lines per source row) that the hardware prefetcher barely starts on, so a cold
        // operand (a training step's activations) otherwise stalls on every line.
        const int k_end = std::min(d.K, (kt0 + nk) * 32), m_end = std::min(d.M, 2 * ice * 16);
        // The next strip's lines are requested a tile's worth at a time, before each tile is packed: issued
        // all at once they would fill the miss queues and the prefetch instructions themselves would stall.
        uint16_t* buf = loc + (ahead ? cur * chunk_words : 0);
        if (!packed_next && !ta) {  // (a chunk packed ahead is already in buf)
          for (int ib = 2 * ic; ib < 2 * ice; ib++)
            for (int k = 0; k < nk; k++) {
              prefetch_l2(A, lda, (ib + 1) * 16, std::min(m_end, (ib + 2) * 16), (kt0 + k) * 32,
                          std::min(k_end, (kt0 + k + 1) * 32));
              pack_A_tile<P>(ta, A, lda, d, ib, kt0 + k, buf + ((size_t)(ib - 2 * ic) * nk + k) * T);
            }
        } else if (!packed_next) {
          for (int k = 0; k < nk; k++)
            for (int ib = 2 * ic; ib < 2 * ice; ib++) {
              prefetch_l2(A, lda, (kt0 + k + 1) * 32, std::min(k_end, (kt0 + k + 2) * 32), ib * 16,
                          std::min(m_end, (ib + 1) * 16));
              pack_A_tile<P>(ta, A, lda, d, ib, kt0 + k, buf + ((size_t)(ib - 2 * ic) * nk + k) * T);
            }
        }
        pa = buf;
        aS = (size_t)nk * T;
        if (ahead) {  // the next chunk: the next rows, or the first rows of the next k chunk
          int nic = ic + mcp, nkt0 = kt0;
          if (nic >= ip1) nic = ip0, nkt0 = kt0 + kct;
          packed_next = nkt0 < d.Kt;
          if (packed_next)
            pack.start(loc + (cur ^ 1) * chunk_words, 2 * nic, 2 * std::min(ip1, nic + mcp), nkt0,
                       std::min(kct, d.Kt - nkt0), (long)(ice - ic) * (jp1 - jp0) * kSideCalls * nk);
        }
      }
      for (int jc = jp0; jc < jp1; jc += ncp) {
        int jce = std::min(jp1, jc + ncp);
        for (int ip = ic; ip < ice; ip++) {
          const uint16_t* a0 = pa + (size_t)(2 * (ip - ic)) * aS;
          for (int jp = jc; jp < jce; jp++) {
            const uint16_t* b0 = pb + (size_t)(2 * jp) * fullS + kt0 * T;
            bool full = ip * 32 + 32 <= d.M && jp * 32 + 32 <= d.N;
            // alpha = 1, beta = 0 (first k chunk), full block: store the tiles straight into C. Accumulating onto C
            // (loading C into the tiles) would also work but lengthens the serial fp32 sum and so its rounding
            // error, so later k chunks / beta != 0 go through cbuf and add the chunk's partial sum.
            float* const accb = acc_t ? acc + (size_t)(ip - ip0) * 32 * ldacc + jp * 32 : nullptr;
            float* dst = full && !trans_c && alpha == 1.f && beta_eff == 0.f ? C + (size_t)ip * 32 * ldc + jp * 32
                         : acc_t && kt0 == 0                                 ? accb
                                                                             : cbuf;
            const int ldd = dst == cbuf ? 32 : dst == accb ? ldacc : ldc;
            if (interleave) {
              pending.computing(ip * 32, jp * 32, kSideCalls * nk);
              kernel_32x32<P>(a0, a0 + aS, b0, b0 + fullS, nk, dst, ldd, pending);
              pending.finish();
            } else {
              if (trans_c) pdst.computing(jp * 32, ip * 32, kSideCalls * nk);
              else pdst.computing(ip * 32, jp * 32, kSideCalls * nk);
              // two instantiations: the kernel without packing keeps its loop free of the packer's state
              if (ahead) kernel_32x32<P>(a0, a0 + aS, b0, b0 + fullS, nk, dst, ldd, dst_pack, pace);
              else kernel_32x32<P>(a0, a0 + aS, b0, b0 + fullS, nk, dst, ldd, pdst, pace);
            }
            if (dst == cbuf && acc_t) {
              writeback_block(cbuf, 1.f, 1.f, accb, ldacc, 32, 32);
              if (kt0 + nk >= d.Kt) writeback_t(accb, ldacc, alpha, beta, C, ldc, d, ip * 32, jp * 32);
            } else if (dst == cbuf) {
              if (trans_c) writeback_t(cbuf, 32, alpha, beta_eff, C, ldc, d, ip * 32, jp * 32);
              else writeback(cbuf, alpha, beta_eff, C, ldc, d, ip * 32, jp * 32);
            }
            if (interleave) pending.computed();
          }
        }
        // After the last k chunk this chunk of C is final: the fused step reads it from L2 (not a block at a time
        // right after its tile stores, where its loads would wait on those stores).
        if (ep && !interleave && kt0 + nk >= d.Kt)
          uf::gemm_epilogue_block(*ep, C, ldc, 2 * ic * 16, std::min(d.M, 2 * ice * 16), jc * 32,
                                  std::min(d.N, jce * 32));
      }
      if (ahead) {
        pack.finish();
        cur ^= 1;
      }
    }
  }
  if (interleave) pending.finish();
}

// A whole operand (n_lines lines, Lt 16-line blocks, Kt 32-deep k blocks; the layout arguments as in
// pack_tile), tile by tile in the order of the source's rows (see the A chunks in compute_thread): k inner
// when k is contiguous in the source, 16-line blocks inner when the source is k-major. Before each tile is
// packed, the matching tile of the next strip is fetched into L2.
template <int P, bool kShared = true>
void pack_all(const float* X, int ld, bool k_contiguous, bool want_lines, int n_lines, int Lt, int K, int Kt,
              uint16_t* out) {
  auto one = [&](int t) {
    const int lb = k_contiguous ? t / Kt : t % Lt, kt = k_contiguous ? t % Kt : t / Lt;
    if (k_contiguous)
      prefetch_l2(X, ld, (lb + 1) * 16, std::min(n_lines, (lb + 2) * 16), kt * 32, std::min(K, (kt + 1) * 32));
    else
      prefetch_l2(X, ld, (kt + 1) * 32, std::min(K, (kt + 2) * 32), lb * 16, std::min(n_lines, (lb + 1) * 16));
    pack_tile<P>(X, ld, k_contiguous, want_lines, lb * 16, n_lines, K, kt * 32, out + ((size_t)lb * Kt + kt) * P * 512);
  };
  if constexpr (kShared) {
#pragma omp for schedule(static) nowait
    for (int t = 0; t < Lt * Kt; t++) one(t);
  } else {
    for (int t = 0; t < Lt * Kt; t++) one(t);
  }
}
template <int P, bool kShared = true>
void pack_B_all(bool tb, const Dims& d, const float* B, int ldb, uint16_t* pb) {
  pack_all<P, kShared>(B, ldb, tb, false, d.N, d.Nt, d.K, d.Kt, pb);
}
template <int P>
void pack_A_all(bool ta, const Dims& d, const float* A, int lda, uint16_t* pa) {
  pack_all<P>(A, lda, !ta, true, d.M, d.Mt, d.K, d.Kt, pa);
}
void scale_only(int M, int N, float beta, float* C, int ldc) {
  for (int i = 0; i < M; i++)
    for (int j = 0; j < N; j++) C[(size_t)i * ldc + j] = beta == 0.f ? 0.f : beta * C[(size_t)i * ldc + j];
}

}  // namespace

bool amx_available() {
  if (g_available < 0) g_available = syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0 ? 1 : 0;
  return g_available == 1;
}

bool amx_gemm(bool ta, bool tb, int M, int N, int K, float alpha, const float* A, const float* B, float beta, float* C) {
  return amx_gemm_ep(ta, tb, M, N, K, alpha, A, B, beta, C, nullptr);
}

namespace {
uint16_t* g_pb_local[kMaxThreads];  // split K: per thread, the B chunk being multiplied
size_t g_pb_local_n[kMaxThreads];
float* g_part[kMaxThreads];  // split K: per thread, its partial product
size_t g_part_n[kMaxThreads];

// C = alpha · Σ_t part_t + beta · C for the 32-row blocks [b0, b1) of the [M, N] parts: each 32×32 block is summed
// into a scratch block and written back as compute_thread writes its blocks (transposed when trans_c: C is then
// [N, M], and d's M counts C's columns as writeback_t expects).
void combine_parts(float* const* part, int nparts, int M, int N, float alpha, float beta, float* C, int ldc, bool trans_c,
                   int b0, int b1) {
  alignas(64) float cbuf[32 * 32];
  const Dims d{M, N, 0, 0, 0, 0};
  for (int i0 = 32 * b0; i0 < std::min(M, 32 * b1); i0 += 32)
    for (int j0 = 0; j0 < N; j0 += 32) {
      const __mmask16 m0 = uf::mask_n(N - j0), m1 = uf::mask_n(N - j0 - 16);
      for (int r = 0; r < 32; r++) {
        __m512 x0 = _mm512_setzero_ps(), x1 = _mm512_setzero_ps();
        for (int t = 0; t < nparts && i0 + r < M; t++) {
          const float* p = part[t] + (size_t)(i0 + r) * N + j0;
          x0 = _mm512_add_ps(x0, _mm512_maskz_loadu_ps(m0, p));
          x1 = _mm512_add_ps(x1, _mm512_maskz_loadu_ps(m1, p + 16));
        }
        _mm512_store_ps(cbuf + r * 32, x0);
        _mm512_store_ps(cbuf + r * 32 + 16, x1);
      }
      if (trans_c) writeback_t(cbuf, 32, alpha, beta, C, ldc, d, i0, j0);
      else writeback(cbuf, alpha, beta, C, ldc, d, i0, j0);
    }
}

// K split between the threads (the weight gradients: K = tokens, far more than M and N): each thread multiplies
// its own range of k, a 512-deep chunk at a time, with that chunk of B packed by itself into an L2-sized buffer,
// into a partial product of its own; the partial products are added at the end. Splitting the rows of C
// instead, every thread needs all of B, which is packed by both before the product and streams from L3 once
// per k chunk and thread.
template <int P>
bool gemm_split_k(bool ta, bool tb, int M, int N, int K, float alpha, const float* A, int lda, const float* B, int ldb,
                  float beta, float* C, int ldc, bool trans_c, const GemmEpilogue* ep) {
  const int nth = omp_get_max_threads();
  const int kc = kKct * 32;
  const Dims dc = dims_of(M, N, kc);
  for (int t = 0; t < nth; t++)
    if (!grow(g_pb_local[t], g_pb_local_n[t], (size_t)dc.Nt * dc.Kt * P * 512) ||
        !grow(g_part[t], g_part_n[t], (size_t)M * N))
      return false;
#pragma omp parallel
  {
    const int t = omp_get_thread_num(), n = omp_get_num_threads();
    const int kt_all = (K + 31) / 32;
    const int k0 = (int)((int64_t)kt_all * t / n) * 32, k1 = std::min(K, (int)((int64_t)kt_all * (t + 1) / n) * 32);
    float* part = g_part[t];
    load_tile_config();
    bool first = true;
    for (int kb = k0; kb < k1; kb += kc) {
      const int kn = std::min(kc, k1 - kb);
      const Dims d = dims_of(M, N, kn);
      pack_B_all<P, false>(tb, d, tb ? B + kb : B + (size_t)kb * ldb, ldb, g_pb_local[t]);
      compute_thread<P>(ta, ta ? A + (size_t)kb * lda : A + kb, lda, d, nullptr, g_pb_local[t], 1.f, first ? 0.f : 1.f,
                        part, N, false, 0, 1, nullptr, t);
      first = false;
    }
    if (first) std::memset(part, 0, sizeof(float) * (size_t)M * N);
    _tile_release();
#pragma omp barrier
    const int nb = (M + 31) / 32;  // 32-row blocks of the parts
    const int b0 = (int)((int64_t)nb * t / n), b1 = (int)((int64_t)nb * (t + 1) / n);
    combine_parts(g_part, n, M, N, alpha, beta, C, ldc, trans_c, b0, b1);
    if (ep) {  // the fused step over C's rows, once they are final (with trans_c, after every thread's columns)
      const int crows = trans_c ? N : M, ccols = trans_c ? M : N;
      if (trans_c) {
#pragma omp barrier
      }
      const int e0 = trans_c ? (int)((int64_t)crows * t / n) : 32 * b0;
      const int e1 = trans_c ? (int)((int64_t)crows * (t + 1) / n) : std::min(M, 32 * b1);
      if (e1 > e0) uf::gemm_epilogue_block(*ep, C, ldc, e0, e1, 0, ccols);
    }
  }
  return true;
}
}  // namespace

bool amx_gemm_ep(bool ta, bool tb, int M, int N, int K, float alpha, const float* A, const float* B, float beta,
                 float* C, const GemmEpilogue* ep) {
  constexpr int P = 3;
  if (!amx_available() || omp_get_max_threads() > kMaxThreads) return false;
  if (M <= 0 || N <= 0) return true;
  if (K <= 0 || alpha == 0.f) {
    scale_only(M, N, beta, C, N);
    if (ep) uf::gemm_epilogue_block(*ep, C, N, 0, M, 0, N);
    return true;
  }
  const int ldc = N;
  // B is packed in full and streamed once per chunk of A rows, A in L2-sized chunks: B should be the smaller
  // side. When N > M, compute Cᵀ = op(B)ᵀ op(A)ᵀ instead and write the blocks back transposed.
  const bool trans_c = N > M;
  const int M0 = M, N0 = N;  // C's shape, for a step applied after a swapped product
  if (trans_c) {
    std::swap(A, B);
    std::swap(M, N);
    const bool t = ta;
    ta = !tb;
    tb = !t;
  }
  Dims d = dims_of(M, N, K);
  int lda = ta ? M : K, ldb = tb ? K : N;
  // Deep products with a small C (the weight gradients, the lm head's input gradient) split K between the threads
  // (gemm_split_k); below K = 1024, or with a C larger than 256·K floats, the partial products cost more than they
  // save.
  if (omp_get_max_threads() > 1 && K >= 1024 && (size_t)M * N <= (size_t)K * 256)
    return gemm_split_k<P>(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, trans_c, ep);
  uint16_t* pb = grow(g_pb, g_pb_n, (size_t)d.Nt * d.Kt * P * 512);
  if (!pb) return false;
  const bool full_a = !split_m(d, omp_get_max_threads());
  uint16_t* pa = full_a ? grow(g_pa, g_pa_n, (size_t)d.Mt * d.Kt * P * 512) : nullptr;
  if (full_a && !pa) return false;
#pragma omp parallel
  {
    pack_B_all<P>(tb, d, B, ldb, pb);
    if (full_a) pack_A_all<P>(ta, d, A, lda, pa);
    load_tile_config();
#pragma omp barrier
    compute_thread<P>(ta, A, lda, d, pa, pb, alpha, beta, C, ldc, trans_c, omp_get_thread_num(), omp_get_num_threads(),
                      trans_c ? nullptr : ep);
    _tile_release();
    if (ep && trans_c) {  // blocks of Cᵀ are columns of C: the step goes over C's rows afterwards
#pragma omp barrier
#pragma omp for schedule(static)
      for (int i = 0; i < M0; i += 16) uf::gemm_epilogue_block(*ep, C, ldc, i, std::min(M0, i + 16), 0, N0);
    }
  }
  return true;
}

size_t amx_packed_b_size(int N, int K) {
  Dims d = dims_of(1, N, K);
  return (size_t)d.Nt * d.Kt * 3 * 512;
}

bool amx_pack_b(bool tb, int N, int K, const float* B, uint16_t* packed) {
  constexpr int P = 3;
  if (!amx_available() || N <= 0 || K <= 0) return false;
  Dims d = dims_of(1, N, K);
#pragma omp parallel
  pack_B_all<P>(tb, d, B, tb ? K : N, packed);
  return true;
}

bool amx_gemm_packed(bool ta, int M, int N, int K, float alpha, const float* A, const uint16_t* packed, float beta,
                     float* C) {
  constexpr int P = 3;
  if (!amx_available() || omp_get_max_threads() > kMaxThreads || K <= 0 || alpha == 0.f) return false;
  if (M <= 0 || N <= 0) return true;
  Dims d = dims_of(M, N, K);
  // The decoder's products (64 rows a step) split C's rows whenever each thread gets a pair of 16-row blocks:
  // each thread then reads all of the packed weights but packs only its own rows of A, with no barrier, and
  // leaves its rows of C in its own cache for the next step of the same rows (the attention and the sampler also
  // split the batch by rows). Either split gives the same results, bit for bit.
  const bool full_a = d.Mt / 2 < omp_get_max_threads();
  uint16_t* pa = full_a ? grow(g_pa, g_pa_n, (size_t)d.Mt * d.Kt * P * 512) : nullptr;
  if (full_a && !pa) return false;
  const int lda = ta ? M : K;
#pragma omp parallel
  {
    if (full_a) {
      pack_A_all<P>(ta, d, A, lda, pa);
#pragma omp barrier
    }
    load_tile_config();
    compute_thread<P>(ta, A, lda, d, pa, packed, alpha, beta, C, N, false, omp_get_thread_num(), omp_get_num_threads());
    _tile_release();
  }
  return true;
}

#else  // no AMX in this build

bool amx_available() { return false; }
bool amx_gemm(bool, bool, int, int, int, float, const float*, const float*, float, float*) { return false; }
bool amx_gemm_ep(bool, bool, int, int, int, float, const float*, const float*, float, float*, const GemmEpilogue*) {
  return false;
}
size_t amx_packed_b_size(int, int) { return 0; }
bool amx_pack_b(bool, int, int, const float*, uint16_t*) { return false; }
bool amx_gemm_packed(bool, int, int, int, float, const float*, const uint16_t*, float, float*) { return false; }

#endif
