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
    if (this.method === 'ntp_pre' || this.method === 'kl_pre') return this.twoPassStep(ids, B, T, lr, mask);
    const logits = this.model.forward(ids, B, T);
    // The logits are consumed by their loss, except under kl_dwn, whose KL term reads them afterwards.
    const ntp = ntpLoss(logits, ids, B, T, { inPlace: this.method !== 'kl_dwn' }, mask);
    // kl_dwn's KL term reads the training batch's logits: one graph for both terms.
    const reg: Tensor | null = this.method === 'kl_dwn' ? klLoss(keep(() => this.pi!.logits(ids, B, T)), logits, B, T) : null;
    const total = reg ? weightedSum([ntp, reg], [1, this.coeff]) : ntp;
    const result = { loss: total.item(), ntp: ntp.item(), reg: reg ? reg.item() : 0 };
    if (!Number.isFinite(result.loss)) return result;
    total.backward();
    this.optimizer.step(this.trainable, lr);
    return result;
  }

  /**
   * ntp_pre and kl_pre, whose two terms share no activations: the training batch's forward and backward run (and
   * free their buffers) before the replay batch's, so the step holds one graph at a time, not both. The gradients
   * add up to those of NTP + coeff·R.
   */
  private twoPassStep(ids: Int32Array, B: number, T: number, lr: number, mask?: Float32Array): StepResult {
    const ntp = scope(() => {
      const loss = ntpLoss(this.model.forward(ids, B, T), ids, B, T, { inPlace: true }, mask);
      const v = loss.item();
      if (Number.isFinite(v)) loss.backward();
      return v;
    });
    if (!Number.isFinite(ntp)) return { loss: ntp, ntp, reg: NaN };
    const reg = scope(() => {
      const r = this.replay!.next();
      const Br = r.length / T;
      const loss = this.method === 'ntp_pre'
        ? ntpLoss(this.model.forward(r, Br, T), r, Br, T, { inPlace: true })
        // θ's replay logits are read by nothing else: the KL gradient is written over them.
        : klLoss(keep(() => this.pi!.logits(r, Br, T)), this.model.forward(r, Br, T), Br, T, { inPlace: true });
      const v = loss.item();
      if (Number.isFinite(v)) loss.backward(this.coeff);
      return v;
    });
    const result = { loss: ntp + this.coeff * reg, ntp, reg };
    if (!Number.isFinite(result.loss)) return result;
    this.optimizer.step(this.trainable, lr);
    return result;
  }
}
