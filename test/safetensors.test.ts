import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DataError } from '../src/errors.js';
import { expectShapes, readSafetensors, writeSafetensors } from '../src/io/safetensors.js';

function tmpDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'unforget-st-'));
}

/** Float32 values as little-endian bytes, built with DataView (independent of the code under test). */
function f32le(values: number[]): number[] {
  const dv = new DataView(new ArrayBuffer(values.length * 4));
  values.forEach((v, i) => dv.setFloat32(4 * i, v, true));
  return [...new Uint8Array(dv.buffer)];
}

/** A safetensors file from a header (object or raw JSON text, unpadded) and data bytes. */
function build(header: unknown, data: number[] | Uint8Array = [], headerLen?: number): Buffer {
  const json = Buffer.from(typeof header === 'string' ? header : JSON.stringify(header), 'utf8');
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(headerLen ?? json.length));
  return Buffer.concat([len, json, Buffer.from(data)]);
}

function writeRaw(bytes: Uint8Array): string {
  const f = path.join(tmpDir(), 'model.safetensors');
  fs.writeFileSync(f, bytes);
  return f;
}

// Byte vectors from the reference implementation's own tests (huggingface/safetensors,
// safetensors/src/tensor.rs): test_serialization, test_serialization_forced_alignement, test_empty.
const REF_ATTN_DOT_0 = [
  64, 0, 0, 0, 0, 0, 0, 0, 123, 34, 97, 116, 116, 110, 46, 48, 34, 58, 123, 34, 100, 116, 121, 112, 101, 34, 58,
  34, 70, 51, 50, 34, 44, 34, 115, 104, 97, 112, 101, 34, 58, 91, 49, 44, 50, 44, 51, 93, 44, 34, 100, 97, 116,
  97, 95, 111, 102, 102, 115, 101, 116, 115, 34, 58, 91, 48, 44, 50, 52, 93, 125, 125, 0, 0, 0, 0, 0, 0, 128, 63,
  0, 0, 0, 64, 0, 0, 64, 64, 0, 0, 128, 64, 0, 0, 160, 64,
];
const REF_ATTN0_ALIGNED = [
  72, 0, 0, 0, 0, 0, 0, 0, 123, 34, 97, 116, 116, 110, 48, 34, 58, 123, 34, 100, 116, 121, 112, 101, 34, 58, 34,
  70, 51, 50, 34, 44, 34, 115, 104, 97, 112, 101, 34, 58, 91, 49, 44, 49, 44, 50, 44, 51, 93, 44, 34, 100, 97, 116,
  97, 95, 111, 102, 102, 115, 101, 116, 115, 34, 58, 91, 48, 44, 50, 52, 93, 125, 125, 32, 32, 32, 32, 32, 32, 32,
  0, 0, 0, 0, 0, 0, 128, 63, 0, 0, 0, 64, 0, 0, 64, 64, 0, 0, 128, 64, 0, 0, 160, 64,
];
const REF_EMPTY = [8, 0, 0, 0, 0, 0, 0, 0, 123, 125, 32, 32, 32, 32, 32, 32];
const REF_EMPTY_WITH_METADATA = [
  40, 0, 0, 0, 0, 0, 0, 0, 123, 34, 95, 95, 109, 101, 116, 97, 100, 97, 116, 97, 95, 95, 34, 58, 123, 34, 102, 114,
  97, 109, 101, 119, 111, 114, 107, 34, 58, 34, 112, 116, 34, 125, 125, 32, 32, 32, 32, 32,
];

test('writer output is byte-identical to the reference serializer', () => {
  const dir = tmpDir();
  const f = path.join(dir, 'a.safetensors');
  const data = new Float32Array([0, 1, 2, 3, 4, 5]);
  writeSafetensors(f, { 'attn.0': { shape: [1, 2, 3], data } });
  assert.deepEqual([...fs.readFileSync(f)], REF_ATTN_DOT_0);
  writeSafetensors(f, { attn0: { shape: [1, 1, 2, 3], data } });
  assert.deepEqual([...fs.readFileSync(f)], REF_ATTN0_ALIGNED);
  writeSafetensors(f, {});
  assert.deepEqual([...fs.readFileSync(f)], REF_EMPTY);
  writeSafetensors(f, {}, { framework: 'pt' });
  assert.deepEqual([...fs.readFileSync(f)], REF_EMPTY_WITH_METADATA);
});

