/**
 * The material of `unforget experiment instruct`, built from the language experiments' corpora and cached
 * under `<corpora_dir>/../prepared/` (keyed by everything that determines it, like prepared data):
 * - the old language (English, `lang.old`) split by document into text for pretraining and three held-out parts:
 *   a multiple-choice set, the old data on which forgetting is measured (prev.path) and real replay (reg.path);
 *   the held-out parts are tokenised with the finetuned model's own tokenizer, so a real Llama folder works alike;
 * - instruction data from the new language (Spanish, `lang.new`): "Continue this text:" with the first words of a
 *   passage, answered by the words that follow, as chat JSONL;
 * - for the default model, a chat tokenizer made from the project's BPE tokenizer: reserved ids become the
 *   special tokens (the old language's dataset token is the BOS, the two highest other reserved ids the ChatML
 *   turn markers) and a tokenizer_config.json carries a ChatML template.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { encodeChat } from '../../data/chat.js';
import type { CorpusDoc } from '../../data/corpora.js';
import type { ModelTokenizer } from '../../data/hf_tokenizer.js';
import { EOS_TOKEN, reservedToken } from '../../data/bpe.js';
import { writeTokenFile } from '../../data/tokens.js';
import { ConfigError, DataError } from '../../errors.js';
import { writeFileAtomic, writeJsonAtomic } from '../../io/atomic.js';
import { Rng } from '../../util/rng.js';

export const IM_START = '<|im_start|>';
export const IM_END = '<|im_end|>';

/** ChatML with the BOS in front, as SmolLM2- and Qwen-style instruct models write turns. */
export const CHATML_TEMPLATE =
  "{{ bos_token }}{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}" +
  "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

export const CONTINUE_INSTRUCTION = 'Continue this text:';

/** The name of the multiple-choice file, hence of its metrics: mcq_old_knowledge_acc. */
export const MCQ_FILE = 'old_knowledge.jsonl';
export const MCQ_METRIC = 'mcq_old_knowledge_acc';

export function shortHash(x: unknown): string {
  return crypto.createHash('sha256').update(typeof x === 'string' || Buffer.isBuffer(x) ? x : JSON.stringify(x)).digest('hex').slice(0, 12);
}

/** The prepared-data folder beside the corpora folder, as the language experiments use. */
export function preparedRoot(corporaDir: string): string {
  return path.join(path.dirname(path.resolve(corporaDir)), 'prepared');
}

/** A cache folder complete when `done` exists in it; a folder left without it (an interrupted build) is removed. */
export function freshCacheDir(dir: string, done: string): boolean {
  if (fs.existsSync(path.join(dir, done))) return false;
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(dir, { recursive: true });
  return true;
}

function words(text: string): string[] {
  return text.split(/\s+/).filter((w) => w.length > 0);
}

function writeJsonl(file: string, rows: readonly unknown[]): void {
  writeFileAtomic(file, rows.map((r) => JSON.stringify(r)).join('\n') + '\n');
}

// ---- the old language: pretraining text and held-out parts ------------------------------------------------------

export interface EnglishSplitOptions {
  mcqItems: number;
  mcqContextWords: number;
  mcqAnswerWords: number;
  prevChars: number;
  replayChars: number;
  seed: number;
}

export interface EnglishSplit {
  dir: string;
  /** JSONL of {"text"} documents. */
  pretrain: string;
  prev: string;
  replay: string;
  mcq: string;
  counts: { pretrain_docs: number; pretrain_chars: number; prev_docs: number; prev_chars: number; replay_docs: number; replay_chars: number; mcq_docs: number; mcq_items: number };
}

/** Non-overlapping passages of `n` words from each document, in order. */
function passagesOf(doc: CorpusDoc, n: number): string[][] {
  const w = words(doc.text);
  const out: string[][] = [];
  for (let i = 0; i + n <= w.length; i += n) out.push(w.slice(i, i + n));
  return out;
}

/**
 * Documents in a seeded order go to the multiple-choice set until it has enough passages, then to prev until it
 * holds prevChars, then to replay until replayChars; the rest is pretraining text. Whole documents, so no held-out
 * passage was ever seen in pretraining. Each item: the first mcqContextWords of a passage, its next mcqAnswerWords
 * among four choices, the three others the continuations of other passages.
 */
