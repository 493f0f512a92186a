/**
 * The study's transformer ("gpt", SPEC §2): pre-norm blocks, RMSNorm without gain, q/k RMSNorm +
 * RoPE, causal softmax attention, GELU-tanh MLP, untied input/output embeddings, no biases.
 *
 * Internal layout differs from the checkpoint layout only for qkv: SPEC stores [L, 3, N, D, H];
 * in memory each layer's qkv is one [D, 3·N·H] matrix (columns ordered q heads, k heads, v heads) so
 * the projection is a single GEMM. `out [L,N,H,D]`, `up [L,D,F]` and `down [L,F,D]` are already
 * row-major matrices. toSpec()/fromSpec() convert.
 */
import { native } from '../backend/native.js';
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

/** Shapes of the checkpoint tensors (SPEC §7). */
export function specShapes(c: GPTConfig): Record<string, number[]> {
  const { D, L, H, V } = c;
  const N = D / H, F = 4 * D;
  return {
    embed_in: [V, D],
    embed_out: [V, D],
    qkv: [L, 3, N, D, H],
    out: [L, N, H, D],
    up: [L, D, F],
    down: [L, F, D],
  };
}

/** Hook through which LoRA (or any adapter) supplies the effective weight of a projection. */
export type WeightHook = (name: 'qkv' | 'out' | 'up' | 'down', layer: number, base: Tensor) => Tensor;

export interface KVCache {
  B: number;
  Tmax: number;
  k: Float32Array[]; // per layer [B, Tmax, N, H]
  v: Float32Array[];
  /** The weights packed for gemmPacked when the cache was made (AMX tiles, or float32 panels on machines without
   *  AMX; null where there is no packing engine or gemm is set to sgemm), so decoding does not repack them every
   *  step. The buffers belong to the model, and each newCache() refills them with the current weights: a cache
   *  must not outlive a change of the weights. */
  packed?: PackedDecodeWeights | null;
}

export interface PackedDecodeWeights {
  qkv: Uint16Array[];
  out: Uint16Array[];
  up: Uint16Array[];
  down: Uint16Array[];
  embedOut: Uint16Array;
}

/** Decoder weights up to this size (float32 bytes) keep a copy to skip repacking unchanged weights. */
const kPackSourceBytes = 16 << 20;

