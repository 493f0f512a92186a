/**
 * The safetensors checkpoint format (https://github.com/huggingface/safetensors), so that weights
 * written here load in PyTorch/JAX/NumPy unchanged and vice versa.
 *
 * Layout: `u64 little-endian N` · `N bytes of UTF-8 JSON header` · raw little-endian tensor data.
 * The header maps each tensor name to `{dtype, shape, data_offsets: [begin, end]}` (offsets relative
 * to the start of the data section) and may hold `__metadata__`, a string→string map.
 *
 * The writer reproduces the reference serializer byte for byte for float32 tensors: compact JSON
 * with `__metadata__` first, tensors sorted by name (the reference sorts by dtype, then name),
 * data packed in that order, header padded with spaces to a multiple of 8 so every tensor's data is
 * 8-byte aligned. The reader enforces the reference's validity rules (contiguous, non-overlapping,
 * fully covering data) and reports each violation as a one-line DataError naming the file.
 */
import fs from 'node:fs';
import { DataError, fileError } from '../errors.js';
import { writeFileAtomic } from './atomic.js';
import { HOST_LITTLE_ENDIAN, numel, shapeStr } from '../util/shape.js';

export interface SafetensorsInput {
  shape: number[];
  data: Float32Array;
}

export interface SafetensorsTensor {
  /** The dtype as stored in the file; `data` is always float32 (F16/BF16/F64 are converted). */
  dtype: string;
  shape: number[];
  data: Float32Array;
}

export interface SafetensorsFile {
  /** Tensors in data-offset order. */
  tensors: Map<string, SafetensorsTensor>;
  metadata: Record<string, string>;
}

/** The reference refuses headers above 100 MB; so do we, instead of attempting a huge JSON parse. */
const MAX_HEADER_BYTES = 100_000_000;

const DTYPE_SIZE: Record<string, number> = {
  BOOL: 1, U8: 1, I8: 1, F8_E5M2: 1, F8_E4M3: 1,
  I16: 2, U16: 2, F16: 2, BF16: 2,
  I32: 4, U32: 4, F32: 4,
  I64: 8, U64: 8, F64: 8,
};
const READABLE_DTYPES = ['F32', 'F16', 'BF16', 'F64'];

function isDim(d: unknown): d is number {
  return typeof d === 'number' && Number.isSafeInteger(d) && d >= 0;
}

/** The little-endian bytes of a float32 array, as a view where possible (no copy on LE hosts). */
function float32Bytes(data: Float32Array): Uint8Array {
  if (HOST_LITTLE_ENDIAN) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  const out = new Uint8Array(data.byteLength);
  const dv = new DataView(out.buffer);
  for (let i = 0; i < data.length; i++) dv.setFloat32(4 * i, data[i]!, true);
  return out;
}

/** The exact header bytes the reference serializer produces (including padding). */
function encodeHeader(
  entries: Array<[string, { dtype: string; shape: number[]; data_offsets: [number, number] }]>,
  metadata: Record<string, string> | undefined,
): Uint8Array {
  // Built by hand so the key order is guaranteed: __metadata__, then tensors in data order.
  const parts: string[] = [];
  if (metadata !== undefined) {
    const sorted: Record<string, string> = {};
    for (const k of Object.keys(metadata).sort()) sorted[k] = metadata[k]!;
    parts.push(`${JSON.stringify('__metadata__')}:${JSON.stringify(sorted)}`);
  }
  for (const [name, info] of entries) {
    parts.push(
      `${JSON.stringify(name)}:{"dtype":${JSON.stringify(info.dtype)},"shape":${JSON.stringify(info.shape)},` +
        `"data_offsets":${JSON.stringify(info.data_offsets)}}`,
    );
  }
  const json = Buffer.from(`{${parts.join(',')}}`, 'utf8');
  const padded = Buffer.alloc(json.length + ((8 - (json.length % 8)) % 8), 0x20);
  json.copy(padded);
  return padded;
}

/**
 * Writes float32 tensors (row-major) and optional string metadata to `file`, atomically.
 * Throws DataError if a tensor's data length does not match its shape (a caller bug caught before
 * a corrupt checkpoint is written).
 */
