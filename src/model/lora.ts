/**
 * LoRA adapters (docs/contract.md §2; PEFT for the Hugging Face family). Each adapted projection W becomes
 * W + s·ΔW with s = alpha / r; only the factors train and the base model is frozen. Attaching installs a weight hook
 * on the model, so the forward, evaluation and KV-cache sampling all see the adapted weights.
 *
 * - gpt (W [in, out]): one adapter per projection qkv, out, up, down; ΔW = A·B with A ~ N(0, 1/in) [in, r] and
 *   B = 0 [r, out].
 * - Hugging Face family (W [out, in], q/k/v and gate/up stacked): one adapter per transformers module, as PEFT
 *   has them: ΔW_m = lora_B·lora_A with lora_A [r, in] Kaiming-uniform (bound 1/sqrt(in)) and lora_B [out, r] = 0;
 *   a stack's ΔW is its modules' ΔW one above the other (zero rows for modules without an adapter).
 */
import { native } from '../backend/native.js';
import { ConfigError } from '../errors.js';
import { add, concatRows, matmul, scale } from '../tensor/ops.js';
import { HalfWeight } from '../tensor/half.js';
import { noGrad, type Tensor } from '../tensor/tensor.js';
import { Rng } from '../util/rng.js';
import { peftTensorName } from './hf_folder.js';
import { ParamSet } from './params.js';
import { MATRICES, PROJECTIONS, type Projection, type Transformer } from './transformer.js';

export interface LoRAOptions {
  /** PEFT's lora_alpha: the update is scaled by alpha / rank; null or absent → rank (scaling 1). */
  alpha?: number | null;
  /** model.lora_targets: all-linear, or module names (gpt: qkv, out, up, down; Hugging Face: q_proj, k_proj,
   *  v_proj, o_proj, gate_proj, up_proj, down_proj). */
  targets?: string[];
}

/** One adapted module: its rows in its projection's stacked weight, and its input size. */
export interface LoRAModule {
  name: string;
  stack: Projection;
  /** Rows of the stack this module's output occupies (HF), or the weight's [in, out] (gpt). */
  rows: number;
  cols: number;
}

/** Every module a model could adapt, in stacking order (transformers' names for the Hugging Face family). */
export function loraModules(model: Transformer): LoRAModule[] {
  const { D, N, Nkv, H, F } = model.cfg;
  if (!model.outIn) {
    return PROJECTIONS.map((p) => {
      const [rows, cols] = model.weight(p, 0).shape as [number, number];
      return { name: p === 'o' ? 'out' : p, stack: p, rows, cols };
    });
  }
  return [
    { name: 'q_proj', stack: 'qkv', rows: N * H, cols: D },
    { name: 'k_proj', stack: 'qkv', rows: Nkv * H, cols: D },
    { name: 'v_proj', stack: 'qkv', rows: Nkv * H, cols: D },
    { name: 'o_proj', stack: 'o', rows: D, cols: N * H },
    { name: 'gate_proj', stack: 'up', rows: F, cols: D },
    { name: 'up_proj', stack: 'up', rows: F, cols: D },
    { name: 'down_proj', stack: 'down', rows: D, cols: F },
  ];
}

export class LoRA {
  readonly params: ParamSet;
  readonly scaling: number;
  readonly modules: LoRAModule[];
  private readonly all: LoRAModule[];
  /** Per adapted module and layer: gpt's A [in, r] and B [r, out], or PEFT's lora_A [r, in] and lora_B [out, r]. */
  private readonly A = new Map<string, Tensor[]>();
  private readonly B = new Map<string, Tensor[]>();

