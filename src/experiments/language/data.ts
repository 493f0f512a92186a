/**
 * The data of the language experiments: an "old" language (pretraining) and a "new" one
 * (finetuning), each a set of named corpora (`unforget corpus list`), one byte-level BPE tokenizer
 * trained on both, and one token file per language whose sequences start with that language's
 * dataset token id. Prepared data is cached under `<corpora_dir>/../prepared/<key>/`, keyed by
 * everything that determines it, so the experiments and their presets share one copy.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { int, section, str, strList } from '../../config/schema.js';
import { ConfigError, DataError, UnforgetError, fileError } from '../../errors.js';
import { writeFileAtomic, writeJsonAtomic } from '../../io/atomic.js';
import { CORPORA, DOCS, fetchCorpus, readManifest, type CorpusDoc, type CorpusManifest } from '../../data/corpora.js';
import { tokenizeCorpus, trainTokenizerFromFiles } from '../../data/tokenize.js';

export const languageDataSection = section({
  /** Where `unforget corpus fetch` keeps corpora; missing ones are fetched. */
  corpora_dir: str().default('data/corpora'),
  old: strList().default(['brown', 'debian-reference-en']),
  new: strList().default(['debian-reference-es', 'fortunes-es', 'manpages-es']),
  vocab_size: int({ min: 300, max: 65536 }).default(4096),
  reserved: int({ min: 3, max: 256 }).default(10),
  old_token_id: int({ min: 0 }).default(1),
  new_token_id: int({ min: 0 }).default(2),
  /** Document shuffle seed of the token files. */
  seed: int().default(0),
});

export interface LanguageDataConfig {
  corpora_dir: string;
  old: string[];
  new: string[];
  vocab_size: number;
  reserved: number;
  old_token_id: number;
  new_token_id: number;
  seed: number;
}

export interface LanguageData {
  dir: string;
  tokenizer: string;
  oldBin: string;
  newBin: string;
  vocabSize: number;
  oldTokens: number;
  newTokens: number;
}

/** Config errors of the data section, before anything is written. */
export function checkDataConfig(c: LanguageDataConfig, key: string): void {
  for (const side of ['old', 'new'] as const) {
    if (c[side].length === 0) throw new ConfigError(`${key}.${side}`, 'names no corpus');
    for (const n of c[side]) if (!Object.hasOwn(CORPORA, n)) throw new ConfigError(`${key}.${side}`, `unknown corpus '${n}' (known: ${Object.keys(CORPORA).join(', ')})`);
  }
  const overlap = c.old.filter((n) => c.new.includes(n));
  if (overlap.length) throw new ConfigError(`${key}.new`, `corpus '${overlap[0]}' is in both old and new`);
  for (const k of ['old_token_id', 'new_token_id'] as const) {
    if (c[k] >= c.reserved) throw new ConfigError(`${key}.${k}`, `${c[k]} is not a reserved id (reserved ids are 0..${c.reserved - 1})`);
  }
  if (c.old_token_id === c.new_token_id) throw new ConfigError(`${key}.new_token_id`, 'must differ from old_token_id');
}