test('a 2x2 F32 tensor: hand-built bytes', () => {
  const f = path.join(tmpDir(), 'w.safetensors');
  writeSafetensors(f, { w: { shape: [2, 2], data: new Float32Array([1, -2, 0.5, 3]) } });
  const header = '{"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}}';
  assert.equal(header.length, 57); // padded with 7 spaces to 64
  const expected = [64, 0, 0, 0, 0, 0, 0, 0, ...Buffer.from(header + '       '), ...f32le([1, -2, 0.5, 3])];
  assert.deepEqual([...fs.readFileSync(f)], expected);
});

test('reads the reference bytes', () => {
  const st = readSafetensors(writeRaw(Buffer.from(REF_ATTN0_ALIGNED)));
  assert.deepEqual([...st.tensors.keys()], ['attn0']);
  const t = st.tensors.get('attn0')!;
  assert.equal(t.dtype, 'F32');
  assert.deepEqual(t.shape, [1, 1, 2, 3]);
  assert.deepEqual([...t.data], [0, 1, 2, 3, 4, 5]);
  assert.deepEqual(st.metadata, {});
  assert.deepEqual(readSafetensors(writeRaw(Buffer.from(REF_EMPTY_WITH_METADATA))).metadata, { framework: 'pt' });
});

test('round trip: sorted names, exact float bits, metadata, scalars and empty tensors', () => {
  const f = path.join(tmpDir(), 'model.safetensors');
  const special = new Float32Array([NaN, -0, Infinity, -Infinity, 1e-45, 3.4028234663852886e38, Math.fround(0.1)]);
  const big = new Float32Array(1000).map((_, i) => Math.sin(i));
  writeSafetensors(
    f,
    {
      zeta: { shape: [7], data: special },
      alpha: { shape: [10, 10, 10], data: big },
      scalar: { shape: [], data: new Float32Array([42]) },
      empty: { shape: [0, 3], data: new Float32Array(0) },
    },
    { format: 'pt', b: 'x"y' },
  );
  const st = readSafetensors(f);
  assert.deepEqual([...st.tensors.keys()], ['alpha', 'empty', 'scalar', 'zeta']);
  assert.deepEqual(st.metadata, { b: 'x"y', format: 'pt' });
  assert.deepEqual(st.tensors.get('alpha')!.shape, [10, 10, 10]);
  assert.deepEqual([...st.tensors.get('alpha')!.data], [...big]);
  assert.deepEqual(st.tensors.get('scalar')!.shape, []);
  assert.deepEqual([...st.tensors.get('scalar')!.data], [42]);
  assert.equal(st.tensors.get('empty')!.data.length, 0);
  const z = st.tensors.get('zeta')!.data;
  assert.deepEqual(new Uint32Array(z.buffer, z.byteOffset, z.length), new Uint32Array(special.buffer));
  // Header length is a multiple of 8 and the data of the first tensor starts 8-aligned.
  const n = Number(fs.readFileSync(f).readBigUInt64LE(0));
  assert.equal(n % 8, 0);
  // The returned data is a copy, not a view into a shared file buffer.
  assert.equal(st.tensors.get('alpha')!.data.byteOffset, 0);
});

test('F16, BF16 and F64 tensors are converted to float32; unaligned data is fine', () => {
  const f16 = [0x3c00, 0xc000, 0x3555, 0x0001, 0x7c00, 0x8000, 0x7bff]; // 1, -2, ~1/3, 2^-24, inf, -0, 65504
  const bf16 = [0x3f80, 0xc040, 0x4049]; // 1, -3, 3.140625
  const f64 = [Math.PI, -1e-3];
  const bytes: number[] = [];
  for (const h of f16) bytes.push(h & 0xff, h >> 8);
  for (const h of bf16) bytes.push(h & 0xff, h >> 8);
  const dv = new DataView(new ArrayBuffer(16));
  f64.forEach((v, i) => dv.setFloat64(8 * i, v, true));
  bytes.push(...new Uint8Array(dv.buffer));
  // Deliberately odd header length (no padding), so tensor data sits at unaligned file offsets.
  const header = {
    h: { dtype: 'F16', shape: [7], data_offsets: [0, 14] },
    b: { dtype: 'BF16', shape: [3], data_offsets: [14, 20] },
    d: { dtype: 'F64', shape: [2], data_offsets: [20, 36] },
  };
  const file = build(JSON.stringify(header) + ' ', bytes);
  assert.notEqual((file.length - 36) % 2, 0);
  const st = readSafetensors(writeRaw(file));
  assert.deepEqual([...st.tensors.keys()], ['h', 'b', 'd']); // offset order
  const h = st.tensors.get('h')!;
  assert.equal(h.dtype, 'F16');
  assert.deepEqual([...h.data], [1, -2, Math.fround(0.333251953125), 2 ** -24, Infinity, -0, 65504]);
  assert.deepEqual([...st.tensors.get('b')!.data], [1, -3, 3.140625]);
  assert.deepEqual([...st.tensors.get('d')!.data], f64.map(Math.fround));
});

