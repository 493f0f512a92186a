import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DataError } from '../src/errors.js';
import {
  BatchStream,
  TokenDataset,
  allSequences,
  readSidecar,
  readTokenFile,
  sidecarPath,
  writeTokenFile,
  type DatasetOptions,
} from '../src/data/tokens.js';

function tmpDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'unforget-tok-'));
}

/** Asserts a one-line DataError with this exact message or matching this pattern. */
function assertDataError(fn: () => unknown, message: string | RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof DataError, `expected DataError, got ${e}`);
    if (typeof message === 'string') assert.equal(e.message, message);
    else assert.match(e.message, message);
    assert.ok(!e.message.includes('\n'));
    return true;
  });
}

// ---------------------------------------------------------------------------------------------
// Files
// ---------------------------------------------------------------------------------------------

test('sidecarPath replaces .bin, or appends .json', () => {
  assert.equal(sidecarPath('/d/train.bin'), '/d/train.json');
  assert.equal(sidecarPath('data.bin.bin'), 'data.bin.json');
  assert.equal(sidecarPath('/d/tokens'), '/d/tokens.json');
});

test('write/read round trip; the file is little-endian uint16, the sidecar JSON', () => {
  const dir = tmpDir();
  const bin = path.join(dir, 'data.bin');
  const tokens = new Uint16Array([1, 258, 65535, 0]);
  writeTokenFile(bin, tokens, { vocab_size: 65536, dataset_token_id: 3, tokenizer: 'tok.json', num_docs: 2 });
  assert.deepEqual([...fs.readFileSync(bin)], [1, 0, 2, 1, 255, 255, 0, 0]);
  assert.deepEqual(JSON.parse(fs.readFileSync(path.join(dir, 'data.json'), 'utf8')), {
    vocab_size: 65536, dataset_token_id: 3, tokenizer: 'tok.json', num_docs: 2,
  });
  const f = readTokenFile(bin);
  assert.equal(f.path, bin);
  assert.deepEqual([...f.tokens], [1, 258, 65535, 0]);
  assert.equal(f.hasSidecar, true);
  assert.deepEqual(f.sidecar, { vocab_size: 65536, dataset_token_id: 3, tokenizer: 'tok.json', num_docs: 2 });
  assert.deepEqual(fs.readdirSync(dir).sort(), ['data.bin', 'data.json']);
});

test('writeTokenFile fills missing sidecar fields with null and rejects out-of-vocabulary ids', () => {
  const dir = tmpDir();
  const bin = path.join(dir, 'x.bin');
  writeTokenFile(bin, new Uint16Array([5]), { vocab_size: null });
  assert.deepEqual(JSON.parse(fs.readFileSync(path.join(dir, 'x.json'), 'utf8')), { dataset_token_id: null, tokenizer: null, vocab_size: null });
  const bin2 = path.join(dir, 'y.bin');
  assertDataError(() => writeTokenFile(bin2, new Uint16Array([1, 2, 9, 3]), { vocab_size: 8 }), `${bin2}: token id 9 at position 2 is ≥ vocabulary size 8`);
  assertDataError(() => writeTokenFile(bin2, new Uint16Array([1]), { vocab_size: 0 }), /vocab_size must be an integer in \[1, 65536\]/);
  assert.ok(!fs.existsSync(bin2) && !fs.existsSync(path.join(dir, 'y.json')));
});

test('a bare .bin without sidecar is readable; fields are null', () => {
  const dir = tmpDir();
  const bin = path.join(dir, 'ref.bin');
  fs.writeFileSync(bin, Buffer.from([7, 0, 8, 0]));
  const f = readTokenFile(bin);
  assert.deepEqual([...f.tokens], [7, 8]);
  assert.equal(f.hasSidecar, false);
  assert.deepEqual(f.sidecar, { vocab_size: null, dataset_token_id: null, tokenizer: null });
  assert.equal(readSidecar(bin), null);
  // Without a known vocabulary nothing is checked; with opts.V it is.
  assertDataError(() => readTokenFile(bin, { V: 8 }), `${bin}: token id 8 at position 1 is ≥ vocabulary size 8`);
  assert.deepEqual([...readTokenFile(bin, { V: 9 }).tokens], [7, 8]);
});

