/**
 * Differentiable operations. Each is one native forward kernel and, when a graph is recorded, one
 * closure calling the matching native backward kernel. Shapes are checked here so that native
 * code only ever sees consistent sizes.
 */
import { gemm, gemmGelu } from '../backend/gemm.js';
import { native } from '../backend/native.js';
import { HalfWeight, type Weight } from './half.js';
import { alloc } from './pool.js';
import { Tensor, isGradEnabled, numel, type Shape } from './tensor.js';

const K = () => native();

function needsGrad(...ts: Tensor[]): boolean {
  return isGradEnabled() && ts.some((t) => t.requiresGrad);
}

function record(out: Tensor, parents: Tensor[], fn: (g: Float32Array) => void): Tensor {
  out.requiresGrad = true;
  out.parents = parents;
  out.backwardFn = () => {
    if (out.grad) fn(out.grad);
  };
  return out;
}

/** Add `src` into t's gradient; takes ownership of `src` when t has none yet (no copy). */
function accumulate(t: Tensor, src: Float32Array): void {
  if (!t.requiresGrad) return;
  if (!t.grad) t.grad = src;
  else K().axpy(src.length, 1, src, t.grad);
}

function check(cond: boolean, msg: string): void {
  if (!cond) throw new Error(msg);
}

function rows2(t: Tensor): [number, number] {
  const c = t.shape[t.shape.length - 1]!;
  return [t.size / c, c];
}

/**
 * Matrix product over the last dimension: x [..., K] · W [K, N] → [..., N];
 * with transW, W is [N, K] and the product is x · Wᵀ (used for logits = h · embed_outᵀ).
 */
export function matmul(x: Tensor, w: Weight, { transW = false }: { transW?: boolean } = {}): Tensor {
  const [M, Kx] = rows2(x);
  check(w.shape.length === 2, `matmul: weight must be 2-D, got [${w.shape}]`);
  const [Kw, N] = transW ? [w.shape[1]!, w.shape[0]!] : [w.shape[0]!, w.shape[1]!];
  check(Kx === Kw, `matmul: inner dimensions differ (${Kx} vs ${Kw})`);
  const outShape = [...x.shape.slice(0, -1), N];
  const out = Tensor.empty(outShape);
  weightProduct(out.data, x.data, w, M, N, Kx, transW, 0);
  const parents = w instanceof HalfWeight ? [x] : [x, w];
  if (!needsGrad(...parents)) return out;
  return record(out, parents, (g) => productBackward(x, w, transW, g, M, Kx, N));
}

/** C = A · op(W) + beta·C for a float32 or half-precision weight (widened on the fly). */
function weightProduct(C: Float32Array, A: Float32Array, w: Weight, M: number, N: number, K: number, transW: boolean, beta: number): void {
  if (w instanceof HalfWeight) K_().gemmHalfB(false, transW, M, N, K, 1, A, w.data, w.kind, beta, C);
  else gemm(C, A, w.data, M, N, K, { transB: transW, beta });
}
const K_ = () => native();

/** The backward of x · op(W) (x [M, K], op(W) [K, N]) for the upstream gradient g [M, N]. */
function productBackward(x: Tensor, w: Weight, transW: boolean, g: Float32Array, M: number, Kx: number, N: number): void {
  if (x.requiresGrad) {
    // Written (beta 0) into a fresh buffer when x has no gradient yet, else added.
    const fresh = !x.grad;
    if (fresh) x.grad = alloc(x.size, false);
    weightProduct(x.grad!, g, w, M, Kx, N, !transW, fresh ? 0 : 1);
  }
  if (w instanceof Tensor && w.requiresGrad) {
    // dW = xᵀ g ([K,N]) or, transposed, gᵀ x ([N,K])
    if (transW) gemm(w.gradBuffer(), g, x.data, N, Kx, M, { transA: true, beta: 1 });
    else gemm(w.gradBuffer(), x.data, g, Kx, N, M, { transA: true, beta: 1 });
  }
}

/**
 * The residual update x + a · W ([..., K] · [K, N] with x [..., N]), written over x's buffer: the product
 * is accumulated onto x (gemm with beta 1) instead of going to a new buffer and then through an add. x's
 * values must not be needed afterwards by anything but this op (true of the model's residual stream: the
 * norm that read x keeps its own output, and nothing else reads x). The gradient flows to x unchanged
 * (x takes the buffer) and to a and W as in matmul.
 */
