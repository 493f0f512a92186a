/**
 * Checks of the independent Hugging Face reference itself (test/helpers/hf64.ts) and of the tiny folders it reads
 * (test/helpers/hf_folder.ts, safetensors.ts): the parity test of the product is only as good as these. No product
 * code is used here.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { hfDims64, hfInvFreq64, hfLogits64, logSoftmax64, softmax64 } from './helpers/hf64.js';
import type { Hf64Model } from './helpers/hf64.js';
import { readTinyHFFolder, tinyConfigJson, writeTinyHFFolder } from './helpers/hf_folder.js';
import type { HFConfigJson, TinySpec } from './helpers/hf_folder.js';
import {
  bf16Bits, bf16FromBits, decodeSafetensors, encodeSafetensors, f16Bits, f16FromBits, readSafetensors, roundToBf16,
  roundToF16,
} from './helpers/safetensors.js';
import { Rng } from './helpers/ref.js';

let tmp = '';
before(() => { tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'unforget-hfref-')); });
after(() => { fs.rmSync(tmp, { recursive: true, force: true }); });

let folderCount = 0;
function folder(spec: TinySpec): Hf64Model {
  const dir = path.join(tmp, `m${folderCount++}`);
  writeTinyHFFolder(dir, spec);
  return readTinyHFFolder(dir);
}

function maxRelDiff(a: Float64Array, b: Float64Array): number {
  assert.equal(a.length, b.length);
  let d = 0, m = 0;
  for (let i = 0; i < a.length; i++) { d = Math.max(d, Math.abs(a[i]! - b[i]!)); m = Math.max(m, Math.abs(b[i]!)); }
  return d / m;
}

function randomIds(rng: Rng, T: number, V: number): number[] {
  return Array.from({ length: T }, () => rng.int(V));
}

const base = (family: TinySpec['family'], over: Partial<TinySpec> = {}): TinySpec => ({
  family, D: 24, L: 2, N: 4, Nkv: 4, H: 6, F: 40, V: 37, tied: false, dtype: 'f32', seed: 5, ...over,
});

// ---------------------------------------------------------------------------------------------------------------
// A 1-layer model with D = H = 2, one head, F = 1, V = 3, derived with scalar formulas written out for two positions.

const hand = {
  embed: [[1, 0], [0, 2], [3, 4]],
  g1: [2, 0.5],
  wq: [[1, 2], [0, 1]], wk: [[0.5, 0], [1, 1]], wv: [[1, -1], [2, 0]], wo: [[1, 0], [0.5, 1]],
  bq: [0.25, -0.5], bk: [0.1, 0.2], bv: [-0.3, 0.4],
  qn: [1.5, 0.75], kn: [0.5, 2],
  g2: [1, 1.5], wg: [[1, 1]], wu: [[2, -1]], wd: [[1], [-1]],
  gf: [0.5, 2], head: [[1, 0], [0, 1], [1, 1]],
  eps: 1e-5,
};

function handModel(family: 'llama' | 'qwen2' | 'qwen3'): Hf64Model {
  const config: HFConfigJson = {
    model_type: family, hidden_size: 2, intermediate_size: 1, num_hidden_layers: 1, num_attention_heads: 1,
    num_key_value_heads: 1, head_dim: 2, vocab_size: 3, rms_norm_eps: hand.eps, rope_theta: 10000,
    tie_word_embeddings: false, hidden_act: 'silu',
  };
  const t = (shape: number[], rows: number[][] | number[]) => ({ shape, data: Float64Array.from((rows as number[][]).flat()) });
  const m = new Map<string, { shape: number[]; data: Float64Array }>([
    ['model.embed_tokens.weight', t([3, 2], hand.embed)],
    ['model.layers.0.input_layernorm.weight', t([2], hand.g1)],
    ['model.layers.0.self_attn.q_proj.weight', t([2, 2], hand.wq)],
    ['model.layers.0.self_attn.k_proj.weight', t([2, 2], hand.wk)],
    ['model.layers.0.self_attn.v_proj.weight', t([2, 2], hand.wv)],
    ['model.layers.0.self_attn.o_proj.weight', t([2, 2], hand.wo)],
    ['model.layers.0.post_attention_layernorm.weight', t([2], hand.g2)],
    ['model.layers.0.mlp.gate_proj.weight', t([1, 2], hand.wg)],
    ['model.layers.0.mlp.up_proj.weight', t([1, 2], hand.wu)],
    ['model.layers.0.mlp.down_proj.weight', t([2, 1], hand.wd)],
    ['model.norm.weight', t([2], hand.gf)],
    ['lm_head.weight', t([3, 2], hand.head)],
  ]);
  if (family === 'qwen2') {
    m.set('model.layers.0.self_attn.q_proj.bias', t([2], hand.bq));
    m.set('model.layers.0.self_attn.k_proj.bias', t([2], hand.bk));
    m.set('model.layers.0.self_attn.v_proj.bias', t([2], hand.bv));
  }
  if (family === 'qwen3') {
    m.set('model.layers.0.self_attn.q_norm.weight', t([2], hand.qn));
    m.set('model.layers.0.self_attn.k_norm.weight', t([2], hand.kn));
  }
  return { config, tensors: m };
}

/** The same model's logits for ids (a, b), every step a 2-vector formula. */
function handLogits(family: 'llama' | 'qwen2' | 'qwen3', a: number, b: number): number[][] {
  type V2 = [number, number];
  const e = hand.eps;
  const norm = (x: V2, g: number[]): V2 => {
    const r = Math.sqrt((x[0] * x[0] + x[1] * x[1]) / 2 + e);
    return [g[0]! * x[0] / r, g[1]! * x[1] / r];
  };
  const mv = (w: number[][], x: V2): V2 => [w[0]![0]! * x[0] + w[0]![1]! * x[1], w[1]![0]! * x[0] + w[1]![1]! * x[1]];
  const plus = (x: V2, y: number[]): V2 => [x[0] + y[0]!, x[1] + y[1]!];
  const qwen2 = family === 'qwen2';
  const qwen3 = family === 'qwen3';
  // head_dim 2: one frequency, theta^0 = 1, so position p rotates by p radians
  const rot = (x: V2, p: number): V2 => [x[0] * Math.cos(p) - x[1] * Math.sin(p), x[1] * Math.cos(p) + x[0] * Math.sin(p)];
  const x0 = hand.embed[a] as V2;
  const x1 = hand.embed[b] as V2;
  const h0 = norm(x0, hand.g1), h1 = norm(x1, hand.g1);
  let q1 = mv(hand.wq, h1), k0 = mv(hand.wk, h0), k1 = mv(hand.wk, h1);
  let v0 = mv(hand.wv, h0), v1 = mv(hand.wv, h1);
  if (qwen2) { q1 = plus(q1, hand.bq); k0 = plus(k0, hand.bk); k1 = plus(k1, hand.bk); v0 = plus(v0, hand.bv); v1 = plus(v1, hand.bv); }
  if (qwen3) { q1 = norm(q1, hand.qn); k0 = norm(k0, hand.kn); k1 = norm(k1, hand.kn); }
  // position 0 attends only to itself, whatever its query: its output is v0
  const q1r = rot(q1, 1), k1r = rot(k1, 1);
  const s0 = (q1r[0] * k0[0] + q1r[1] * k0[1]) / Math.SQRT2;
  const s1 = (q1r[0] * k1r[0] + q1r[1] * k1r[1]) / Math.SQRT2;
  const p0 = 1 / (1 + Math.exp(s1 - s0)), p1 = 1 - p0;
  const att: V2[] = [v0, [p0 * v0[0] + p1 * v1[0], p0 * v0[1] + p1 * v1[1]]];
  return [x0, x1].map((x, t) => {
    const r = plus(x, mv(hand.wo, att[t]!));
    const h = norm(r, hand.g2);
    const g = hand.wg[0]![0]! * h[0] + hand.wg[0]![1]! * h[1];
    const u = hand.wu[0]![0]! * h[0] + hand.wu[0]![1]! * h[1];
    const m = (g / (1 + Math.exp(-g))) * u;
    const y: V2 = [r[0] + hand.wd[0]![0]! * m, r[1] + hand.wd[1]![0]! * m];
    const z = norm(y, hand.gf);
    return hand.head.map((w) => w[0]! * z[0] + w[1]! * z[1]);
  });
}

