/**
 * Every native kernel against the float64 reference (test/helpers/ref.ts): forwards agree within float32
 * rounding, backwards agree with central finite differences of the reference forward, projected onto a
 * random upstream gradient (L = Σ dout·f(x), so dL/dx is exactly what a backward kernel returns).
 * Shapes are deliberately odd (D=13, H=6, V=37, T=5, T=1, B=3) so no kernel can lean on multiples of 8/16.
 * The whole suite runs once with 1 thread and once with 2, and a final block checks that both agree.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { native } from '../src/backend/native.js';
import * as ref from './helpers/ref.js';
import { Rng, randn32, randInts, relErr, to64, dot, finiteDiff, pickCoords, gather, maxAbs } from './helpers/ref.js';
import type { F64 } from './helpers/ref.js';

const nk = native();

/** Forward tolerance: max|a−b| / max|b| for float32 kernels over a few dozen-term reductions. */
const FWD_TOL = 1e-5;
/** Backward tolerance against finite differences (float32 analytic gradient vs float64 FD). */
const GRAD_TOL = 1e-3;

function expectClose(what: string, actual: ArrayLike<number>, expected: ArrayLike<number>, tol = FWD_TOL): void {
  assert.equal(actual.length, expected.length, `${what}: length ${actual.length} vs ${expected.length}`);
  const e = relErr(actual, expected);
  assert.ok(e <= tol, `${what}: max|a-b|/max|b| = ${e.toExponential(3)} > ${tol} (max|b| = ${maxAbs(expected).toExponential(3)})`);
}

/** Analytic gradient (at all coordinates of x) vs central differences of f at (a subset of) coordinates. */
function expectGrad(what: string, analytic: ArrayLike<number>, f: (x: F64) => number, x: ArrayLike<number>,
                    rng: Rng, maxCoords = 300, tol = GRAD_TOL): void {
  const x64 = to64(x);
  assert.equal(analytic.length, x64.length, `${what}: gradient length ${analytic.length} vs input ${x64.length}`);
  const coords = pickCoords(rng, x64.length, maxCoords);
  const fd = finiteDiff(f, x64, coords);
  const an = gather(analytic, coords);
  const e = relErr(an, fd);
  let worst = 0;
  let worstAt = -1;
  for (let j = 0; j < coords.length; j++) {
    const d = Math.abs(an[j] - fd[j]);
    if (!(d <= worst)) { worst = d; worstAt = coords[j]; }
  }
  assert.ok(e <= tol, `${what}: analytic vs finite-difference gradient rel err ${e.toExponential(3)} > ${tol}; ` +
    `worst at flat index ${worstAt}: analytic ${analytic[worstAt]} vs fd ${worstAt >= 0 ? fd[Array.from(coords).indexOf(worstAt)] : NaN}`);
}

// Worst error per element of a product against float64, |C − C64| / (|alpha|·Σ_k|a_ik·b_kj| + |beta·c_ij|): the scale
// float32 rounding of the sum is proportional to (a NaN makes it NaN, which fails the callers' bounds).
function scaledErr(C: ArrayLike<number>, ref64: F64, scale: F64): number {
  let worst = 0;
  for (let i = 0; i < C.length; i++) {
    const e = Math.abs(C[i]! - ref64[i]!) / scale[i]!;
    if (!(e <= worst)) worst = e;
  }
  return worst;
}

// NaN bit patterns every product must carry through: quiet, negative, signalling, and payloads that fill the
// top mantissa bits (which once carried into the sign when split into bf16 pieces).
const NAN_PATTERNS = [0x7fc00000, 0xffc00000, 0x7f800001, 0x7fff8000, 0x7fffffff, 0xffffffff];

// C [M, N] is NaN exactly where `nan(i, j)` says.
function expectNaNAt(what: string, C: Float32Array, M: number, N: number, nan: (i: number, j: number) => boolean): void {
  for (let i = 0; i < M; i++)
    for (let j = 0; j < N; j++)
      assert.equal(Number.isNaN(C[i * N + j]), nan(i, j), `${what}, C[${i}, ${j}] = ${C[i * N + j]}`);
}

function filled(n: number, v: number): Float32Array {
  return new Float32Array(n).fill(v);
}

function sub(a: ArrayLike<number>, b: ArrayLike<number>): F64 {
  const d = new Float64Array(a.length);
  for (let i = 0; i < a.length; i++) d[i] = a[i] - b[i];
  return d;
}

// c · gelu'(x) elementwise, by gemmGelu's separate GELU pass (the one it runs after sgemm): the product of the
// 1 × n × 1 gemmGelu is [1]·c, which is c exactly, computed on sgemm ('blas'), and C starts at zero (beta = 0).
const ONE = Float32Array.of(1);
function geluGradPass(c: Float32Array, x: Float32Array): Float32Array {
  const out = new Float32Array(c.length), mode = nk.getGemmMode();
  nk.setGemmMode('blas');
  try {
    nk.gemmGelu(false, false, 1, c.length, 1, 1, ONE, c, 0, out, 2, x);
  } finally {
    nk.setGemmMode(mode);
  }
  return out;
}

const defaultThreads = nk.getNumThreads();

