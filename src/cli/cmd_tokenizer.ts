/**
 * `unforget tokenizer train` and `unforget tokenize`: byte-level BPE with reserved ids and EOS;
 * text, JSONL and Parquet inputs (and gzip of each).
 */
import fs from 'node:fs';
import { parseArgs } from 'node:util';
import { UnforgetError } from '../errors.js';
import { CHAT_FORMATS, readChatRows, writeChatRows, type ChatFormat } from '../data/chat.js';
import { requireModelTokenizer } from '../data/hf_tokenizer.js';
import { tokenizeCorpus, trainTokenizerFromFiles, writeTokenizerJson, type ProgressFn } from '../data/tokenize.js';
import { makeMeter } from './meter.js';
import { intOpt } from './args.js';

/** Drives a meter from the library's (phase, done, total) callbacks. */
function progressTo(meter: ReturnType<typeof makeMeter>): ProgressFn {
  let current = '';
  return (phase, done, total) => {
    if (phase !== current) {
      current = phase;
      const label = phase === 'read' ? 'reading' : phase === 'merge' ? 'merging' : 'writing';
      meter.phase(label, total, phase === 'read' ? 'MB' : 'items');
    }
    meter.update(done);
  };
}

export async function cmdTokenizer(args: string[]): Promise<void> {
  const [sub, ...rest] = args;
  if (sub !== 'train') throw new UnforgetError(`tokenizer: unknown subcommand '${sub ?? ''}' (available: train)`);
  const { values, positionals } = parseArgs({
    args: rest,
    options: {
      'vocab-size': { type: 'string' },
      reserved: { type: 'string' },
      out: { type: 'string' },
      field: { type: 'string' },
      column: { type: 'string' },
      'no-progress': { type: 'boolean' },
    },
    strict: true,
    allowPositionals: true,
  });
  if (!values.out) throw new UnforgetError('tokenizer train: --out DIR is required');
  if (positionals.length === 0) throw new UnforgetError('tokenizer train: no input files given (usage: unforget tokenizer train --out DIR FILES...)');
  const vocabSize = intOpt(values['vocab-size'], 'vocab-size', 4096, 1);
  const reserved = intOpt(values.reserved, 'reserved', 10, 0);
  const meter = makeMeter(!values['no-progress']);
  const t0 = performance.now();
  let r;
  try {
    r = await trainTokenizerFromFiles(positionals, { vocabSize, reserved, field: values.field, column: values.column, onProgress: progressTo(meter) });
  } finally {
    meter.stop();
  }
  const file = writeTokenizerJson(values.out, r.json);
  const seconds = (performance.now() - t0) / 1000;
  process.stdout.write(
    JSON.stringify({
      tokenizer: file,
      vocab_size: r.model.vocab.length,
      reserved_ids: reserved,
      eos_token_id: r.model.eosId,
      merges: r.model.merges.length,
      files: r.files,
      distinct_words: r.model.distinctWords,
      seconds: Number(seconds.toFixed(2)),
    }) + '\n',
  );
}

/** `tokenize --chat FILE.jsonl`: masked rows of T (OUT.bin, OUT.mask.bin, OUT.json), written only once all are made. */
async function tokenizeChat(file: string, values: { tokenizer?: string; out?: string; 'seq-len'?: string; format?: string; 'train-on'?: string }, positionals: string[]): Promise<void> {
  if (positionals.length > 0) throw new UnforgetError(`tokenize --chat: unexpected inputs ${positionals.join(' ')} (the data is the --chat file)`);
  if (!values.tokenizer) throw new UnforgetError('tokenize --chat: --tokenizer DIR_OR_JSON (a model folder or its tokenizer.json) is required');
  if (!values.out) throw new UnforgetError('tokenize --chat: --out FILE.bin (-o) is required');
  if (values['seq-len'] === undefined) throw new UnforgetError('tokenize --chat: --seq-len T (the row length, model.T) is required');
  const T = intOpt(values['seq-len'], 'seq-len', 0, 2);
  const format = (values.format ?? 'chat') as ChatFormat;
  if (!(CHAT_FORMATS as readonly string[]).includes(format)) throw new UnforgetError(`tokenize: --format must be one of ${CHAT_FORMATS.join(', ')}, got '${format}'`);
  const trainOn = values['train-on'] ?? 'assistant';
  if (trainOn !== 'assistant' && trainOn !== 'all') throw new UnforgetError(`tokenize: --train-on must be assistant or all, got '${trainOn}'`);
  const tok = requireModelTokenizer(values.tokenizer, `tokenize --chat ${file}`);
  const rows = await readChatRows(file, tok, { format, trainOn, T });
  const sidecar = writeChatRows(values.out, rows, tok, file);
  process.stderr.write(`tokenized ${rows.rows + rows.dropped} examples → ${rows.rows} rows of ${T} tokens; ${rows.dropped} longer than ${T} dropped\n`);
  process.stdout.write(
    JSON.stringify({
      file: values.out, mask_file: sidecar.mask_file, rows: rows.rows, dropped: rows.dropped, seq_len: T,
      format, train_on: trainOn, vocab_size: sidecar.vocab_size, dtype: sidecar.dtype, pad_id: rows.padId,
    }) + '\n',
  );
}

