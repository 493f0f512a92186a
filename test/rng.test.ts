import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Rng } from '../src/util/rng.js';

/** Independent xoshiro128** reference in BigInt arithmetic (Blackman & Vigna's C code, transcribed). */
function referenceXoshiro(state: [number, number, number, number], count: number): number[] {
  const M = 0xffffffffn;
  let [s0, s1, s2, s3] = state.map(BigInt) as [bigint, bigint, bigint, bigint];
  const rotl = (x: bigint, k: bigint): bigint => ((x << k) | (x >> (32n - k))) & M;
  const out: number[] = [];
  for (let i = 0; i < count; i++) {
    out.push(Number((rotl((s1 * 5n) & M, 7n) * 9n) & M));
    const t = (s1 << 9n) & M;
    s2 ^= s0;
    s3 ^= s1;
    s1 ^= s2;
    s0 ^= s3;
    s2 ^= t;
    s3 = rotl(s3, 11n);
  }
  return out;
}

function meanVar(xs: ArrayLike<number>): { mean: number; variance: number } {
  let s = 0;
  for (let i = 0; i < xs.length; i++) s += xs[i]!;
  const mean = s / xs.length;
  let v = 0;
  for (let i = 0; i < xs.length; i++) v += (xs[i]! - mean) ** 2;
  return { mean, variance: v / xs.length };
}

test('the core generator matches a BigInt reference of xoshiro128**', () => {
  for (const state of [
    [1, 2, 3, 4],
    [0xdeadbeef, 0x12345678, 0xffffffff, 0x80000000],
  ] as [number, number, number, number][]) {
    const rng = Rng.fromState(state);
    const got = Array.from({ length: 100 }, () => rng.nextU32());
    assert.deepEqual(got, referenceXoshiro(state, 100));
  }
  // First output for state {1,2,3,4}, by hand: rotl(2*5, 7) * 9 = 1280 * 9.
  assert.equal(Rng.fromState([1, 2, 3, 4]).nextU32(), 11520);
});

test('fromState rejects the all-zero state; state() resumes the stream', () => {
  assert.throws(() => Rng.fromState([0, 0, 0, 0]), RangeError);
  const a = new Rng(7);
  for (let i = 0; i < 10; i++) a.nextU32();
  const b = Rng.fromState(a.state());
  for (let i = 0; i < 20; i++) assert.equal(b.nextU32(), a.nextU32());
});

test('same seed gives the same streams; different seeds differ', () => {
  const draw = (seed: number): number[] => {
    const r = new Rng(seed);
    return [r.nextU32(), r.uniform(), r.normal(), r.normal(), r.int(1000), r.nextU32()];
  };
  assert.deepEqual(draw(42), draw(42));
  assert.notDeepEqual(draw(42), draw(43));
  assert.notDeepEqual(draw(0), draw(1));
  // The full 53-bit seed matters (not only its low 32 bits), and negative seeds are distinct.
  assert.notDeepEqual(draw(5), draw(5 + 2 ** 32));
  assert.notDeepEqual(draw(-1), draw(2 ** 32 - 1));
  assert.deepEqual(draw(Number.MAX_SAFE_INTEGER), draw(Number.MAX_SAFE_INTEGER));
});

test('invalid seeds are rejected', () => {
  for (const s of [1.5, NaN, Infinity, 2 ** 53]) assert.throws(() => new Rng(s), RangeError, String(s));
});

test('nearby seeds give uncorrelated streams', () => {
  const a = new Rng(0);
  const b = new Rng(1);
  const n = 100_000;
  let sab = 0;
  for (let i = 0; i < n; i++) sab += (a.uniform() - 0.5) * (b.uniform() - 0.5);
  const corr = sab / n / (1 / 12);
  assert.ok(Math.abs(corr) < 0.02, `correlation ${corr}`);
});

test('uniform is in [0,1) with mean 1/2, variance 1/12 and 53 random bits', () => {
  const r = new Rng(123);
  const xs = new Float64Array(200_000);
  let lowBitsUsed = 0;
  for (let i = 0; i < xs.length; i++) {
    const u = r.uniform();
    assert.ok(u >= 0 && u < 1);
    xs[i] = u;
    const k = u * 2 ** 53;
    assert.ok(Number.isInteger(k));
    if (k % 2 ** 21 !== 0) lowBitsUsed++; // would be 0 with a 32-bit uniform
  }
  const { mean, variance } = meanVar(xs);
  assert.ok(Math.abs(mean - 0.5) < 0.005, `mean ${mean}`);
  assert.ok(Math.abs(variance - 1 / 12) < 0.002, `variance ${variance}`);
  assert.ok(lowBitsUsed > xs.length * 0.99);
});

