/**
 * The product's model, loaded from a checkpoint written by an independent safetensors writer, must give the
 * same logits as the independent float64 forward of docs/contract.md §1 (test/helpers/gpt64.ts) — through the no-graph
 * `logits`, the autograd `forward`, and the KV-cached `decode` used by sampling — and must save the weights
 * back bit-identically in the checkpoint names, shapes and layouts.
 *
 * Criterion (float32 vs float64): with b the float64 logits and a the product's,
 *   max|a − b| ≤ 1e-4 · max|b|                       (global), and
 *   |a − b| ≤ 1e-4 · |b| + 1e-5 · max|b|  elementwise.
 * Float32 rounding through these small models is ~4e-7 of max|b| (measured with a float32 PyTorch peer), so
 * the bounds leave a margin of ~100× while any layout mix-up, missing norm, wrong RoPE convention or
 * lower-precision arithmetic (bf16 ≈ 4e-3) fails them.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { native } from '../src/backend/native.js';
import { loadModel, saveWeights } from '../src/model/checkpoint.js';
import { samplerCache } from '../src/model/sample.js';
import { gpt64Forward, gptShapes, randomGptWeights, weightsTo64 } from './helpers/gpt64.js';
import type { Gpt64Config } from './helpers/gpt64.js';
import { readSafetensors, writeSafetensors } from './helpers/safetensors.js';
import { Rng, randInts } from './helpers/ref.js';

interface Case {
  name: string;
  cfg: Gpt64Config & { T: number };
  seed: number;
  /** (B, T) pairs to run the forward with; T may be shorter than the configured context. */
  runs: [number, number][];
}

const cases: Case[] = [
  { name: 'D=24 L=2 H=6 (N=4) T=9 V=29', cfg: { D: 24, L: 2, H: 6, T: 9, V: 29 }, seed: 11, runs: [[2, 9], [3, 5], [1, 1]] },
  { name: 'D=16 L=2 H=8 (N=2) T=6 V=19', cfg: { D: 16, L: 2, H: 8, T: 6, V: 19 }, seed: 12, runs: [[2, 1], [1, 6], [3, 4]] },
  { name: 'D=12 L=1 H=2 (N=6) T=5 V=37', cfg: { D: 12, L: 1, H: 2, T: 5, V: 37 }, seed: 13, runs: [[3, 5]] },
];

function compareLogits(what: string, a: Float32Array, b: Float64Array): void {
  assert.equal(a.length, b.length, `${what}: ${a.length} logits, expected ${b.length}`);
  let maxB = 0;
  for (const x of b) maxB = Math.max(maxB, Math.abs(x));
  let maxErr = 0;
  for (let i = 0; i < a.length; i++) {
    const e = Math.abs(a[i] - b[i]);
    assert.ok(e <= 1e-4 * Math.abs(b[i]) + 1e-5 * maxB,
      `${what}: logit ${i} is ${a[i]}, float64 reference ${b[i]} (|diff| ${e.toExponential(2)}, max|b| ${maxB.toFixed(3)})`);
    maxErr = Math.max(maxErr, e);
  }
  assert.ok(maxErr <= 1e-4 * maxB, `${what}: max|a-b| ${maxErr.toExponential(2)} > 1e-4·max|b| (${maxB})`);
}

let tmpRoot = '';
before(() => {
  tmpRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'unforget-parity-'));
});
after(() => {
  if (tmpRoot) fs.rmSync(tmpRoot, { recursive: true, force: true });
});

