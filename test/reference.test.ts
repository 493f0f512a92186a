/**
 * Checks of the test references themselves (they are only useful if they are right): the float64 kernels
 * against closed-form derivatives and invariants, the finite-difference helper against a known gradient
 * (and that it catches a wrong one), the independent safetensors writer/reader, and the float64 gpt forward
 * against a second float64 composition built from the kernel references. No product code is used here.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as ref from './helpers/ref.js';
import { Rng, dot, finiteDiff, relErr, to64, pickCoords, gather } from './helpers/ref.js';
import type { F64 } from './helpers/ref.js';
import { gpt64Forward, gptShapes, randomGptWeights, weightsTo64 } from './helpers/gpt64.js';
import type { Gpt64Config, Gpt64Weights } from './helpers/gpt64.js';
import { decodeSafetensors, encodeSafetensors } from './helpers/safetensors.js';

function randn64(rng: Rng, n: number, std = 1): F64 {
  return Float64Array.from({ length: n }, () => rng.normal() * std);
}

function allCoords(n: number): Int32Array {
  return Int32Array.from({ length: n }, (_, i) => i);
}

describe('finite differences', () => {
  it('matches a closed-form gradient to ~1e-9 and exposes a wrong one', () => {
    const rng = new Rng(1);
    const x = randn64(rng, 9);
    const f = (v: F64) => { let s = 0; for (let i = 0; i < v.length; i++) s += Math.sin(v[i]) * v[(i + 1) % v.length]; return s; };
    const g = new Float64Array(9);
    for (let i = 0; i < 9; i++) g[i] = Math.cos(x[i]) * x[(i + 1) % 9] + Math.sin(x[(i + 8) % 9]);
    const fd = finiteDiff(f, x, allCoords(9));
    assert.ok(relErr(fd, g) < 1e-8, `fd vs closed form ${relErr(fd, g)}`);
    const wrong = g.map((v, i) => (i === 4 ? v * 1.01 : v));
    assert.ok(relErr(wrong, fd) > 1e-3, 'a 1% error in one coordinate must be visible');
    const before = Float64Array.from(x);
    finiteDiff(f, x, [0, 3]);
    assert.deepEqual(x, before, 'finiteDiff restores its input');
    const picked = pickCoords(rng, 1000, 20);
    assert.equal(new Set(picked).size, 20);
    assert.deepEqual(Array.from(gather([5, 6, 7], [2, 0])), [7, 5]);
  });
});

describe('float64 kernel references', () => {
  it('rmsnorm: closed-form backward (dy − y·mean(dy·y))·rstd equals finite differences', () => {
    const rng = new Rng(2);
    const R = 4, C = 13;
    const x = randn64(rng, R * C);
    const dy = randn64(rng, R * C);
    const { y, rstd } = ref.rmsnorm(x, R, C);
    const dx = new Float64Array(R * C);
    for (let r = 0; r < R; r++) {
      let m = 0;
      for (let c = 0; c < C; c++) m += dy[r * C + c] * y[r * C + c];
      m /= C;
      for (let c = 0; c < C; c++) dx[r * C + c] = (dy[r * C + c] - y[r * C + c] * m) * rstd[r];
    }
    const fd = finiteDiff((v) => dot(dy, ref.rmsnorm(v, R, C).y), x, allCoords(R * C));
    assert.ok(relErr(dx, fd) < 1e-7, `rmsnorm grad ${relErr(dx, fd)}`);
    for (let r = 0; r < R; r++) {
      let ms = 0;
      for (let c = 0; c < C; c++) ms += y[r * C + c] ** 2;
      assert.ok(Math.abs(ms / C - 1) < 1e-5, 'normalised rows have mean square ≈ 1');
    }
  });

  it('gelu: matches known values and its closed-form derivative', () => {
    assert.equal(ref.geluScalar(0), 0);
    assert.ok(Math.abs(ref.geluScalar(1) - 0.8411919906082768) < 1e-12);
    assert.ok(Math.abs(ref.geluScalar(-1) + 0.15880800939172324) < 1e-12);
    for (const x of [-3, -0.7, 0, 0.4, 2.5]) {
      const d = ref.geluGradScalar(x);
      const fd = finiteDiff((v) => ref.geluScalar(v[0]), Float64Array.of(x), [0])[0];
      assert.ok(Math.abs(d - fd) < 1e-8, `gelu'(${x}) ${d} vs fd ${fd}`);
    }
  });

  it('rope: preserves norms, has the stated rotation, is inverted by the inverse, and scores depend on relative position', () => {
    const rng = new Rng(3);
    const H = 6;
    const x = randn64(rng, H);
    const y = ref.rope(x, 1, 1, 1, H, H, H, 5);
    assert.ok(Math.abs(dot(x, x) - dot(y, y)) < 1e-12);
    // first pair (i = 0) rotates with frequency 1: angle = pos
    assert.ok(Math.abs(y[0] - (x[0] * Math.cos(5) - x[3] * Math.sin(5))) < 1e-12);
    assert.ok(Math.abs(y[3] - (x[3] * Math.cos(5) + x[0] * Math.sin(5))) < 1e-12);
    // last pair (i = 2): frequency 10000^(-4/6)
    const f2 = Math.pow(10000, -4 / 6);
    assert.ok(Math.abs(y[2] - (x[2] * Math.cos(5 * f2) - x[5] * Math.sin(5 * f2))) < 1e-12);
    const back = ref.rope(y, 1, 1, 1, H, H, H, 5, true);
    assert.ok(relErr(back, x) < 1e-12);
    const q = randn64(rng, H), k = randn64(rng, H);
    const s1 = dot(ref.rope(q, 1, 1, 1, H, H, H, 7), ref.rope(k, 1, 1, 1, H, H, H, 3));
    const s2 = dot(ref.rope(q, 1, 1, 1, H, H, H, 104), ref.rope(k, 1, 1, 1, H, H, H, 100));
    assert.ok(Math.abs(s1 - s2) < 1e-10, 'RoPE scores depend on the offset only');
  });

  it('qkNormRope equals RoPE(RMSNorm) per head and copies v', () => {
    const rng = new Rng(4);
    const B = 2, T = 3, N = 2, H = 4;
    const x = randn64(rng, B * T * 3 * N * H);
    const { y } = ref.qkNormRope(x, B, T, N, H, 2);
    for (let b = 0; b < B; b++) {
      for (let t = 0; t < T; t++) {
        for (let p = 0; p < 3; p++) {
          for (let n = 0; n < N; n++) {
            const off = (((b * T + t) * 3 + p) * N + n) * H;
            const head = x.slice(off, off + H);
            const expected = p === 2 ? head : ref.rope(ref.rmsnorm(head, 1, H).y, 1, 1, 1, H, H, H, 2 + t);
            assert.ok(relErr(y.slice(off, off + H), expected) < 1e-14);
          }
        }
      }
    }
  });

  it('attention: T=1 returns v; probs are causal and normalised', () => {
    const rng = new Rng(5);
    const N = 2, H = 4;
    const one = randn64(rng, 3 * N * H);
    const { out } = ref.attention(one, 1, 1, N, H);
    assert.ok(relErr(out, one.slice(2 * N * H)) < 1e-15);
    const T = 4;
    const { probs } = ref.attention(randn64(rng, T * 3 * N * H), 1, T, N, H);
    for (let row = 0; row < N * T; row++) {
      const t = row % T;
      let s = 0;
      for (let j = 0; j < T; j++) {
        if (j > t) assert.equal(probs[row * T + j], 0);
        s += probs[row * T + j];
      }
      assert.ok(Math.abs(s - 1) < 1e-14);
    }
  });

  it('crossEntropy and klDiv: gradients are w·(softmax − onehot) and w·(q − p)', () => {
    const rng = new Rng(6);
    const R = 3, V = 7;
    const logits = randn64(rng, R * V, 2);
    const lp = randn64(rng, R * V, 2);
    const targets = Int32Array.from([3, 0, 6]);
    const w = Float64Array.of(0.5, 0, 2);
    const gCe = new Float64Array(R * V), gKl = new Float64Array(R * V);
    for (let r = 0; r < R; r++) {
      const q = ref.softmaxRow(logits, r * V, V);
      const p = ref.softmaxRow(lp, r * V, V);
      for (let v = 0; v < V; v++) {
        gCe[r * V + v] = w[r] * (q[v] - (v === targets[r] ? 1 : 0));
        gKl[r * V + v] = w[r] * (q[v] - p[v]);
      }
    }
    const fdCe = finiteDiff((l) => ref.crossEntropy(l, targets, w, R, V).loss, logits, allCoords(R * V));
    const fdKl = finiteDiff((l) => ref.klDiv(lp, l, w, R, V).loss, logits, allCoords(R * V));
    assert.ok(relErr(gCe, fdCe) < 1e-7, `ce ${relErr(gCe, fdCe)}`);
    assert.ok(relErr(gKl, fdKl) < 1e-7, `kl ${relErr(gKl, fdKl)}`);
    assert.ok(ref.klDiv(lp, lp, w, R, V).loss === 0);
    assert.throws(() => ref.crossEntropy(logits, Int32Array.from([3, 0, 7]), w, R, V), RangeError);
    // weight-0 rows are skipped whatever their target
    assert.equal(ref.crossEntropy(logits, Int32Array.from([3, 99, 6]), w, R, V).rowLoss[1], 0);
  });

  it('gemm: transposes agree with each other', () => {
    const rng = new Rng(7);
    const M = 3, N = 4, K = 5;
    const A = randn64(rng, M * K), B = randn64(rng, K * N);
    const At = new Float64Array(K * M), Bt = new Float64Array(N * K);
    for (let i = 0; i < M; i++) for (let k = 0; k < K; k++) At[k * M + i] = A[i * K + k];
    for (let k = 0; k < K; k++) for (let j = 0; j < N; j++) Bt[j * K + k] = B[k * N + j];
    const C0 = new Float64Array(M * N);
    ref.gemm(false, false, M, N, K, 1, A, B, 0, C0);
    assert.equal(C0[1 * N + 2], A[5] * B[2] + A[6] * B[6] + A[7] * B[10] + A[8] * B[14] + A[9] * B[18]);
    for (const [ta, tb] of [[true, false], [false, true], [true, true]] as const) {
      const C = new Float64Array(M * N);
      ref.gemm(ta, tb, M, N, K, 1, ta ? At : A, tb ? Bt : B, 0, C);
      assert.ok(relErr(C, C0) < 1e-15);
    }
  });

  it('adamw: first step with bias correction moves each weight by lr·sign(g) (plus decay)', () => {
    const p = Float64Array.of(1, -2, 0.5);
    const g = Float64Array.of(0.3, -0.01, 2);
    const m = new Float64Array(3), v = new Float64Array(3);
    ref.adamwStep(p, g, m, v, 0.1, 0.9, 0.999, 0, 0, 0.1, 0.001);
    assert.ok(relErr(p, Float64Array.of(0.9, -1.9, 0.4)) < 1e-12);
  });
});

describe('test safetensors writer/reader', () => {
  it('round-trips F32 tensors with an 8-byte aligned, space-padded header', () => {
    const a = Float32Array.from([1.5, -2, 3.25, 1e-30, -0, 7]);
    const b = Float32Array.from([42]);
    const buf = encodeSafetensors({ a: { shape: [2, 3], data: a }, b: { shape: [1], data: b } }, { format: 'pt' });
    const n = Number(new DataView(buf.buffer).getBigUint64(0, true));
    assert.equal((8 + n) % 8, 0);
    const header = JSON.parse(Buffer.from(buf.subarray(8, 8 + n)).toString('utf8'));
    assert.deepEqual(header.a, { dtype: 'F32', shape: [2, 3], data_offsets: [0, 24] });
    assert.deepEqual(header.b, { dtype: 'F32', shape: [1], data_offsets: [24, 28] });
    assert.equal(buf.length, 8 + n + 28);
    const { tensors, metadata } = decodeSafetensors(buf);
    assert.deepEqual(metadata, { format: 'pt' });
    assert.deepEqual(Array.from(tensors.get('a')!.data), Array.from(a));
    assert.deepEqual(tensors.get('b')!.shape, [1]);
    // little-endian on disk: 1.5f = 0x3FC00000
    assert.deepEqual(Array.from(buf.subarray(8 + n, 8 + n + 4)), [0x00, 0x00, 0xc0, 0x3f]);
  });
});

/** A second float64 gpt forward built from the kernel references (gemm, rmsnorm, qkNormRope, attention,
 *  gelu), with the qkv/out weights re-laid out as matrices. Agreement with gpt64 checks both. */
