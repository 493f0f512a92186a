/**
 * Multiple-choice evaluation by log-likelihood, in two styles:
 * - `harness`, lm-evaluation-harness's `multiple_choice`: the context `Question: {q}\nAnswer:` and one continuation
 *   `" " + choice` per choice, scored by the summed log-likelihood of the continuation's tokens (`acc`) and by that
 *   sum over the choice's length in characters (`acc_norm`);
 * - `chat`, the study's `chat_mcq`: the question, an instruction to answer as `ANSWER: $LETTER` and the lettered
 *   choices as one user message rendered with the model's chat template (plus the generation prompt), scored by the
 *   summed log-probability of each completion `ANSWER: A`, `ANSWER: B`, ….
 *
 * The code sees a model only through `ScoringModel` (logits of a batch) and a tokenizer through `McqTokenizer`, so
 * unforget's `gpt` and the Hugging Face models score alike. Preparing (tokenising, async) and scoring (sync) are
 * separate, so that a training run tokenises its sets once and scores them at every evaluation.
 */
import fs from 'node:fs';
import { native } from '../backend/native.js';
import { DataError, UnforgetError, fileError } from '../errors.js';
import { alloc, scope } from '../tensor/pool.js';

/** What scoring needs of a model: its context length and vocabulary, and full-sequence logits [B·T, V]. */
export interface ScoringModel {
  cfg: { T: number; V: number };
  logits(ids: Int32Array, B: number, T: number): Float32Array;
}

/** What scoring needs of a tokenizer. `encode` adds no special tokens. */
export interface McqTokenizer {
  encode(text: string): Promise<number[]>;
  bosId: number | null;
  renderChat?: (messages: Array<{ role: string; content: string }>, opts: { addGenerationPrompt: boolean }) => string;
}

export interface McqItem {
  question: string;
  choices: string[];
  /** The right choice, 0-based. */
  answer: number;
  /** Where the item came from (`file:line`), for errors. */
  where?: string;
}

export type McqStyle = 'harness' | 'chat';
export const MCQ_STYLES: readonly McqStyle[] = ['harness', 'chat'];

export interface McqResult {
  acc: number;
  /** Harness style only. */
  acc_norm?: number;
  n: number;
}

/** Choices are lettered A..Z, so an item has at most 26. */
export const MAX_CHOICES = 26;
const LETTERS = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ';

// ---- reading ------------------------------------------------------------------------------------

/**
 * A JSONL file of `{question, choices, answer}` (answer: a 0-based index or a letter "A".."Z"); blank lines are
 * skipped. Every bad line is a one-line DataError naming `file:line`.
 */
export function readMcqFile(file: string): McqItem[] {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw fileError(e, file, 'multiple-choice file');
  }
  const items: McqItem[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.trim();
    if (line === '') continue;
    const where = `${file}:${i + 1}`;
    let rec: unknown;
    try {
      rec = JSON.parse(line);
    } catch (e) {
      throw new DataError(`${where}: not valid JSON (${(e as Error).message.split('\n')[0]})`);
    }
    items.push(parseMcqItem(rec, where));
  }
  if (items.length === 0) throw new DataError(`${file}: holds no questions (expected JSONL lines {"question", "choices", "answer"})`);
  return items;
}

function parseMcqItem(rec: unknown, where: string): McqItem {
  if (rec === null || typeof rec !== 'object' || Array.isArray(rec)) throw new DataError(`${where}: expected a JSON object {"question", "choices", "answer"}`);
  const r = rec as Record<string, unknown>;
  if (typeof r.question !== 'string') throw new DataError(`${where}: 'question' must be a string, got ${describe(r.question)}`);
  if (!Array.isArray(r.choices)) throw new DataError(`${where}: 'choices' must be a list of strings, got ${describe(r.choices)}`);
  const choices = r.choices as unknown[];
  if (choices.length < 2) throw new DataError(`${where}: 'choices' has ${choices.length} entr${choices.length === 1 ? 'y' : 'ies'}; at least 2 are needed`);
  if (choices.length > MAX_CHOICES) throw new DataError(`${where}: 'choices' has ${choices.length} entries; at most ${MAX_CHOICES} (A..Z) are supported`);
  choices.forEach((c, k) => {
    // An empty choice has no tokens to score and no length to normalise by.
    if (typeof c !== 'string' || c.length === 0) throw new DataError(`${where}: choice ${k} must be a non-empty string, got ${describe(c)}`);
  });
  const a = r.answer;
  let answer: number;
  if (typeof a === 'number' && Number.isInteger(a)) answer = a;
  else if (typeof a === 'string' && /^[A-Z]$/.test(a)) answer = LETTERS.indexOf(a);
  else throw new DataError(`${where}: 'answer' must be a 0-based index or a letter A..Z, got ${describe(a)}`);
  if (answer < 0 || answer >= choices.length) {
    throw new DataError(`${where}: 'answer' ${JSON.stringify(a)} is out of range for ${choices.length} choices`);
  }
  return { question: r.question, choices: choices as string[], answer, where };
}