describe('hf64 on a model small enough to derive by hand', () => {
  for (const family of ['llama', 'qwen2', 'qwen3'] as const) {
    it(`${family}: both positions of (2, 1) and (0, 2) agree with the scalar derivation to 1e-12`, () => {
      for (const [a, b] of [[2, 1], [0, 2]] as const) {
        const got = hfLogits64(handModel(family), [a, b]);
        const want = handLogits(family, a, b).flat();
        for (let i = 0; i < 6; i++) assert.ok(Math.abs(got[i]! - want[i]!) <= 1e-12 * (1 + Math.abs(want[i]!)), `${family} (${a},${b}) logit ${i}: ${got[i]} vs ${want[i]}`);
      }
    });
  }

  it('the families really differ on it (biases and q/k norms are used)', () => {
    const l = hfLogits64(handModel('llama'), [2, 1]);
    assert.ok(maxRelDiff(hfLogits64(handModel('qwen2'), [2, 1]), l) > 1e-3);
    assert.ok(maxRelDiff(hfLogits64(handModel('qwen3'), [2, 1]), l) > 1e-3);
  });
});

// ---------------------------------------------------------------------------------------------------------------
// A second forward for plain multi-head attention (Nkv = N): whole-sequence matrices, a masked T×T score matrix,
// RoPE as a complex rotation of the pairs (x_i, x_{i+H/2}), its own frequencies theta^(−2i/H) (no scaling).

