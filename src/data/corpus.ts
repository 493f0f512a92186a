/**
 * Text corpora on disk → a stream of documents, with bounded memory.
 *
 * Inputs are files or folders (walked recursively, in sorted order so runs are reproducible):
 * - plain text (`.txt`, `.text`, `.md`; any other explicitly named file): one file = one document;
 * - JSON Lines (`.jsonl`, `.ndjson`): one line = one document, its text in a named field;
 * - Parquet (`.parquet`): one row = one document, its text in a named column (read one row group at a time);
 * - gzip of any of these (`NAME.EXT.gz`).
 * A folder may also hold a `corpus.json` manifest (`{name, source, license, ...}`) describing where its
 * files came from; manifests are collected so the token file's sidecar can credit its sources.
 *
 * Long documents are cut into pieces of at most `PIECE_CHARS` characters, at places where a byte-level
 * BPE tokenizer (GPT-2 pre-tokenizer) splits anyway, so that encoding the pieces one by one gives exactly
 * the ids of encoding the whole document (see `splitPoint`). Nothing holds more than one piece per
 * file at a time.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { randomBytes } from 'node:crypto';
import { pipeline } from 'node:stream/promises';
import { StringDecoder } from 'node:string_decoder';
import zlib from 'node:zlib';
import type { Readable } from 'node:stream';
import { asyncBufferFromFile, parquetMetadataAsync, parquetReadObjects, parquetSchema, type Compressors } from 'hyparquet';
import { DataError, fileError } from '../errors.js';

export type InputKind = 'text' | 'jsonl' | 'parquet';

export interface InputFile {
  path: string;
  kind: InputKind;
  gzip: boolean;
  /** Size on disk (compressed size for .gz): the unit of progress. */
  bytes: number;
}

export interface CorpusInputs {
  files: InputFile[];
  /** Contents of every `corpus.json` found in an input folder, with its path under `manifest`. */
  manifests: Record<string, unknown>[];
  /** Files inside input folders that were skipped because their extension is not a known kind. */
  skipped: string[];
}

const TEXT_EXT = new Set(['.txt', '.text', '.md']);
const JSONL_EXT = new Set(['.jsonl', '.ndjson']);
export const MANIFEST_NAME = 'corpus.json';

/** `a/b.jsonl.gz` → {kind: 'jsonl', gzip: true}; null for an extension we do not read. */
export function classify(file: string): { kind: InputKind; gzip: boolean } | null {
  let name = path.basename(file).toLowerCase();
  const gzip = name.endsWith('.gz');
  if (gzip) name = name.slice(0, -3);
  const ext = path.extname(name);
  if (TEXT_EXT.has(ext)) return { kind: 'text', gzip };
  if (JSONL_EXT.has(ext)) return { kind: 'jsonl', gzip };
  if (ext === '.parquet') return { kind: 'parquet', gzip };
  return null;
}

function statOrThrow(p: string): fs.Stats {
  try {
    return fs.statSync(p);
  } catch (err) {
    throw fileError(err, p, 'input');
  }
}

