/**
 * End-to-end gradients of the Hugging Face architectures: the autograd gradient of NTP (+ coeff·KL to a frozen
 * reference) with respect to every transformers tensor agrees with central finite differences of the independent
 * float64 forward (test/helpers/hf64.ts), for llama with GQA, qwen2 with biases (untied) and qwen3 with q/k norms.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { loadModelFolder, hfTensorsOf } from '../src/model/load.js';
import { weightedSum } from '../src/tensor/ops.js';
import { scope } from '../src/tensor/pool.js';
import { klLoss, ntpLoss, ntpTargets } from '../src/train/losses.js';
import { hfLogits64, type Hf64Model } from './helpers/hf64.js';
import { readTinyHFFolder, writeTinyHFFolder, type TinySpec } from './helpers/hf_folder.js';
import { Rng, crossEntropy, finiteDiff, klDiv, pickCoords } from './helpers/ref.js';

const CASES: Array<{ label: string; spec: Omit<TinySpec, 'seed'> }> = [
  { label: 'llama, N=4/Nkv=2, llama3 scaling, tied', spec: { family: 'llama', D: 8, L: 2, N: 4, Nkv: 2, H: 4, F: 12, V: 11, tied: true, dtype: 'f32', ropeScaling: { factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositions: 16 } } },
  { label: 'qwen2, N=3/Nkv=1, biases, untied', spec: { family: 'qwen2', D: 6, L: 2, N: 3, Nkv: 1, H: 4, F: 10, V: 9, tied: false, dtype: 'f32' } },
  { label: 'qwen3, N=2/Nkv=2, head_dim 6 ≠ D/N, q/k norms', spec: { family: 'qwen3', D: 8, L: 2, N: 2, Nkv: 2, H: 6, F: 10, V: 9, tied: true, dtype: 'f32' } },
];

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'uf-hfgrad-'));
process.on('exit', () => fs.rmSync(tmp, { recursive: true, force: true }));

for (const [i, c] of CASES.entries()) {
  for (const withKL of [false, true]) {
    test(`${c.label}: gradients match float64 finite differences (${withKL ? 'NTP + 0.7·KL' : 'NTP'})`, () => {
      const T = 5, B = 2, coeff = 0.7;
      const dir = path.join(tmp, `m${i}`), refDir = path.join(tmp, `r${i}`);
      if (!fs.existsSync(dir)) {
        writeTinyHFFolder(dir, { ...c.spec, seed: 11 + i, std: 0.5 });
        writeTinyHFFolder(refDir, { ...c.spec, seed: 91 + i, std: 0.5 });
      }
      const rng = new Rng(5 + i);
      const { model } = loadModelFolder(dir, { T });
      const { model: pi } = loadModelFolder(refDir, { T });
      pi.setTrainable(false);
      const V = model.cfg.V;
      const ids = Int32Array.from({ length: B * T }, () => rng.int(V));
      model.setTrainable(true);
      scope(() => {
        model.params.zeroGrad();
        const logits = model.forward(ids, B, T);
        const ntp = ntpLoss(logits, ids, B, T, { inPlace: !withKL });
        const loss = withKL ? weightedSum([ntp, klLoss(pi.logits(ids, B, T), logits, B, T)], [1, coeff]) : ntp;
        loss.backward();
      });
      // The gradient in transformers' layout: read it through the same placement as the weights.
      const saved = model.params.data.slice();
      model.params.data.set(model.params.grad);
      const grads = hfTensorsOf(model);
      model.params.data.set(saved);

      const folder = readTinyHFFolder(dir), refFolder = readTinyHFFolder(refDir);
      const { targets, weights } = ntpTargets(ids, B, T);
      const wsum = weights.reduce((a, b) => a + b, 0);
      const logits64 = (m: Hf64Model) => {
        const out = new Float64Array(B * T * V);
        for (let b = 0; b < B; b++) out.set(hfLogits64(m, Array.from(ids.subarray(b * T, (b + 1) * T))), b * T * V);
        return out;
      };
      const ref64 = logits64(refFolder);
      const loss64 = (m: Hf64Model) => {
        const lg = logits64(m);
        let l = crossEntropy(lg, targets, weights, B * T, V).loss / wsum;
        if (withKL) l += (coeff * klDiv(ref64, lg, weights, B * T, V).loss) / wsum;
        return l;
      };
      for (const [name, t] of folder.tensors) {
        if (name === 'lm_head.weight' && c.spec.tied) continue;
        const g = grads.get(name);
        assert.ok(g, `${name} has a gradient`);
        const coords = pickCoords(rng, t.data.length, 12);
        const x = Float64Array.from(t.data);
        const fd = finiteDiff((v) => loss64({ config: folder.config, tensors: new Map([...folder.tensors, [name, { ...t, data: v }]]) }), x, coords);
        let num = 0, den = 0;
        for (let j = 0; j < coords.length; j++) {
          num = Math.max(num, Math.abs(g.data[coords[j]!]! - fd[j]!));
          den = Math.max(den, Math.abs(fd[j]!));
        }
        const rel = num / Math.max(den, 1e-6);
        assert.ok(rel < 2e-3, `${name}: max |autograd − FD| / max |FD| = ${rel.toExponential(2)}`);
      }
    });
  }
}
