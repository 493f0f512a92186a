/**
 * Instruction data: JSONL conversations (`{"messages": [{role, content}, ...]}`, rendered with the
 * model's own chat template) or prompt/completion pairs, tokenised into rows of T tokens with a loss
 * mask, and the files `unforget tokenize --chat` writes them to (ids, a uint8 mask, a sidecar).
 *
 * Assistant spans are located exactly, without assuming anything about the template's wording: the
 * conversation is rendered once as it is and once with one assistant message's content replaced by a
 * character that occurs nowhere in the text; everything before the first and after the last
 * difference is template, so what lies between is that message's content as the template wrote it
 * (after `trim`, or with a reasoning block, say). Rendering prefixes of the conversation instead would
 * not do: Qwen3 writes the last assistant turn differently from earlier ones, and the Llama 3.0
 * template always appends an assistant header. Character spans become token spans through the
 * tokenizer's offsets. The end of turn is the special token right after the content (whitespace
 * between them included): `<|eot_id|>` for Llama 3, `<|im_end|>` for Qwen and SmolLM2.
 *
 * prompt_completion follows TRL's SFTTrainer for plain-text pairs: no chat template, the text
 * prompt + completion + EOS, the loss on the completion and the EOS.
 */
import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import { DataError, fileError } from '../errors.js';
import { writeFileAtomic } from '../io/atomic.js';
import type { ChatMessage, ModelTokenizer } from './hf_tokenizer.js';
import { TokenDataset, readTokenFile, sidecarPath, writeTokenFile, type DatasetOptions, type Sidecar } from './tokens.js';

export const CHAT_FORMATS = ['chat', 'prompt_completion'] as const;
export type ChatFormat = (typeof CHAT_FORMATS)[number];
export type TrainOn = 'assistant' | 'all';

export interface EncodedExample {
  ids: number[];
  /** 1 where the token is a target (its prediction counts in the loss). */
  mask: Uint8Array;
}

/** Length of the common prefix of a and b, and of their common suffix within what the prefix leaves. */
function commonEnds(a: string, b: string): [number, number] {
  const n = Math.min(a.length, b.length);
  let p = 0;
  while (p < n && a.charCodeAt(p) === b.charCodeAt(p)) p++;
  let s = 0;
  while (s < n - p && a.charCodeAt(a.length - 1 - s) === b.charCodeAt(b.length - 1 - s)) s++;
  return [p, s];
}

/** A private-use character that none of `texts` contains. */
function absentChar(texts: string[]): string {
  for (let c = 0xe000; c <= 0xf8ff; c++) {
    const ch = String.fromCharCode(c);
    if (texts.every((t) => !t.includes(ch))) return ch;
  }
  throw new Error('every private-use character occurs in the conversation');
}

/** [start, end) in `text` of each assistant message's content, as the template rendered it. */
function assistantSpans(tok: ModelTokenizer, messages: ChatMessage[], text: string, now: Date | undefined, where: string): Array<[number, number]> {
  const marker = absentChar([text, ...messages.map((m) => m.content)]);
  const spans: Array<[number, number]> = [];
  messages.forEach((m, k) => {
    if (m.role !== 'assistant') return;
    const probe = tok.renderChat(messages.map((x, i) => (i === k ? { ...x, content: marker } : x)), { addGenerationPrompt: false, now });
    const [p, s] = commonEnds(text, probe);
    if (!probe.slice(p, probe.length - s).includes(marker)) {
      throw new DataError(`${where}: cannot locate assistant message ${k + 1} in the text the chat template of ${tok.configFile} renders`);
    }
    spans.push([p, text.length - s]);
  });
  return spans;
}

/** Marks the tokens that overlap each character span, and then each span's end-of-turn token(s). */
function maskSpans(tok: ModelTokenizer, text: string, ids: number[], offsets: Array<[number, number]>, spans: Array<[number, number]>, endOfTurn: boolean): Uint8Array {
  const mask = new Uint8Array(ids.length);
  for (const [a, b] of spans) {
    let j = 0;
    for (; j < ids.length && offsets[j]![0] < b; j++) {
      if (offsets[j]![1] > a) mask[j] = 1;
    }
    if (!endOfTurn) continue;
    let k = j;
    while (k < ids.length && !tok.isSpecial(ids[k]!) && text.slice(offsets[k]![0], offsets[k]![1]).trim() === '') k++;
    if (k < ids.length && tok.isSpecial(ids[k]!)) mask.fill(1, j, k + 1);
  }
  return mask;
}

/** Exactly one BOS where the tokenizer has one: a template that writes none gets it in front. */
function withBos(tok: ModelTokenizer, ex: EncodedExample): EncodedExample {
  if (tok.bosId === null || ex.ids[0] === tok.bosId) return ex;
  const mask = new Uint8Array(ex.mask.length + 1);
  mask.set(ex.mask, 1);
  return { ids: [tok.bosId, ...ex.ids], mask };
}

