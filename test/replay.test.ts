/**
 * The pieces of self-generated replay: the KL term vanishes exactly at θ = π, and the sampler
 * draws from softmax(logits / temperature) at the right position.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { GPT } from '../src/model/gpt.js';
import { sample, samplerCache } from '../src/model/sample.js';
import { scope } from '../src/tensor/pool.js';
import { klLoss } from '../src/train/losses.js';
import { Rng } from '../src/util/rng.js';

const cfg = { D: 16, L: 2, H: 8, T: 6, V: 7 };

test('at the first finetuning step θ = π: the KL term and its gradient are exactly zero', () => {
  const model = GPT.init(cfg, 5);
  const pi = model.clone();
  pi.setTrainable(false);
  model.setTrainable(true);
  const rng = new Rng(1);
  const B = 4;
  const ids = Int32Array.from({ length: B * cfg.T }, () => rng.int(cfg.V));
  scope(() => {
    model.params.zeroGrad();
    const kl = klLoss(pi.logits(ids, B, cfg.T), model.forward(ids, B, cfg.T), B, cfg.T);
    assert.equal(kl.item(), 0);
    kl.backward();
  });
  assert.ok(model.params.grad.every((g) => g === 0), 'every gradient entry is exactly 0');
  // and it is not trivially zero: a perturbed θ gives a positive KL and a non-zero gradient
  model.params.data[3]! += 0.5;
  scope(() => {
    model.params.zeroGrad();
    const kl = klLoss(pi.logits(ids, B, cfg.T), model.forward(ids, B, cfg.T), B, cfg.T);
    assert.ok(kl.item() > 0);
    kl.backward();
  });
  assert.ok(model.params.grad.some((g) => g !== 0));
});

/** Pearson chi-square statistic of counts against probabilities. */
function chiSquare(counts: number[], p: number[], n: number): number {
  let x = 0;
  for (let v = 0; v < p.length; v++) x += (counts[v]! - n * p[v]!) ** 2 / (n * p[v]!);
  return x;
}

function softmax(logits: ArrayLike<number>, off: number, V: number, temperature: number): number[] {
  let m = -Infinity;
  for (let v = 0; v < V; v++) m = Math.max(m, logits[off + v]! / temperature);
  const e = Array.from({ length: V }, (_, v) => Math.exp(logits[off + v]! / temperature - m));
  const z = e.reduce((a, b) => a + b, 0);
  return e.map((x) => x / z);
}

test('sampled next tokens follow softmax(logits/temperature) of the right position (chi-square)', () => {
  // Large weights make the next-token distributions uneven, so a wrong temperature or position shows.
  const model = GPT.init(cfg, 9);
  for (let i = 0; i < model.params.data.length; i++) model.params.data[i]! *= 2.5;
  const prompt = [3, 5, 1];
  const P = prompt.length;
  const n = 20000;
  const full = model.logits(Int32Array.from([...prompt, 0, 0, 0]), 1, cfg.T);
  // the token at position P is predicted by the logits at position P-1
  const critical = 22.46; // chi-square, 6 degrees of freedom, p = 0.001
  for (const temperature of [1, 0.6]) {
    const prompts = new Int32Array(n * P);
    for (let i = 0; i < n; i++) prompts.set(prompt, i * P);
    const out = sample(model, { prompts, promptLength: P, length: P + 1, temperature, rng: new Rng(17), batchSize: 4096 });
    const counts = new Array(cfg.V).fill(0);
    for (let i = 0; i < n; i++) counts[out[i * (P + 1) + P]!]++;
    const right = chiSquare(counts, softmax(full, (P - 1) * cfg.V, cfg.V, temperature), n);
    assert.ok(right < critical, `T=${temperature}: chi-square ${right.toFixed(1)} against the model's own distribution`);
    // the test has power: the wrong temperature and the neighbouring positions are rejected
    const wrongTemp = chiSquare(counts, softmax(full, (P - 1) * cfg.V, cfg.V, temperature === 1 ? 0.8 : 1), n);
    const offByOne = chiSquare(counts, softmax(full, P * cfg.V, cfg.V, temperature), n);
    const offByMinusOne = chiSquare(counts, softmax(full, (P - 2) * cfg.V, cfg.V, temperature), n);
    assert.ok(wrongTemp > 5 * critical, `a wrong temperature is detected (chi-square ${wrongTemp.toFixed(1)})`);
    assert.ok(offByOne > 5 * critical && offByMinusOne > 5 * critical, `an off-by-one position is detected (${offByOne.toFixed(1)}, ${offByMinusOne.toFixed(1)})`);
  }
});

test('sampling is reproducible for a seed and differs across seeds; temperature 0 is greedy', () => {
  const model = GPT.init(cfg, 2);
  const prompts = new Int32Array(8).fill(1);
  const a = sample(model, { prompts, promptLength: 1, length: cfg.T, temperature: 1, rng: new Rng(4) });
  const b = sample(model, { prompts, promptLength: 1, length: cfg.T, temperature: 1, rng: new Rng(4) });
  const c = sample(model, { prompts, promptLength: 1, length: cfg.T, temperature: 1, rng: new Rng(5) });
  assert.deepEqual(a, b);
  assert.notDeepEqual(a, c);
  const g = sample(model, { prompts: Int32Array.of(1), promptLength: 1, length: cfg.T, temperature: 0, rng: new Rng(4) });
  // greedy: each token is the argmax of the full forward's logits at the previous position
  const logits = model.logits(g, 1, cfg.T);
  for (let t = 1; t < cfg.T; t++) {
    const row = Array.from(logits.subarray((t - 1) * cfg.V, t * cfg.V));
    assert.equal(g[t], row.indexOf(Math.max(...row)));
  }
});

test('sampling again reuses the model\'s cache storage and packed weights, and draws what a fresh model draws', () => {
  // 12 rows: the decoder takes the packed-weight path where the CPU has AMX. Sequence i of each call is
  // compared with a fresh clone's (no cache to reuse), after a larger earlier sample left stale rows, and
  // after the weights changed (the packing must follow them).
  const c = { D: 32, L: 2, H: 16, T: 10, V: 11 };
  const model = GPT.init(c, 21);
  const draw = (m: GPT, rows: number, length: number, seed: number) =>
    sample(m, { prompts: Int32Array.from({ length: rows }, (_, i) => i % c.V), promptLength: 1, length, temperature: 1, rng: new Rng(seed) });
  draw(model, 16, c.T, 1); // leaves stale keys/values in 16 rows × 10 positions
  const storage = samplerCache(model, 12, 8).k;
  assert.equal(samplerCache(model, 9, 7).k, storage, 'a smaller cache reuses the storage');
  assert.deepEqual(draw(model, 12, 8, 2), draw(model.clone(), 12, 8, 2));
  for (let i = 0; i < model.params.data.length; i += 3) model.params.data[i]! *= -1.5;
  assert.deepEqual(draw(model, 12, 8, 3), draw(model.clone(), 12, 8, 3));
  assert.notDeepEqual(draw(model, 12, 8, 3), draw(GPT.init(c, 21), 12, 8, 3), 'the changed weights are used');
});
