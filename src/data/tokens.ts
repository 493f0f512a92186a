/**
 * Token files and the train/validation split (docs/contract.md §3).
 *
 * A token file `NAME.bin` is a flat little-endian uint16 array — the reference implementation's
 * format, so files are interchangeable with it — or uint32 where the sidecar says `"dtype": "uint32"`
 * (vocabularies beyond 65536 ids: Llama 3, Qwen). Its sidecar `NAME.json` records at least
 * `{vocab_size, dataset_token_id, tokenizer}`; the sidecar is optional (a bare reference .bin is
 * readable), in which case its fields are null and the vocabulary size must come from the config.
 *
 * The split is a pure function of (file length, T, data.num_tokens_valid, data.split_seed): the file is
 * cut into floor(len/T) consecutive sequences, their indices permuted with Rng(split_seed), the first
 * floor(num_tokens_valid/T) are validation and the rest training. Position 0 of every sequence is
 * overwritten with the dataset token id, which is what lets a model be prompted for "data like X".
 */
import fs from 'node:fs';
import { DataError, fileError } from '../errors.js';
import { writeFileAtomic, writeJsonAtomic } from '../io/atomic.js';
import { Rng } from '../util/rng.js';
import { HOST_LITTLE_ENDIAN } from '../util/shape.js';

/** Ids a uint16 file can hold. */
const MAX_VOCAB = 65536;
/** Ids a uint32 file can hold. */
const MAX_VOCAB_32 = 2 ** 32;

export type TokenDtype = 'uint16' | 'uint32';
/** A token file's ids in memory: uint16, or uint32 for large vocabularies. */
export type TokenIds = Uint16Array | Uint32Array;

export interface Sidecar {
  vocab_size: number | null;
  dataset_token_id: number | null;
  /** Tokenizer description: a path/name, an object, or null. */
  tokenizer: string | Record<string, unknown> | null;
  /** Other fields (e.g. token counts, source files) are kept as they are. */
  [key: string]: unknown;
}

export interface TokenFile {
  path: string;
  tokens: TokenIds;
  /** The sidecar's fields; all null when there is no sidecar. */
  sidecar: Sidecar;
  /** Whether a sidecar file was found. */
  hasSidecar: boolean;
}

/** `data/x.bin` → `data/x.json`; a name without `.bin` gets `.json` appended. */
export function sidecarPath(binPath: string): string {
  return binPath.endsWith('.bin') ? binPath.slice(0, -4) + '.json' : binPath + '.json';
}

function isIdOrNull(v: unknown, max: number): v is number | null {
  return v === null || (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0 && v <= max);
}

/** Reads and checks the sidecar next to `binPath`; null if there is none. */
export function readSidecar(binPath: string): Sidecar | null {
  const file = sidecarPath(binPath);
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw fileError(err, file, 'sidecar');
  }
  let obj: unknown;
  try {
    obj = JSON.parse(text);
  } catch (err) {
    throw new DataError(`${file}: sidecar is not valid JSON (${(err as Error).message.split('\n')[0]})`);
  }
  if (obj === null || typeof obj !== 'object' || Array.isArray(obj)) {
    throw new DataError(`${file}: sidecar must be a JSON object`);
  }
  const raw = obj as Record<string, unknown>;
  const sidecar: Sidecar = { ...raw, vocab_size: null, dataset_token_id: null, tokenizer: null };
  if (raw.dtype !== undefined && raw.dtype !== 'uint16' && raw.dtype !== 'uint32') {
    throw new DataError(`${file}: dtype must be "uint16" or "uint32", got ${JSON.stringify(raw.dtype)}`);
  }
  const maxVocab = raw.dtype === 'uint32' ? MAX_VOCAB_32 : MAX_VOCAB;
  if (raw.vocab_size !== undefined) {
    if (!isIdOrNull(raw.vocab_size, maxVocab) || raw.vocab_size === 0) {
      throw new DataError(`${file}: vocab_size must be an integer in [1, ${maxVocab}] or null, got ${JSON.stringify(raw.vocab_size)}`);
    }
    sidecar.vocab_size = raw.vocab_size;
  }
  if (raw.dataset_token_id !== undefined) {
    if (!isIdOrNull(raw.dataset_token_id, maxVocab - 1)) {
      throw new DataError(`${file}: dataset_token_id must be an integer in [0, ${maxVocab - 1}] or null, got ${JSON.stringify(raw.dataset_token_id)}`);
    }
    sidecar.dataset_token_id = raw.dataset_token_id;
  }
  if (sidecar.vocab_size !== null && sidecar.dataset_token_id !== null && sidecar.dataset_token_id >= sidecar.vocab_size) {
    throw new DataError(`${file}: dataset_token_id ${sidecar.dataset_token_id} is ≥ vocab_size ${sidecar.vocab_size}`);
  }
  if (raw.tokenizer !== undefined) {
    const t = raw.tokenizer;
    if (t !== null && typeof t !== 'string' && (typeof t !== 'object' || Array.isArray(t))) {
      throw new DataError(`${file}: tokenizer must be a string, an object or null, got ${JSON.stringify(t)}`);
    }
    sidecar.tokenizer = t as Sidecar['tokenizer'];
  }
  return sidecar;
}

