/**
 * Autograd ops that write over an input's buffer (the model's residual stream): values and gradients against
 * float64 computed here, including an upstream gradient that is not 1 and a residual that already has a gradient.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { matmul, residualMatmul, weightedSum } from '../src/tensor/ops.js';
import { scope } from '../src/tensor/pool.js';
import { Tensor } from '../src/tensor/tensor.js';
import { Rng, randn32 } from './helpers/ref.js';

function relErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let num = 0, den = 0;
  for (let i = 0; i < b.length; i++) {
    num = Math.max(num, Math.abs(a[i]! - b[i]!));
    den = Math.max(den, Math.abs(b[i]!));
  }
  return num / (den || 1);
}

function expectClose(what: string, a: ArrayLike<number>, b: ArrayLike<number>, tol = 1e-5): void {
  assert.equal(a.length, b.length, `${what}: length`);
  const e = relErr(a, b);
  assert.ok(e <= tol, `${what}: relative error ${e.toExponential(3)} > ${tol}`);
}

/** Σ r ⊙ t as a scalar tensor, so that the upstream gradient of t is r (via matmul with a [n, 1] column). */
function dotWith(t: Tensor, r: Float32Array): Tensor {
  return matmul(t.view([1, t.size]), new Tensor(r, [r.length, 1]));
}

describe('residualMatmul', () => {
  for (const [M, K, N] of [[7, 5, 3], [33, 17, 40], [1, 1, 1]]) {
    it(`x + a·W over x's buffer, and its gradients, M=${M} K=${K} N=${N}`, () => {
      const rng = new Rng(9100 + M * 100 + K * 10 + N);
      const x0 = randn32(rng, M * N), a0 = randn32(rng, M * K), w0 = randn32(rng, K * N), r = randn32(rng, M * N);
      const pre = randn32(rng, M * N); // a gradient x already holds from elsewhere
      // float64 reference
      const want = new Float64Array(M * N), da = new Float64Array(M * K), dw = new Float64Array(K * N);
      for (let i = 0; i < M; i++)
        for (let j = 0; j < N; j++) {
          let s = x0[i * N + j]!;
          for (let k = 0; k < K; k++) s += a0[i * K + k]! * w0[k * N + j]!;
          want[i * N + j] = s;
        }
      const scale = 0.37; // upstream gradient of the loss term
      for (let i = 0; i < M; i++)
        for (let k = 0; k < K; k++) {
          let s = 0;
          for (let j = 0; j < N; j++) s += r[i * N + j]! * w0[k * N + j]!;
          da[i * K + k] = scale * s;
        }
      for (let k = 0; k < K; k++)
        for (let j = 0; j < N; j++) {
          let s = 0;
          for (let i = 0; i < M; i++) s += a0[i * K + k]! * r[i * N + j]!;
          dw[k * N + j] = scale * s;
        }
      scope(() => {
        const x = new Tensor(Float32Array.from(x0), [M, N], true);
        const a = new Tensor(Float32Array.from(a0), [M, K], true);
        const w = new Tensor(Float32Array.from(w0), [K, N], true);
        x.grad = Float32Array.from(pre);
        const out = residualMatmul(x, a, w);
        assert.equal(out.data, x.data, 'the result is written over the residual');
        expectClose('x + a·W', out.data, want);
        weightedSum([dotWith(out, r)], [scale]).backward();
        expectClose('d a', a.grad!, da);
        expectClose('d W', w.grad!, dw);
        expectClose('d x (added to the gradient it had)', x.grad!, Float64Array.from(pre, (p, i) => p + scale * r[i]!));
      });
    });
  }

  it('rejects mismatched shapes', () => {
    const t = (n: number, s: number[]) => new Tensor(new Float32Array(n), s);
    assert.throws(() => residualMatmul(t(6, [2, 3]), t(8, [2, 4]), t(10, [5, 2])), /weight must be \[4, N\]/);
    assert.throws(() => residualMatmul(t(6, [2, 3]), t(8, [2, 4]), t(8, [4, 2])), /residual has 6 elements, the product 4/);
  });
});
