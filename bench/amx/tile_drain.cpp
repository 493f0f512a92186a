// How much a 32x32 block's tile stores cost the AMX kernel's schedule (bench/amx/README.md, "Tile stores").
// Runs kernel_32x32's 14-load / 24-TDPBF16PS k step on operands in L1/L2 (no packing; random bf16 operands), with or
// without storing the four accumulators after each block of Kt k steps.
//   g++ -O2 -march=native bench/amx/tile_drain.cpp -o /tmp/tile_drain && /tmp/tile_drain 1 8 [1]
// Prints ns per TDPBF16PS; `pace` 1 adds kernel_32x32's store of one accumulator per k step.
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>

struct alignas(64) Cfg {
  uint8_t palette = 1, start = 0, r0[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};
};
#define DP4()                \
  _tile_dpbf16ps(0, 4, 6);   \
  _tile_dpbf16ps(1, 4, 7);   \
  _tile_dpbf16ps(2, 5, 6);   \
  _tile_dpbf16ps(3, 5, 7)
#define LOAD2(t0, p0, t1, p1) \
  _tile_loadd(t0, p0, 64);    \
  _tile_loadd(t1, p1, 64)

alignas(64) static uint16_t A[2][32 * 1536], B[2][32 * 1536];
alignas(4096) static float C[4 * 16 * 1024];
alignas(64) static float S[256];

int main(int argc, char** argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: %s store(0|1) Kt(1..32) [pace(0|1)]\n", argv[0]);
    return 2;
  }
  const int store = atoi(argv[1]), Kt = atoi(argv[2]), pace = argc > 3 ? atoi(argv[3]) : 0;
  if (Kt < 1 || Kt > 32) return 2;
  // Written once, so that the operands are real pages (never-written static arrays would all read the zero page).
  for (int i = 0; i < 2; i++)
    for (int j = 0; j < 32 * 1536; j++) {  // bf16 of magnitude 2^-8 .. 2^8, random signs (not zeros: see README)
      static uint32_t x = 12345;
      x = x * 1103515245u + 12345u;
      A[i][j] = (uint16_t)(0x3b80 + ((x >> 12) % 0x0800)) | (uint16_t)(x & 0x8000);
      x = x * 1103515245u + 12345u;
      B[i][j] = (uint16_t)(0x3b80 + ((x >> 12) % 0x0800)) | (uint16_t)(x & 0x8000);
    }
  syscall(SYS_arch_prctl, 0x1023, 18);  // ARCH_REQ_XCOMP_PERM, XTILEDATA
  Cfg c;
  for (int i = 0; i < 8; i++) c.colsb[i] = 64, c.rows[i] = 16;
  _tile_loadconfig(&c);
  const long blocks = 200000;
  const auto t0 = std::chrono::steady_clock::now();
  for (long bl = 0; bl < blocks; bl++) {
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
    const uint16_t *a0 = A[0], *a1 = A[1], *b0 = B[0], *b1 = B[1];
    for (int kt = 0; kt < Kt; kt++, a0 += 1536, a1 += 1536, b0 += 1536, b1 += 1536) {
      // kernel_32x32's schedule (native/amx_gemm.cc): hi·lo, hi·mid, mid·mid, mid·hi, lo·hi, hi·hi
      LOAD2(4, a0, 5, a1);
      LOAD2(6, b0 + 1024, 7, b1 + 1024);
      DP4();
      LOAD2(6, b0 + 512, 7, b1 + 512);
      DP4();
      LOAD2(4, a0 + 512, 5, a1 + 512);
      DP4();
      if (pace) _tile_stored(0, S, 64);  // kernel_32x32's pace store
      LOAD2(6, b0, 7, b1);
      DP4();
      LOAD2(4, a0 + 1024, 5, a1 + 1024);
      DP4();
      LOAD2(4, a0, 5, a1);
      DP4();
    }
    if (store) {
      _tile_stored(0, C, 4096);
      _tile_stored(1, C + 16, 4096);
      _tile_stored(2, C + 16 * 1024, 4096);
      _tile_stored(3, C + 16 * 1024 + 16, 4096);
    }
  }
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const double tdp = blocks * 24.0 * Kt, ns = s / tdp * 1e9;
  printf("store %d Kt %d pace %d: %.2f ns/TDPBF16PS\n", store, Kt, pace, ns);
  _tile_release();
  return 0;
}