function matmulT(x: Float64Array, rows: number, w: Float64Array, out: number, inDim: number): Float64Array {
  const y = new Float64Array(rows * out);
  for (let r = 0; r < rows; r++) for (let o = 0; o < out; o++) {
    let s = 0;
    for (let i = 0; i < inDim; i++) s += x[r * inDim + i]! * w[o * inDim + i]!;
    y[r * out + o] = s;
  }
  return y;
}

function normRows(x: Float64Array, width: number, g: Float64Array, eps: number): Float64Array {
  const y = new Float64Array(x.length);
  for (let r = 0; r < x.length / width; r++) {
    const row = x.subarray(r * width, (r + 1) * width);
    const rms = Math.sqrt(row.reduce((s, v) => s + v * v, 0) / width + eps);
    for (let i = 0; i < width; i++) y[r * width + i] = (row[i]! / rms) * g[i]!;
  }
  return y;
}

function plainMha64(m: Hf64Model, ids: number[]): Float64Array {
  const c = m.config;
  const D = c.hidden_size, N = c.num_attention_heads, H = c.head_dim ?? D / N, F = c.intermediate_size, V = c.vocab_size;
  assert.equal(c.num_key_value_heads ?? N, N, 'plainMha64 is multi-head only');
  assert.ok(!c.rope_scaling, 'plainMha64 has no rope scaling');
  const T = ids.length, eps = c.rms_norm_eps, theta = c.rope_theta ?? 10000;
  const W = (name: string) => m.tensors.get(name)!.data;
  const opt = (name: string) => m.tensors.get(name)?.data;
  let x = new Float64Array(T * D);
  ids.forEach((id, t) => x.set(W('model.embed_tokens.weight').subarray(id * D, (id + 1) * D), t * D));
  for (let l = 0; l < c.num_hidden_layers; l++) {
    const p = `model.layers.${l}.`;
    const h = normRows(x, D, W(p + 'input_layernorm.weight'), eps);
    const proj = (w: string) => {
      const y = matmulT(h, T, W(p + `self_attn.${w}_proj.weight`), N * H, D);
      const b = opt(p + `self_attn.${w}_proj.bias`);
      if (b) for (let i = 0; i < y.length; i++) y[i]! += b[i % (N * H)]!;
      const g = opt(p + `self_attn.${w}_norm.weight`);
      return g ? normRows(y, H, g, eps) : y;
    };
    const Q = proj('q'), K = proj('k'), Vv = proj('v');
    for (const M of [Q, K]) for (let t = 0; t < T; t++) for (let n = 0; n < N; n++) for (let i = 0; i < H / 2; i++) {
      const at = t * N * H + n * H;
      const re = M[at + i]!, im = M[at + i + H / 2]!;
      const ang = t * Math.pow(theta, (-2 * i) / H);
      const [cr, ci] = [Math.cos(ang), Math.sin(ang)];
      M[at + i] = re * cr - im * ci;
      M[at + i + H / 2] = re * ci + im * cr;
    }
    const heads = new Float64Array(T * N * H);
    for (let n = 0; n < N; n++) {
      const S = new Float64Array(T * T).fill(-Infinity);
      for (let t = 0; t < T; t++) for (let u = 0; u <= t; u++) {
        let s = 0;
        for (let i = 0; i < H; i++) s += Q[t * N * H + n * H + i]! * K[u * N * H + n * H + i]!;
        S[t * T + u] = s / Math.sqrt(H);
      }
      for (let t = 0; t < T; t++) {
        const P = softmax64(S.subarray(t * T, (t + 1) * T));
        for (let u = 0; u < T; u++) for (let i = 0; i < H; i++) heads[t * N * H + n * H + i]! += P[u]! * Vv[u * N * H + n * H + i]!;
      }
    }
    const o = matmulT(heads, T, W(p + 'self_attn.o_proj.weight'), D, N * H);
    x = x.map((v, i) => v + o[i]!);
    const h2 = normRows(x, D, W(p + 'post_attention_layernorm.weight'), eps);
    const g = matmulT(h2, T, W(p + 'mlp.gate_proj.weight'), F, D);
    const u = matmulT(h2, T, W(p + 'mlp.up_proj.weight'), F, D);
    const act = g.map((gv, i) => (gv / (1 + Math.exp(-gv))) * u[i]!);
    const d = matmulT(act, T, W(p + 'mlp.down_proj.weight'), D, F);
    x = x.map((v, i) => v + d[i]!);
  }
  const z = normRows(x, D, W('model.norm.weight'), eps);
  return matmulT(z, T, c.tie_word_embeddings ? W('model.embed_tokens.weight') : W('lm_head.weight'), V, D);
}