export function residualMatmul(x: Tensor, a: Tensor, w: Weight, { transW = false }: { transW?: boolean } = {}): Tensor {
  const [M, Ka] = rows2(a);
  check(w.shape.length === 2 && w.shape[transW ? 1 : 0] === Ka,
    `residualMatmul: weight must be ${transW ? `[N, ${Ka}]` : `[${Ka}, N]`}, got [${w.shape}]`);
  const N = w.shape[transW ? 0 : 1]!;
  check(x.size === M * N, `residualMatmul: residual has ${x.size} elements, the product ${M * N}`);
  const out = new Tensor(x.data, x.shape);
  weightProduct(out.data, a.data, w, M, N, Ka, transW, 1);
  const parents = w instanceof HalfWeight ? [x, a] : [x, a, w];
  if (!needsGrad(...parents)) return out;
  return record(out, parents, (g) => {
    productBackward(a, w, transW, g, M, Ka, N);
    if (x.requiresGrad) accumulate(x, g); // last: x may take g itself
  });
}

/** One low-rank adapter on a block of output columns of a product (a transformers module inside a stacked
 *  projection): columns [col, col + rows) get s·(x·Aᵀ)·Bᵀ with A [r, K] and B [rows, r]. */
export interface ColumnAdapter {
  col: number;
  rows: number;
  A: Tensor;
  B: Tensor;
  scale: number;
}

/**
 * x · Wᵀ (W [N, K], frozen: float32 without gradient or half precision) plus LoRA updates computed as PEFT does,
 * factor by factor, never forming W + ΔW: the backward needs no [N, K] weight gradient, only the small ones of A and
 * B. With `residual` the result is accumulated onto it in place (as residualMatmul).
 */
export function adaptedMatmul(x: Tensor, w: Weight, adapters: ColumnAdapter[], residual: Tensor | null = null): Tensor {
  const [M, Kx] = rows2(x);
  check(w.shape.length === 2 && w.shape[1] === Kx, `adaptedMatmul: weight must be [N, ${Kx}], got [${w.shape}]`);
  const N = w.shape[0]!;
  const out = residual ? new Tensor(residual.data, residual.shape) : Tensor.empty([...x.shape.slice(0, -1), N]);
  check(out.size === M * N, `adaptedMatmul: residual has ${out.size} elements, the product ${M * N}`);
  weightProduct(out.data, x.data, w, M, N, Kx, true, residual ? 1 : 0);
  const k = K();
  const us: Float32Array[] = [];
  for (const a of adapters) {
    const r = a.A.shape[0]!;
    check(a.A.shape[1] === Kx && a.B.shape[0] === a.rows && a.B.shape[1] === r && a.col + a.rows <= N, 'adaptedMatmul: adapter shapes');
    const u = alloc(M * r, false);
    gemm(u, x.data, a.A.data, M, r, Kx, { transB: true }); // x · Aᵀ
    k.gemmStrided(false, true, M, a.rows, r, a.scale, u, r, a.B.data, r, 1, out.data.subarray(a.col), N);
    us.push(u);
  }
  const parents = [x, ...(residual ? [residual] : []), ...adapters.flatMap((a) => [a.A, a.B])];
  if (!needsGrad(...parents)) return out;
  return record(out, parents, (g) => {
    const fresh = x.requiresGrad && !x.grad;
    if (x.requiresGrad) {
      if (fresh) x.grad = alloc(x.size, false);
      weightProduct(x.grad!, g, w, M, Kx, N, false, fresh ? 0 : 1);
    }
    adapters.forEach((a, i) => {
      const r = a.A.shape[0]!;
      const gm = g.subarray(a.col);
      const v = alloc(M * r, false);
      k.gemmStrided(false, false, M, r, a.rows, a.scale, gm, N, a.B.data, r, 0, v, r); // s·G·B
      if (a.B.requiresGrad) k.gemmStrided(true, false, a.rows, r, M, a.scale, gm, N, us[i]!, r, 1, a.B.gradBuffer(), r); // dB += s·Gᵀ·U
      if (a.A.requiresGrad) gemm(a.A.gradBuffer(), v, x.data, r, Kx, M, { transA: true, beta: 1 }); // dA += Vᵀ·x
      if (x.requiresGrad) gemm(x.grad!, v, a.A.data, M, Kx, r, { beta: 1 }); // dx += V·A
    });
    if (residual?.requiresGrad) accumulate(residual, g); // last: the residual may take g itself
  });
}