test('F16 NaN decodes to NaN', () => {
  const st = readSafetensors(writeRaw(build({ n: { dtype: 'F16', shape: [1], data_offsets: [0, 2] } }, [0x00, 0x7e])));
  assert.ok(Number.isNaN(st.tensors.get('n')!.data[0]));
});

/** Asserts a one-line DataError that names the file and matches `re`. */
function assertBad(bytes: Uint8Array, re: RegExp): void {
  const f = writeRaw(bytes);
  assert.throws(
    () => readSafetensors(f),
    (e: unknown) => {
      assert.ok(e instanceof DataError, `not a DataError: ${e}`);
      assert.ok(e.message.startsWith(`${f}: `), e.message);
      assert.ok(!e.message.includes('\n'), 'one line');
      assert.match(e.message, re);
      return true;
    },
  );
}

test('structural errors are one-line DataErrors naming the file', () => {
  const ok = { dtype: 'F32', shape: [2], data_offsets: [0, 8] };
  const eight = new Array(8).fill(0);
  assertBad(Buffer.from([1, 2, 3]), /3 bytes, shorter than the 8-byte header length/);
  assertBad(build('{}', [], 100), /header length 100 runs beyond the end of the file/);
  const huge = Buffer.alloc(8);
  huge.writeBigUInt64LE(2n ** 63n);
  assertBad(huge, /header length \d+ runs beyond/);
  assertBad(build('{"a": '), /header is not valid UTF-8 JSON/);
  assertBad(build(Buffer.from([0x7b, 0xff, 0x7d]).toString('latin1')), /not valid UTF-8 JSON/);
  assertBad(Buffer.concat([Buffer.from([3, 0, 0, 0, 0, 0, 0, 0]), Buffer.from([0x7b, 0xff, 0x7d])]), /not valid UTF-8 JSON/);
  assertBad(build('[1,2]'), /header must be a JSON object, got an array/);
  assertBad(build('null'), /header must be a JSON object, got null/);
  assertBad(build({ w: 5 }), /tensor 'w' is malformed: expected an object, got 5/);
  assertBad(build({ w: { shape: [2], data_offsets: [0, 8] } }, eight), /tensor 'w' is malformed: dtype must be a string/);
  assertBad(build({ w: { ...ok, dtype: 'F33' } }, eight), /tensor 'w' is malformed: unknown dtype 'F33'/);
  assertBad(build({ w: { ...ok, shape: [2, -1] } }, eight), /tensor 'w' is malformed: shape must be an array of non-negative integers/);
  assertBad(build({ w: { ...ok, shape: '2' } }, eight), /shape must be an array/);
  assertBad(build({ w: { ...ok, data_offsets: [0] } }, eight), /tensor 'w' is malformed: data_offsets must be \[begin, end\]/);
  assertBad(build({ w: { ...ok, data_offsets: [0, 8.5] } }, eight), /data_offsets must be/);
  assertBad(build({ w: { ...ok, data_offsets: [8, 0] } }, eight), /tensor 'w' has data_offsets \[8,0\] with end before begin/);
  assertBad(build({ w: { ...ok, data_offsets: [0, 16] }, }, eight), /tensor 'w' data_offsets \[0,16\] run beyond the data section \(8 bytes\)/);
  assertBad(
    build({ a: ok, b: { ...ok, data_offsets: [4, 12] } }, new Array(12).fill(0)),
    /tensor 'b' data_offsets \[4,12\] overlap tensor 'a'/,
  );
  assertBad(build({ w: { ...ok, data_offsets: [4, 12] } }, new Array(12).fill(0)), /gap of 4 bytes before tensor 'w'/);
  assertBad(build({ w: { ...ok, shape: [3] } }, eight), /tensor 'w' has 8 bytes but F32 shape \[3\] needs 12/);
  assertBad(build({ w: ok }, new Array(10).fill(0)), /2 trailing bytes after the last tensor/);
  assertBad(build({}, [1]), /1 trailing bytes/);
  assertBad(build({ w: { dtype: 'I32', shape: [2], data_offsets: [0, 8] } }, eight), /tensor 'w' has unsupported dtype I32/);
  assertBad(build({ __metadata__: { a: 1 } }), /__metadata__ 'a' must be a string, got 1/);
  assertBad(build({ __metadata__: [1] }), /__metadata__ must be an object of strings/);
});