describe('hf64 against a second implementation', () => {
  for (const family of ['llama', 'qwen2', 'qwen3'] as const) {
    it(`${family}, Nkv = N: equals a plain multi-head forward (1e-12)`, () => {
      const m = folder(base(family, { H: family === 'qwen3' ? 8 : 6, tied: family === 'qwen2', seed: 11 }));
      const ids = randomIds(new Rng(3), 9, 37);
      const d = maxRelDiff(hfLogits64(m, ids), plainMha64(m, ids));
      assert.ok(d < 1e-12, `${family}: ${d}`);
    });
  }

  for (const family of ['llama', 'qwen2', 'qwen3'] as const) {
    it(`${family}, N = 6, Nkv = 2: equals the model whose k and v heads are duplicated to 6 heads`, () => {
      const spec = base(family, { N: 6, Nkv: 2, H: 4, seed: 23 });
      const m = folder(spec);
      const dup = (mapping: (n: number) => number): Hf64Model => {
        const tensors = new Map(m.tensors);
        for (let l = 0; l < spec.L; l++) {
          for (const w of ['k', 'v']) {
            for (const kind of ['weight', 'bias']) {
              const name = `model.layers.${l}.self_attn.${w}_proj.${kind}`;
              const t = m.tensors.get(name);
              if (!t) continue;
              const block = kind === 'weight' ? spec.H * spec.D : spec.H;
              const data = new Float64Array(spec.N * block);
              for (let n = 0; n < spec.N; n++) data.set(t.data.subarray(mapping(n) * block, (mapping(n) + 1) * block), n * block);
              tensors.set(name, { shape: kind === 'weight' ? [spec.N * spec.H, spec.D] : [spec.N * spec.H], data });
            }
          }
        }
        return { config: { ...m.config, num_key_value_heads: spec.N }, tensors };
      };
      const ids = randomIds(new Rng(4), 8, spec.V);
      const gqa = hfLogits64(m, ids);
      const grouped = dup((n) => Math.floor(n / 3));
      assert.ok(maxRelDiff(gqa, hfLogits64(grouped, ids)) < 1e-13);
      assert.ok(maxRelDiff(gqa, plainMha64(grouped, ids)) < 1e-12, 'and the duplicated model agrees with the plain forward');
      // kv head j serves query heads [3j, 3j+3), not heads j, j+2, j+4
      assert.ok(maxRelDiff(gqa, hfLogits64(dup((n) => n % 2), ids)) > 1e-3, 'interleaved grouping must differ');
    });
  }
});