export function splitEnglish(docs: CorpusDoc[], key: unknown, root: string, o: EnglishSplitOptions): EnglishSplit {
  const dir = path.join(root, `instruct-en-${shortHash({ v: 1, key, o })}`);
  const done = 'split.json';
  const files = { dir, pretrain: path.join(dir, 'pretrain.jsonl'), prev: path.join(dir, 'prev.jsonl'), replay: path.join(dir, 'replay.jsonl'), mcq: path.join(dir, MCQ_FILE) };
  if (!freshCacheDir(dir, done)) return { ...files, counts: JSON.parse(fs.readFileSync(path.join(dir, done), 'utf8')) as EnglishSplit['counts'] };

  const rng = new Rng(o.seed).fork('instruct-english');
  const order = rng.permutation(docs.length);
  const passageWords = o.mcqContextWords + o.mcqAnswerWords;
  const parts = { mcq: [] as CorpusDoc[], prev: [] as CorpusDoc[], replay: [] as CorpusDoc[], pretrain: [] as CorpusDoc[] };
  const passages: string[][] = [];
  let prevChars = 0, replayChars = 0;
  for (const i of order) {
    const d = docs[i]!;
    if (d.text.trim() === '') continue;
    if (passages.length < o.mcqItems) {
      const p = passagesOf(d, passageWords);
      if (p.length === 0) continue;
      parts.mcq.push(d);
      passages.push(...p.slice(0, o.mcqItems - passages.length));
    } else if (prevChars < o.prevChars) {
      parts.prev.push(d);
      prevChars += d.text.length;
    } else if (replayChars < o.replayChars) {
      parts.replay.push(d);
      replayChars += d.text.length;
    } else parts.pretrain.push(d);
  }
  const total = docs.reduce((s, d) => s + d.text.length, 0);
  if (passages.length < o.mcqItems) throw new ConfigError('instruct.mcq_items', `the old-language corpora (${total} characters) give only ${passages.length} passages of ${passageWords} words`);
  if (parts.pretrain.length === 0) {
    throw new ConfigError(replayChars < o.replayChars ? 'instruct.prev_chars' : 'instruct.replay_chars', `the held-out parts take all ${total} characters of the old-language corpora, leaving none for pretraining`);
  }
  if (passages.length < 4) throw new ConfigError('instruct.mcq_items', 'must be at least 4 (each item takes three other passages as its wrong choices)');

  const mcqRng = rng.fork('mcq');
  const items = passages.map((p, k) => {
    const others: number[] = [];
    while (others.length < 3) {
      const j = mcqRng.int(passages.length);
      if (j !== k && !others.includes(j)) others.push(j);
    }
    const answer = mcqRng.int(4);
    const wrong = others.map((j) => passages[j]!.slice(o.mcqContextWords).join(' '));
    const choices = [...wrong.slice(0, answer), p.slice(o.mcqContextWords).join(' '), ...wrong.slice(answer)];
    return { question: p.slice(0, o.mcqContextWords).join(' '), choices, answer };
  });
  writeJsonl(files.mcq, items);
  for (const part of ['prev', 'replay', 'pretrain'] as const) writeJsonl(files[part], parts[part].map((d) => ({ id: d.id, text: d.text })));
  const counts: EnglishSplit['counts'] = {
    pretrain_docs: parts.pretrain.length, pretrain_chars: parts.pretrain.reduce((s, d) => s + d.text.length, 0),
    prev_docs: parts.prev.length, prev_chars: prevChars, replay_docs: parts.replay.length, replay_chars: replayChars,
    mcq_docs: parts.mcq.length, mcq_items: items.length,
  };
  writeJsonAtomic(path.join(dir, done), counts);
  return { ...files, counts };
}

/** Hash of a tokenizer as a model folder ships it (tokenizer.json and tokenizer_config.json). */
export function tokenizerHash(tok: ModelTokenizer): string {
  const h = crypto.createHash('sha256').update(fs.readFileSync(tok.file));
  if (fs.existsSync(tok.configFile)) h.update(fs.readFileSync(tok.configFile));
  return h.digest('hex').slice(0, 12);
}

/** The token that ends a document: `<|endoftext|>` (unforget's BPE, Qwen), `<|end_of_text|>` (Llama 3), else the EOS. */
export function documentEnd(tok: ModelTokenizer): number | null {
  return tok.tokenId(EOS_TOKEN) ?? tok.tokenId('<|end_of_text|>') ?? tok.eosId;
}

/**
 * A JSONL file of {"text"} documents as a token file: each document's ids (no special tokens added, so a
 * tokenizer whose post-processor adds a BOS does not put one mid-text) followed by the document end. The
 * sidecar gives no dataset token id: training reads each window's first token as the model's BOS.
 */
export async function tokenizeDocs(tok: ModelTokenizer, jsonl: string, out: string): Promise<{ tokens: number; documents: number }> {
  const end = documentEnd(tok);
  const ids: number[] = [];
  let documents = 0;
  for (const line of fs.readFileSync(jsonl, 'utf8').split('\n')) {
    if (line.trim() === '') continue;
    for (const id of await tok.encode((JSON.parse(line) as { text: string }).text)) ids.push(id);
    if (end !== null) ids.push(end);
    documents++;
  }
  const wide = tok.vocabSize > 65536;
  writeTokenFile(out, wide ? Uint32Array.from(ids) : Uint16Array.from(ids), {
    vocab_size: tok.vocabSize,
    dataset_token_id: null,
    tokenizer: path.relative(path.dirname(path.resolve(out)), tok.file),
    dtype: wide ? 'uint32' : 'uint16',
    eos_token_id: end,
    documents,
    tokens: ids.length,
    source: path.basename(jsonl),
    created_by: 'unforget experiment instruct',
  });
  return { tokens: ids.length, documents };
}

