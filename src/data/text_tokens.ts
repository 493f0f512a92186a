/**
 * Text read as token ids with a model's own tokenizer, in memory: the old data a finetuning run measures
 * forgetting on may be plain text (`.txt`, one document) or JSON Lines of `{"text": ...}` (one document a line,
 * also gzipped), as well as a token file. Documents are encoded without special tokens and each ends with the
 * tokenizer's EOS, the layout `unforget tokenize` writes; the caller cuts the stream into windows that start
 * with the BOS, as it does for a token file.
 */
import fs from 'node:fs';
import { DataError, fileError } from '../errors.js';
import { classify, readDocuments, type InputFile } from './corpus.js';
import type { ModelTokenizer } from './hf_tokenizer.js';

/** Whether `file` is text or JSONL (rather than a token file) by its extension. */
export function isTextData(file: string): boolean {
  const kind = classify(file)?.kind;
  return kind === 'text' || kind === 'jsonl';
}

/** Pieces encoded at once: the binding encodes on its own threads, so several in flight keep them busy. */
const PIECES_IN_FLIGHT = 64;

/**
 * The ids of every document of `file` (text or JSONL) in order, each followed by the EOS when the tokenizer has
 * one. `what` names the file's role in errors (`prev.path`).
 */
export async function tokenizeTextFile(file: string, tok: ModelTokenizer, what: string): Promise<Uint32Array> {
  const c = classify(file);
  if (c === null || c.kind === 'parquet') throw new DataError(`${file}: ${what} is read as text only from .txt or .jsonl files`);
  let bytes: number;
  try {
    bytes = fs.statSync(file).size;
  } catch (err) {
    throw fileError(err, file, `${what} data`);
  }
  const input: InputFile = { path: file, kind: c.kind, gzip: c.gzip, bytes };
  let out = new Uint32Array(1 << 16);
  let n = 0;
  const append = (ids: number[]) => {
    if (n + ids.length > out.length) {
      const grown = new Uint32Array(Math.max(out.length * 2, n + ids.length));
      grown.set(out.subarray(0, n));
      out = grown;
    }
    out.set(ids, n);
    n += ids.length;
  };
  // Pieces are encoded concurrently but appended in file order.
  let pending: Array<{ ids: Promise<number[]>; last: boolean }> = [];
  const flush = async () => {
    for (const p of pending) {
      append(await p.ids);
      if (p.last && tok.eosId !== null) append([tok.eosId]);
    }
    pending = [];
  };
  for await (const piece of readDocuments(input, { fieldHint: `${what} reads each line's "text"` })) {
    const ids = tok.encode(piece.text, { addSpecialTokens: false });
    // Its failure is reported when its turn comes; meanwhile it must not count as unhandled.
    ids.catch(() => {});
    pending.push({ ids, last: piece.last });
    if (pending.length >= PIECES_IN_FLIGHT) await flush();
  }
  await flush();
  if (n === 0) throw new DataError(`${file}: ${what} holds no text`);
  return out.slice(0, n);
}