test('ids are checked against the sidecar vocab_size, or opts.V when given; first offender reported', () => {
  const dir = tmpDir();
  const bin = path.join(dir, 'data.bin');
  const tokens = new Uint16Array(20000).fill(5);
  tokens[12345] = 4096;
  tokens[15000] = 60000;
  fs.writeFileSync(bin, new Uint8Array(tokens.buffer));
  fs.writeFileSync(path.join(dir, 'data.json'), JSON.stringify({ vocab_size: 4096, dataset_token_id: 1, tokenizer: null }));
  assertDataError(() => readTokenFile(bin), `${bin}: token id 4096 at position 12345 is ≥ vocabulary size 4096`);
  assertDataError(() => readTokenFile(bin, { V: 50000 }), `${bin}: token id 60000 at position 15000 is ≥ vocabulary size 50000`);
  assert.equal(readTokenFile(bin, { V: 60001 }).tokens.length, 20000);
});

test('missing and truncated token files', () => {
  const dir = tmpDir();
  const missing = path.join(dir, 'nope.bin');
  assertDataError(() => readTokenFile(missing), `${missing}: token file not found`);
  const odd = path.join(dir, 'odd.bin');
  fs.writeFileSync(odd, Buffer.from([1, 0, 2]));
  assertDataError(() => readTokenFile(odd), `${odd}: 3 bytes is an odd length; a uint16 token file must have an even size (truncated?)`);
  assertDataError(() => readTokenFile(dir), `${dir}: not a regular file`);
  const empty = path.join(dir, 'empty.bin');
  fs.writeFileSync(empty, '');
  assert.equal(readTokenFile(empty).tokens.length, 0);
});

test('bad sidecars are DataErrors naming the sidecar', () => {
  const dir = tmpDir();
  const bin = path.join(dir, 'd.bin');
  const json = path.join(dir, 'd.json');
  fs.writeFileSync(bin, Buffer.from([1, 0]));
  const cases: Array<[string, string | RegExp]> = [
    ['{"vocab_size": 10,', new RegExp(`^${json}: sidecar is not valid JSON`)],
    ['[1]', `${json}: sidecar must be a JSON object`],
    ['null', `${json}: sidecar must be a JSON object`],
    ['{"vocab_size": "10"}', `${json}: vocab_size must be an integer in [1, 65536] or null, got "10"`],
    ['{"vocab_size": 0}', `${json}: vocab_size must be an integer in [1, 65536] or null, got 0`],
    ['{"vocab_size": 70000}', `${json}: vocab_size must be an integer in [1, 65536] or null, got 70000`],
    ['{"dataset_token_id": 1.5}', `${json}: dataset_token_id must be an integer in [0, 65535] or null, got 1.5`],
    ['{"vocab_size": 10, "dataset_token_id": 10}', `${json}: dataset_token_id 10 is ≥ vocab_size 10`],
    ['{"tokenizer": 5}', `${json}: tokenizer must be a string, an object or null, got 5`],
    ['{"tokenizer": ["a"]}', `${json}: tokenizer must be a string, an object or null, got ["a"]`],
  ];
  for (const [text, msg] of cases) {
    fs.writeFileSync(json, text);
    assertDataError(() => readTokenFile(bin), msg);
  }
  // Partial sidecars are fine: missing fields are null, an object tokenizer is kept.
  fs.writeFileSync(json, '{"tokenizer": {"type": "bpe"}, "dataset_token_id": null}');
  assert.deepEqual(readTokenFile(bin).sidecar, { vocab_size: null, dataset_token_id: null, tokenizer: { type: 'bpe' } });
  // A sidecar that is a directory cannot be read.
  fs.rmSync(json);
  fs.mkdirSync(json);
  assertDataError(() => readTokenFile(bin), new RegExp(`^${json}: cannot read sidecar`));
});

