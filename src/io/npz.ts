/**
 * NumPy `.npz` archives (what `np.savez` / `np.savez_compressed` write and `np.load` reads), so the
 * study's reference checkpoints (`weights.npz`) load here and ours load there.
 *
 * An `.npz` is a zip archive with one member `NAME.npy` per array. A `.npy` member is
 * `\x93NUMPY` · major · minor · header length (u16 LE for version 1.0, u32 LE for 2.0/3.0) · a Python
 * dict literal `{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }` padded with spaces and a
 * newline · the raw array bytes.
 *
 * Reading: the zip's central directory is located through the end-of-central-directory record (and
 * the zip64 end record when the archive needs it, so files beyond 4 GiB work), members are read one at
 * a time from the file (never the whole archive at once), stored (method 0) or deflated (method 8,
 * `np.savez_compressed`) members are accepted, and every member's CRC-32 and size are checked.
 * Arrays must be little-endian float32 (`<f4`); `<f8` is accepted and rounded to float32, because
 * float64 weights are a common `np.savez` accident and the model computes in float32 anyway.
 * Big-endian arrays and Fortran order are refused rather than silently reinterpreted.
 *
 * Writing reproduces `np.savez` (NumPy 1.24, CPython's zipfile) byte for byte for float32 arrays:
 * stored members, the 1980-01-01 timestamp, a zip64 extra field in each local header, zip64 records
 * only where a size or offset passes 2^31 − 1 (CPython's limit), and `.npy` headers padded to 64 bytes
 * with NumPy's spare room for growing the first axis. Every problem is a one-line DataError that names
 * the file and, where there is one, the array.
 */
import fs from 'node:fs';
import { constants as bufferConstants } from 'node:buffer';
import zlib from 'node:zlib';
import { DataError, fileError } from '../errors.js';
import { writeFileAtomic } from './atomic.js';
import { HOST_LITTLE_ENDIAN, numel, shapeStr } from '../util/shape.js';

export interface NpyArray {
  /** The dtype as stored (`<f4` or `<f8`); `data` is always float32. */
  descr: string;
  shape: number[];
  data: Float32Array;
}

export interface NpzInput {
  shape: number[];
  data: Float32Array;
}

const NPY_MAGIC = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]; // \x93NUMPY
const SIG_LOCAL = 0x04034b50;
const SIG_CENTRAL = 0x02014b50;
const SIG_EOCD = 0x06054b50;
const SIG_ZIP64_EOCD = 0x06064b50;
const SIG_ZIP64_LOCATOR = 0x07064b50;
const EOCD_SIZE = 22;
const ZIP64_LOCATOR_SIZE = 20;
const ZIP64_EOCD_SIZE = 56;
/** CPython's zipfile switches to zip64 fields above this, not at 2^32 − 1; we match it. */
const ZIP64_LIMIT = 2 ** 31 - 1;
const DOS_DATE_1980_01_01 = 0x0021;

// ---------------------------------------------------------------------------------------------
// CRC-32 (zip's polynomial). node:zlib has crc32 from Node 20.15; older 20.x use the table.
// ---------------------------------------------------------------------------------------------

let crcTable: Uint32Array | null = null;

function crc32Table(bytes: Uint8Array, init: number): number {
  if (!crcTable) {
    crcTable = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      crcTable[n] = c >>> 0;
    }
  }
  let c = ~init >>> 0;
  for (let i = 0; i < bytes.length; i++) c = crcTable[(c ^ bytes[i]!) & 0xff]! ^ (c >>> 8);
  return ~c >>> 0;
}

const zlibCrc32 = (zlib as { crc32?: (data: Uint8Array, value?: number) => number }).crc32;

/** CRC-32 of `bytes`, continuing from `init` (the CRC of what came before). */
export function crc32(bytes: Uint8Array, init = 0): number {
  // Node's zlib.crc32 returns 0, not `init`, for an empty view of a zero-length ArrayBuffer.
  if (bytes.length === 0) return init >>> 0;
  return zlibCrc32 ? zlibCrc32(bytes, init) >>> 0 : crc32Table(bytes, init);
}

