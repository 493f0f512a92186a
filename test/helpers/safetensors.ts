/**
 * A tiny, independent safetensors writer and reader (F32 only) so that tests can produce and inspect
 * checkpoints without relying on the product's own reader/writer.
 *
 * Format: 8-byte little-endian header length n, then n bytes of JSON
 * `{name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__"?: {...}}` (offsets relative to the
 * byte buffer that follows the header), padded with spaces; then the raw little-endian data.
 */
import fs from 'node:fs';

export interface StTensor {
  shape: number[];
  data: Float32Array;
}

export function encodeSafetensors(tensors: Record<string, { shape: number[]; data: ArrayLike<number> }>,
                                  metadata?: Record<string, string>): Uint8Array {
  const header: Record<string, unknown> = {};
  if (metadata) header.__metadata__ = metadata;
  let offset = 0;
  const parts: Float32Array[] = [];
  for (const [name, t] of Object.entries(tensors)) {
    const n = t.shape.reduce((a, b) => a * b, 1);
    if (n !== t.data.length) throw new Error(`safetensors: ${name} has ${t.data.length} values for shape [${t.shape}]`);
    const f32 = Float32Array.from(t.data);
    header[name] = { dtype: 'F32', shape: t.shape, data_offsets: [offset, offset + 4 * n] };
    offset += 4 * n;
    parts.push(f32);
  }
  let json = JSON.stringify(header);
  while ((8 + Buffer.byteLength(json)) % 8 !== 0) json += ' ';
  const headerBytes = Buffer.from(json, 'utf8');
  const buf = new Uint8Array(8 + headerBytes.length + offset);
  const view = new DataView(buf.buffer);
  view.setBigUint64(0, BigInt(headerBytes.length), true);
  buf.set(headerBytes, 8);
  let at = 8 + headerBytes.length;
  for (const f32 of parts) {
    for (let i = 0; i < f32.length; i++) view.setFloat32(at + 4 * i, f32[i], true);
    at += 4 * f32.length;
  }
  return buf;
}

export function writeSafetensors(file: string, tensors: Record<string, { shape: number[]; data: ArrayLike<number> }>,
                                  metadata?: Record<string, string>): void {
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
    if (dtype !== 'F32') throw new Error(`safetensors: ${name} has dtype ${dtype}; only F32 is supported here`);
    const count = shape.reduce((a, b) => a * b, 1);
    if (end - begin !== 4 * count) throw new Error(`safetensors: ${name} spans ${end - begin} bytes for shape [${shape}]`);
    if (dataStart + end > buf.byteLength) throw new Error(`safetensors: ${name} runs past the end of the file`);
    const data = new Float32Array(count);
    for (let i = 0; i < count; i++) data[i] = view.getFloat32(dataStart + begin + 4 * i, true);
    tensors.set(name, { shape, data });
  }
  return { tensors, metadata };
}

export function readSafetensors(file: string): { tensors: Map<string, StTensor>; metadata?: Record<string, string> } {
  return decodeSafetensors(new Uint8Array(fs.readFileSync(file)));
}