test('a missing file is a DataError naming it', () => {
  const f = path.join(tmpDir(), 'nope.safetensors');
  assert.throws(() => readSafetensors(f), { name: 'DataError', message: `${f}: no such file` });
  const dir = tmpDir();
  assert.throws(() => readSafetensors(dir), (e: unknown) => e instanceof DataError && e.message.startsWith(`${dir}: cannot read`));
});

test('null __metadata__ is accepted as no metadata', () => {
  const st = readSafetensors(writeRaw(build({ __metadata__: null })));
  assert.deepEqual(st.metadata, {});
  assert.equal(st.tensors.size, 0);
});

test('writer rejects inconsistent tensors and writes nothing', () => {
  const dir = tmpDir();
  const f = path.join(dir, 'm.safetensors');
  const cases: Array<[Record<string, { shape: number[]; data: Float32Array }>, RegExp]> = [
    [{ w: { shape: [2, 3], data: new Float32Array(5) } }, /tensor 'w' has 5 values but shape \[2,3\] needs 6/],
    [{ __metadata__: { shape: [1], data: new Float32Array(1) } }, /'__metadata__' is reserved/],
    [{ w: { shape: [1.5], data: new Float32Array(1) } }, /tensor 'w' has an invalid shape \[1.5\]/],
    [{ w: { shape: [2], data: [1, 2] as unknown as Float32Array } }, /tensor 'w' data must be a Float32Array/],
  ];
  for (const [tensors, re] of cases) {
    assert.throws(() => writeSafetensors(f, tensors), (e: unknown) => e instanceof DataError && re.test(e.message) && e.message.startsWith(f));
  }
  assert.throws(() => writeSafetensors(f, {}, { a: 1 as unknown as string }), /metadata 'a' must be a string/);
  assert.deepEqual(fs.readdirSync(dir), []);
});

test('a subarray view is written with its own offset, not the whole buffer', () => {
  const f = path.join(tmpDir(), 'v.safetensors');
  const whole = new Float32Array([9, 9, 1, 2, 9]);
  writeSafetensors(f, { v: { shape: [2], data: whole.subarray(2, 4) } });
  assert.deepEqual([...readSafetensors(f).tensors.get('v')!.data], [1, 2]);
});

test('expectShapes', () => {
  const tensors = new Map([
    ['qkv', { shape: [2, 3, 4, 8, 8] }],
    ['embed_in', { shape: [10, 32] }],
  ]);
  expectShapes('model.safetensors', tensors, { embed_in: [10, 32] });
  assert.throws(() => expectShapes('model.safetensors', tensors, { qkv: [2, 3, 4, 16, 8] }), {
    name: 'DataError',
    message: "model.safetensors: tensor 'qkv' has shape [2,3,4,8,8], expected [2,3,4,16,8]",
  });
  assert.throws(() => expectShapes('model.safetensors', tensors, { embed_in: [10, 32, 1] }), /has shape \[10,32\], expected \[10,32,1\]/);
  assert.throws(() => expectShapes('model.safetensors', tensors, { up: [2, 32, 128] }), {
    name: 'DataError',
    message: "model.safetensors: tensor 'up' is missing (expected shape [2,32,128])",
  });
  // Plain records work too, and inherited properties do not count as tensors.
  expectShapes('m', { w: { shape: [1] } }, { w: [1] });
  assert.throws(() => expectShapes('m', { w: { shape: [1] } }, { toString: [1] }), /tensor 'toString' is missing/);
});