// ---------------------------------------------------------------------------------------------
// .npy header: a Python literal (dict, tuple, list, str, int, True/False/None)
// ---------------------------------------------------------------------------------------------

type PyValue = string | number | boolean | null | PyValue[] | { [k: string]: PyValue };

/** Parses the subset of Python literal syntax that `np.lib.format` writes. Throws Error on anything else. */
function parsePyLiteral(text: string): PyValue {
  let i = 0;
  const ws = () => {
    while (i < text.length && /\s/.test(text[i]!)) i++;
  };
  const fail = (what: string): never => {
    throw new Error(`${what} at character ${i}`);
  };
  const value = (): PyValue => {
    ws();
    const c = text[i];
    if (c === '{') {
      i++;
      const obj: Record<string, PyValue> = {};
      for (;;) {
        ws();
        if (text[i] === '}') {
          i++;
          return obj;
        }
        const k = value();
        if (typeof k !== 'string') fail('dict key is not a string');
        ws();
        if (text[i] !== ':') fail("expected ':'");
        i++;
        obj[k as string] = value();
        ws();
        if (text[i] === ',') i++;
        else if (text[i] !== '}') fail("expected ',' or '}'");
      }
    }
    if (c === '(' || c === '[') {
      const close = c === '(' ? ')' : ']';
      i++;
      const arr: PyValue[] = [];
      for (;;) {
        ws();
        if (text[i] === close) {
          i++;
          return arr;
        }
        arr.push(value());
        ws();
        if (text[i] === ',') i++;
        else if (text[i] !== close) fail(`expected ',' or '${close}'`);
      }
    }
    if (c === "'" || c === '"') {
      i++;
      let s = '';
      while (i < text.length && text[i] !== c) {
        if (text[i] === '\\') {
          i++;
          if (i >= text.length) break;
        }
        s += text[i++];
      }
      if (text[i] !== c) fail('unterminated string');
      i++;
      return s;
    }
    const m = /^(-?\d+L?|True|False|None)/.exec(text.slice(i));
    if (!m) return fail(`unexpected ${c === undefined ? 'end' : `'${c}'`}`);
    i += m[0].length;
    if (m[0] === 'True') return true;
    if (m[0] === 'False') return false;
    if (m[0] === 'None') return null;
    return Number(m[0].replace('L', ''));
  };
  const v = value();
  ws();
  if (i !== text.length) fail('trailing characters');
  return v;
}

/**
 * Decodes one `.npy` member. `where` names it in errors (`file: array 'qkv'`).
 * Accepts `<f4` and `<f8` (converted to float32), C order only.
 */
