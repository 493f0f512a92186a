/**
 * Tokenizer training from files, and corpora → token files (`.bin` + sidecar, docs/contract.md §3).
 *
 * `tokenizeCorpus` streams documents (src/data/corpus.ts), encodes them in batches with the Hugging
 * Face binding's `encodeBatch` (Rust, multi-threaded; the next batch is read while one is encoded),
 * and keeps only their token ids — uint16, spilled to a temporary file beside the output — plus where
 * each document starts (8 bytes per document). At the end the documents are read back in an order
 * shuffled by `seed`, each followed by EOS, into a temporary file that is renamed over the output, so a
 * failed or interrupted run never leaves a partial `.bin`. Memory is bounded by a batch of text and
 * the binding's working set, independent of the corpus size.
 */
import fs from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import v8 from 'node:v8';
import { runInNewContext } from 'node:vm';
import type { Encoding, Tokenizer } from 'tokenizers';
import { readTokenizerJson } from './tokenizer.js';
import { DataError } from '../errors.js';
import { writeFileAtomic, writeJsonAtomic } from '../io/atomic.js';
import { Rng } from '../util/rng.js';
import { type BpeModel, EOS_TOKEN, MAX_VOCAB_SIZE, RESERVED_PATTERN, WordCounter, checkLayout, tokenizerJson, trainBpe } from './bpe.js';
import { collectInputs, readDocuments, type InputFile, type Piece } from './corpus.js';
import { sidecarPath, type Sidecar } from './tokens.js';
import { HOST_LITTLE_ENDIAN } from '../util/shape.js';

/** Progress in on-disk input bytes (phase 'read'), merges (phase 'merge') or tokens written (phase 'write'). */
export type ProgressFn = (phase: 'read' | 'merge' | 'write', done: number, total: number) => void;

// ---------------------------------------------------------------------------------------------
// Training
// ---------------------------------------------------------------------------------------------

export interface TrainTokenizerOptions {
  vocabSize: number;
  reserved: number;
  /** JSONL field / Parquet column, as for tokenize. */
  field?: string;
  column?: string;
  onProgress?: ProgressFn;
}

export interface TrainTokenizerResult {
  json: Record<string, unknown>;
  model: BpeModel;
  files: number;
  textChars: number;
}

/** The document pieces of every input file in order, reporting ('read', bytes done, total bytes). */
async function* readAllDocuments(
  files: readonly InputFile[],
  opts: { field?: string; column?: string; onProgress?: ProgressFn },
): AsyncGenerator<Piece> {
  const totalBytes = files.reduce((s, f) => s + f.bytes, 0);
  let doneBytes = 0;
  for (const file of files) {
    yield* readDocuments(file, {
      field: opts.field,
      column: opts.column,
      onProgress: (b) => opts.onProgress?.('read', doneBytes + b, totalBytes),
    });
    doneBytes += file.bytes;
    opts.onProgress?.('read', doneBytes, totalBytes);
  }
}

/** Counts words in every input (text, JSONL, Parquet, gzip; folders recursively), then trains the BPE. */
export async function trainTokenizerFromFiles(inputs: readonly string[], opts: TrainTokenizerOptions): Promise<TrainTokenizerResult> {
  checkLayout(opts);
  const { files } = collectInputs(inputs);
  const counter = new WordCounter();
  for await (const piece of readAllDocuments(files, opts)) counter.add(piece.text);
  if (counter.counts.size === 0) throw new DataError(`the input has no text: ${files.map((f) => f.path).join(', ')}`);
  const model = trainBpe(counter.counts, opts, (done, total) => opts.onProgress?.('merge', done, total));
  return { json: tokenizerJson(model), model, files: files.length, textChars: counter.textChars };
}

// ---------------------------------------------------------------------------------------------
// Loading a tokenizer for tokenize
// ---------------------------------------------------------------------------------------------

export interface LoadedTokenizer {
  file: string;
  tokenizer: Tokenizer;
  vocabSize: number;
  eosId: number;
  /** Number of `<|reserved_k|>` ids 0 … k−1 at the start of the vocabulary (0 if none). */
  reserved: number;
}

