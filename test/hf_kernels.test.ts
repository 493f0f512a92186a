/**
 * The Hugging Face family's kernels (native/hf_kernels.cc, top-p in sampleRows) against the float64 references of
 * test/helpers/ref.ts: forwards within float32 rounding; backwards against the reference's gradient and against
 * central finite differences of the reference forward, projected on a random upstream gradient; half-precision
 * conversions exactly, over every bit pattern; products on a half B against a float64 product and against gemm on
 * the widened B. Odd shapes, NaN placements and aliasing; the whole suite with 1 thread and with 2.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { native } from '../src/backend/native.js';
import { ropeInvFreq } from '../src/model/arch.js';
import * as ref from './helpers/ref.js';
import { Rng, randn32, relErr, to64, dot, finiteDiff, pickCoords, gather, maxAbs } from './helpers/ref.js';
import type { F64 } from './helpers/ref.js';

const nk = native();

const FWD_TOL = 1e-5;
const GRAD_TOL = 1e-3;

function expectClose(what: string, actual: ArrayLike<number>, expected: ArrayLike<number>, tol = FWD_TOL): void {
  assert.equal(actual.length, expected.length, `${what}: length ${actual.length} vs ${expected.length}`);
  const e = relErr(actual, expected);
  assert.ok(e <= tol, `${what}: max|a-b|/max|b| = ${e.toExponential(3)} > ${tol} (max|b| = ${maxAbs(expected).toExponential(3)})`);
}

/** Analytic gradient vs central differences of f at (up to maxCoords) coordinates of x. */
function expectFd(what: string, analytic: ArrayLike<number>, f: (x: F64) => number, x: ArrayLike<number>, rng: Rng,
                  maxCoords = 200): void {
  const x64 = to64(x);
  assert.equal(analytic.length, x64.length, `${what}: gradient length ${analytic.length} vs input ${x64.length}`);
  const coords = pickCoords(rng, x64.length, maxCoords);
  const fd = finiteDiff(f, x64, coords);
  const e = relErr(gather(analytic, coords), fd);
  assert.ok(e <= GRAD_TOL, `${what}: analytic vs finite-difference gradient rel err ${e.toExponential(3)} > ${GRAD_TOL}`);
}

function sameBits(what: string, a: Float32Array | Uint16Array, b: Float32Array | Uint16Array): void {
  assert.equal(a.length, b.length, `${what}: lengths`);
  const ua = new Uint8Array(a.buffer, a.byteOffset, a.byteLength), ub = new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
  for (let i = 0; i < ua.length; i++) if (ua[i] !== ub[i]) assert.fail(`${what}: differ at byte ${i}`);
}

function sub(a: ArrayLike<number>, b: ArrayLike<number>): F64 {
  return Float64Array.from(a, (v, i) => v - b[i]);
}

// |C − C64| / (|alpha|·Σ_k|a·b| + |beta·c|) per element, worst (NaN: Infinity).
function scaledErr(C: ArrayLike<number>, ref64: F64, scale: F64): number {
  let worst = 0;
  for (let i = 0; i < C.length; i++) {
    const e = Math.abs(C[i] - ref64[i]) / scale[i];
    if (!(e <= worst)) worst = Number.isNaN(e) ? Infinity : e;
  }
  return worst;
}

/** Random half patterns of normal values around ±scale (no NaN, no inf): from float32 normals, narrowed. */
function randHalf(rng: Rng, n: number, kind: 0 | 1, std = 1): Uint16Array {
  const h = new Uint16Array(n);
  nk.narrowHalf(h, randn32(rng, n, std), n, kind);
  return h;
}
function widened(h: Uint16Array, kind: 0 | 1): Float32Array {
  const f = new Float32Array(h.length);
  nk.widenHalf(f, h, h.length, kind);
  return f;
}

const KINDS = [[0, 'bf16'], [1, 'f16']] as const;
const defaultThreads = nk.getNumThreads();

// The kernels flush denormals on the JavaScript thread only while they run: loading the addon and setting the
// thread count (whose parallel region includes this thread) must leave JavaScript's IEEE semantics as they were.
it('JavaScript keeps its denormals after the addon loads, after setNumThreads and after a kernel', () => {
  const denormal = new Float32Array(new Uint32Array([0x10000]).buffer);
  assert.equal(denormal[0], 2 ** -133, 'a float32 denormal read in JavaScript');
  nk.setNumThreads(2);
  nk.widenHalf(new Float32Array(1), Uint16Array.of(1), 1, 0);
  nk.setNumThreads(defaultThreads);
  assert.equal(denormal[0], 2 ** -133);
});

