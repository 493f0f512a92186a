/**
 * The one transformer of unforget. Its options (`ArchConfig`, model/arch.ts) cover the study's `gpt` (RMSNorm
 * without weight, q/k RMSNorm + RoPE fused into attention, GELU MLP, untied embeddings) and the Hugging Face Llama /
 * Qwen2 / Qwen3 family (RMSNorm with weight, grouped-query attention, RoPE with any frequencies and optional per-head
 * q/k norm, q/k/v biases, SwiGLU, tied or untied output). Training, replay, evaluation and sampling take any
 * Transformer.
 *
 * Memory layout. gpt keeps its weights as [in, out] matrices (x · W): qkv [L, D, 3·D] (columns q heads, k heads,
 * v heads), o [L, D, D], up [L, D, F], down [L, F, D]. The Hugging Face family keeps transformers' [out, in]
 * (x · Wᵀ), with q/k/v stacked into one product and gate/up into another (arch.ts, `hfParamShapes`). Either way the
 * product of a token's row with its qkv weight is [q heads | k heads | v heads], which is what the attention kernels
 * read. Embeddings are [V, D]; the output product is h · headᵀ, where head is the embedding when tied.
 */
import { gemmPacked } from '../backend/gemm.js';
import { native, type HalfKind } from '../backend/native.js';
import { HalfWeight, type Weight } from '../tensor/half.js';
import { numel } from '../util/shape.js';
import type { RightOperand } from '../backend/packing.js';
import { alloc, scope } from '../tensor/pool.js';
import { Tensor, noGrad } from '../tensor/tensor.js';
import * as op from '../tensor/ops.js';
import { hfParamShapes, ropeInvFreq, type ArchConfig } from './arch.js';
import { ParamSet } from './params.js';

/** The projections of a layer: the stacked q/k/v product, the attention output, the MLP's up (gate+up) and down. */
export type Projection = 'qkv' | 'o' | 'up' | 'down';
export const PROJECTIONS: readonly Projection[] = ['qkv', 'o', 'up', 'down'];

/** Hook through which LoRA (or any adapter) supplies the effective weight of a projection (gpt's LoRA). */
export type WeightHook = (name: Projection, layer: number, base: Tensor) => Tensor;
/** Hook through which PEFT-style LoRA adds its low-rank products to a projection (the Hugging Face family). */
export type AdapterHook = (name: Projection, layer: number) => op.ColumnAdapter[] | null;

/** The large frozen matrices of a model kept as bf16 or f16 (see tensor/half.ts); the small vectors stay float32. */
export interface HalfStore {
  data: Uint16Array;
  kind: HalfKind;
}
/** Parameters that a HalfStore holds: the matrices. */
export const MATRICES: ReadonlySet<string> = new Set(['embed', 'head', 'qkv', 'o', 'up', 'down']);

export interface KVCache {
  B: number;
  Tmax: number;
  k: Float32Array[]; // per layer [B, Tmax, Nkv, H]
  v: Float32Array[];
  /** The decoder's weights packed for gemmPacked, one buffer per decodeOperands() entry, or null (use the weights
   *  as they are). They hold the weights of when they were packed: a cache must not outlive a change of weights. */
  packed: Uint16Array[] | null;
}

/** Memory parameters of gpt: name → shape. */
function gptParamShapes(c: ArchConfig): Array<[string, number[]]> {
  const { D, L, F, V } = c;
  return [['embed', [V, D]], ['head', [V, D]], ['qkv', [L, D, 3 * D]], ['o', [L, D, D]], ['up', [L, D, F]], ['down', [L, F, D]]];
}

export class Transformer {
  readonly params: ParamSet;
  /** Weights are [out, in] (Hugging Face) rather than [in, out] (gpt). */
  readonly outIn: boolean;
  /** Width of a token's qkv row, (N + 2·Nkv)·H. */
  readonly qkvWidth: number;
  readonly invFreq: Float64Array;
  readonly embed: Weight;
  readonly head: Weight;
  readonly norm: Tensor | null;
  /** The frozen matrices in half precision, or null (everything float32 in params). */
  readonly half: HalfStore | null;
  private readonly layers: Record<Projection, Weight[]>;
  private readonly perLayer: Record<'attnNorm' | 'mlpNorm' | 'qkvBias' | 'qNorm' | 'kNorm', Tensor[] | null>;
  weightHook: WeightHook | null = null;
  adapterHook: AdapterHook | null = null;
  private readonly halfAt = new Map<string, number>();