test('normal is standard normal and Box–Muller pairs share one uniform pair', () => {
  const r = new Rng(9);
  const xs = new Float64Array(200_000);
  for (let i = 0; i < xs.length; i++) xs[i] = r.normal();
  const { mean, variance } = meanVar(xs);
  assert.ok(Math.abs(mean) < 0.01, `mean ${mean}`);
  assert.ok(Math.abs(variance - 1) < 0.02, `variance ${variance}`);
  let m4 = 0;
  for (const x of xs) m4 += x ** 4;
  assert.ok(Math.abs(m4 / xs.length - 3) < 0.1, `kurtosis ${m4 / xs.length}`);

  // The two variates of a pair follow the Box–Muller formulas from the same two uniforms.
  const a = new Rng(77);
  const b = a.clone();
  const u1 = 1 - b.uniform();
  const u2 = b.uniform();
  const rad = Math.sqrt(-2 * Math.log(u1));
  assert.equal(a.normal(), rad * Math.cos(2 * Math.PI * u2));
  assert.equal(a.normal(), rad * Math.sin(2 * Math.PI * u2));
  // ...and the third draws fresh uniforms.
  assert.equal(a.nextU32(), b.nextU32());
});

test('int is unbiased, including where naive modulo is badly biased', () => {
  const r = new Rng(5);
  const counts = new Array(6).fill(0);
  const n = 60_000;
  for (let i = 0; i < n; i++) counts[r.int(6)]++;
  let chi2 = 0;
  for (const c of counts) chi2 += (c - n / 6) ** 2 / (n / 6);
  assert.ok(chi2 < 25, `chi2 ${chi2} for ${counts}`); // 5 dof: p ≈ 1e-4

  // n = 3·2^30: `u32 % n` would put half the mass below 2^30 instead of a third.
  const big = 3 * 2 ** 30;
  let below = 0;
  for (let i = 0; i < 30_000; i++) {
    const x = r.int(big);
    assert.ok(x >= 0 && x < big && Number.isInteger(x));
    if (x < 2 ** 30) below++;
  }
  assert.ok(Math.abs(below / 30_000 - 1 / 3) < 0.02, `share below 2^30: ${below / 30_000}`);

  // Beyond 32 bits: n = 3·2^50, same check.
  const huge = 3 * 2 ** 50;
  below = 0;
  for (let i = 0; i < 30_000; i++) {
    const x = r.int(huge);
    assert.ok(x >= 0 && x < huge && Number.isInteger(x));
    if (x < 2 ** 50) below++;
  }
  assert.ok(Math.abs(below / 30_000 - 1 / 3) < 0.02, `share below 2^50: ${below / 30_000}`);

  for (let i = 0; i < 100; i++) assert.equal(r.int(1), 0);
  assert.ok(r.int(2 ** 32) < 2 ** 32);
  assert.ok(r.int(2 ** 53) < 2 ** 53);
});

test('int rejects invalid bounds', () => {
  const r = new Rng(0);
  for (const n of [0, -1, 1.5, NaN, Infinity, 2 ** 53 + 2]) assert.throws(() => r.int(n), RangeError, String(n));
});

test('shuffle is an in-place permutation, deterministic and uniform', () => {
  const arr = Array.from({ length: 50 }, (_, i) => `x${i}`);
  const shuffled = new Rng(1).shuffle([...arr]);
  assert.deepEqual([...shuffled].sort(), [...arr].sort());
  assert.notDeepEqual(shuffled, arr);
  assert.deepEqual(new Rng(1).shuffle([...arr]), shuffled);

  const ta = new Int32Array([5, 6, 7, 8]);
  const ret = new Rng(2).shuffle(ta);
  assert.equal(ret, ta); // same object, in place
  assert.deepEqual([...ta].sort(), [5, 6, 7, 8]);
  assert.deepEqual(new Rng(3).shuffle([]), []);
  assert.deepEqual(new Rng(3).shuffle([1]), [1]);

  // All 6 orders of 3 elements equally likely.
  const r = new Rng(11);
  const counts = new Map<string, number>();
  const n = 60_000;
  for (let i = 0; i < n; i++) {
    const k = r.shuffle([0, 1, 2]).join('');
    counts.set(k, (counts.get(k) ?? 0) + 1);
  }
  assert.equal(counts.size, 6);
  for (const [k, c] of counts) assert.ok(Math.abs(c / n - 1 / 6) < 0.01, `${k}: ${c}`);
});

