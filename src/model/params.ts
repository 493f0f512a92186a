/**
 * Parameters live in one flat float32 buffer (and one flat gradient buffer), so an optimizer step
 * is a single native call. Named tensors and per-layer slices are views into those buffers.
 * The gradient buffer is allocated on first use: a frozen model (the reference π, a base under LoRA)
 * never needs one, and for a real model it is as large as the weights.
 */
import { Tensor, numel, type Shape } from '../tensor/tensor.js';

export interface ParamEntry {
  name: string;
  shape: number[];
  offset: number;
}

export class ParamSet {
  readonly data: Float32Array;
  private gradBuf: Float32Array | null = null;
  readonly entries: ParamEntry[] = [];
  private readonly byName = new Map<string, ParamEntry>();
  private readonly sliceCache = new Map<string, Tensor[]>();

  constructor(spec: Array<[string, number[]]>) {
    let offset = 0;
    for (const [name, shape] of spec) {
      const e = { name, shape: [...shape], offset };
      this.entries.push(e);
      this.byName.set(name, e);
      offset += numel(shape);
    }
    this.data = new Float32Array(offset);
  }

  /** The flat gradient (allocated, zeroed, on first access; the slices' gradients are views into it). */
  get grad(): Float32Array {
    if (!this.gradBuf) {
      this.gradBuf = new Float32Array(this.data.length);
      for (const list of this.sliceCache.values()) for (const t of list) t.grad = this.gradView(t);
    }
    return this.gradBuf;
  }

  private gradView(t: Tensor): Float32Array {
    const lo = t.data.byteOffset / 4 - this.data.byteOffset / 4;
    return this.gradBuf!.subarray(lo, lo + t.data.length);
  }

  get size(): number {
    return this.data.length;
  }

  entry(name: string): ParamEntry {
    const e = this.byName.get(name);
    if (!e) throw new Error(`no parameter '${name}'`);
    return e;
  }

  has(name: string): boolean {
    return this.byName.has(name);
  }

  /** The whole named parameter as a trainable tensor (data and grad are views). */
  tensor(name: string): Tensor {
    return this.slices(name, 1, this.entry(name).shape)[0]!;
  }

  /** The named parameter cut along its first axis into `count` tensors of shape `shape`. */
  slices(name: string, count: number, shape: Shape): Tensor[] {
    const key = `${name}/${count}`;
    let list = this.sliceCache.get(key);
    if (!list) {
      const e = this.entry(name);
      const n = numel(shape);
      if (n * count !== numel(e.shape)) throw new Error(`cannot cut '${name}' [${e.shape}] into ${count}×[${shape}]`);
      list = [];
      for (let i = 0; i < count; i++) {
        const lo = e.offset + i * n;
        const t = new Tensor(this.data.subarray(lo, lo + n), shape, true);
        if (this.gradBuf) t.grad = this.gradBuf.subarray(lo, lo + n);
        list.push(t);
      }
      this.sliceCache.set(key, list);
    }
    return list;
  }

  view(name: string): Float32Array {
    const e = this.entry(name);
    return this.data.subarray(e.offset, e.offset + numel(e.shape));
  }

  zeroGrad(): void {
    this.grad.fill(0);
  }

  setRequiresGrad(flag: boolean): void {
    for (const list of this.sliceCache.values()) for (const t of list) t.requiresGrad = flag;
  }
}
