/**
 * How far a model has drifted from the base it was finetuned from, measured on the base's own samples: the base
 * samples sequences prompted with its start token (as self-generated replay does), and on them KL(π‖θ) and both
 * models' NTP are averaged over the predicting positions. Multiple-choice sets add both models' accuracy.
 */
import { native } from '../backend/native.js';
import { UnforgetError } from '../errors.js';
import type { GPT } from '../model/gpt.js';
import { sample } from '../model/sample.js';
import { scope } from '../tensor/pool.js';
import { Rng } from '../util/rng.js';
import { mcqAccuracy, prepareMcq, scoreMcq, type McqItem, type McqOptions, type McqTokenizer, type ScoringModel } from './mcq.js';

export interface DriftOptions {
  /** Sequences sampled from the base. */
  n: number;
  /** Their length, start token included (≤ both models' T). */
  T: number;
  seed: number;
  temperature: number;
  /** The base's start token: position 0 of every sample. */
  startToken: number;
  /** Rows per forward (default 16). */
  batchSize?: number;
}

export interface DriftResult {
  /** KL(π‖θ), π the base, averaged over predicting positions. */
  kl: number;
  ntp_base: number;
  ntp_model: number;
  n: number;
  T: number;
}

/** Samples of `base` and, on them, KL(base ‖ model) and both models' NTP (position t predicts token t+1). */
export function measureDrift(base: GPT, model: ScoringModel, o: DriftOptions): DriftResult {
  const V = base.cfg.V;
  if (model.cfg.V !== V) throw new UnforgetError(`forgetting: the base's vocabulary (${V}) and the model's (${model.cfg.V}) differ`);
  const { n, T } = o;
  if (T < 2) throw new UnforgetError(`forgetting: --seq-len must be at least 2 (position t predicts token t+1), got ${T}`);
  if (T > base.cfg.T || T > model.cfg.T) throw new UnforgetError(`forgetting: --seq-len ${T} exceeds the base's T=${base.cfg.T} or the model's T=${model.cfg.T}`);
  if (o.startToken < 0 || o.startToken >= V) throw new UnforgetError(`forgetting: start token ${o.startToken} is outside the vocabulary [0, ${V})`);
  const samples = sample(base, {
    prompts: new Int32Array(n).fill(o.startToken),
    promptLength: 1,
    length: T,
    temperature: o.temperature,
    rng: new Rng(o.seed),
    batchSize: 64,
  });
  const k = native();
  const Bmax = Math.max(1, o.batchSize ?? 16);
  let kl = 0, ntpBase = 0, ntpModel = 0;
  for (let r0 = 0; r0 < n; r0 += Bmax) {
    const B = Math.min(Bmax, n - r0);
    const ids = samples.subarray(r0 * T, (r0 + B) * T);
    const targets = new Int32Array(B * T), weights = new Float32Array(B * T);
    for (let b = 0; b < B; b++) {
      for (let t = 0; t < T - 1; t++) {
        targets[b * T + t] = ids[b * T + t + 1]!;
        weights[b * T + t] = 1;
      }
    }
    scope(() => {
      const lp = base.logits(ids, B, T), lq = model.logits(ids, B, T);
      kl += k.klDiv(lp, lq, weights, B * T, V, null, null, 1);
      ntpBase += k.crossEntropy(lp, targets, weights, B * T, V, null, null, 1);
      ntpModel += k.crossEntropy(lq, targets, weights, B * T, V, null, null, 1);
    });
  }
  const count = n * (T - 1);
  return { kl: kl / count, ntp_base: ntpBase / count, ntp_model: ntpModel / count, n, T };
}

export interface McqChange {
  acc_base: number;
  acc_model: number;
  acc_change: number;
  acc_norm_base?: number;
  acc_norm_model?: number;
  acc_norm_change?: number;
  n: number;
}

/** Both models' accuracy on one multiple-choice set (tokenised once, with the base's tokenizer and start token). */
export async function compareMcq(base: ScoringModel, model: ScoringModel, tok: McqTokenizer, items: McqItem[], o: McqOptions): Promise<McqChange> {
  const p = await prepareMcq(tok, items, o);
  const a = mcqAccuracy(p, scoreMcq(base, p, o.batchSize));
  const b = mcqAccuracy(p, scoreMcq(model, p, o.batchSize));
  const out: McqChange = { acc_base: a.acc, acc_model: b.acc, acc_change: b.acc - a.acc, n: a.n };
  if (a.acc_norm !== undefined && b.acc_norm !== undefined) {
    out.acc_norm_base = a.acc_norm;
    out.acc_norm_model = b.acc_norm;
    out.acc_norm_change = b.acc_norm - a.acc_norm;
  }
  return out;
}
