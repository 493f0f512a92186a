/**
 * The study's transformer ("gpt", docs/contract.md §1): pre-norm blocks, RMSNorm without gain, q/k RMSNorm +
 * RoPE, causal softmax attention, GELU-tanh MLP, untied input/output embeddings, no biases.
 *
 * The memory layout differs from the checkpoint layout only for qkv (docs/contract.md §6): the checkpoint
 * stores [L, 3, N, D, H]; in memory each layer's qkv is one [D, 3·N·H] matrix (columns ordered q heads,
 * k heads, v heads), so the projection is a single GEMM. toSpec()/fromSpec() convert.
 */
import { gemmPacked } from '../backend/gemm.js';
import { native } from '../backend/native.js';
import type { RightOperand } from '../backend/packing.js';
import { ConfigError } from '../errors.js';
import { alloc, scope } from '../tensor/pool.js';
import { Tensor, noGrad } from '../tensor/tensor.js';
import * as op from '../tensor/ops.js';
import { Rng } from '../util/rng.js';
import { ParamSet } from './params.js';

export interface GPTConfig {
  D: number;
  L: number;
  H: number;
  T: number;
  V: number;
}

export interface SpecTensor {
  shape: number[];
  data: Float32Array;
}

export function validateGPTConfig(c: GPTConfig, prefix = 'model'): void {
  for (const k of ['D', 'L', 'H', 'T', 'V'] as const) {
    if (!Number.isInteger(c[k]) || c[k] <= 0) throw new ConfigError(`${prefix}.${k}`, `must be a positive integer, got ${c[k]}`);
  }
  if (c.D % c.H !== 0) throw new ConfigError(`${prefix}.H`, `head size ${c.H} must divide D=${c.D}`);
  if (c.H % 2 !== 0) throw new ConfigError(`${prefix}.H`, `head size ${c.H} must be even (RoPE rotates halves)`);
}

export function paramCounts(c: GPTConfig): { n_param_nonembed: number; n_param_embed: number } {
  return { n_param_nonembed: 12 * c.L * c.D * c.D, n_param_embed: c.D * c.V };
}

type Projection = 'qkv' | 'out' | 'up' | 'down';

/** The model's tensors: each one's checkpoint shape and its shape in memory (they differ only for qkv). */
function tensorTable(c: GPTConfig): Array<{ name: string; spec: number[]; memory: number[] }> {
  const { D, L, H, V } = c;
  const N = D / H, F = 4 * D;
  return [
    { name: 'embed_in', spec: [V, D], memory: [V, D] },
    { name: 'embed_out', spec: [V, D], memory: [V, D] },
    { name: 'qkv', spec: [L, 3, N, D, H], memory: [L, D, 3 * D] },
    { name: 'out', spec: [L, N, H, D], memory: [L, D, D] },
    { name: 'up', spec: [L, D, F], memory: [L, D, F] },
    { name: 'down', spec: [L, F, D], memory: [L, F, D] },
  ];
}

/** Shapes of the checkpoint tensors (docs/contract.md §6). */
export function specShapes(c: GPTConfig): Record<string, number[]> {
  return Object.fromEntries(tensorTable(c).map((t) => [t.name, t.spec]));
}

/** Hook through which LoRA (or any adapter) supplies the effective weight of a projection. */
export type WeightHook = (name: Projection, layer: number, base: Tensor) => Tensor;

export interface KVCache {
  B: number;
  Tmax: number;
  k: Float32Array[]; // per layer [B, Tmax, N, H]
  v: Float32Array[];
  /** The decoder's weights packed for gemmPacked, one buffer per decodeOperands() entry, or null (use the weights
   *  as they are). They hold the weights of when they were packed: a cache must not outlive a change of weights. */
  packed: Uint16Array[] | null;
}

export class GPT {
  readonly N: number;
  readonly F: number;
  readonly params: ParamSet;
  readonly embedIn: Tensor;
  readonly embedOut: Tensor;
  readonly qkv: Tensor[];
  readonly out: Tensor[];
  readonly up: Tensor[];
  readonly down: Tensor[];
  weightHook: WeightHook | null = null;