/** Throws DataError at the first id ≥ V: `data.bin: token id 70000 at position 12345 is ≥ vocabulary size 4096`. */
export function checkTokenIds(tokens: TokenIds, V: number, file: string): void {
  for (let i = 0; i < tokens.length; i++) {
    if (tokens[i]! >= V) {
      throw new DataError(`${file}: token id ${tokens[i]} at position ${i} is ≥ vocabulary size ${V}`);
    }
  }
}

/** The id type of a token file: its sidecar's dtype; absent (or no sidecar) means uint16. */
export function tokenDtype(sidecar: Sidecar | null): TokenDtype {
  return sidecar?.dtype === 'uint32' ? 'uint32' : 'uint16';
}

/**
 * Reads `binPath` and its sidecar. Ids are checked against `opts.V` if given, else against the
 * sidecar's vocab_size if known. Reads in chunks, so files beyond Node's 2 GiB readFile limit work.
 */
export function readTokenFile(binPath: string, opts: { V?: number } = {}): TokenFile {
  const found = readSidecar(binPath);
  const wide = tokenDtype(found) === 'uint32';
  const width = wide ? 4 : 2;
  let fd: number;
  try {
    fd = fs.openSync(binPath, 'r');
  } catch (err) {
    throw fileError(err, binPath, 'token file', 'open');
  }
  let tokens: TokenIds;
  try {
    const stat = fs.fstatSync(fd);
    if (!stat.isFile()) throw new DataError(`${binPath}: not a regular file`);
    const size = stat.size;
    if (size % width !== 0) {
      throw new DataError(wide
        ? `${binPath}: ${size} bytes is not a multiple of 4, as a uint32 token file must be (truncated?)`
        : `${binPath}: ${size} bytes is an odd length; a uint16 token file must have an even size (truncated?)`);
    }
    tokens = wide ? new Uint32Array(size / 4) : new Uint16Array(size / 2);
    const bytes = new Uint8Array(tokens.buffer);
    for (let off = 0; off < size; ) {
      const n = fs.readSync(fd, bytes, off, Math.min(1 << 30, size - off), off);
      if (n === 0) throw new DataError(`${binPath}: file shrank while being read (${off} of ${size} bytes)`);
      off += n;
    }
  } finally {
    fs.closeSync(fd);
  }
  if (!HOST_LITTLE_ENDIAN) {
    const dv = new DataView(tokens.buffer);
    for (let i = 0; i < tokens.length; i++) tokens[i] = wide ? dv.getUint32(4 * i, true) : dv.getUint16(2 * i, true);
  }

  const sidecar: Sidecar = found ?? { vocab_size: null, dataset_token_id: null, tokenizer: null };
  const V = opts.V ?? sidecar.vocab_size;
  if (V !== null && V !== undefined) checkTokenIds(tokens, V, binPath);
  return { path: binPath, tokens, sidecar, hasSidecar: found !== null };
}

/**
 * Writes `binPath` (little-endian) and its sidecar, each atomically. The file's dtype is the sidecar's
 * `dtype` if given, else that of `tokens`; uint32 files record `"dtype": "uint32"`, uint16 files no
 * dtype, as before. Ids are checked first (against vocab_size, and an id ≥ 65536 bound for a uint16
 * file is an error, never wrapped), so a wrong file is never written.
 */