function describe(v: unknown): string {
  if (v === undefined) return 'nothing (missing)';
  const s = JSON.stringify(v);
  return s.length <= 40 ? s : `${s.slice(0, 37)}...`;
}

// ---- prompts ------------------------------------------------------------------------------------

/** The harness context of a question. */
export function harnessContext(question: string): string {
  return `Question: ${question}\nAnswer:`;
}

/** The user message of the chat style: the instruction, the question and the lettered choices. */
export function chatQuestion(question: string, choices: readonly string[]): string {
  const letters = LETTERS.slice(0, choices.length).split('').join(', ');
  const lettered = choices.map((c, k) => `${LETTERS[k]}. ${c}`).join('\n');
  return `Answer the multiple-choice question below. Reply with a single line 'ANSWER: $LETTER', where LETTER is one of ${letters}.\n\n${question}\n\n${lettered}`;
}

/** The completion scored for choice k in the chat style. */
export function chatCompletion(k: number): string {
  return `ANSWER: ${LETTERS[k]}`;
}

/**
 * lm-evaluation-harness's `_encode_pair`: trailing whitespace of the context moves to the front of the
 * continuation; context and continuation are encoded together, and the continuation's tokens are those after the
 * context's own token count. The context's tokens are those of the context encoded alone (where a token straddles
 * the boundary, the harness scores `encode(context) + whole[len(encode(context)):]`, and so does this).
 */
export async function encodePair(tok: McqTokenizer, context: string, continuation: string): Promise<{ context: number[]; continuation: number[] }> {
  const spaces = context.length - context.trimEnd().length;
  if (spaces > 0) {
    continuation = context.slice(context.length - spaces) + continuation;
    context = context.slice(0, context.length - spaces);
  }
  const whole = await tok.encode(context + continuation);
  const ctx = await tok.encode(context);
  return { context: ctx, continuation: whole.slice(ctx.length) };
}

// ---- preparing ----------------------------------------------------------------------------------

/** One scored continuation: the start token (if any), the context's tokens and the continuation's. */
interface McqRequest {
  item: number;
  choice: number;
  head: number[];
  context: number[];
  continuation: number[];
}

/** A set tokenised for one style and start token, ready to be scored by any model with this vocabulary. */
export interface PreparedMcq {
  style: McqStyle;
  items: McqItem[];
  requests: McqRequest[];
}

export interface PrepareOptions {
  style: McqStyle;
  /**
   * The first token of every sequence: the model's BOS, or for unforget checkpoints the dataset token id (as in
   * training); null for models trained without one (Qwen). A chat prompt whose template already wrote it is not
   * given a second one.
   */
  startToken: number | null;
}

export async function prepareMcq(tok: McqTokenizer, items: McqItem[], o: PrepareOptions): Promise<PreparedMcq> {
  if (o.style === 'chat' && !tok.renderChat) throw new UnforgetError("mcq style 'chat' needs a tokenizer with a chat template; use the 'harness' style");
  const requests: McqRequest[] = [];
  const head = o.startToken === null ? [] : [o.startToken];
  for (let i = 0; i < items.length; i++) {
    const it = items[i]!;
    if (o.style === 'harness') {
      const ctx = harnessContext(it.question);
      for (let k = 0; k < it.choices.length; k++) {
        const pair = await encodePair(tok, ctx, ' ' + it.choices[k]!);
        requests.push({ item: i, choice: k, head, context: pair.context, continuation: pair.continuation });
      }
    } else {
      const prompt = tok.renderChat!([{ role: 'user', content: chatQuestion(it.question, it.choices) }], { addGenerationPrompt: true });
      const context = await tok.encode(prompt);
      const h = head.length > 0 && context[0] === head[0] ? [] : head;
      for (let k = 0; k < it.choices.length; k++) {
        // Encoded on its own: these are the tokens a model would emit after the prompt's tokens.
        requests.push({ item: i, choice: k, head: h, context, continuation: await tok.encode(chatCompletion(k)) });
      }
    }
  }
  for (const r of requests) {
    if (r.continuation.length === 0) throw new DataError(`${whereOf(items, r.item)}: choice ${r.choice} encodes to no tokens after the context`);
  }
  return { style: o.style, items, requests };
}

function whereOf(items: McqItem[], i: number): string {
  return items[i]!.where ?? `question ${i + 1}`;
}

/**
 * The token sequence of a request for a model of context length T: [head, context, continuation], and the index of
 * its first scored token. Position t predicts token t+1, so a sequence of T+1 tokens fits. A longer one loses the
 * start of its context (after the start token), as the harness truncates from the left; a continuation that does
 * not fit by itself is an error.
 */
