/**
 * Next-token prediction targets and masks, and evaluation of a model on a set of batches.
 * Position t of a sequence predicts token t+1; the last position predicts nothing.
 */
import { native } from '../backend/native.js';
import type { GPT } from '../model/gpt.js';
import { crossEntropy, klDiv, type LossOptions } from '../tensor/ops.js';
import { scope } from '../tensor/pool.js';
import type { Tensor } from '../tensor/tensor.js';

export interface NtpTargets {
  targets: Int32Array;
  /** 1 where position t predicts a token (t < T−1), else 0; optional extra mask multiplies in. */
  weights: Float32Array;
}

export function ntpTargets(ids: Int32Array, B: number, T: number, mask?: Float32Array): NtpTargets {
  const targets = new Int32Array(B * T);
  const weights = new Float32Array(B * T);
  for (let b = 0; b < B; b++) {
    for (let t = 0; t < T - 1; t++) {
      const i = b * T + t;
      targets[i] = ids[i + 1]!;
      weights[i] = mask ? mask[i + 1]! : 1;
    }
  }
  return { targets, weights };
}

/** First predicting position of the "second half" metric (`*_ntp_h2`): t ≥ floor(T/2). */
export function h2Start(T: number): number {
  return Math.floor(T / 2);
}

/**
 * NTP over the predicting positions; with `inPlace` the gradient replaces the logits (nothing reads them
 * after this loss). With a loss mask [B, T], position t counts with weight mask[t+1]: the mean is over targets.
 */
export function ntpLoss(logits: Tensor, ids: Int32Array, B: number, T: number, o: LossOptions = {}, mask?: Float32Array): Tensor {
  const { targets, weights } = ntpTargets(ids, B, T, mask);
  return crossEntropy(logits, targets, weights, o);
}

/** KL(π‖θ) averaged over predicting positions (the last position of each row is excluded, like NTP); `inPlace` as in ntpLoss. */
export function klLoss(refLogits: Float32Array, logits: Tensor, B: number, T: number, o: LossOptions = {}): Tensor {
  const { weights } = ntpTargets(new Int32Array(B * T), B, T);
  return klDiv(refLogits, logits, weights, o);
}

export interface EvalResult {
  ntp: number;
  ntp_h2: number;
  /** KL(π‖θ) when a reference model is given. */
  kl?: number;
  sequences: number;
}

/** A batch of ids [rows, T] with its loss mask (1 where the token is a target), as chat rows come. */
export interface MaskedBatch {
  ids: Int32Array;
  mask: Float32Array | null;
}

/**
 * Mean NTP (and second-half NTP, and KL to `ref`) of `model` over batches [rows, T] of ids; a masked
 * batch's positions count with the weight its mask gives their target, KL included.
 */
export function evaluate(model: GPT, batches: Iterable<Int32Array | MaskedBatch>, T: number, ref?: GPT | null): EvalResult {
  const k = native();
  const V = model.cfg.V;
  let sum = 0, n = 0, sumH2 = 0, nH2 = 0, klSum = 0, sequences = 0;
  const h2 = h2Start(T);
  for (const batch of batches) {
    const { ids, mask } = batch instanceof Int32Array ? { ids: batch, mask: null } : batch;
    const B = ids.length / T;
    const rowLoss = new Float32Array(B * T);
    const { targets, weights } = ntpTargets(ids, B, T, mask ?? undefined);
    scope(() => {
      const logits = model.logits(ids, B, T);
      k.crossEntropy(logits, targets, weights, B * T, V, rowLoss, null, 1);
      if (ref) klSum += k.klDiv(ref.logits(ids, B, T), logits, weights, B * T, V, null, null, 1);
    });
    for (let b = 0; b < B; b++) {
      for (let t = 0; t < T - 1; t++) {
        const w = weights[b * T + t]!;
        const l = w * rowLoss[b * T + t]!;
        sum += l;
        n += w;
        if (t >= h2) {
          sumH2 += l;
          nH2 += w;
        }
      }
    }
    sequences += B;
  }
  const out: EvalResult = { ntp: sum / n, ntp_h2: nH2 > 0 ? sumH2 / nH2 : NaN, sequences };
  if (ref) out.kl = klSum / n;
  return out;
}
