/**
 * The seam between TypeScript and the native core.
 *
 * Every kernel works on caller-owned, row-major, contiguous float32 buffers (Float32Array views; a
 * `subarray` view is fine: the native side honours its byte offset). Shapes are spelled in the
 * arguments, llm.c style. Kernels never allocate tensors the caller will see, never keep references,
 * and do all per-element work natively (OpenMP over both cores; matrix products through OpenBLAS).
 * A GPU backend can sit behind this same interface later.
 *
 * Conventions
 * - "accumulate" kernels ADD into their gradient outputs (so gradients of shared inputs sum);
 *   the caller zeroes them first.
 * - qkv activations are laid out per token as [3, N, H]: q heads, then k heads, then v heads.
 */
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import fs from 'node:fs';

export type F32 = Float32Array;
export type I32 = Int32Array;
export type U16 = Uint16Array;
export type F64 = Float64Array;
/** Half-precision bit patterns in a Uint16Array: 0 bf16, 1 IEEE binary16 (f16). */
export type HalfKind = 0 | 1;

export interface NativeKernels {
  /** Number of threads used by OpenMP kernels and OpenBLAS. */
  setNumThreads(n: number): void;
  getNumThreads(): number;
  /** Human-readable build info: OpenBLAS config string, core name, OpenMP threads. */
  info(): string;
  /**
   * The engine behind gemm: 'auto' (default; AMX-BF16 where the CPU has it and it is faster, with
   * float32 accuracy: each operand split into three bf16 pieces, six products), 'blas' (cblas_sgemm
   * only) or 'amx' (AMX wherever possible; for tests). Initial value: env UNFORGET_GEMM.
   */
  setGemmMode(mode: 'auto' | 'blas' | 'amx'): void;
  getGemmMode(): 'auto' | 'blas' | 'amx';
  /** Whether this build and machine can run the AMX GEMM. */
  gemmAmxAvailable(): boolean;

  // ---- matrix products (cblas_sgemm) ----
  /** C[M,N] = alpha * op(A) · op(B) + beta * C. op(A) is [M,K]: A is [M,K] (transA=false) or [K,M].
   *  op(B) is [K,N]: B is [K,N] (transB=false) or [N,K]. All contiguous row-major. */
  gemm(transA: boolean, transB: boolean, M: number, N: number, K: number, alpha: number,
       A: F32, B: F32, beta: number, C: F32): void;
  /** gemm with GELU fused into its output, each block as soon as it is final: kind 1, aux = gelu(C) (C keeps the
   *  pre-activation; aux may be C itself); kind 2, C = C · gelu'(aux). Values identical to gemm followed by
   *  geluForward (kind 1) or by a separate elementwise pass of C · gelu'(aux) (kind 2). */
  gemmGelu(transA: boolean, transB: boolean, M: number, N: number, K: number, alpha: number, A: F32, B: F32,
    beta: number, C: F32, kind: 1 | 2, aux: F32): void;
  /** gemm over sub-matrices given by their row strides (lda, ldb, ldc ≥ the row lengths): C = alpha·op(A)·op(B) +
   *  beta·C with op(A) [M, K], op(B) [K, N], C [M, N] inside buffers whose rows are lda, ldb, ldc apart. Always
   *  cblas_sgemm. For column blocks of a wider matrix (the per-module LoRA products of stacked projections). */
  gemmStrided(transA: boolean, transB: boolean, M: number, N: number, K: number, alpha: number, A: F32, lda: number,
    B: F32, ldb: number, beta: number, C: F32, ldc: number): void;
  /** Words (uint16) of op(B) [K, N] packed for gemmPacked: in the AMX engine's layout where the machine has AMX,
   *  else in float32 panels of 32 columns (native/f32_packed.cc; AVX-512F builds); 0 where neither exists. */
  gemmPackSize(N: number, K: number): number;
  /** Packs op(B) (B is [K,N], or [N,K] when transB) into `packed` (gemmPackSize(N, K) words) for
   *  gemmPacked. For a right operand used by many products: the frozen weights while decoding. */
  gemmPackB(transB: boolean, N: number, K: number, B: F32, packed: Uint16Array): boolean;
  /** gemm with op(B) also given packed (or null): uses the packing (on AMX from 8 rows up; the float32 panels from
   *  one row), else B. `packed` must hold gemmPackB(transB, N, K, B) of the same B, or the result is wrong. */
  gemmPacked(transA: boolean, transB: boolean, M: number, N: number, K: number, alpha: number, A: F32, B: F32,
             packed: Uint16Array | null, beta: number, C: F32): void;