  /**
   * A model with zero weights, or (`params`, `half`) one over another model's weights (see sharing()). With `half`,
   * the matrices live there (frozen, bf16 or f16) and `params` holds only the float32 vectors (norms, biases).
   */
  constructor(readonly cfg: ArchConfig, params?: ParamSet, half: HalfStore | null = null) {
    validateArch(cfg);
    const { D, L, N, Nkv, H, F } = cfg;
    const hf = cfg.family !== 'gpt';
    this.outIn = hf;
    this.qkvWidth = (N + 2 * Nkv) * H;
    this.invFreq = ropeInvFreq(cfg);
    const spec = hf ? hfParamShapes(cfg) : gptParamShapes(cfg);
    this.params = params ?? new ParamSet(half ? spec.filter(([n]) => !MATRICES.has(n)) : spec);
    this.half = half;
    // Where each matrix starts in the half store (the same order and sizes as the float32 layout).
    const halfAt = this.halfAt;
    if (half) {
      let at = 0;
      for (const [n, shape] of spec) if (MATRICES.has(n)) { halfAt.set(n, at); at += numel(shape); }
      if (at !== half.data.length) throw new Error(`Transformer: the half store holds ${half.data.length} values, the matrices ${at}`);
    }
    const whole = (name: string): Weight => {
      if (!half) return this.params.tensor(name);
      const shape = spec.find(([n]) => n === name)![1];
      const at = halfAt.get(name)!;
      return new HalfWeight(half.data.subarray(at, at + numel(shape)), shape, half.kind);
    };
    const slices = (name: string, shape: number[]): Weight[] => {
      if (!half) return this.params.slices(name, L, shape);
      const n = numel(shape), at = halfAt.get(name)!;
      return Array.from({ length: L }, (_, l) => new HalfWeight(half.data.subarray(at + l * n, at + (l + 1) * n), shape, half.kind));
    };
    this.embed = whole('embed');
    this.head = spec.some(([n]) => n === 'head') ? whole('head') : this.embed;
    this.norm = this.params.has('norm') ? this.params.tensor('norm') : null;
    const upOut = cfg.mlp === 'swiglu' ? 2 * F : F;
    const mat = (rows: number, cols: number) => (hf ? [cols, rows] : [rows, cols]); // [in, out] in gpt's order
    this.layers = {
      qkv: slices('qkv', mat(D, this.qkvWidth)),
      o: slices('o', mat(N * H, D)),
      up: slices('up', mat(D, upOut)),
      down: slices('down', mat(F, D)),
    };
    const opt = (name: string, shape: number[]) => (this.params.has(name) ? this.params.slices(name, L, shape) : null);
    this.perLayer = {
      attnNorm: opt('attn_norm', [D]),
      mlpNorm: opt('mlp_norm', [D]),
      qkvBias: opt('qkv_b', [this.qkvWidth]),
      qNorm: opt('q_norm', [H]),
      kNorm: opt('k_norm', [H]),
    };
  }

  /** Parameters are trainable unless frozen (the reference model π, or the base under LoRA). */
  setTrainable(flag: boolean): void {
    this.params.setRequiresGrad(flag);
  }

  /** The stored float32 weight of a projection (before any adapter); a half-precision model has none. */
  weight(name: Projection, l: number): Tensor {
    const w = this.layers[name][l]!;
    if (w instanceof HalfWeight) throw new Error('Transformer.weight: the weights are half precision; widen the model first');
    return w;
  }

  /** A parameter's values: its float32 view, or for a matrix of a half-precision model its bf16/f16 bits. */
  storage(name: string): Float32Array | Uint16Array {
    const at = this.halfAt.get(name);
    if (at === undefined || !this.half) return this.params.view(name);
    const spec = this.outIn ? hfParamShapes(this.cfg) : gptParamShapes(this.cfg);
    return this.half.data.subarray(at, at + numel(spec.find(([n]) => n === name)![1]));
  }

