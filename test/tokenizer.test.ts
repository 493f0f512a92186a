/**
 * `unforget tokenizer train` and `unforget tokenize` (docs/contract.md §3).
 *
 * The reference throughout is the Hugging Face `tokenizers` package itself: the trained
 * tokenizer.json must load there and round-trip text exactly, and every token file must equal that
 * package's own encoding of each document + EOS, in the order the seed defines. The BPE trainer is
 * also checked against the worked example of the Hugging Face course (merges of hug/pug/pun/bun).
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import { Tokenizer } from 'tokenizers';
import { parquetWriteBuffer } from 'hyparquet-writer';
import { cli, cliOk } from './helpers/cli.js';
import { BYTE_TO_CHAR, trainBpe } from '../src/data/bpe.js';
import { splitPoint } from '../src/data/corpus.js';
import { tokenizeCorpus } from '../src/data/tokenize.js';
import { readTokenFile } from '../src/data/tokens.js';
import { DataError } from '../src/errors.js';
import { Rng } from '../src/util/rng.js';

const N = 700;
const R = 10;

const ENGLISH = 'The quick brown fox jumps over the lazy dog. It\'s 2024, and we\'ve got 3.14 reasons to code!';
const SPANISH = '¿Dónde está el niño? ¡Qué año! El señor Muñoz comió piña y jamón en la montaña, según él.';
const EMOJI = 'Hi 👋🏽 family: 👨‍👩‍👧‍👦, flags 🇪🇸🇬🇧, math 𝔸∑∞ and 日本語のテキスト.';
const TRICKY = 'tabs\tand\r\nCRLF  double  spaces   \n\n\nlines\u0000nul \u00a0nbsp <|endoftext|> literal <|reserved_3|>';

/** A deterministic corpus of a few hundred KB: enough pairs for N tokens. */
function corpusText(lines: number, seed: number): string {
  const rng = new Rng(seed);
  const words = [...ENGLISH.split(' '), ...SPANISH.split(' '), ...EMOJI.split(' '), 'función', 'canción', 'información', 'the', 'and', 'of'];
  const syllables = ['ka', 'lo', 'mi', 'ñu', 'tré', 'sa', 'pón', 'di', 've', 'ro', 'gü', 'xa', 'be', 'tu', 'ni', 'fa', 'lé', 'qu', 'zo', 'ch'];
  const out: string[] = [];
  for (let i = 0; i < lines; i++) {
    const n = 4 + rng.int(12);
    const ws: string[] = [];
    for (let k = 0; k < n; k++) {
      if (rng.int(2) === 0) ws.push(words[rng.int(words.length)]!);
      else ws.push(Array.from({ length: 1 + rng.int(4) }, () => syllables[rng.int(syllables.length)]!).join(''));
    }
    out.push(ws.join(' '));
  }
  return out.join('\n');
}

const tmpDirs: string[] = [];
function tmpDir(): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'unforget-tokenizer-'));
  tmpDirs.push(d);
  return d;
}
after(() => {
  if (process.env.UNFORGET_KEEP_TMP) return;
  for (const d of tmpDirs) fs.rmSync(d, { recursive: true, force: true });
});

let work = '';
let tokFile = '';
let tok: Tokenizer;

before(() => {
  work = tmpDir();
  fs.mkdirSync(path.join(work, 'train', 'sub'), { recursive: true });
  fs.writeFileSync(path.join(work, 'train', 'a.txt'), corpusText(3000, 1));
  fs.writeFileSync(path.join(work, 'train', 'sub', 'b.txt.gz'), zlib.gzipSync(corpusText(1000, 2)));
  const r = cliOk(work, ['tokenizer', 'train', '--vocab-size', String(N), '--reserved', String(R), '--out', 'tk', 'train', '--no-progress']);
  const info = JSON.parse(r.stdout.trim()) as Record<string, unknown>;
  assert.equal(info.vocab_size, N);
  assert.equal(info.eos_token_id, R);
  tokFile = path.join(work, 'tk', 'tokenizer.json');
  tok = Tokenizer.fromFile(tokFile);
});

async function encode(text: string): Promise<number[]> {
  return (await tok.encode(text)).getIds();
}

// ---------------------------------------------------------------------------------------------
// The tokenizer
// ---------------------------------------------------------------------------------------------