describe('RoPE frequencies', () => {
  it('without scaling: theta^(−2i/head_dim)', () => {
    const c = tinyConfigJson(base('qwen3', { H: 8, ropeTheta: 1e6 }));
    const inv = hfInvFreq64(c);
    assert.deepEqual(Array.from(inv).map((v) => +v.toPrecision(12)), [1, 0.0316227766017, 0.001, 3.16227766017e-5]);
  });

  it('llama3 scaling: each of the three branches is hit, one frequency of each checked by hand', () => {
    const spec = base('llama', { H: 16, ropeTheta: 10000, ropeScaling: { factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositions: 256 } });
    const c = tinyConfigJson(spec);
    assert.equal(c.rope_scaling!.rope_type, 'llama3');
    const inv = hfInvFreq64(c);
    assert.equal(inv.length, 8);
    // wavelengths 2π·10000^(i/8): 6.28, 19.9, 62.8 (< 256/4 = 64: kept), 198.7 (blended), 628, … (> 256/1: slowed)
    const branch = Array.from({ length: 8 }, (_, i) => {
      const wavelength = 2 * Math.PI * Math.pow(10000, (2 * i) / 16);
      return wavelength < 64 ? 'high' : wavelength > 256 ? 'low' : 'mid';
    });
    assert.deepEqual(branch, ['high', 'high', 'high', 'mid', 'low', 'low', 'low', 'low']);
    assert.equal(inv[0], 1);
    assert.ok(Math.abs(inv[2]! - 0.1) < 1e-16);
    // i = 3: f = 10^−1.5 = 0.0316227766, wavelength 198.6918, s = (256/198.6918 − 1)/3 = 0.0961426,
    // (1 − s)·f/8 + s·f = f·(1 + 7s)/8
    assert.ok(Math.abs(inv[3]! - 0.0066131063172475526) < 1e-15, `mid ${inv[3]}`);
    // i = 7: 10^−3.5 / 8
    assert.ok(Math.abs(inv[7]! - 3.952847075210474e-5) < 1e-18, `low ${inv[7]}`);
    assert.ok(Math.abs(inv[4]! - 0.01 / 8) < 1e-17);
    // the legacy key `type` is read like `rope_type`
    const legacy = { ...c, rope_scaling: { ...c.rope_scaling!, rope_type: undefined, type: 'llama3' } };
    assert.deepEqual(hfInvFreq64(legacy), inv);
  });

  it('the scaling reaches the logits', () => {
    const spec = base('llama', { H: 16, D: 32, N: 2, Nkv: 2, ropeScaling: { factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositions: 256 } });
    const m = folder(spec);
    const plain: Hf64Model = { config: { ...m.config, rope_scaling: null }, tensors: m.tensors };
    const ids = randomIds(new Rng(9), 12, spec.V);
    assert.ok(maxRelDiff(hfLogits64(m, ids), hfLogits64(plain, ids)) > 1e-4);
  });
});

