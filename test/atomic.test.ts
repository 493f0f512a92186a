import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { appendJsonLine, writeFileAtomic, writeJsonAtomic } from '../src/io/atomic.js';

function tmpDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'unforget-atomic-'));
}

test('writes strings, byte arrays and chunk lists, replacing the old file, leaving no temp', () => {
  const dir = tmpDir();
  const f = path.join(dir, 'a.txt');
  writeFileAtomic(f, 'héllo');
  assert.equal(fs.readFileSync(f, 'utf8'), 'héllo');
  writeFileAtomic(f, new Uint8Array([1, 2, 3]));
  assert.deepEqual([...fs.readFileSync(f)], [1, 2, 3]);
  const big = new Uint8Array(3 << 20).map((_, i) => i & 0xff);
  writeFileAtomic(f, [new Uint8Array([9]), Buffer.from('xy'), big.subarray(5)]);
  const got = fs.readFileSync(f);
  assert.equal(got.length, 1 + 2 + big.length - 5);
  assert.deepEqual([...got.subarray(0, 3)], [9, 0x78, 0x79]);
  assert.ok(got.subarray(3).equals(big.subarray(5)));
  writeFileAtomic(f, []);
  assert.equal(fs.readFileSync(f).length, 0);
  assert.deepEqual(fs.readdirSync(dir), ['a.txt']);
});

test('a failed rename leaves the destination untouched and removes the temp file', () => {
  const dir = tmpDir();
  const target = path.join(dir, 'sub');
  fs.mkdirSync(target);
  fs.writeFileSync(path.join(target, 'keep'), 'x');
  // Renaming a file over a non-empty directory fails (EISDIR/ENOTEMPTY...).
  assert.throws(() => writeFileAtomic(target, 'data'), (e: NodeJS.ErrnoException) => typeof e.code === 'string');
  assert.deepEqual(fs.readdirSync(dir), ['sub']);
  assert.equal(fs.readFileSync(path.join(target, 'keep'), 'utf8'), 'x');
});

test('a failed write keeps the old content and removes the temp file', () => {
  const dir = tmpDir();
  const f = path.join(dir, 'model.bin');
  writeFileAtomic(f, 'old');
  // The second chunk cannot be produced: the failure happens after the temp file was opened and written to.
  const bad = [new Uint8Array([1])];
  Object.defineProperty(bad, 1, {
    get() {
      throw new Error('boom');
    },
  });
  assert.throws(() => writeFileAtomic(f, bad), /boom/);
  assert.equal(fs.readFileSync(f, 'utf8'), 'old');
  assert.deepEqual(fs.readdirSync(dir), ['model.bin']);
});

test('a missing directory is an error naming ENOENT', () => {
  const dir = tmpDir();
  assert.throws(() => writeFileAtomic(path.join(dir, 'nope', 'x'), 'a'), { code: 'ENOENT' });
  assert.deepEqual(fs.readdirSync(dir), []);
});

test('writeJsonAtomic writes pretty JSON with a trailing newline', () => {
  const dir = tmpDir();
  const f = path.join(dir, 's.json');
  writeJsonAtomic(f, { a: 1, b: [true, null] });
  const text = fs.readFileSync(f, 'utf8');
  assert.ok(text.endsWith('}\n'));
  assert.ok(text.includes('\n  "a": 1'));
  assert.deepEqual(JSON.parse(text), { a: 1, b: [true, null] });
});

test('appendJsonLine appends one compact line per object', () => {
  const dir = tmpDir();
  const f = path.join(dir, 'metrics.jsonl');
  appendJsonLine(f, { step: 1, loss: 2.5 });
  appendJsonLine(f, { step: 2, loss: NaN, note: 'a\nb' });
  const lines = fs.readFileSync(f, 'utf8').split('\n');
  assert.equal(lines.length, 3);
  assert.equal(lines[2], '');
  assert.deepEqual(JSON.parse(lines[0]!), { step: 1, loss: 2.5 });
  assert.deepEqual(JSON.parse(lines[1]!), { step: 2, loss: null, note: 'a\nb' });
  assert.throws(() => appendJsonLine(f, undefined), TypeError);
  assert.equal(fs.readFileSync(f, 'utf8').split('\n').length, 3);
});