export function writeSafetensors(
  file: string,
  tensors: Record<string, SafetensorsInput>,
  metadata?: Record<string, string>,
): void {
  if (metadata !== undefined) {
    for (const [k, v] of Object.entries(metadata)) {
      if (typeof v !== 'string') throw new DataError(`${file}: metadata '${k}' must be a string, got ${typeof v}`);
    }
  }
  const names = Object.keys(tensors).sort();
  const entries: Array<[string, { dtype: string; shape: number[]; data_offsets: [number, number] }]> = [];
  const chunks: Uint8Array[] = [];
  let offset = 0;
  for (const name of names) {
    if (name === '__metadata__') throw new DataError(`${file}: '__metadata__' is reserved and cannot name a tensor`);
    const { shape, data } = tensors[name]!;
    if (!Array.isArray(shape) || !shape.every(isDim)) {
      throw new DataError(`${file}: tensor '${name}' has an invalid shape ${JSON.stringify(shape)}`);
    }
    if (!(data instanceof Float32Array)) throw new DataError(`${file}: tensor '${name}' data must be a Float32Array`);
    if (data.length !== numel(shape)) {
      throw new DataError(
        `${file}: tensor '${name}' has ${data.length} values but shape ${shapeStr(shape)} needs ${numel(shape)}`,
      );
    }
    entries.push([name, { dtype: 'F32', shape: [...shape], data_offsets: [offset, offset + data.byteLength] }]);
    chunks.push(float32Bytes(data));
    offset += data.byteLength;
  }
  const header = encodeHeader(entries, metadata);
  const prefix = new Uint8Array(8);
  new DataView(prefix.buffer).setBigUint64(0, BigInt(header.length), true);
  writeFileAtomic(file, [prefix, header, ...chunks]);
}

/** IEEE half → float. */
function halfToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >>> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24; // zero / subnormal
  if (exp === 0x1f) return frac === 0 ? sign * Infinity : NaN;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}

/** Decodes a tensor's little-endian bytes to float32. */
function decode(dtype: string, bytes: Uint8Array): Float32Array {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  switch (dtype) {
    case 'F32': {
      if (HOST_LITTLE_ENDIAN) {
        // Copy (new Uint8Array copies; Buffer#slice would not): the file buffer's offset may be
        // unaligned for a Float32Array view, and the result must not alias the file buffer.
        return new Float32Array(new Uint8Array(bytes).buffer);
      }
      const out = new Float32Array(bytes.byteLength / 4);
      for (let i = 0; i < out.length; i++) out[i] = dv.getFloat32(4 * i, true);
      return out;
    }
    case 'F64': {
      const out = new Float32Array(bytes.byteLength / 8);
      for (let i = 0; i < out.length; i++) out[i] = dv.getFloat64(8 * i, true);
      return out;
    }
    case 'F16': {
      const out = new Float32Array(bytes.byteLength / 2);
      for (let i = 0; i < out.length; i++) out[i] = halfToFloat(dv.getUint16(2 * i, true));
      return out;
    }
    case 'BF16': {
      // bfloat16 is the upper half of a float32: shifting it back is exact.
      const bits = new Uint32Array(bytes.byteLength / 2);
      for (let i = 0; i < bits.length; i++) bits[i] = dv.getUint16(2 * i, true) << 16;
      return new Float32Array(bits.buffer);
    }
    default:
      throw new Error(`unreachable: dtype ${dtype}`);
  }
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  return typeof v === 'object' ? 'an object' : JSON.stringify(v);
}

/** Where one tensor's bytes lie in a safetensors file, as its header says (offsets from the data section). */
export interface SafetensorsEntry {
  name: string;
  dtype: string;
  shape: number[];
  begin: number;
  end: number;
}

/** A safetensors file's header, checked against the file's size: what is needed to read tensors one at a time. */
export interface SafetensorsLayout {
  /** Byte offset of the data section in the file. */
  dataStart: number;
  /** Entries in data-offset order. */
  entries: SafetensorsEntry[];
  metadata: Record<string, string>;
}

/**
 * Parses and validates a header (the bytes after the length prefix) for a data section of `dataLen` bytes.
 * The reference's rules: each tensor starts where the previous ended, sizes match shape×dtype, and the last one
 * ends exactly at the end of the file.
 */