describe('hf64 properties', () => {
  it('causal: changing token 6 leaves positions 0..5 bit-identical and changes position 6 on', () => {
    const spec = base('qwen3', { N: 4, Nkv: 2, H: 8, seed: 31 });
    const m = folder(spec);
    const ids = randomIds(new Rng(5), 10, spec.V);
    const other = ids.slice();
    other[6] = (ids[6]! + 1) % spec.V;
    const a = hfLogits64(m, ids), b = hfLogits64(m, other);
    const V = spec.V;
    assert.deepEqual(a.subarray(0, 6 * V), b.subarray(0, 6 * V));
    for (let t = 6; t < 10; t++) assert.ok(maxRelDiff(a.subarray(t * V, (t + 1) * V), b.subarray(t * V, (t + 1) * V)) > 1e-6, `position ${t}`);
    // a prefix gives the prefix's logits
    assert.ok(maxRelDiff(hfLogits64(m, ids.slice(0, 4)), a.subarray(0, 4 * V)) === 0);
  });

  it('softmax64 / logSoftmax64', () => {
    const row = [1000, 1001, 999, -Infinity];
    const p = softmax64(row);
    const lp = logSoftmax64(row);
    const z = Math.exp(0) + Math.exp(1) + Math.exp(-1);
    assert.ok(Math.abs(p[1]! - Math.exp(1) / z) < 1e-15);
    assert.equal(p[3], 0);
    assert.ok(Math.abs(lp[0]! - (0 - Math.log(z))) < 1e-12);
  });

  it('tied embeddings: a redundant lm_head is ignored; untied: lm_head is used', () => {
    const spec = base('llama', { tied: true, seed: 41 });
    const plain = folder(spec), redundant = folder({ ...spec, redundantLmHead: true });
    assert.ok(redundant.tensors.has('lm_head.weight') && !plain.tensors.has('lm_head.weight'));
    const ids = randomIds(new Rng(6), 7, spec.V);
    assert.deepEqual(hfLogits64(redundant, ids), hfLogits64(plain, ids));
    const untied: Hf64Model = { config: { ...redundant.config, tie_word_embeddings: false }, tensors: redundant.tensors };
    assert.ok(maxRelDiff(hfLogits64(untied, ids), hfLogits64(plain, ids)) > 1e-3);
  });

  it('bad inputs name the culprit', () => {
    const m = folder(base('qwen2', { seed: 2 }));
    assert.throws(() => hfLogits64(m, [0, 37]), /token 37 at position 1/);
    const tensors = new Map(m.tensors);
    tensors.delete('model.layers.1.self_attn.k_proj.bias');
    assert.throws(() => hfLogits64({ config: m.config, tensors }, [0]), /model\.layers\.1\.self_attn\.k_proj\.bias is missing/);
    assert.throws(() => hfLogits64({ config: { ...m.config, head_dim: 4 }, tensors: m.tensors }, [0]), /q_proj\.weight has shape \[24,24\], expected \[16,24\]/);
  });
});

