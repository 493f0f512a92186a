// AMX-BF16 GEMM with float32 accuracy (amx_gemm.cc). Same convention as gemm() in kernels.h.
#pragma once

// True when this build has the AMX kernel and the OS lets this process use AMX tiles.
bool amx_available();

// C = alpha·op(A)·op(B) + beta·C, row-major. Returns false (and does nothing) when AMX cannot be used.
// Must not be called from inside an OpenMP parallel region or concurrently with itself.
bool amx_gemm(bool ta, bool tb, int M, int N, int K, float alpha, const float* A, const float* B, float beta, float* C);

// Pre-packed right operand, for a B used by many calls (frozen weights while sampling). amx_packed_b_size
// gives the number of uint16 words of op(B) [K, N] packed; amx_pack_b fills them (false without AMX).
// amx_gemm_packed is amx_gemm with that packing of op(B) instead of B (no operand swap).
#include <cstddef>
#include <cstdint>
size_t amx_packed_b_size(int N, int K);
bool amx_pack_b(bool tb, int N, int K, const float* B, uint16_t* packed);
bool amx_gemm_packed(bool ta, int M, int N, int K, float alpha, const float* A, const uint16_t* packed, float beta,
                     float* C);

// An elementwise step on C fused into the product, applied to each 32×32 block as soon as its value is
// final (while it is in cache): kind 1, y = gelu(C) (C keeps the pre-activation); kind 2, C = C · gelu'(x).
// y and x have C's layout. amx_gemm_ep is amx_gemm with such a step (nullptr: none).
struct GemmEpilogue {
  int kind;
  float* y;
  const float* x;
};
bool amx_gemm_ep(bool ta, bool tb, int M, int N, int K, float alpha, const float* A, const float* B, float beta,
                 float* C, const GemmEpilogue* ep);
// The step on rows [i0, i1) × columns [j0, j1) of C (leading dimension ldc); defined in kernels.cc.
namespace uf {
void gemm_epilogue_block(const GemmEpilogue& ep, float* C, int ldc, int i0, int i1, int j0, int j1);
}
