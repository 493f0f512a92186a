/**
 * A tiny, independent safetensors writer and reader (F32, BF16, F16) so that tests can produce and inspect
 * checkpoints without relying on the product's own reader/writer.
 *
 * Format: 8-byte little-endian header length n, then n bytes of JSON
 * `{name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__"?: {...}}` (offsets relative to the
 * byte buffer that follows the header), padded with spaces; then the raw little-endian data.
 */
import fs from 'node:fs';

export type StDtype = 'F32' | 'BF16' | 'F16';

export interface StTensor {
  shape: number[];
  /** Every BF16 and F16 value is exactly a float32, so one array type serves all three dtypes. */
  data: Float32Array;
  dtype: StDtype;
}

const BYTES: Record<StDtype, number> = { F32: 4, BF16: 2, F16: 2 };

/**
 * x rounded to the nearest value with `mantBits` fraction bits, ties to even, exponents below `minExp` treated
 * as subnormals, anything rounding past `maxFinite` becoming ±Infinity: IEEE round-to-nearest-even, written
 * with powers of two so that it does not depend on any bit-level trick (the tests check it against one).
 */
function roundToFormat(x: number, mantBits: number, minExp: number, maxFinite: number): number {
  if (!Number.isFinite(x) || x === 0) return x;
  const a = Math.abs(x);
  let e = Math.floor(Math.log2(a));
  // log2 may land one off near powers of two
  if (2 ** e > a) e--;
  else if (2 ** (e + 1) <= a) e++;
  const ulp = 2 ** (Math.max(e, minExp) - mantBits);
  const q = a / ulp;
  let r = Math.round(q);
  if (r - q === 0.5 && r % 2 === 1) r -= 1;
  const y = r * ulp;
  return Math.sign(x) * (y > maxFinite ? Infinity : y);
}

/** The bfloat16 nearest to x (ties to even). */
export function roundToBf16(x: number): number {
  return roundToFormat(x, 7, -126, (2 - 2 ** -7) * 2 ** 127);
}

/** The IEEE half nearest to x (ties to even, subnormals kept). */
export function roundToF16(x: number): number {
  return roundToFormat(x, 10, -14, 65504);
}

const f32Scratch = new DataView(new ArrayBuffer(4));

export function bf16Bits(x: number): number {
  if (Number.isNaN(x)) return 0x7fc0;
  f32Scratch.setFloat32(0, roundToBf16(x));
  return f32Scratch.getUint32(0) >>> 16;
}

export function bf16FromBits(bits: number): number {
  f32Scratch.setUint32(0, (bits & 0xffff) << 16);
  return f32Scratch.getFloat32(0);
}

export function f16Bits(x: number): number {
  if (Number.isNaN(x)) return 0x7e00;
  const y = roundToF16(x);
  const sign = y < 0 || Object.is(y, -0) ? 0x8000 : 0;
  const a = Math.abs(y);
  if (a === Infinity) return sign | 0x7c00;
  if (a < 2 ** -14) return sign | (a / 2 ** -24);
  const e = Math.floor(Math.log2(a));
  return sign | ((e + 15) << 10) | (a / 2 ** (e - 10) - 1024);
}

export function f16FromBits(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exp = (bits >> 10) & 0x1f;
  const mant = bits & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 31) return mant ? NaN : sign * Infinity;
  return sign * (1024 + mant) * 2 ** (exp - 25);
}

/** Tensors to write; values are rounded to `dtype` (default F32) to nearest, ties to even. */
export type StInput = Record<string, { shape: number[]; data: ArrayLike<number>; dtype?: StDtype }>;

export function encodeSafetensors(tensors: StInput, metadata?: Record<string, string>): Uint8Array {
  const header: Record<string, unknown> = {};
  if (metadata) header.__metadata__ = metadata;
  let offset = 0;
  const parts: Array<{ dtype: StDtype; data: ArrayLike<number> }> = [];
  for (const [name, t] of Object.entries(tensors)) {
    const n = t.shape.reduce((a, b) => a * b, 1);
    if (n !== t.data.length) throw new Error(`safetensors: ${name} has ${t.data.length} values for shape [${t.shape}]`);
    const dtype = t.dtype ?? 'F32';
    header[name] = { dtype, shape: t.shape, data_offsets: [offset, offset + BYTES[dtype] * n] };
    offset += BYTES[dtype] * n;
    parts.push({ dtype, data: t.data });
  }
  let json = JSON.stringify(header);
  while ((8 + Buffer.byteLength(json)) % 8 !== 0) json += ' ';
  const headerBytes = Buffer.from(json, 'utf8');
  const buf = new Uint8Array(8 + headerBytes.length + offset);
  const view = new DataView(buf.buffer);
  view.setBigUint64(0, BigInt(headerBytes.length), true);
  buf.set(headerBytes, 8);
  let at = 8 + headerBytes.length;
  for (const { dtype, data } of parts) {
    for (let i = 0; i < data.length; i++) {
      if (dtype === 'F32') view.setFloat32(at + 4 * i, data[i]!, true);
      else view.setUint16(at + 2 * i, dtype === 'BF16' ? bf16Bits(data[i]!) : f16Bits(data[i]!), true);
    }
    at += BYTES[dtype] * data.length;
  }
  return buf;
}

export function writeSafetensors(file: string, tensors: StInput, metadata?: Record<string, string>): void {
  fs.writeFileSync(file, encodeSafetensors(tensors, metadata));
}

export function decodeSafetensors(buf: Uint8Array): { tensors: Map<string, StTensor>; metadata?: Record<string, string> } {
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  if (buf.byteLength < 8) throw new Error('safetensors: file shorter than 8 bytes');
  const n = Number(view.getBigUint64(0, true));
  if (8 + n > buf.byteLength) throw new Error(`safetensors: header length ${n} exceeds file size ${buf.byteLength}`);
  const header = JSON.parse(Buffer.from(buf.buffer, buf.byteOffset + 8, n).toString('utf8')) as Record<string, unknown>;
  const dataStart = 8 + n;
  const tensors = new Map<string, StTensor>();
  let metadata: Record<string, string> | undefined;
  for (const [name, entry] of Object.entries(header)) {
    if (name === '__metadata__') {
      metadata = entry as Record<string, string>;
      continue;
    }
    const { dtype, shape, data_offsets: [begin, end] } = entry as { dtype: string; shape: number[]; data_offsets: [number, number] };
    if (!Object.hasOwn(BYTES, dtype)) throw new Error(`safetensors: ${name} has dtype ${dtype}; only F32, BF16 and F16 are supported here`);
    const st = dtype as StDtype;
    const count = shape.reduce((a, b) => a * b, 1);
    if (end - begin !== BYTES[st] * count) throw new Error(`safetensors: ${name} spans ${end - begin} bytes for shape [${shape}]`);
    if (dataStart + end > buf.byteLength) throw new Error(`safetensors: ${name} runs past the end of the file`);
    const data = new Float32Array(count);
    const at = dataStart + begin;
    for (let i = 0; i < count; i++) {
      if (st === 'F32') data[i] = view.getFloat32(at + 4 * i, true);
      else if (st === 'BF16') data[i] = bf16FromBits(view.getUint16(at + 2 * i, true));
      else data[i] = f16FromBits(view.getUint16(at + 2 * i, true));
    }
    tensors.set(name, { shape, data, dtype: st });
  }
  return { tensors, metadata };
}

export function readSafetensors(file: string): { tensors: Map<string, StTensor>; metadata?: Record<string, string> } {
  return decodeSafetensors(new Uint8Array(fs.readFileSync(file)));
}