  /** The stored weight of a projection, float32 or half precision. */
  stored(name: Projection, l: number): Weight {
    return this.layers[name][l]!;
  }

  private w(name: Projection, l: number): Weight {
    const base = this.layers[name][l]!;
    return this.weightHook && !(base instanceof HalfWeight) ? this.weightHook(name, l, base) : base;
  }

  /** x · op(W) of a projection, with PEFT-style adapters when the adapter hook gives some. */
  private project(name: Projection, l: number, x: Tensor, residual: Tensor | null): Tensor {
    const adapters = this.adapterHook?.(name, l) ?? null;
    if (adapters && adapters.length > 0) return op.adaptedMatmul(x, this.layers[name][l]!, adapters, residual);
    const w = this.w(name, l);
    return residual ? op.residualMatmul(residual, x, w, { transW: this.outIn }) : op.matmul(x, w, { transW: this.outIn });
  }

  private qkMode(): 0 | 1 | 2 {
    return this.cfg.qkNorm === 'none' ? 0 : this.cfg.qkNorm === 'rms' ? 1 : 2;
  }

  /** Logits [B·T, V] for token ids [B, T]; records a graph when parameters require gradients. */
  forward(ids: Int32Array, B: number, T: number): Tensor {
    const c = this.cfg;
    const { D, H, L, N, Nkv, F, normEps: eps } = c;
    if (ids.length !== B * T) throw new Error(`forward: ${ids.length} ids for B=${B}, T=${T}`);
    if (T > c.T) throw new Error(`forward: sequence length ${T} exceeds model T=${c.T}`);
    const gain = (t: Tensor[] | null, l: number) => (t ? t[l]! : null);
    let x = op.embedding(this.embed, ids, [B * T, D]);
    // The Hugging Face family's normed inputs of the projections and its SwiGLU activations go to two scratch
    // buffers and are recomputed for the backward (op.recomputedFor) instead of being kept for every layer.
    const hf = c.family !== 'gpt';
    const normed = this.perLayer.attnNorm && this.perLayer.mlpNorm ? alloc(B * T * D, false) : undefined;
    const act = hf && c.mlp === 'swiglu' ? alloc(B * T * F, false) : undefined;
    for (let l = 0; l < L; l++) {
      const a1 = op.rmsnorm(x, gain(this.perLayer.attnNorm, l), eps, { into: normed });
      let qkv = op.recomputedFor(this.project('qkv', l, a1, null), a1);
      if (this.perLayer.qkvBias) qkv = op.addBias(qkv, this.perLayer.qkvBias[l]!);
      let att: Tensor;
      if (!hf) {
        // raw q, k: normalised and rotated inside the attention kernel
        att = op.attention(qkv, B, T, N, H, { qkNorm: true, inPlace: true });
      } else {
        const mode = this.qkMode();
        const prepared = op.qkRope(qkv, B, T, {
          N, Nkv, H, invFreq: this.invFreq, mode, eps, inPlace: true,
          gq: gain(this.perLayer.qNorm, l), gk: gain(this.perLayer.kNorm, l),
        });
        att = op.attention(prepared, B, T, N, H, { Nkv, inPlace: true });
      }
      x = this.project('o', l, att, x);
      const a2 = op.rmsnorm(x, gain(this.perLayer.mlpNorm, l), eps, { into: normed });
      if (c.mlp === 'gelu') {
        x = op.residualMlp(x, a2, this.w('up', l) as Tensor, this.w('down', l) as Tensor);
      } else {
        const gu = op.recomputedFor(this.project('up', l, a2, null), a2);
        const h = op.swiglu(gu, F, { inPlace: true, into: act });
        x = op.recomputedFor(this.project('down', l, h, x), h);
      }
    }
    return op.matmul(op.rmsnorm(x, this.norm, eps), this.head, { transW: true });
  }

  /** Logits without a graph. */
  logits(ids: Int32Array, B: number, T: number): Float32Array {
    return noGrad(() => this.forward(ids, B, T).data);
  }

  // ---- cached decoding --------------------------------------------------------------------