// ---------------------------------------------------------------------------------------------
// Split and batches
// ---------------------------------------------------------------------------------------------

const T = 4;
/** tokens[k] = k + 1000, so each row identifies its file sequence: s = (row[1] - 1001) / T. */
function makeTokens(numSeq: number, extra = 0): Uint16Array {
  return new Uint16Array(numSeq * T + extra).map((_, k) => k + 1000);
}
function seqOfRow(batch: Int32Array, r: number): number {
  return (batch[r * T + 1]! - 1001) / T;
}
/** Every row is an intact file sequence (apart from position 0); returns their indices. */
function rowsOf(batch: Int32Array, tokenId: number | null): number[] {
  const out: number[] = [];
  for (let r = 0; r < batch.length / T; r++) {
    const s = seqOfRow(batch, r);
    assert.ok(Number.isInteger(s), `row ${r}`);
    assert.equal(batch[r * T], tokenId ?? s * T + 1000, 'position 0');
    for (let t = 1; t < T; t++) assert.equal(batch[r * T + t], s * T + t + 1000);
    out.push(s);
  }
  return out;
}

const base: DatasetOptions = { T, batchSize: 5, numTokensValid: 10 * T + 3, splitSeed: 0, tokenId: 2, source: 'data.bin' };

test('split sizes: floor(len/T) sequences, floor(valid/T) validation, remainders dropped', () => {
  const ds = new TokenDataset(makeTokens(50, 3), base); // 3 trailing tokens: not a sequence
  assert.equal(ds.numSequences, 50);
  assert.equal(ds.numValidSequences, 10);
  assert.equal(ds.numTrainSequences, 40);
  assert.equal(ds.numValidBatches, 2);
  assert.equal(ds.numTrainBatches, 8);
  const ds7 = new TokenDataset(makeTokens(50), { ...base, batchSize: 7, numTokensValid: 14 * T });
  assert.equal(ds7.numValidBatches, 2);
  assert.equal(ds7.numTrainBatches, 5); // 36 training sequences
  const noValid = new TokenDataset(makeTokens(50), { ...base, numTokensValid: T - 1 });
  assert.equal(noValid.numValidSequences, 0);
  assert.equal(noValid.numValidBatches, 0);
  assert.equal(noValid.numTrainBatches, 10);
});

test('validation and training are disjoint and cover the file, as the split seed permutes them', () => {
  const ds = new TokenDataset(makeTokens(50), base);
  const valid = [...ds.validIndices];
  const train = [...ds.trainIndices];
  assert.deepEqual([...valid, ...train].sort((a, b) => a - b), Array.from({ length: 50 }, (_, i) => i));
  // Validation is a random subset, not the first sequences of the file.
  assert.notDeepEqual([...valid].sort((a, b) => a - b), Array.from({ length: 10 }, (_, i) => i));
  // Validation batches hold exactly the validation sequences, in split order.
  const fromBatches = [...rowsOf(ds.validBatch(0), 2), ...rowsOf(ds.validBatch(1), 2)];
  assert.deepEqual(fromBatches, valid);
  // Deterministic per split seed; a different seed gives a different split.
  assert.deepEqual([...new TokenDataset(makeTokens(50), base).validIndices], valid);
  assert.notDeepEqual([...new TokenDataset(makeTokens(50), { ...base, splitSeed: 1 }).validIndices].sort(), [...valid].sort());
  // The split depends on the file and T only, not on the batch size.
  assert.deepEqual([...new TokenDataset(makeTokens(50), { ...base, batchSize: 2 }).validIndices], valid);
});

test('an epoch of training batches visits each training sequence once and never a validation one', () => {
  const ds = new TokenDataset(makeTokens(50), base);
  const validSet = new Set(ds.validIndices);
  for (const epoch of [0, 1, 5]) {
    const seen: number[] = [];
    for (let i = 0; i < ds.numTrainBatches; i++) seen.push(...rowsOf(ds.trainBatch(epoch, i, 123), 2));
    assert.deepEqual([...seen].sort((a, b) => a - b), [...ds.trainIndices].sort((a, b) => a - b));
    assert.ok(seen.every((s) => !validSet.has(s)));
  }
});