export function parseNpy(bytes: Uint8Array, where: string): NpyArray {
  const bad = (what: string): never => {
    throw new DataError(`${where}: ${what}`);
  };
  if (bytes.length < 10 || NPY_MAGIC.some((b, k) => bytes[k] !== b)) bad('not a .npy array (bad magic; expected \\x93NUMPY)');
  const major = bytes[6]!, minor = bytes[7]!;
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let headerStart: number, headerLen: number;
  if (major === 1 && minor === 0) {
    headerStart = 10;
    headerLen = dv.getUint16(8, true);
  } else if ((major === 2 || major === 3) && minor === 0) {
    if (bytes.length < 12) bad('truncated .npy header');
    headerStart = 12;
    headerLen = dv.getUint32(8, true);
  } else {
    return bad(`unsupported .npy format version ${major}.${minor} (supported: 1.0, 2.0, 3.0)`);
  }
  if (headerStart + headerLen > bytes.length) bad(`.npy header of ${headerLen} bytes runs past the end of the array (${bytes.length} bytes); truncated`);
  const raw = bytes.subarray(headerStart, headerStart + headerLen);
  const text = major === 3 ? new TextDecoder('utf-8').decode(raw) : Buffer.from(raw).toString('latin1');
  let header: PyValue;
  try {
    header = parsePyLiteral(text);
  } catch (e) {
    return bad(`.npy header is not a Python dict literal (${(e as Error).message}): ${JSON.stringify(text.trim().slice(0, 80))}`);
  }
  if (header === null || typeof header !== 'object' || Array.isArray(header)) return bad('.npy header is not a dict');
  const { descr, fortran_order: fortran, shape } = header as Record<string, PyValue>;
  if (typeof descr !== 'string') return bad(`dtype ${JSON.stringify(descr)} is not supported (expected '<f4' float32)`);
  if (typeof fortran !== 'boolean') bad(`.npy header has no boolean 'fortran_order'`);
  if (!Array.isArray(shape) || !shape.every((d) => typeof d === 'number' && Number.isSafeInteger(d) && d >= 0)) {
    return bad(`.npy header has an invalid shape ${JSON.stringify(shape)}`);
  }
  const dims = shape as number[];
  if (/^>f[248]$/.test(descr)) bad(`dtype '${descr}' is big-endian; save little-endian float32 (arr.astype('<f4'))`);
  if (descr !== '<f4' && descr !== '<f8') bad(`dtype '${descr}' is not supported (expected '<f4' float32; '<f8' is converted)`);
  if (fortran) bad("is stored in Fortran order (fortran_order=True); save it in C order (np.ascontiguousarray)");
  const itemSize = descr === '<f4' ? 4 : 8;
  const need = numel(dims) * itemSize;
  const dataStart = headerStart + headerLen;
  const have = bytes.length - dataStart;
  if (have !== need) bad(`holds ${have} bytes of data but '${descr}' shape ${shapeStr(dims)} needs ${need}${have < need ? '; truncated' : ''}`);
  const body = bytes.subarray(dataStart);
  let data: Float32Array;
  if (descr === '<f4' && HOST_LITTLE_ENDIAN) {
    // Copy: the member buffer's offset may be unaligned for a Float32Array view.
    data = new Float32Array(new Uint8Array(body).buffer);
  } else {
    data = new Float32Array(numel(dims));
    const bv = new DataView(body.buffer, body.byteOffset, body.byteLength);
    for (let k = 0; k < data.length; k++) data[k] = itemSize === 4 ? bv.getFloat32(4 * k, true) : bv.getFloat64(8 * k, true);
  }
  return { descr, shape: dims, data };
}

/** The `.npy` header bytes NumPy 1.24 writes for a C-order little-endian float32 array of `shape`. */
export function npyHeader(shape: readonly number[]): Uint8Array {
  const shapeRepr = shape.length === 1 ? `(${shape[0]},)` : `(${shape.join(', ')})`;
  let dict = `{'descr': '<f4', 'fortran_order': False, 'shape': ${shapeRepr}, }`;
  // NumPy leaves room to grow the first axis in place: 21 digits minus the ones it has.
  if (shape.length > 0) dict += ' '.repeat(21 - String(shape[0]).length);
  let version = 1;
  let prefixLen = 10;
  if (dict.length + 1 + prefixLen > 0xffff) {
    version = 2;
    prefixLen = 12;
  }
  const hlen = dict.length + 1;
  const pad = 64 - ((prefixLen + hlen) % 64);
  const out = new Uint8Array(prefixLen + hlen + pad);
  out.set(NPY_MAGIC, 0);
  out[6] = version;
  out[7] = 0;
  const dv = new DataView(out.buffer);
  if (version === 1) dv.setUint16(8, hlen + pad, true);
  else dv.setUint32(8, hlen + pad, true);
  out.set(Buffer.from(dict + ' '.repeat(pad), 'latin1'), prefixLen);
  out[out.length - 1] = 0x0a;
  return out;
}

// ---------------------------------------------------------------------------------------------
// Zip reading
// ---------------------------------------------------------------------------------------------