  constructor(readonly model: Transformer, readonly rank: number, seed: number, opts: LoRAOptions = {}) {
    const { L } = model.cfg;
    this.all = loraModules(model);
    this.modules = selectModules(this.all, opts.targets ?? ['all-linear']);
    const limit = Math.min(...this.modules.map((m) => Math.min(m.rows, m.cols)));
    if (!Number.isInteger(rank) || rank <= 0 || rank > limit) {
      throw new ConfigError('model.lora_rank', `must be an integer in [1, ${limit}] (min(in, out) of the projections), got ${rank}`);
    }
    this.scaling = (opts.alpha ?? rank) / rank;
    const shapes = (m: LoRAModule): [number[], number[]] =>
      model.outIn ? [[rank, m.cols], [m.rows, rank]] : [[m.rows, rank], [rank, m.cols]];
    const spec: Array<[string, number[]]> = [];
    for (const m of this.modules) {
      const [a, b] = shapes(m);
      spec.push([`${m.name}.A`, [L, ...a]], [`${m.name}.B`, [L, ...b]]);
    }
    this.params = new ParamSet(spec);
    const rng = new Rng(seed);
    for (const m of this.modules) {
      const [a, b] = shapes(m);
      const A = this.params.view(`${m.name}.A`);
      if (model.outIn) {
        const bound = 1 / Math.sqrt(m.cols);
        for (let i = 0; i < A.length; i++) A[i] = (2 * rng.uniform() - 1) * bound;
      } else rng.fillNormal(A, 1 / Math.sqrt(m.rows));
      this.A.set(m.name, this.params.slices(`${m.name}.A`, L, a));
      this.B.set(m.name, this.params.slices(`${m.name}.B`, L, b)); // zeros: W + ΔW = W at the start
    }
  }

  /** The factors of module `name` at layer l (gpt: A, B; Hugging Face: lora_A, lora_B), or null. */
  factors(name: string, l: number): { A: Tensor; B: Tensor } | null {
    const A = this.A.get(name), B = this.B.get(name);
    return A && B ? { A: A[l]!, B: B[l]! } : null;
  }

  /** s·ΔW of one module (gpt: A·B; Hugging Face: lora_B·lora_A). */
  private moduleDelta(m: LoRAModule, l: number): Tensor {
    const f = this.factors(m.name, l)!;
    const d = this.model.outIn ? matmul(f.B, f.A) : matmul(f.A, f.B);
    return this.scaling === 1 ? d : scale(d, this.scaling);
  }

  /** s·ΔW of a whole projection stack, or null when none of its modules is adapted. */
  private stackDelta(p: Projection, l: number): Tensor | null {
    const parts = this.all.filter((m) => m.stack === p);
    if (!parts.some((m) => this.A.has(m.name))) return null;
    if (parts.length === 1) return this.moduleDelta(parts[0]!, l);
    return concatRows(parts.map((m) => (this.A.has(m.name) ? this.moduleDelta(m, l) : { rows: m.rows })), parts[0]!.cols);
  }

  /**
   * Freeze the base model and route its projections through W + s·ΔW: for gpt by forming the adapted weight, for
   * the Hugging Face family as PEFT computes it (x·Wᵀ + s·(x·lora_Aᵀ)·lora_Bᵀ per module, never forming ΔW), which
   * also works over a half-precision base.
   */
  attach(): void {
    this.model.setTrainable(false);
    if (this.model.outIn) {
      const perStack = new Map<Projection, Array<{ m: LoRAModule; col: number }>>();
      for (const p of PROJECTIONS) {
        let col = 0;
        const list: Array<{ m: LoRAModule; col: number }> = [];
        for (const m of this.all.filter((x) => x.stack === p)) {
          if (this.A.has(m.name)) list.push({ m, col });
          col += m.rows;
        }
        perStack.set(p, list);
      }
      this.model.adapterHook = (name, l) => perStack.get(name)!.map(({ m, col }) => {
        const f = this.factors(m.name, l)!;
        return { col, rows: m.rows, A: f.A, B: f.B, scale: this.scaling };
      });
      return;
    }
    this.model.weightHook = (name, l, base) => {
      const d = this.stackDelta(name, l);
      return d ? add(base, d.view(base.shape)) : base;
    };
  }