test('each epoch reshuffles; the order is a function of (seed, epoch)', () => {
  const ds = new TokenDataset(makeTokens(50), base);
  const epochRows = (epoch: number, seed: number): number[] =>
    Array.from({ length: ds.numTrainBatches }, (_, i) => rowsOf(ds.trainBatch(epoch, i, seed), 2)).flat();
  const e0 = epochRows(0, 7);
  const e1 = epochRows(1, 7);
  assert.notDeepEqual(e1, e0);
  assert.deepEqual([...e1].sort(), [...e0].sort());
  assert.deepEqual(epochRows(0, 7), e0); // after computing epoch 1 (cache replaced)
  assert.notDeepEqual(epochRows(0, 8), e0);
  // A second dataset object gives the same batches.
  const ds2 = new TokenDataset(makeTokens(50), base);
  assert.deepEqual(rowsOf(ds2.trainBatch(1, 3, 7), 2), e1.slice(15, 20));
});

test('with a remainder, different epochs drop different sequences', () => {
  const ds = new TokenDataset(makeTokens(50), { ...base, batchSize: 7, numTokensValid: 0 }); // 50 = 7·7 + 1
  const dropped = new Set<number>();
  for (let epoch = 0; epoch < 10; epoch++) {
    const seen = new Set<number>();
    for (let i = 0; i < ds.numTrainBatches; i++) for (const s of rowsOf(ds.trainBatch(epoch, i, 0), 2)) seen.add(s);
    assert.equal(seen.size, 49);
    for (let s = 0; s < 50; s++) if (!seen.has(s)) dropped.add(s);
  }
  assert.ok(dropped.size > 1);
});

test('the dataset token id overwrites position 0 only; null keeps the file token', () => {
  const withId = new TokenDataset(makeTokens(50), { ...base, tokenId: 65535 });
  rowsOf(withId.trainBatch(0, 0, 0), 65535);
  rowsOf(withId.validBatch(1), 65535);
  const without = new TokenDataset(makeTokens(50), { ...base, tokenId: null });
  rowsOf(without.trainBatch(0, 0, 0), null);
  const b = without.validBatch(0);
  assert.equal(b[0], without.validIndices[0]! * T + 1000);
});

test('batches are [B, T] int32 and may be written into a caller buffer', () => {
  const ds = new TokenDataset(makeTokens(50), base);
  const b = ds.trainBatch(0, 0, 0);
  assert.ok(b instanceof Int32Array);
  assert.equal(b.length, 5 * T);
  const out = new Int32Array(5 * T);
  assert.equal(ds.trainBatch(0, 0, 0, out), out);
  assert.deepEqual(out, b);
  assert.equal(ds.validBatch(0, out), out);
  assert.throws(() => ds.trainBatch(0, 0, 0, new Int32Array(3)), /out has length 3, expected 5×4 = 20/);
  const rows = ds.sequences([3, 0, 49]);
  assert.deepEqual(rowsOf(rows, 2), [3, 0, 49]);
  assert.throws(() => ds.sequences([50]), RangeError);
});

test('bad indices and options are RangeErrors', () => {
  const ds = new TokenDataset(makeTokens(50), base);
  assert.throws(() => ds.trainBatch(0, 8, 0), /train batch index 8 out of range \[0, 8\)/);
  assert.throws(() => ds.trainBatch(0, -1, 0), RangeError);
  assert.throws(() => ds.trainBatch(-1, 0, 0), /epoch must be a non-negative integer/);
  assert.throws(() => ds.trainBatch(0.5, 0, 0), RangeError);
  assert.throws(() => ds.validBatch(2), /validation batch index 2 out of range \[0, 2\)/);
  const tokens = makeTokens(50);
  assert.throws(() => new TokenDataset(tokens, { ...base, T: 0 }), /T must be a positive integer/);
  assert.throws(() => new TokenDataset(tokens, { ...base, batchSize: 1.5 }), /batchSize must be a positive integer/);
  assert.throws(() => new TokenDataset(tokens, { ...base, numTokensValid: -1 }), RangeError);
  assert.throws(() => new TokenDataset(tokens, { ...base, tokenId: 2 ** 32 }), /tokenId must be null or an integer/);
});

