/**
 * Frozen half-precision weights and PEFT-style LoRA. A bf16 folder loaded frozen keeps its matrices as bf16 bits
 * (exact) and gives the float64 reference's logits, in the full forward and in cached decoding. LoRA computed as PEFT
 * does (x·Wᵀ + s·(x·Aᵀ)·Bᵀ, never forming ΔW) equals the model with the merged weight W + s·B·A, its adapter
 * gradients equal those through the merged weight, and over a bf16 base it trains like over the same base in float32.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { LoRA } from '../src/model/lora.js';
import { loadModelFolder } from '../src/model/load.js';
import { makeOptimizer } from '../src/train/optim.js';
import { Stepper } from '../src/train/step.js';
import { ntpLoss } from '../src/train/losses.js';
import { scope } from '../src/tensor/pool.js';
import { add, concatRows, matmul, scale } from '../src/tensor/ops.js';
import { hfLogits64 } from './helpers/hf64.js';
import { readTinyHFFolder, writeTinyHFFolder, type TinySpec } from './helpers/hf_folder.js';
import { Rng } from './helpers/ref.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'uf-half-'));
after(() => fs.rmSync(dir, { recursive: true, force: true }));
const T = 9;

const SPECS: Array<[string, TinySpec]> = [
  ['llama bf16, 3 shards, N=6/Nkv=2, llama3 scaling, tied', { family: 'llama', D: 12, L: 2, N: 6, Nkv: 2, H: 4, F: 20, V: 23, tied: true, dtype: 'bf16', shards: 3, seed: 4, ropeScaling: { factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositions: 16 } }],
  ['qwen2 bf16, biases, untied', { family: 'qwen2', D: 8, L: 2, N: 4, Nkv: 1, H: 4, F: 12, V: 17, tied: false, dtype: 'bf16', seed: 5 }],
  ['qwen3 f16, q/k norms, head_dim ≠ D/N', { family: 'qwen3', D: 8, L: 1, N: 2, Nkv: 1, H: 6, F: 12, V: 13, tied: true, dtype: 'f16', seed: 6 }],
];

function maxRel(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0, s = 0;
  for (let i = 0; i < a.length; i++) { m = Math.max(m, Math.abs(a[i]! - b[i]!)); s = Math.max(s, Math.abs(b[i]!)); }
  return m / s;
}

for (const [i, [label, spec]] of SPECS.entries()) {
  test(`${label}: frozen loading keeps the matrices half precision, with the reference's logits`, () => {
    const d = path.join(dir, `m${i}`);
    writeTinyHFFolder(d, spec);
    const frozen = loadModelFolder(d, { T, frozen: true }).model;
    const wide = loadModelFolder(d, { T }).model;
    assert.ok(frozen.half !== null && wide.half === null, 'frozen: half store; trainable: float32');
    assert.equal(frozen.half!.kind, spec.dtype === 'f16' ? 1 : 0);
    const matrices = frozen.half!.data.length;
    assert.ok(frozen.params.size < wide.params.size - matrices + 1, 'the float32 parameters hold only the vectors');
    const rng = new Rng(i);
    const ids = Int32Array.from({ length: 2 * T }, () => rng.int(spec.V));
    const folder = readTinyHFFolder(d);
    const ref = new Float64Array(2 * T * spec.V);
    for (let b = 0; b < 2; b++) ref.set(hfLogits64(folder, Array.from(ids.subarray(b * T, (b + 1) * T))), b * T * spec.V);
    const lf = frozen.logits(ids, 2, T);
    assert.ok(maxRel(lf, ref) < 1e-4, `frozen vs float64: ${maxRel(lf, ref)}`);
    assert.ok(maxRel(lf, wide.logits(ids, 2, T)) < 1e-5, 'frozen vs float32 loading');
    // cached decoding from half weights equals the full forward at every position
    const cache = frozen.newCache(2, T);
    for (let p = 0; p < T; p++) {
      const step = frozen.decode(cache, Int32Array.from([ids[p]!, ids[T + p]!]), p);
      for (let b = 0; b < 2; b++) {
        const full = lf.subarray((b * T + p) * spec.V, (b * T + p + 1) * spec.V);
        assert.ok(maxRel(step.subarray(b * spec.V, (b + 1) * spec.V), full) < 1e-4, `decode at ${p}`);
      }
    }
    // θ for full finetuning is a float32 copy with the same logits
    const theta = frozen.clone();
    assert.equal(theta.half, null);
    assert.deepEqual(theta.logits(ids, 2, T), wide.logits(ids, 2, T));
  });
}

test('PEFT-style LoRA equals the merged weight, with the same adapter gradients; over bf16 it trains as over float32', () => {
  const d = path.join(dir, 'm0');
  const base = loadModelFolder(d, { T }).model;
  const rng = new Rng(9);
  const ids = Int32Array.from({ length: 2 * T }, () => rng.int(23));
  const lora = new LoRA(base, 3, 1, { alpha: 6, targets: ['q_proj', 'v_proj', 'gate_proj', 'down_proj'] });
  // give lora_B values so that the adapters matter
  const bRng = new Rng(3);
  for (const e of lora.params.entries) if (e.name.endsWith('.B')) { const v = lora.params.view(e.name); for (let j = 0; j < v.length; j++) v[j] = 0.3 * bRng.normal(); }
  lora.attach();
  const grads = (): Float32Array => scope(() => {
    lora.params.zeroGrad();
    ntpLoss(base.forward(ids, 2, T), ids, 2, T, { inPlace: true }).backward();
    return lora.params.grad.slice();
  });
  const adapted = base.logits(ids, 2, T).slice();
  const g1 = grads();
  assert.ok(maxRel(lora.merged().logits(ids, 2, T), adapted) < 1e-5, 'adapters = merged weights');
  // the same adapters as a weight hook: W + s·ΔW formed, differentiated through the product
  const hook = base.adapterHook!;
  base.adapterHook = null;
  base.weightHook = (name, l, w) => {
    const list = hook(name, l);
    if (!list || list.length === 0) return w;
    const rows = w.shape[0]!, cols = w.shape[1]!;
    const parts: Array<ReturnType<typeof matmul> | { rows: number }> = [];
    let at = 0;
    for (const a of list) {
      if (a.col > at) parts.push({ rows: a.col - at });
      parts.push(scale(matmul(a.B, a.A), a.scale));
      at = a.col + a.rows;
    }
    if (at < rows) parts.push({ rows: rows - at });
    return add(w, concatRows(parts, cols).view(w.shape));
  };
  assert.ok(maxRel(base.logits(ids, 2, T), adapted) < 1e-5, 'hook = adapters');
  const g2 = grads();
  assert.ok(maxRel(g1, g2) < 1e-4, `adapter gradients: ${maxRel(g1, g2)}`);
  base.weightHook = null;
  base.adapterHook = hook;

  // training the same adapters over a bf16 base and over its float32 copy
  const run = (frozen: boolean) => {
    const m = loadModelFolder(d, { T, frozen }).model;
    const l = new LoRA(m, 3, 1, { alpha: 6 });
    l.attach();
    const st = new Stepper(m, l.params, makeOptimizer({ optimizer: 'adamw', b1: 0.9, b2: 0.999, eps: 1e-8, weight_decay: 0 }), null, 0, null, null);
    let last = 0;
    for (let s = 0; s < 5; s++) last = st.step(ids, 2, T, 1e-2).loss;
    return { loss: last, params: l.params.data.slice(), half: m.half !== null };
  };
  const h = run(true), f = run(false);
  assert.ok(h.half && !f.half);
  assert.ok(Math.abs(h.loss - f.loss) < 1e-4 * Math.abs(f.loss), `loss ${h.loss} vs ${f.loss}`);
  assert.ok(maxRel(h.params, f.params) < 1e-3, `adapters after 5 steps: ${maxRel(h.params, f.params)}`);
});
