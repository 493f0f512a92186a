// float32 GEMM with a packed right operand (f32_packed.cc), for machines without AMX: the decoder's products (B packed
// once) and training's narrow activation products (B packed per call).
// Same convention as gemm() in kernels.h; built for AVX-512F, otherwise the size is 0 and nothing is packed.
#pragma once
#include <cstddef>
#include <cstdint>

// uint16 words of op(B) [K, N] packed (panels of 32 columns, k-major, float32), 0 without AVX-512F.
size_t f32_packed_b_size(int N, int K);
// Packs op(B) (B is [K, N], or [N, K] when tb) into f32_packed_b_size(N, K) words (4-byte aligned).
bool f32_pack_b(bool tb, int N, int K, const float* B, uint16_t* packed);
// C = alpha·op(A)·(packed op(B)) + beta·C. Returns false (and does nothing) for K = 0, alpha = 0 or an unaligned
// packing; the caller then multiplies by B itself. Must not be called from inside an OpenMP parallel region.
bool f32_gemm_packed(bool ta, int M, int N, int K, float alpha, const float* A, const uint16_t* packed, float beta,
                     float* C);

// The same engine for a B not packed beforehand (the activation products of training on machines without AMX): B is
// packed into a buffer kept between calls, the threads split C's rows. ep: a step fused into each 8 × 32 block
// as soon as it is final (amx_gemm.h), nullptr for none. Returns false (does nothing) where f32_gemm_packed would.
struct GemmEpilogue;
bool f32_gemm(bool ta, bool tb, int M, int N, int K, float alpha, const float* A, const float* B, float beta,
              float* C, const GemmEpilogue* ep);