interface ZipEntry {
  name: string;
  method: number;
  flags: number;
  crc: number;
  compressedSize: number;
  size: number;
  localOffset: number;
}

function readAt(fd: number, pos: number, len: number): Buffer {
  const buf = Buffer.alloc(len);
  let got = 0;
  while (got < len) {
    // one read(2) per ≤ 1 GiB: Node refuses single reads above 2 GiB
    const n = fs.readSync(fd, buf, got, Math.min(len - got, 1 << 30), pos + got);
    if (n === 0) break;
    got += n;
  }
  return got === len ? buf : buf.subarray(0, got);
}

function u64(b: Buffer, at: number): number {
  const v = b.readBigUInt64LE(at);
  return v > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(v);
}

/** The central directory of the zip archive open as `fd` (size `size`). */
function readCentralDirectory(file: string, fd: number, size: number): { entries: ZipEntry[]; cdOffset: number } {
  const notZip = (why: string): never => {
    throw new DataError(`${file}: not a valid .npz (zip) archive: ${why}`);
  };
  if (size < EOCD_SIZE) notZip(`${size} bytes is shorter than an end-of-central-directory record; truncated?`);
  const tailLen = Math.min(size, EOCD_SIZE + 0xffff + ZIP64_LOCATOR_SIZE);
  const tailStart = size - tailLen;
  const tail = readAt(fd, tailStart, tailLen);
  let eocd = -1;
  for (let k = tail.length - EOCD_SIZE; k >= 0; k--) {
    if (tail.readUInt32LE(k) === SIG_EOCD && k + EOCD_SIZE + tail.readUInt16LE(k + 20) <= tail.length) {
      eocd = k;
      break;
    }
  }
  if (eocd < 0) notZip('no end-of-central-directory record (file truncated, or not a zip)');
  if (tail.readUInt16LE(eocd + 4) !== 0 || tail.readUInt16LE(eocd + 6) !== 0) notZip('multi-disk archives are not supported');
  let count = tail.readUInt16LE(eocd + 10);
  let cdSize = tail.readUInt32LE(eocd + 12);
  let cdOffset = tail.readUInt32LE(eocd + 16);
  let cdEnd = tailStart + eocd;
  // Like CPython's zipfile, trust a zip64 locator right before the end record whenever there is one
  // (writers fill the 32-bit fields with real values when they fit, or with 0xFFFF… when they don't).
  const loc = eocd - ZIP64_LOCATOR_SIZE;
  const hasLocator = loc >= 0 && tail.readUInt32LE(loc) === SIG_ZIP64_LOCATOR;
  if (!hasLocator && (count === 0xffff || cdSize === 0xffffffff || cdOffset === 0xffffffff)) {
    notZip('the end record points to a zip64 record that is missing');
  }
  if (hasLocator) {
    const recPos = u64(tail, loc + 8);
    const rec = readAt(fd, recPos, ZIP64_EOCD_SIZE);
    if (rec.length < ZIP64_EOCD_SIZE || rec.readUInt32LE(0) !== SIG_ZIP64_EOCD) notZip(`no zip64 end record at offset ${recPos}`);
    count = u64(rec, 32);
    cdSize = u64(rec, 40);
    cdOffset = u64(rec, 48);
    cdEnd = recPos;
  }
  if (cdOffset + cdSize > cdEnd) notZip(`the central directory (offset ${cdOffset}, ${cdSize} bytes) runs past its end record; truncated or corrupt`);
  const cd = readAt(fd, cdOffset, cdSize);
  if (cd.length !== cdSize) notZip('the central directory is truncated');
  const entries: ZipEntry[] = [];
  let p = 0;
  for (let k = 0; k < count; k++) {
    if (p + 46 > cd.length || cd.readUInt32LE(p) !== SIG_CENTRAL) notZip(`central directory entry ${k} is corrupt`);
    const nameLen = cd.readUInt16LE(p + 28), extraLen = cd.readUInt16LE(p + 30), commentLen = cd.readUInt16LE(p + 32);
    if (p + 46 + nameLen + extraLen + commentLen > cd.length) notZip(`central directory entry ${k} is corrupt`);
    const flags = cd.readUInt16LE(p + 8);
    const name = cd.subarray(p + 46, p + 46 + nameLen).toString(flags & 0x800 ? 'utf8' : 'latin1');
    const e: ZipEntry = {
      name,
      flags,
      method: cd.readUInt16LE(p + 10),
      crc: cd.readUInt32LE(p + 16),
      compressedSize: cd.readUInt32LE(p + 20),
      size: cd.readUInt32LE(p + 24),
      localOffset: cd.readUInt32LE(p + 42),
    };
    // zip64 extended information: only the fields whose 32-bit slot holds 0xFFFFFFFF, in this order.
    let x = p + 46 + nameLen;
    const xEnd = x + extraLen;
    while (x + 4 <= xEnd) {
      const id = cd.readUInt16LE(x), len = cd.readUInt16LE(x + 2);
      if (id === 0x0001) {
        let f = x + 4;
        const take = (): number => {
          if (f + 8 > x + 4 + len) notZip(`'${name}': zip64 extra field is too short`);
          const v = u64(cd, f);
          f += 8;
          return v;
        };
        if (e.size === 0xffffffff) e.size = take();
        if (e.compressedSize === 0xffffffff) e.compressedSize = take();
        if (e.localOffset === 0xffffffff) e.localOffset = take();
      }
      x += 4 + len;
    }
    entries.push(e);
    p += 46 + nameLen + extraLen + commentLen;
  }
  return { entries, cdOffset };
}