test('split errors name the file and the numbers', () => {
  const tokens = makeTokens(50);
  assertDataError(
    () => new TokenDataset(tokens, { ...base, numTokensValid: 3 * T }),
    `data.bin: the validation split has 3 sequences (data.num_tokens_valid=12 / T=4), fewer than one batch of 5; set data.num_tokens_valid to 0 or at least 20`,
  );
  assertDataError(
    () => new TokenDataset(tokens, { ...base, numTokensValid: 46 * T }),
    `data.bin: the training split has 4 sequences (200 tokens / T=4 = 50 sequences, 46 of them for validation), fewer than one batch of 5`,
  );
  assertDataError(
    () => new TokenDataset(new Uint16Array(3), { ...base, numTokensValid: 0 }),
    `data.bin: the training split has 0 sequences (3 tokens / T=4 = 0 sequences, 0 of them for validation), fewer than one batch of 5`,
  );
  assertDataError(
    () => new TokenDataset(tokens, { ...base, numTokensValid: 51 * T }),
    `data.bin: data.num_tokens_valid=204 asks for 51 validation sequences of T=4, but the file has only 50 (200 tokens)`,
  );
  // Exactly one batch each is fine.
  const ds = new TokenDataset(makeTokens(10), { ...base, numTokensValid: 5 * T });
  assert.equal(ds.numValidBatches, 1);
  assert.equal(ds.numTrainBatches, 1);
  assertDataError(() => new TokenDataset(tokens, { ...base, source: undefined, numTokensValid: 3 * T }), /^token data: the validation split/);
});

test('BatchStream walks epochs in trainBatch order and resumes exactly', () => {
  const ds = new TokenDataset(makeTokens(50), base); // 8 batches per epoch
  const s = new BatchStream(ds, 11);
  assert.equal(s.epoch, 0);
  assert.equal(s.fractionalEpoch, 0);
  const got: Int32Array[] = [];
  for (let k = 0; k < 20; k++) got.push(s.nextBatch());
  for (let k = 0; k < 20; k++) assert.deepEqual(got[k], ds.trainBatch(Math.floor(k / 8), k % 8, 11), `batch ${k}`);
  assert.equal(s.batchesConsumed, 20);
  assert.equal(s.epoch, 2);
  assert.equal(s.fractionalEpoch, 2.5);
  const resumed = new BatchStream(ds, 11, 13);
  assert.equal(resumed.epoch, 1);
  assert.deepEqual(resumed.nextBatch(), got[13]);
  // The iterator protocol yields the same batches.
  let k = 0;
  for (const b of new BatchStream(ds, 11)) {
    assert.deepEqual(b, got[k]);
    if (++k === 10) break;
  }
  assert.throws(() => new BatchStream(ds, 11, -1), RangeError);
});

test('allSequences serves every full sequence in file order, last batch short', () => {
  const tokens = makeTokens(11, 2);
  const all = allSequences(tokens, T, 9);
  assert.equal(all.count, 11);
  assert.equal(all.numBatches(4), 3);
  assert.deepEqual(rowsOf(all.batch(0, 4), 9), [0, 1, 2, 3]);
  assert.deepEqual(rowsOf(all.batch(2, 4), 9), [8, 9, 10]);
  assert.equal(all.batch(2, 4).length, 3 * T);
  assert.deepEqual(rowsOf(allSequences(tokens, T, null).batch(1, 5), null), [5, 6, 7, 8, 9]);
  assert.throws(() => all.batch(3, 4), /batch index 3 out of range \[0, 3\)/);
  assert.throws(() => all.batch(0, 0), RangeError);
  assert.equal(allSequences(new Uint16Array(3), T, null).count, 0);
  assert.throws(() => allSequences(tokens, 0, null), RangeError);
});