export function writeTokenFile(
  binPath: string,
  tokens: TokenIds,
  sidecar: Partial<Sidecar> & Pick<Sidecar, 'vocab_size'>,
): void {
  const dtype: TokenDtype = sidecar.dtype === 'uint16' || sidecar.dtype === 'uint32' ? sidecar.dtype : tokens instanceof Uint32Array ? 'uint32' : 'uint16';
  const { dtype: _given, ...rest } = sidecar;
  const full: Sidecar = { dataset_token_id: null, tokenizer: null, ...rest, ...(dtype === 'uint32' ? { dtype } : {}) };
  const maxVocab = dtype === 'uint32' ? MAX_VOCAB_32 : MAX_VOCAB;
  if (full.vocab_size !== null) {
    if (!isIdOrNull(full.vocab_size, maxVocab) || full.vocab_size === 0) {
      throw new DataError(`${sidecarPath(binPath)}: vocab_size must be an integer in [1, ${maxVocab}] or null, got ${full.vocab_size}`);
    }
    checkTokenIds(tokens, full.vocab_size, binPath);
  }
  if (dtype === 'uint16' && tokens instanceof Uint32Array) {
    const at = tokens.findIndex((id) => id >= MAX_VOCAB);
    if (at >= 0) throw new DataError(`${binPath}: token id ${tokens[at]} at position ${at} does not fit a uint16 token file (ids < ${MAX_VOCAB}); write it as uint32`);
  }
  const width = dtype === 'uint32' ? 4 : 2;
  const bytes = new Uint8Array(tokens.length * width);
  if (HOST_LITTLE_ENDIAN && tokens.BYTES_PER_ELEMENT === width) {
    bytes.set(new Uint8Array(tokens.buffer, tokens.byteOffset, tokens.byteLength));
  } else {
    const dv = new DataView(bytes.buffer);
    for (let i = 0; i < tokens.length; i++) {
      if (width === 4) dv.setUint32(4 * i, tokens[i]!, true);
      else dv.setUint16(2 * i, tokens[i]!, true);
    }
  }
  writeFileAtomic(binPath, bytes);
  writeJsonAtomic(sidecarPath(binPath), full);
}

// ---------------------------------------------------------------------------------------------
// Split and batches
// ---------------------------------------------------------------------------------------------

export interface DatasetOptions {
  /** Sequence length (model.T). */
  T: number;
  /** Sequences per batch (opt.batch_size, or reg.batch_size for a replay set). */
  batchSize: number;
  /** data.num_tokens_valid: floor(numTokensValid / T) sequences go to validation. */
  numTokensValid: number;
  /** data.split_seed. */
  splitSeed: number;
  /** Written at position 0 of every sequence; null leaves the file's token. */
  tokenId: number | null;
  /** Named in error messages (normally the .bin path). */
  source?: string;
  /** An evaluation-only set: no training split is needed. */
  allowNoTrain?: boolean;
  /** Loss mask, one byte per token (1: a target); absent means every token is one. Chat rows carry it. */
  mask?: Uint8Array | null;
}

function checkPositiveInt(name: string, v: number): void {
  if (!Number.isSafeInteger(v) || v <= 0) throw new RangeError(`${name} must be a positive integer, got ${v}`);
}

function checkTokenId(tokenId: number | null): void {
  if (tokenId !== null && !(Number.isInteger(tokenId) && tokenId >= 0 && tokenId < MAX_VOCAB_32)) {
    throw new RangeError(`tokenId must be null or an integer in [0, ${MAX_VOCAB_32}), got ${tokenId}`);
  }
}

/** Copies file sequence `seq` (T tokens) into row `row` of `out`, with the dataset id at position 0. */
function copySequence(tokens: TokenIds, T: number, seq: number, tokenId: number | null, out: Int32Array, row: number): void {
  const dst = row * T;
  out.set(tokens.subarray(seq * T, seq * T + T), dst);
  if (tokenId !== null) out[dst] = tokenId;
}

/** A token file split into validation and training sequences, served as [B, T] int32 batches. */
export class TokenDataset {
  readonly T: number;
  readonly batchSize: number;
  readonly tokenId: number | null;
  readonly source: string;
  /** floor(len / T): every full sequence of the file. */
  readonly numSequences: number;
  /** File sequence indices of the validation split, in split order. */
  readonly validIndices: Int32Array;
  /** File sequence indices of the training split, in split order. */
  readonly trainIndices: Int32Array;
  private cachedOrder: { epoch: number; seed: number; order: Int32Array } | null = null;
  /** One byte per token (1: a target), or null when every token is one. */
  readonly mask: Uint8Array | null;