test('tokenizer.json loads in `tokenizers` with exactly N ids: reserved, EOS, 256 bytes, merges', () => {
  assert.equal(tok.getVocabSize(true), N);
  const ids = new Set(Object.values(tok.getVocab(true)));
  assert.equal(ids.size, N);
  for (let i = 0; i < N; i++) assert.ok(ids.has(i), `id ${i} missing`);
  for (let i = 0; i < R; i++) assert.equal(tok.idToToken(i), `<|reserved_${i}|>`);
  assert.equal(tok.tokenToId('<|endoftext|>'), R);
  for (let b = 0; b < 256; b++) assert.equal(tok.idToToken(R + 1 + b), BYTE_TO_CHAR[b]);
  const json = JSON.parse(fs.readFileSync(tokFile, 'utf8')) as { model: { merges: string[] }; added_tokens: { id: number; special: boolean }[] };
  assert.ok(json.model.merges.length >= N - R - 1 - 256);
  assert.deepEqual(json.added_tokens.map((t) => [t.id, t.special]), Array.from({ length: R + 1 }, (_, i) => [i, true]));
});

test('round-trips English, Spanish, emoji and odd whitespace exactly', async () => {
  for (const text of [ENGLISH, SPANISH, EMOJI, TRICKY, ENGLISH + '\n\n' + SPANISH + ' ' + EMOJI, '', ' ', 'ñ']) {
    const ids = await encode(text);
    assert.equal(await tok.decode(ids, false), text, `round trip of ${JSON.stringify(text)}`);
    if (text.length > 0) assert.ok(ids.every((id) => id >= 0 && id < N));
  }
  // Learned merges are used: frequent words take fewer tokens than bytes.
  assert.ok((await encode(SPANISH)).length < Buffer.byteLength(SPANISH) / 2);
  // Special tokens in text encode to their ids.
  assert.deepEqual(await encode('<|endoftext|>'), [R]);
  assert.deepEqual(await encode('<|reserved_3|>'), [3]);
});

test('other layouts: --reserved 0 puts EOS at 0; the vocabulary is exactly --vocab-size', () => {
  const r = cliOk(work, ['tokenizer', 'train', '--vocab-size', '300', '--reserved', '0', '--out', 'tk0', 'train/a.txt', '--no-progress']);
  assert.equal(JSON.parse(r.stdout).vocab_size, 300);
  const t = Tokenizer.fromFile(path.join(work, 'tk0', 'tokenizer.json'));
  assert.equal(t.getVocabSize(true), 300);
  assert.equal(t.tokenToId('<|endoftext|>'), 0);
  assert.equal(t.idToToken(1), BYTE_TO_CHAR[0]);
});

test('BPE merges follow the Hugging Face course example (hug/pug/pun/bun/hugs)', () => {
  const counts = new Map([['hug', 10], ['pug', 5], ['pun', 12], ['bun', 4], ['hugs', 5]]);
  const model = trainBpe(counts, { vocabSize: 1 + 256 + 3, reserved: 0 });
  assert.deepEqual(model.merges, [['u', 'g'], ['u', 'n'], ['h', 'ug']]);
  assert.deepEqual(model.vocab.slice(-3), ['ug', 'un', 'hug']);
  assert.throws(() => trainBpe(counts, { vocabSize: 1 + 256 + 50, reserved: 0 }), (e: unknown) => e instanceof DataError && /ran out of pairs/.test(e.message));
});

test('documents cut at splitPoint encode exactly like the whole document', async () => {
  const rng = new Rng(7);
  const frags = ['word', ' ', '  ', '\n', '\n\n', '\t', '\r\n', '    ', 'ñandú', '¿qué?', '👍🏽', '(x, y)', "it's", '123', '.', '"', '<|endoftext|>', '日本'];
  for (let trial = 0; trial < 20; trial++) {
    let text = '';
    while (text.length < 3000) text += frags[rng.int(frags.length)]!;
    const whole = await encode(text);
    const limit = 200 + rng.int(400); // wide enough that a safe place always exists (else it cuts at `limit`)
    const ids: number[] = [];
    let rest = text;
    while (rest.length > 0) {
      const at = splitPoint(rest, limit);
      assert.ok(at > 0 && at <= limit);
      ids.push(...(await encode(rest.slice(0, at))));
      rest = rest.slice(at);
    }
    assert.deepEqual(ids, whole, `trial ${trial}, limit ${limit}`);
  }
});