function readManifest(file: string): Record<string, unknown> {
  let obj: unknown;
  try {
    obj = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (err) {
    throw new DataError(`${file}: corpus manifest is not readable JSON (${(err as Error).message.split('\n')[0]})`);
  }
  if (obj === null || typeof obj !== 'object' || Array.isArray(obj)) throw new DataError(`${file}: corpus manifest must be a JSON object`);
  return { ...(obj as Record<string, unknown>), manifest: file };
}

/**
 * Expands files and folders into the list of input files. A named file is read whatever its
 * extension (unknown extensions as plain text); inside folders only known extensions are taken.
 */
export function collectInputs(paths: readonly string[]): CorpusInputs {
  if (paths.length === 0) throw new DataError('no input files given');
  const out: CorpusInputs = { files: [], manifests: [], skipped: [] };
  const seen = new Set<string>();
  const add = (p: string, st: fs.Stats, kind: InputKind, gzip: boolean) => {
    const real = fs.realpathSync(p);
    if (seen.has(real)) return;
    seen.add(real);
    out.files.push({ path: p, kind, gzip, bytes: st.size });
  };
  const walk = (dir: string) => {
    let entries: fs.Dirent[];
    try {
      entries = fs.readdirSync(dir, { withFileTypes: true });
    } catch (err) {
      throw fileError(err, dir, 'folder', 'list');
    }
    entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const e of entries) {
      if (e.name.startsWith('.')) continue;
      const p = path.join(dir, e.name);
      if (e.name === MANIFEST_NAME && !e.isDirectory()) {
        out.manifests.push(readManifest(p));
        continue;
      }
      const st = statOrThrow(p);
      if (st.isDirectory()) walk(p);
      else if (st.isFile()) {
        const c = classify(p);
        if (c) add(p, st, c.kind, c.gzip);
        else out.skipped.push(p);
      }
    }
  };
  for (const p of paths) {
    const st = statOrThrow(p);
    if (st.isDirectory()) {
      const before = out.files.length;
      walk(p);
      if (out.files.length === before) throw new DataError(`${p}: folder holds no text, JSONL or Parquet files`);
    } else {
      const c = classify(p) ?? { kind: 'text' as const, gzip: p.toLowerCase().endsWith('.gz') };
      add(p, st, c.kind, c.gzip);
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Split points that do not change a byte-level BPE encoding
// ---------------------------------------------------------------------------------------------

/** Characters that are certainly not whitespace for any regex engine's \s (letters, numbers, marks, punctuation, symbols). */
const NOT_SPACE = /[\p{L}\p{N}\p{M}\p{P}\p{S}]/u;

/** Whether the UTF-16 unit at `i` belongs to a character that is not whitespace (no astral character is). */
function isNotSpace(text: string, i: number): boolean {
  const c = text.charCodeAt(i);
  if (c < 128) return c >= 33 && c <= 126;
  if (c >= 0xd800 && c <= 0xdfff) return true;
  return NOT_SPACE.test(text[i]!);
}

/**
 * An index i ≤ `limit` at which `text` can be cut without changing its GPT-2 pre-tokenization
 * (regex `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`), so that
 * encoding the two halves gives exactly the ids of encoding the whole. Two kinds of places qualify:
 * (A) before a space that is followed by a non-space: the match there starts with that space
 *     (` ?X+`), and whatever precedes it ends there both in the whole text and in the left half —
 *     a preceding whitespace run is cut by `\s+(?!\S)` just before that last space either way;
 * (B) before a non-space that follows exactly one of \t \n \v \f \r, itself after a non-space
 *     (`x\nY`): that lone character is a match of its own in both cases.
 * Special tokens (`<|endoftext|>`, `<|reserved_k|>`: every `<|…` is treated as one) contain no
 * whitespace, so they are never cut, and (A) is not used before one. Searches
 * back to `limit / 2`; without such a place (e.g. long text without any whitespace) it cuts at
 * `limit`, avoiding a surrogate pair — the only case where pieces may encode differently.
 */
export function splitPoint(text: string, limit: number): number {
  if (text.length <= limit) return text.length;
  const lo = Math.max(2, Math.floor(limit / 2));
  for (let i = Math.min(limit, text.length - 2); i >= lo; i--) {
    const c = text.charCodeAt(i);
    if (c === 32) {
      // Not before a special token: the tokenizer splits those out first, so the whitespace run
      // before one ends its segment and stays one piece.
      if (isNotSpace(text, i + 1) && !text.startsWith('<|', i + 1)) return i;
    } else if (isNotSpace(text, i)) {
      const p = text.charCodeAt(i - 1);
      if (p >= 9 && p <= 13 && isNotSpace(text, i - 2)) return i;
    }
  }
  const c = text.charCodeAt(limit - 1);
  return c >= 0xd800 && c <= 0xdbff ? limit - 1 : limit;
}

// ---------------------------------------------------------------------------------------------
// Reading documents
// ---------------------------------------------------------------------------------------------

/** A piece of a document's text; `last` marks the document's final piece. */
export interface Piece {
  text: string;
  last: boolean;
}

export interface ReadOptions {
  /** JSONL field holding the text (default `text`). */
  field?: string;
  /** What the error for a line without the field suggests (default: choosing another with --field). */
  fieldHint?: string;
  /** Parquet column holding the text (default `text`). */
  column?: string;
  /** Cut documents into pieces of at most this many UTF-16 units (default PIECE_CHARS). */
  pieceChars?: number;
  /** Called with the number of on-disk bytes of the file consumed so far. */
  onProgress?: (bytesOnDisk: number) => void;
}

/**
 * Pieces of ~4K characters: the binding encodes many short inputs faster than a few long ones, and their
 * native results are smaller.
 */
export const PIECE_CHARS = 1 << 12;

function openRaw(file: InputFile): { raw: fs.ReadStream; stream: Readable } {
  const raw = fs.createReadStream(file.path, { highWaterMark: 1 << 20 });
  if (!file.gzip) return { raw, stream: raw };
  const gunzip = zlib.createGunzip();
  raw.on('error', (e) => gunzip.destroy(e));
  raw.pipe(gunzip);
  return { raw, stream: gunzip };
}

/** Node stream errors → one-line DataError naming the file. */
function streamError(file: InputFile, err: unknown): DataError {
  if (err instanceof DataError) return err;
  const e = err as NodeJS.ErrnoException;
  if (e.code === 'Z_DATA_ERROR' || e.code === 'Z_BUF_ERROR' || e.code === 'ERR_ZLIB') return new DataError(`${file.path}: not valid gzip data (${e.message})`);
  return fileError(err, file.path);
}

function* cutPieces(text: string, limit: number, last: boolean): Generator<Piece, string> {
  let rest = text;
  while (rest.length > limit) {
    const at = splitPoint(rest, limit);
    yield { text: rest.slice(0, at), last: false };
    rest = rest.slice(at);
  }
  if (last) {
    yield { text: rest, last: true };
    return '';
  }
  return rest;
}

async function* readText(file: InputFile, opts: ReadOptions): AsyncGenerator<Piece> {
  const limit = opts.pieceChars ?? PIECE_CHARS;
  const { raw, stream } = openRaw(file);
  const decoder = new StringDecoder('utf8');
  let buf = '';
  try {
    for await (const chunk of stream) {
      buf += decoder.write(chunk as Buffer);
      if (buf.length > limit) buf = yield* cutPieces(buf, limit, false);
      opts.onProgress?.(raw.bytesRead);
    }
  } catch (err) {
    throw streamError(file, err);
  } finally {
    raw.destroy();
  }
  buf += decoder.end();
  if (buf.length > 0) yield* cutPieces(buf, limit, true);
}

function describeKeys(obj: Record<string, unknown>): string {
  const keys = Object.keys(obj);
  return keys.length ? keys.slice(0, 10).join(', ') + (keys.length > 10 ? ', …' : '') : 'none';
}

async function* readJsonl(file: InputFile, opts: ReadOptions): AsyncGenerator<Piece> {
  const field = opts.field ?? 'text';
  const limit = opts.pieceChars ?? PIECE_CHARS;
  const { raw, stream } = openRaw(file);
  stream.setEncoding('utf8');
  const lines = readline.createInterface({ input: stream, crlfDelay: Infinity });
  let lineNo = 0;
  try {
    for await (const line of lines) {
      lineNo++;
      if (lineNo % 1024 === 0) opts.onProgress?.(raw.bytesRead);
      if (line.trim() === '') continue;
      let rec: unknown;
      try {
        rec = JSON.parse(line);
      } catch (err) {
        throw new DataError(`${file.path}:${lineNo}: not valid JSON (${(err as Error).message.split('\n')[0]})`);
      }
      if (rec === null || typeof rec !== 'object' || Array.isArray(rec)) throw new DataError(`${file.path}:${lineNo}: expected a JSON object`);
      const obj = rec as Record<string, unknown>;
      if (!(field in obj)) throw new DataError(`${file.path}:${lineNo}: no field '${field}' (fields: ${describeKeys(obj)}); ${opts.fieldHint ?? 'choose one with --field'}`);
      const text = obj[field];
      if (text === null) continue;
      if (typeof text !== 'string') throw new DataError(`${file.path}:${lineNo}: field '${field}' is ${Array.isArray(text) ? 'an array' : typeof text}, not a string`);
      if (text.length > 0) yield* cutPieces(text, limit, true);
    }
  } catch (err) {
    throw streamError(file, err);
  } finally {
    lines.close();
    raw.destroy();
  }
  opts.onProgress?.(file.bytes);
}

/** A gzipped Parquet file needs random access: it is inflated to a temporary file first. */
async function inflateToTemp(file: InputFile): Promise<string> {
  const tmp = path.join(os.tmpdir(), `unforget-parquet-${process.pid}-${randomBytes(4).toString('hex')}.parquet`);
  try {
    await pipeline(fs.createReadStream(file.path), zlib.createGunzip(), fs.createWriteStream(tmp, { flags: 'wx' }));
  } catch (err) {
    fs.rmSync(tmp, { force: true });
    throw streamError(file, err);
  }
  return tmp;
}

/**
 * Codecs beyond hyparquet's built-in Snappy that Node's zlib can decode (ZSTD needs Node ≥ 22.15,
 * used when present); LZ4 is not supported.
 */
const PARQUET_CODECS: Compressors = (() => {
  const c: Compressors = {
    GZIP: (input) => new Uint8Array(zlib.gunzipSync(input)),
    BROTLI: (input) => new Uint8Array(zlib.brotliDecompressSync(input)),
  };
  const zstd = (zlib as unknown as { zstdDecompressSync?: (b: Uint8Array) => Buffer }).zstdDecompressSync;
  if (typeof zstd === 'function') c.ZSTD = (input) => new Uint8Array(zstd(input));
  return c;
})();

async function* readParquet(file: InputFile, opts: ReadOptions): AsyncGenerator<Piece> {
  const column = opts.column ?? 'text';
  const limit = opts.pieceChars ?? PIECE_CHARS;
  const tmp = file.gzip ? await inflateToTemp(file) : null;
  try {
    const buffer = await asyncBufferFromFile(tmp ?? file.path);
    let metadata;
    try {
      metadata = await parquetMetadataAsync(buffer);
    } catch (err) {
      throw new DataError(`${file.path}: not a readable Parquet file (${(err as Error).message.split('\n')[0]})`);
    }
    const names = parquetSchema(metadata).children.map((c) => c.element.name);
    if (!names.includes(column)) throw new DataError(`${file.path}: no column '${column}' (columns: ${names.join(', ') || 'none'}); choose one with --column`);
    const total = Number(metadata.num_rows);
    let rowStart = 0;
    for (const rg of metadata.row_groups) {
      const rowEnd = rowStart + Number(rg.num_rows);
      let rows;
      try {
        rows = await parquetReadObjects({ file: buffer, metadata, columns: [column], rowStart, rowEnd, compressors: PARQUET_CODECS });
      } catch (err) {
        throw new DataError(`${file.path}: cannot read rows ${rowStart}–${rowEnd} of column '${column}' (${(err as Error).message.split('\n')[0]})`);
      }
      for (let i = 0; i < rows.length; i++) {
        const text: unknown = rows[i]![column];
        if (text === null || text === undefined) continue;
        if (typeof text !== 'string') throw new DataError(`${file.path}: row ${rowStart + i}: column '${column}' is ${typeof text}, not a string`);
        if (text.length > 0) yield* cutPieces(text, limit, true);
      }
      rowStart = rowEnd;
      opts.onProgress?.(total > 0 ? Math.round((file.bytes * rowStart) / total) : file.bytes);
    }
  } finally {
    if (tmp) fs.rmSync(tmp, { force: true });
  }
}

/** The documents of one input file, as pieces; empty documents are skipped. */
export function readDocuments(file: InputFile, opts: ReadOptions = {}): AsyncGenerator<Piece> {
  switch (file.kind) {
    case 'text':
      return readText(file, opts);
    case 'jsonl':
      return readJsonl(file, opts);
    case 'parquet':
      return readParquet(file, opts);
  }
}