for (const c of cases) {
  describe(`model parity with the float64 reference forward, ${c.name}`, () => {
    it('loaded model: logits, forward and cached decode match gpt64; saving round-trips', async () => {
      const rng = new Rng(c.seed);
      const { D, L, H, T, V } = c.cfg;
      const w = randomGptWeights(c.cfg, () => rng.normal());
      const shapes = gptShapes(c.cfg);
      const dir = fs.mkdtempSync(path.join(tmpRoot, 'model-'));
      writeSafetensors(path.join(dir, 'model.safetensors'), {
        embed_in: { shape: shapes.embed_in, data: w.embed_in },
        embed_out: { shape: shapes.embed_out, data: w.embed_out },
        qkv: { shape: shapes.qkv, data: w.qkv },
        out: { shape: shapes.out, data: w.out },
        up: { shape: shapes.up, data: w.up },
        down: { shape: shapes.down, data: w.down },
      });
      fs.writeFileSync(path.join(dir, 'config.yaml'), `model:\n  D: ${D}\n  L: ${L}\n  H: ${H}\n  T: ${T}\n  V: ${V}\n`);

      // the reference reads the weights back through its own reader: what the product sees is on disk
      const onDisk = readSafetensors(path.join(dir, 'model.safetensors')).tensors;
      const get = (name: keyof typeof shapes) => {
        const t = onDisk.get(name);
        assert.ok(t, `test writer lost tensor ${name}`);
        assert.deepEqual(t.shape, shapes[name]);
        return t.data;
      };
      const w64 = weightsTo64({
        embed_in: get('embed_in'), embed_out: get('embed_out'), qkv: get('qkv'),
        out: get('out'), up: get('up'), down: get('down'),
      });

      const model = await loadModel(dir);
      for (const [B, Tr] of c.runs) {
        const tokens = randInts(rng, B * Tr, V);
        tokens[0] = V - 1; // the extreme ids must be looked up too
        if (tokens.length > 1) tokens[1] = 0;
        const expected = gpt64Forward(c.cfg, w64, tokens, B, Tr);
        const logits = model.logits(tokens, B, Tr);
        assert.ok(logits instanceof Float32Array, 'logits() returns a Float32Array');
        compareLogits(`logits() B=${B} T=${Tr}`, logits, expected);
        // a second call on the same model must not depend on state left by the first
        compareLogits(`logits() B=${B} T=${Tr} (repeat)`, model.logits(tokens, B, Tr), expected);
        compareLogits(`forward().data B=${B} T=${Tr}`, model.forward(tokens, B, Tr).data, expected);
      }

      // cached decoding, one token per step at absolute positions 0..T-1, equals the full forward
      // (9 rows: the decoder's products use weights packed for AMX where the machine has it)
      for (const B of [2, 9]) {
        const tokens = randInts(rng, B * T, V);
        const expected = gpt64Forward(c.cfg, w64, tokens, B, T);
        const cache = samplerCache(model, B, T);
        if (B >= 8 && native().gemmPackSize(c.cfg.D, c.cfg.D) > 0) assert.ok(cache.packed, 'weights packed for decoding');
        for (let t = 0; t < T; t++) {
          const step = Int32Array.from({ length: B }, (_, b) => tokens[b * T + t]);
          const got = model.decode(cache, step, t);
          const want = new Float64Array(B * V);
          for (let b = 0; b < B; b++) want.set(expected.subarray((b * T + t) * V, (b * T + t + 1) * V), b * V);
          compareLogits(`decode B=${B} position ${t}`, got, want);
        }
      }

      // saving writes the checkpoint layout back: the independent reader sees exactly the original tensors
      const saved = fs.mkdtempSync(path.join(tmpRoot, 'saved-'));
      saveWeights(saved, model);
      const back = readSafetensors(path.join(saved, 'model.safetensors')).tensors;
      assert.deepEqual([...back.keys()].sort(), Object.keys(shapes).sort());
      for (const name of Object.keys(shapes) as (keyof typeof shapes)[]) {
        const t = back.get(name)!;
        assert.deepEqual(t.shape, shapes[name], `saved ${name} shape`);
        const orig = w[name];
        for (let i = 0; i < orig.length; i++) {
          if (t.data[i] !== orig[i]) assert.fail(`saved ${name}[${i}] = ${t.data[i]}, loaded from ${orig[i]}`);
        }
      }
    });
  });
}