/** Whether two float arrays hold the same bytes (memcmp: NaNs compare by their bits). */
function sameBytes(a: Float32Array, b: Float32Array): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
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
    const { D, L, V } = cfg;
    this.N = D / cfg.H;
    this.F = 4 * D;
    this.params = new ParamSet([
      ['embed_in', [V, D]],
      ['embed_out', [V, D]],
      ['qkv', [L, D, 3 * D]],
      ['out', [L, D, D]],
      ['up', [L, D, this.F]],
      ['down', [L, this.F, D]],
    ]);
    this.embedIn = this.params.tensor('embed_in');
    this.embedOut = this.params.tensor('embed_out');
    this.qkv = this.params.slices('qkv', L, [D, 3 * D]);
    this.out = this.params.slices('out', L, [D, D]);
    this.up = this.params.slices('up', L, [D, this.F]);
    this.down = this.params.slices('down', L, [this.F, D]);
  }

  /** SPEC §2 initialisation: N(0,1)·D^-1/2 everywhere except down, N(0,1)·F^-1/2. */
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

  private w(name: 'qkv' | 'out' | 'up' | 'down', l: number): Tensor {
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
    return op.matmul(op.rmsnorm(x), this.embedOut, true);
  }

  /** Logits without a graph. */
  logits(ids: Int32Array, B: number, T: number): Float32Array {
    return noGrad(() => this.forward(ids, B, T).data);
  }

  // ---- cached decoding --------------------------------------------------------------------

  newCache(B: number, Tmax = this.cfg.T): KVCache {
    const D = this.cfg.D;
    const mk = () => Array.from({ length: this.cfg.L }, () => new Float32Array(B * Tmax * D));
    return { B, Tmax, k: mk(), v: mk(), packed: this.wantsPacking(B) ? this.packDecodeWeights() : null };
  }

  /**
   * A cache for a sampler (sample() takes one per batch of rows). It reuses the storage of the model's
   * previous sampler cache while that is still alive (at least B rows and Tmax positions; it is held weakly, so
   * the garbage collector may free it between calls), which spares zeroing and page-faulting it again:
   * 200 MB for 64 rows of a D=256, L=6, T=256 model. Only one sampler cache may be in use at a time,
   * since the next call hands out the same storage. Its stale contents are never read: decoding writes
   * position pos before it reads positions ≤ pos.
   */
  samplerCache(B: number, Tmax = this.cfg.T): KVCache {
    const st = this.samplerStore;
    const k = st?.k.deref(), v = st?.v.deref();
    if (st && k && v && st.Tmax >= Tmax && st.B >= B) {
      return { B, Tmax: st.Tmax, k, v, packed: this.wantsPacking(B) ? this.packDecodeWeights() : null };
    }
    const c = this.newCache(B, Tmax);
    this.samplerStore = { B, Tmax, k: new WeakRef(c.k), v: new WeakRef(c.v) };
    return c;
  }
  private samplerStore: { B: number; Tmax: number; k: WeakRef<Float32Array[]>; v: WeakRef<Float32Array[]> } | null = null;

  /** On AMX, gemmPacked uses a packing only from 8 rows up, so fewer rows would pack for nothing; the float32
   *  panels of machines without AMX are faster than sgemm from one row up (1 × 1024 × 256: 63–79 against 17
   *  GFLOP/s). */
  private wantsPacking(B: number): boolean {
    return B >= 8 || !native().gemmAmxAvailable();
  }

  /** Every decoder weight packed once for gemmPacked: for the AMX engine (about 1.5× their float32 size) where the
   *  machine has AMX, else in float32 panels (their size); null where neither exists or the engine is set to sgemm. */
  private packDecodeWeights(): PackedDecodeWeights | null {
    const k = native();
    const { D, L, V } = this.cfg;
    const F = this.F;
    if (k.gemmPackSize(D, D) === 0 || k.getGemmMode() === 'blas') return null;
    // Packing itself is fast (about 20 GB/s); allocating fresh zeroed buffers for every cache cost more
    // than the packing (a sampler makes one cache per call), so the buffers stay with the model and each
    // new cache repacks the current weights into them, unless a weight is bit for bit what it was at its last
    // packing (a frozen model sampled call after call: the second benchmark model's 11 ms sampling call spent
    // 0.85 ms packing). The comparison is against a copy kept for it (memcmp, half the packing's time), so any
    // change to a weight, by whatever means, repacks it. Only small models keep the copies: for them packing
    // is a noticeable share of a sampling call; a larger model decodes so much longer per call that packing is
    // under 1% of it (third benchmark model: 5 of 1500 ms), and the copy would cost its weights' size in memory.
    const keepSources = (L * (4 * D * D + 2 * D * F) + V * D) * 4 <= kPackSourceBytes;
    if (!keepSources) this.packSrc.clear();
    const old = this.packBufs;
    const pack = (B: Float32Array, transB: boolean, N: number, K: number, reuse: Uint16Array | undefined) => {
      const src = reuse && this.packSrc.get(reuse);
      if (reuse && src && sameBytes(src, B)) return reuse;
      const p = reuse ?? new Uint16Array(k.gemmPackSize(N, K));
      k.gemmPackB(transB, N, K, B, p);
      if (!keepSources) return p;
      if (src && src.length === B.length) src.set(B);
      else this.packSrc.set(p, Float32Array.from(B));
      return p;
    };
    this.packBufs = noGrad(() => {
      const per = (name: 'qkv' | 'out' | 'up' | 'down', N: number, K: number) =>
        Array.from({ length: L }, (_, l) => pack(this.w(name, l).data, false, N, K, old?.[name][l]));
      return {
        qkv: per('qkv', 3 * D, D),
        out: per('out', D, D),
        up: per('up', F, D),
        down: per('down', D, F),
        embedOut: pack(this.embedOut.data, true, V, D, old?.embedOut),
      };
    });
    return this.packBufs;
  }
  /** The buffers of the last packing (see packDecodeWeights). */
  private packBufs: PackedDecodeWeights | null = null;
  /** For each packed buffer, a copy of the weight it was last packed from. */
  private readonly packSrc = new Map<Uint16Array, Float32Array>();

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
    // Temporaries come from the buffer pool: a sampler calls this once per position.
    return scope(() => noGrad(() => {
      const x = alloc(B * D, false);
      k.embeddingForward(x, this.embedIn.data, ids, B, V, D);
      const a = alloc(B * D, false), rstd = alloc(B * 2 * N, false);
      const raw = alloc(B * 3 * D, false), qkv = alloc(B * 3 * D, false);
      const att = alloc(B * D, false), hidden = alloc(B * F, false), act = alloc(B * F, false);
      const p = cache.packed;
      for (let l = 0; l < L; l++) {
        const wq = this.w('qkv', l).data, wo = this.w('out', l).data;
        const wu = this.w('up', l).data, wd = this.w('down', l).data;
        k.rmsnormForward(a, rstd, x, B, D);
        k.gemmPacked(false, false, B, 3 * D, D, 1, a, wq, p?.qkv[l] ?? null, 0, raw);
        k.qkNormRopeForward(qkv, rstd, raw, B, 1, N, H, pos);
        k.attentionDecode(att, qkv, cache.k[l]!, cache.v[l]!, B, 1, N, H, Tmax, pos); // also appends k, v at pos
        k.gemmPacked(false, false, B, D, D, 1, att, wo, p?.out[l] ?? null, 1, x); // residual: x += att · out
        k.rmsnormForward(a, rstd, x, B, D);
        k.gemmPacked(false, false, B, F, D, 1, a, wu, p?.up[l] ?? null, 0, hidden);
        k.geluForward(act, hidden, B * F);
        k.gemmPacked(false, false, B, D, F, 1, act, wd, p?.down[l] ?? null, 1, x); // residual: x += gelu(·) · down
      }
      k.rmsnormForward(a, rstd, x, B, D);
      k.gemmPacked(false, true, B, V, D, 1, a, this.embedOut.data, p?.embedOut ?? null, 0, logits);
      return logits;
    }));
  }

  // ---- checkpoint layout ------------------------------------------------------------------

  /** Tensors in the SPEC §7 layout (copies). */
  toSpec(): Record<string, SpecTensor> {
    const shapes = specShapes(this.cfg);
    const { D, L, H } = this.cfg;
    const N = this.N;
    const qkvSpec = new Float32Array(this.params.view('qkv').length);
    const qkvInt = this.params.view('qkv');
    // internal [L, D, 3, N, H] → spec [L, 3, N, D, H]
    for (let l = 0; l < L; l++)
      for (let d = 0; d < D; d++)
        for (let j = 0; j < 3; j++)
          for (let n = 0; n < N; n++) {
            const src = (((l * D + d) * 3 + j) * N + n) * H;
            const dst = (((l * 3 + j) * N + n) * D + d) * H;
            qkvSpec.set(qkvInt.subarray(src, src + H), dst);
          }
    const out: Record<string, SpecTensor> = {};
    for (const name of Object.keys(shapes)) {
      out[name] = { shape: shapes[name]!, data: name === 'qkv' ? qkvSpec : this.params.view(name).slice() };
    }
    return out;
  }

  /** Build a model from SPEC-layout tensors (shapes must already be validated). */
  static fromSpec(cfg: GPTConfig, tensors: Record<string, Float32Array>): GPT {
    const m = new GPT(cfg);
    const { D, L, H } = cfg;
    const N = m.N;
    for (const name of ['embed_in', 'embed_out', 'out', 'up', 'down']) m.params.view(name).set(tensors[name]!);
    const spec = tensors.qkv!;
    const qkvInt = m.params.view('qkv');
    for (let l = 0; l < L; l++)
      for (let j = 0; j < 3; j++)
        for (let n = 0; n < N; n++)
          for (let d = 0; d < D; d++) {
            const src = (((l * 3 + j) * N + n) * D + d) * H;
            const dst = (((l * D + d) * 3 + j) * N + n) * H;
            qkvInt.set(spec.subarray(src, src + H), dst);
          }
    return m;
  }

  /** An independent copy (the frozen reference π of a finetuning run). */
  clone(): GPT {
    const m = new GPT(this.cfg);
    m.params.data.set(this.params.data);
    return m;
  }
}