  /** An empty KV cache for B rows of up to Tmax positions; `packed` as decode() expects it (see KVCache). */
  newCache(B: number, Tmax = this.cfg.T, packed: Uint16Array[] | null = null): KVCache {
    const width = this.cfg.Nkv * this.cfg.H;
    const mk = () => Array.from({ length: this.cfg.L }, () => new Float32Array(B * Tmax * width));
    return { B, Tmax, k: mk(), v: mk(), packed };
  }

  /** The right operands of the decoder's products, in the order of KVCache.packed: per layer qkv, o, up, down,
   *  then the output head (transposed). Under a weight hook they are the effective weights. */
  decodeOperands(): RightOperand[] {
    if (this.half) throw new Error('decodeOperands: a half-precision model decodes from its weights as they are');
    const { D, L, N, H, F, V } = this.cfg;
    const transB = this.outIn;
    const upOut = this.cfg.mlp === 'swiglu' ? 2 * F : F;
    return noGrad(() => {
      const ops: RightOperand[] = [];
      for (let l = 0; l < L; l++) {
        ops.push({ B: (this.w('qkv', l) as Tensor).data, transB, N: this.qkvWidth, K: D });
        ops.push({ B: (this.w('o', l) as Tensor).data, transB, N: D, K: N * H });
        ops.push({ B: (this.w('up', l) as Tensor).data, transB, N: upOut, K: D });
        ops.push({ B: (this.w('down', l) as Tensor).data, transB, N: D, K: F });
      }
      ops.push({ B: (this.head as Tensor).data, transB: true, N: V, K: D });
      return ops;
    });
  }

  /**
   * Feed one token per row at absolute position `pos` (all rows in step), appending its keys and
   * values to the cache; returns logits [B, V] for the next token.
   */
  decode(cache: KVCache, ids: Int32Array, pos: number, out?: Float32Array): Float32Array {
    const k = native();
    const c = this.cfg;
    const { D, H, L, N, Nkv, F, V, normEps: eps } = c;
    const { B, Tmax } = cache;
    if (ids.length !== B) throw new Error(`decode: ${ids.length} ids for a cache of batch ${B}`);
    if (pos >= Tmax) throw new Error(`decode: position ${pos} is beyond the cache length ${Tmax}`);
    const logits = out ?? new Float32Array(B * V);
    const p = cache.packed;
    const packed = (i: number) => (p ? p[i]! : null);
    const transB = this.outIn;
    const gpt = c.family === 'gpt';
    const gain = (t: Tensor[] | null, l: number) => (t ? t[l]!.data : null);
    const W = this.qkvWidth, NH = N * H;
    const upOut = c.mlp === 'swiglu' ? 2 * F : F;
    // C (+)= A · op(W) for the decoder: packed float32 operands, or half-precision weights widened on the fly;
    // then the adapters' low-rank products (PEFT-style LoRA) into their columns.
    const prod = (C: Float32Array, A: Float32Array, name: Projection | 'head', l: number, i: number, M: number, Nn: number,
      Kk: number, beta: 0 | 1, tb: boolean) => {
      const w = name === 'head' ? this.head : this.w(name, l);
      if (w instanceof HalfWeight) k.gemmHalfB(false, tb, M, Nn, Kk, 1, A, w.data, w.kind, beta, C);
      else gemmPacked(C, A, w.data, packed(i), M, Nn, Kk, { transB: tb, beta });
      const adapters = name === 'head' ? null : this.adapterHook?.(name, l);
      for (const ad of adapters ?? []) {
        const r = ad.A.shape[0]!;
        const u = alloc(M * r, false);
        k.gemm(false, true, M, r, Kk, 1, A, ad.A.data, 0, u);
        k.gemmStrided(false, true, M, ad.rows, r, ad.scale, u, r, ad.B.data, r, 1, C.subarray(ad.col), Nn);
      }
    };
    // Temporaries come from the buffer pool: a sampler calls this once per position.
    return scope(() => noGrad(() => {
      const x = alloc(B * D, false);
      if (this.embed instanceof HalfWeight) k.embeddingForwardHalf(x, this.embed.data, this.embed.kind, ids, B, V, D);
      else k.embeddingForward(x, this.embed.data, ids, B, V, D);
      const a = alloc(B * D, false), rstd = alloc(B * Math.max(1, N + Nkv), false);
      const raw = alloc(B * W, false), qkv = alloc(B * W, false);
      const att = alloc(B * NH, false), hidden = alloc(B * upOut, false), act = alloc(B * F, false);
      for (let l = 0; l < L; l++) {
        k.rmsnormForward(a, rstd, x, B, D, gain(this.perLayer.attnNorm, l), eps);
        prod(raw, a, 'qkv', l, 4 * l, B, W, D, 0, transB);
        if (this.perLayer.qkvBias) k.biasForward(raw, this.perLayer.qkvBias[l]!.data, B, W);
        if (gpt) k.qkNormRopeForward(qkv, rstd, raw, B, 1, N, H, pos);
        else {
          k.qkRopeForward(qkv, this.qkMode() > 0 ? rstd : null, raw, B, 1, N, Nkv, H, pos, this.invFreq, this.qkMode(),
            gain(this.perLayer.qNorm, l), gain(this.perLayer.kNorm, l), eps);
        }
        k.attentionDecode(att, qkv, cache.k[l]!, cache.v[l]!, B, 1, N, H, Tmax, pos, Nkv); // also appends k, v at pos
        prod(x, att, 'o', l, 4 * l + 1, B, D, NH, 1, transB); // residual: x += att · o
        k.rmsnormForward(a, rstd, x, B, D, gain(this.perLayer.mlpNorm, l), eps);
        prod(hidden, a, 'up', l, 4 * l + 2, B, upOut, D, 0, transB);
        if (c.mlp === 'gelu') k.geluForward(act, hidden, B * F);
        else k.swigluForward(act, hidden, B, F);
        prod(x, act, 'down', l, 4 * l + 3, B, D, F, 1, transB); // residual: x += mlp · down
      }
      k.rmsnormForward(a, rstd, x, B, D, this.norm ? this.norm.data : null, eps);
      prod(logits, a, 'head', -1, 4 * L, B, V, D, 0, true);
      return logits;
    }));
  }

