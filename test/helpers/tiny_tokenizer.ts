/**
 * A tiny Hugging Face tokenizer written by hand: byte-level BPE with no merges, so every UTF-8 byte of a text is one
 * token and the expected ids of any text are computable here without the tokenizer (`tinyTokenIds`). Five special
 * tokens come first; the folder's config.json (test/helpers/hf_folder.ts) names bos 1 and eos 2, as here.
 */
import fs from 'node:fs';
import path from 'node:path';

export const TINY_SPECIALS = ['<|pad|>', '<|bos|>', '<|eos|>', '<|user|>', '<|assistant|>'] as const;
export const TINY_PAD = 0, TINY_BOS = 1, TINY_EOS = 2, TINY_USER = 3, TINY_ASSISTANT = 4;
/** 5 special tokens + 256 bytes. */
export const TINY_VOCAB = TINY_SPECIALS.length + 256;

/** A ChatML-like template over the tiny specials: each turn `<|role|>content<|eos|>`, BOS written by the template. */
export const TINY_CHAT_TEMPLATE =
  "{{ bos_token }}{% for m in messages %}<|{{ m.role }}|>{{ m.content }}<|eos|>{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}";

/** GPT-2's byte → printable character map, which the ByteLevel pre-tokenizer and decoder use. */
function byteChars(): string[] {
  const printable: number[] = [];
  for (let b = 33; b <= 126; b++) printable.push(b);
  for (let b = 161; b <= 172; b++) printable.push(b);
  for (let b = 174; b <= 255; b++) printable.push(b);
  const out = new Array<string>(256);
  let extra = 0;
  for (let b = 0; b < 256; b++) out[b] = printable.includes(b) ? String.fromCodePoint(b) : String.fromCodePoint(256 + extra++);
  return out;
}

/** The ids the tiny tokenizer gives `text` without special tokens: one per UTF-8 byte. */
export function tinyTokenIds(text: string): number[] {
  return Array.from(Buffer.from(text, 'utf8'), (b) => TINY_SPECIALS.length + b);
}

/**
 * Writes tokenizer.json and tokenizer_config.json into `dir`. `bos: false` gives a tokenizer without a BOS (as
 * Qwen's: bos_token null); `chatTemplate: null` one without a chat template.
 */
export function writeTinyTokenizer(dir: string, opts: { bos?: boolean; chatTemplate?: string | null } = {}): void {
  const chars = byteChars();
  const vocab: Record<string, number> = {};
  TINY_SPECIALS.forEach((t, i) => (vocab[t] = i));
  chars.forEach((c, b) => (vocab[c] = TINY_SPECIALS.length + b));
  const json = {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: TINY_SPECIALS.map((content, id) => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true })),
    normalizer: null,
    pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
    post_processor: null,
    decoder: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
    model: { type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null, fuse_unk: false, byte_fallback: false, ignore_merges: false, vocab, merges: [] },
  };
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'tokenizer.json'), JSON.stringify(json));
  const config: Record<string, unknown> = {
    bos_token: opts.bos === false ? null : '<|bos|>',
    eos_token: '<|eos|>',
    pad_token: '<|pad|>',
  };
  const template = opts.chatTemplate === undefined ? TINY_CHAT_TEMPLATE : opts.chatTemplate;
  if (template !== null) config.chat_template = template;
  fs.writeFileSync(path.join(dir, 'tokenizer_config.json'), JSON.stringify(config));
}