  // ---- embedding ----
  /** out[r,:] = table[ids[r],:]; ids must be in [0,V) (checked; throws RangeError naming the row). */
  embeddingForward(out: F32, table: F32, ids: I32, rows: number, V: number, D: number): void;
  /** dtable[ids[r],:] += dout[r,:] (accumulate). */
  embeddingBackward(dtable: F32, dout: F32, ids: I32, rows: number, V: number, D: number): void;

  // ---- RMSNorm over rows of C: y = x / sqrt(mean(x^2) + eps), times a weight (gain) when given ----
  /** Writes y[R,C] = x·rstd·gain (gain [C]; null or absent: no weight) and rstd[R] = 1/sqrt(mean(x^2)+eps); eps
   *  defaults to 1e-6. Without gain and eps this is the gpt model's norm, bit for bit. */
  rmsnormForward(y: F32, rstd: F32, x: F32, R: number, C: number, gain?: F32 | null, eps?: number): void;
  /** Without gain: dx += (dy - y * mean(dy*y)) * rstd (accumulate). */
  rmsnormBackward(dx: F32, dy: F32, y: F32, rstd: F32, R: number, C: number): void;
  /** With gain, from the forward's input x and rstd: with x̂ = x·rstd, dx += (gain·dy − x̂·mean(gain·dy·x̂))·rstd
   *  and dgain[c] += Σ_r dy·x̂ (both accumulate; dgain null: skipped). The column sums run over the rows in order in
   *  float64, the same for any thread count. No output may alias an input. */
  rmsnormGainBackward(dx: F32, dgain: F32 | null, dy: F32, x: F32, rstd: F32, gain: F32, R: number, C: number): void;

  // ---- RoPE (base 10000, rotate-half; absolute position = pos0 + t) ----
  /** Fused q/k post-processing of the qkv projection, x and y both [B*T, 3, N, H]:
   *  y.q = RoPE(RMSNorm_H(x.q)), y.k = RoPE(RMSNorm_H(x.k)), y.v = x.v; rstd [B*T, 2, N].
   *  Position of token t of each sequence is pos0 + t. y may be x itself (in place; v is then left as it is). */
  qkNormRopeForward(y: F32, rstd: F32, x: F32, B: number, T: number, N: number, H: number, pos0: number): void;
  /** q/k preparation of the Hugging Face family. x and y are [B·T, (N + 2·Nkv)·H]: rows of [q heads | k heads |
   *  v heads]; the position of row b·T + t is pos0 + t. Each q and k head gets, by mode: 0 nothing, 1 RMSNorm over H
   *  (eps), 2 RMSNorm times gq [H] (q heads) or gk [H] (k heads); then rotate-half RoPE: with x1, x2 its halves and
   *  angle_i = pos·invFreq[i] (invFreq [H/2], e.g. ropeInvFreq; cos and sin in double, then rounded to float32),
   *  [x1·cos − x2·sin, x2·cos + x1·sin]. v is copied (y may be x: then v is left as it is). rstd [B·T, N + Nkv]
   *  is written when mode > 0 (may be null in mode 0); gq, gk are read only in mode 2. Writes y. */
  qkRopeForward(y: F32, rstd: F32 | null, x: F32, B: number, T: number, N: number, Nkv: number, H: number,
    pos0: number, invFreq: F64, mode: 0 | 1 | 2, gq: F32 | null, gk: F32 | null, eps: number): void;
  /** Its backward from the forward's input x (and rstd when mode > 0): dx written in the same layout, with respect
   *  to x (dx may be dy; v's gradient is copied through); in mode 2 dgq, dgk [H] accumulate (either may be null).
   *  The gains' sums are float64 per thread, added in thread order. */
  qkRopeBackward(dx: F32, dgq: F32 | null, dgk: F32 | null, dy: F32, x: F32, rstd: F32 | null, B: number, T: number,
    N: number, Nkv: number, H: number, pos0: number, invFreq: F64, mode: 0 | 1 | 2, gq: F32 | null,
    gk: F32 | null): void;