  constructor(readonly cfg: GPTConfig) {
    validateGPTConfig(cfg);
    const { D, L } = cfg;
    this.N = D / cfg.H;
    this.F = 4 * D;
    this.params = new ParamSet(tensorTable(cfg).map((t) => [t.name, t.memory]));
    this.embedIn = this.params.tensor('embed_in');
    this.embedOut = this.params.tensor('embed_out');
    this.qkv = this.params.slices('qkv', L, [D, 3 * D]);
    this.out = this.params.slices('out', L, [D, D]);
    this.up = this.params.slices('up', L, [D, this.F]);
    this.down = this.params.slices('down', L, [this.F, D]);
  }

  /** The initialisation of docs/contract.md §1: N(0,1)·D^-1/2 everywhere except down, N(0,1)·F^-1/2. */
  static init(cfg: GPTConfig, seed: number): GPT {
    const m = new GPT(cfg);
    const rng = new Rng(seed);
    const sd = 1 / Math.sqrt(cfg.D);
    for (const name of ['embed_in', 'embed_out', 'qkv', 'out', 'up'])
      rng.fillNormal(m.params.view(name), sd);
    rng.fillNormal(m.params.view('down'), 1 / Math.sqrt(m.F));
    return m;
  }

  /** Parameters are trainable unless frozen (the reference model π, or the base under LoRA). */
  setTrainable(flag: boolean): void {
    this.params.setRequiresGrad(flag);
  }

  private w(name: Projection, l: number): Tensor {
    const base = this[name][l]!;
    return this.weightHook ? this.weightHook(name, l, base) : base;
  }

  /** Logits [B·T, V] for token ids [B, T]; records a graph when parameters require gradients. */
  forward(ids: Int32Array, B: number, T: number): Tensor {
    const { D, H, L } = this.cfg;
    if (ids.length !== B * T) throw new Error(`forward: ${ids.length} ids for B=${B}, T=${T}`);
    if (T > this.cfg.T) throw new Error(`forward: sequence length ${T} exceeds model T=${this.cfg.T}`);
    let x = op.embedding(this.embedIn, ids, [B * T, D]);
    for (let l = 0; l < L; l++) {
      const qkv = op.matmul(op.rmsnorm(x), this.w('qkv', l)); // raw: q, k are normalised inside the attention
      x = op.residualMatmul(x, op.attention(qkv, B, T, this.N, H, { qkNorm: true, inPlace: true }), this.w('out', l));
      x = op.residualMlp(x, op.rmsnorm(x), this.w('up', l), this.w('down', l));
    }
    return op.matmul(op.rmsnorm(x), this.embedOut, { transW: true });
  }

  /** Logits without a graph. */
  logits(ids: Int32Array, B: number, T: number): Float32Array {
    return noGrad(() => this.forward(ids, B, T).data);
  }

  // ---- cached decoding --------------------------------------------------------------------

  /** An empty KV cache for B rows of up to Tmax positions; `packed` as decode() expects it (see KVCache). */
  newCache(B: number, Tmax = this.cfg.T, packed: Uint16Array[] | null = null): KVCache {
    const D = this.cfg.D;
    const mk = () => Array.from({ length: this.cfg.L }, () => new Float32Array(B * Tmax * D));
    return { B, Tmax, k: mk(), v: mk(), packed };
  }

  /** The right operands of the decoder's products, in the order of KVCache.packed: per layer qkv, out, up, down,
   *  then the output embedding (transposed). Under a weight hook they are the effective weights. */
  decodeOperands(): RightOperand[] {
    const { D, L, V } = this.cfg;
    const F = this.F;
    return noGrad(() => {
      const ops: RightOperand[] = [];
      for (let l = 0; l < L; l++) {
        ops.push({ B: this.w('qkv', l).data, transB: false, N: 3 * D, K: D });
        ops.push({ B: this.w('out', l).data, transB: false, N: D, K: D });
        ops.push({ B: this.w('up', l).data, transB: false, N: F, K: D });
        ops.push({ B: this.w('down', l).data, transB: false, N: D, K: F });
      }
      ops.push({ B: this.embedOut.data, transB: true, N: V, K: D });
      return ops;
    });
  }