function parseHeader(file: string, headerBytes: Uint8Array, dataLen: number): { entries: SafetensorsEntry[]; metadata: Record<string, string> } {
  let header: unknown;
  try {
    const text = new TextDecoder('utf-8', { fatal: true }).decode(headerBytes);
    header = JSON.parse(text);
  } catch (err) {
    throw new DataError(`${file}: header is not valid UTF-8 JSON (${(err as Error).message.split('\n')[0]})`);
  }
  if (header === null || typeof header !== 'object' || Array.isArray(header)) {
    throw new DataError(`${file}: header must be a JSON object, got ${describe(header)}`);
  }

  const metadata: Record<string, string> = {};
  const infos: SafetensorsEntry[] = [];
  for (const [name, entry] of Object.entries(header as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (entry === null) continue; // the reference's Option<...> accepts null
      if (typeof entry !== 'object' || Array.isArray(entry)) {
        throw new DataError(`${file}: __metadata__ must be an object of strings, got ${describe(entry)}`);
      }
      for (const [k, v] of Object.entries(entry as Record<string, unknown>)) {
        if (typeof v !== 'string') throw new DataError(`${file}: __metadata__ '${k}' must be a string, got ${describe(v)}`);
        metadata[k] = v;
      }
      continue;
    }
    const bad: (what: string) => never = (what) => {
      throw new DataError(`${file}: tensor '${name}' is malformed: ${what}`);
    };
    if (entry === null || typeof entry !== 'object' || Array.isArray(entry)) bad(`expected an object, got ${describe(entry)}`);
    const e = entry as Record<string, unknown>;
    if (typeof e.dtype !== 'string') bad(`dtype must be a string, got ${describe(e.dtype)}`);
    const dtype = e.dtype as string;
    if (!(dtype in DTYPE_SIZE)) bad(`unknown dtype '${dtype}'`);
    if (!Array.isArray(e.shape) || !e.shape.every(isDim)) bad(`shape must be an array of non-negative integers, got ${JSON.stringify(e.shape)}`);
    const shape = e.shape as number[];
    const off = e.data_offsets;
    if (!Array.isArray(off) || off.length !== 2 || !off.every(isDim)) {
      bad(`data_offsets must be [begin, end] non-negative integers, got ${JSON.stringify(off)}`);
    }
    const [begin, end] = off as [number, number];
    infos.push({ name, dtype, shape, begin, end });
  }

  infos.sort((a, b) => a.begin - b.begin || a.end - b.end);
  let expectedBegin = 0;
  let prevName = '';
  for (const t of infos) {
    if (t.end < t.begin) throw new DataError(`${file}: tensor '${t.name}' has data_offsets [${t.begin},${t.end}] with end before begin`);
    if (t.end > dataLen) {
      throw new DataError(`${file}: tensor '${t.name}' data_offsets [${t.begin},${t.end}] run beyond the data section (${dataLen} bytes); file truncated?`);
    }
    if (t.begin < expectedBegin) {
      throw new DataError(`${file}: tensor '${t.name}' data_offsets [${t.begin},${t.end}] overlap tensor '${prevName}' (ends at ${expectedBegin})`);
    }
    if (t.begin > expectedBegin) {
      throw new DataError(`${file}: gap of ${t.begin - expectedBegin} bytes before tensor '${t.name}' (data_offsets [${t.begin},${t.end}], expected begin ${expectedBegin})`);
    }
    const size = numel(t.shape) * DTYPE_SIZE[t.dtype]!;
    if (t.end - t.begin !== size) {
      throw new DataError(
        `${file}: tensor '${t.name}' has ${t.end - t.begin} bytes but ${t.dtype} shape ${shapeStr(t.shape)} needs ${size}`,
      );
    }
    expectedBegin = t.end;
    prevName = t.name;
  }
  if (expectedBegin !== dataLen) {
    throw new DataError(`${file}: ${dataLen - expectedBegin} trailing bytes after the last tensor are not covered by the header`);
  }
  return { entries: infos, metadata };
}

/** The header length from the 8-byte prefix, checked against the file's size. */
function headerLength(file: string, prefix: Uint8Array, fileSize: number): number {
  if (fileSize < 8) {
    throw new DataError(`${file}: not a safetensors file (${fileSize} bytes, shorter than the 8-byte header length)`);
  }
  const n = new DataView(prefix.buffer, prefix.byteOffset, 8).getBigUint64(0, true);
  if (n > BigInt(fileSize - 8)) {
    throw new DataError(`${file}: header length ${n} runs beyond the end of the file (${fileSize} bytes); truncated or not safetensors`);
  }
  const headerLen = Number(n);
  if (headerLen > MAX_HEADER_BYTES) throw new DataError(`${file}: header of ${headerLen} bytes is too large (limit ${MAX_HEADER_BYTES})`);
  return headerLen;
}

