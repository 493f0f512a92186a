// Native kernels of unforget: plain forward/backward functions over explicit float32 buffers,
// shapes spelled in the arguments (llm.c style). No allocation visible to the caller, no state.
// Semantics of every function are documented in src/backend/native.ts (the seam).
#pragma once
#include <cstddef>
#include <cstdint>

namespace uf {

void set_num_threads(int n);
// Set FTZ/DAZ on the calling thread.
void enable_flush_denormals();
int get_num_threads();

void gemm(bool ta, bool tb, int M, int N, int K, float alpha, const float* A, const float* B, float beta, float* C);
// Which engine gemm() uses: 0 auto (AMX-BF16, or without AMX the float32 packed kernel, for the products the rules in
// kernels.cc give them; cblas_sgemm for the rest), 1 cblas_sgemm only, 2 AMX wherever possible. Initial value from
// UNFORGET_GEMM=auto|blas|amx (default auto).
void set_gemm_mode(int mode);
int get_gemm_mode();
// True when gemm() can use the AMX kernel on this machine (build and OS support).
bool gemm_amx_available();
// A right operand used by many products (frozen weights while decoding), packed once: for the AMX engine where the
// machine has AMX, else in float32 panels (f32_packed.h; AVX-512F builds). gemm_pack_size gives its uint16 words
// (0 with neither), gemm_pack_b fills them from op(B) [K, N] (transposed when tb). gemm_packed is gemm(ta, tb, ...)
// that uses `packed` (when not null and the engine is not sgemm; on AMX from M ≥ 8) or else B itself; packed must
// come from gemm_pack_b with the same tb, N, K and B.
size_t gemm_pack_size(int N, int K);
bool gemm_pack_b(bool tb, int N, int K, const float* B, uint16_t* packed);
void gemm_packed(bool ta, bool tb, int M, int N, int K, float alpha, const float* A, const float* B,
                 const uint16_t* packed, float beta, float* C);
// gemm with GELU fused into its output (C = alpha·op(A)·op(B) + beta·C, then kind 1: aux = gelu(C), C kept;
// kind 2: C = C · gelu'(aux)). Identical values to gemm followed by gelu_forward, or by a separate pass of C · gelu'(aux).
void gemm_gelu(bool ta, bool tb, int M, int N, int K, float alpha, const float* A, const float* B, float beta,
               float* C, int kind, float* aux);

// returns -1 if all ids valid, else the first offending row
int64_t embedding_forward(float* out, const float* table, const int32_t* ids, int64_t rows, int V, int D);
int64_t embedding_backward(float* dtable, const float* dout, const int32_t* ids, int64_t rows, int V, int D);

inline constexpr float kRmsEps = 1e-6f;

// y = x·rstd (·gain[c] when gain is not null), rstd = 1/sqrt(mean(x²) + eps).
void rmsnorm_forward(float* y, float* rstd, const float* x, int64_t R, int C, const float* gain = nullptr,
                     float eps = kRmsEps);
void rmsnorm_backward(float* dx, const float* dy, const float* y, const float* rstd, int64_t R, int C);
// RoPE's cos/sin for positions pos0 .. pos0+T-1 of head size H (row p at offset p·H/2), computed once in double
// and kept; valid until the next call with another H.
void rope_tables(const float*& cs, const float*& sn, int T, int H, int pos0);

void qk_norm_rope_forward(float* y, float* rstd, const float* x, int B, int T, int N, int H, int pos0);

// qkv rows [N·H q | Nkv·H k | Nkv·H v] per token (grouped-query attention: N % Nkv == 0, query head n uses
// key/value head n / (N/Nkv); Nkv = N is plain multi-head attention); out [B, T, N, H].
// lse [B, N, T]: each score row's log-sum-exp (scaled scores), saved for the backward pass.
// With qk_rstd (only with Nkv == N), q and k of qkv are raw: each head row of q and k gets RMSNorm over H and RoPE
// at its position (0..T-1) on load, as qk_norm_rope_forward would have done in place, and the forward writes their
// rstd there ([B·T, 2N]: the N q heads, then the N k heads); the backward takes the forward's and returns the
// gradient with respect to the raw q and k. dqkv (same layout as qkv; a key/value head's dK and dV are summed over
// its query heads) may be qkv itself (each head is read in full before it is written).
void attention_forward(float* out, float* lse, const float* qkv, int B, int T, int N, int H, float* qk_rstd, int Nkv);
void attention_backward(float* dqkv, const float* dout, const float* lse, const float* qkv, int B, int T, int N,
                        int H, const float* qk_rstd, int Nkv);
// Decoding: appends the Tq new keys/values of qkv to the caches [B, Tmax, Nkv, H] at pos0.., then attends (see
// native.ts).
void attention_decode(float* out, const float* qkv, float* kcache, float* vcache, int B, int Tq, int N, int H,
                      int Tmax, int pos0, int Nkv);

void gelu_forward(float* y, const float* x, int64_t n);

// Returns the weighted loss sum; a target outside [0, V) in a row of nonzero weight is reported in *bad_row (else
// -1) and then nothing is computed.
double cross_entropy(const float* logits, const int32_t* targets, const float* w, int64_t R, int V, float* row_loss,
                     float* dlogits, float grad_scale, int64_t* bad_row);
double kl_div(const float* lp, const float* lq, const float* w, int64_t R, int V, float* row_loss, float* dlq,
              float grad_scale);

void adamw_step(float* p, const float* g, float* m, float* v, int64_t n, float lr, float b1, float b2, float eps,
                float wd, float bc1, float bc2);
void sgd_step(float* p, const float* g, int64_t n, float lr, float wd);

void axpy(int64_t n, float a, const float* x, float* y);
// out = x + y (out may alias x or y)
void add(int64_t n, const float* x, const float* y, float* out);
double sum_squares(const float* x, int64_t n);
double diff_sum_squares(const float* x, const float* y, int64_t n);

// top_p < 1: nucleus sampling after temperature and top-k (1: off).
void sample_rows(const float* logits, int64_t R, int V, float temperature, int top_k, const double* u, int32_t* out,
                 double top_p = 1.0);

// ---- the Hugging Face family's kernels (hf_kernels.cc; semantics in native.ts) ----
// RMSNorm with a weight, backward: dx += (gain·dy − x̂·mean(gain·dy·x̂))·rstd, dgain[c] += Σ_r dy·x̂ (dgain may be
// null), x̂ = x·rstd.
void rmsnorm_gain_backward(float* dx, float* dgain, const float* dy, const float* x, const float* rstd,
                           const float* gain, int64_t R, int C);
// q and k heads of rows [q heads | k heads | v heads] ((N + 2·Nkv)·H wide): mode 0 none, 1 RMSNorm over H, 2 RMSNorm
// times gq / gk; then rotate-half RoPE at pos0 + t with the given inverse frequencies (H/2). v copied unless y == x.
void qk_rope_forward(float* y, float* rstd, const float* x, int B, int T, int N, int Nkv, int H, int pos0,
                     const double* inv_freq, int mode, const float* gq, const float* gk, float eps);
// Its backward: dx written (may be dy), v's gradient copied; dgq, dgk accumulated in mode 2 (either may be null).
void qk_rope_backward(float* dx, float* dgq, float* dgk, const float* dy, const float* x, const float* rstd, int B,
                      int T, int N, int Nkv, int H, int pos0, const double* inv_freq, int mode, const float* gq,
                      const float* gk);
// gu [R, 2F] = [gate | up]; act [R, F] = silu(gate)·up. Backward writes dgu (may be gu).
void swiglu_forward(float* act, const float* gu, int64_t R, int F);
void swiglu_backward(float* dgu, const float* dact, const float* gu, int64_t R, int F);
// y[r, :] += b; db[c] += Σ_r dy[r, c].
void bias_forward(float* y, const float* b, int64_t R, int C);
void bias_backward(float* db, const float* dy, int64_t R, int C);
// Half-precision bit patterns: kind 0 bf16, kind 1 IEEE binary16.
void widen_half(float* dst, const uint16_t* src, int64_t n, int kind);
void narrow_half(uint16_t* dst, const float* src, int64_t n, int kind);
// As embedding_forward, from a half table.
int64_t embedding_forward_half(float* out, const uint16_t* table, int kind, const int32_t* ids, int64_t rows, int V,
                               int D);
// gemm with a half B (op(B) [K, N]), widened a block of columns of C at a time; sgemm per block.
void gemm_half_b(bool ta, bool tb, int M, int N, int K, float alpha, const float* A, const uint16_t* B, int kind,
                 float beta, float* C);
// gemm_pack_b from a half B, widened a block of columns at a time.
bool gemm_pack_b_half(bool tb, int N, int K, const uint16_t* B, int kind, uint16_t* packed);

}  // namespace uf