for (const threads of [1, 2]) {
  describe(`HF kernels, ${threads} thread${threads > 1 ? 's' : ''}`, () => {
    before(() => nk.setNumThreads(threads));
    after(() => nk.setNumThreads(defaultThreads));

    // ------------------------------------------------------------------------------------------------
    describe('rmsnorm with weight and eps', () => {
      for (const [R, C, eps] of [[1, 13, 1e-6], [3, 100, 1e-5], [17, 257, 1e-6]] as const) {
        it(`forward, and the accumulating backward (dx, dgain) R=${R} C=${C} eps=${eps}`, () => {
          const rng = new Rng(10 + R + C);
          const x = randn32(rng, R * C, 2), gain = randn32(rng, C), dy = randn32(rng, R * C);
          const y = new Float32Array(R * C), rstd = new Float32Array(R);
          nk.rmsnormForward(y, rstd, x, R, C, gain, eps);
          const want = ref.rmsnormGain(x, R, C, gain, eps);
          expectClose('y', y, want.y);
          expectClose('rstd', rstd, want.rstd);

          const dx0 = randn32(rng, R * C), dg0 = randn32(rng, C);
          const dx = Float32Array.from(dx0), dgain = Float32Array.from(dg0);
          nk.rmsnormGainBackward(dx, dgain, dy, x, rstd, gain, R, C);
          const g = ref.rmsnormGainGrad(dy, x, gain, R, C, eps);
          expectClose('dx (added)', sub(dx, dx0), g.dx, 1e-4);
          expectClose('dgain (added)', sub(dgain, dg0), g.dgain, 1e-4);
          expectFd('dx', sub(dx, dx0), (x64) => dot(dy, ref.rmsnormGain(x64, R, C, gain, eps).y), x, rng);
          expectFd('dgain', sub(dgain, dg0), (g64) => dot(dy, ref.rmsnormGain(x, R, C, g64, eps).y), gain, rng);

          // dgain null: dx alone, the same values
          const dx2 = Float32Array.from(dx0);
          nk.rmsnormGainBackward(dx2, null, dy, x, rstd, gain, R, C);
          sameBits('dx without dgain', dx2, dx);
        });
      }

      it('without gain and eps it is the gpt norm bit for bit (null gain, eps 1e-6, a gain of ones)', () => {
        const rng = new Rng(20);
        const R = 5, C = 77;
        const x = randn32(rng, R * C, 3);
        const outs = [0, 1, 2, 3].map(() => ({ y: new Float32Array(R * C), rstd: new Float32Array(R) }));
        nk.rmsnormForward(outs[0].y, outs[0].rstd, x, R, C);
        nk.rmsnormForward(outs[1].y, outs[1].rstd, x, R, C, null, 1e-6);
        nk.rmsnormForward(outs[2].y, outs[2].rstd, x, R, C, undefined);
        nk.rmsnormForward(outs[3].y, outs[3].rstd, x, R, C, new Float32Array(C).fill(1), 1e-6);
        for (const o of outs.slice(1)) {
          sameBits('y', o.y, outs[0].y);
          sameBits('rstd', o.rstd, outs[0].rstd);
        }
        const want = ref.rmsnorm(x, R, C);
        expectClose('y', outs[0].y, want.y);
        // eps matters: an all-zero-but-tiny row
        const tiny = new Float32Array(C).fill(1e-3), y = new Float32Array(C), r5 = new Float32Array(1), r6 = new Float32Array(1);
        nk.rmsnormForward(y, r5, tiny, 1, C, null, 1e-5);
        nk.rmsnormForward(y, r6, tiny, 1, C);
        expectClose('rstd eps 1e-5', r5, [1 / Math.sqrt(1e-6 + 1e-5)]);
        expectClose('rstd eps 1e-6', r6, [1 / Math.sqrt(1e-6 + 1e-6)]);
      });

      it('a NaN in x reaches its row only, forward and backward', () => {
        const rng = new Rng(21);
        const R = 3, C = 19;
        const x = randn32(rng, R * C), gain = randn32(rng, C), dy = randn32(rng, R * C);
        x[C + 4] = NaN;
        const y = new Float32Array(R * C), rstd = new Float32Array(R);
        nk.rmsnormForward(y, rstd, x, R, C, gain, 1e-6);
        const dx = new Float32Array(R * C);
        nk.rmsnormGainBackward(dx, null, dy, x, rstd, gain, R, C);
        for (let i = 0; i < R * C; i++) {
          const inRow1 = Math.floor(i / C) === 1;
          assert.equal(Number.isNaN(y[i]), inRow1, `y[${i}]`);
          assert.equal(Number.isNaN(dx[i]), inRow1, `dx[${i}]`);
        }
      });
    });

    // ------------------------------------------------------------------------------------------------
    describe('qkRope', () => {
      const llama3 = { type: 'llama3' as const, factor: 32, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositions: 8192 };
      const cases: Array<[number, number, number, number, number, number, string]> = [
        // B, T, N, Nkv, H, pos0, rope
        [1, 1, 4, 4, 16, 0, 'theta'],
        [3, 1, 4, 2, 24, 7, 'llama3'],
        [1, 3, 2, 1, 64, 2000, 'llama3'],
        [17, 1, 2, 2, 128, 5, 'theta'],
        [2, 5, 4, 1, 128, 0, 'theta'],
      ];
      for (const [B, T, N, Nkv, H, pos0, rope] of cases) {
        const invFreq = ropeInvFreq({ H, ropeTheta: rope === 'theta' ? 1e6 : 500000, ropeScaling: rope === 'llama3' ? llama3 : null });
        for (const mode of [0, 1, 2] as const) {
          it(`mode ${mode}: forward (in place and not), backward (aliased and not) B=${B} T=${T} N=${N} Nkv=${Nkv} H=${H} pos0=${pos0} ${rope}`, () => {
            const rng = new Rng(30 + B * 7 + T * 3 + N + Nkv + H + mode);
            const W = (N + 2 * Nkv) * H, rows = B * T, heads = N + Nkv, eps = 1e-6;
            const x = randn32(rng, rows * W, 1.5);
            const gq = mode === 2 ? randn32(rng, H) : null, gk = mode === 2 ? randn32(rng, H) : null;
            const y = new Float32Array(rows * W).fill(NaN), rstd = mode > 0 ? new Float32Array(rows * heads) : null;
            nk.qkRopeForward(y, rstd, x, B, T, N, Nkv, H, pos0, invFreq, mode, gq, gk, eps);
            const want = ref.qkRope(x, B, T, N, Nkv, H, pos0, invFreq, mode, gq, gk, eps);
            expectClose('y', y, want.y);
            for (let r = 0; r < rows; r++)  // v copied exactly
              for (let i = heads * H; i < W; i++) assert.ok(Object.is(y[r * W + i], x[r * W + i]), `v at row ${r}, ${i}`);
            if (rstd) expectClose('rstd', rstd, want.rstd);
            const inPlace = Float32Array.from(x), rstd2 = mode > 0 ? new Float32Array(rows * heads) : null;
            nk.qkRopeForward(inPlace, rstd2, inPlace, B, T, N, Nkv, H, pos0, invFreq, mode, gq, gk, eps);
            sameBits('in place', inPlace, y);

            const dy = randn32(rng, rows * W);
            const dx = new Float32Array(rows * W).fill(NaN);
            const dgq0 = randn32(rng, H), dgk0 = randn32(rng, H);
            const dgq = Float32Array.from(dgq0), dgk = Float32Array.from(dgk0);
            nk.qkRopeBackward(dx, dgq, dgk, dy, x, rstd, B, T, N, Nkv, H, pos0, invFreq, mode, gq, gk);
            const g = ref.qkRopeGrad(dy, x, B, T, N, Nkv, H, pos0, invFreq, mode, gq, gk, eps);
            expectClose('dx', dx, g.dx, 1e-4);
            const f = (x64: F64) => dot(dy, ref.qkRope(x64, B, T, N, Nkv, H, pos0, invFreq, mode, gq, gk, eps).y);
            expectFd('dx', dx, f, x, rng);
            if (mode === 2) {
              expectClose('dgq (added)', sub(dgq, dgq0), g.dgq, 1e-4);
              expectClose('dgk (added)', sub(dgk, dgk0), g.dgk, 1e-4);
              expectFd('dgq', sub(dgq, dgq0), (g64) => dot(dy, ref.qkRope(x, B, T, N, Nkv, H, pos0, invFreq, 2, g64, gk, eps).y), gq!, rng);
              expectFd('dgk', sub(dgk, dgk0), (g64) => dot(dy, ref.qkRope(x, B, T, N, Nkv, H, pos0, invFreq, 2, gq, g64, eps).y), gk!, rng);
            } else {
              sameBits('dgq untouched', dgq, dgq0);
              sameBits('dgk untouched', dgk, dgk0);
            }
            const aliased = Float32Array.from(dy);
            nk.qkRopeBackward(aliased, null, null, aliased, x, rstd, B, T, N, Nkv, H, pos0, invFreq, mode, gq, gk);
            sameBits('dx = dy', aliased, dx);
          });
        }
      }

      it('a NaN in one head stays in that head (mode 2, forward and backward)', () => {
        const rng = new Rng(40);
        const B = 1, T = 2, N = 2, Nkv = 1, H = 16, W = (N + 2 * Nkv) * H;
        const invFreq = ropeInvFreq({ H, ropeTheta: 10000, ropeScaling: null });
        const x = randn32(rng, B * T * W), gq = randn32(rng, H), gk = randn32(rng, H);
        x[W + H + 3] = NaN;  // row 1, q head 1
        const y = new Float32Array(B * T * W), rstd = new Float32Array(B * T * (N + Nkv));
        nk.qkRopeForward(y, rstd, x, B, T, N, Nkv, H, 3, invFreq, 2, gq, gk, 1e-6);
        const dx = new Float32Array(B * T * W);
        nk.qkRopeBackward(dx, null, null, randn32(rng, B * T * W), x, rstd, B, T, N, Nkv, H, 3, invFreq, 2, gq, gk);
        for (let i = 0; i < B * T * W; i++) {
          const inHead = i >= W + H && i < W + 2 * H;
          assert.equal(Number.isNaN(y[i]), inHead, `y[${i}]`);
          assert.equal(Number.isNaN(dx[i]), inHead, `dx[${i}]`);
        }
      });

      it('checks its arguments: odd H, mode, invFreq, rstd, gains, lengths', () => {
        const B = 1, T = 2, N = 2, Nkv = 1, H = 16, W = (N + 2 * Nkv) * H;
        const inv = new Float64Array(H / 2), x = new Float32Array(B * T * W), rstd = new Float32Array(B * T * 3);
        const g = new Float32Array(H);
        assert.throws(() => nk.qkRopeForward(x, rstd, x, B, T, N, Nkv, 15, 0, inv, 1, null, null, 1e-6), /argument 7 .*even/);
        assert.throws(() => nk.qkRopeForward(x, rstd, x, B, T, N, Nkv, H, 0, inv, 3 as 0, null, null, 1e-6), /argument 10 /);
        assert.throws(() => nk.qkRopeForward(x, rstd, x, B, T, N, Nkv, H, 0, new Float64Array(3), 1, null, null, 1e-6), /argument 9 has 3 elements, needs 8/);
        assert.throws(() => nk.qkRopeForward(x, null, x, B, T, N, Nkv, H, 0, inv, 1, null, null, 1e-6), /argument 1 must be a Float32Array/);
        assert.throws(() => nk.qkRopeForward(x, rstd, x, B, T, N, Nkv, H, 0, inv, 2, g, null, 1e-6), /argument 12 /);
        assert.throws(() => nk.qkRopeForward(x.subarray(1), rstd, x, B, T, N, Nkv, H, 0, inv, 0, null, null, 1e-6), /argument 0 has/);
        assert.throws(() => nk.qkRopeForward(x, rstd, x, B, T, N, Nkv, H, 0, inv, 1, null, null, -1), /argument 13 .*eps/);
        assert.throws(() => nk.qkRopeBackward(x, null, null, x, x.subarray(2), rstd, B, T, N, Nkv, H, 0, inv, 1, null, null), /argument 4 has/);
        assert.throws(() => nk.qkRopeBackward(x, new Float32Array(3), null, x, x, rstd, B, T, N, Nkv, H, 0, inv, 2, g, g), /argument 1 has 3/);
        assert.throws(() => nk.qkRopeBackward(x, null, null, x, x, rstd.subarray(1), B, T, N, Nkv, H, 0, inv, 1, null, null), /argument 5 has/);
      });
    });

    // ------------------------------------------------------------------------------------------------
    describe('swiglu and bias', () => {
      for (const [R, F] of [[1, 13], [3, 40], [17, 100]] as const) {
        it(`swiglu forward and written backward (also over gu) R=${R} F=${F}`, () => {
          const rng = new Rng(50 + R + F);
          const gu = randn32(rng, R * 2 * F, 3), dact = randn32(rng, R * F);
          gu[0] = 60; gu[1] = -60; gu[2] = 0;  // saturated and zero gates
          const act = new Float32Array(R * F).fill(NaN);
          nk.swigluForward(act, gu, R, F);
          expectClose('act', act, ref.swiglu(gu, R, F));
          const dgu = new Float32Array(R * 2 * F).fill(NaN);
          nk.swigluBackward(dgu, dact, gu, R, F);
          expectClose('dgu', dgu, ref.swigluGrad(dact, gu, R, F));
          const probe = Float32Array.from(gu);
          probe[0] = 0.3; probe[1] = -0.2;  // finite differences away from the saturated gates' cancellation
          const dprobe = new Float32Array(R * 2 * F);
          nk.swigluBackward(dprobe, dact, probe, R, F);
          expectFd('dgu', dprobe, (g64) => dot(dact, ref.swiglu(g64, R, F)), probe, rng);
          const over = Float32Array.from(gu);
          nk.swigluBackward(over, dact, over, R, F);
          sameBits('dgu = gu', over, dgu);
        });
      }

      it('swiglu: NaN in a gate or an up reaches its output and both its gradients only', () => {
        const R = 2, F = 5, gu = new Float32Array(R * 2 * F).fill(0.5), dact = new Float32Array(R * F).fill(1);
        gu[1] = NaN;          // row 0, gate 1
        gu[2 * F + F + 3] = NaN;  // row 1, up 3
        const act = new Float32Array(R * F), dgu = new Float32Array(R * 2 * F);
        nk.swigluForward(act, gu, R, F);
        nk.swigluBackward(dgu, dact, gu, R, F);
        for (let i = 0; i < R * F; i++) assert.equal(Number.isNaN(act[i]), i === 1 || i === F + 3, `act[${i}]`);
        // a NaN up leaves d up (dact·silu(gate)) finite; a NaN gate makes both of its column's gradients NaN
        const nanGrad = new Set([1, F + 1, 2 * F + 3]);
        for (let i = 0; i < R * 2 * F; i++) assert.equal(Number.isNaN(dgu[i]), nanGrad.has(i), `dgu[${i}]`);
      });

      for (const [R, C] of [[1, 13], [3, 100], [17, 257]] as const) {
        it(`bias forward (adds) and backward (accumulates) R=${R} C=${C}`, () => {
          const rng = new Rng(60 + R + C);
          const y0 = randn32(rng, R * C), b = randn32(rng, C), dy = randn32(rng, R * C), db0 = randn32(rng, C);
          const y = Float32Array.from(y0);
          nk.biasForward(y, b, R, C);
          expectClose('y', y, ref.biasAdd(y0, b, R, C));
          const db = Float32Array.from(db0);
          nk.biasBackward(db, dy, R, C);
          const want = Float64Array.from(db0, (v, c) => v + Array.from({ length: R }, (_, r) => dy[r * C + c]).reduce((s, t) => s + t, 0));
          expectClose('db', db, want);
          expectFd('db', sub(db, db0), (b64) => dot(dy, ref.biasAdd(y0, b64, R, C)), b, rng);
        });
      }

      it('length checks name the argument', () => {
        const f = (n: number) => new Float32Array(n);
        assert.throws(() => nk.swigluForward(f(6), f(11), 1, 6), /swigluForward: argument 1 has 11 elements, needs 12/);
        assert.throws(() => nk.swigluForward(f(5), f(12), 1, 6), /swigluForward: argument 0 has 5 elements, needs 6/);
        assert.throws(() => nk.swigluBackward(f(11), f(6), f(12), 1, 6), /swigluBackward: argument 0 has 11 elements, needs 12/);
        assert.throws(() => nk.swigluBackward(f(12), f(5), f(12), 1, 6), /argument 1 has 5 elements, needs 6/);
        assert.throws(() => nk.swigluBackward(f(12), f(6), f(11), 1, 6), /argument 2 has 11 elements, needs 12/);
        assert.throws(() => nk.biasForward(f(11), f(6), 2, 6), /biasForward: argument 0 has 11 elements, needs 12/);
        assert.throws(() => nk.biasForward(f(12), f(5), 2, 6), /biasForward: argument 1 has 5 elements, needs 6/);
        assert.throws(() => nk.biasBackward(f(5), f(12), 2, 6), /biasBackward: argument 0 has 5 elements, needs 6/);
        assert.throws(() => nk.biasBackward(f(6), f(11), 2, 6), /biasBackward: argument 1 has 11 elements, needs 12/);
        const rc = [f(10), f(5), f(10), f(10), f(2), f(5)] as const;  // dx, dgain, dy, x, rstd, gain for R = 2, C = 5
        for (let i = 0; i < rc.length; i++) {
          const args = rc.map((a, j) => (j === i ? a.subarray(1) : a)) as unknown as Parameters<typeof nk.rmsnormGainBackward>;
          args[6] = 2; args[7] = 5;
          assert.throws(() => nk.rmsnormGainBackward(...args), new RegExp(`rmsnormGainBackward: argument ${i} has`));
        }
        assert.throws(() => nk.rmsnormForward(f(10), f(2), f(10), 2, 5, f(4)), /argument 5 has 4 elements, needs 5/);
        assert.throws(() => nk.rmsnormForward(f(10), f(2), f(10), 2, 5, null, NaN), /argument 6 .*eps/);
      });
    });

    // ------------------------------------------------------------------------------------------------
    describe('half precision', () => {
      for (const [kind, name] of KINDS) {
        it(`${name}: widenHalf is exact for all 65536 patterns (NaN payloads and signed zeros kept)`, () => {
          const all = Uint16Array.from({ length: 65536 }, (_, i) => i);
          const f = widened(all, kind);
          const bits = new Uint32Array(f.buffer);
          for (let h = 0; h < 65536; h++) {
            const v = ref.halfValue(h, kind);
            if (Number.isNaN(v)) {
              assert.ok(Number.isNaN(f[h]), `${name} 0x${h.toString(16)} should widen to NaN, got ${f[h]}`);
              const fb = kind === 0 ? 16 : 13;  // the payload, shifted into float32's fraction
              assert.equal(bits[h] & 0x7fffff, (h & (kind === 0 ? 0x7f : 0x3ff)) << fb, `${name} 0x${h.toString(16)} payload`);
              assert.equal(bits[h] >>> 31, h >> 15, `${name} 0x${h.toString(16)} NaN sign`);
            } else {
              assert.ok(Object.is(f[h], v), `${name} 0x${h.toString(16)}: ${f[h]} vs ${v}`);
            }
          }
        });

        it(`${name}: narrowHalf rounds to nearest even (round trips, midpoints, random values, overflow, NaN)`, () => {
          const all = Uint16Array.from({ length: 65536 }, (_, i) => i);
          const f = widened(all, kind);
          const back = new Uint16Array(65536);
          nk.narrowHalf(back, f, 65536, kind);
          const expMask = kind === 0 ? 0x7f80 : 0x7c00;
          for (let h = 0; h < 65536; h++) {
            const isNaN = (h & expMask) === expMask && (h & ~expMask & 0x7fff) !== 0;
            if (isNaN) assert.ok(Number.isNaN(ref.halfValue(back[h], kind)), `NaN 0x${h.toString(16)} narrowed to 0x${back[h].toString(16)}`);
            else assert.equal(back[h], h, `0x${h.toString(16)} round trip gave 0x${back[h].toString(16)}`);
          }
          // midpoints between neighbouring finite halves of the same sign, and points just either side of them
          const rng = new Rng(70 + kind);
          const xs: number[] = [];
          for (let h = 0; h < 0x7fff; h++) {
            const a = ref.halfValue(h, kind), b = ref.halfValue(h + 1, kind);
            if (!Number.isFinite(a) || !Number.isFinite(b)) continue;
            if (rng.next() < 0.1 || h < 4 || (h & 0x3ff) === 0x3ff) {
              const mid = Math.fround((a + b) / 2);
              xs.push(mid, -mid, Math.fround(mid * (1 + 2 ** -22)), Math.fround(mid * (1 - 2 ** -22)));
            }
          }
          // random float32 values over the whole range, float32 subnormals, and the overflow boundary
          for (let i = 0; i < 20000; i++) xs.push(Math.fround(rng.normal() * 2 ** (Math.floor(rng.next() * 300) - 150)));
          xs.push(1e-45, -1e-45, 1e-40, 0, -0, Infinity, -Infinity, 3.4028234663852886e38, -3.4028234663852886e38);
          if (kind === 1) xs.push(65504, 65519.996, 65520, 65536, 1e10, -65520, 2 ** -25, Math.fround(2 ** -25 * (1 + 2 ** -20)), 2 ** -24 * 1.5);
          const src = Float32Array.from(xs), out = new Uint16Array(src.length);
          nk.narrowHalf(out, src, src.length, kind);
          for (let i = 0; i < src.length; i++) {
            const got = ref.halfValue(out[i], kind), want = ref.roundToHalf(src[i], kind);
            assert.ok(Object.is(got, want), `${name} narrow(${src[i]}) = ${got} (0x${out[i].toString(16)}), want ${want}`);
          }
          const nans = new Uint32Array([0x7fc00000, 0xffc00000, 0x7f800001, 0x7fffffff, 0x7f802000]);
          const nanOut = new Uint16Array(nans.length);
          nk.narrowHalf(nanOut, new Float32Array(nans.buffer), nans.length, kind);
          for (let i = 0; i < nans.length; i++) {
            assert.ok(Number.isNaN(ref.halfValue(nanOut[i], kind)), `NaN 0x${nans[i].toString(16)} gave 0x${nanOut[i].toString(16)}`);
            assert.equal(nanOut[i] >> 15, nans[i] >>> 31, 'NaN sign');
          }
        });

        it(`${name}: embeddingForwardHalf gathers widened rows; a bad id is a RangeError naming the row`, () => {
          const rng = new Rng(80 + kind);
          const V = 37, D = 13, rows = 17;
          const table = randHalf(rng, V * D, kind);
          const ids = Int32Array.from({ length: rows }, () => rng.int(V));
          const out = new Float32Array(rows * D).fill(NaN);
          nk.embeddingForwardHalf(out, table, kind, ids, rows, V, D);
          expectClose('rows', out, ref.embeddingForward(widened(table, kind), ids, rows, V, D), 0);
          ids[9] = V;
          assert.throws(() => nk.embeddingForwardHalf(out, table, kind, ids, rows, V, D), (e: unknown) =>
            e instanceof RangeError && /embeddingForwardHalf: token id 37 at row 9/.test(e.message));
        });

        // N over 256 with 2 threads: the threads take whole blocks; N = 37 or 1: one block on all threads.
        const shapes: [number, number, number][] = [[1, 37, 13], [5, 300, 64], [17, 513, 33], [3, 1000, 70], [2, 1, 5]];
        for (const [M, N, K] of shapes) {
          for (const transA of [false, true]) {
            for (const transB of [true, false]) {
              it(`${name}: gemmHalfB M=${M} N=${N} K=${K} transA=${transA} transB=${transB} is gemm on the widened B`, () => {
                const rng = new Rng(90 + M + N + K + (transA ? 1000 : 0) + (transB ? 2000 : 0) + kind);
                const A = randn32(rng, M * K), Bh = randHalf(rng, K * N, kind), Bw = widened(Bh, kind);
                for (const [alpha, beta] of [[1, 0], [0.7, 0.3], [-1.5, 1]]) {
                  const C0 = beta === 0 ? new Float32Array(M * N).fill(NaN) : randn32(rng, M * N);
                  const expected = beta === 0 ? new Float64Array(M * N) : to64(C0);
                  ref.gemm(transA, transB, M, N, K, alpha, A, Bw, beta, expected);
                  const scale = new Float64Array(M * N).map((_, i) => (beta === 0 ? 0 : Math.abs(beta * C0[i])));
                  ref.gemm(transA, transB, M, N, K, Math.abs(alpha), A.map(Math.abs), Bw.map(Math.abs), 1, scale);
                  const C = Float32Array.from(C0);
                  nk.gemmHalfB(transA, transB, M, N, K, alpha, A, Bh, kind, beta, C);
                  const G = Float32Array.from(C0);
                  nk.gemm(transA, transB, M, N, K, alpha, A, Bw, beta, G);
                  const e = scaledErr(C, expected, scale), eGemm = scaledErr(G, expected, scale);
                  assert.ok(e <= 2 * eGemm + 1.2e-7, `alpha=${alpha} beta=${beta}: error ${e.toExponential(2)} vs gemm's ${eGemm.toExponential(2)}`);
                  assert.ok(e <= K * 2 ** -23, `alpha=${alpha} beta=${beta}: error ${e.toExponential(2)} over float32 rounding`);
                }
              });
            }
          }
        }

        it(`${name}: gemmHalfB carries a NaN of B to its column only, and leaves C outside its view alone`, () => {
          const M = 4, N = 300, K = 20, jb = 271, kb = 5;
          for (const transB of [true, false]) {
            const B = new Uint16Array(K * N).fill(kind === 0 ? 0x3e80 : 0x3400);  // 0.25
            B[transB ? jb * K + kb : kb * N + jb] = kind === 0 ? 0x7fc1 : 0x7e01;
            const big = new Float32Array(M * N + 6).fill(-3), C = big.subarray(3, 3 + M * N);
            nk.gemmHalfB(false, transB, M, N, K, 1, new Float32Array(M * K).fill(0.5), B, kind, 0, C);
            for (let i = 0; i < M * N; i++) assert.equal(Number.isNaN(C[i]), i % N === jb, `transB=${transB} C[${i}] = ${C[i]}`);
            for (const i of [0, 1, 2, M * N + 3, M * N + 4, M * N + 5]) assert.equal(big[i], -3, `outside the view at ${i}`);
          }
        });

        it(`${name}: gemmPackBHalf packs the same words as gemmPackB on the widened B`, (t) => {
          if (nk.gemmPackSize(32, 32) === 0) return t.skip('no packing engine on this machine');
          for (const [N, K] of [[37, 70], [300, 33], [513, 20]] as const) {
            for (const transB of [true, false]) {
              const rng = new Rng(100 + N + K + kind);
              const Bh = randHalf(rng, K * N, kind), Bw = widened(Bh, kind);
              const size = nk.gemmPackSize(N, K);
              const p16 = new Uint16Array(size).fill(0xabcd), p32 = new Uint16Array(size).fill(0x1234);
              assert.equal(nk.gemmPackBHalf(transB, N, K, Bh, kind, p16), true);
              assert.equal(nk.gemmPackB(transB, N, K, Bw, p32), true);
              sameBits(`N=${N} K=${K} transB=${transB}`, p16, p32);
              const M = 9, A = randn32(rng, M * K), C = new Float32Array(M * N), want = new Float64Array(M * N);
              nk.gemmPacked(false, transB, M, N, K, 1, A, Bw, p16, 0, C);
              ref.gemm(false, transB, M, N, K, 1, A, Bw, 0, want);
              expectClose('product with the packing', C, want);
            }
          }
        });
      }

      it('half kernels check kind and lengths', () => {
        const h = new Uint16Array(8), f = new Float32Array(8);
        assert.throws(() => nk.widenHalf(f, h, 8, 2 as 0), /widenHalf: argument 3 \(kind\) must be 0 \(bf16\) or 1/);
        assert.throws(() => nk.widenHalf(new Float32Array(9), h, 9, 0), /widenHalf: argument 1 has 8 elements, needs 9/);
        assert.throws(() => nk.widenHalf(f, new Uint16Array(9), 9, 0), /widenHalf: argument 0 has 8 elements, needs 9/);
        assert.throws(() => nk.widenHalf(f, f as unknown as Uint16Array, 8, 0), /argument 1 must be a Uint16Array/);
        assert.throws(() => nk.narrowHalf(h.subarray(1), f, 8, 1), /narrowHalf: argument 0 has 7/);
        assert.throws(() => nk.narrowHalf(h, f, -1, 1), /argument 2 must be an integer >= 0/);
        assert.throws(() => nk.embeddingForwardHalf(f, h, 0, new Int32Array(2), 2, 4, 4), /embeddingForwardHalf: argument 1 has 8 elements, needs 16/);
        assert.throws(() => nk.embeddingForwardHalf(f, new Uint16Array(16), 0, new Int32Array(1), 2, 4, 4), /argument 3 has 1 elements, needs 2/);
        assert.throws(() => nk.embeddingForwardHalf(f, new Uint16Array(16), 2 as 0, new Int32Array(2), 2, 4, 4), /argument 2 \(kind\)/);
        assert.throws(() => nk.gemmHalfB(false, true, 2, 3, 4, 1, f, h, 0, 0, new Float32Array(6)), /gemmHalfB: argument 7 has 8 elements, needs 12/);
        assert.throws(() => nk.gemmHalfB(false, true, 2, 4, 4, 1, new Float32Array(7), new Uint16Array(16), 0, 0, f), /argument 6 has 7/);
        assert.throws(() => nk.gemmHalfB(false, true, 2, 4, 4, 1, f, new Uint16Array(16), 0, 0, new Float32Array(7)), /argument 10 has 7/);
        if (nk.gemmPackSize(4, 4) > 0)
          assert.throws(() => nk.gemmPackBHalf(true, 4, 4, new Uint16Array(16), 0, new Uint16Array(3)), /gemmPackBHalf: argument 5 has 3/);
      });
    });

    // ------------------------------------------------------------------------------------------------
    describe('sampleRows with topP', () => {
      it('topP absent or 1 is today\'s sampling, id for id; topP < 1 stays inside the top-k', () => {
        const rng = new Rng(110);
        const R = 40, V = 300;
        const logits = randn32(rng, R * V, 3);
        const u = Float64Array.from({ length: R }, () => rng.next());
        for (const [temperature, topK] of [[1, 0], [0.7, 20], [0, 0]]) {
          const a = new Int32Array(R), b = new Int32Array(R), c = new Int32Array(R);
          nk.sampleRows(logits, R, V, temperature, topK, u, a);
          nk.sampleRows(logits, R, V, temperature, topK, u, b, 1);
          nk.sampleRows(logits, R, V, temperature, topK, u, c, undefined);
          assert.deepEqual(Array.from(b), Array.from(a));
          assert.deepEqual(Array.from(c), Array.from(a));
        }
        // a tiny topP is the argmax
        const out = new Int32Array(R);
        nk.sampleRows(logits, R, V, 1, 0, u, out, 1e-9);
        for (let r = 0; r < R; r++) {
          let best = 0;
          for (let v = 1; v < V; v++) if (logits[r * V + v] > logits[r * V + best]) best = v;
          assert.equal(out[r], best, `row ${r}`);
        }
      });

      // Uniforms on a grid: each token's share of the draws is its probability to within one grid step.
      const cases: Array<[string, number[], number, number, number]> = [
        ['topP 0.6', [1.0, 0.5, -0.3, 2.0, 0.0, -1.2, 1.4, 0.9], 1, 0, 0.6],
        ['topP 0.9 at temperature 0.7', [1.0, 0.5, -0.3, 2.0, 0.0, -1.2, 1.4, 0.9], 0.7, 0, 0.9],
        ['topK 4 then topP 0.8', [0.3, 1.1, -0.5, 0.9, 1.4, 0.0, 0.2, 1.2], 1.3, 4, 0.8],
        ['ties at the edge, in vocabulary order', [0, 1, 1, 1, 2, -1], 1, 0, 0.55],
        ['a long tail (V = 700)', Array.from({ length: 700 }, (_, v) => -0.01 * v + Math.sin(v)), 1, 0, 0.5],
      ];
      for (const [what, row, temperature, topK, topP] of cases) {
        it(`frequencies are the renormalised nucleus: ${what}`, () => {
          const V = row.length, R = 4000;
          const logits = new Float32Array(R * V);
          for (let r = 0; r < R; r++) logits.set(row, r * V);
          const u = Float64Array.from({ length: R }, (_, i) => (i + 0.5) / R);
          const out = new Int32Array(R);
          nk.sampleRows(logits, R, V, temperature, topK, u, out, topP);
          const counts = new Float64Array(V);
          for (const o of out) counts[o]++;
          const p = ref.nucleusProbs(Float32Array.from(row), temperature, topK, topP);
          for (let v = 0; v < V; v++) {
            assert.ok(Math.abs(counts[v] / R - p[v]) <= 1.01 / R, `token ${v}: frequency ${counts[v] / R} vs ${p[v]}`);
            if (p[v] === 0) assert.equal(counts[v], 0, `token ${v} is outside the nucleus`);
          }
        });
      }

      it('rejects topP outside (0, 1]', () => {
        const logits = new Float32Array(4), u = new Float64Array(1), out = new Int32Array(1);
        for (const p of [0, -0.5, 1.5, NaN])
          assert.throws(() => nk.sampleRows(logits, 1, 4, 1, 0, u, out, p), /sampleRows: argument 7 \(topP\) must be in \(0, 1\]/);
      });
    });
  });
}

