/**
 * LoRA (docs/contract.md §2): every projection matrix W [in, out] of every layer (qkv, out, up, down; not the
 * embeddings) becomes W + A·B with A ~ N(0, 1/in) of shape [in, r] and B = 0 of shape [r, out].
 * Only A and B are trained; the base model is frozen. Attaching installs a weight hook on the
 * model, so the forward, evaluation and KV-cache sampling all see the adapted weights.
 */
import { native } from '../backend/native.js';
import { ConfigError } from '../errors.js';
import { add, matmul } from '../tensor/ops.js';
import { noGrad, type Tensor } from '../tensor/tensor.js';
import { Rng } from '../util/rng.js';
import { ParamSet } from './params.js';
import { PROJECTIONS, type Projection as Proj, type Transformer } from './transformer.js';

const PROJS = PROJECTIONS;

export class LoRA {
  readonly params: ParamSet;
  private readonly A: Record<Proj, Tensor[]>;
  private readonly B: Record<Proj, Tensor[]>;

  constructor(readonly model: Transformer, readonly rank: number, seed: number) {
    const { L } = model.cfg;
    // W is [in, out] for gpt; the factors follow W's own shape, so that W + A·B needs no transposition.
    const dims = Object.fromEntries(PROJS.map((p) => [p, model.weight(p, 0).shape as [number, number]])) as Record<Proj, [number, number]>;
    const limit = Math.min(...Object.values(dims).map(([i, o]) => Math.min(i, o)));
    if (!Number.isInteger(rank) || rank <= 0 || rank > limit) {
      throw new ConfigError('model.lora_rank', `must be an integer in [1, ${limit}] (min(in, out) of the projections), got ${rank}`);
    }
    const spec: Array<[string, number[]]> = [];
    for (const p of PROJS) {
      spec.push([`${p}.A`, [L, dims[p][0], rank]]);
      spec.push([`${p}.B`, [L, rank, dims[p][1]]]);
    }
    this.params = new ParamSet(spec);
    const rng = new Rng(seed);
    this.A = {} as Record<Proj, Tensor[]>;
    this.B = {} as Record<Proj, Tensor[]>;
    for (const p of PROJS) {
      const [fin, fout] = dims[p];
      rng.fillNormal(this.params.view(`${p}.A`), 1 / Math.sqrt(fin));
      this.A[p] = this.params.slices(`${p}.A`, L, [fin, rank]);
      this.B[p] = this.params.slices(`${p}.B`, L, [rank, fout]); // zeros: W + A·B = W at the start
    }
  }

  /** Freeze the base model and route its projections through W + A·B. */
  attach(): void {
    this.model.setTrainable(false);
    this.model.weightHook = (name, l, base) => add(base, matmul(this.A[name][l]!, this.B[name][l]!));
  }

  /** A plain gpt holding W + A·B (for checkpoints and weight norms); the adapters stay attached. */
  merged(): Transformer {
    const { L } = this.model.cfg;
    const out = this.model.clone();
    const k = native();
    for (const p of PROJS) {
      for (let l = 0; l < L; l++) {
        const delta = noGrad(() => matmul(this.A[p][l]!, this.B[p][l]!));
        k.axpy(delta.size, 1, delta.data, out.weight(p, l).data);
      }
    }
    return out;
  }
}
