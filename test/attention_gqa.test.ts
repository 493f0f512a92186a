/**
 * Grouped-query attention in the native kernels (Nkv key/value heads shared by groups of N/Nkv query heads; qkv
 * rows [N·H q | Nkv·H k | Nkv·H v]): forward and log-sum-exp against the float64 reference, the backward against
 * the reference's gradient and against central differences, decoding with a KV cache of Nkv heads against the
 * training forward, each with 1 and 2 threads (whose results must agree bit for bit: every sum has a fixed order),
 * and the bindings' checks of the new argument. The reference itself is checked first, against multi-head
 * attention with every key/value head repeated for its query heads.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { native } from '../src/backend/native.js';
import * as ref from './helpers/ref.js';
import { Rng, randn32, relErr, to64, dot, finiteDiff, pickCoords, gather, maxAbs } from './helpers/ref.js';
import type { F64 } from './helpers/ref.js';

const nk = native();
const defaultThreads = nk.getNumThreads();

const FWD_TOL = 1e-5; // float32 kernel vs float64, max|a−b| / max|b|
const GRAD_TOL = 1e-3; // float32 analytic gradient vs float64 central differences
const REF_GRAD_TOL = 1e-7; // float64 formulas vs float64 central differences (h = 1e-5)

function expectClose(what: string, actual: ArrayLike<number>, expected: ArrayLike<number>, tol = FWD_TOL): void {
  assert.equal(actual.length, expected.length, `${what}: length ${actual.length} vs ${expected.length}`);
  const e = relErr(actual, expected);
  assert.ok(e <= tol, `${what}: max|a-b|/max|b| = ${e.toExponential(3)} > ${tol} (max|b| = ${maxAbs(expected).toExponential(3)})`);
}

function expectSameBits(what: string, a: Float32Array, b: Float32Array): void {
  assert.equal(a.length, b.length, `${what}: length ${a.length} vs ${b.length}`);
  const x = new Uint32Array(a.buffer, a.byteOffset, a.length), y = new Uint32Array(b.buffer, b.byteOffset, b.length);
  for (let i = 0; i < x.length; i++) assert.ok(x[i] === y[i], `${what}: element ${i} is ${a[i]} vs ${b[i]}`);
}

/** Central differences of f at some coordinates of x against the gradient g at the same coordinates. */
function expectGradFd(what: string, g: ArrayLike<number>, f: (x: F64) => number, x: ArrayLike<number>, rng: Rng,
                      maxCoords: number, tol: number): void {
  const x64 = to64(x);
  const coords = pickCoords(rng, x64.length, maxCoords);
  const e = relErr(gather(g, coords), finiteDiff(f, x64, coords));
  assert.ok(e <= tol, `${what}: gradient vs central differences, rel err ${e.toExponential(3)} > ${tol}`);
}

/** The multi-head qkv [B, T, 3, N, H] in which query head n gets its own copy of key/value head n / (N/Nkv). */
function repeatKv(qkv: ArrayLike<number>, B: number, T: number, N: number, H: number, Nkv: number): Float64Array {
  const row = (N + 2 * Nkv) * H, group = N / Nkv;
  const out = new Float64Array(B * T * 3 * N * H);
  for (let bt = 0; bt < B * T; bt++) {
    for (let n = 0; n < N; n++) {
      const kv = Math.floor(n / group);
      for (let i = 0; i < H; i++) {
        out[(bt * 3 + 0) * N * H + n * H + i] = qkv[bt * row + n * H + i];
        out[(bt * 3 + 1) * N * H + n * H + i] = qkv[bt * row + N * H + kv * H + i];
        out[(bt * 3 + 2) * N * H + n * H + i] = qkv[bt * row + (N + Nkv) * H + kv * H + i];
      }
    }
  }
  return out;
}

/** Runs fn once with 1 thread and once with 2, and returns both results. */
function withThreads<R>(fn: () => R): [R, R] {
  try {
    nk.setNumThreads(1);
    const one = fn();
    nk.setNumThreads(2);
    return [one, fn()];
  } finally {
    nk.setNumThreads(defaultThreads);
  }
}

