import assert from 'node:assert/strict';
import { test } from 'node:test';
import { GPT } from '../src/model/gpt.js';
import { LoRA } from '../src/model/lora.js';
import { ConfigError } from '../src/errors.js';
import { makeOptimizer } from '../src/train/optim.js';
import { Stepper } from '../src/train/step.js';
import { Rng } from '../src/util/rng.js';

const cfg = { D: 16, L: 2, H: 8, T: 6, V: 11 };

function randomIds(rng: Rng, n: number, V: number): Int32Array {
  const ids = new Int32Array(n);
  for (let i = 0; i < n; i++) ids[i] = rng.int(V);
  return ids;
}

function maxRel(a: Float32Array, b: Float32Array): number {
  let m = 0, s = 0;
  for (let i = 0; i < a.length; i++) { m = Math.max(m, Math.abs(a[i]! - b[i]!)); s = Math.max(s, Math.abs(b[i]!)); }
  return m / s;
}

test('LoRA starts at W (B = 0), trains only A and B, and its merged weights reproduce the adapted model', () => {
  const model = GPT.init(cfg, 1);
  const base = model.params.data.slice();
  const rng = new Rng(2);
  const ids = randomIds(rng, 3 * cfg.T, cfg.V);
  const before = model.logits(ids, 3, cfg.T).slice();
  const lora = new LoRA(model, 4, 3);
  lora.attach();
  assert.deepEqual(model.logits(ids, 3, cfg.T), before, 'B = 0: the adapted model equals the base model');
  const stepper = new Stepper(model, lora.params, makeOptimizer({ optimizer: 'adamw', b1: 0.9, b2: 0.999, eps: 1e-8, weight_decay: 0 }), null, 0, null, null);
  let first = 0, last = 0;
  for (let i = 0; i < 30; i++) {
    const r = stepper.step(ids, 3, cfg.T, 1e-2);
    if (i === 0) first = r.loss;
    last = r.loss;
  }
  assert.ok(last < first - 0.1, `LoRA training lowers the loss (${first} → ${last})`);
  assert.deepEqual(model.params.data, base, 'the base weights are frozen');
  const adapted = model.logits(ids, 3, cfg.T);
  const merged = lora.merged();
  assert.ok(maxRel(merged.logits(ids, 3, cfg.T), adapted) < 1e-5);
  // the KV-cache decoder sees the adapted weights too
  const cache = model.newCache(1, cfg.T);
  const step0 = model.decode(cache, ids.subarray(0, 1), 0);
  assert.ok(maxRel(step0, adapted.subarray(0, cfg.V)) < 1e-4);
});

test('LoRA rank must be in [1, min(in, out)]', () => {
  const model = GPT.init(cfg, 1);
  assert.throws(() => new LoRA(model, 0, 1), ConfigError);
  assert.throws(() => new LoRA(model, -2, 1), ConfigError);
  assert.throws(() => new LoRA(model, cfg.D + 1, 1), /model.lora_rank/);
  assert.doesNotThrow(() => new LoRA(model, cfg.D, 1));
});
