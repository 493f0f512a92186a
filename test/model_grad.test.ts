/**
 * End-to-end gradients of the autograd graph: the gradient of NTP (+ coeff·KL to a frozen
 * reference) with respect to every checkpoint tensor agrees with central finite differences of an
 * independent float64 implementation (test/helpers/gpt64.ts) of the same loss.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { GPT, gptToSpec } from '../src/model/gpt.js';
import { weightedSum } from '../src/tensor/ops.js';
import { scope } from '../src/tensor/pool.js';
import { klLoss, ntpLoss, ntpTargets } from '../src/train/losses.js';
import { gpt64Forward, gptShapes, randomGptWeights, weightsTo64, type Gpt64Weights } from './helpers/gpt64.js';
import { Rng, crossEntropy, finiteDiff, klDiv, pickCoords } from './helpers/ref.js';

type Name = keyof Gpt64Weights;
const NAMES: Name[] = ['embed_in', 'embed_out', 'qkv', 'out', 'up', 'down'];

function specGrads(model: GPT): Record<Name, Float32Array> {
  // gradients live in the flat grad buffer in the internal layout; reuse toSpec's layout mapping
  const saved = model.params.data.slice();
  model.params.data.set(model.params.grad);
  const spec = gptToSpec(model);
  model.params.data.set(saved);
  return Object.fromEntries(NAMES.map((n) => [n, spec[n]!.data])) as Record<Name, Float32Array>;
}

for (const withKL of [false, true]) {
  test(`model gradients match float64 finite differences (${withKL ? 'NTP + 0.7·KL' : 'NTP'})`, () => {
    const cfg = { D: 12, L: 2, H: 4, T: 5, V: 13 };
    const B = 2;
    const rng = new Rng(withKL ? 7 : 3);
    const w32 = randomGptWeights(cfg, () => rng.normal());
    const ids = Int32Array.from({ length: B * cfg.T }, () => rng.int(cfg.V));
    const model = GPT.fromSpec({ ...cfg }, w32);
    model.setTrainable(true);
    // the reference π: other weights, frozen
    const wRef = randomGptWeights(cfg, () => rng.normal());
    const pi = GPT.fromSpec({ ...cfg }, wRef);
    const coeff = 0.7;
    scope(() => {
      model.params.zeroGrad();
      const logits = model.forward(ids, B, cfg.T);
      // Without KL the logits are consumed by their loss (the gradient written over them, as in training).
      const ntp = ntpLoss(logits, ids, B, cfg.T, { inPlace: !withKL });
      const loss = withKL ? weightedSum([ntp, klLoss(pi.logits(ids, B, cfg.T), logits, B, cfg.T)], [1, coeff]) : ntp;
      loss.backward();
    });
    const grads = specGrads(model);

    const { targets, weights } = ntpTargets(ids, B, cfg.T);
    const wsum = weights.reduce((a, b) => a + b, 0);
    const refLogits = gpt64Forward(cfg, weightsTo64(wRef), ids, B, cfg.T);
    const w64 = weightsTo64(w32);
    const loss64 = (w: Gpt64Weights) => {
      const lg = gpt64Forward(cfg, w, ids, B, cfg.T);
      let l = crossEntropy(lg, targets, weights, B * cfg.T, cfg.V).loss / wsum;
      if (withKL) l += (coeff * klDiv(refLogits, lg, weights, B * cfg.T, cfg.V).loss) / wsum;
      return l;
    };
    const shapes = gptShapes(cfg);
    for (const name of NAMES) {
      const n = shapes[name].reduce((a, b) => a * b, 1);
      const coords = pickCoords(rng, n, 24);
      const fd = finiteDiff((x) => loss64({ ...w64, [name]: x }), w64[name], coords);
      let num = 0, den = 0;
      for (let j = 0; j < coords.length; j++) {
        num = Math.max(num, Math.abs(grads[name][coords[j]!]! - fd[j]!));
        den = Math.max(den, Math.abs(fd[j]!));
      }
      const rel = num / Math.max(den, 1e-6);
      assert.ok(rel < 1e-3, `${name}: max |autograd − FD| / max |FD| = ${rel.toExponential(2)}`);
    }
  });
}