describe('float64 reference with grouped key/value heads', () => {
  it('equals multi-head attention with each key/value head repeated for its query heads', () => {
    const rng = new Rng(900);
    for (const [B, T, N, Nkv, H] of [[2, 5, 6, 2, 3], [1, 4, 3, 1, 5], [2, 3, 4, 4, 2]]) {
      const qkv = to64(randn32(rng, B * T * (N + 2 * Nkv) * H));
      const gqa = ref.attention(qkv, B, T, N, H, Nkv), mha = ref.attention(repeatKv(qkv, B, T, N, H, Nkv), B, T, N, H);
      assert.ok(relErr(gqa.out, mha.out) < 1e-15, `out N=${N} Nkv=${Nkv}`);
      assert.ok(relErr(gqa.lse, mha.lse) < 1e-15, `lse N=${N} Nkv=${Nkv}`);
    }
  });

  it('gradient formulas agree with central differences; a key/value head collects its query heads\' gradients', () => {
    const rng = new Rng(901);
    for (const [B, T, N, Nkv, H] of [[2, 5, 6, 2, 3], [1, 6, 3, 1, 4], [1, 4, 2, 2, 3]]) {
      const row = (N + 2 * Nkv) * H;
      const qkv = to64(randn32(rng, B * T * row));
      const dout = to64(randn32(rng, B * T * N * H));
      const g = ref.attentionBackward(qkv, dout, B, T, N, H, Nkv);
      expectGradFd(`reference gradient N=${N} Nkv=${Nkv}`, g, (x) => dot(dout, ref.attention(x, B, T, N, H, Nkv).out),
        qkv, rng, 1000, REF_GRAD_TOL);
      // the multi-head gradient of the repeated qkv, summed over each group, is the grouped gradient
      const gm = ref.attentionBackward(repeatKv(qkv, B, T, N, H, Nkv), dout, B, T, N, H);
      const summed = new Float64Array(g.length);
      for (let bt = 0; bt < B * T; bt++) {
        for (let n = 0; n < N; n++) {
          const kv = Math.floor(n / (N / Nkv));
          for (let i = 0; i < H; i++) {
            summed[bt * row + n * H + i] += gm[(bt * 3 + 0) * N * H + n * H + i];
            summed[bt * row + N * H + kv * H + i] += gm[(bt * 3 + 1) * N * H + n * H + i];
            summed[bt * row + (N + Nkv) * H + kv * H + i] += gm[(bt * 3 + 2) * N * H + n * H + i];
          }
        }
      }
      assert.ok(relErr(g, summed) < 1e-13, `grouped gradient vs summed multi-head gradient N=${N} Nkv=${Nkv}`);
    }
  });
});