/**
 * The MLP block with its residual: x + gelu(a · W_up) · W_down, written over x's buffer as residualMatmul.
 * GELU runs inside the products (gemmGelu): the up product writes the pre-activation and its GELU block by
 * block while each block is in cache, and in the backward the product g · W_downᵀ comes out already
 * multiplied by gelu'(pre-activation), instead of two more passes over [rows, F] buffers.
 */
export function residualMlp(x: Tensor, a: Tensor, wUp: Tensor, wDown: Tensor): Tensor {
  const [M, D] = rows2(a);
  check(wUp.shape.length === 2 && wUp.shape[0] === D, `residualMlp: up weight must be [${D}, F], got [${wUp.shape}]`);
  const F = wUp.shape[1]!;
  check(wDown.shape.length === 2 && wDown.shape[0] === F, `residualMlp: down weight must be [${F}, N], got [${wDown.shape}]`);
  const N = wDown.shape[1]!;
  check(x.size === M * N, `residualMlp: residual has ${x.size} elements, the block makes ${M * N}`);
  const grad = needsGrad(x, a, wUp, wDown);
  // Without a graph the pre-activation is not kept: GELU is applied in place.
  const pre = alloc(M * F, false);
  const act = grad ? alloc(M * F, false) : pre;
  gemmGelu(pre, a.data, wUp.data, M, F, D, { gelu: 'forward', act });
  const out = new Tensor(x.data, x.shape);
  gemm(out.data, act, wDown.data, M, N, F, { beta: 1 });
  if (!grad) return out;
  return record(out, [x, a, wUp, wDown], (g) => {
    if (wDown.requiresGrad) gemm(wDown.gradBuffer(), act, g, F, N, M, { transA: true, beta: 1 });
    if (a.requiresGrad || wUp.requiresGrad) {
      const dpre = alloc(M * F, false);
      gemmGelu(dpre, g, wDown.data, M, F, N, { gelu: 'backward', pre }, { transB: true });
      productBackward(a, wUp, false, dpre, M, D, F);
    }
    if (x.requiresGrad) accumulate(x, g); // last: x may take g itself
  });
}

/** a + b (same shape). */
export function add(a: Tensor, b: Tensor): Tensor {
  check(a.size === b.size, `add: sizes differ (${a.size} vs ${b.size})`);
  const out = new Tensor(alloc(a.size, false), a.shape);
  K().add(out.size, a.data, b.data, out.data);
  if (!needsGrad(a, b)) return out;
  return record(out, [a, b], (g) => {
    // b gets a copy of g (or adds it); then a takes g itself when it has no gradient yet (the residual
    // stream: no copy), which backward() sees and does not hand g back to the pool.
    if (b.requiresGrad) {
      if (b.grad) K().axpy(g.length, 1, g, b.grad);
      else (b.grad = alloc(g.length, false)).set(g);
    }
    if (a.requiresGrad) accumulate(a, g);
  });
}

/** Row blocks stacked: parts [r_i, C] (or null: r_i zero rows) → [Σ r_i, C]; gradients flow back to each part. */
export function concatRows(parts: Array<Tensor | { rows: number } >, C: number): Tensor {
  const rows = parts.map((p) => (p instanceof Tensor ? p.size / C : p.rows));
  const total = rows.reduce((a, b) => a + b, 0);
  const out = new Tensor(alloc(total * C, true), [total, C]);
  let at = 0;
  parts.forEach((p, i) => {
    if (p instanceof Tensor) out.data.set(p.data, at);
    at += rows[i]! * C;
  });
  const tensors = parts.filter((p): p is Tensor => p instanceof Tensor);
  if (!needsGrad(...tensors)) return out;
  return record(out, tensors, (g) => {
    let from = 0;
    parts.forEach((p, i) => {
      const n = rows[i]! * C;
      if (p instanceof Tensor && p.requiresGrad) {
        const part = g.subarray(from, from + n);
        if (p.grad) K().axpy(n, 1, part, p.grad);
        else (p.grad = alloc(n, false)).set(part);
      }
      from += n;
    });
  });
}

/** s·x (a new buffer). */
export function scale(x: Tensor, s: number): Tensor {
  const out = new Tensor(alloc(x.size, true), x.shape);
  K().axpy(x.size, s, x.data, out.data);
  if (!needsGrad(x)) return out;
  return record(out, [x], (g) => {
    if (x.grad) K().axpy(g.length, s, g, x.grad);
    else {
      const d = alloc(g.length, true);
      K().axpy(g.length, s, g, d);
      x.grad = d;
    }
  });
}