  /**
   * Feed one token per row at absolute position `pos` (all rows in step), appending its keys and
   * values to the cache; returns logits [B, V] for the next token.
   */
  decode(cache: KVCache, ids: Int32Array, pos: number, out?: Float32Array): Float32Array {
    const k = native();
    const { D, H, L, V } = this.cfg;
    const { B, Tmax } = cache;
    const N = this.N, F = this.F;
    if (ids.length !== B) throw new Error(`decode: ${ids.length} ids for a cache of batch ${B}`);
    if (pos >= Tmax) throw new Error(`decode: position ${pos} is beyond the cache length ${Tmax}`);
    const logits = out ?? new Float32Array(B * V);
    const p = cache.packed;
    const packed = (i: number) => (p ? p[i]! : null);
    // Temporaries come from the buffer pool: a sampler calls this once per position.
    return scope(() => noGrad(() => {
      const x = alloc(B * D, false);
      k.embeddingForward(x, this.embedIn.data, ids, B, V, D);
      const a = alloc(B * D, false), rstd = alloc(B * 2 * N, false);
      const raw = alloc(B * 3 * D, false), qkv = alloc(B * 3 * D, false);
      const att = alloc(B * D, false), hidden = alloc(B * F, false), act = alloc(B * F, false);
      for (let l = 0; l < L; l++) {
        const wq = this.w('qkv', l).data, wo = this.w('out', l).data;
        const wu = this.w('up', l).data, wd = this.w('down', l).data;
        k.rmsnormForward(a, rstd, x, B, D);
        gemmPacked(raw, a, wq, packed(4 * l), B, 3 * D, D);
        k.qkNormRopeForward(qkv, rstd, raw, B, 1, N, H, pos);
        k.attentionDecode(att, qkv, cache.k[l]!, cache.v[l]!, B, 1, N, H, Tmax, pos); // also appends k, v at pos
        gemmPacked(x, att, wo, packed(4 * l + 1), B, D, D, { beta: 1 }); // residual: x += att · out
        k.rmsnormForward(a, rstd, x, B, D);
        gemmPacked(hidden, a, wu, packed(4 * l + 2), B, F, D);
        k.geluForward(act, hidden, B * F);
        gemmPacked(x, act, wd, packed(4 * l + 3), B, D, F, { beta: 1 }); // residual: x += gelu(·) · down
      }
      k.rmsnormForward(a, rstd, x, B, D);
      gemmPacked(logits, a, this.embedOut.data, packed(4 * L), B, V, D, { transB: true });
      return logits;
    }));
  }

  // ---- checkpoint layout ------------------------------------------------------------------

  /** Tensors in the checkpoint layout (copies). */
  toSpec(): Record<string, SpecTensor> {
    const out: Record<string, SpecTensor> = {};
    for (const t of tensorTable(this.cfg)) {
      const mem = this.params.view(t.name);
      out[t.name] = { shape: t.spec, data: t.name === 'qkv' ? this.qkvLayout(mem, 'toSpec') : mem.slice() };
    }
    return out;
  }

  /** Build a model from checkpoint-layout tensors (shapes must already be validated). */
  static fromSpec(cfg: GPTConfig, tensors: Record<string, Float32Array>): GPT {
    const m = new GPT(cfg);
    for (const t of tensorTable(cfg)) {
      const src = tensors[t.name]!;
      m.params.view(t.name).set(t.name === 'qkv' ? m.qkvLayout(src, 'fromSpec') : src);
    }
    return m;
  }

  /** qkv between the memory layout [L, D, 3, N, H] and the checkpoint's [L, 3, N, D, H], moving H-long rows. */
  private qkvLayout(src: Float32Array, dir: 'toSpec' | 'fromSpec'): Float32Array {
    const { D, L, H } = this.cfg;
    const N = this.N;
    const dst = new Float32Array(src.length);
    for (let l = 0; l < L; l++)
      for (let d = 0; d < D; d++)
        for (let j = 0; j < 3; j++)
          for (let n = 0; n < N; n++) {
            const mem = (((l * D + d) * 3 + j) * N + n) * H;
            const spec = (((l * 3 + j) * N + n) * D + d) * H;
            const [from, to] = dir === 'toSpec' ? [mem, spec] : [spec, mem];
            dst.set(src.subarray(from, from + H), to);
          }
    return dst;
  }

  /** An independent copy (the frozen reference π of a finetuning run). */
  clone(): GPT {
    const m = new GPT(this.cfg);
    m.params.data.set(this.params.data);
    return m;
  }
}