export async function cmdTokenize(args: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args,
    options: {
      tokenizer: { type: 'string' },
      out: { type: 'string', short: 'o' },
      chat: { type: 'string' },
      'seq-len': { type: 'string' },
      format: { type: 'string' },
      'train-on': { type: 'string' },
      'dataset-token-id': { type: 'string' },
      field: { type: 'string' },
      column: { type: 'string' },
      seed: { type: 'string' },
      'no-progress': { type: 'boolean' },
    },
    strict: true,
    allowPositionals: true,
  });
  if (values.chat !== undefined) return tokenizeChat(values.chat, values, positionals);
  for (const k of ['seq-len', 'format', 'train-on'] as const) {
    if (values[k] !== undefined) throw new UnforgetError(`tokenize: --${k} applies only with --chat FILE.jsonl`);
  }
  if (!values.tokenizer) throw new UnforgetError('tokenize: --tokenizer FILE (a tokenizer.json) is required');
  if (!values.out) throw new UnforgetError('tokenize: --out FILE.bin is required');
  if (positionals.length === 0) throw new UnforgetError('tokenize: no input files given (usage: unforget tokenize --tokenizer FILE --out X.bin INPUTS...)');
  if (fs.existsSync(values.out) && fs.statSync(values.out).isDirectory()) throw new UnforgetError(`tokenize: --out ${values.out} is a folder; give a file name like ${values.out}/train.bin`);
  const datasetTokenId = values['dataset-token-id'] === undefined ? undefined : intOpt(values['dataset-token-id'], 'dataset-token-id', 0, 0);
  const seed = intOpt(values.seed, 'seed', 0, 0);

  // Ctrl-C: remove the temporary output before exiting, so nothing partial is left behind.
  let temps: string[] = [];
  const onSignal = (signal: NodeJS.Signals) => {
    for (const t of temps) fs.rmSync(t, { force: true });
    process.stderr.write(`\ninterrupted (${signal}): no output written\n`);
    process.exit(signal === 'SIGINT' ? 130 : 143);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  const meter = makeMeter(!values['no-progress']);
  let r;
  try {
    r = await tokenizeCorpus({
      tokenizerFile: values.tokenizer,
      out: values.out,
      inputs: positionals,
      datasetTokenId,
      field: values.field,
      column: values.column,
      seed,
      onProgress: progressTo(meter),
      onTempFiles: (t) => (temps = t),
    });
  } finally {
    meter.stop();
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
  const mbPerS = r.textBytes / 1e6 / r.seconds;
  process.stderr.write(
    `tokenized ${r.documents} documents, ${(r.textBytes / 1e6).toFixed(1)} MB of text → ${r.tokens} tokens in ${r.seconds.toFixed(1)} s ` +
      `(${mbPerS.toFixed(2)} MB/s, ${(r.textBytes / Math.max(1, r.tokens)).toFixed(2)} bytes/token)\n`,
  );
  process.stdout.write(
    JSON.stringify({
      file: r.out,
      documents: r.documents,
      tokens: r.tokens,
      vocab_size: r.sidecar.vocab_size,
      dataset_token_id: r.sidecar.dataset_token_id,
      text_bytes: r.textBytes,
      seconds: Number(r.seconds.toFixed(2)),
      mb_per_s: Number(mbPerS.toFixed(2)),
    }) + '\n',
  );
}