export function loadTokenizerFile(file: string): LoadedTokenizer {
  const tokenizer = readTokenizerJson(file);
  const vocab = tokenizer.getVocab(true);
  const ids = Object.values(vocab);
  const vocabSize = ids.length === 0 ? 0 : Math.max(...ids) + 1;
  if (vocabSize > MAX_VOCAB_SIZE) {
    throw new DataError(`${file}: the tokenizer has ${vocabSize} token ids, more than the ${MAX_VOCAB_SIZE} a uint16 token file can hold`);
  }
  const eosId = tokenizer.tokenToId(EOS_TOKEN);
  if (eosId === null || eosId === undefined) throw new DataError(`${file}: the tokenizer has no ${EOS_TOKEN} token to end documents with`);
  let reserved = 0;
  for (;;) {
    const t = tokenizer.idToToken(reserved);
    const m = t === null || t === undefined ? null : RESERVED_PATTERN.exec(t);
    if (!m || Number(m[1]) !== reserved) break;
    reserved++;
  }
  return { file, tokenizer, vocabSize, eosId, reserved };
}

// ---------------------------------------------------------------------------------------------
// Token store: ids spill to a temporary file as they come, so memory does not grow with the corpus
// ---------------------------------------------------------------------------------------------

function readFully(fd: number, out: Uint8Array, offset: number, length: number, position: number, file: string): void {
  while (length > 0) {
    const n = fs.readSync(fd, out, offset, length, position);
    if (n === 0) throw new DataError(`${file}: temporary token file shrank while being read`);
    offset += n;
    length -= n;
    position += n;
  }
}

function writeFully(fd: number, bytes: Uint8Array, length: number): void {
  for (let off = 0; off < length; ) off += fs.writeSync(fd, bytes, off, length - off);
}

/** Token ids in host byte order, appended to `file` through a 2 MiB buffer, read back by range. */
class SpillStore {
  private readonly fd: number;
  private readonly buf = new Uint16Array(1 << 20);
  private fill = 0;
  length = 0;

  constructor(readonly file: string) {
    this.fd = fs.openSync(file, 'wx+', 0o600);
  }

  push(ids: ArrayLike<number>): void {
    const buf = this.buf;
    for (let i = 0; i < ids.length; i++) {
      buf[this.fill++] = ids[i]!;
      if (this.fill === buf.length) this.flush();
    }
    this.length += ids.length;
  }

  flush(): void {
    writeFully(this.fd, new Uint8Array(this.buf.buffer), this.fill * 2);
    this.fill = 0;
  }

  /** Copies ids [start, end) into `out` at `at` (after `flush`). */
  copy(start: number, end: number, out: Uint16Array, at: number): void {
    readFully(this.fd, new Uint8Array(out.buffer, out.byteOffset), at * 2, (end - start) * 2, start * 2, this.file);
  }

  close(): void {
    fs.closeSync(this.fd);
  }
}

class GrowableF64 {
  data = new Float64Array(1024);
  length = 0;
  push(v: number): void {
    if (this.length === this.data.length) {
      const next = new Float64Array(this.data.length * 2);
      next.set(this.data);
      this.data = next;
    }
    this.data[this.length++] = v;
  }
}

// ---------------------------------------------------------------------------------------------
// Tokenize
// ---------------------------------------------------------------------------------------------

export interface TokenizeOptions {
  tokenizerFile: string;
  out: string;
  inputs: readonly string[];
  /** Recorded in the sidecar; must be a reserved id. Default 0 when the tokenizer has reserved ids, else null. */
  datasetTokenId?: number | null;
  field?: string;
  column?: string;
  seed?: number;
  /** Characters of text per encodeBatch call: the binding holds native memory per character of a batch in
   *  flight, so a bounded batch bounds the memory, and larger batches are no faster. */
  batchChars?: number;
  onProgress?: ProgressFn;
  /** Called with the temporary files while they exist (for cleanup on Ctrl-C), then with []. */
  onTempFiles?: (files: string[]) => void;
}