/**
 * Reads a safetensors file. Float tensors (F32, F16, BF16, F64) come back as float32; other dtypes
 * are rejected. Every structural problem is a DataError naming `file`.
 */
export function readSafetensors(file: string): SafetensorsFile {
  let buf: Buffer;
  try {
    buf = fs.readFileSync(file);
  } catch (err) {
    throw fileError(err, file);
  }
  const headerLen = headerLength(file, buf.subarray(0, 8), buf.length);
  const dataStart = 8 + headerLen;
  const { entries: infos, metadata } = parseHeader(file, buf.subarray(8, dataStart), buf.length - dataStart);

  const tensors = new Map<string, SafetensorsTensor>();
  for (const t of infos) {
    if (!READABLE_DTYPES.includes(t.dtype)) {
      throw new DataError(`${file}: tensor '${t.name}' has unsupported dtype ${t.dtype} (supported: ${READABLE_DTYPES.join(', ')})`);
    }
    const bytes = buf.subarray(dataStart + t.begin, dataStart + t.end);
    tensors.set(t.name, { dtype: t.dtype, shape: t.shape, data: decode(t.dtype, bytes) });
  }
  return { tensors, metadata };
}

/** Reads exactly `into.byteLength` bytes at `position` of an open file; fewer (a file cut short) is a DataError. */
export function readBytesAt(fd: number, file: string, into: Uint8Array, position: number): void {
  // One read call is capped near 2 GiB; a tensor may be larger.
  const CHUNK = 1 << 30;
  let done = 0;
  while (done < into.byteLength) {
    const want = Math.min(CHUNK, into.byteLength - done);
    let got: number;
    try {
      got = fs.readSync(fd, into, done, want, position + done);
    } catch (err) {
      throw fileError(err, file);
    }
    if (got === 0) throw new DataError(`${file}: ends after ${position + done} bytes, inside data the header places up to byte ${position + into.byteLength}; truncated?`);
    done += got;
  }
}

/**
 * Reads and validates only the header of an open safetensors file (same rules and messages as `readSafetensors`),
 * so that large tensors can then be read one by one with `readBytesAt` straight into their own arrays.
 */
export function readSafetensorsLayout(fd: number, file: string): SafetensorsLayout {
  let size: number;
  try {
    size = fs.fstatSync(fd).size;
  } catch (err) {
    throw fileError(err, file);
  }
  const prefix = new Uint8Array(8);
  if (size >= 8) readBytesAt(fd, file, prefix, 0);
  const headerLen = headerLength(file, prefix, size);
  const headerBytes = new Uint8Array(headerLen);
  readBytesAt(fd, file, headerBytes, 8);
  const dataStart = 8 + headerLen;
  const { entries, metadata } = parseHeader(file, headerBytes, size - dataStart);
  return { dataStart, entries, metadata };
}

/**
 * Checks that `tensors` holds every name in `expected` with exactly that shape. Extra tensors are
 * allowed (callers that care can compare the name sets). Throws DataError:
 * `model.safetensors: tensor 'qkv' has shape [2,3,4,8,8], expected [2,3,4,16,8]`.
 */
export function expectShapes(
  file: string,
  tensors: ReadonlyMap<string, { shape: readonly number[] }> | Readonly<Record<string, { shape: readonly number[] }>>,
  expected: Readonly<Record<string, readonly number[]>>,
): void {
  const get = (name: string): { shape: readonly number[] } | undefined =>
    tensors instanceof Map ? tensors.get(name) : Object.hasOwn(tensors, name) ? (tensors as Record<string, { shape: readonly number[] }>)[name] : undefined;
  for (const [name, shape] of Object.entries(expected)) {
    const t = get(name);
    if (t === undefined) throw new DataError(`${file}: tensor '${name}' is missing (expected shape ${shapeStr(shape)})`);
    if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
      throw new DataError(`${file}: tensor '${name}' has shape ${shapeStr(t.shape)}, expected ${shapeStr(shape)}`);
    }
  }
}