// ---------------------------------------------------------------------------------------------
// tokenize
// ---------------------------------------------------------------------------------------------

/** A folder with every input kind, and the documents it holds in reading order. */
function makeInputs(dir: string): string[] {
  const longDoc = corpusText(400, 3); // > 4096 characters: read and encoded in pieces
  assert.ok(longDoc.length > 3 * 4096);
  const docs: string[] = [];
  fs.mkdirSync(path.join(dir, 'json'), { recursive: true });
  fs.mkdirSync(path.join(dir, 'pq'), { recursive: true });
  fs.mkdirSync(path.join(dir, 'txt'), { recursive: true });
  // Sorted walk order: json/, pq/, txt/; inside each, sorted names.
  const jl = [{ text: ENGLISH, id: 1 }, { text: SPANISH }, { text: null }, { text: EMOJI, meta: { a: 1 } }];
  fs.writeFileSync(path.join(dir, 'json', 'a.jsonl'), jl.map((o) => JSON.stringify(o)).join('\n') + '\n\n');
  docs.push(ENGLISH, SPANISH, EMOJI);
  fs.writeFileSync(path.join(dir, 'json', 'b.jsonl.gz'), zlib.gzipSync(JSON.stringify({ text: TRICKY }) + '\n'));
  docs.push(TRICKY);
  const pqRows = ['parquet row one: año', 'parquet row two 👍', longDoc.slice(0, 5000)];
  fs.writeFileSync(path.join(dir, 'pq', 'p.parquet'), new Uint8Array(parquetWriteBuffer({ columnData: [{ name: 'body', data: pqRows, type: 'STRING' }], rowGroupSize: 2 })));
  docs.push(...pqRows);
  fs.writeFileSync(path.join(dir, 'pq', 'q.parquet.gz'), zlib.gzipSync(new Uint8Array(parquetWriteBuffer({ columnData: [{ name: 'body', data: ['gzipped parquet'], type: 'STRING' }] }))));
  docs.push('gzipped parquet');
  const gzipPages = parquetWriteBuffer({
    columnData: [{ name: 'body', data: ['GZIP-compressed pages'], type: 'STRING' }],
    codec: 'GZIP',
    compressors: { GZIP: (input: Uint8Array) => new Uint8Array(zlib.gzipSync(input)) },
  });
  fs.writeFileSync(path.join(dir, 'pq', 'r.parquet'), new Uint8Array(gzipPages));
  docs.push('GZIP-compressed pages');
  fs.writeFileSync(path.join(dir, 'txt', 'long.txt'), longDoc);
  docs.push(longDoc);
  fs.writeFileSync(path.join(dir, 'txt', 'short.txt.gz'), zlib.gzipSync(SPANISH + '\n'));
  docs.push(SPANISH + '\n');
  fs.writeFileSync(path.join(dir, 'txt', 'empty.txt'), '');
  fs.writeFileSync(path.join(dir, 'txt', 'notes.csv'), 'ignored,file\n');
  fs.writeFileSync(path.join(dir, 'corpus.json'), JSON.stringify({ name: 'mixed', source: 'https://example.org/mixed', license: 'CC0-1.0' }));
  return docs;
}