  /**
   * ‖θ‖ and ‖θ − base‖ of the adapted model, one projection stack at a time (no merged copy of the model): the
   * weights_l2 metrics of a LoRA run whose base may be half precision.
   */
  norms(): { theta: number; delta: number } {
    const k = native();
    const { L } = this.model.cfg;
    let theta = 0, delta = 0;
    const sq = (w: Float32Array) => k.sumSquares(w, w.length);
    const base = this.model;
    const widen = (w: Tensor | HalfWeight) => (w instanceof HalfWeight ? w.widen() : w.data);
    theta += sq(widen(base.embed));
    if (base.head !== base.embed) theta += sq(widen(base.head));
    for (const e of base.params.entries) if (!MATRICES.has(e.name)) theta += sq(base.params.view(e.name));
    for (const p of PROJECTIONS) {
      for (let l = 0; l < L; l++) {
        const w = widen(base.stored(p, l));
        const d = noGrad(() => this.stackDelta(p, l));
        if (d) {
          delta += sq(d.data);
          const sum = Float32Array.from(w);
          k.axpy(sum.length, 1, d.data, sum);
          theta += sq(sum);
        } else theta += sq(w);
      }
    }
    return { theta: Math.sqrt(theta), delta: Math.sqrt(delta) };
  }

  /** A plain model holding W + s·ΔW (for checkpoints and weight norms); the adapters stay attached. */
  merged(): Transformer {
    const { L } = this.model.cfg;
    const out = this.model.clone();
    const k = native();
    for (const p of PROJECTIONS) {
      for (let l = 0; l < L; l++) {
        const delta = noGrad(() => this.stackDelta(p, l));
        if (delta) k.axpy(delta.size, 1, delta.data, out.weight(p, l).data);
      }
    }
    return out;
  }
}

/** model.lora_targets as modules of this model. */
function selectModules(all: LoRAModule[], names: string[]): LoRAModule[] {
  if (names.includes('all-linear')) return all;
  const out: LoRAModule[] = [];
  for (const n of names) {
    const m = all.find((x) => x.name === n);
    if (!m) throw new ConfigError('model.lora_targets', `unknown module '${n}'; use all-linear or some of ${all.map((x) => x.name).join(', ')}`);
    if (!out.includes(m)) out.push(m);
  }
  return out;
}

/** The adapters of a Hugging Face–family model under PEFT's names ([r, in] lora_A, [out, r] lora_B; copies). */
export function peftTensors(lora: LoRA): Map<string, { shape: number[]; data: Float32Array }> {
  if (!lora.model.outIn) throw new Error('peftTensors: PEFT adapters are for the Hugging Face family');
  const out = new Map<string, { shape: number[]; data: Float32Array }>();
  for (let l = 0; l < lora.model.cfg.L; l++) {
    for (const m of lora.modules) {
      const f = lora.factors(m.name, l)!;
      out.set(peftTensorName(l, m.name, 'A'), { shape: [...f.A.shape], data: f.A.data.slice() });
      out.set(peftTensorName(l, m.name, 'B'), { shape: [...f.B.shape], data: f.B.data.slice() });
    }
  }
  return out;
}

/** Adds a PEFT adapter (scale · lora_B · lora_A per module and layer) into a Hugging Face–family model's weights. */
export function mergePeftAdapter(model: Transformer, adapter: { scale: number; tensors: ReadonlyMap<string, { shape: number[]; data: Float32Array }> }): void {
  const k = native();
  const { L } = model.cfg;
  const modules = loraModules(model);
  for (let l = 0; l < L; l++) {
    let row = 0;
    let stack: Projection | null = null;
    for (const m of modules) {
      if (m.stack !== stack) { stack = m.stack; row = 0; }
      const A = adapter.tensors.get(peftTensorName(l, m.name, 'A')), B = adapter.tensors.get(peftTensorName(l, m.name, 'B'));
      if (A && B) {
        const r = A.shape[0]!;
        const delta = new Float32Array(m.rows * m.cols);
        k.gemm(false, false, m.rows, m.cols, r, adapter.scale, B.data, A.data, 0, delta);
        const w = model.weight(m.stack, l).data;
        k.axpy(delta.length, 1, delta, w.subarray(row * m.cols, (row + m.rows) * m.cols));
      }
      row += m.rows;
    }
  }
}
