/**
 * The seam's matrix products with named options instead of positional flags, so that a call site reads as
 * the product it computes: `gemm(C, A, B, M, N, K, { transA: true, beta: 1 })` is C += Aᵀ·B. Shapes stay
 * positional, llm.c style: op(A) is [M, K], op(B) is [K, N], C is [M, N]; all buffers row-major.
 */
import { native } from './native.js';

export interface GemmOptions {
  /** A is stored [K, M] (default: [M, K]). */
  transA?: boolean;
  /** B is stored [N, K] (default: [K, N]). */
  transB?: boolean;
  /** Scale of the product (default 1). */
  alpha?: number;
  /** Scale of C's old contents (default 0: C is written, and its old contents are not read). */
  beta?: number;
}

/** C = alpha · op(A) · op(B) + beta · C. */
export function gemm(C: Float32Array, A: Float32Array, B: Float32Array, M: number, N: number, K: number, o: GemmOptions = {}): void {
  native().gemm(o.transA ?? false, o.transB ?? false, M, N, K, o.alpha ?? 1, A, B, o.beta ?? 0, C);
}

/** GELU fused into a product's output, each block as soon as it is final. */
export type GeluEpilogue =
  /** C keeps the pre-activation and `act` gets gelu(C) (act may be C itself). */
  | { gelu: 'forward'; act: Float32Array }
  /** C = (product) · gelu'(pre): the gradient through GELU of the pre-activation `pre`. */
  | { gelu: 'backward'; pre: Float32Array };

/** gemm with GELU fused (see GeluEpilogue); values identical to gemm followed by the separate GELU kernels. */
export function gemmGelu(C: Float32Array, A: Float32Array, B: Float32Array, M: number, N: number, K: number,
  epilogue: GeluEpilogue, o: GemmOptions = {}): void {
  const [kind, aux] = epilogue.gelu === 'forward' ? [1 as const, epilogue.act] : [2 as const, epilogue.pre];
  native().gemmGelu(o.transA ?? false, o.transB ?? false, M, N, K, o.alpha ?? 1, A, B, o.beta ?? 0, C, kind, aux);
}

/** gemm with op(B) also given packed for gemmPacked (or null: B as it is); `packed` must be a packing of this B. */
export function gemmPacked(C: Float32Array, A: Float32Array, B: Float32Array, packed: Uint16Array | null,
  M: number, N: number, K: number, o: GemmOptions = {}): void {
  native().gemmPacked(o.transA ?? false, o.transB ?? false, M, N, K, o.alpha ?? 1, A, B, packed, o.beta ?? 0, C);
}