  // ---- causal softmax attention (scale 1/sqrt(H)), fused ----
  // Grouped-query attention: N query heads of size H share Nkv key/value heads (Nkv ≥ 1 divides N; default N, plain
  // multi-head attention); query head n uses key/value head ⌊n / (N/Nkv)⌋. Each token's qkv row is
  // [N·H q | Nkv·H k | Nkv·H v] ([3, N, H] when Nkv = N). H need not be D/N.
  /** Training form: qkv [B, T, N + 2·Nkv, H], out [B, T, N, H], lse [B, N, T]: the
   *  log-sum-exp of each row of scaled scores, saved for backward (which recomputes the softmax rows
   *  from it instead of storing B·N·T² probabilities).
   *  With qkRstd [B·T, 2N] (only with Nkv = N), q and k are raw: each head row of q and k gets RMSNorm over H and
   *  RoPE at its position (0..T-1) as it is loaded, as qkNormRopeForward would have done, and their rstd is
   *  written there. */
  attentionForward(out: F32, lse: F32, qkv: F32, B: number, T: number, N: number, H: number, qkRstd?: F32 | null,
    Nkv?: number): void;
  /** dqkv in qkv's layout, written (not accumulated); a key/value head's dk and dv are the sums over its query
   *  heads. lse (and qkRstd) from the forward on the same qkv; with qkRstd the gradient is with respect to the raw
   *  q and k. dqkv may be qkv itself. */
  attentionBackward(dqkv: F32, dout: F32, lse: F32, qkv: F32, B: number, T: number, N: number, H: number,
    qkRstd?: F32 | null, Nkv?: number): void;
  /** Decoding form: Tq new queries at absolute positions pos0..pos0+Tq-1 attend to cached keys and
   *  values 0..pos0+Tq-1. qkv [B, Tq, N + 2·Nkv, H]; kCache, vCache [B, Tmax, Nkv, H] hold positions < pos0,
   *  and the kernel first writes the new keys/values of qkv at pos0..pos0+Tq-1; out [B, Tq, N, H]. */
  attentionDecode(out: F32, qkv: F32, kCache: F32, vCache: F32, B: number, Tq: number, N: number, H: number,
                  Tmax: number, pos0: number, Nkv?: number): void;

  // ---- GELU (tanh approximation) ----
  geluForward(y: F32, x: F32, n: number): void;

  // ---- SwiGLU and biases (the Hugging Face family's MLP and Qwen2's q/k/v biases) ----
  /** gu [R, 2F] holds gate (columns [0, F)) and up ([F, 2F)); writes act [R, F] = silu(gate)·up, silu(z) = z/(1+e^−z). */
  swigluForward(act: F32, gu: F32, R: number, F: number): void;
  /** Writes dgu [R, 2F]: d gate = dact·up·silu′(gate), d up = dact·silu(gate). dgu may be gu (written over it). */
  swigluBackward(dgu: F32, dact: F32, gu: F32, R: number, F: number): void;
  /** y[r, :] += b (b [C]; accumulate). */
  biasForward(y: F32, b: F32, R: number, C: number): void;
  /** db[c] += Σ_r dy[r, c] (accumulate; rows summed in order in float64, the same for any thread count). */
  biasBackward(db: F32, dy: F32, R: number, C: number): void;

  // ---- frozen weights in half precision (kind 0 bf16, 1 IEEE f16, bit patterns in a Uint16Array) ----
  /** dst[i] = src[i] widened to float32, exactly (subnormals, ±0, ±inf, NaN with its payload). Writes dst. */
  widenHalf(dst: F32, src: U16, n: number, kind: HalfKind): void;
  /** dst[i] = src[i] rounded to the nearest half, ties to even; NaN stays NaN (made quiet); f16 overflow gives ±inf,
   *  as bf16's does past its range. Writes dst. */
  narrowHalf(dst: U16, src: F32, n: number, kind: HalfKind): void;
  /** out[r,:] = widened table[ids[r],:] (table [V, D] half); ids in [0, V) (RangeError naming the row). Writes out. */
  embeddingForwardHalf(out: F32, table: U16, kind: HalfKind, ids: I32, rows: number, V: number, D: number): void;
  /** gemm with a half B: C = alpha·op(A)·op(widen(B)) + beta·C (B [K, N], or [N, K] when transB: transformers'
   *  [out, in] weight for y = x·Wᵀ). No float32 copy of B is made: blocks of up to 256 columns of op(B) are widened
   *  into per-thread scratch and multiplied by sgemm. Values are sgemm's on the widened B; beta = 0 never reads C. */
  gemmHalfB(transA: boolean, transB: boolean, M: number, N: number, K: number, alpha: number, A: F32, B: U16,
    kind: HalfKind, beta: number, C: F32): void;
  /** gemmPackB from a half B (widened 256 columns at a time): the same words as gemmPackB on widenHalf(B), for
   *  gemmPacked with that widened B. */
  gemmPackBHalf(transB: boolean, N: number, K: number, B: U16, kind: HalfKind, packed: U16): boolean;

