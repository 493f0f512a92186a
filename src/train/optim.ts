/**
 * Optimizers over a flat ParamSet (one native call per step) and the learning-rate schedule.
 */
import { native } from '../backend/native.js';
import type { ParamSet } from '../model/params.js';

export interface Optimizer {
  step(params: ParamSet, lr: number): void;
}

export class AdamW implements Optimizer {
  private m: Float32Array | null = null;
  private v: Float32Array | null = null;
  private t = 0;
  constructor(
    readonly b1: number,
    readonly b2: number,
    readonly eps: number,
    readonly weightDecay: number,
  ) {}

  step(params: ParamSet, lr: number): void {
    const n = params.size;
    if (!this.m || this.m.length !== n) {
      this.m = new Float32Array(n);
      this.v = new Float32Array(n);
      this.t = 0;
    }
    this.t++;
    const bc1 = 1 - Math.pow(this.b1, this.t);
    const bc2 = 1 - Math.pow(this.b2, this.t);
    native().adamwStep(params.data, params.grad, this.m, this.v!, n, lr, this.b1, this.b2, this.eps, this.weightDecay, bc1, bc2);
  }
}

export class SGD implements Optimizer {
  constructor(readonly weightDecay: number) {}
  step(params: ParamSet, lr: number): void {
    native().sgdStep(params.data, params.grad, params.size, lr, this.weightDecay);
  }
}

export function makeOptimizer(o: { optimizer: 'adamw' | 'sgd'; b1: number; b2: number; eps: number; weight_decay: number }): Optimizer {
  return o.optimizer === 'adamw' ? new AdamW(o.b1, o.b2, o.eps, o.weight_decay) : new SGD(o.weight_decay);
}

/**
 * Linear warm-up from 0 over `warmupSteps`, then constant, or cosine to 0 at `totalSteps`
 * (the last step's lr is 0 only after it: step indices are 0-based and the schedule reaches 0 at
 * step = totalSteps).
 */
export function learningRate(step: number, base: number, warmupSteps: number, decay: 'cosine' | null, totalSteps: number | null): number {
  if (warmupSteps > 0 && step < warmupSteps) return (base * (step + 1)) / warmupSteps;
  if (decay === 'cosine' && totalSteps !== null) {
    const span = Math.max(1, totalSteps - warmupSteps);
    const p = Math.min(1, (step - warmupSteps) / span);
    return base * 0.5 * (1 + Math.cos(Math.PI * p));
  }
  return base;
}