describe('grouped-query attention kernels', () => {
  before(() => nk.setNumThreads(1));
  after(() => nk.setNumThreads(defaultThreads));

  // H = 16 with T ≤ 16 takes the single-vector head kernel forward (backward: the general path), H = 24 the scalar
  // row helpers, H = 64 the vector ones; T = 130 crosses many 8-row blocks and ragged 16/32-wide column blocks.
  for (const [N, Nkv] of [[3, 1], [8, 2], [4, 4], [6, 2]]) {
    for (const H of [16, 24, 64]) {
      it(`forward, lse and written backward against float64, N=${N} Nkv=${Nkv} H=${H}, T in {1, 7, 33, 130}, B in {1, 2}`, () => {
        for (const T of [1, 7, 33, 130]) {
          for (const B of T > 100 ? [1] : [1, 2]) {
            const rng = new Rng(910 + N * 7 + Nkv * 31 + H * 101 + T * 1009 + B * 10007);
            const shape = `B=${B} T=${T} N=${N} Nkv=${Nkv} H=${H}`;
            const qkv = randn32(rng, B * T * (N + 2 * Nkv) * H, 1.3);
            const dout = randn32(rng, B * T * N * H);
            const r = ref.attention(qkv, B, T, N, H, Nkv);
            const g = ref.attentionBackward(qkv, dout, B, T, N, H, Nkv);
            const runs = withThreads(() => {
              const out = new Float32Array(B * T * N * H).fill(NaN), lse = new Float32Array(B * N * T).fill(NaN);
              nk.attentionForward(out, lse, qkv, B, T, N, H, null, Nkv);
              const dqkv = new Float32Array(qkv.length).fill(-5);
              nk.attentionBackward(dqkv, dout, lse, qkv, B, T, N, H, null, Nkv);
              const inPlace = Float32Array.from(qkv);
              nk.attentionBackward(inPlace, dout, lse, inPlace, B, T, N, H, null, Nkv);
              return { out, lse, dqkv, inPlace };
            });
            for (const [t, run] of runs.entries()) {
              expectClose(`out ${shape} (${t + 1} thread${t ? 's' : ''})`, run.out, r.out);
              expectClose(`lse ${shape}`, run.lse, r.lse);
              expectClose(`dqkv ${shape}`, run.dqkv, g, 2e-5);
              expectSameBits(`dqkv written over qkv ${shape}`, run.inPlace, run.dqkv);
            }
            for (const key of ['out', 'lse', 'dqkv'] as const) expectSameBits(`${key} 1 vs 2 threads ${shape}`, runs[0][key], runs[1][key]);
          }
        }
      });
    }
  }

  for (const [B, T, N, Nkv, H] of [[2, 7, 6, 2, 24], [1, 33, 8, 2, 16], [2, 9, 3, 1, 64], [1, 12, 9, 3, 64]]) {
    it(`backward against central differences of the float64 forward B=${B} T=${T} N=${N} Nkv=${Nkv} H=${H}`, () => {
      const rng = new Rng(950 + B + T * 10 + N * 100 + Nkv * 1000 + H);
      const qkv = randn32(rng, B * T * (N + 2 * Nkv) * H, 1.3);
      const dout = randn32(rng, B * T * N * H);
      const out = new Float32Array(B * T * N * H), lse = new Float32Array(B * N * T);
      for (const threads of [1, 2]) {
        nk.setNumThreads(threads);
        nk.attentionForward(out, lse, qkv, B, T, N, H, undefined, Nkv);
        const dqkv = new Float32Array(qkv.length);
        nk.attentionBackward(dqkv, dout, lse, qkv, B, T, N, H, undefined, Nkv);
        expectGradFd(`dqkv (${threads} threads)`, dqkv, (x) => dot(dout, ref.attention(x, B, T, N, H, Nkv).out), qkv,
          rng, 150, GRAD_TOL);
      }
    });
  }

  it('a grouped forward equals the multi-head forward with the key/value heads repeated; dk, dv are the group sums', () => {
    const rng = new Rng(960);
    const B = 2, T = 21, N = 8, Nkv = 2, H = 32, row = (N + 2 * Nkv) * H;
    const qkv = randn32(rng, B * T * row), dout = randn32(rng, B * T * N * H);
    const rep = Float32Array.from(repeatKv(qkv, B, T, N, H, Nkv));
    const out = new Float32Array(B * T * N * H), lse = new Float32Array(B * N * T);
    const outM = new Float32Array(B * T * N * H), lseM = new Float32Array(B * N * T);
    nk.attentionForward(out, lse, qkv, B, T, N, H, null, Nkv);
    nk.attentionForward(outM, lseM, rep, B, T, N, H);
    expectClose('grouped vs repeated out', out, outM, 1e-6);
    expectClose('grouped vs repeated lse', lse, lseM, 1e-6);
    const d = new Float32Array(qkv.length), dM = new Float32Array(rep.length);
    nk.attentionBackward(d, dout, lse, qkv, B, T, N, H, null, Nkv);
    nk.attentionBackward(dM, dout, lseM, rep, B, T, N, H);
    const summed = new Float64Array(d.length);
    for (let bt = 0; bt < B * T; bt++) {
      for (let n = 0; n < N; n++) {
        const kv = Math.floor(n / (N / Nkv));
        for (let i = 0; i < H; i++) {
          summed[bt * row + n * H + i] += dM[(bt * 3 + 0) * N * H + n * H + i];
          summed[bt * row + N * H + kv * H + i] += dM[(bt * 3 + 1) * N * H + n * H + i];
          summed[bt * row + (N + Nkv) * H + kv * H + i] += dM[(bt * 3 + 2) * N * H + n * H + i];
        }
      }
    }
    expectClose('grouped dqkv vs summed multi-head dqkv', d, summed, 1e-6);
  });

  // H = 24: the generic row; H = 16, 64, 128: the grouped vector kernel, whose 8 KB row blocks (128, 32 and 16
  // rows) are crossed at T = 130, 33 and 20; Nkv = N through the explicit argument; N = 32/Nkv = 8 as in Llama 3.2 1B.
  for (const [B, T, N, Nkv, H, Tmax] of [[2, 7, 6, 2, 24, 9], [2, 33, 8, 2, 64, 40], [1, 130, 3, 1, 16, 130],
    [2, 20, 4, 2, 128, 21], [3, 9, 9, 3, 64, 12], [2, 6, 4, 4, 16, 6], [1, 11, 32, 8, 64, 11]]) {
    it(`decoding one position at a time and in chunks equals the training forward B=${B} T=${T} N=${N} Nkv=${Nkv} H=${H}`, () => {
      const rng = new Rng(970 + B + T * 10 + N * 100 + Nkv * 1000 + H * 7);
      const row = (N + 2 * Nkv) * H, Dkv = Nkv * H;
      const qkv = randn32(rng, B * T * row);
      const full = new Float32Array(B * T * N * H);
      nk.attentionForward(full, new Float32Array(B * N * T), qkv, B, T, N, H, null, Nkv);
      // rows [t0, t0 + n) of each sequence of a [B, T, width] array, as [B, n, width]
      const rows = (a: Float32Array, width: number, t0: number, n: number) => {
        const r = new Float32Array(B * n * width);
        for (let b = 0; b < B; b++) r.set(a.subarray((b * T + t0) * width, (b * T + t0 + n) * width), b * n * width);
        return r;
      };
      // one position at a time; chunks of 1, 4, 2, then the rest (as far as T reaches); all T at once
      const uneven: number[] = [];
      for (const n of [1, 4, 2, T]) {
        const done = uneven.reduce((a, c) => a + c, 0);
        if (done < T) uneven.push(Math.min(n, T - done));
      }
      const chunkings = [Array<number>(T).fill(1), uneven, [T]];
      for (const chunks of chunkings) {
        const runs = withThreads(() => {
          // every row past the ones written so far is NaN, which must never be read
          const kc = new Float32Array(B * Tmax * Dkv).fill(NaN), vc = new Float32Array(B * Tmax * Dkv).fill(NaN);
          const outs: Float32Array[] = [];
          let pos0 = 0;
          for (const Tq of chunks) {
            const q = rows(qkv, row, pos0, Tq);
            const out = new Float32Array(B * Tq * N * H).fill(NaN);
            nk.attentionDecode(out, q, kc, vc, B, Tq, N, H, Tmax, pos0, Nkv);
            const cases = `chunks [${chunks.length > 8 ? '1 × ' + chunks.length : chunks}] pos0=${pos0} Tq=${Tq}`;
            expectClose(`decode vs training forward, ${cases}`, out, rows(full, N * H, pos0, Tq));
            expectClose(`decode vs float64 decode, ${cases}`, out, ref.attentionDecode(q, kc, vc, B, Tq, N, H, Tmax, pos0, Nkv));
            outs.push(out);
            pos0 += Tq;
          }
          // the caches now hold k and v of every position, exactly, and nothing past them
          for (let b = 0; b < B; b++) {
            for (let t = 0; t < Tmax; t++) {
              for (let i = 0; i < Dkv; i++) {
                const at = (b * Tmax + t) * Dkv + i, src = (b * T + t) * row + N * H + i;
                assert.ok(Object.is(kc[at], t < T ? qkv[src] : NaN), `k cache b=${b} t=${t} i=${i}`);
                assert.ok(Object.is(vc[at], t < T ? qkv[src + Dkv] : NaN), `v cache b=${b} t=${t} i=${i}`);
              }
            }
          }
          return outs;
        });
        runs[0].forEach((o, i) => expectSameBits(`decode chunk ${i}, 1 vs 2 threads`, o, runs[1][i]!));
      }
    });
  }

  it('the bindings check Nkv, qkRstd with grouping, and every length in the grouped layout', () => {
    const B = 2, T = 3, N = 6, Nkv = 2, H = 4, row = (N + 2 * Nkv) * H, Tmax = 5;
    const qkv = new Float32Array(B * T * row), out = new Float32Array(B * T * N * H), lse = new Float32Array(B * N * T);
    const d = new Float32Array(qkv.length), rstd = new Float32Array(B * T * 2 * N);
    assert.throws(() => nk.attentionForward(out, lse, qkv, B, T, N, H, null, 0),
      /^TypeError: attentionForward: argument 8 \(Nkv, key\/value heads\) must be >= 1$/);
    assert.throws(() => nk.attentionForward(out, lse, qkv, B, T, N, H, null, 4),
      /^TypeError: attentionForward: argument 8 \(Nkv, key\/value heads\) must divide N = 6, got 4$/);
    assert.throws(() => nk.attentionForward(out, lse, qkv, B, T, N, H, null, 1.5), /attentionForward: argument 8 must be an int32/);
    assert.throws(() => nk.attentionForward(out, lse, qkv, B, T, N, H, null, -2), /attentionForward: argument 8 must be >= 0/);
    assert.throws(() => nk.attentionBackward(d, out, lse, qkv, B, T, N, H, null, 4),
      /attentionBackward: argument 9 \(Nkv, key\/value heads\) must divide N = 6, got 4/);
    assert.throws(() => nk.attentionDecode(out, qkv, new Float32Array(B * Tmax * Nkv * H), new Float32Array(B * Tmax * Nkv * H),
      B, T, N, H, Tmax, 0, 0), /attentionDecode: argument 10 \(Nkv, key\/value heads\) must be >= 1/);
    // q and k normalised inside only without grouping
    assert.throws(() => nk.attentionForward(out, lse, qkv, B, T, N, H, rstd, Nkv),
      /attentionForward: argument 7 \(qkRstd\) needs Nkv == N .*got N = 6, Nkv = 2/);
    assert.throws(() => nk.attentionBackward(d, out, lse, qkv, B, T, N, H, rstd, Nkv),
      /attentionBackward: argument 8 \(qkRstd\) needs Nkv == N/);
    // lengths: qkv and dqkv rows of (N + 2·Nkv)·H; caches [B, Tmax, Nkv, H]
    const short = new Float32Array(B * T * row - 1);
    assert.throws(() => nk.attentionForward(out, lse, short, B, T, N, H, null, Nkv),
      new RegExp(`attentionForward: argument 2 has ${short.length} elements, needs ${B * T * row}$`));
    assert.throws(() => nk.attentionForward(out, lse, qkv, B, T, N, H, null, 3),
      new RegExp(`attentionForward: argument 2 has ${qkv.length} elements, needs ${B * T * (N + 6) * H}$`));
    assert.throws(() => nk.attentionBackward(short, out, lse, qkv, B, T, N, H, null, Nkv),
      new RegExp(`attentionBackward: argument 0 has ${short.length} elements, needs ${B * T * row}$`));
    assert.throws(() => nk.attentionBackward(d, out, lse, short, B, T, N, H, null, Nkv),
      new RegExp(`attentionBackward: argument 3 has ${short.length} elements, needs ${B * T * row}$`));
    const cache = new Float32Array(B * Tmax * Nkv * H), shortCache = new Float32Array(B * Tmax * Nkv * H - 1);
    assert.throws(() => nk.attentionDecode(out, qkv, shortCache, cache, B, T, N, H, Tmax, 0, Nkv),
      new RegExp(`attentionDecode: argument 2 has ${shortCache.length} elements, needs ${cache.length}$`));
    assert.throws(() => nk.attentionDecode(out, qkv, cache, shortCache, B, T, N, H, Tmax, 0, Nkv),
      new RegExp(`attentionDecode: argument 3 has ${shortCache.length} elements, needs ${cache.length}$`));
    assert.throws(() => nk.attentionDecode(out, short, cache, cache, B, T, N, H, Tmax, 0, Nkv),
      new RegExp(`attentionDecode: argument 1 has ${short.length} elements, needs ${B * T * row}$`));
    // exact lengths pass; Nkv left out (undefined or null) means N, which needs the longer multi-head rows
    nk.attentionForward(out, lse, qkv, B, T, N, H, null, Nkv);
    nk.attentionDecode(out, qkv, cache, cache.slice(), B, T, N, H, Tmax, 0, Nkv);
    assert.throws(() => nk.attentionForward(out, lse, qkv, B, T, N, H, null, undefined),
      new RegExp(`attentionForward: argument 2 has ${qkv.length} elements, needs ${B * T * 3 * N * H}$`));
    const mhaCache = new Float32Array(B * Tmax * N * H);
    assert.throws(() => nk.attentionDecode(out, qkv, mhaCache, mhaCache, B, T, N, H, Tmax, 0, null as unknown as undefined),
      new RegExp(`attentionDecode: argument 1 has ${qkv.length} elements, needs ${B * T * 3 * N * H}$`));
  });
});