/** The uncompressed, CRC-checked bytes of one member. */
function readMember(file: string, fd: number, e: ZipEntry, limit: number): Buffer {
  const bad = (what: string): never => {
    throw new DataError(`${file}: member '${e.name}': ${what}`);
  };
  if (e.flags & 0x1) bad('is encrypted; encrypted archives are not supported');
  if (e.method !== 0 && e.method !== 8) bad(`uses zip compression method ${e.method} (supported: 0 stored, 8 deflate)`);
  if (e.compressedSize > bufferConstants.MAX_LENGTH || e.size > bufferConstants.MAX_LENGTH) bad(`is ${Math.max(e.size, e.compressedSize)} bytes, too large for one buffer`);
  const local = readAt(fd, e.localOffset, 30);
  if (local.length < 30 || local.readUInt32LE(0) !== SIG_LOCAL) bad(`no local header at offset ${e.localOffset}; the archive is truncated or corrupt`);
  const dataStart = e.localOffset + 30 + local.readUInt16LE(26) + local.readUInt16LE(28);
  if (dataStart + e.compressedSize > limit) bad(`its ${e.compressedSize} bytes at offset ${dataStart} run past the central directory; the archive is truncated or corrupt`);
  const stored = readAt(fd, dataStart, e.compressedSize);
  if (stored.length !== e.compressedSize) bad('truncated');
  let data: Buffer;
  if (e.method === 8) {
    try {
      data = zlib.inflateRawSync(stored, { maxOutputLength: Math.max(1, e.size) });
    } catch (err) {
      return bad(`deflate data is corrupt (${(err as Error).message.split('\n')[0]})`);
    }
  } else {
    data = stored;
  }
  if (data.length !== e.size) bad(`holds ${data.length} bytes, the directory says ${e.size}; the archive is corrupt`);
  const got = crc32(data);
  if (got !== e.crc) bad(`CRC-32 mismatch (stored ${e.crc.toString(16).padStart(8, '0')}, computed ${got.toString(16).padStart(8, '0')}); the archive is corrupt`);
  return data;
}

/**
 * Reads every `NAME.npy` member of an `.npz` file as float32 arrays, keyed by NAME (other members
 * are ignored, as `np.load` would hand them back as raw bytes). `only`, if given, restricts decoding
 * to those names (others are not read at all).
 */