export interface TokenizeResult {
  out: string;
  sidecar: Sidecar;
  documents: number;
  tokens: number;
  textBytes: number;
  seconds: number;
}

/**
 * A full garbage collection, if it can be had. Every Encoding the binding returns owns native
 * buffers (token strings, offsets, masks: ~100 bytes per token) that V8 does not see, so with our
 * small JS heap it collects rarely and dead Encodings pile up to gigabytes of RSS. One full
 * collection per batch (milliseconds: the JS heap is small; token ids live in typed arrays) keeps
 * memory bounded. `--expose-gc` set at run time makes `gc` available in a new context.
 */
const collectGarbage: () => void = (() => {
  try {
    v8.setFlagsFromString('--expose-gc');
    const gc: unknown = runInNewContext('gc');
    if (typeof gc === 'function') return () => void gc();
  } catch {
    // Not available: memory is then bounded only by V8's own heuristics.
  }
  return () => {};
})();

interface EncodedCorpus {
  /** Start of document k in the store; entry nDocs is the end. Each document ends with EOS. */
  docStarts: GrowableF64;
  textBytes: number;
}

/** Reads every input and appends the documents' ids (each + EOS) to `store`. */
async function encodeInputs(tok: LoadedTokenizer, files: InputFile[], store: SpillStore, opts: TokenizeOptions): Promise<EncodedCorpus> {
  const docStarts = new GrowableF64();
  const batchChars = opts.batchChars ?? 1 << 17;
  let textBytes = 0;

  // A batch is a list of pieces; ends[i] says that piece i ends its document. One batch is encoded
  // (on the binding's threads) while the next is read.
  let texts: string[] = [];
  let ends: boolean[] = [];
  let chars = 0;
  let pending: Promise<void> | null = null;
  let docOpen = false;

  const encode = async (batchTexts: string[], batchEnds: boolean[]): Promise<void> => {
    let encs: (Encoding | undefined)[] = await tok.tokenizer.encodeBatch(batchTexts);
    for (let i = 0; i < encs.length; i++) {
      if (!docOpen) {
        docStarts.push(store.length);
        docOpen = true;
      }
      store.push(encs[i]!.getIds());
      encs[i] = undefined;
      if (batchEnds[i]) {
        store.push([tok.eosId]);
        docOpen = false;
      }
    }
    encs = [];
    collectGarbage();
  };
  const flush = async () => {
    if (texts.length === 0) return;
    const [bt, be] = [texts, ends];
    texts = [];
    ends = [];
    chars = 0;
    if (pending) await pending;
    pending = encode(bt, be);
    // Keep a rejection from being reported as unhandled before it is awaited.
    pending.catch(() => {});
  };

  for await (const piece of readAllDocuments(files, opts)) {
    texts.push(piece.text);
    ends.push(piece.last);
    chars += piece.text.length;
    textBytes += Buffer.byteLength(piece.text, 'utf8');
    if (chars >= batchChars) await flush();
  }
  await flush();
  if (pending) await pending;
  docStarts.push(store.length);
  store.flush();
  return { docStarts, textBytes };
}