describe('tiny folders', () => {
  it('config.json has the keys transformers reads; head_dim when it differs from hidden/heads, always for qwen3', () => {
    const l = tinyConfigJson(base('llama'));
    assert.equal(l.model_type, 'llama');
    assert.deepEqual(l.architectures, ['LlamaForCausalLM']);
    assert.equal(l.head_dim, undefined);
    assert.equal(tinyConfigJson(base('llama', { H: 8 })).head_dim, 8);
    const q2 = tinyConfigJson(base('qwen2'));
    assert.equal(q2.attention_bias, undefined);
    assert.equal(q2.rms_norm_eps, 1e-6);
    assert.equal(tinyConfigJson(base('qwen3')).head_dim, 6);
    const d = hfDims64(tinyConfigJson(base('qwen3', { N: 6, Nkv: 3, H: 10 })));
    assert.deepEqual([d.N, d.Nkv, d.H, d.D], [6, 3, 10, 24]);
  });

  it('every tensor has transformers\' name and [out, in] shape, and every value is random (norms around 1)', () => {
    const spec = base('qwen3', { N: 4, Nkv: 2, H: 8, seed: 3 });
    const m = folder(spec);
    const s = (name: string) => m.tensors.get(name)!.shape;
    assert.deepEqual(s('model.layers.1.self_attn.q_proj.weight'), [32, 24]);
    assert.deepEqual(s('model.layers.1.self_attn.k_proj.weight'), [16, 24]);
    assert.deepEqual(s('model.layers.1.self_attn.o_proj.weight'), [24, 32]);
    assert.deepEqual(s('model.layers.1.self_attn.k_norm.weight'), [8]);
    assert.deepEqual(s('model.layers.0.mlp.down_proj.weight'), [24, 40]);
    assert.equal(m.tensors.size, 1 + 2 * 11 + 1 + 1);
    for (const [name, t] of m.tensors) {
      const distinct = new Set(t.data).size;
      assert.ok(distinct > t.data.length / 2, `${name} is not random`);
      const mean = t.data.reduce((a, b) => a + b, 0) / t.data.length;
      if (name.endsWith('norm.weight')) assert.ok(Math.abs(mean - 1) < 0.3, `${name} mean ${mean}`);
      else assert.ok(Math.abs(mean) < 0.1, `${name} mean ${mean}`);
    }
  });

  it('bf16 and f16 rounding: nearest, ties to even, every 16-bit pattern round-trips', () => {
    // bf16: the float32 bit trick (add 0x7fff plus the kept low bit, truncate) as the second implementation
    const f = new DataView(new ArrayBuffer(4));
    const trick = (x: number) => {
      f.setFloat32(0, x);
      const bits = f.getUint32(0);
      return ((bits + 0x7fff + ((bits >>> 16) & 1)) >>> 16) & 0xffff;
    };
    const rng = new Rng(8);
    for (let i = 0; i < 20000; i++) {
      const x = Math.fround(rng.normal() * Math.pow(2, rng.int(60) - 30));
      assert.equal(bf16Bits(x), trick(x), `bf16 of ${x}`);
    }
    for (const k of [0, 1, 2, 3, 127, 128, 1000]) {
      const tie = (1 + (2 * k + 1) * 2 ** -8) * 2 ** (k % 7); // exactly halfway between two bf16 values
      assert.equal(bf16Bits(tie), trick(tie), `tie ${tie}`);
    }
    assert.equal(roundToBf16(1 + 2 ** -8), 1);
    assert.equal(roundToBf16(1 + 3 * 2 ** -8), 1 + 2 ** -6);
    assert.equal(roundToF16(1 + 2 ** -11), 1);
    assert.equal(roundToF16(1 + 3 * 2 ** -11), 1 + 2 ** -9);
    assert.equal(roundToF16(65519), 65504);
    assert.equal(roundToF16(65520), Infinity);
    assert.equal(roundToF16(2 ** -25), 0);
    assert.equal(roundToF16(3 * 2 ** -25), 2 ** -23);
    assert.equal(f16Bits(1), 0x3c00);
    assert.equal(f16Bits(-2), 0xc000);
    assert.equal(f16Bits(2 ** -24), 1);
    assert.equal(bf16Bits(1), 0x3f80);
    for (let b = 0; b < 65536; b++) {
      const h = f16FromBits(b), g = bf16FromBits(b);
      if (!Number.isNaN(h)) assert.equal(f16Bits(h), b, `f16 pattern ${b}`);
      if (!Number.isNaN(g)) assert.equal(bf16Bits(g), b, `bf16 pattern ${b}`);
    }
  });

  it('a bf16 folder holds the bf16 rounding of the float32 folder of the same seed, and re-encodes to the same bytes', () => {
    const spec = base('llama', { seed: 17 });
    const dirA = path.join(tmp, 'f32'), dirB = path.join(tmp, 'bf16'), dirC = path.join(tmp, 'f16');
    writeTinyHFFolder(dirA, spec);
    writeTinyHFFolder(dirB, { ...spec, dtype: 'bf16' });
    writeTinyHFFolder(dirC, { ...spec, dtype: 'f16' });
    assert.equal(JSON.parse(fs.readFileSync(path.join(dirB, 'config.json'), 'utf8')).torch_dtype, 'bfloat16');
    const a = readTinyHFFolder(dirA), b = readTinyHFFolder(dirB), c = readTinyHFFolder(dirC);
    const f = new DataView(new ArrayBuffer(4));
    let moved = 0;
    for (const [name, ta] of a.tensors) {
      const tb = b.tensors.get(name)!;
      assert.equal(tb.dtype, 'BF16');
      assert.equal(c.tensors.get(name)!.dtype, 'F16');
      for (let i = 0; i < ta.data.length; i++) {
        f.setFloat32(0, ta.data[i]!);
        const bits = f.getUint32(0);
        f.setUint32(0, ((bits + 0x7fff + ((bits >>> 16) & 1)) >>> 16) << 16);
        assert.equal(tb.data[i], f.getFloat32(0), `${name}[${i}]`);
        if (tb.data[i] !== ta.data[i]) moved++;
        assert.equal(c.tensors.get(name)!.data[i], roundToF16(ta.data[i]!));
      }
    }
    assert.ok(moved > 0, 'bf16 rounding changed some values');
    const bytes = new Uint8Array(fs.readFileSync(path.join(dirB, 'model.safetensors')));
    const decoded = decodeSafetensors(bytes);
    const again = encodeSafetensors(
      Object.fromEntries([...decoded.tensors].map(([n, t]) => [n, { shape: t.shape, data: t.data, dtype: t.dtype }])),
      decoded.metadata);
    assert.deepEqual(again, bytes);
  });

  it('a folder in 3 shards holds exactly the tensors of the single file, mapped by its index', () => {
    const spec = base('qwen2', { N: 8, Nkv: 2, H: 4, seed: 29, dtype: 'bf16' });
    const one = path.join(tmp, 'one'), three = path.join(tmp, 'three');
    writeTinyHFFolder(one, spec);
    writeTinyHFFolder(three, { ...spec, shards: 3 });
    assert.ok(!fs.existsSync(path.join(three, 'model.safetensors')));
    const index = JSON.parse(fs.readFileSync(path.join(three, 'model.safetensors.index.json'), 'utf8'));
    const files = [...new Set(Object.values(index.weight_map))].sort();
    assert.deepEqual(files, ['model-00001-of-00003.safetensors', 'model-00002-of-00003.safetensors', 'model-00003-of-00003.safetensors']);
    let bytes = 0;
    for (const file of files as string[]) {
      const st = readSafetensors(path.join(three, file));
      for (const [name, t] of st.tensors) {
        assert.equal(index.weight_map[name], file);
        bytes += 2 * t.data.length;
      }
    }
    assert.equal(index.metadata.total_size, bytes);
    const a = readTinyHFFolder(one), b = readTinyHFFolder(three);
    assert.deepEqual([...b.tensors.keys()].sort(), [...a.tensors.keys()].sort());
    for (const [name, t] of a.tensors) assert.deepEqual(b.tensors.get(name), t, name);
    const ids = [1, 5, 9, 2];
    assert.deepEqual(hfLogits64(b, ids), hfLogits64(a, ids));
    // a shard that lost a tensor the index maps to it is caught
    const shard2 = path.join(three, 'model-00002-of-00003.safetensors');
    const st = readSafetensors(shard2);
    const [dropped] = st.tensors.keys();
    st.tensors.delete(dropped!);
    fs.writeFileSync(shard2, encodeSafetensors(Object.fromEntries(st.tensors)));
    assert.throws(() => readTinyHFFolder(three), new RegExp(`${dropped!.replace(/\./g, '\\.')} is missing`));
  });
});
