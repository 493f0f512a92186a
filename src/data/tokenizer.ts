/**
 * Text ↔ token ids through a Hugging Face `tokenizer.json` (the `tokenizers` Node binding, the
 * same Rust code that Python users run), so token files interchange with the wider ecosystem.
 */
import fs from 'node:fs';
import path from 'node:path';
import { Tokenizer } from 'tokenizers';
import { DataError } from '../errors.js';
import { readSidecar } from './tokens.js';

export interface TextCodec {
  file: string;
  encode(text: string): Promise<number[]>;
  decode(ids: number[]): Promise<string>;
}

/** The Hugging Face tokenizer in `file`; a missing or unloadable file is a DataError naming it. */
export function readTokenizerJson(file: string): Tokenizer {
  if (!fs.existsSync(file)) throw new DataError(`${file}: tokenizer file does not exist`);
  try {
    return Tokenizer.fromFile(file);
  } catch (e) {
    throw new DataError(`${file}: not a loadable tokenizer.json (${String((e as Error).message ?? e).split('\n')[0]})`);
  }
}

export function openTokenizer(file: string): TextCodec {
  const tok = readTokenizerJson(file);
  return {
    file,
    async encode(text) {
      const enc = await tok.encode(text);
      return enc.getIds();
    },
    async decode(ids) {
      return tok.decode(ids, false);
    },
  };
}

/**
 * The tokenizer for a checkpoint: an explicit file, else `tokenizer.json` in the checkpoint folder `dir`,
 * else the `tokenizer` path recorded in the sidecar of its training data `dataPath`. Null if none.
 */
export async function loadTokenizer(explicit: string | null, dir: string, dataPath: string | null): Promise<TextCodec | null> {
  if (explicit) return openTokenizer(explicit);
  const beside = path.join(dir, 'tokenizer.json');
  if (fs.existsSync(beside)) return openTokenizer(beside);
  if (dataPath !== null && fs.existsSync(dataPath)) {
    const side = readSidecar(dataPath);
    if (side && typeof side.tokenizer === 'string') {
      const candidates = [side.tokenizer, path.join(path.dirname(dataPath), side.tokenizer)];
      for (const c of candidates) if (fs.existsSync(c) && fs.statSync(c).isFile()) return openTokenizer(c);
    }
  }
  return null;
}