/** Writes the documents in `order` (little-endian uint16) to `tmp`, fsyncs it and renames it to `out`. */
function writeShuffled(store: SpillStore, docStarts: GrowableF64, order: Int32Array, tmp: string, out: string, onProgress?: ProgressFn): void {
  const buf = new Uint16Array(1 << 20);
  const bytes = new Uint8Array(buf.buffer);
  const fd = fs.openSync(tmp, 'wx', 0o644);
  try {
    let fill = 0, written = 0;
    const writeOut = () => {
      if (!HOST_LITTLE_ENDIAN) for (let i = 0; i < fill; i++) buf[i] = ((buf[i]! & 0xff) << 8) | (buf[i]! >>> 8);
      writeFully(fd, bytes, fill * 2);
      written += fill;
      fill = 0;
      onProgress?.('write', written, store.length);
    };
    for (let k = 0; k < order.length; k++) {
      const d = order[k]!;
      let s = docStarts.data[d]!;
      const e = docStarts.data[d + 1]!;
      while (s < e) {
        const n = Math.min(e - s, buf.length - fill);
        store.copy(s, s + n, buf, fill);
        fill += n;
        s += n;
        if (fill === buf.length) writeOut();
      }
    }
    writeOut();
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(tmp, out);
}

export async function tokenizeCorpus(opts: TokenizeOptions): Promise<TokenizeResult> {
  const t0 = performance.now();
  const tok = loadTokenizerFile(opts.tokenizerFile);
  const datasetTokenId = opts.datasetTokenId === undefined ? (tok.reserved > 0 ? 0 : null) : opts.datasetTokenId;
  if (datasetTokenId !== null && (!Number.isSafeInteger(datasetTokenId) || datasetTokenId < 0 || datasetTokenId >= tok.reserved)) {
    throw new DataError(
      `--dataset-token-id ${datasetTokenId} is not a reserved id of ${tok.file}` +
        (tok.reserved > 0 ? ` (reserved ids are 0…${tok.reserved - 1})` : ' (it has no <|reserved_k|> ids)'),
    );
  }
  const { files, manifests } = collectInputs(opts.inputs);
  const outDir = path.dirname(path.resolve(opts.out));
  if (!fs.existsSync(outDir)) fs.mkdirSync(outDir, { recursive: true });
  else if (!fs.statSync(outDir).isDirectory()) throw new DataError(`${opts.out}: ${outDir} is not a folder`);

  const tag = `${process.pid}-${randomBytes(4).toString('hex')}`;
  const tmp = `${opts.out}.tmp-${tag}`;
  const spill = `${opts.out}.ids-tmp-${tag}`;
  opts.onTempFiles?.([tmp, spill]);
  let store: SpillStore | undefined;
  let nDocs: number, tokens: number, textBytes: number;
  try {
    store = new SpillStore(spill);
    const enc = await encodeInputs(tok, files, store, opts);
    nDocs = enc.docStarts.length - 1;
    if (nDocs === 0) throw new DataError(`the input has no text: ${files.map((f) => f.path).join(', ')}`);
    tokens = store.length;
    textBytes = enc.textBytes;
    const order = new Rng(opts.seed ?? 0).permutation(nDocs);
    writeShuffled(store, enc.docStarts, order, tmp, opts.out, opts.onProgress);
  } finally {
    store?.close();
    fs.rmSync(spill, { force: true });
    fs.rmSync(tmp, { force: true });
    opts.onTempFiles?.([]);
  }

  const tokenizerRef = path.relative(outDir, path.resolve(tok.file)) || path.basename(tok.file);
  const sources = manifests.map((m) => ({ ...m, manifest: path.relative(outDir, path.resolve(String(m.manifest))) }));
  const seconds = (performance.now() - t0) / 1000;
  const sidecar: Sidecar = {
    vocab_size: tok.vocabSize,
    dataset_token_id: datasetTokenId,
    tokenizer: tokenizerRef,
    eos_token_id: tok.eosId,
    reserved_ids: tok.reserved,
    documents: nDocs,
    tokens,
    text_bytes: textBytes,
    shuffle_seed: opts.seed ?? 0,
    inputs: files.map((f) => f.path),
    sources,
    created_by: 'unforget tokenize',
  };
  writeJsonAtomic(sidecarPath(opts.out), sidecar);
  return { out: opts.out, sidecar, documents: nDocs, tokens, textBytes, seconds };
}

/** Writes `dir/tokenizer.json` atomically (creating `dir`); returns its path. */
export function writeTokenizerJson(dir: string, json: Record<string, unknown>): string {
  if (fs.existsSync(dir) && !fs.statSync(dir).isDirectory()) throw new DataError(`--out ${dir}: exists and is not a folder`);
  fs.mkdirSync(dir, { recursive: true });
  const file = path.join(dir, 'tokenizer.json');
  writeFileAtomic(file, JSON.stringify(json));
  return file;
}