for (const threads of [1, 2]) {
  describe(`native kernels, ${threads} thread${threads > 1 ? 's' : ''}`, () => {
    before(() => nk.setNumThreads(threads));
    after(() => nk.setNumThreads(defaultThreads));

    it('reports the thread count it was set to', () => {
      assert.equal(nk.getNumThreads(), threads);
      assert.equal(typeof nk.info(), 'string');
    });

    // ------------------------------------------------------------------------------------------------
    describe('gemm', () => {
      // [300, 37, 400] and [513, 384, 33]: on machines without AMX, the float32 engine with B packed per call
      // (many rows, N ≤ 384; partial panels and row blocks)
      const shapes: [number, number, number][] = [[5, 13, 7], [1, 1, 1], [17, 3, 33], [64, 37, 129], [1, 37, 13], [300, 37, 400], [513, 384, 33]];
      for (const [M, N, K] of shapes) {
        for (const transA of [false, true]) {
          for (const transB of [false, true]) {
            it(`M=${M} N=${N} K=${K} transA=${transA} transB=${transB}`, () => {
              const rng = new Rng(100 + M * 7 + N * 3 + K + (transA ? 1000 : 0) + (transB ? 2000 : 0));
              const A = randn32(rng, M * K);
              const B = randn32(rng, K * N);
              for (const [alpha, beta] of [[0.7, 0.3], [1, 0], [-1.5, 1]]) {
                const C = randn32(rng, M * N);
                const expected = to64(C);
                ref.gemm(transA, transB, M, N, K, alpha, A, B, beta, expected);
                nk.gemm(transA, transB, M, N, K, alpha, A, B, beta, C);
                expectClose(`gemm alpha=${alpha} beta=${beta}`, C, expected);
              }
            });
          }
        }
      }

      it('honours subarray byte offsets and leaves the rest of the buffers alone', () => {
        const rng = new Rng(7);
        const M = 6, N = 5, K = 9;
        const bigA = randn32(rng, M * K + 11);
        const bigB = randn32(rng, K * N + 5);
        const bigC = randn32(rng, M * N + 8);
        const before = Float32Array.from(bigC);
        const A = bigA.subarray(3, 3 + M * K);
        const B = bigB.subarray(5);
        const C = bigC.subarray(4, 4 + M * N);
        const expected = to64(C);
        ref.gemm(false, true, M, N, K, 1.25, A, B, 0.5, expected);
        nk.gemm(false, true, M, N, K, 1.25, A, B, 0.5, C);
        expectClose('gemm on subarrays', C, expected);
        for (let i = 0; i < 4; i++) assert.equal(bigC[i], before[i], `C prefix element ${i} changed`);
        for (let i = 4 + M * N; i < bigC.length; i++) assert.equal(bigC[i], before[i], `C suffix element ${i} changed`);
      });

      it('gemmPacked without a packing (machines without AMX) is gemm on B', () => {
        const rng = new Rng(9);
        const M = 12, N = 9, K = 17;
        for (const transA of [false, true]) {
          for (const transB of [false, true]) {
            const A = randn32(rng, M * K), B = randn32(rng, K * N), C = randn32(rng, M * N);
            const expected = to64(C);
            ref.gemm(transA, transB, M, N, K, 0.5, A, B, 2, expected);
            nk.gemmPacked(transA, transB, M, N, K, 0.5, A, B, null, 2, C);
            expectClose(`gemmPacked null transA=${transA} transB=${transB}`, C, expected);
          }
        }
      });

      // Autograd writes a fresh input gradient with beta = 0 into a pooled buffer holding old values.
      it('beta = 0 ignores NaN already in C (every engine, every transpose)', () => {
        const rng = new Rng(8);
        try {
          for (const mode of ['blas', 'auto'] as const) {
            nk.setGemmMode(mode);
            for (const [M, N, K] of [[5, 7, 3], [300, 64, 40], [512, 256, 64], [40, 70, 1500], [70, 40, 1500]] as const) {
              for (const transA of [false, true]) {
                for (const transB of [false, true]) {
                  const A = randn32(rng, M * K), B = randn32(rng, K * N);
                  const C = filled(M * N, NaN);
                  const expected = new Float64Array(M * N);
                  ref.gemm(transA, transB, M, N, K, 1, A, B, 0, expected);
                  nk.gemm(transA, transB, M, N, K, 1, A, B, 0, C);
                  expectClose(`gemm ${mode} ${M}x${N}x${K} transA=${transA} transB=${transB} beta=0 over NaN`, C, expected);
                }
              }
            }
          }
        } finally {
          nk.setGemmMode('auto');
        }
      });
    });

    // GELU fused into the product's output (the model's MLP): the same values as gemm then geluForward or the
    // separate gelu' pass on every engine, shape and transpose (including products AMX computes transposed, N > M,
    // and K beyond one 512-deep chunk; with K in one chunk the step runs between the next block's tile products,
    // partial blocks included), and GELU and gelu' of the float64 product.
    describe('gemmGelu', () => {
      const shapes: [number, number, number][] = [[5, 7, 3], [70, 33, 40], [300, 96, 64], [257, 600, 48], [600, 257, 48], [300, 64, 1100], [64, 300, 1100], [1, 1, 1]];
      for (const mode of ['blas', 'auto', ...(nk.gemmAmxAvailable() ? ['amx'] as const : [])] as const) {
        it(`${mode}: aux = gelu(C) and C = C·gelu'(aux), as the separate passes`, () => {
          const rng = new Rng(8800);
          try {
            nk.setGemmMode(mode);
            for (const [M, N, K] of shapes) {
              for (const transA of [false, true]) {
                for (const transB of [false, true]) {
                  const what = `${mode} ${M}x${N}x${K} transA=${transA} transB=${transB}`;
                  const A = randn32(rng, M * K), B = randn32(rng, K * N);
                  const [alpha, beta] = M === 70 ? [0.7, 0.3] : [1, 0];
                  const C0 = randn32(rng, M * N);
                  // forward: C = pre-activation, aux = gelu(C)
                  const want = Float32Array.from(C0), wantY = new Float32Array(M * N);
                  nk.gemm(transA, transB, M, N, K, alpha, A, B, beta, want);
                  nk.geluForward(wantY, want, M * N);
                  const C = Float32Array.from(C0), Y = filled(M * N, NaN);
                  nk.gemmGelu(transA, transB, M, N, K, alpha, A, B, beta, C, 1, Y);
                  assert.deepStrictEqual(C, want, `${what}: pre-activation`);
                  assert.deepStrictEqual(Y, wantY, `${what}: gelu`);
                  const c64 = to64(C0);
                  ref.gemm(transA, transB, M, N, K, alpha, A, B, beta, c64);
                  expectClose(`${what}: gelu vs float64`, Y, ref.gelu(c64), 1e-4);
                  // in place (no pre-activation kept)
                  const Ci = Float32Array.from(C0);
                  nk.gemmGelu(transA, transB, M, N, K, alpha, A, B, beta, Ci, 1, Ci);
                  assert.deepStrictEqual(Ci, wantY, `${what}: gelu in place`);
                  // backward: C = (product) · gelu'(pre)
                  const pre = randn32(rng, M * N);
                  const wantD = Float32Array.from(C0);
                  nk.gemm(transA, transB, M, N, K, alpha, A, B, beta, wantD);
                  const dx = geluGradPass(wantD, pre);
                  const D = Float32Array.from(C0);
                  nk.gemmGelu(transA, transB, M, N, K, alpha, A, B, beta, D, 2, pre);
                  assert.deepStrictEqual(D, dx, `${what}: gelu backward`);
                  const gelu1 = ref.geluGrad(pre);
                  expectClose(`${what}: gelu backward vs float64`, D, c64.map((c, i) => c * gelu1[i]!), 1e-4);
                }
              }
            }
          } finally {
            nk.setGemmMode('auto');
          }
        });
      }
      it('rejects an unknown kind', () => {
        const x = new Float32Array(4);
        assert.throws(() => nk.gemmGelu(false, false, 2, 2, 1, 1, x.subarray(0, 2), x.subarray(0, 2), 0, x, 3 as 1, x),
          /gemmGelu: argument 10 must be 1/);
      });
    });

    // The AMX-BF16 engine behind gemm (native/amx_gemm.cc), forced on for every shape: it must be as accurate
    // as float32 sgemm, by scaledErr.
    describe('gemm on AMX-BF16 (three bf16 pieces per float, six products)', { skip: !nk.gemmAmxAvailable() && 'this machine has no AMX' }, () => {
      before(() => nk.setGemmMode('amx'));
      after(() => nk.setGemmMode('auto'));
      // [300, 40, 700]: the rows split between threads in several chunks, each after the first packed while the
      // previous one is multiplied (K ≥ 512), over two k chunks. K ≥ 1024 with a small C: with two threads K is
      // split between them and their partial products added ([31, 65, 1100] computed transposed; [130, 20, 2100]
      // and [20, 130, 2100] with several 512-deep chunks per thread).
      const shapes: [number, number, number][] = [[1, 1, 1], [5, 13, 7], [17, 3, 33], [33, 47, 65], [64, 37, 129], [70, 100, 600], [31, 65, 1100], [300, 40, 700], [130, 20, 2100], [20, 130, 2100]];
      for (const [M, N, K] of shapes) {
        for (const transA of [false, true]) {
          for (const transB of [false, true]) {
            it(`M=${M} N=${N} K=${K} transA=${transA} transB=${transB}: error at or below float32 sgemm's`, () => {
              const rng = new Rng(900 + M * 7 + N * 3 + K + (transA ? 1000 : 0) + (transB ? 2000 : 0));
              // Magnitudes over 8 decades, so the bf16 pieces of small and large values both matter.
              const A = randn32(rng, M * K).map((x) => x * 10 ** (4 * (2 * rng.next() - 1)));
              const B = randn32(rng, K * N).map((x) => x * 10 ** (4 * (2 * rng.next() - 1)));
              const absA = A.map(Math.abs), absB = B.map(Math.abs);
              for (const [alpha, beta] of [[1, 0], [0.7, 0.3], [-1.5, 1]]) {
                const C0 = randn32(rng, M * N);
                const expected = to64(C0);
                ref.gemm(transA, transB, M, N, K, alpha, A, B, beta, expected);
                const scale = new Float64Array(M * N).map((_, i) => Math.abs(beta * C0[i]!));
                ref.gemm(transA, transB, M, N, K, Math.abs(alpha), absA, absB, 1, scale);
                const amx = Float32Array.from(C0);
                nk.gemm(transA, transB, M, N, K, alpha, A, B, beta, amx);
                nk.setGemmMode('blas');
                const blas = Float32Array.from(C0);
                nk.gemm(transA, transB, M, N, K, alpha, A, B, beta, blas);
                nk.setGemmMode('amx');
                const eAmx = scaledErr(amx, expected, scale), eBlas = scaledErr(blas, expected, scale);
                assert.ok(eAmx <= 2 * eBlas + 1.2e-7, `alpha=${alpha} beta=${beta}: AMX error ${eAmx.toExponential(2)} vs sgemm ${eBlas.toExponential(2)}`);
              }
            });
          }
        }
      }

      it('honours subarray offsets, and beta = 0 ignores NaN already in C', () => {
        const rng = new Rng(77);
        const M = 40, N = 50, K = 70;
        const bigA = randn32(rng, M * K + 11), bigB = randn32(rng, K * N + 5), bigC = randn32(rng, M * N + 8);
        bigC.fill(NaN, 4, 4 + M * N);
        const before = Float32Array.from(bigC);
        const A = bigA.subarray(3, 3 + M * K), B = bigB.subarray(5), C = bigC.subarray(4, 4 + M * N);
        const expected = new Float64Array(M * N);
        ref.gemm(false, true, M, N, K, 1.25, A, B, 0, expected);
        nk.gemm(false, true, M, N, K, 1.25, A, B, 0, C);
        expectClose('AMX gemm on subarrays', C, expected);
        for (let i = 0; i < 4; i++) assert.ok(Object.is(bigC[i], before[i]), `C prefix element ${i} changed`);
        for (let i = 4 + M * N; i < bigC.length; i++) assert.ok(Object.is(bigC[i], before[i]), `C suffix element ${i} changed`);
      });

      // Every NaN bit pattern must reach the product. Splitting rounds each float to bf16 by integer addition;
      // a NaN whose payload fills the top mantissa bits (0x7fffffff, 0xffffffff, 0x7fff8000) used to carry into
      // the sign in all three pieces, which came out ±0: the NaN vanished and the row was finite.
      it('a NaN of any payload in A or B reaches its row or column of C (every transpose)', () => {
        const M = 256, N = 48, K = 96;
        for (const bits of NAN_PATTERNS) {
          for (const transA of [false, true]) {
            for (const transB of [false, true]) {
              const tag = `NaN 0x${bits.toString(16)} transA=${transA} transB=${transB}`;
              const A = filled(M * K, 0.5), B = filled(K * N, 0.25);
              const ia = 3, ka = 5, jb = 7, kb = 11;  // A's NaN at op(A)[ia, ka], B's at op(B)[kb, jb]
              new Uint32Array(A.buffer)[transA ? ka * M + ia : ia * K + ka] = bits;
              const C = new Float32Array(M * N);
              nk.gemm(transA, transB, M, N, K, 1, A, B, 0, C);  // B gets its NaN below
              expectNaNAt(`${tag}: A's NaN`, C, M, N, (i) => i === ia);
              new Uint32Array(B.buffer)[transB ? jb * K + kb : kb * N + jb] = bits;
              const C2 = new Float32Array(M * N);
              nk.gemm(transA, transB, M, N, K, 1, filled(M * K, 0.5), B, 0, C2);
              expectNaNAt(`${tag}: B's NaN`, C2, M, N, (_, j) => j === jb);
            }
          }
        }
      });

      // K ≥ 1024 with a small C: two threads each multiply half of K and add their partial products.
      it('a NaN in either half of K reaches its row or column of C (products split along K)', () => {
        const M = 40, N = 24, K = 1100;
        for (const ka of [5, 1000]) {
          for (const transA of [false, true]) {
            for (const transB of [false, true]) {
              const tag = `k=${ka} transA=${transA} transB=${transB}`;
              const A = filled(M * K, 0.5), B = filled(K * N, 0.25);
              new Uint32Array(A.buffer)[transA ? ka * M + 3 : 3 * K + ka] = 0x7fffffff;
              const C = filled(M * N, NaN);
              nk.gemm(transA, transB, M, N, K, 1, A, B, 0, C);
              expectNaNAt(`${tag}: A's NaN`, C, M, N, (i) => i === 3);
              const A2 = filled(M * K, 0.5);
              new Uint32Array(B.buffer)[transB ? 7 * K + ka : ka * N + 7] = 0xffc00000;
              nk.gemm(transA, transB, M, N, K, 1, A2, B, 0, C);
              expectNaNAt(`${tag}: B's NaN`, C, M, N, (_, j) => j === 7);
            }
          }
        }
      });

      it('setGemmMode rejects an unknown engine', () => {
        assert.throws(() => nk.setGemmMode('gpu' as 'amx'), /setGemmMode: argument 0 must be 'auto', 'blas' or 'amx'/);
        assert.equal(nk.getGemmMode(), 'amx');
      });
    });

    // A right operand packed once and used by many products (the decoder's frozen weights): on the AMX engine
    // where the machine has AMX, else float32 panels of 32 columns (native/f32_packed.cc, AVX-512F). Either way
    // it must be as accurate as float32 sgemm on B, with the same scaled error as the AMX suite above.
    describe('gemmPacked with B packed beforehand (AMX, or float32 panels)', { skip: nk.gemmPackSize(8, 8) === 0 && 'this build has no packing engine' }, () => {
      before(() => nk.setGemmMode('auto'));
      after(() => nk.setGemmMode('auto'));
      // Shapes: one panel or a few (the threads split C's rows), many (they split the panels: [100, 33] and
      // [300, 50]), N not a multiple of 32, tiny products on one thread ([37, 70] with 3 rows). Rows 3, 8, 45,
      // 64, 97: partial and whole register blocks; on AMX, the threads split C's columns (3, 45) or rows (64, 97).
      for (const [N, K] of [[37, 70], [100, 33], [64, 600], [300, 50]] as const) {
        for (const transA of [false, true]) {
          for (const transB of [false, true]) {
            it(`packed B: N=${N} K=${K} transA=${transA} transB=${transB}, rows 3, 8, 45, 64, 97`, () => {
              const rng = new Rng(950 + N + K + (transA ? 1000 : 0) + (transB ? 2000 : 0));
              const B = randn32(rng, K * N).map((x) => x * 10 ** (4 * (2 * rng.next() - 1)));
              const packed = new Uint16Array(nk.gemmPackSize(N, K));
              assert.ok(packed.length > 0);
              assert.equal(nk.gemmPackB(transB, N, K, B, packed), true);
              const absB = B.map(Math.abs);
              for (const M of [3, 8, 45, 64, 97]) {
                const A = randn32(rng, M * K).map((x) => x * 10 ** (4 * (2 * rng.next() - 1)));
                for (const [alpha, beta] of [[1, 0], [-1.5, 1]]) {
                  // beta = 0 must not read C: it starts as NaN there
                  const C0 = beta === 0 ? new Float32Array(M * N).fill(NaN) : randn32(rng, M * N);
                  const expected = beta === 0 ? new Float64Array(M * N) : to64(C0);
                  ref.gemm(transA, transB, M, N, K, alpha, A, B, beta, expected);
                  const scale = new Float64Array(M * N).map((_, i) => (beta === 0 ? 0 : Math.abs(beta * C0[i]!)));
                  ref.gemm(transA, transB, M, N, K, Math.abs(alpha), A.map(Math.abs), absB, 1, scale);
                  const C = Float32Array.from(C0);
                  nk.gemmPacked(transA, transB, M, N, K, alpha, A, B, packed, beta, C);
                  nk.setGemmMode('blas');
                  const blas = Float32Array.from(C0);
                  nk.gemm(transA, transB, M, N, K, alpha, A, B, beta, blas);
                  nk.setGemmMode('auto');
                  const e = scaledErr(C, expected, scale), eBlas = scaledErr(blas, expected, scale);
                  assert.ok(e <= 2 * eBlas + 1.2e-7, `M=${M} alpha=${alpha} beta=${beta}: packed error ${e.toExponential(2)} vs sgemm ${eBlas.toExponential(2)}`);
                }
              }
            });
          }
        }
      }

      it('packed B: a packing of the wrong size is refused, naming the argument', () => {
        const B = new Float32Array(20 * 30);
        assert.throws(() => nk.gemmPackB(false, 20, 30, B, new Uint16Array(10)), /gemmPackB.*argument 4|Uint16Array|elements/);
        const A = new Float32Array(16 * 30), C = new Float32Array(16 * 20);
        assert.throws(() => nk.gemmPacked(false, false, 16, 20, 30, 1, A, B, new Uint16Array(10), 0, C), /elements/);
      });

      it('packed B: a NaN of any payload in B reaches its column of C, and only it (every transpose)', () => {
        const M = 64, N = 48, K = 96;
        for (const bits of NAN_PATTERNS) {
          for (const transA of [false, true]) {
            for (const transB of [false, true]) {
              const tag = `NaN 0x${bits.toString(16)} transA=${transA} transB=${transB}`;
              const B = filled(K * N, 0.25), jb = 7, kb = 11;  // B's NaN at op(B)[kb, jb]
              new Uint32Array(B.buffer)[transB ? jb * K + kb : kb * N + jb] = bits;
              const packed = new Uint16Array(nk.gemmPackSize(N, K));
              assert.ok(nk.gemmPackB(transB, N, K, B, packed));
              const C = new Float32Array(M * N);
              nk.gemmPacked(transA, transB, M, N, K, 1, filled(M * K, 0.5), B, packed, 0, C);
              expectNaNAt(`${tag}: B's NaN`, C, M, N, (_, j) => j === jb);
            }
          }
        }
      });
    });

    // ------------------------------------------------------------------------------------------------
    describe('embedding', () => {
      const V = 37, D = 13, B = 3, T = 5, rows = B * T;

      it(`forward gathers rows exactly (V=${V} D=${D} rows=${rows})`, () => {
        const rng = new Rng(300);
        const table = randn32(rng, V * D);
        const ids = randInts(rng, rows, V);
        ids[0] = 0; ids[1] = V - 1; ids[2] = ids[3];
        const out = filled(rows * D, NaN);
        nk.embeddingForward(out, table, ids, rows, V, D);
        assert.deepEqual(Array.from(out), Array.from(ref.embeddingForward(table, ids, rows, V, D)));
      });

      it('backward scatter-adds into a pre-filled gradient (repeated ids sum)', () => {
        const rng = new Rng(301);
        const ids = randInts(rng, rows, V);
        ids[4] = ids[7] = ids[9] = 11;
        const dout = randn32(rng, rows * D);
        const dtable = randn32(rng, V * D);
        const expected = to64(dtable);
        ref.embeddingBackward(expected, dout, ids, rows, D);
        nk.embeddingBackward(dtable, dout, ids, rows, V, D);
        expectClose('embeddingBackward', dtable, expected);
        // the backward is the adjoint of the gather: check against finite differences too
        const table = randn32(rng, V * D);
        const g = filled(V * D, 0);
        nk.embeddingBackward(g, dout, ids, rows, V, D);
        expectGrad('embedding dtable', g, (t) => dot(dout, ref.embeddingForward(t, ids, rows, V, D)), table, rng);
      });

      it('rejects ids out of [0, V) with a RangeError naming the row', () => {
        const table = filled(V * D, 1);
        const out = filled(rows * D, 0);
        for (const bad of [V, -1, 1 << 20]) {
          const ids = new Int32Array(rows).fill(2);
          ids[6] = bad;
          assert.throws(() => nk.embeddingForward(out, table, ids, rows, V, D),
            (e: unknown) => e instanceof RangeError && /\b6\b/.test(e.message),
            `id ${bad} at row 6 should throw a RangeError mentioning row 6`);
        }
      });
    });

    // ------------------------------------------------------------------------------------------------
    describe('rmsnorm', () => {
      for (const [R, C] of [[7, 13], [1, 6], [5, 64], [3, 1]]) {
        it(`forward and accumulating backward R=${R} C=${C}`, () => {
          const rng = new Rng(400 + R * 100 + C);
          const x = randn32(rng, R * C);
          const y = filled(R * C, NaN);
          const rstd = filled(R, NaN);
          nk.rmsnormForward(y, rstd, x, R, C);
          const r = ref.rmsnorm(x, R, C);
          expectClose('rmsnorm y', y, r.y);
          expectClose('rmsnorm rstd', rstd, r.rstd);

          const dy = randn32(rng, R * C);
          const pre = randn32(rng, R * C);
          const dx = Float32Array.from(pre);
          nk.rmsnormBackward(dx, dy, y, rstd, R, C);
          expectGrad('rmsnorm dx (minus pre-filled)', sub(dx, pre), (xx) => dot(dy, ref.rmsnorm(xx, R, C).y), x, rng);
        });
      }

      it('an all-zero row gives y = 0, rstd = 1/sqrt(eps), dx = dy·rstd', () => {
        const C = 13;
        const x = new Float32Array(2 * C);
        x.set(randn32(new Rng(405), C), C); // row 1 random, row 0 zero
        const y = filled(2 * C, NaN), rstd = filled(2, NaN);
        nk.rmsnormForward(y, rstd, x, 2, C);
        for (let c = 0; c < C; c++) assert.equal(y[c], 0);
        assert.ok(Math.abs(rstd[0] - 1000) < 1e-2, `rstd of a zero row ${rstd[0]}`);
        const dy = randn32(new Rng(406), 2 * C);
        const dx = new Float32Array(2 * C);
        nk.rmsnormBackward(dx, dy, y, rstd, 2, C);
        for (let c = 0; c < C; c++) assert.ok(Math.abs(dx[c] - 1000 * dy[c]) <= 1e-5 * 1000 * Math.abs(dy[c]) + 1e-3);
      });

      it('honours subarray offsets', () => {
        const rng = new Rng(410);
        const R = 3, C = 13;
        const big = randn32(rng, R * C + 5);
        const x = big.subarray(5);
        const yBig = filled(R * C + 3, 42);
        const y = yBig.subarray(3);
        const rstd = new Float32Array(R);
        nk.rmsnormForward(y, rstd, x, R, C);
        expectClose('rmsnorm y on subarrays', y, ref.rmsnorm(x, R, C).y);
        assert.deepEqual(Array.from(yBig.subarray(0, 3)), [42, 42, 42]);
      });
    });

    // ------------------------------------------------------------------------------------------------
    // ------------------------------------------------------------------------------------------------
    describe('qkNormRope', () => {
      it('far positions (pos0 = 2000, as in long cached sampling) keep float32 accuracy', () => {
        const rng = new Rng(650);
        const B = 2, T = 3, N = 2, H = 16, pos0 = 2000;
        const x = randn32(rng, B * T * 3 * N * H);
        const y = new Float32Array(x.length), rstd = new Float32Array(B * T * 2 * N);
        nk.qkNormRopeForward(y, rstd, x, B, T, N, H, pos0);
        expectClose('qkNormRope y at pos0=2000', y, ref.qkNormRope(x, B, T, N, H, pos0).y, 1e-4);
      });

      // H = 2, 4, 8, 16 (whole heads per vector, with a partial last vector when 2·N·H is not a multiple of 16),
      // 32 and 64 (half-head vectors), and 6 (the plain loops).
      for (const [B, T, N, H, pos0] of [[3, 5, 2, 6, 0], [2, 3, 3, 4, 4], [1, 1, 2, 8, 9], [1, 5, 1, 2, 0],
        [2, 4, 9, 4, 1], [1, 3, 3, 16, 5], [2, 3, 3, 8, 0], [2, 2, 2, 32, 3], [1, 3, 1, 64, 7]]) {
        it(`forward, out of place and in place, B=${B} T=${T} N=${N} H=${H} pos0=${pos0}`, () => {
          const rng = new Rng(600 + B + T * 10 + N * 100 + H * 1000 + pos0);
          const n = B * T * 3 * N * H;
          const x = randn32(rng, n);
          const y = filled(n, NaN);
          const rstd = filled(B * T * 2 * N, NaN);
          nk.qkNormRopeForward(y, rstd, x, B, T, N, H, pos0);
          const r = ref.qkNormRope(x, B, T, N, H, pos0);
          expectClose('qkNormRope y', y, r.y);
          expectClose('qkNormRope rstd', rstd, r.rstd);

          // in place (y = x): the same values, v left as it was
          const xi = Float32Array.from(x), rstdi = filled(B * T * 2 * N, NaN);
          nk.qkNormRopeForward(xi, rstdi, xi, B, T, N, H, pos0);
          expectClose('qkNormRope y in place', xi, r.y);
          expectClose('qkNormRope rstd in place', rstdi, r.rstd);
        });
      }
    });

    // ------------------------------------------------------------------------------------------------
    describe('attention', () => {
      // H = 16 with T ≤ 16 takes the single-vector head kernels (T = 14 as in the (256, 2, 16, 14, 20, 256) benchmark config, 16, 1).
      for (const [B, T, N, H] of [[3, 5, 2, 6], [2, 1, 3, 4], [1, 9, 1, 8], [2, 6, 2, 2], [2, 14, 3, 16], [1, 16, 2, 16], [2, 1, 2, 16]]) {
        it(`forward, log-sum-exp, written backward B=${B} T=${T} N=${N} H=${H}`, () => {
          const rng = new Rng(700 + B + T * 10 + N * 100 + H * 1000);
          const n = B * T * 3 * N * H;
          const qkv = randn32(rng, n, 1.3);
          const out = filled(B * T * N * H, NaN);
          const lse = filled(B * N * T, NaN);
          nk.attentionForward(out, lse, qkv, B, T, N, H);
          const r = ref.attention(qkv, B, T, N, H);
          expectClose('attention out', out, r.out);
          expectClose('attention lse', lse, r.lse);

          const dout = randn32(rng, B * T * N * H);
          const dqkv = filled(n, -5);
          nk.attentionBackward(dqkv, dout, lse, qkv, B, T, N, H);
          expectGrad('attention dqkv', dqkv, (xx) => dot(dout, ref.attention(xx, B, T, N, H).out), qkv, rng, 400);
        });
      }

      // q and k raw, normalised and rotated inside the kernels (the model's form): against the float64
      // composition attention(qkNormRope(x)); small-head path (H = 16, T ≤ 16), the general path with
      // vector (H = 16, 32, 64) and scalar (H = 6) row helpers; in place (dqkv = qkv) as the model runs it.
      for (const [B, T, N, H] of [[2, 14, 3, 16], [1, 16, 2, 16], [2, 1, 2, 16], [2, 20, 2, 16], [1, 19, 2, 32], [2, 9, 1, 64], [2, 7, 2, 6], [1, 45, 2, 64]]) {
        it(`with q/k normalisation inside: forward, rstd, gradient, in place B=${B} T=${T} N=${N} H=${H}`, () => {
          const rng = new Rng(730 + B + T * 10 + N * 100 + H * 1000);
          const n = B * T * 3 * N * H;
          const x = randn32(rng, n, 1.3);
          const composed = (xx: ArrayLike<number>) => ref.attention(ref.qkNormRope(xx, B, T, N, H, 0).y, B, T, N, H);
          const out = filled(B * T * N * H, NaN), lse = filled(B * N * T, NaN), rstd = filled(B * T * 2 * N, NaN);
          nk.attentionForward(out, lse, x, B, T, N, H, rstd);
          const r = composed(x);
          expectClose('attention out (q/k normalised inside)', out, r.out);
          expectClose('attention lse (q/k normalised inside)', lse, r.lse);
          expectClose('q/k rstd', rstd, ref.qkNormRope(x, B, T, N, H, 0).rstd);

          const dout = randn32(rng, B * T * N * H);
          const dx = filled(n, -5);
          nk.attentionBackward(dx, dout, lse, x, B, T, N, H, rstd);
          expectGrad('attention d(raw qkv)', dx, (xx) => dot(dout, composed(xx).out), x, rng, 300);

          const xi = Float32Array.from(x);
          nk.attentionBackward(xi, dout, lse, xi, B, T, N, H, rstd);
          expectClose('attention d(raw qkv) written over qkv', xi, dx, 1e-6);
        });
      }

      it('q/k normalised inside needs an even head size (RoPE), and an rstd buffer of B·T·2N', () => {
        const B = 1, T = 2, N = 1, H = 3;
        const x = new Float32Array(B * T * 3 * N * H), out = new Float32Array(B * T * N * H), lse = new Float32Array(B * N * T);
        assert.throws(() => nk.attentionForward(out, lse, x, B, T, N, H, new Float32Array(B * T * 2 * N)),
          /attentionForward: argument 6 \(head size\) must be even/);
        assert.throws(() => nk.attentionBackward(new Float32Array(x.length), out, lse, x, B, T, N, H, new Float32Array(B * T * 2 * N)),
          /attentionBackward: argument 7 \(head size\) must be even/);
        assert.throws(() => nk.attentionForward(new Float32Array(8), new Float32Array(4), new Float32Array(24), 1, 2, 2, 2, new Float32Array(3)),
          /attentionForward: argument 7 has 3 elements, needs 8/);
      });

      // Larger shapes cross the kernel's 8-row blocks and 16/32-wide column blocks with ragged ends.
      for (const [B, T, N, H] of [[2, 40, 3, 32], [1, 70, 2, 40], [2, 33, 1, 64], [1, 17, 2, 18]]) {
      it(`larger shape B=${B} T=${T} N=${N} H=${H} (forward and sampled gradient)`, () => {
        const rng = new Rng(710 + T + H);
        const qkv = randn32(rng, B * T * 3 * N * H);
        const out = new Float32Array(B * T * N * H), lse = new Float32Array(B * N * T);
        nk.attentionForward(out, lse, qkv, B, T, N, H);
        const r = ref.attention(qkv, B, T, N, H);
        expectClose('attention out', out, r.out);
        expectClose('attention lse', lse, r.lse);
        const dout = randn32(rng, out.length);
        const dqkv = new Float32Array(qkv.length);
        nk.attentionBackward(dqkv, dout, lse, qkv, B, T, N, H);
        expectGrad('attention dqkv (sampled)', dqkv, (xx) => dot(dout, ref.attention(xx, B, T, N, H).out), qkv, rng, 120);
      });
      }

      for (const H of [6, 16]) it(`large scores stay finite (softmax is max-subtracted), H=${H}`, () => {
        const rng = new Rng(720);
        const B = 1, T = 4, N = 1;
        const qkv = randn32(rng, B * T * 3 * N * H, 30);
        const out = new Float32Array(B * T * N * H);
        const lse = new Float32Array(B * N * T);
        nk.attentionForward(out, lse, qkv, B, T, N, H);
        const r = ref.attention(qkv, B, T, N, H);
        expectClose('attention out with |scores| ~ 1e3', out, r.out, 1e-4);
        expectClose('attention lse with |scores| ~ 1e3', lse, r.lse, 1e-4);
        // the backward recomputes the softmax from lse: still finite and right at this scale
        const dout = randn32(rng, out.length);
        const dqkv = new Float32Array(qkv.length);
        nk.attentionBackward(dqkv, dout, lse, qkv, B, T, N, H);
        assert.ok(dqkv.every(Number.isFinite), 'dqkv has non-finite entries');
      });

      // H a multiple of 16 takes the vectorised row kernel (with 1, 2 and 3 chunks; cached rows in fours plus a tail);
      // H = 16 with N a multiple of 16 the sixteen-heads kernel (N = 17 falls back to the row kernel); 2 to 16 heads of
      // H ≤ 64 with N·H ≤ 256 the all-heads-per-row kernel (H = 128 falls back to the row kernel).
      for (const [B, T, N, H, Tmax] of [[2, 7, 2, 6, 10], [3, 5, 1, 4, 5], [1, 1, 2, 6, 3], [2, 11, 2, 16, 13], [1, 9, 1, 32, 9], [1, 6, 2, 48, 8],
        [3, 14, 16, 16, 14], [2, 21, 32, 16, 23], [1, 1, 16, 16, 2], [2, 5, 17, 16, 6],
        [2, 9, 4, 64, 11], [3, 7, 4, 32, 7], [1, 5, 2, 48, 6], [2, 6, 8, 32, 8], [2, 4, 5, 16, 5], [1, 3, 2, 128, 4]]) {
        it(`decode with a KV cache equals the training-form rows B=${B} T=${T} N=${N} H=${H} Tmax=${Tmax}`, () => {
          const rng = new Rng(750 + B + T * 10 + N * 100 + H * 1000);
          const tokStride = 3 * N * H;
          const qkv = randn32(rng, B * T * tokStride);
          const full = new Float32Array(B * T * N * H);
          nk.attentionForward(full, new Float32Array(B * N * T), qkv, B, T, N, H);
          // caches hold k and v of positions < T; beyond that NaN, which must never be read
          const kCache = filled(B * Tmax * N * H, NaN);
          const vCache = filled(B * Tmax * N * H, NaN);
          for (let b = 0; b < B; b++) {
            for (let t = 0; t < T; t++) {
              for (let i = 0; i < N * H; i++) {
                kCache[(b * Tmax + t) * N * H + i] = qkv[(b * T + t) * tokStride + N * H + i];
                vCache[(b * Tmax + t) * N * H + i] = qkv[(b * T + t) * tokStride + 2 * N * H + i];
              }
            }
          }
          const cases: [number, number][] = [[0, T], [T - 1, 1]];
          if (T > 3) cases.push([2, T - 2], [3, 1]);
          for (const [pos0, Tq] of cases) {
            const q = new Float32Array(B * Tq * tokStride);
            for (let b = 0; b < B; b++) {
              for (let t = 0; t < Tq; t++) {
                q.set(qkv.subarray((b * T + pos0 + t) * tokStride, (b * T + pos0 + t + 1) * tokStride), (b * Tq + t) * tokStride);
              }
            }
            // the decode kernel may only look at positions <= pos0+Tq-1: poison the rest of the cache too
            const kc = Float32Array.from(kCache), vc = Float32Array.from(vCache);
            for (let b = 0; b < B; b++) {
              kc.fill(NaN, (b * Tmax + pos0 + Tq) * N * H, (b + 1) * Tmax * N * H);
              vc.fill(NaN, (b * Tmax + pos0 + Tq) * N * H, (b + 1) * Tmax * N * H);
            }
            // the kernel appends the new keys/values itself: poison their rows as well
            for (let b = 0; b < B; b++) {
              kc.fill(NaN, (b * Tmax + pos0) * N * H, (b * Tmax + pos0 + Tq) * N * H);
              vc.fill(NaN, (b * Tmax + pos0) * N * H, (b * Tmax + pos0 + Tq) * N * H);
            }
            const out = filled(B * Tq * N * H, NaN);
            nk.attentionDecode(out, q, kc, vc, B, Tq, N, H, Tmax, pos0);
            for (let b = 0; b < B; b++) { // positions 0 .. pos0+Tq-1 of each cache now hold k and v exactly
              const start = b * Tmax * N * H, end = (b * Tmax + pos0 + Tq) * N * H;
              assert.deepStrictEqual(kc.subarray(start, end), kCache.subarray(start, end), 'appended keys');
              assert.deepStrictEqual(vc.subarray(start, end), vCache.subarray(start, end), 'appended values');
            }
            const expectedRows = new Float32Array(B * Tq * N * H);
            for (let b = 0; b < B; b++) {
              expectedRows.set(full.subarray((b * T + pos0) * N * H, (b * T + pos0 + Tq) * N * H), b * Tq * N * H);
            }
            expectClose(`attentionDecode pos0=${pos0} Tq=${Tq} vs training form`, out, expectedRows);
            expectClose(`attentionDecode pos0=${pos0} Tq=${Tq} vs float64 reference`, out,
              ref.attentionDecode(q, kc, vc, B, Tq, N, H, Tmax, pos0));
          }
        });
      }
    });

    // ------------------------------------------------------------------------------------------------
    describe('gelu', () => {
      it("forward (tanh approximation), and gelu' as gemmGelu's separate pass applies it, n=1001", () => {
        const rng = new Rng(800);
        const n = 1001;
        const x = new Float32Array(n);
        for (let i = 0; i < n; i++) x[i] = -6 + (12 * i) / (n - 1) + 0.01 * rng.normal();
        x[0] = -20; x[1] = 20; x[2] = 0; x[3] = -1e-3; x[4] = 1e-3;
        const y = filled(n, NaN);
        nk.geluForward(y, x, n);
        const yr = ref.gelu(x);
        expectClose('gelu y', y, yr);
        for (let i = 0; i < n; i++) {
          assert.ok(Math.abs(y[i] - yr[i]) <= 1e-5 * Math.abs(yr[i]) + 1e-6, `gelu(${x[i]}) = ${y[i]}, expected ${yr[i]}`);
        }
        const dy = randn32(rng, n);
        expectGrad("dy · gelu'(x)", geluGradPass(dy, x), (xx) => dot(dy, ref.gelu(xx)), x, rng, n);
      });
    });

    // ------------------------------------------------------------------------------------------------
    describe('crossEntropy', () => {
      for (const [R, V] of [[7, 37], [1, 5], [4, 517]]) {
        it(`weighted loss, rowLoss, written dlogits R=${R} V=${V}`, () => {
          const rng = new Rng(900 + R * 1000 + V);
          const logits = randn32(rng, R * V, 2);
          const targets = randInts(rng, R, V);
          const weights = new Float32Array(R);
          for (let r = 0; r < R; r++) weights[r] = 0.25 + rng.next();
          if (R > 5) {
            weights[2] = 0; targets[2] = -1;     // skipped rows may carry any target
            weights[5] = 0; targets[5] = V + 3;
          }
          const gradScale = 0.37;
          const rowLoss = filled(R, NaN);
          const dlogits = filled(R * V, 99);
          const loss = nk.crossEntropy(logits, targets, weights, R, V, rowLoss, dlogits, gradScale);
          const r = ref.crossEntropy(logits, targets, weights, R, V);
          assert.ok(Math.abs(loss - r.loss) <= 1e-5 * Math.abs(r.loss), `loss ${loss} vs reference ${r.loss}`);
          expectClose('rowLoss', rowLoss, r.rowLoss);
          for (let row = 0; row < R; row++) {
            if (weights[row] !== 0) continue;
            assert.equal(rowLoss[row], 0, `rowLoss of skipped row ${row}`);
            for (let v = 0; v < V; v++) assert.equal(dlogits[row * V + v], 0, `dlogits of skipped row ${row} at ${v}`);
          }
          expectGrad('crossEntropy dlogits', dlogits,
            (l) => gradScale * ref.crossEntropy(l, targets, weights, R, V).loss, logits, rng, 300);

          const lossOnly = nk.crossEntropy(logits, targets, weights, R, V, null, null, 1);
          assert.ok(Math.abs(lossOnly - loss) <= 1e-6 * Math.abs(loss), `loss without outputs ${lossOnly} vs ${loss}`);

          // dlogits = logits itself (the training step's in-place loss): the same loss, and the gradient in place.
          const inPlace = Float32Array.from(logits);
          const lossIn = nk.crossEntropy(inPlace, targets, weights, R, V, null, inPlace, gradScale);
          assert.equal(lossIn, loss, 'in-place loss');
          for (let i = 0; i < R * V; i++) assert.equal(inPlace[i], dlogits[i], `in-place gradient at ${i}`);
        });
      }

      it('honours a logits subarray', () => {
        const rng = new Rng(950);
        const R = 3, V = 37;
        const big = randn32(rng, R * V + 9);
        const logits = big.subarray(9);
        const targets = randInts(rng, R, V);
        const w = filled(R, 1);
        const loss = nk.crossEntropy(logits, targets, w, R, V, null, null, 1);
        const r = ref.crossEntropy(logits, targets, w, R, V).loss;
        assert.ok(Math.abs(loss - r) <= 1e-5 * r, `loss ${loss} vs ${r}`);
      });

      it('rejects targets out of [0, V) on weighted rows with a RangeError', () => {
        const R = 4, V = 37;
        const logits = filled(R * V, 0);
        const w = filled(R, 1);
        for (const bad of [V, -1]) {
          const targets = new Int32Array([1, 2, bad, 3]);
          assert.throws(() => nk.crossEntropy(logits, targets, w, R, V, null, null, 1), RangeError, `target ${bad}`);
          assert.throws(() => nk.crossEntropy(logits, targets, w, R, V, new Float32Array(R), new Float32Array(R * V), 1),
            RangeError, `target ${bad} with outputs`);
        }
      });

      it('extreme logits (spread of hundreds) stay finite and accurate', () => {
        const rng = new Rng(960);
        const R = 5, V = 37;
        const logits = randn32(rng, R * V, 60);
        logits[3] = 300; logits[V + 4] = -300;
        const targets = randInts(rng, R, V);
        targets[0] = 3;
        const w = filled(R, 1);
        const rowLoss = new Float32Array(R), dl = new Float32Array(R * V);
        const loss = nk.crossEntropy(logits, targets, w, R, V, rowLoss, dl, 1);
        const r = ref.crossEntropy(logits, targets, w, R, V);
        assert.ok(Math.abs(loss - r.loss) <= 1e-5 * r.loss, `loss ${loss} vs ${r.loss}`);
        expectClose('rowLoss with extreme logits', rowLoss, r.rowLoss);
        assert.ok(dl.every(Number.isFinite), 'dlogits finite');
        expectGrad('crossEntropy dlogits, extreme logits', dl, (l) => ref.crossEntropy(l, targets, w, R, V).loss, logits, rng, 185);
      });

      it('uniform logits give log V per row', () => {
        const R = 3, V = 37;
        const rowLoss = new Float32Array(R);
        const loss = nk.crossEntropy(filled(R * V, 0.5), new Int32Array([0, 17, 36]), filled(R, 1), R, V, rowLoss, null, 1);
        assert.ok(Math.abs(loss - R * Math.log(V)) < 1e-5, `loss ${loss}`);
        for (const l of rowLoss) assert.ok(Math.abs(l - Math.log(V)) < 1e-6, `row loss ${l}`);
      });
    });

    // ------------------------------------------------------------------------------------------------
    describe('klDiv', () => {
      for (const [R, V] of [[6, 37], [1, 3], [3, 517]]) {
        it(`weighted KL(p‖q), rowLoss, written dlogitsQ R=${R} V=${V}`, () => {
          const rng = new Rng(1000 + R * 1000 + V);
          const lp = randn32(rng, R * V, 1.5);
          const lq = randn32(rng, R * V, 1.5);
          const weights = new Float32Array(R);
          for (let r = 0; r < R; r++) weights[r] = 0.25 + rng.next();
          if (R > 4) weights[4] = 0;
          const gradScale = 0.5;
          const rowLoss = filled(R, NaN);
          const dq = filled(R * V, 99);
          const loss = nk.klDiv(lp, lq, weights, R, V, rowLoss, dq, gradScale);
          const r = ref.klDiv(lp, lq, weights, R, V);
          assert.ok(Math.abs(loss - r.loss) <= 1e-5 * Math.abs(r.loss), `loss ${loss} vs reference ${r.loss}`);
          for (let row = 0; row < R; row++) {
            if (weights[row] === 0) {
              // the contract only fixes the weighted sum; a zero-weight row may report 0 or its KL
              assert.ok(rowLoss[row] === 0 || Math.abs(rowLoss[row] - r.rowLoss[row]) <= 1e-5 * maxAbs(r.rowLoss),
                `rowLoss of zero-weight row ${row}: ${rowLoss[row]}`);
            } else {
              assert.ok(Math.abs(rowLoss[row] - r.rowLoss[row]) <= 1e-5 * maxAbs(r.rowLoss),
                `rowLoss[${row}] ${rowLoss[row]} vs ${r.rowLoss[row]}`);
            }
          }
          expectGrad('klDiv dlogitsQ', dq, (l) => gradScale * ref.klDiv(lp, l, weights, R, V).loss, lq, rng, 300);
          const lossOnly = nk.klDiv(lp, lq, weights, R, V, null, null, 1);
          assert.ok(Math.abs(lossOnly - loss) <= 1e-6 * Math.abs(loss), `loss without outputs ${lossOnly} vs ${loss}`);

          // dlq = lq itself (the kl_pre step's in-place loss): the same loss, and the same gradient in place.
          const inPlace = Float32Array.from(lq);
          const lossIn = nk.klDiv(lp, inPlace, weights, R, V, null, inPlace, gradScale);
          assert.equal(lossIn, loss, 'in-place loss');
          for (let i = 0; i < R * V; i++) assert.equal(inPlace[i], dq[i], `in-place gradient at ${i}`);
        });
      }

      it('p with underflowing probabilities (0·log 0 terms) stays finite and accurate', () => {
        const rng = new Rng(1060);
        const R = 4, V = 37;
        const lp = randn32(rng, R * V, 50);
        const lq = randn32(rng, R * V, 2);
        const w = filled(R, 1);
        const rowLoss = new Float32Array(R), dq = new Float32Array(R * V);
        const loss = nk.klDiv(lp, lq, w, R, V, rowLoss, dq, 1);
        const r = ref.klDiv(lp, lq, w, R, V);
        assert.ok(Number.isFinite(loss) && Math.abs(loss - r.loss) <= 1e-5 * r.loss, `loss ${loss} vs ${r.loss}`);
        expectClose('rowLoss with peaked p', rowLoss, r.rowLoss);
        expectGrad('klDiv dlogitsQ, peaked p', dq, (l) => ref.klDiv(lp, l, w, R, V).loss, lq, rng, 148);
      });

      it('is zero, with zero gradient, when the logits are equal (or differ by a per-row constant)', () => {
        const rng = new Rng(1050);
        const R = 5, V = 37;
        const lp = randn32(rng, R * V, 3);
        const w = filled(R, 1);
        const dq = filled(R * V, 99);
        const rowLoss = filled(R, NaN);
        const loss = nk.klDiv(lp, Float32Array.from(lp), w, R, V, rowLoss, dq, 1);
        assert.ok(Math.abs(loss) <= 1e-6, `KL(p‖p) = ${loss}`);
        for (const l of rowLoss) assert.ok(Math.abs(l) <= 1e-6, `row KL(p‖p) = ${l}`);
        assert.ok(maxAbs(dq) <= 1e-7, `gradient of KL(p‖p) has max |g| = ${maxAbs(dq)}`);
        const shifted = Float32Array.from(lp);
        for (let r = 0; r < R; r++) for (let v = 0; v < V; v++) shifted[r * V + v] += r - 2;
        const loss2 = nk.klDiv(lp, shifted, w, R, V, null, dq, 1);
        assert.ok(Math.abs(loss2) <= 1e-5, `KL with shifted logits = ${loss2}`);
        assert.ok(maxAbs(dq) <= 1e-6, `gradient with shifted logits max |g| = ${maxAbs(dq)}`);
      });
    });

    // ------------------------------------------------------------------------------------------------
    describe('optimizers', () => {
      it('adamwStep matches the float64 reference over three steps (n=1001)', () => {
        const rng = new Rng(1100);
        const n = 1001;
        const p = randn32(rng, n);
        const m = filled(n, 0);
        const v = filled(n, 0);
        const [lr, b1, b2, eps, wd] = [1e-2, 0.9, 0.999, 1e-8, 0.02];
        for (let t = 1; t <= 3; t++) {
          const g = randn32(rng, n, 0.1);
          if (t === 1) g[5] = 0; // eps-dominated denominator on the first step
          const bc1 = 1 - Math.pow(b1, t), bc2 = 1 - Math.pow(b2, t);
          const p64 = to64(p), m64 = to64(m), v64 = to64(v);
          // the kernel takes float32 hyper-parameters: 1 − fround(0.999) differs from 1e-3 by 5e-5 relative,
          // which is the kernel's contract, not an error, so the reference uses the rounded values too
          const f = Math.fround;
          ref.adamwStep(p64, g, m64, v64, f(lr), f(b1), f(b2), f(eps), f(wd), f(bc1), f(bc2));
          const pOld = to64(p);
          nk.adamwStep(p, g, m, v, n, lr, b1, b2, eps, wd, bc1, bc2);
          expectClose(`adamw step ${t} update`, sub(p, pOld), sub(p64, pOld), 1e-4);
          expectClose(`adamw step ${t} m`, m, m64);
          expectClose(`adamw step ${t} v`, v, v64);
        }
      });

      it('adamwStep weight decay is decoupled (zero gradient and moments: p ← p(1 − lr·wd))', () => {
        const rng = new Rng(1101);
        const n = 37;
        const p = randn32(rng, n);
        const expected = to64(p).map((x) => x * (1 - 0.1 * 0.5));
        nk.adamwStep(p, filled(n, 0), filled(n, 0), filled(n, 0), n, 0.1, 0.9, 0.999, 1e-8, 0.5, 0.1, 0.001);
        expectClose('adamw pure decay', p, expected);
      });

      it('sgdStep matches p -= lr·(g + wd·p)', () => {
        const rng = new Rng(1102);
        const n = 1001;
        const p = randn32(rng, n);
        const g = randn32(rng, n);
        const p64 = to64(p);
        ref.sgdStep(p64, g, 0.05, 0.1);
        const pOld = to64(p);
        nk.sgdStep(p, g, n, 0.05, 0.1);
        expectClose('sgd update', sub(p, pOld), sub(p64, pOld), 1e-4);
      });

      it('kernels work on subarrays of one flat parameter buffer', () => {
        const rng = new Rng(1103);
        const flat = randn32(rng, 100);
        const orig = Float32Array.from(flat);
        const g = randn32(rng, 30);
        nk.sgdStep(flat.subarray(40, 70), g, 30, 0.1, 0);
        for (let i = 0; i < 100; i++) {
          const expected = i >= 40 && i < 70 ? orig[i] - 0.1 * g[i - 40] : orig[i];
          assert.ok(Math.abs(flat[i] - expected) <= 1e-6, `flat[${i}] = ${flat[i]}, expected ${expected}`);
        }
      });
    });

    // ------------------------------------------------------------------------------------------------
    describe('vector helpers', () => {
      it('add: out = x + y, also in place', () => {
        const rng = new Rng(1201);
        const n = 1003;
        const x = randn32(rng, n), y = randn32(rng, n);
        const sum64 = new Float64Array(n).map((_, i) => x[i]! + y[i]!);
        const out = filled(n, NaN);
        nk.add(n, x, y, out);
        expectClose('add', out, sum64);
        nk.add(n, x, y, x); // out aliases x
        expectClose('add in place', x, sum64);
      });

      it('axpy, sumSquares, diffSumSquares', () => {
        const rng = new Rng(1200);
        const n = 1003;
        const x = randn32(rng, n), y = randn32(rng, n);
        const y64 = to64(y);
        for (let i = 0; i < n; i++) y64[i] += -0.75 * x[i];
        nk.axpy(n, -0.75, x, y);
        expectClose('axpy', y, y64);
        let ss = 0, ds = 0;
        for (let i = 0; i < n; i++) { ss += x[i] * x[i]; ds += (x[i] - y[i]) ** 2; }
        assert.ok(Math.abs(nk.sumSquares(x, n) - ss) <= 1e-12 * ss, 'sumSquares');
        assert.ok(Math.abs(nk.diffSumSquares(x, y, n) - ds) <= 1e-12 * ds, 'diffSumSquares');
        assert.equal(nk.sumSquares(x, 0), 0);
        const withNaN = Float32Array.from(x); withNaN[500] = NaN;
        assert.ok(Number.isNaN(nk.sumSquares(withNaN, n)), 'NaN propagates through sumSquares');
        const withInf = Float32Array.from(x); withInf[7] = Infinity;
        assert.equal(nk.sumSquares(withInf, n), Infinity);
        assert.ok(Number.isNaN(nk.diffSumSquares(withNaN, y, n)), 'NaN propagates through diffSumSquares');
      });
    });

    // ------------------------------------------------------------------------------------------------
    describe('sampleRows', () => {
      function argmax(a: ArrayLike<number>, off: number, V: number): number {
        let best = 0;
        for (let v = 1; v < V; v++) if (a[off + v] > a[off + best]) best = v;
        return best;
      }

      it('temperature <= 0 and topK = 1 pick the argmax whatever u is', () => {
        const rng = new Rng(1300);
        const R = 50, V = 37;
        const logits = randn32(rng, R * V, 2);
        const u = Float64Array.from({ length: R }, () => rng.next());
        const expected = Array.from({ length: R }, (_, r) => argmax(logits, r * V, V));
        for (const [temperature, topK] of [[0, 0], [-1, 0], [1, 1], [2.5, 1], [0, 5]]) {
          const out = new Int32Array(R).fill(-7);
          nk.sampleRows(logits, R, V, temperature, topK, u, out);
          assert.deepEqual(Array.from(out), expected, `temperature=${temperature} topK=${topK}`);
        }
      });

      it('extreme uniforms (0 and 1 − 2^-53) still give valid ids, inside the top-k', () => {
        const V = 9;
        const logits = Float32Array.from([0.1, 3, -2, 1, 0.5, 2, -1, 0, 0.2]);
        const top3 = new Set([1, 5, 3]);
        for (const u0 of [0, 1 - 2 ** -53]) {
          for (const topK of [0, 3, V, V + 4]) {
            const out = new Int32Array(1).fill(-1);
            nk.sampleRows(logits, 1, V, 1, topK, Float64Array.of(u0), out);
            assert.ok(out[0] >= 0 && out[0] < V, `u=${u0} topK=${topK} gave ${out[0]}`);
            if (topK === 3) assert.ok(top3.has(out[0]), `u=${u0} topK=3 gave ${out[0]} outside the top 3`);
          }
        }
      });

      /** Pearson chi-square statistic of counts against probabilities. */
      function chiSquare(counts: number[], probs: ArrayLike<number>, total: number): number {
        let chi = 0;
        for (let v = 0; v < counts.length; v++) {
          const e = probs[v] * total;
          if (e === 0) {
            assert.equal(counts[v], 0, `outcome ${v} has probability 0 but was drawn ${counts[v]} times`);
            continue;
          }
          chi += (counts[v] - e) ** 2 / e;
        }
        return chi;
      }

      it('frequencies follow softmax(logits / temperature) (chi-square, 20000 draws, df=5, p=1e-3)', () => {
        const rng = new Rng(1301);
        const V = 6, R = 20000, temperature = 0.8;
        const row = [1.0, 0.5, -0.3, 2.0, 0.0, -1.2];
        const logits = new Float32Array(R * V);
        for (let r = 0; r < R; r++) logits.set(row, r * V);
        const u = Float64Array.from({ length: R }, () => rng.next());
        const out = new Int32Array(R);
        nk.sampleRows(logits, R, V, temperature, 0, u, out);
        const counts = new Array<number>(V).fill(0);
        for (const o of out) counts[o]++;
        const probs = ref.softmaxRow(Float32Array.from(row), 0, V, temperature);
        const chi = chiSquare(counts, probs, R);
        assert.ok(chi < 20.52, `chi-square ${chi.toFixed(2)} >= 20.52 (df 5); counts ${counts} vs expected ${Array.from(probs, (p) => (p * R).toFixed(0))}`);
      });

      it('topK restricts to the k largest and renormalises (chi-square, df=2, p=1e-3)', () => {
        const rng = new Rng(1302);
        const V = 7, R = 20000, temperature = 1.3, topK = 3;
        const row = [0.3, 1.1, -0.5, 0.9, 1.4, 0.0, 0.2];
        const logits = new Float32Array(R * V);
        for (let r = 0; r < R; r++) logits.set(row, r * V);
        const u = Float64Array.from({ length: R }, () => rng.next());
        const out = new Int32Array(R);
        nk.sampleRows(logits, R, V, temperature, topK, u, out);
        const counts = new Array<number>(V).fill(0);
        for (const o of out) counts[o]++;
        const restricted = row.map((x, v) => ([1, 3, 4].includes(v) ? x : -Infinity));
        const probs = ref.softmaxRow(restricted, 0, V, temperature);
        const chi = chiSquare(counts, probs, R);
        assert.ok(chi < 13.82, `chi-square ${chi.toFixed(2)} >= 13.82 (df 2); counts ${counts}`);
      });
    });
  });
}

