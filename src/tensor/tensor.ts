/**
 * A small reverse-mode autograd over the native kernels.
 *
 * A Tensor is a float32 buffer plus a shape. Operations (src/tensor/ops.ts) that have an input
 * requiring gradients record a node: the output keeps its parents and a closure that, given the
 * output's gradient, adds into the parents' gradients with native backward kernels. `backward()`
 * walks the recorded graph in reverse topological order. Nothing is recorded inside `noGrad()`
 * or when no input requires gradients, so inference keeps no activations alive.
 */
import { native } from '../backend/native.js';
import { alloc, release } from './pool.js';
import { numel } from '../util/shape.js';

export type Shape = readonly number[];

export { numel };

export class Tensor {
  /** Gradient buffer (same length as data); allocated on first use, zero-initialised. */
  grad: Float32Array | null = null;
  /** Set by ops: parents in the graph and the function that propagates this tensor's gradient. */
  parents: Tensor[] = [];
  backwardFn: (() => void) | null = null;

  constructor(
    readonly data: Float32Array,
    readonly shape: Shape,
    public requiresGrad = false,
  ) {
    if (data.length !== numel(shape)) {
      throw new Error(`Tensor: buffer of ${data.length} elements does not match shape [${shape.join(', ')}]`);
    }
  }

  static zeros(shape: Shape, requiresGrad = false): Tensor {
    return new Tensor(alloc(numel(shape)), shape, requiresGrad);
  }

  /** Uninitialised (for outputs a kernel writes completely). */
  static empty(shape: Shape): Tensor {
    return new Tensor(alloc(numel(shape), false), shape);
  }

  get size(): number {
    return this.data.length;
  }

  /** The gradient buffer, allocated (zeros) if needed. */
  gradBuffer(): Float32Array {
    if (!this.grad) this.grad = alloc(this.data.length);
    return this.grad;
  }

  /** Same data, another shape of the same size (shares the buffer and, for gradients, flows back). */
  view(shape: Shape): Tensor {
    const out = new Tensor(this.data, shape, false);
    if (this.requiresGrad && gradEnabled) {
      out.requiresGrad = true;
      out.parents = [this];
      out.backwardFn = () => {
        if (!out.grad) return;
        if (!this.grad) this.grad = out.grad;
        else native().axpy(out.grad.length, 1, out.grad, this.grad);
      };
    }
    return out;
  }

  item(): number {
    if (this.data.length !== 1) throw new Error(`item(): tensor has ${this.data.length} elements`);
    return this.data[0]!;
  }

  /**
   * Backpropagate from this scalar: its gradient is set to 1 (or `seed`), every recorded node
   * propagates once, in reverse topological order. Intermediate gradients and graph links are
   * released afterwards so activations can be collected; leaf gradients stay.
   */
  backward(seed = 1): void {
    const order: Tensor[] = [];
    const seen = new Set<Tensor>();
    // Iterative DFS post-order: deep graphs must not overflow the stack.
    const stack: Array<[Tensor, number]> = [[this, 0]];
    seen.add(this);
    while (stack.length) {
      const top = stack[stack.length - 1]!;
      const [t, i] = top;
      if (i < t.parents.length) {
        top[1] = i + 1;
        const p = t.parents[i]!;
        if (!seen.has(p) && p.requiresGrad) {
          seen.add(p);
          stack.push([p, 0]);
        }
      } else {
        stack.pop();
        order.push(t);
      }
    }
    const g = this.gradBuffer();
    g.fill(seed);
    for (let i = order.length - 1; i >= 0; i--) {
      const t = order[i]!;
      if (t.backwardFn) {
        t.backwardFn();
        t.backwardFn = null;
        // Interior node: its gradient is consumed. Hand the buffer back for reuse later in this
        // step unless a parent took it over (a view shares its gradient with its source).
        const g = t.grad;
        if (g && t !== this && !t.parents.some((p) => p.grad === g)) release(g);
        t.parents = [];
        t.grad = null;
      }
    }
  }
}

let gradEnabled = true;

/** Run `fn` without recording a graph (inference, evaluation, sampling). */
export function noGrad<T>(fn: () => T): T {
  const prev = gradEnabled;
  gradEnabled = false;
  try {
    return fn();
  } finally {
    gradEnabled = prev;
  }
}

export function isGradEnabled(): boolean {
  return gradEnabled;
}