  constructor(
    readonly tokens: TokenIds,
    opts: DatasetOptions,
  ) {
    const { T, batchSize, numTokensValid, splitSeed, tokenId } = opts;
    checkPositiveInt('T', T);
    checkPositiveInt('batchSize', batchSize);
    if (!Number.isSafeInteger(numTokensValid) || numTokensValid < 0) {
      throw new RangeError(`numTokensValid must be a non-negative integer, got ${numTokensValid}`);
    }
    checkTokenId(tokenId);
    this.T = T;
    this.batchSize = batchSize;
    this.tokenId = tokenId;
    const src = (this.source = opts.source ?? 'token data');
    this.mask = opts.mask ?? null;
    if (this.mask !== null && this.mask.length !== tokens.length) {
      throw new RangeError(`mask has length ${this.mask.length}, expected one per token (${tokens.length})`);
    }

    const n = (this.numSequences = Math.floor(tokens.length / T));
    const nValid = Math.floor(numTokensValid / T);
    if (nValid > n) {
      throw new DataError(
        `${src}: data.num_tokens_valid=${numTokensValid} asks for ${nValid} validation sequences of T=${T}, ` +
          `but the file has only ${n} (${tokens.length} tokens)`,
      );
    }
    if (nValid > 0 && nValid < batchSize) {
      throw new DataError(
        `${src}: the validation split has ${nValid} sequences (data.num_tokens_valid=${numTokensValid} / T=${T}), ` +
          `fewer than one batch of ${batchSize}; set data.num_tokens_valid to 0 or at least ${batchSize * T}`,
      );
    }
    const nTrain = n - nValid;
    if (nTrain < batchSize && !opts.allowNoTrain) {
      throw new DataError(
        `${src}: the training split has ${nTrain} sequences (${tokens.length} tokens / T=${T} = ${n} sequences, ` +
          `${nValid} of them for validation), fewer than one batch of ${batchSize}`,
      );
    }
    const perm = new Rng(splitSeed).permutation(n);
    this.validIndices = perm.slice(0, nValid);
    this.trainIndices = perm.slice(nValid);
  }

  get numTrainSequences(): number {
    return this.trainIndices.length;
  }
  get numValidSequences(): number {
    return this.validIndices.length;
  }
  /** Full training batches per epoch (the remainder is dropped; a different remainder each epoch). */
  get numTrainBatches(): number {
    return Math.floor(this.trainIndices.length / this.batchSize);
  }
  get numValidBatches(): number {
    return Math.floor(this.validIndices.length / this.batchSize);
  }

  /**
   * The order of training sequences (file indices) in `epoch`: the training split shuffled by a
   * stream derived from (seed, epoch), so every epoch has its own order and any batch of any epoch
   * can be produced directly (resumable, no hidden iterator state).
   */
  epochOrder(epoch: number, seed: number): Int32Array {
    if (!Number.isSafeInteger(epoch) || epoch < 0) throw new RangeError(`epoch must be a non-negative integer, got ${epoch}`);
    const c = this.cachedOrder;
    if (c && c.epoch === epoch && c.seed === seed) return c.order;
    const order = new Rng(seed).fork(epoch).shuffle(this.trainIndices.slice());
    this.cachedOrder = { epoch, seed, order };
    return order;
  }

  private allocate(out: Int32Array | undefined, rows: number): Int32Array {
    const size = rows * this.T;
    if (out === undefined) return new Int32Array(size);
    if (out.length !== size) throw new RangeError(`out has length ${out.length}, expected ${rows}×${this.T} = ${size}`);
    return out;
  }

  /** Training batch `index` of `epoch`: B×T int32 ids, row-major [B, T]. */
  trainBatch(epoch: number, index: number, seed: number, out?: Int32Array): Int32Array {
    if (!Number.isInteger(index) || index < 0 || index >= this.numTrainBatches) {
      throw new RangeError(`train batch index ${index} out of range [0, ${this.numTrainBatches})`);
    }
    const order = this.epochOrder(epoch, seed);
    const B = this.batchSize;
    const res = this.allocate(out, B);
    for (let r = 0; r < B; r++) copySequence(this.tokens, this.T, order[index * B + r]!, this.tokenId, res, r);
    return res;
  }

  /** The loss mask of trainBatch(epoch, index, seed) as [B, T] floats, or null when every token is a target. */
  trainMask(epoch: number, index: number, seed: number): Float32Array | null {
    if (this.mask === null) return null;
    return this.masksOf(this.epochOrder(epoch, seed).subarray(index * this.batchSize, (index + 1) * this.batchSize));
  }

  /** The loss mask of validBatch(index), or null when every token is a target. */
  validMask(index: number): Float32Array | null {
    if (this.mask === null) return null;
    return this.masksOf(this.validIndices.subarray(index * this.batchSize, (index + 1) * this.batchSize));
  }

  private masksOf(fileIndices: Int32Array): Float32Array {
    const T = this.T, out = new Float32Array(fileIndices.length * T);
    for (let r = 0; r < fileIndices.length; r++) {
      const src = fileIndices[r]! * T;
      for (let t = 0; t < T; t++) out[r * T + t] = this.mask![src + t]!;
    }
    return out;
  }