  // ---- losses over logits [R, V] ----
  /** Weighted cross-entropy: returns sum_r w[r] * (logsumexp(logits[r]) - logits[r, targets[r]]).
   *  Rows with w[r] == 0 are skipped (their target may be anything). rowLoss[r] (if given) gets the
   *  unweighted per-row loss (0 for skipped rows). dlogits (if given) is WRITTEN with
   *  gradScale * w[r] * (softmax(logits[r]) - onehot(target)); it may be logits itself (the gradient then
   *  replaces the logits). Targets must be in [0,V) (RangeError). */
  crossEntropy(logits: F32, targets: I32, weights: F32, R: number, V: number,
               rowLoss: F32 | null, dlogits: F32 | null, gradScale: number): number;
  /** Weighted KL(p‖q) with p = softmax(logitsP) (reference, no gradient), q = softmax(logitsQ):
   *  returns sum_r w[r] * sum_v p (log p − log q). dlogitsQ (if given) is WRITTEN with
   *  gradScale * w[r] * (softmax(logitsQ[r]) − softmax(logitsP[r])). */
  klDiv(logitsP: F32, logitsQ: F32, weights: F32, R: number, V: number,
        rowLoss: F32 | null, dlogitsQ: F32 | null, gradScale: number): number;

  // ---- optimizers (in place over the whole flat parameter) ----
  /** AdamW (decoupled): p -= lr*wd*p; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g²;
   *  p -= lr * (m/bc1) / (sqrt(v/bc2) + eps), with bc1 = 1-b1^t, bc2 = 1-b2^t given by the caller. */
  adamwStep(p: F32, g: F32, m: F32, v: F32, n: number, lr: number, b1: number, b2: number, eps: number,
            wd: number, bc1: number, bc2: number): void;
  /** p -= lr * (g + wd * p). */
  sgdStep(p: F32, g: F32, n: number, lr: number, wd: number): void;

  // ---- small vector helpers ----
  /** y += a * x */
  axpy(n: number, a: number, x: F32, y: F32): void;
  /** out = x + y (out may be x or y). */
  add(n: number, x: F32, y: F32, out: F32): void;
  /** sum of squares in float64; NaN/Inf propagate. */
  sumSquares(x: F32, n: number): number;
  /** sum of squares of (x - y) in float64. */
  diffSumSquares(x: F32, y: F32, n: number): number;

  // ---- sampling ----
  /** For each row r of logits [R, V]: temperature <= 0 → argmax; else sample from
   *  softmax(logits/temperature) restricted to the topK largest (topK <= 0 or >= V: all), then, with topP in
   *  (0, 1) (absent or 1: off), to the nucleus: the smallest set of the most probable tokens whose probability sums
   *  to at least topP (ties in vocabulary order), renormalised; using the uniform number u[r] in [0,1).
   *  Writes out[r]. */
  sampleRows(logits: F32, R: number, V: number, temperature: number, topK: number, u: Float64Array, out: I32,
    topP?: number): void;
}

function findAddon(): string {
  const here = path.dirname(fileURLToPath(import.meta.url));
  // dist/src/backend -> package root is three levels up; src/backend (ts-node style) two.
  for (const up of ['../../..', '../..']) {
    for (const cfg of ['Release', 'Debug']) {
      const p = path.resolve(here, up, 'build', cfg, 'unforget_native.node');
      if (fs.existsSync(p)) return p;
    }
  }
  throw new Error('native core not built: build/Release/unforget_native.node is missing (run `npm install` or `npx node-gyp rebuild`)');
}

let cached: NativeKernels | null = null;

/** The native kernel set (loaded once). */
export function native(): NativeKernels {
  if (cached) return cached;
  const require = createRequire(import.meta.url);
  cached = require(findAddon()) as NativeKernels;
  const env = process.env.UNFORGET_THREADS;
  if (env !== undefined && env !== '') cached.setNumThreads(Number(env));
  return cached;
}