/** Scalar combination Σ coeffs[i]·xs[i] of scalar tensors (the total loss). */
export function weightedSum(xs: Tensor[], coeffs: number[]): Tensor {
  let v = 0;
  xs.forEach((x, i) => (v += coeffs[i]! * x.item()));
  const out = new Tensor(new Float32Array([v]), []);
  if (!needsGrad(...xs)) return out;
  return record(out, xs, (g) => {
    xs.forEach((x, i) => {
      if (x.requiresGrad) x.gradBuffer()[0]! += g[0]! * coeffs[i]!;
    });
  });
}

/** Rows of `table` [V, D] picked by ids → [ids.length, D]. */
export function embedding(table: Weight, ids: Int32Array, shape?: Shape): Tensor {
  const [V, D] = [table.shape[0]!, table.shape[1]!];
  const out = Tensor.empty(shape ?? [ids.length, D]);
  check(out.size === ids.length * D, 'embedding: output shape does not match ids');
  if (table instanceof HalfWeight) {
    K().embeddingForwardHalf(out.data, table.data, table.kind, ids, ids.length, V, D);
    return out;
  }
  K().embeddingForward(out.data, table.data, ids, ids.length, V, D);
  if (!needsGrad(table)) return out;
  return record(out, [table], (g) => K().embeddingBackward(table.gradBuffer(), g, ids, ids.length, V, D));
}

/**
 * RMSNorm over the last dimension: x / sqrt(mean(x²) + eps), times `gain` when given (the Hugging Face models'
 * weight; gpt has none). eps defaults to gpt's 1e-6.
 */
export function rmsnorm(x: Tensor, gain: Tensor | null = null, eps = 1e-6, { into }: ScratchOptions = {}): Tensor {
  const [R, C] = rows2(x);
  if (gain) check(gain.size === C, `rmsnorm: gain has ${gain.size} elements for rows of ${C}`);
  check(!into || (gain !== null && into.length === x.size), 'rmsnorm: a scratch output needs a gain and the size of x');
  const out = into ? new Tensor(into, x.shape) : Tensor.empty(x.shape);
  const rstd = alloc(R, false);
  K().rmsnormForward(out.data, rstd, x.data, R, C, gain ? gain.data : null, eps);
  // A scratch output may be read by a later backward (an adapter's) even when nothing here needs a gradient.
  const refill = into && isGradEnabled();
  if (!refill && !needsGrad(x, ...(gain ? [gain] : []))) return out;
  if (!gain) return record(out, [x], (g) => K().rmsnormBackward(x.gradBuffer(), g, out.data, rstd, R, C));
  // The backward needs x itself, and the residual stream's x is overwritten by the next residual update: keep a copy.
  const xs = alloc(x.size, false);
  xs.set(x.data);
  // The same kernel on the same input gives the same bits, rstd included.
  if (refill) refills.set(out, () => K().rmsnormForward(into, rstd, xs, R, C, gain.data, eps));
  if (!needsGrad(x, gain)) return out;
  return record(out, [x, gain], (g) => {
    const dgain = gain.requiresGrad ? gain.gradBuffer() : null;
    if (x.requiresGrad) K().rmsnormGainBackward(x.gradBuffer(), dgain, g, xs, rstd, gain.data, R, C);
    else if (dgain) K().rmsnormGainBackward(alloc(x.size, true), dgain, g, xs, rstd, gain.data, R, C);
  });
}

/**
 * Activations recomputed instead of kept. An op given a scratch buffer (`into`) writes its output there, and
 * the next op of the same kind overwrites it (one buffer for all layers); the op records how to write those
 * values again. `recomputedFor(y, a)` wraps y, the product that read a, so that a is written again just before
 * y's backward, the one backward that reads a's values. This relies on y having no other consumer than the
 * wrapper: the backward walk (Tensor.backward, a depth-first post-order) then runs y's backward right after the
 * wrapper's.
 */
export interface ScratchOptions {
  into?: Float32Array;
}
const refills = new WeakMap<Tensor, () => void>();

export function recomputedFor(y: Tensor, a: Tensor): Tensor {
  const refill = refills.get(a);
  if (!refill || !needsGrad(y)) return y;
  const out = new Tensor(y.data, y.shape);
  return record(out, [y], (g) => {
    refill();
    accumulate(y, g);
  });
}