function composedForward(cfg: Gpt64Config, w: Gpt64Weights, tokens: Int32Array, B: number, T: number): F64 {
  const { D, L, H, V } = cfg;
  const N = D / H, F = 4 * D, BT = B * T;
  let h = ref.embeddingForward(w.embed_in, tokens, BT, V, D);
  for (let l = 0; l < L; l++) {
    const Wqkv = new Float64Array(D * 3 * N * H); // [D, (3, N, H)]
    for (let p = 0; p < 3; p++) for (let n = 0; n < N; n++) for (let d = 0; d < D; d++) for (let i = 0; i < H; i++) {
      Wqkv[d * 3 * N * H + (p * N + n) * H + i] = w.qkv[(((l * 3 + p) * N + n) * D + d) * H + i];
    }
    const a = ref.rmsnorm(h, BT, D).y;
    const qkv = new Float64Array(BT * 3 * N * H);
    ref.gemm(false, false, BT, 3 * N * H, D, 1, a, Wqkv, 0, qkv);
    const { y } = ref.qkNormRope(qkv, B, T, N, H, 0);
    const { out } = ref.attention(y, B, T, N, H);
    const o = new Float64Array(BT * D);
    ref.gemm(false, false, BT, D, N * H, 1, out, w.out.subarray(l * N * H * D, (l + 1) * N * H * D), 0, o);
    h = h.map((x, i) => x + o[i]);
    const u = new Float64Array(BT * F);
    ref.gemm(false, false, BT, F, D, 1, ref.rmsnorm(h, BT, D).y, w.up.subarray(l * D * F, (l + 1) * D * F), 0, u);
    const m = new Float64Array(BT * D);
    ref.gemm(false, false, BT, D, F, 1, ref.gelu(u), w.down.subarray(l * F * D, (l + 1) * F * D), 0, m);
    h = h.map((x, i) => x + m[i]);
  }
  const logits = new Float64Array(BT * V);
  ref.gemm(false, true, BT, V, D, 1, ref.rmsnorm(h, BT, D).y, w.embed_out, 0, logits);
  return logits;
}