function assemble(r: McqRequest, T: number, items: McqItem[]): { ids: number[]; scoreFrom: number } {
  const room = T + 1 - r.head.length - r.continuation.length;
  const kept = Math.min(r.context.length, room);
  if (kept < 0 || r.head.length + kept < 1) {
    throw new DataError(`${whereOf(items, r.item)}: choice ${r.choice} has ${r.continuation.length} tokens, too many to score with the model's T=${T}`);
  }
  const ids = [...r.head, ...r.context.slice(r.context.length - kept), ...r.continuation];
  return { ids, scoreFrom: ids.length - r.continuation.length };
}

/** Throws the DataError of the first request that cannot be scored at context length T, before any scoring. */
export function checkMcqFits(p: PreparedMcq, T: number): void {
  for (const r of p.requests) assemble(r, T, p.items);
}

// ---- scoring ------------------------------------------------------------------------------------

/** Logit floats one forward may hold; a batch of long rows over a large vocabulary is split to stay under it. */
const MAX_LOGIT_FLOATS = 1 << 27;

/**
 * The summed log-likelihood of every request's continuation, [item][choice]. Requests are sorted by length and
 * batched (up to `batchSize` rows, right-padded to the batch's longest): attention is causal, so padding after a
 * row's last token changes none of its scored positions.
 */
export function scoreMcq(model: ScoringModel, p: PreparedMcq, batchSize = 32): number[][] {
  const { T, V } = model.cfg;
  const k = native();
  const seqs = p.requests.map((r) => assemble(r, T, p.items));
  for (let q = 0; q < seqs.length; q++) {
    for (const id of seqs[q]!.ids) {
      if (!Number.isInteger(id) || id < 0 || id >= V) {
        throw new UnforgetError(`${whereOf(p.items, p.requests[q]!.item)}: token id ${id} is outside the model's vocabulary [0, ${V}) (the tokenizer does not match the model)`);
      }
    }
  }
  const order = seqs.map((_, q) => q).sort((a, b) => seqs[b]!.ids.length - seqs[a]!.ids.length);
  const scores = p.items.map((it) => new Array<number>(it.choices.length).fill(0));
  for (let q0 = 0; q0 < order.length; ) {
    const Tb = seqs[order[q0]!]!.ids.length - 1; // the longest row of this batch comes first
    const B = Math.max(1, Math.min(batchSize, order.length - q0, Math.floor(MAX_LOGIT_FLOATS / (Tb * V))));
    const ids = new Int32Array(B * Tb), targets = new Int32Array(B * Tb), weights = new Float32Array(B * Tb);
    for (let b = 0; b < B; b++) {
      const s = seqs[order[q0 + b]!]!;
      for (let t = 0; t < s.ids.length - 1; t++) ids[b * Tb + t] = s.ids[t]!;
      for (let t = s.scoreFrom - 1; t < s.ids.length - 1; t++) {
        targets[b * Tb + t] = s.ids[t + 1]!;
        weights[b * Tb + t] = 1;
      }
    }
    scope(() => {
      const logits = model.logits(ids, B, Tb);
      const rowLoss = alloc(B * Tb, false);
      k.crossEntropy(logits, targets, weights, B * Tb, V, rowLoss, null, 1);
      for (let b = 0; b < B; b++) {
        const s = seqs[order[q0 + b]!]!, r = p.requests[order[q0 + b]!]!;
        let ll = 0;
        for (let t = s.scoreFrom - 1; t < s.ids.length - 1; t++) ll -= rowLoss[b * Tb + t]!;
        scores[r.item]![r.choice] = ll;
      }
    });
    q0 += B;
  }
  return scores;
}

/** The first index of the largest value (numpy's argmax). */
function argmax(xs: readonly number[]): number {
  let best = 0;
  for (let i = 1; i < xs.length; i++) if (xs[i]! > xs[best]!) best = i;
  return best;
}

/**
 * acc, and in the harness style acc_norm. As lm-evaluation-harness does, acc_norm divides each score by the length
 * of the choice itself, without the continuation's leading space, counted in characters as Python's `len` counts
 * them (code points).
 */
export function mcqAccuracy(p: PreparedMcq, scores: number[][]): McqResult {
  let right = 0, rightNorm = 0;
  p.items.forEach((it, i) => {
    const s = scores[i]!;
    if (argmax(s) === it.answer) right++;
    if (argmax(s.map((x, k) => x / [...it.choices[k]!].length)) === it.answer) rightNorm++;
  });
  const n = p.items.length;
  return p.style === 'harness' ? { acc: right / n, acc_norm: rightNorm / n, n } : { acc: right / n, n };
}

export interface McqOptions extends PrepareOptions {
  /** Rows per forward (default 32). */
  batchSize?: number;
}

/** Accuracy of `model` on `items`. */
export async function evaluateMcq(model: ScoringModel, tok: McqTokenizer, items: McqItem[], o: McqOptions): Promise<McqResult> {
  const p = await prepareMcq(tok, items, o);
  return mcqAccuracy(p, scoreMcq(model, p, o.batchSize));
}