// ---- the new language as instructions ----------------------------------------------------------------------------

export interface ChatDataOptions {
  examples: number;
  promptWords: number;
  answerWords: number;
  /** Rows hold T tokens: a longer example has both parts shortened until it fits. */
  T: number;
  seed: number;
}

/**
 * "Continue this text:\n<first promptWords words of a passage>" answered by its next answerWords words, for
 * passages drawn in a seeded order from every document of the new language. Learnable (it is language modelling
 * of the new language behind a chat template) and far from the old data, so finetuning on it forgets.
 */
export async function buildContinueChat(docs: CorpusDoc[], tok: ModelTokenizer, file: string, o: ChatDataOptions): Promise<{ examples: number; shortened: number; skipped: number }> {
  const n = o.promptWords + o.answerWords;
  const passages = docs.flatMap((d) => passagesOf(d, n));
  const order = new Rng(o.seed).fork('instruct-chat').permutation(passages.length);
  // Templates that print today's date (Llama 3) may render a few tokens longer on another day.
  const room = o.T - 4;
  const rows: unknown[] = [];
  let shortened = 0, skipped = 0;
  const now = new Date(2026, 0, 1);
  for (const k of order) {
    if (rows.length >= o.examples) break;
    const p = passages[k]!;
    let pw = o.promptWords, aw = o.answerWords;
    for (;;) {
      const messages = [
        { role: 'user', content: `${CONTINUE_INSTRUCTION}\n${p.slice(0, pw).join(' ')}` },
        { role: 'assistant', content: p.slice(pw, pw + aw).join(' ') },
      ];
      const ex = await encodeChat(tok, messages, 'assistant', file, now);
      if (ex.ids.length <= room) {
        rows.push({ messages });
        if (pw < o.promptWords) shortened++;
        break;
      }
      if (pw <= 4 || aw <= 4) {
        skipped++;
        break;
      }
      pw = Math.max(4, Math.floor(pw * 0.75));
      aw = Math.max(4, Math.floor(aw * 0.75));
    }
  }
  if (rows.length === 0) throw new ConfigError('instruct.prompt_words', `no passage of the new-language corpora fits T=${o.T} tokens as an instruction`);
  if (rows.length < o.examples) throw new ConfigError('instruct.examples', `the new-language corpora give only ${rows.length} passages of ${n} words that fit T=${o.T}`);
  writeJsonl(file, rows);
  return { examples: rows.length, shortened, skipped };
}

// ---- the chat tokenizer of the default model ------------------------------------------------------------------

export interface ChatTokenizerIds {
  bosId: number;
  eosId: number;
  imStartId: number;
  imEndId: number;
  endOfTextId: number;
}

/**
 * Writes `outDir/tokenizer.json` (the BPE tokenizer with two reserved ids renamed to `<|im_start|>` and
 * `<|im_end|>`; ids unchanged, so token files of the original stay valid) and `outDir/tokenizer_config.json`.
 */
export function writeChatTokenizer(bpeTokenizerFile: string, outDir: string, o: { reserved: number; bosId: number; T: number }): ChatTokenizerIds {
  const json = JSON.parse(fs.readFileSync(bpeTokenizerFile, 'utf8')) as { added_tokens: Array<{ id: number; content: string }>; model: { vocab: Record<string, number> } };
  const free = Array.from({ length: o.reserved }, (_, i) => o.reserved - 1 - i).filter((i) => i !== o.bosId);
  if (free.length < 2) throw new ConfigError('lang.reserved', `needs two reserved ids besides the BOS (lang.old_token_id=${o.bosId}) for the chat turn markers`);
  const [imEndId, imStartId] = [free[0]!, free[1]!];
  for (const [id, name] of [[imStartId, IM_START], [imEndId, IM_END]] as const) {
    const old = reservedToken(id);
    const added = json.added_tokens.find((t) => t.id === id);
    if (!added || added.content !== old || json.model.vocab[old] !== id) throw new DataError(`${bpeTokenizerFile}: id ${id} is not the reserved token ${old}`);
    added.content = name;
    delete json.model.vocab[old];
    json.model.vocab[name] = id;
  }
  const endOfTextId = json.model.vocab[EOS_TOKEN];
  if (endOfTextId === undefined) throw new DataError(`${bpeTokenizerFile}: has no ${EOS_TOKEN}`);
  fs.mkdirSync(outDir, { recursive: true });
  writeFileAtomic(path.join(outDir, 'tokenizer.json'), JSON.stringify(json));
  writeJsonAtomic(path.join(outDir, 'tokenizer_config.json'), {
    tokenizer_class: 'PreTrainedTokenizerFast',
    bos_token: reservedToken(o.bosId),
    eos_token: IM_END,
    pad_token: EOS_TOKEN,
    model_max_length: o.T,
    clean_up_tokenization_spaces: false,
    chat_template: CHATML_TEMPLATE,
  });
  return { bosId: o.bosId, eosId: imEndId, imStartId, imEndId, endOfTextId };
}