describe('float64 gpt forward (helpers/gpt64)', () => {
  const cfg: Gpt64Config = { D: 24, L: 2, H: 6, V: 29 };
  const rng = new Rng(8);
  const w = weightsTo64(randomGptWeights(cfg, () => rng.normal()));

  it('agrees with a composition of the kernel references', () => {
    const B = 2, T = 7;
    const tokens = ref.randInts(rng, B * T, cfg.V);
    const a = gpt64Forward(cfg, w, tokens, B, T);
    const b = composedForward(cfg, w, tokens, B, T);
    assert.ok(relErr(a, b) < 1e-12, `gpt64 vs composed ${relErr(a, b)}`);
  });

  it('is causal: changing a later token leaves earlier logits unchanged', () => {
    const T = 6;
    const tokens = ref.randInts(rng, T, cfg.V);
    const a = gpt64Forward(cfg, w, tokens, 1, T);
    const changed = Int32Array.from(tokens);
    changed[4] = (changed[4] + 1) % cfg.V;
    const b = gpt64Forward(cfg, w, changed, 1, T);
    for (let i = 0; i < 4 * cfg.V; i++) assert.equal(a[i], b[i]);
    assert.ok(relErr(a.subarray(4 * cfg.V), b.subarray(4 * cfg.V)) > 1e-3, 'logits from position 4 on do change');
  });

  it('with L = 0 is RMSNorm(embed_in[x]) · embed_outᵀ', () => {
    const c0: Gpt64Config = { ...cfg, L: 0 };
    const s = gptShapes(c0);
    assert.deepEqual(s.qkv, [0, 3, 4, 24, 6]);
    const w0: Gpt64Weights = { ...w, qkv: new Float64Array(0), out: new Float64Array(0), up: new Float64Array(0), down: new Float64Array(0) };
    const tokens = Int32Array.of(3, 28);
    const logits = gpt64Forward(c0, w0, tokens, 1, 2);
    const e = ref.rmsnorm(ref.embeddingForward(w.embed_in, tokens, 2, cfg.V, cfg.D), 2, cfg.D).y;
    const expected = new Float64Array(2 * cfg.V);
    ref.gemm(false, true, 2, cfg.V, cfg.D, 1, e, w.embed_out, 0, expected);
    assert.ok(relErr(logits, expected) < 1e-14);
  });

  it('initial weights have the scales of docs/contract.md §1', () => {
    const big: Gpt64Config = { D: 64, L: 1, H: 16, V: 50 };
    const r = new Rng(9);
    const wb = randomGptWeights(big, () => r.normal());
    const std = (a: Float32Array) => Math.sqrt(dot(a, a) / a.length);
    assert.ok(Math.abs(std(wb.qkv) - 1 / 8) < 0.01);
    assert.ok(Math.abs(std(wb.down) - 1 / 16) < 0.005);
    assert.ok(to64(wb.embed_in).length === 50 * 64);
  });
});
