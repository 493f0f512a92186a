/**
 * The one-line DataError each reader gives for a file it cannot read, word for word: a missing file
 * and a folder where a file belongs, for every caller of fileError.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadConfig } from '../src/config/load.js';
import { collectInputs } from '../src/data/corpus.js';
import { readTokenFile } from '../src/data/tokens.js';
import { DataError } from '../src/errors.js';
import { readNpz } from '../src/io/npz.js';
import { readSafetensors } from '../src/io/safetensors.js';
import { readSweepFile } from '../src/sweep/spec.js';

function expectDataError(fn: () => unknown, message: string): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof DataError, `expected a DataError, got ${e}`);
    assert.equal(e.message, message);
    return true;
  });
}

test('each reader names the file and says what it is when the file is missing or a folder', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'unforget-file-errors-'));
  try {
    const gone = path.join(dir, 'gone');
    const folder = path.join(dir, 'folder');
    fs.mkdirSync(folder);
    expectDataError(() => loadConfig([gone], []), `${gone}: config file not found`);
    expectDataError(() => loadConfig([folder], []), `${folder}: cannot read config file (EISDIR)`);
    expectDataError(() => readSweepFile(gone), `${gone}: sweep file not found`);
    expectDataError(() => readSweepFile(folder), `${folder}: cannot read sweep file (EISDIR)`);
    expectDataError(() => readTokenFile(gone), `${gone}: token file not found`);
    expectDataError(() => collectInputs([gone]), `${gone}: input not found`);
    expectDataError(() => readSafetensors(gone), `${gone}: no such file`);
    expectDataError(() => readSafetensors(folder), `${folder}: cannot read (EISDIR)`);
    expectDataError(() => readNpz(gone), `${gone}: no such file`);
    // A missing sidecar is allowed (null); one that cannot be read is not.
    const bin = path.join(dir, 'd.bin');
    fs.writeFileSync(bin, Buffer.alloc(4));
    assert.equal(readTokenFile(bin).sidecar.vocab_size, null);
    fs.mkdirSync(path.join(dir, 'd.json'));
    expectDataError(() => readTokenFile(bin), `${path.join(dir, 'd.json')}: cannot read sidecar (EISDIR)`);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