export function readNpz(file: string, only?: ReadonlySet<string>): Map<string, NpyArray> {
  let fd: number;
  try {
    fd = fs.openSync(file, 'r');
  } catch (err) {
    throw fileError(err, file);
  }
  try {
    const size = fs.fstatSync(fd).size;
    const { entries, cdOffset } = readCentralDirectory(file, fd, size);
    const out = new Map<string, NpyArray>();
    for (const e of entries) {
      if (!e.name.endsWith('.npy')) continue;
      const name = e.name.slice(0, -4);
      if (out.has(name)) throw new DataError(`${file}: array '${name}' is stored twice`);
      if (only && !only.has(name)) continue;
      out.set(name, parseNpy(readMember(file, fd, e, cdOffset), `${file}: array '${name}'`));
    }
    return out;
  } finally {
    fs.closeSync(fd);
  }
}

// ---------------------------------------------------------------------------------------------
// Zip writing (np.savez layout)
// ---------------------------------------------------------------------------------------------

export interface WriteNpzOptions {
  /** Use zip64 fields for every size and offset, not only where needed (to exercise readers). */
  forceZip64?: boolean;
}

/**
 * Writes float32 tensors as an uncompressed `.npz`, in the given key order, atomically. The bytes
 * equal those of `np.savez(file, **tensors)` with C-order `<f4` arrays.
 */
