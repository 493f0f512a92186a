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
import { native } from '../backend/native.js';
import type { RightOperand } from '../backend/packing.js';
import { alloc, scope } from '../tensor/pool.js';
import { Tensor, noGrad } from '../tensor/tensor.js';
import * as op from '../tensor/ops.js';
import { hfParamShapes, ropeInvFreq, type ArchConfig } from './arch.js';
import { ParamSet } from './params.js';

/** The projections of a layer: the stacked q/k/v product, the attention output, the MLP's up (gate+up) and down. */
export type Projection = 'qkv' | 'o' | 'up' | 'down';
export const PROJECTIONS: readonly Projection[] = ['qkv', 'o', 'up', 'down'];

/** Hook through which LoRA (or any adapter) supplies the effective weight of a projection. */
export type WeightHook = (name: Projection, layer: number, base: Tensor) => Tensor;

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
  readonly embed: Tensor;
  readonly head: Tensor;
  readonly norm: Tensor | null;
  private readonly layers: Record<Projection, Tensor[]>;
  private readonly perLayer: Record<'attnNorm' | 'mlpNorm' | 'qkvBias' | 'qNorm' | 'kNorm', Tensor[] | null>;
  weightHook: WeightHook | null = null;

  /** A model with zero weights, or (`params`) one over another model's weights (see sharing()). */
  constructor(readonly cfg: ArchConfig, params?: ParamSet) {
    validateArch(cfg);
    const { D, L, N, Nkv, H, F } = cfg;
    const hf = cfg.family !== 'gpt';
    this.outIn = hf;
    this.qkvWidth = (N + 2 * Nkv) * H;
    this.invFreq = ropeInvFreq(cfg);
    this.params = params ?? new ParamSet(hf ? hfParamShapes(cfg) : gptParamShapes(cfg));
    this.embed = this.params.tensor('embed');
    this.head = this.params.has('head') ? this.params.tensor('head') : this.embed;
    this.norm = this.params.has('norm') ? this.params.tensor('norm') : null;
    const upOut = cfg.mlp === 'swiglu' ? 2 * F : F;
    const mat = (rows: number, cols: number) => (hf ? [cols, rows] : [rows, cols]); // [in, out] in gpt's order
    this.layers = {
      qkv: this.params.slices('qkv', L, mat(D, this.qkvWidth)),
      o: this.params.slices('o', L, mat(N * H, D)),
      up: this.params.slices('up', L, mat(D, upOut)),
      down: this.params.slices('down', L, mat(F, D)),
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

  /** The stored weight of a projection (before any adapter). */
  weight(name: Projection, l: number): Tensor {
    return this.layers[name][l]!;
  }

  private w(name: Projection, l: number): Tensor {
    const base = this.layers[name][l]!;
    return this.weightHook ? this.weightHook(name, l, base) : base;
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
    const transW = this.outIn;
    const gain = (t: Tensor[] | null, l: number) => (t ? t[l]! : null);
    let x = op.embedding(this.embed, ids, [B * T, D]);
    for (let l = 0; l < L; l++) {
      let qkv = op.matmul(op.rmsnorm(x, gain(this.perLayer.attnNorm, l), eps), this.w('qkv', l), { transW });
      if (this.perLayer.qkvBias) qkv = op.addBias(qkv, this.perLayer.qkvBias[l]!);
      let att: Tensor;
      if (c.family === 'gpt') {
        // raw q, k: normalised and rotated inside the attention kernel
        att = op.attention(qkv, B, T, N, H, { qkNorm: true, inPlace: true });
      } else {
        const mode = this.qkMode();
        const prepared = op.qkRope(qkv, B, T, {
          N, Nkv, H, invFreq: this.invFreq, mode, eps,
          gq: gain(this.perLayer.qNorm, l), gk: gain(this.perLayer.kNorm, l),
        });
        att = op.attention(prepared, B, T, N, H, { Nkv, inPlace: true });
      }
      x = op.residualMatmul(x, att, this.w('o', l), { transW });
      const a = op.rmsnorm(x, gain(this.perLayer.mlpNorm, l), eps);
      if (c.mlp === 'gelu') {
        x = op.residualMlp(x, a, this.w('up', l), this.w('down', l));
      } else {
        const gu = op.matmul(a, this.w('up', l), { transW });
        x = op.residualMatmul(x, op.swiglu(gu, F, { inPlace: true }), this.w('down', l), { transW });
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
    const { D, L, N, H, F, V } = this.cfg;
    const transB = this.outIn;
    const upOut = this.cfg.mlp === 'swiglu' ? 2 * F : F;
    return noGrad(() => {
      const ops: RightOperand[] = [];
      for (let l = 0; l < L; l++) {
        ops.push({ B: this.w('qkv', l).data, transB, N: this.qkvWidth, K: D });
        ops.push({ B: this.w('o', l).data, transB, N: D, K: N * H });
        ops.push({ B: this.w('up', l).data, transB, N: upOut, K: D });
        ops.push({ B: this.w('down', l).data, transB, N: D, K: F });
      }
      ops.push({ B: this.head.data, transB: true, N: V, K: D });
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
    // Temporaries come from the buffer pool: a sampler calls this once per position.
    return scope(() => noGrad(() => {
      const x = alloc(B * D, false);
      k.embeddingForward(x, this.embed.data, ids, B, V, D);
      const a = alloc(B * D, false), rstd = alloc(B * Math.max(1, N + Nkv), false);
      const raw = alloc(B * W, false), qkv = alloc(B * W, false);
      const att = alloc(B * NH, false), hidden = alloc(B * upOut, false), act = alloc(B * F, false);
      for (let l = 0; l < L; l++) {
        const wq = this.w('qkv', l).data, wo = this.w('o', l).data;
        const wu = this.w('up', l).data, wd = this.w('down', l).data;
        k.rmsnormForward(a, rstd, x, B, D, gain(this.perLayer.attnNorm, l), eps);
        gemmPacked(raw, a, wq, packed(4 * l), B, W, D, { transB });
        if (this.perLayer.qkvBias) k.biasForward(raw, this.perLayer.qkvBias[l]!.data, B, W);
        if (gpt) k.qkNormRopeForward(qkv, rstd, raw, B, 1, N, H, pos);
        else {
          k.qkRopeForward(qkv, this.qkMode() > 0 ? rstd : null, raw, B, 1, N, Nkv, H, pos, this.invFreq, this.qkMode(),
            gain(this.perLayer.qNorm, l), gain(this.perLayer.kNorm, l), eps);
        }
        k.attentionDecode(att, qkv, cache.k[l]!, cache.v[l]!, B, 1, N, H, Tmax, pos, Nkv); // also appends k, v at pos
        gemmPacked(x, att, wo, packed(4 * l + 1), B, D, NH, { beta: 1, transB }); // residual: x += att · o
        k.rmsnormForward(a, rstd, x, B, D, gain(this.perLayer.mlpNorm, l), eps);
        gemmPacked(hidden, a, wu, packed(4 * l + 2), B, upOut, D, { transB });
        if (c.mlp === 'gelu') k.geluForward(act, hidden, B * F);
        else k.swigluForward(act, hidden, B, F);
        gemmPacked(x, act, wd, packed(4 * l + 3), B, D, F, { beta: 1, transB }); // residual: x += mlp · down
      }
      k.rmsnormForward(a, rstd, x, B, D, this.norm ? this.norm.data : null, eps);
      gemmPacked(logits, a, this.head.data, packed(4 * L), B, V, D, { transB: true });
      return logits;
    }));
  }

  /** The same weights (no copy) without this model's weight hook: under LoRA, θ is the frozen base with adapters
   *  hooked in, and π is that base as it is, so π costs no memory. */
  sharing(): Transformer {
    return new Transformer(this.cfg, this.params);
  }

  /** An independent copy (the frozen reference π of a finetuning run). */
  clone(): Transformer {
    const m = new Transformer(this.cfg);
    m.params.data.set(this.params.data);
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