// ----------------------------------------------------------------------------------------------------
describe('1 thread and 2 threads agree on larger inputs', () => {
  after(() => nk.setNumThreads(defaultThreads));

  /** Runs `fn` with 1 and with 2 threads on fresh copies of its inputs and returns both outputs. */
  function both<T>(fn: () => T): [T, T] {
    nk.setNumThreads(1);
    const one = fn();
    nk.setNumThreads(2);
    const two = fn();
    return [one, two];
  }
  const AGREE = 1e-6;

  it('gemm', () => {
    const rng = new Rng(1400);
    const M = 203, N = 151, K = 130;
    const A = randn32(rng, M * K), B = randn32(rng, K * N);
    const [c1, c2] = both(() => { const C = new Float32Array(M * N); nk.gemm(false, true, M, N, K, 1, A, B, 0, C); return C; });
    expectClose('gemm 1 vs 2 threads', c1, c2, AGREE);
  });

  it('embedding, rmsnorm, gelu, qkNormRope, attention', () => {
    const rng = new Rng(1401);
    const V = 517, D = 64, rows = 301;
    const table = randn32(rng, V * D);
    const ids = randInts(rng, rows, V);
    const dout = randn32(rng, rows * D);
    const [e1, e2] = both(() => {
      const out = new Float32Array(rows * D);
      nk.embeddingForward(out, table, ids, rows, V, D);
      const dt = new Float32Array(V * D);
      nk.embeddingBackward(dt, dout, ids, rows, V, D);
      return [out, dt];
    });
    assert.deepEqual(e1[0], e2[0]);
    expectClose('embeddingBackward 1 vs 2 threads', e1[1], e2[1], AGREE);

    const x = randn32(rng, rows * D);
    const [r1, r2] = both(() => {
      const y = new Float32Array(rows * D), rstd = new Float32Array(rows), dx = new Float32Array(rows * D);
      nk.rmsnormForward(y, rstd, x, rows, D);
      nk.rmsnormBackward(dx, dout, y, rstd, rows, D);
      const g = new Float32Array(rows * D);
      nk.geluForward(g, x, rows * D);
      return [y, rstd, dx, g, geluGradPass(dout, x)];
    });
    for (let i = 0; i < r1.length; i++) expectClose(`rmsnorm/gelu output ${i} 1 vs 2 threads`, r1[i], r2[i], AGREE);

    const B = 4, T = 33, N = 4, H = 16;
    const qkvRaw = randn32(rng, B * T * 3 * N * H);
    const dAtt = randn32(rng, B * T * N * H);
    const [a1, a2] = both(() => {
      const qkv = new Float32Array(qkvRaw.length), rstd = new Float32Array(B * T * 2 * N);
      nk.qkNormRopeForward(qkv, rstd, qkvRaw, B, T, N, H, 0);
      const out = new Float32Array(B * T * N * H), lse = new Float32Array(B * N * T);
      nk.attentionForward(out, lse, qkv, B, T, N, H);
      const dq = new Float32Array(qkv.length);
      nk.attentionBackward(dq, dAtt, lse, qkv, B, T, N, H);
      // the model's form: q and k normalised inside the attention kernels, the gradient with respect to the raw qkv
      const outN = new Float32Array(B * T * N * H), lseN = new Float32Array(B * N * T), rstdN = new Float32Array(B * T * 2 * N);
      nk.attentionForward(outN, lseN, qkvRaw, B, T, N, H, rstdN);
      const dx = new Float32Array(qkv.length);
      nk.attentionBackward(dx, dAtt, lseN, qkvRaw, B, T, N, H, rstdN);
      return [qkv, rstd, out, lse, dq, outN, lseN, rstdN, dx];
    });
    for (let i = 0; i < a1.length; i++) expectClose(`qkNormRope/attention output ${i} 1 vs 2 threads`, a1[i], a2[i], AGREE);
  });

  it('crossEntropy, klDiv, adamw, sumSquares, sampleRows', () => {
    const rng = new Rng(1402);
    const R = 301, V = 517;
    const lp = randn32(rng, R * V, 2), lq = randn32(rng, R * V, 2);
    const targets = randInts(rng, R, V);
    const w = Float32Array.from({ length: R }, (_, r) => (r % 5 === 0 ? 0 : 1));
    const [l1, l2] = both(() => {
      const rl = new Float32Array(R), dl = new Float32Array(R * V), rk = new Float32Array(R), dk = new Float32Array(R * V);
      const ce = nk.crossEntropy(lq, targets, w, R, V, rl, dl, 0.1);
      const kl = nk.klDiv(lp, lq, w, R, V, rk, dk, 0.1);
      return { ce, kl, arrays: [rl, dl, rk, dk] };
    });
    assert.ok(Math.abs(l1.ce - l2.ce) <= 1e-6 * Math.abs(l1.ce), `crossEntropy ${l1.ce} vs ${l2.ce}`);
    assert.ok(Math.abs(l1.kl - l2.kl) <= 1e-6 * Math.abs(l1.kl), `klDiv ${l1.kl} vs ${l2.kl}`);
    for (let i = 0; i < 4; i++) expectClose(`loss output ${i} 1 vs 2 threads`, l1.arrays[i], l2.arrays[i], AGREE);

    const n = 100003;
    const p0 = randn32(rng, n), g = randn32(rng, n);
    const [o1, o2] = both(() => {
      const p = Float32Array.from(p0), m = new Float32Array(n), v = new Float32Array(n);
      nk.adamwStep(p, g, m, v, n, 1e-3, 0.9, 0.999, 1e-8, 0.02, 0.1, 0.001);
      return { p, ss: nk.sumSquares(p, n), ds: nk.diffSumSquares(p, p0, n) };
    });
    assert.deepEqual(o1.p, o2.p, 'adamw is elementwise: results must be identical');
    assert.ok(Math.abs(o1.ss - o2.ss) <= 1e-12 * o1.ss, `sumSquares ${o1.ss} vs ${o2.ss}`);
    assert.ok(Math.abs(o1.ds - o2.ds) <= 1e-12 * o1.ds, `diffSumSquares ${o1.ds} vs ${o2.ds}`);

    const u = Float64Array.from({ length: R }, () => rng.next());
    const [s1, s2] = both(() => { const out = new Int32Array(R); nk.sampleRows(lq, R, V, 0.9, 50, u, out); return out; });
    assert.deepEqual(s1, s2, 'sampleRows with the same uniforms must draw the same ids');
  });
});