  /** Validation batch `index` (fixed order): B×T int32 ids. */
  validBatch(index: number, out?: Int32Array): Int32Array {
    if (!Number.isInteger(index) || index < 0 || index >= this.numValidBatches) {
      throw new RangeError(`validation batch index ${index} out of range [0, ${this.numValidBatches})`);
    }
    const B = this.batchSize;
    const res = this.allocate(out, B);
    for (let r = 0; r < B; r++) copySequence(this.tokens, this.T, this.validIndices[index * B + r]!, this.tokenId, res, r);
    return res;
  }

  /**
   * Copies the given file sequences into consecutive rows of a [rows, T] batch (with the dataset id
   * at position 0) — for callers that pick rows themselves, e.g. replay rows mixed into a batch.
   */
  sequences(fileIndices: ArrayLike<number>, out?: Int32Array): Int32Array {
    const res = this.allocate(out, fileIndices.length);
    for (let r = 0; r < fileIndices.length; r++) {
      const s = fileIndices[r]!;
      if (!Number.isInteger(s) || s < 0 || s >= this.numSequences) {
        throw new RangeError(`sequence index ${s} out of range [0, ${this.numSequences})`);
      }
      copySequence(this.tokens, this.T, s, this.tokenId, res, r);
    }
    return res;
  }
}

/**
 * Successive training batches across epochs, in the order `TokenDataset.trainBatch` defines. Start
 * at `startBatch` (batches already consumed) to resume a run exactly.
 */
export class BatchStream {
  private consumed: number;

  constructor(
    readonly dataset: TokenDataset,
    readonly seed: number,
    startBatch = 0,
  ) {
    if (!Number.isSafeInteger(startBatch) || startBatch < 0) throw new RangeError(`startBatch must be a non-negative integer, got ${startBatch}`);
    this.consumed = startBatch;
  }

  /** Batches returned so far (including `startBatch`). */
  get batchesConsumed(): number {
    return this.consumed;
  }
  /** The epoch the next batch belongs to (0-based). */
  get epoch(): number {
    return Math.floor(this.consumed / this.dataset.numTrainBatches);
  }
  /** Batches consumed / batches per epoch: the `epoch` metric. */
  get fractionalEpoch(): number {
    return this.consumed / this.dataset.numTrainBatches;
  }

  /** The next batch with its loss mask (null for plain token data). */
  nextMasked(): { ids: Int32Array; mask: Float32Array | null } {
    const nb = this.dataset.numTrainBatches;
    const [epoch, index] = [Math.floor(this.consumed / nb), this.consumed % nb];
    const ids = this.dataset.trainBatch(epoch, index, this.seed);
    const mask = this.dataset.trainMask(epoch, index, this.seed);
    this.consumed++;
    return { ids, mask };
  }

  nextBatch(out?: Int32Array): Int32Array {
    const nb = this.dataset.numTrainBatches;
    const batch = this.dataset.trainBatch(Math.floor(this.consumed / nb), this.consumed % nb, this.seed, out);
    this.consumed++;
    return batch;
  }

  /** Endless: training stops by the stop.* criteria, not by running out of data. */
  *[Symbol.iterator](): Iterator<Int32Array> {
    for (;;) yield this.nextBatch();
  }
}

/** Every full T-length sequence of a file, in file order (for `unforget eval --split all`). */
export interface AllSequences {
  count: number;
  /** ceil(count / B): the last batch may be short. */
  numBatches(B: number): number;
  /** Rows i·B … min((i+1)·B, count)−1 as a [rows, T] int32 batch, dataset id at position 0. */
  batch(i: number, B: number): Int32Array;
}

export function allSequences(tokens: TokenIds, T: number, tokenId: number | null): AllSequences {
  checkPositiveInt('T', T);
  checkTokenId(tokenId);
  const count = Math.floor(tokens.length / T);
  return {
    count,
    numBatches(B) {
      checkPositiveInt('B', B);
      return Math.ceil(count / B);
    },
    batch(i, B) {
      checkPositiveInt('B', B);
      if (!Number.isInteger(i) || i < 0 || i * B >= count) {
        throw new RangeError(`batch index ${i} out of range [0, ${Math.ceil(count / B)})`);
      }
      const rows = Math.min(B, count - i * B);
      const out = new Int32Array(rows * T);
      for (let r = 0; r < rows; r++) copySequence(tokens, T, i * B + r, tokenId, out, r);
      return out;
    },
  };
}