test('tokenize: text/JSONL/Parquet/gzip inputs give the tokenizer\'s own ids + EOS, shuffled by seed', async () => {
  const dir = path.join(work, 'mixed');
  const docs = makeInputs(dir);
  const expected = await Promise.all(docs.map(async (d) => [...(await encode(d)), R]));
  // Parquet needs --column body; JSON Lines use the default field.
  const out = path.join(work, 'out', 'mixed.bin');
  const res = await tokenizeCorpus({ tokenizerFile: tokFile, out, inputs: [dir], column: 'body', seed: 3, datasetTokenId: 2 });
  assert.equal(res.documents, docs.length);
  const order = new Rng(3).permutation(docs.length);
  const want = Array.from(order).flatMap((k) => expected[k]!);
  const file = readTokenFile(out);
  assert.deepEqual(Array.from(file.tokens), want);
  assert.equal(file.sidecar.vocab_size, N);
  assert.equal(file.sidecar.dataset_token_id, 2);
  assert.equal(path.resolve(path.dirname(out), String(file.sidecar.tokenizer)), tokFile);
  assert.equal(file.sidecar.documents, docs.length);
  assert.equal(file.sidecar.tokens, want.length);
  assert.equal(file.sidecar.eos_token_id, R);
  const sources = file.sidecar.sources as Record<string, unknown>[];
  assert.equal(sources.length, 1);
  assert.equal(sources[0]!.name, 'mixed');
  assert.equal(sources[0]!.license, 'CC0-1.0');
  assert.deepEqual(fs.readdirSync(path.dirname(out)).sort(), ['mixed.bin', 'mixed.json']);

  // The same seed gives the same bytes; another seed the same documents in another order.
  const again = path.join(work, 'out', 'again.bin');
  await tokenizeCorpus({ tokenizerFile: tokFile, out: again, inputs: [dir], column: 'body', seed: 3, datasetTokenId: 2 });
  assert.deepEqual(fs.readFileSync(again), fs.readFileSync(out));
  const other = path.join(work, 'out', 'other.bin');
  await tokenizeCorpus({ tokenizerFile: tokFile, out: other, inputs: [dir], column: 'body', seed: 4 });
  const o = Array.from(readTokenFile(other).tokens);
  assert.notDeepEqual(o, want);
  assert.deepEqual([...o].sort((a, b) => a - b), [...want].sort((a, b) => a - b));
  assert.equal(readTokenFile(other).sidecar.dataset_token_id, 0);
});

test('tokenize CLI: one document per text file, JSONL --field, progress summary with MB/s', () => {
  const dir = path.join(work, 'cli-in');
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'd.jsonl'), [JSON.stringify({ body: 'uno dos' }), JSON.stringify({ body: 'tres' })].join('\n'));
  const r = cliOk(work, ['tokenize', '--tokenizer', tokFile, '--out', 'cli.bin', '--field', 'body', '--seed', '0', 'cli-in']);
  const info = JSON.parse(r.stdout) as Record<string, number>;
  assert.equal(info.documents, 2);
  assert.ok(info.mb_per_s >= 0);
  assert.match(r.stderr, /MB\/s/);
  assert.equal(readTokenFile(path.join(work, 'cli.bin')).tokens.length, info.tokens);
});

test('sample --prompt TEXT: the tokenizer from the data sidecar, the prompt after the dataset token id', async () => {
  // The run's token id comes from the sidecar alone (no data.token_id), as in `unforget tokenize` + `train`.
  fs.writeFileSync(path.join(work, 'p.txt'), corpusText(400, 3));
  cliOk(work, ['tokenize', '--tokenizer', tokFile, '--out', 'p.bin', '--dataset-token-id', '3', '--no-progress', 'p.txt']);
  cliOk(work, ['train', 'data.path=p.bin', 'model.D=16', 'model.L=1', 'model.H=8', 'model.T=16', 'opt.batch_size=4',
    'stop.num_tokens_train=64', 'log.progress=false', 'run.id=prompted']);
  const r = cliOk(work, ['sample', '--model', 'runs/prompted', '--prompt', 'the quick', '--max-tokens', '3', '--seed', '1']);
  const out = JSON.parse(r.stdout.trim()) as { ids: number[]; text: string };
  const prompt = await encode('the quick');
  assert.deepEqual(out.ids.slice(0, prompt.length + 1), [3, ...prompt], 'dataset token id, then the prompt');
  assert.equal(out.ids.length, prompt.length + 1 + 3);
  assert.equal(out.text, await tok.decode(out.ids.slice(prompt.length + 1), false), 'text is the continuation');
});

// ---------------------------------------------------------------------------------------------
// Errors: one line, exit 1, existing outputs untouched, no temporary files left
// ---------------------------------------------------------------------------------------------

function snapshot(dir: string): Map<string, string> {
  const m = new Map<string, string>();
  for (const f of fs.readdirSync(dir)) {
    const p = path.join(dir, f);
    const st = fs.statSync(p);
    if (st.isFile()) m.set(f, `${st.mtimeMs}:${fs.readFileSync(p).toString('base64')}`);
  }
  return m;
}

