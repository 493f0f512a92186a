/** JSON files that must hold one object (config.json, tokenizer_config.json, ...), read with one-line errors. */
import fs from 'node:fs';
import { DataError, fileError } from '../errors.js';

/** The object in `file`; a missing or unreadable file, bad JSON or a non-object is a DataError naming the file. */
export function readJsonObject(file: string, what: string): Record<string, unknown> {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw fileError(err, file, what);
  }
  let obj: unknown;
  try {
    obj = JSON.parse(text);
  } catch (err) {
    throw new DataError(`${file}: not valid JSON (${(err as Error).message.split('\n')[0]})`);
  }
  if (obj === null || typeof obj !== 'object' || Array.isArray(obj)) throw new DataError(`${file}: must hold a JSON object`);
  return obj as Record<string, unknown>;
}
