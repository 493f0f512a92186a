/**
 * A Hugging Face model's tokenizer as the model folder ships it: `tokenizer.json` (the `tokenizers`
 * binding) plus `tokenizer_config.json` (special tokens, chat template), and the chat template
 * rendered with `@huggingface/jinja`, so that conversations become exactly the text the model was
 * instruction-tuned on.
 */
import fs from 'node:fs';
import path from 'node:path';
import { Environment, Interpreter, Template } from '@huggingface/jinja';
import { Tokenizer } from 'tokenizers';
import { DataError, fileError } from '../errors.js';
import { readJsonObject } from '../io/json.js';

export interface ChatMessage {
  role: string;
  content: string;
}

export interface ModelTokenizer {
  /** The tokenizer.json it was loaded from. */
  file: string;
  /** The tokenizer_config.json beside it (whether or not it exists), named in errors about templates. */
  configFile: string;
  /** Largest id + 1, added tokens included. */
  vocabSize: number;
  bosId: number | null;
  eosId: number | null;
  bosToken: string | null;
  eosToken: string | null;
  padId: number | null;
  chatTemplate: string | null;
  tokenId(token: string): number | null;
  /**
   * `addSpecialTokens` defaults to false: text rendered from a chat template already holds its BOS
   * (Llama 3 writes `<|begin_of_text|>` itself), and a post-processor that adds one would double it.
   */
  encode(text: string, opts?: { addSpecialTokens?: boolean }): Promise<number[]>;
  /** Ids and each token's [start, end) in UTF-16 code units of `text` (no special tokens added). */
  encodeWithOffsets(text: string): Promise<{ ids: number[]; offsets: Array<[number, number]> }>;
  /** Whether `id` is a special added token (`<|eot_id|>`, `<|im_end|>`, ...). */
  isSpecial(id: number): boolean;
  decode(ids: number[], opts?: { skipSpecialTokens?: boolean }): Promise<string>;
  /** The chat template's text for `messages`; `now` fixes the date that `strftime_now` reports. */
  renderChat(messages: ChatMessage[], opts: { addGenerationPrompt: boolean; now?: Date }): string;
}

/** `dir` may be the model folder or its tokenizer.json; returns [tokenizer.json, tokenizer_config.json]. */
function tokenizerFiles(dir: string): [string, string] {
  const isJson = dir.endsWith('.json') && fs.existsSync(dir) && fs.statSync(dir).isFile();
  const folder = isJson ? path.dirname(dir) : dir;
  return [isJson ? dir : path.join(folder, 'tokenizer.json'), path.join(folder, 'tokenizer_config.json')];
}


/** A special token's text: transformers writes a string, an AddedToken object `{content, ...}`, or null. */
function tokenText(v: unknown, key: string, file: string): string | null {
  if (v === undefined || v === null) return null;
  if (typeof v === 'string') return v;
  if (typeof v === 'object' && !Array.isArray(v) && typeof (v as { content?: unknown }).content === 'string') {
    return (v as { content: string }).content;
  }
  throw new DataError(`${file}: ${key} must be a string, an object with 'content', or null`);
}

/** The template named "default" when transformers saved several; a separate chat_template.jinja also counts. */
function chatTemplateOf(config: Record<string, unknown>, configFile: string): string | null {
  const t = config.chat_template;
  if (typeof t === 'string') return t;
  if (Array.isArray(t)) {
    const named = t.find((x) => x && typeof x === 'object' && (x as { name?: unknown }).name === 'default');
    if (!named || typeof (named as { template?: unknown }).template !== 'string') {
      throw new DataError(`${configFile}: chat_template is a list of named templates without a 'default' one`);
    }
    return (named as { template: string }).template;
  }
  if (t !== undefined && t !== null) throw new DataError(`${configFile}: chat_template must be a string or a list of {name, template}`);
  const jinja = path.join(path.dirname(configFile), 'chat_template.jinja');
  return fs.existsSync(jinja) ? fs.readFileSync(jinja, 'utf8') : null;
}

const MONTHS = ['January', 'February', 'March', 'April', 'May', 'June', 'July', 'August', 'September', 'October', 'November', 'December'];
const DAYS = ['Sunday', 'Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday', 'Saturday'];

/** Python's strftime for the directives chat templates use (local time, as transformers' strftime_now). */
export function strftime(date: Date, format: string): string {
  const pad = (n: number, w = 2) => String(n).padStart(w, '0');
  return format.replace(/%(-?)([a-zA-Z%])/g, (whole, noPad: string, c: string) => {
    const p = (n: number, w = 2) => (noPad ? String(n) : pad(n, w));
    switch (c) {
      case 'd': return p(date.getDate());
      case 'm': return p(date.getMonth() + 1);
      case 'Y': return String(date.getFullYear());
      case 'y': return pad(date.getFullYear() % 100);
      case 'b': return MONTHS[date.getMonth()]!.slice(0, 3);
      case 'B': return MONTHS[date.getMonth()]!;
      case 'a': return DAYS[date.getDay()]!.slice(0, 3);
      case 'A': return DAYS[date.getDay()]!;
      case 'H': return p(date.getHours());
      case 'I': return p(((date.getHours() + 11) % 12) + 1);
      case 'p': return date.getHours() < 12 ? 'AM' : 'PM';
      case 'M': return p(date.getMinutes());
      case 'S': return p(date.getSeconds());
      case 'j': {
        const start = new Date(date.getFullYear(), 0, 1);
        return p(Math.round((new Date(date.getFullYear(), date.getMonth(), date.getDate()).getTime() - start.getTime()) / 86400000) + 1, 3);
      }
      case '%': return '%';
      default: return whole;
    }
  });
}