function assertFails(cwd: string, args: string[], culprit: RegExp): void {
  const before = snapshot(cwd);
  const r = cli(cwd, args);
  assert.equal(r.status, 1, `expected exit 1 for ${args.join(' ')}; stderr: ${r.stderr}`);
  const lines = r.stderr.trimEnd().split('\n');
  assert.equal(lines.length, 1, `one line expected, got:\n${r.stderr}`);
  assert.match(lines[0]!, /^error: /);
  assert.match(lines[0]!, culprit);
  assert.deepEqual(snapshot(cwd), before, 'files in the output folder changed');
}

test('errors: bad inputs exit 1 with one line naming the culprit and leave the old output untouched', () => {
  const dir = tmpDir();
  fs.writeFileSync(path.join(dir, 'docs.jsonl'), JSON.stringify({ text: 'hello' }) + '\n' + JSON.stringify({ body: 'no text field' }) + '\n');
  fs.writeFileSync(path.join(dir, 'x.parquet'), new Uint8Array(parquetWriteBuffer({ columnData: [{ name: 'body', data: ['a'], type: 'STRING' }] })));
  fs.writeFileSync(path.join(dir, 'empty.txt'), '');
  fs.writeFileSync(path.join(dir, 'bad.txt.gz'), 'not gzip at all');
  // An existing output that every failing run must leave as it is.
  fs.writeFileSync(path.join(dir, 'x.bin'), Buffer.from([1, 0, 2, 0]));
  fs.writeFileSync(path.join(dir, 'x.json'), JSON.stringify({ vocab_size: N, dataset_token_id: 0, tokenizer: null }));

  // A tokenizer whose vocabulary does not fit uint16 ids.
  const big = JSON.parse(fs.readFileSync(tokFile, 'utf8')) as { model: { vocab: Record<string, number> } };
  for (let i = N; i < 65540; i++) big.model.vocab[`zz${i}`] = i;
  fs.writeFileSync(path.join(dir, 'big.json'), JSON.stringify(big));

  const T = ['tokenize', '--tokenizer', tokFile, '--out', 'x.bin', '--no-progress'];
  assertFails(dir, [...T, 'docs.jsonl'], /docs\.jsonl:2: no field 'text'/);
  assertFails(dir, [...T, '--field', 'body', 'docs.jsonl'], /docs\.jsonl:1: no field 'body'/);
  assertFails(dir, [...T, 'x.parquet'], /x\.parquet: no column 'text' \(columns: body\)/);
  assertFails(dir, [...T, 'missing.txt'], /missing\.txt: input not found/);
  assertFails(dir, [...T, '--dataset-token-id', String(R), 'empty.txt'], new RegExp(`--dataset-token-id ${R} is not a reserved id .*0…${R - 1}`));
  assertFails(dir, [...T, 'empty.txt'], /no text: .*empty\.txt/);
  assertFails(dir, [...T, 'bad.txt.gz'], /bad\.txt\.gz: not valid gzip/);
  // A vocabulary beyond uint16 ids is written as uint32 (test/chat.test.ts), so only the empty input fails.
  assertFails(dir, ['tokenize', '--tokenizer', 'big.json', '--out', 'x.bin', '--no-progress', 'empty.txt'], /no text: .*empty\.txt/);
  assertFails(dir, ['tokenize', '--tokenizer', 'nope.json', '--out', 'x.bin', 'empty.txt'], /nope\.json: tokenizer file does not exist/);
  assertFails(dir, ['tokenize', '--tokenizer', tokFile, '--out', 'x.bin'], /no input files/);

  const TT = ['tokenizer', 'train', '--out', 'tk', '--no-progress'];
  assertFails(dir, [...TT, '--vocab-size', '70000', 'docs.jsonl'], /--vocab-size 70000 is too large: .*65536/);
  assertFails(dir, [...TT, '--vocab-size', '200', 'docs.jsonl'], /--vocab-size 200 is too small: 10 reserved ids \+ EOS \+ 256 byte symbols need at least 267/);
  assertFails(dir, [...TT, 'empty.txt'], /no text: .*empty\.txt/);
  assertFails(dir, [...TT, 'missing-folder'], /missing-folder: input not found/);
  assertFails(dir, [...TT], /no input files/);
  assertFails(dir, [...TT, '--vocab-size', '4096', '--field', 'text', 'docs.jsonl'], /docs\.jsonl:2: no field 'text'/);
  assert.ok(!fs.existsSync(path.join(dir, 'tk')));
});