/** x [R, C] + b [C] per row, written over x's buffer (x is a product's output that nothing else reads). */
export function addBias(x: Tensor, b: Tensor): Tensor {
  const [R, C] = rows2(x);
  check(b.size === C, `addBias: bias has ${b.size} elements for rows of ${C}`);
  const out = new Tensor(x.data, x.shape);
  K().biasForward(out.data, b.data, R, C);
  if (!needsGrad(x, b)) return out;
  return record(out, [x, b], (g) => {
    if (b.requiresGrad) K().biasBackward(b.gradBuffer(), g, R, C);
    if (x.requiresGrad) accumulate(x, g);
  });
}

/** How the Hugging Face family prepares q and k before attention (see qkRope). */
export interface QkRopeOptions {
  N: number;
  Nkv: number;
  H: number;
  invFreq: Float64Array;
  /** 0: no norm; 1: RMSNorm over each head; 2: RMSNorm times gq / gk. */
  mode: 0 | 1 | 2;
  gq: Tensor | null;
  gk: Tensor | null;
  eps: number;
  /** Without a norm (mode 0) the backward reads no input values, so the output may be written over qkv (a
   *  product's output that nothing else reads). */
  inPlace?: boolean;
}

/**
 * q and k heads of qkv [B·T, (N + 2·Nkv)·H] normalised per head (per `mode`) and rotated by RoPE at positions
 * 0..T−1 with the given inverse frequencies; v passes through. A new buffer when there is a norm, since the
 * backward then reads the raw input.
 */
export function qkRope(qkv: Tensor, B: number, T: number, o: QkRopeOptions): Tensor {
  const W = (o.N + 2 * o.Nkv) * o.H;
  check(qkv.size === B * T * W, 'qkRope: shape mismatch');
  const out = o.inPlace && o.mode === 0 ? new Tensor(qkv.data, qkv.shape) : Tensor.empty(qkv.shape);
  const rstd = o.mode > 0 ? alloc(B * T * (o.N + o.Nkv), false) : null;
  const gq = o.gq ? o.gq.data : null, gk = o.gk ? o.gk.data : null;
  K().qkRopeForward(out.data, rstd, qkv.data, B, T, o.N, o.Nkv, o.H, 0, o.invFreq, o.mode, gq, gk, o.eps);
  const gains = [o.gq, o.gk].filter((t): t is Tensor => t !== null);
  if (!needsGrad(qkv, ...gains)) return out;
  return record(out, [qkv, ...gains], (g) => {
    const dgq = o.gq?.requiresGrad ? o.gq.gradBuffer() : null, dgk = o.gk?.requiresGrad ? o.gk.gradBuffer() : null;
    const dx = qkv.requiresGrad ? g : alloc(g.length, false);
    K().qkRopeBackward(dx, dgq, dgk, g, qkv.data, rstd, B, T, o.N, o.Nkv, o.H, 0, o.invFreq, o.mode, gq, gk);
    if (qkv.requiresGrad) accumulate(qkv, dx);
  });
}

/**
 * SwiGLU over gu [R, 2F] (gate columns, then up columns) → silu(gate)·up [R, F]. With `inPlace` the gradient is
 * written over gu (a product's output that nothing else reads).
 */
export function swiglu(gu: Tensor, F: number, { inPlace = false, into }: { inPlace?: boolean } & ScratchOptions = {}): Tensor {
  const [R, C] = rows2(gu);
  check(C === 2 * F, `swiglu: rows of ${C} are not [gate | up] of ${F} each`);
  check(!into || into.length === R * F, 'swiglu: the scratch output has the wrong size');
  const shape = [...gu.shape.slice(0, -1), F];
  const out = into ? new Tensor(into, shape) : Tensor.empty(shape);
  K().swigluForward(out.data, gu.data, R, F);
  // gu stays as it is until this op's backward, which runs after the refill's.
  if (into && isGradEnabled()) refills.set(out, () => K().swigluForward(into, gu.data, R, F));
  if (!needsGrad(gu)) return out;
  return record(out, [gu], (g) => {
    const dgu = inPlace ? gu.data : alloc(gu.size, false);
    K().swigluBackward(dgu, g, gu.data, R, F);
    accumulate(gu, dgu);
  });
}

