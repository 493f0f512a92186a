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
import { sidecarPath, type Sidecar, type TokenDtype } from './tokens.js';
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
  /** uint16 while every id fits, else uint32. */
  dtype: TokenDtype;
}

/** The eos_token of the tokenizer_config.json beside `file` (Llama 3's `<|end_of_text|>`), or null. */
function configEosToken(file: string): string | null {
  const configFile = path.join(path.dirname(file), 'tokenizer_config.json');
  if (!fs.existsSync(configFile)) return null;
  try {
    const eos = (JSON.parse(fs.readFileSync(configFile, 'utf8')) as { eos_token?: unknown }).eos_token;
    if (typeof eos === 'string') return eos;
    if (eos && typeof eos === 'object' && typeof (eos as { content?: unknown }).content === 'string') return (eos as { content: string }).content;
    return null;
  } catch (e) {
    throw new DataError(`${configFile}: not readable JSON (${String((e as Error).message ?? e).split('\n')[0]})`);
  }
}

export function loadTokenizerFile(file: string): LoadedTokenizer {
  const tokenizer = readTokenizerJson(file);
  const vocab = tokenizer.getVocab(true);
  const ids = Object.values(vocab);
  const vocabSize = ids.length === 0 ? 0 : ids.reduce((a, b) => Math.max(a, b), 0) + 1;
  const dtype: TokenDtype = vocabSize > MAX_VOCAB_SIZE ? 'uint32' : 'uint16';
  let eosId = tokenizer.tokenToId(EOS_TOKEN);
  const eosToken = eosId === null || eosId === undefined ? configEosToken(file) : EOS_TOKEN;
  if (eosToken !== null && eosToken !== EOS_TOKEN) eosId = tokenizer.tokenToId(eosToken);
  if (eosId === null || eosId === undefined) throw new DataError(`${file}: the tokenizer has no ${EOS_TOKEN} token (nor an eos_token in a tokenizer_config.json beside it) to end documents with`);
  let reserved = 0;
  for (;;) {
    const t = tokenizer.idToToken(reserved);
    const m = t === null || t === undefined ? null : RESERVED_PATTERN.exec(t);
    if (!m || Number(m[1]) !== reserved) break;
    reserved++;
  }
  return { file, tokenizer, vocabSize, eosId, reserved, dtype };
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

/** Token ids in host byte order (uint16 or uint32), appended to `file` through a buffer, read back by range. */
class SpillStore {
  private readonly fd: number;
  private readonly buf: Uint16Array | Uint32Array;
  private readonly width: number;
  private fill = 0;
  length = 0;

  /** `out` is the token file being made, named when an id does not fit its dtype. */
  constructor(readonly file: string, readonly dtype: TokenDtype, readonly out: string) {
    this.buf = dtype === 'uint32' ? new Uint32Array(1 << 19) : new Uint16Array(1 << 20);
    this.width = this.buf.BYTES_PER_ELEMENT;
    this.fd = fs.openSync(file, 'wx+', 0o600);
  }

  push(ids: ArrayLike<number>): void {
    const buf = this.buf;
    const limit = this.dtype === 'uint32' ? 2 ** 32 : 1 << 16;
    for (let i = 0; i < ids.length; i++) {
      // A typed array would wrap an id that does not fit, silently corrupting the file.
      if (ids[i]! >= limit) throw new DataError(`${this.out}: token id ${ids[i]} does not fit a ${this.dtype} token file`);
      buf[this.fill++] = ids[i]!;
      if (this.fill === buf.length) this.flush();
    }
    this.length += ids.length;
  }

  flush(): void {
    writeFully(this.fd, new Uint8Array(this.buf.buffer), this.fill * this.width);
    this.fill = 0;
  }

  /** Copies ids [start, end) into `out` at `at` (after `flush`). */
  copy(start: number, end: number, out: Uint16Array | Uint32Array, at: number): void {
    const w = this.width;
    readFully(this.fd, new Uint8Array(out.buffer, out.byteOffset), at * w, (end - start) * w, start * w, this.file);
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

/** Writes the documents in `order` (little-endian, the store's dtype) to `tmp`, fsyncs it and renames it to `out`. */
function writeShuffled(store: SpillStore, docStarts: GrowableF64, order: Int32Array, tmp: string, out: string, onProgress?: ProgressFn): void {
  const wide = store.dtype === 'uint32';
  const buf = wide ? new Uint32Array(1 << 19) : new Uint16Array(1 << 20);
  const bytes = new Uint8Array(buf.buffer);
  const fd = fs.openSync(tmp, 'wx', 0o644);
  try {
    let fill = 0, written = 0;
    const writeOut = () => {
      if (!HOST_LITTLE_ENDIAN) {
        const dv = new DataView(buf.buffer);
        for (let i = 0; i < fill; i++) {
          if (wide) dv.setUint32(4 * i, buf[i]!, true);
          else dv.setUint16(2 * i, buf[i]!, true);
        }
      }
      writeFully(fd, bytes, fill * buf.BYTES_PER_ELEMENT);
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
    store = new SpillStore(spill, tok.dtype, opts.out);
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
    ...(tok.dtype === 'uint32' ? { dtype: 'uint32' } : {}),
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