function range(start: number, stop?: number, step = 1): number[] {
  if (stop === undefined) [start, stop] = [0, start];
  if (step === 0) throw new Error('range() step must not be zero');
  const out: number[] = [];
  for (let i = start; step > 0 ? i < stop : i > stop; i += step) out.push(i);
  return out;
}

/**
 * Renders a parsed template. The library's `Template.render` declares its own `strftime_now` (the
 * real clock) and `raise_exception`, which cannot then be replaced, so the globals are set up here.
 */
function renderTemplate(template: Template, vars: Record<string, unknown>, now: Date | undefined, configFile: string): string {
  const env = new Environment();
  for (const [k, v] of [['false', false], ['true', true], ['none', null], ['False', false], ['True', true], ['None', null]] as const) env.set(k, v);
  env.set('range', range);
  env.set('strftime_now', (format: string) => strftime(now ?? new Date(), format));
  env.set('raise_exception', (message: string) => {
    throw new DataError(`${configFile}: the chat template refused the conversation: ${message}`);
  });
  for (const [k, v] of Object.entries(vars)) env.set(k, v);
  try {
    return new Interpreter(env).run(template.parsed).value as string;
  } catch (e) {
    if (e instanceof DataError) throw e;
    throw new DataError(`${configFile}: rendering chat_template failed (${String((e as Error).message ?? e).split('\n')[0]})`);
  }
}

/** Offsets from the binding count Unicode code points; JavaScript strings index UTF-16 code units. */
function codePointToUnitIndex(text: string): Int32Array {
  const map = new Int32Array(text.length + 1);
  let cp = 0;
  for (let u = 0; u < text.length; u++) {
    const c = text.charCodeAt(u);
    map[cp++] = u;
    if (c >= 0xd800 && c < 0xdc00 && u + 1 < text.length) {
      const d = text.charCodeAt(u + 1);
      if (d >= 0xdc00 && d < 0xe000) u++;
    }
  }
  map[cp] = text.length;
  return map.subarray(0, cp + 1);
}

/** The tokenizer of a model folder (or of a tokenizer.json path); null when there is no tokenizer.json. */
export function loadModelTokenizer(dir: string): ModelTokenizer | null {
  const [file, configFile] = tokenizerFiles(dir);
  if (!fs.existsSync(file)) return null;
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw fileError(err, file, 'tokenizer');
  }
  let tok: Tokenizer;
  try {
    tok = Tokenizer.fromString(text);
  } catch (e) {
    throw new DataError(`${file}: not a loadable tokenizer.json (${String((e as Error).message ?? e).split('\n')[0]})`);
  }
  const config = fs.existsSync(configFile) ? readJsonObject(configFile, 'tokenizer config') : {};

  const special = new Set<number>();
  const added = (JSON.parse(text) as { added_tokens?: unknown }).added_tokens;
  if (Array.isArray(added)) {
    for (const t of added as Array<{ id?: unknown; special?: unknown }>) {
      if (t && t.special === true && typeof t.id === 'number') special.add(t.id);
    }
  }
  const ids = Object.values(tok.getVocab(true));
  const vocabSize = ids.length === 0 ? 0 : ids.reduce((a, b) => Math.max(a, b), 0) + 1;
  const tokenId = (token: string): number | null => {
    const id = tok.tokenToId(token);
    return id === null || id === undefined ? null : id;
  };
  const resolve = (key: string): [string | null, number | null] => {
    const text = tokenText(config[key], key, configFile);
    if (text === null) return [null, null];
    const id = tokenId(text);
    if (id === null) throw new DataError(`${configFile}: ${key} ${JSON.stringify(text)} is not a token of ${file}`);
    return [text, id];
  };
  const [bosToken, bosId] = resolve('bos_token');
  const [eosToken, eosId] = resolve('eos_token');
  const [, padId] = resolve('pad_token');
  const chatTemplate = chatTemplateOf(config, configFile);
  let parsed: Template | null = null;

  return {
    file, configFile, vocabSize, bosId, eosId, bosToken, eosToken, padId, chatTemplate, tokenId,
    async encode(text, opts = {}) {
      return (await tok.encode(text, null, { addSpecialTokens: opts.addSpecialTokens ?? false })).getIds();
    },
    async encodeWithOffsets(text) {
      const enc = await tok.encode(text, null, { addSpecialTokens: false });
      const map = codePointToUnitIndex(text);
      const at = (cp: number) => map[Math.min(cp, map.length - 1)]!;
      return { ids: enc.getIds(), offsets: enc.getOffsets().map(([s, e]) => [at(s!), at(e!)] as [number, number]) };
    },
    isSpecial: (id) => special.has(id),
    async decode(ids, opts = {}) {
      return tok.decode(ids, opts.skipSpecialTokens ?? false);
    },
    renderChat(messages, opts) {
      if (chatTemplate === null) throw new DataError(`${configFile}: the tokenizer has no chat_template`);
      if (parsed === null) {
        try {
          parsed = new Template(chatTemplate);
        } catch (e) {
          throw new DataError(`${configFile}: chat_template does not parse (${String((e as Error).message ?? e).split('\n')[0]})`);
        }
      }
      return renderTemplate(parsed, {
        messages: messages.map((m) => ({ ...m })),
        bos_token: bosToken ?? '',
        eos_token: eosToken ?? '',
        add_generation_prompt: opts.addGenerationPrompt,
      }, opts.now, configFile);
    },
  };
}

/** Like loadModelTokenizer, but a missing tokenizer.json is a DataError naming what needed it. */
export function requireModelTokenizer(dir: string, why: string): ModelTokenizer {
  const tok = loadModelTokenizer(dir);
  if (tok === null) throw new DataError(`${tokenizerFiles(dir)[0]}: missing (needed for ${why})`);
  return tok;
}