  /** The same weights (no copy) without this model's weight hook: under LoRA, θ is the frozen base with adapters
   *  hooked in, and π is that base as it is, so π costs no memory. */
  sharing(): Transformer {
    return new Transformer(this.cfg, this.params, this.half);
  }

  /** An independent float32 copy (θ of a full finetuning run from π): half-precision matrices are widened. */
  clone(): Transformer {
    const m = new Transformer(this.cfg);
    if (!this.half) {
      m.params.data.set(this.params.data);
      return m;
    }
    for (const e of this.params.entries) m.params.view(e.name).set(this.params.view(e.name));
    const k = native();
    const wide = (dst: Weight, src: Weight) => k.widenHalf((dst as Tensor).data, (src as HalfWeight).data, src.size, this.half!.kind);
    wide(m.embed, this.embed);
    if (m.head !== m.embed) wide(m.head, this.head);
    for (const p of PROJECTIONS) for (let l = 0; l < this.cfg.L; l++) wide(m.layers[p][l]!, this.layers[p][l]!);
    return m;
  }
}

/** The architecture's own consistency (the config readers name the user's key before this is reached). */
export function validateArch(c: ArchConfig): void {
  for (const k of ['D', 'L', 'N', 'Nkv', 'H', 'F', 'V', 'T'] as const) {
    if (!Number.isInteger(c[k]) || c[k] <= 0) throw new Error(`model: ${k} must be a positive integer, got ${c[k]}`);
  }
  if (c.N % c.Nkv !== 0) throw new Error(`model: ${c.N} query heads are not a multiple of ${c.Nkv} key/value heads`);
  if (c.H % 2 !== 0) throw new Error(`model: head size ${c.H} must be even (RoPE rotates halves)`);
  if (c.family === 'gpt' && (c.N * c.H !== c.D || c.Nkv !== c.N || c.mlp !== 'gelu' || c.tiedEmbeddings)) {
    throw new Error('model: gpt has N·H = D, no grouped-query attention, a GELU MLP and untied embeddings');
  }
  if (c.family !== 'gpt' && (c.qkNorm === 'rms')) throw new Error('model: the Hugging Face family has no gainless q/k norm');
}
