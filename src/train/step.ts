/**
 * One optimisation step: NTP on the training batch plus reg.coeff · R (docs/contract.md §2), backward, update.
 * Shared by `unforget train` and `unforget bench`, so the benchmark measures the real step.
 */
import type { RegMethod } from '../config/schema.js';
import type { GPT } from '../model/gpt.js';
import type { ParamSet } from '../model/params.js';
import type { ReplaySource } from '../replay/replay.js';
import { weightedSum } from '../tensor/ops.js';
import { keep, scope } from '../tensor/pool.js';
import type { Tensor } from '../tensor/tensor.js';
import { klLoss, ntpLoss } from './losses.js';
import type { Optimizer } from './optim.js';

export interface StepResult {
  loss: number;
  ntp: number;
  reg: number;
}

export class Stepper {
  constructor(
    readonly model: GPT,
    /** Parameters being trained (the model's, or LoRA's). */
    readonly trainable: ParamSet,
    readonly optimizer: Optimizer,
    readonly method: RegMethod | null,
    readonly coeff: number,
    /** The frozen reference model π (needed by kl_pre and kl_dwn). */
    readonly pi: GPT | null,
    /** Replay batches (needed by ntp_pre, kl_pre and replace). */
    readonly replay: ReplaySource | null,
  ) {
    if ((method === 'kl_pre' || method === 'kl_dwn') && !pi) throw new Error(`reg.method=${method} needs a reference model`);
    if ((method === 'ntp_pre' || method === 'kl_pre' || method === 'replace') && !replay) throw new Error(`reg.method=${method} needs a replay source`);
  }

  /** Rows of each training batch replaced by replay rows (reg.method=replace). */
  replacedRows(B: number): number {
    return this.method === 'replace' ? Math.floor(this.coeff * B) : 0;
  }

  /**
   * Computes the loss and, if it is finite, backpropagates and updates the parameters. A
   * non-finite loss leaves the parameters untouched (the caller stops the run). `mask` [B, T] (chat
   * rows) weights each NTP target; the replay and KL terms take none.
   */
  step(ids: Int32Array, B: number, T: number, lr: number, mask?: Float32Array): StepResult {
    return scope(() => this.stepInScope(ids, B, T, lr, mask));
  }

  private stepInScope(ids: Int32Array, B: number, T: number, lr: number, mask?: Float32Array): StepResult {
    const k = this.replacedRows(B);
    if (k > 0) {
      ids = ids.slice();
      ids.set(this.replay!.next().subarray(0, k * T), (B - k) * T);
      // Replay rows have no mask: every one of their tokens is a target.
      if (mask) (mask = mask.slice()).fill(1, (B - k) * T);
    }
    this.trainable.zeroGrad();
    const logits = this.model.forward(ids, B, T);
    // The logits are consumed by their loss, except under kl_dwn, whose KL term reads them afterwards.
    const ntp = ntpLoss(logits, ids, B, T, { inPlace: this.method !== 'kl_dwn' }, mask);
    let reg: Tensor | null = null;
    if (this.method === 'ntp_pre') {
      const r = this.replay!.next();
      const Br = r.length / T;
      reg = ntpLoss(this.model.forward(r, Br, T), r, Br, T, { inPlace: true });
    } else if (this.method === 'kl_pre') {
      const r = this.replay!.next();
      const Br = r.length / T;
      // θ's replay logits are read by nothing else: the KL gradient is written over them.
      reg = klLoss(keep(() => this.pi!.logits(r, Br, T)), this.model.forward(r, Br, T), Br, T, { inPlace: true });
    } else if (this.method === 'kl_dwn') {
      reg = klLoss(keep(() => this.pi!.logits(ids, B, T)), logits, B, T);
    }
    const total = reg ? weightedSum([ntp, reg], [1, this.coeff]) : ntp;
    const result = { loss: total.item(), ntp: ntp.item(), reg: reg ? reg.item() : 0 };
    if (!Number.isFinite(result.loss)) return result;
    total.backward();
    this.optimizer.step(this.trainable, lr);
    return result;
  }
}