/** A conversation rendered with the model's chat template; the mask covers assistant turns, or everything. */
export async function encodeChat(tok: ModelTokenizer, messages: ChatMessage[], trainOn: TrainOn, where: string, now?: Date): Promise<EncodedExample> {
  const text = tok.renderChat(messages, { addGenerationPrompt: false, now });
  const { ids, offsets } = await tok.encodeWithOffsets(text);
  const mask = trainOn === 'all' ? new Uint8Array(ids.length).fill(1) : maskSpans(tok, text, ids, offsets, assistantSpans(tok, messages, text, now, where), true);
  return withBos(tok, { ids, mask });
}

/** prompt + completion + EOS as plain text (TRL's way); the mask covers the completion and the EOS, or everything. */
export async function encodePromptCompletion(tok: ModelTokenizer, prompt: string, completion: string, trainOn: TrainOn): Promise<EncodedExample> {
  if (tok.eosToken === null) throw new DataError(`${tok.configFile}: data.format=prompt_completion needs an eos_token to end each completion`);
  const text = prompt + completion + tok.eosToken;
  const { ids, offsets } = await tok.encodeWithOffsets(text);
  const mask = trainOn === 'all' ? new Uint8Array(ids.length).fill(1) : maskSpans(tok, text, ids, offsets, [[prompt.length, text.length]], false);
  return withBos(tok, { ids, mask });
}

// ---------------------------------------------------------------------------------------------
// JSONL → rows
// ---------------------------------------------------------------------------------------------

export interface ChatRowsOptions {
  format: ChatFormat;
  trainOn: TrainOn;
  /** Row length (model.T): longer examples are dropped. */
  T: number;
  /** The date chat templates see through strftime_now (default: today, as transformers does). */
  now?: Date;
}

/** Examples padded to T: `ids` and `mask` are [rows, T]; pad positions have mask 0. */
export interface ChatRows {
  T: number;
  rows: number;
  ids: Uint32Array;
  mask: Uint8Array;
  /** Examples longer than T, left out. */
  dropped: number;
  padId: number;
  format: ChatFormat;
  trainOn: TrainOn;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function parseMessages(obj: Record<string, unknown>, where: string): ChatMessage[] {
  const list = obj.messages;
  if (!Array.isArray(list)) throw new DataError(`${where}: missing "messages" (a list of {role, content})`);
  const messages = list.map((m, i) => {
    if (!isObject(m) || typeof m.role !== 'string' || typeof m.content !== 'string') {
      throw new DataError(`${where}: message ${i + 1} needs a string "role" and a string "content"`);
    }
    return { role: m.role, content: m.content };
  });
  if (!messages.some((m) => m.role === 'assistant')) throw new DataError(`${where}: the conversation has no assistant message to train on`);
  return messages;
}

/** The pad id of rows: the tokenizer's pad token, else its EOS. */
export function padIdOf(tok: ModelTokenizer): number {
  const id = tok.padId ?? tok.eosId;
  if (id === null) throw new DataError(`${tok.configFile}: needs a pad_token or an eos_token to pad rows with`);
  return id;
}

/** Reads `file` (JSONL, one example a line) and tokenises every example into a row of T tokens. */
export async function readChatRows(file: string, tok: ModelTokenizer, o: ChatRowsOptions): Promise<ChatRows> {
  if (o.format === 'chat' && tok.chatTemplate === null) {
    throw new DataError(`${tok.configFile}: has no chat_template, which data.format=chat needs to render ${file}`);
  }
  const padId = padIdOf(tok);
  let stream: fs.ReadStream;
  try {
    fs.accessSync(file, fs.constants.R_OK);
    stream = fs.createReadStream(file, { encoding: 'utf8' });
  } catch (err) {
    throw fileError(err, file, 'chat data');
  }
  const T = o.T;
  let ids = new Uint32Array(16 * T), mask = new Uint8Array(16 * T);
  let rows = 0, dropped = 0, lineNo = 0, examples = 0;
  const lines = readline.createInterface({ input: stream, crlfDelay: Infinity });
  try {
    for await (const line of lines) {
      lineNo++;
      if (line.trim() === '') continue;
      const where = `${file}:${lineNo}`;
      let obj: unknown;
      try {
        obj = JSON.parse(line);
      } catch (err) {
        throw new DataError(`${where}: not JSON (${(err as Error).message.split('\n')[0]})`);
      }
      if (!isObject(obj)) throw new DataError(`${where}: expected a JSON object`);
      let ex: EncodedExample;
      if (o.format === 'chat') {
        ex = await encodeChat(tok, parseMessages(obj, where), o.trainOn, where, o.now);
      } else {
        if (typeof obj.prompt !== 'string' || typeof obj.completion !== 'string') {
          throw new DataError(`${where}: data.format=prompt_completion needs a string "prompt" and a string "completion"`);
        }
        ex = await encodePromptCompletion(tok, obj.prompt, obj.completion, o.trainOn);
      }
      examples++;
      if (ex.ids.length > T) {
        dropped++;
        continue;
      }
      if (!ex.mask.subarray(1).includes(1)) throw new DataError(`${where}: the example has no token to train on`);
      if ((rows + 1) * T > ids.length) {
        const grown = new Uint32Array(ids.length * 2);
        grown.set(ids);
        ids = grown;
        const grownMask = new Uint8Array(mask.length * 2);
        grownMask.set(mask);
        mask = grownMask;
      }
      ids.set(ex.ids, rows * T);
      ids.fill(padId, rows * T + ex.ids.length, (rows + 1) * T);
      mask.set(ex.mask, rows * T);
      rows++;
    }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== undefined && !(err instanceof DataError)) throw fileError(err, file, 'chat data');
    throw err;
  } finally {
    lines.close();
    stream.destroy();
  }
  if (examples === 0) throw new DataError(`${file}: no examples (the file is empty)`);
  if (rows === 0) throw new DataError(`${file}: all ${examples} examples are longer than T=${T} tokens`);
  return { T, rows, ids: ids.slice(0, rows * T), mask: mask.slice(0, rows * T), dropped, padId, format: o.format, trainOn: o.trainOn };
}