test('permutation contains each index once', () => {
  const p = new Rng(4).permutation(1000);
  assert.ok(p instanceof Int32Array);
  assert.deepEqual([...p].sort((a, b) => a - b), Array.from({ length: 1000 }, (_, i) => i));
  assert.equal(new Rng(4).permutation(0).length, 0);
  assert.deepEqual(new Rng(4).permutation(1000), p);
  assert.throws(() => new Rng(4).permutation(-1), RangeError);
  assert.throws(() => new Rng(4).permutation(2.5), RangeError);
});

test('fork derives independent, position-independent streams from seed and tag', () => {
  const firstN = (r: Rng): number[] => Array.from({ length: 8 }, () => r.nextU32());
  const parent = new Rng(10);
  const f1 = firstN(parent.fork(1));
  for (let i = 0; i < 100; i++) parent.nextU32();
  assert.deepEqual(firstN(parent.fork(1)), f1, 'fork must not depend on draws');
  assert.deepEqual(firstN(new Rng(10).fork(1)), f1);
  assert.notDeepEqual(firstN(new Rng(10).fork(2)), f1);
  assert.notDeepEqual(firstN(new Rng(10).fork('1')), f1, 'numeric and string tags are separate');
  assert.notDeepEqual(firstN(new Rng(11).fork(1)), f1, 'fork depends on the seed');
  assert.notDeepEqual(firstN(new Rng(10)), f1, 'fork differs from the parent stream');
  assert.deepEqual(firstN(new Rng(10).fork('init')), firstN(new Rng(10).fork('init')));
  assert.notDeepEqual(firstN(new Rng(10).fork('init')), firstN(new Rng(10).fork('inif')));
  assert.notDeepEqual(firstN(new Rng(10).fork('')), firstN(new Rng(10).fork('\0')));
  // Nested forks are deterministic and distinct from single forks.
  assert.deepEqual(firstN(new Rng(10).fork('a').fork(3)), firstN(new Rng(10).fork('a').fork(3)));
  assert.notDeepEqual(firstN(new Rng(10).fork('a').fork(3)), firstN(new Rng(10).fork(3)));
  assert.notDeepEqual(firstN(new Rng(10).fork(-1)), firstN(new Rng(10).fork(2 ** 32 - 1)));
  assert.throws(() => new Rng(0).fork(0.5), RangeError);
});

test('clone copies the cached normal too', () => {
  const a = new Rng(3);
  a.normal(); // leaves the partner cached
  const b = a.clone();
  assert.equal(b.normal(), a.normal());
  assert.equal(b.nextU32(), a.nextU32());
});

test('fillNormal scales by std; fillUniform fills [0,1)', () => {
  const r = new Rng(21);
  const x = r.fillNormal(new Float32Array(100_000), 3);
  const { mean, variance } = meanVar(x);
  assert.ok(Math.abs(mean) < 0.03, `mean ${mean}`);
  assert.ok(Math.abs(variance - 9) < 0.2, `variance ${variance}`);
  const d = new Rng(21).fillNormal(new Float64Array(4));
  assert.deepEqual([...d], (() => { const q = new Rng(21); return [q.normal(), q.normal(), q.normal(), q.normal()]; })());

  const u = r.fillUniform(new Float64Array(100_000));
  assert.ok(u.every((v) => v >= 0 && v < 1));
  assert.ok(Math.abs(meanVar(u).mean - 0.5) < 0.01);
  const f = r.fillUniform(new Float32Array(100_000));
  assert.ok(f.every((v) => v >= 0 && v < 1));
  assert.ok(Math.abs(meanVar(f).mean - 0.5) < 0.01);
});