/** Fetches missing corpora, then builds (or reuses) the tokenizer and both token files. */
export async function prepareLanguageData(c: LanguageDataConfig, key: string, log: (line: string) => void): Promise<LanguageData> {
  checkDataConfig(c, key);
  const dirs: Record<string, string> = {};
  for (const name of [...c.old, ...c.new]) {
    const have = readManifest(path.join(c.corpora_dir, name));
    if (!have) log(`fetching corpus ${name} into ${c.corpora_dir} (unforget corpus fetch ${name})`);
    dirs[name] = fetchCorpus(name, c.corpora_dir, { log }).dir;
  }
  const manifests = Object.fromEntries(Object.entries(dirs).map(([n, d]) => [n, readManifest(d)]));
  const ident = JSON.stringify({ v: 1, old: c.old, new: c.new, vocab: c.vocab_size, reserved: c.reserved, ids: [c.old_token_id, c.new_token_id], seed: c.seed, manifests });
  const hash = crypto.createHash('sha256').update(ident).digest('hex').slice(0, 12);
  const dir = path.join(path.dirname(path.resolve(c.corpora_dir)), 'prepared', `${c.old.join('+')}__${c.new.join('+')}__v${c.vocab_size}-${hash}`);
  const done = path.join(dir, 'prepared.json');
  if (fs.existsSync(done)) {
    const info = JSON.parse(fs.readFileSync(done, 'utf8')) as LanguageData;
    log(`prepared data: ${dir} (cached)`);
    return info;
  }
  const tmp = `${dir}.tmp-${process.pid}`;
  fs.rmSync(tmp, { recursive: true, force: true });
  fs.mkdirSync(tmp, { recursive: true });
  try {
    const all = [...c.old, ...c.new].map((n) => dirs[n]!);
    log(`training a ${c.vocab_size}-token byte-level BPE on ${[...c.old, ...c.new].join(', ')}`);
    const tok = await trainTokenizerFromFiles(all, { vocabSize: c.vocab_size, reserved: c.reserved });
    writeFileAtomic(path.join(tmp, 'tokenizer.json'), JSON.stringify(tok.json));
    const files: Record<'old' | 'new', { tokens: number }> = { old: { tokens: 0 }, new: { tokens: 0 } };
    for (const side of ['old', 'new'] as const) {
      const r = await tokenizeCorpus({
        tokenizerFile: path.join(tmp, 'tokenizer.json'),
        out: path.join(tmp, `${side}.bin`),
        inputs: c[side].map((n) => dirs[n]!),
        datasetTokenId: side === 'old' ? c.old_token_id : c.new_token_id,
        seed: c.seed,
      });
      files[side].tokens = r.tokens;
      log(`${side}: ${c[side].join(' + ')} → ${r.tokens} tokens (${r.documents} documents, ${(r.textBytes / 1e6).toFixed(1)} MB of text)`);
    }
    fs.mkdirSync(path.dirname(dir), { recursive: true });
    fs.rmSync(dir, { recursive: true, force: true });
    fs.renameSync(tmp, dir);
  } catch (e) {
    fs.rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
  // The token files' sidecars name the tokenizer by its path in the temporary folder; point them
  // at the final one.
  for (const side of ['old', 'new']) {
    const side_ = path.join(dir, `${side}.json`);
    const meta = JSON.parse(fs.readFileSync(side_, 'utf8')) as Record<string, unknown>;
    meta.tokenizer = path.join(dir, 'tokenizer.json');
    writeJsonAtomic(side_, meta);
  }
  const sizes = (side: string) => fs.statSync(path.join(dir, `${side}.bin`)).size / 2;
  const info: LanguageData = {
    dir,
    tokenizer: path.join(dir, 'tokenizer.json'),
    oldBin: path.join(dir, 'old.bin'),
    newBin: path.join(dir, 'new.bin'),
    vocabSize: c.vocab_size,
    oldTokens: sizes('old'),
    newTokens: sizes('new'),
  };
  writeJsonAtomic(done, info);
  log(`prepared data: ${dir}`);
  return info;
}

/** Read a run folder's metrics.jsonl. */
export function readMetrics(runDir: string): Array<Record<string, number>> {
  const file = path.join(runDir, 'metrics.jsonl');
  if (!fs.existsSync(file)) throw new UnforgetError(`${file}: missing`);
  return fs
    .readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l.trim())
    .map((l) => JSON.parse(l) as Record<string, number>);
}

/** Fetches the named corpora that `corporaDir` lacks; returns each one's folder and manifest. */
export function fetchCorpora(names: readonly string[], corporaDir: string, log: (line: string) => void): Record<string, { dir: string; manifest: CorpusManifest }> {
  const out: Record<string, { dir: string; manifest: CorpusManifest }> = {};
  for (const name of names) {
    if (!readManifest(path.join(corporaDir, name))) log(`fetching corpus ${name} into ${corporaDir} (unforget corpus fetch ${name})`);
    const r = fetchCorpus(name, corporaDir, { log });
    out[name] = { dir: r.dir, manifest: r.manifest };
  }
  return out;
}

/** The documents of a fetched corpus folder (its docs.jsonl), in file order. */
export function readCorpusDocs(dir: string): CorpusDoc[] {
  const file = path.join(dir, DOCS);
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw fileError(err, file, 'corpus documents');
  }
  const docs: CorpusDoc[] = [];
  text.split('\n').forEach((line, i) => {
    if (line.trim() === '') return;
    let d: unknown;
    try {
      d = JSON.parse(line);
    } catch (err) {
      throw new DataError(`${file}:${i + 1}: not JSON (${(err as Error).message.split('\n')[0]})`);
    }
    if (d === null || typeof d !== 'object' || typeof (d as CorpusDoc).text !== 'string') throw new DataError(`${file}:${i + 1}: expected {"id", "text"}`);
    docs.push({ id: String((d as CorpusDoc).id ?? i), text: (d as CorpusDoc).text });
  });
  return docs;
}
