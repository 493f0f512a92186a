/**
 * LoRA (docs/contract.md §2): every projection matrix W [in, out] of every layer (qkv, out, up, down; not the
 * embeddings) becomes W + A·B with A ~ N(0, 1/in) of shape [in, r] and B = 0 of shape [r, out].
 * Only A and B are trained; the base model is frozen. Attaching installs a weight hook on the
 * model, so the forward, evaluation and KV-cache sampling all see the adapted weights.
 */
import { native } from '../backend/native.js';
import { ConfigError } from '../errors.js';
import { add, matmul, scale as axpyScale } from '../tensor/ops.js';
import { noGrad, type Tensor } from '../tensor/tensor.js';
import { Rng } from '../util/rng.js';
import { ParamSet } from './params.js';
import { PROJECTIONS, type Projection as Proj, type Transformer } from './transformer.js';

const PROJS = PROJECTIONS;

export interface LoRAOptions {
  /** PEFT's lora_alpha: the update is scaled by alpha / rank; null or absent → rank (scaling 1). */
  alpha?: number | null;
  /** Which projections get adapters (model.lora_targets): all-linear, or for gpt a subset of qkv, out, up, down. */
  targets?: string[];
}

const GPT_TARGETS: Record<string, Proj> = { qkv: 'qkv', out: 'o', up: 'up', down: 'down' };

export class LoRA {
  readonly params: ParamSet;
  readonly scaling: number;
  readonly targets: Proj[];
  private readonly A: Partial<Record<Proj, Tensor[]>> = {};
  private readonly B: Partial<Record<Proj, Tensor[]>> = {};

  constructor(readonly model: Transformer, readonly rank: number, seed: number, opts: LoRAOptions = {}) {
    const { L } = model.cfg;
    this.targets = loraTargets(model, opts.targets ?? ['all-linear']);
    // The factors follow W's own shape ([in, out] for gpt, [out, in] for the Hugging Face family), so W + A·B needs
    // no transposition: A is [rows of W, r], B is [r, columns of W].
    const dims = Object.fromEntries(this.targets.map((p) => [p, model.weight(p, 0).shape as [number, number]])) as Record<Proj, [number, number]>;
    const limit = Math.min(...Object.values(dims).map(([i, o]) => Math.min(i, o)));
    if (!Number.isInteger(rank) || rank <= 0 || rank > limit) {
      throw new ConfigError('model.lora_rank', `must be an integer in [1, ${limit}] (min(in, out) of the projections), got ${rank}`);
    }
    this.scaling = (opts.alpha ?? rank) / rank;
    const spec: Array<[string, number[]]> = [];
    for (const p of this.targets) {
      spec.push([`${p}.A`, [L, dims[p][0], rank]]);
      spec.push([`${p}.B`, [L, rank, dims[p][1]]]);
    }
    this.params = new ParamSet(spec);
    const rng = new Rng(seed);
    for (const p of this.targets) {
      const [rows, cols] = dims[p];
      if (model.outIn) {
        // PEFT: lora_A [r, in] (here B) Kaiming-uniform with bound 1/sqrt(in), lora_B [out, r] (here A) zero.
        const b = this.params.view(`${p}.B`), bound = 1 / Math.sqrt(cols);
        for (let i = 0; i < b.length; i++) b[i] = (2 * rng.uniform() - 1) * bound;
      } else {
        rng.fillNormal(this.params.view(`${p}.A`), 1 / Math.sqrt(rows)); // docs/contract.md §2: B = 0
      }
      this.A[p] = this.params.slices(`${p}.A`, L, [rows, rank]);
      this.B[p] = this.params.slices(`${p}.B`, L, [rank, cols]);
    }
  }

  private delta(p: Proj, l: number): Tensor {
    const d = matmul(this.A[p]![l]!, this.B[p]![l]!);
    return this.scaling === 1 ? d : weightedScale(d, this.scaling);
  }

  /** Freeze the base model and route its projections through W + s·A·B. */
  attach(): void {
    this.model.setTrainable(false);
    this.model.weightHook = (name, l, base) => (this.A[name] ? add(base, this.delta(name, l)) : base);
  }

  /** A plain model holding W + s·A·B (for checkpoints and weight norms); the adapters stay attached. */
  merged(): Transformer {
    const { L } = this.model.cfg;
    const out = this.model.clone();
    const k = native();
    for (const p of this.targets) {
      for (let l = 0; l < L; l++) {
        const delta = noGrad(() => matmul(this.A[p]![l]!, this.B[p]![l]!));
        k.axpy(delta.size, this.scaling, delta.data, out.weight(p, l).data);
      }
    }
    return out;
  }
}

/** model.lora_targets as projections of this model. */
function loraTargets(model: Transformer, names: string[]): Proj[] {
  if (names.includes('all-linear')) return [...PROJS];
  if (model.outIn) {
    throw new ConfigError('model.lora_targets', `only all-linear is supported for ${model.cfg.family} models so far, got ${names.join(', ')}`);
  }
  const out: Proj[] = [];
  for (const n of names) {
    const p = GPT_TARGETS[n];
    if (!p) throw new ConfigError('model.lora_targets', `unknown projection '${n}' for gpt; use all-linear or some of ${Object.keys(GPT_TARGETS).join(', ')}`);
    if (!out.includes(p)) out.push(p);
  }
  return out;
}

/** s·x as a differentiable op. */
function weightedScale(x: Tensor, s: number): Tensor {
  return axpyScale(x, s);
}
