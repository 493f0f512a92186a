// AMX-BF16 GEMM with float32 accuracy (amx_gemm.cc). Same convention as gemm() in kernels.h.
#pragma once

// True when this build has the AMX kernel and the OS lets this process use AMX tiles.
bool amx_available();

// C = alpha·op(A)·op(B) + beta·C, row-major. Returns false (and does nothing) when AMX cannot be used.
// Must not be called from inside an OpenMP parallel region or concurrently with itself.
bool amx_gemm(bool ta, bool tb, int M, int N, int K, float alpha, const float* A, const float* B, float beta, float* C);
