/**
 * Right operands packed once for many products (the decoder's weights, multiplied at every position of a
 * sampling call), and the policy of when packing pays on this machine's GEMM engine. The model only says
 * which matrices it multiplies by; which engine packs them, and when, is decided here.
 */
import { native } from './native.js';

/** op(B) of a product x · op(B): B is [K, N], or [N, K] when transB. */
export interface RightOperand {
  B: Float32Array;
  transB: boolean;
  N: number;
  K: number;
}

/** Operands up to this total size (float32 bytes) keep a copy so that an unchanged one is not packed again. */
const KEEP_SOURCES_BYTES = 16 << 20;

/**
 * Whether products with `rows` rows should use packed operands: there must be a packing engine and gemm must
 * not be set to sgemm. The AMX engine uses a packing only from 8 rows up; the float32 panels of machines
 * without AMX pay from one row, since sgemm repacks B in every call.
 */
export function packingPays(rows: number): boolean {
  const k = native();
  if (k.gemmPackSize(16, 16) === 0 || k.getGemmMode() === 'blas') return false;
  return rows >= 8 || !k.gemmAmxAvailable();
}

/** Whether two float arrays hold the same bytes (memcmp: NaNs compare by their bits). */
function sameBytes(a: Float32Array, b: Float32Array): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
}

/**
 * Packed copies of a fixed list of operands for gemmPacked, refreshed by pack(). The buffers are kept between
 * calls, because allocating fresh zeroed ones costs more than the packing itself. An operand that is bit for bit
 * what it was at its last packing (a frozen model sampled call after call) is not packed again; that needs a copy
 * of each source, so only small operand sets keep one, where packing is a noticeable share of a sampling call.
 */
export class OperandPacks {
  private bufs: Uint16Array[] = [];
  private sources: Float32Array[] = [];

  /** Packs `ops` (the same list, in the same order, on every call) and returns one buffer per operand. */
  pack(ops: RightOperand[]): Uint16Array[] {
    const k = native();
    let bytes = 0;
    for (const o of ops) bytes += o.B.byteLength;
    const keepSources = bytes <= KEEP_SOURCES_BYTES;
    if (!keepSources) this.sources = [];
    ops.forEach((o, i) => {
      const old = this.bufs[i], src = this.sources[i];
      if (old && src && sameBytes(src, o.B)) return;
      const buf = old ?? new Uint16Array(k.gemmPackSize(o.N, o.K));
      k.gemmPackB(o.transB, o.N, o.K, o.B, buf);
      this.bufs[i] = buf;
      if (!keepSources) return;
      if (src && src.length === o.B.length) src.set(o.B);
      else this.sources[i] = Float32Array.from(o.B);
    });
    return this.bufs;
  }
}