export function writeNpz(file: string, tensors: Record<string, NpzInput>, opts: WriteNpzOptions = {}): void {
  const limit = opts.forceZip64 ? -1 : ZIP64_LIMIT;
  const chunks: Uint8Array[] = [];
  const central: Buffer[] = [];
  let offset = 0;
  for (const [key, { shape, data }] of Object.entries(tensors)) {
    if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      throw new DataError(`${file}: array '${key}' has an invalid shape ${JSON.stringify(shape)}`);
    }
    if (!(data instanceof Float32Array)) throw new DataError(`${file}: array '${key}' data must be a Float32Array`);
    if (data.length !== numel(shape)) throw new DataError(`${file}: array '${key}' has ${data.length} values but shape ${shapeStr(shape)} needs ${numel(shape)}`);
    const name = Buffer.from(`${key}.npy`, 'utf8');
    const utf8Flag = /^[\x00-\x7f]*$/.test(key) ? 0 : 0x800;
    const header = npyHeader(shape);
    let body: Uint8Array;
    if (HOST_LITTLE_ENDIAN) body = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    else {
      body = new Uint8Array(data.byteLength);
      const dv = new DataView(body.buffer);
      for (let k = 0; k < data.length; k++) dv.setFloat32(4 * k, data[k]!, true);
    }
    const size = header.length + body.length;
    const crc = crc32(body, crc32(header));

    // Local header: CPython writes the zip64 extra (np.savez forces it) and real 32-bit sizes unless
    // they exceed its limit.
    const bigSize = size > limit;
    const local = Buffer.alloc(30 + name.length + 20);
    local.writeUInt32LE(SIG_LOCAL, 0);
    local.writeUInt16LE(bigSize ? 45 : 20, 4);
    local.writeUInt16LE(utf8Flag, 6);
    local.writeUInt16LE(0, 8); // stored
    local.writeUInt16LE(0, 10); // time 00:00:00
    local.writeUInt16LE(DOS_DATE_1980_01_01, 12);
    local.writeUInt32LE(crc, 14);
    local.writeUInt32LE(bigSize ? 0xffffffff : size, 18);
    local.writeUInt32LE(bigSize ? 0xffffffff : size, 22);
    local.writeUInt16LE(name.length, 26);
    local.writeUInt16LE(20, 28);
    name.copy(local, 30);
    local.writeUInt16LE(0x0001, 30 + name.length);
    local.writeUInt16LE(16, 32 + name.length);
    local.writeBigUInt64LE(BigInt(size), 34 + name.length);
    local.writeBigUInt64LE(BigInt(size), 42 + name.length);

    const zip64Fields: number[] = [];
    if (bigSize) zip64Fields.push(size, size);
    const bigOffset = offset > limit;
    if (bigOffset) zip64Fields.push(offset);
    const extra = Buffer.alloc(zip64Fields.length ? 4 + 8 * zip64Fields.length : 0);
    if (zip64Fields.length) {
      extra.writeUInt16LE(0x0001, 0);
      extra.writeUInt16LE(8 * zip64Fields.length, 2);
      zip64Fields.forEach((v, k) => extra.writeBigUInt64LE(BigInt(v), 4 + 8 * k));
    }
    const version = zip64Fields.length ? 45 : 20;
    const cen = Buffer.alloc(46 + name.length + extra.length);
    cen.writeUInt32LE(SIG_CENTRAL, 0);
    cen.writeUInt8(version, 4);
    cen.writeUInt8(3, 5); // made by: Unix
    cen.writeUInt16LE(version, 6);
    cen.writeUInt16LE(utf8Flag, 8);
    cen.writeUInt16LE(0, 10);
    cen.writeUInt16LE(0, 12);
    cen.writeUInt16LE(DOS_DATE_1980_01_01, 14);
    cen.writeUInt32LE(crc, 16);
    cen.writeUInt32LE(bigSize ? 0xffffffff : size, 20);
    cen.writeUInt32LE(bigSize ? 0xffffffff : size, 24);
    cen.writeUInt16LE(name.length, 28);
    cen.writeUInt16LE(extra.length, 30);
    cen.writeUInt32LE((0o600 << 16) >>> 0, 38); // external attributes: -rw-------
    cen.writeUInt32LE(bigOffset ? 0xffffffff : offset, 42);
    name.copy(cen, 46);
    extra.copy(cen, 46 + name.length);
    central.push(cen);

    chunks.push(local, header, body);
    offset += local.length + size;
  }
  const cdOffset = offset;
  const cdSize = central.reduce((s, b) => s + b.length, 0);
  const count = central.length;
  const tail: Buffer[] = [...central];
  const zip64 = count > 0xffff || cdOffset > limit || cdSize > limit;
  if (zip64) {
    const rec = Buffer.alloc(ZIP64_EOCD_SIZE);
    rec.writeUInt32LE(SIG_ZIP64_EOCD, 0);
    rec.writeBigUInt64LE(44n, 4);
    rec.writeUInt16LE(45, 12);
    rec.writeUInt16LE(45, 14);
    rec.writeBigUInt64LE(BigInt(count), 24);
    rec.writeBigUInt64LE(BigInt(count), 32);
    rec.writeBigUInt64LE(BigInt(cdSize), 40);
    rec.writeBigUInt64LE(BigInt(cdOffset), 48);
    const loc = Buffer.alloc(ZIP64_LOCATOR_SIZE);
    loc.writeUInt32LE(SIG_ZIP64_LOCATOR, 0);
    loc.writeBigUInt64LE(BigInt(cdOffset + cdSize), 8);
    loc.writeUInt32LE(1, 16);
    tail.push(rec, loc);
  }
  const eocd = Buffer.alloc(EOCD_SIZE);
  eocd.writeUInt32LE(SIG_EOCD, 0);
  // CPython writes the real values where they fit; forced zip64 writes the sentinels so that a
  // reader must take them from the zip64 record.
  const force = opts.forceZip64 === true;
  eocd.writeUInt16LE(force ? 0xffff : Math.min(count, 0xffff), 8);
  eocd.writeUInt16LE(force ? 0xffff : Math.min(count, 0xffff), 10);
  eocd.writeUInt32LE(force ? 0xffffffff : Math.min(cdSize, 0xffffffff), 12);
  eocd.writeUInt32LE(force ? 0xffffffff : Math.min(cdOffset, 0xffffffff), 16);
  tail.push(eocd);
  writeFileAtomic(file, [...chunks, ...tail]);
}
