/**
 * Frozen weights kept in the precision a checkpoint stores them in (bf16 or f16 bit patterns): exact, and half the
 * memory of float32. The reference model π and the base under LoRA never change, so they need no float32 copy; the
 * kernels widen blocks of them on the fly (gemmHalfB, embeddingForwardHalf). They take no gradient.
 */
import { native, type HalfKind } from '../backend/native.js';
import type { Shape } from './tensor.js';
import { Tensor } from './tensor.js';
import { numel } from '../util/shape.js';

export class HalfWeight {
  constructor(
    readonly data: Uint16Array,
    readonly shape: Shape,
    /** 0: bf16, 1: IEEE f16. */
    readonly kind: HalfKind,
  ) {
    if (data.length !== numel(shape)) throw new Error(`HalfWeight: ${data.length} values do not match shape [${shape.join(', ')}]`);
  }

  get size(): number {
    return this.data.length;
  }

  /** The weight as float32 (exact). */
  widen(): Float32Array {
    const out = new Float32Array(this.data.length);
    native().widenHalf(out, this.data, this.data.length, this.kind);
    return out;
  }
}

/** A weight a product can read: a float32 tensor, or a frozen half-precision one. */
export type Weight = Tensor | HalfWeight;

export function isHalf(w: Weight): w is HalfWeight {
  return w instanceof HalfWeight;
}