// ---------------------------------------------------------------------------------------------
// Row files and datasets
// ---------------------------------------------------------------------------------------------

/** `data/x.bin` → `data/x.mask.bin`. */
export function maskPath(binPath: string): string {
  return (binPath.endsWith('.bin') ? binPath.slice(0, -4) : binPath) + '.mask.bin';
}

/** Whether a token file's sidecar says it holds chat rows with a mask. */
export function isChatRowsSidecar(s: Sidecar | null): boolean {
  return s !== null && typeof s.mask_file === 'string';
}

/**
 * Writes the rows (uint16, or uint32 when the vocabulary needs it), the mask (uint8, one per token)
 * and the sidecar, each atomically; the sidecar, written last, is what makes the rows readable.
 */
export function writeChatRows(binPath: string, r: ChatRows, tok: ModelTokenizer, sourceFile: string): Sidecar {
  const outDir = path.dirname(path.resolve(binPath));
  fs.mkdirSync(outDir, { recursive: true });
  const dtype = tok.vocabSize > 65536 ? 'uint32' : 'uint16';
  const rel = (p: string) => path.relative(outDir, path.resolve(p)) || path.basename(p);
  writeFileAtomic(maskPath(binPath), r.mask);
  const sidecar: Sidecar = {
    vocab_size: tok.vocabSize,
    dataset_token_id: tok.bosId,
    tokenizer: rel(tok.file),
    dtype,
    format: r.format,
    train_on: r.trainOn,
    seq_len: r.T,
    rows: r.rows,
    pad_id: r.padId,
    dropped: r.dropped,
    mask_file: path.basename(maskPath(binPath)),
    source: rel(sourceFile),
    created_by: 'unforget tokenize --chat',
  };
  writeTokenFile(binPath, dtype === 'uint32' ? r.ids : Uint16Array.from(r.ids), sidecar);
  return sidecar;
}

/** Rows written by writeChatRows: the ids, the mask and what the sidecar says about them. */
export function readChatRowsFile(binPath: string, opts: { V?: number } = {}): ChatRows & { sidecar: Sidecar } {
  const tf = readTokenFile(binPath, opts);
  const s = tf.sidecar;
  const side = sidecarPath(binPath);
  const T = s.seq_len, rows = s.rows;
  if (!Number.isSafeInteger(T) || (T as number) <= 0 || !Number.isSafeInteger(rows) || (rows as number) < 0) {
    throw new DataError(`${side}: chat rows need a positive integer seq_len and an integer rows`);
  }
  if (tf.tokens.length !== (T as number) * (rows as number)) {
    throw new DataError(`${binPath}: ${tf.tokens.length} tokens, but the sidecar says ${rows} rows of ${T}`);
  }
  const mfile = path.join(path.dirname(binPath), String(s.mask_file));
  let mask: Uint8Array;
  try {
    mask = new Uint8Array(fs.readFileSync(mfile));
  } catch (err) {
    throw fileError(err, mfile, 'mask file');
  }
  if (mask.length !== tf.tokens.length) throw new DataError(`${mfile}: ${mask.length} mask bytes for ${tf.tokens.length} tokens in ${binPath}`);
  const bad = mask.findIndex((m) => m > 1);
  if (bad >= 0) throw new DataError(`${mfile}: mask byte ${bad} is ${mask[bad]}, expected 0 or 1`);
  const format = (CHAT_FORMATS as readonly unknown[]).includes(s.format) ? (s.format as ChatFormat) : 'chat';
  return {
    T: T as number, rows: rows as number, ids: Uint32Array.from(tf.tokens), mask,
    dropped: Number(s.dropped ?? 0), padId: Number(s.pad_id ?? 0), format, trainOn: s.train_on === 'all' ? 'all' : 'assistant', sidecar: s,
  };
}

/** Rows with masks, split and batched exactly like a token file cut into sequences of T. */
export function chatDataset(r: ChatRows, opts: DatasetOptions): TokenDataset {
  if (opts.T !== r.T) throw new DataError(`${opts.source ?? 'chat data'}: rows of ${r.T} tokens, but model.T is ${opts.T}`);
  return new TokenDataset(r.ids, { ...opts, mask: r.mask });
}