/**
 * Causal softmax attention over qkv [B*T, (N + 2·Nkv)·H] → [B*T, N·H] (query head n reads kv head ⌊n·Nkv/N⌋;
 * Nkv defaults to N).
 * - `qkNorm`: qkv is the raw product, and q and k go through RMSNorm over each head and RoPE (positions
 *   0..T-1) inside the kernel: the same as normalising them first with the qkNormRopeForward kernel, without a
 *   pass that rewrites q and k and reads them back, and the backward returns the raw q, k gradient directly.
 * - `inPlace`: qkv's values are not needed afterwards (the model's qkv product, whose own backward reads only
 *   its inputs), so the gradient is written over qkv instead of a fresh buffer.
 */
export function attention(qkv: Tensor, B: number, T: number, N: number, H: number,
  opts: { qkNorm?: boolean; inPlace?: boolean; Nkv?: number } = {}): Tensor {
  const Nkv = opts.Nkv ?? N;
  check(qkv.size === B * T * (N + 2 * Nkv) * H, 'attention: shape mismatch');
  if (opts.qkNorm) check(H % 2 === 0, `attention: head size ${H} must be even to normalise q and k (RoPE rotates pairs)`);
  const out = Tensor.empty([B * T, N * H]);
  const lse = alloc(B * N * T, false);
  const rstd = opts.qkNorm ? alloc(B * T * 2 * N, false) : null;
  K().attentionForward(out.data, lse, qkv.data, B, T, N, H, rstd, Nkv);
  if (!needsGrad(qkv)) return out;
  return record(out, [qkv], (g) => {
    const dqkv = opts.inPlace ? qkv.data : alloc(qkv.size, false);
    K().attentionBackward(dqkv, g, lse, qkv.data, B, T, N, H, rstd, Nkv);
    accumulate(qkv, dqkv);
  });
}

/**
 * A weighted mean over rows of logits [R, V] computed by a fused native kernel that writes the
 * gradient in the same pass: Σ w·loss_r / Σ w as a scalar tensor. `kernel(norm, dlogits)` returns
 * the weighted sum and, when dlogits is given, writes norm·∂/∂logits into it.
 */
function rowMeanLoss(logits: Tensor, weights: Float32Array, kernel: (norm: number, dlogits: Float32Array | null) => number,
  inPlace = false): Tensor {
  const wsum = sum(weights);
  const norm = wsum > 0 ? 1 / wsum : 0;
  const grad = needsGrad(logits);
  const dlogits = grad ? (inPlace ? logits.data : alloc(logits.size, false)) : null;
  const total = kernel(norm, dlogits);
  const out = new Tensor(new Float32Array([total * norm]), []);
  if (!grad) return out;
  return record(out, [logits], (g) => {
    const s = g[0]!;
    if (s !== 1) K().axpy(dlogits!.length, s - 1, dlogits!, dlogits!); // scale by the upstream gradient
    accumulate(logits, dlogits!);
  });
}

/** How a loss over logits hands back its gradient. */
export interface LossOptions {
  /** Write the gradient over the logits as the loss is computed, which saves an [R, V] buffer and its first
   *  write; only for logits that nothing reads afterwards. */
  inPlace?: boolean;
}

/**
 * Weighted mean cross-entropy of logits [R, V] against targets: Σ w·nll / Σ w (the NTP loss when
 * w masks the last position of each sequence). Returns a scalar tensor.
 */
export function crossEntropy(logits: Tensor, targets: Int32Array, weights: Float32Array, { inPlace = false }: LossOptions = {}): Tensor {
  const [R, V] = rows2(logits);
  check(targets.length === R && weights.length === R, 'crossEntropy: targets/weights length must equal rows');
  return rowMeanLoss(logits, weights, (norm, d) => K().crossEntropy(logits.data, targets, weights, R, V, null, d, norm),
    inPlace);
}

/**
 * Weighted mean KL(p‖q) per row, p = softmax(refLogits) (frozen reference π, no gradient),
 * q = softmax(logits).
 */
export function klDiv(refLogits: Float32Array, logits: Tensor, weights: Float32Array, { inPlace = false }: LossOptions = {}): Tensor {
  const [R, V] = rows2(logits);
  check(refLogits.length === logits.size, 'klDiv: reference logits must match logits');
  check(weights.length === R, 'klDiv: weights length must equal rows');
  return rowMeanLoss(logits, weights, (norm, d) => K().klDiv(refLogits, logits.data, weights, R, V, null, d, norm),
    inPlace);
}

function sum(w: Float32Array): number {
  let s = 0;
  for (let i = 0; i < w.length; i++) s += w[i]!;
  return s;
}

export { numel };
