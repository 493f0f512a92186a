// Every float32 bit pattern through the split into three bf16 pieces that the AMX GEMM multiplies
// (native/bf16_split.h, the code amx_gemm.cc uses), with denormals flushed as in the addon:
//   - each piece of a non-NaN x is a bf16 value (its low 16 bits are zero);
//   - finite x within bf16 range: hi + mid + lo == x exactly (summed in double) for |x| ≥ 2^-103, where all
//     three pieces are normal; below, a piece under the normal range is flushed, and the pieces miss x by
//     less than 2^-126 (the smallest normal float);
//   - NaN x: at least one piece is NaN (so the product is NaN);
//   - denormal x: every piece is zero or denormal (the tile unit reads both as zero).
// Needs AVX-512F, not AMX: the split is vector bit arithmetic. Build and run: bash bench/split_check.sh
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>

#include "../native/bf16_split.h"

#if defined(__AVX512F__)
static float f_of(uint32_t u) { float f; std::memcpy(&f, &u, 4); return f; }
static uint32_t u_of(float f) { uint32_t u; std::memcpy(&u, &f, 4); return u; }

int main() {
  uint64_t n_bad_piece = 0, n_bad_sum = 0, n_lost_nan = 0, n_bad_denormal = 0, n_sum_checked = 0, n_small = 0,
           n_small_bad = 0, n_small_inexact = 0;
  const float bf16_max = f_of(0x7f7f0000u);
  const int64_t kChunk = 1 << 20;  // bit patterns per work item
#pragma omp parallel reduction(+ : n_bad_piece, n_bad_sum, n_lost_nan, n_bad_denormal, n_sum_checked, n_small, \
                                   n_small_bad, n_small_inexact)
  {
    _mm_setcsr(_mm_getcsr() | 0x8040);  // FTZ | DAZ, as the addon's entry points and worker threads set
    alignas(64) float xs[16], pieces[3][16];
#pragma omp for schedule(static)
    for (int64_t chunk = 0; chunk < (int64_t(1) << 32) / kChunk; chunk++)
      for (uint64_t base = chunk * kChunk; base < (uint64_t)(chunk + 1) * kChunk; base += 16) {
        for (int i = 0; i < 16; i++) xs[i] = f_of((uint32_t)(base + i));
        __m512 out[3];
        uf::split<3>(_mm512_load_ps(xs), out);
        for (int p = 0; p < 3; p++) _mm512_store_ps(pieces[p], out[p]);
        for (int i = 0; i < 16; i++) {
          const float x = xs[i];
          if (!std::isnan(x))
            for (int p = 0; p < 3; p++)
              if (u_of(pieces[p][i]) & 0xffffu) n_bad_piece++;
          if (std::isnan(x)) {
            if (!std::isnan(pieces[0][i]) && !std::isnan(pieces[1][i]) && !std::isnan(pieces[2][i])) n_lost_nan++;
          } else if (std::fpclassify(x) == FP_SUBNORMAL) {
            for (int p = 0; p < 3; p++)
              if (std::fpclassify(pieces[p][i]) != FP_ZERO && std::fpclassify(pieces[p][i]) != FP_SUBNORMAL)
                n_bad_denormal++;
          } else if (std::isfinite(x) && std::fabs(x) <= bf16_max) {
            const double err =
                std::fabs((double)pieces[0][i] + (double)pieces[1][i] + (double)pieces[2][i] - (double)x);
            if (std::fabs(x) >= std::ldexp(1.0, -103)) {
              n_sum_checked++;
              if (err != 0) n_bad_sum++;
            } else {
              n_small++;
              if (err != 0) n_small_inexact++;
              if (!(err < std::ldexp(1.0, -126))) n_small_bad++;
            }
          }
        }
      }
  }
  std::printf("split<3> over all 2^32 floats: pieces not bf16 %llu; hi+mid+lo != x %llu of %llu with |x| >= 2^-103; "
              "below: %llu of %llu inexact, %llu off by 2^-126 or more; NaN lost %llu; denormal with a normal piece %llu\n",
              (unsigned long long)n_bad_piece, (unsigned long long)n_bad_sum, (unsigned long long)n_sum_checked,
              (unsigned long long)n_small_inexact, (unsigned long long)n_small, (unsigned long long)n_small_bad,
              (unsigned long long)n_lost_nan, (unsigned long long)n_bad_denormal);
  const bool ok = !n_bad_piece && !n_bad_sum && !n_small_bad && !n_lost_nan && !n_bad_denormal;
  std::puts(ok ? "ALL OK" : "FAILED");
  return ok ? 0 : 1;
}
#else
int main() {
  std::puts("skipped: this compiler does not target AVX-512F here, so there is no split to check (the addon then has "
            "no AMX engine either)");
  return 0;
}
#endif