// ----------------------------------------------------------------------------------------------------
describe('HF kernels: the thread count', () => {
  after(() => nk.setNumThreads(defaultThreads));
  const rng = new Rng(200);
  const R = 301, C = 515;
  const x = randn32(rng, R * C), dy = randn32(rng, R * C), gain = randn32(rng, C);
  function columnSums(threads: number): { db: Float32Array; dgain: Float32Array } {
    nk.setNumThreads(threads);
    const db = new Float32Array(C), dgain = new Float32Array(C), rstd = new Float32Array(R), y = new Float32Array(R * C);
    nk.biasBackward(db, dy, R, C);
    nk.rmsnormForward(y, rstd, x, R, C, gain, 1e-5);
    nk.rmsnormGainBackward(new Float32Array(R * C), dgain, dy, x, rstd, gain, R, C);
    return { db, dgain };
  }

  it('bias and weight gradients are the same bits for 1 and 2 threads', () => {
    const one = columnSums(1), two = columnSums(2);
    sameBits('db', one.db, two.db);
    sameBits('dgain', one.dgain, two.dgain);
  });

  it('qkRope gains are the same bits from run to run with 2 threads, and close to 1 thread\'s', () => {
    const B = 3, T = 40, N = 4, Nkv = 2, H = 64, W = (N + 2 * Nkv) * H;
    const invFreq = ropeInvFreq({ H, ropeTheta: 1e6, ropeScaling: null });
    const xs = randn32(rng, B * T * W), dys = randn32(rng, B * T * W), gq = randn32(rng, H), gk = randn32(rng, H);
    const run = (threads: number) => {
      nk.setNumThreads(threads);
      const y = new Float32Array(B * T * W), rstd = new Float32Array(B * T * (N + Nkv));
      nk.qkRopeForward(y, rstd, xs, B, T, N, Nkv, H, 0, invFreq, 2, gq, gk, 1e-6);
      const dgq = new Float32Array(H), dgk = new Float32Array(H);
      nk.qkRopeBackward(new Float32Array(B * T * W), dgq, dgk, dys, xs, rstd, B, T, N, Nkv, H, 0, invFreq, 2, gq, gk);
      return { dgq, dgk };
    };
    const a = run(2), b = run(2), c = run(1);
    sameBits('dgq', a.dgq, b.dgq);
    sameBits('dgk', a.dgk, b.dgk);
    expectClose('dgq 1 vs 2 threads', c.dgq, a.dgq, 1e-6);
    expectClose('dgk 1 vs 2 threads', c.dgk, a.dgk, 1e-6);
  });
});
