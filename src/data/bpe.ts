/**
 * Byte-level BPE training (GPT-2 style), written out as a Hugging Face `tokenizer.json`.
 *
 * The `tokenizers` npm binding (0.23) can load and run such a tokenizer but cannot configure a
 * trainer (its `Tokenizer.train` uses the model's default trainer: 30 000 tokens, no special tokens),
 * so training is done here and only the result is handed to Hugging Face's format.
 *
 * Vocabulary layout, N = vocabSize, R = reserved:
 *   0 … R−1        `<|reserved_0|>` … : reserved ids (dataset token ids live here), special tokens
 *   R              `<|endoftext|>`: end of document (EOS), special token
 *   R+1 … R+256    the 256 byte symbols, in byte order (GPT-2's byte→unicode characters)
 *   R+257 … N−1    tokens learned by merges, in the order they were learned
 *
 * Training: the text is split by the same regex as Hugging Face's ByteLevel pre-tokenizer; distinct
 * pieces ("words") are counted; each word becomes its UTF-8 bytes; then the most frequent adjacent
 * pair (weighted by word count; ties → smaller pair of ids) is merged, repeatedly, until the
 * vocabulary has N entries. Pair counts are kept up to date incrementally: a merge only touches the
 * words that contain the pair (an index from pair to words), and a max-heap with lazy deletion finds
 * the next best pair. Total work is bounded by the number of symbols in the distinct words, not by
 * the size of the text.
 */
import { DataError } from '../errors.js';

export const EOS_TOKEN = '<|endoftext|>';
export const reservedToken = (i: number): string => `<|reserved_${i}|>`;
export const RESERVED_PATTERN = /^<\|reserved_(\d+)\|>$/;

/** Token files are uint16, so ids must be < 65536. */
export const MAX_VOCAB_SIZE = 65536;

/** GPT-2's bytes_to_unicode: printable bytes map to themselves, the others to U+0100 onwards. */
export const BYTE_TO_CHAR: readonly string[] = (() => {
  const table: string[] = new Array(256);
  let n = 0;
  for (let b = 0; b < 256; b++) {
    const printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
    table[b] = String.fromCharCode(printable ? b : 256 + n++);
  }
  return table;
})();

/** Hugging Face ByteLevel pre-tokenizer regex (use_regex: true), as a JS regex. */
const PRETOKENIZE = /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+/gu;

export interface BpeLayout {
  vocabSize: number;
  reserved: number;
}

/** Throws DataError unless vocabSize/reserved allow the layout above. */
export function checkLayout({ vocabSize, reserved }: BpeLayout): void {
  if (!Number.isSafeInteger(reserved) || reserved < 0) throw new DataError(`--reserved: expected an integer ≥ 0, got ${reserved}`);
  const min = reserved + 1 + 256;
  if (!Number.isSafeInteger(vocabSize) || vocabSize < min) {
    throw new DataError(`--vocab-size ${vocabSize} is too small: ${reserved} reserved ids + EOS + 256 byte symbols need at least ${min}`);
  }
  if (vocabSize > MAX_VOCAB_SIZE) throw new DataError(`--vocab-size ${vocabSize} is too large: token files hold uint16 ids, so at most ${MAX_VOCAB_SIZE}`);
}

/** Counts pre-tokenized words; special-token strings in the text are skipped, as the tokenizer would. */
export class WordCounter {
  readonly counts = new Map<string, number>();
  textChars = 0;

  add(text: string): void {
    this.textChars += text.length;
    if (text.includes('<|')) {
      for (const part of text.split(/<\|(?:endoftext|reserved_\d+)\|>/)) this.addPlain(part);
    } else this.addPlain(text);
  }

  private addPlain(text: string): void {
    const counts = this.counts;
    PRETOKENIZE.lastIndex = 0;
    for (let m = PRETOKENIZE.exec(text); m !== null; m = PRETOKENIZE.exec(text)) {
      const w = m[0];
      counts.set(w, (counts.get(w) ?? 0) + 1);
    }
  }
}

/** Max-heap of (count, pair key); ties go to the smaller key. Stale entries are checked by the caller. */
class PairHeap {
  private counts: number[] = [];
  private keys: number[] = [];

  get size(): number {
    return this.keys.length;
  }

  private above(i: number, j: number): boolean {
    const ci = this.counts[i]!, cj = this.counts[j]!;
    return ci > cj || (ci === cj && this.keys[i]! < this.keys[j]!);
  }

  private swap(i: number, j: number): void {
    const c = this.counts[i]!, k = this.keys[i]!;
    this.counts[i] = this.counts[j]!;
    this.keys[i] = this.keys[j]!;
    this.counts[j] = c;
    this.keys[j] = k;
  }

  push(count: number, key: number): void {
    this.counts.push(count);
    this.keys.push(key);
    let i = this.keys.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!this.above(i, p)) break;
      this.swap(i, p);
      i = p;
    }
  }

  /** Removes the top; returns [count, key]. */
  pop(): [number, number] {
    const top: [number, number] = [this.counts[0]!, this.keys[0]!];
    const lastC = this.counts.pop()!, lastK = this.keys.pop()!;
    const n = this.keys.length;
    if (n > 0) {
      this.counts[0] = lastC;
      this.keys[0] = lastK;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1, r = l + 1;
        let m = i;
        if (l < n && this.above(l, m)) m = l;
        if (r < n && this.above(r, m)) m = r;
        if (m === i) break;
        this.swap(i, m);
        i = m;
      }
    }
    return top;
  }
}

export interface BpeModel {
  /** Token strings (byte-level characters) by id, length vocabSize; ids < reserved+1 are the special tokens. */
  vocab: string[];
  /** Merges in order of learning, as pairs of token strings. */
  merges: [string, string][];
  reserved: number;
  eosId: number;
  /** Distinct words and their total count, for the report. */
  distinctWords: number;
  totalWords: number;
}

/**
 * Learns merges until the vocabulary holds `vocabSize` tokens. Internal symbol ids: 0…255 are bytes,
 * 256+ are learned tokens; the final id of internal id s is reserved + 1 + s.
 */
export function trainBpe(counts: ReadonlyMap<string, number>, layout: BpeLayout, onMerge?: (done: number, total: number) => void): BpeModel {
  checkLayout(layout);
  const { vocabSize, reserved } = layout;
  const target = vocabSize - reserved - 1 - 256;

  // Words as arrays of internal symbol ids.
  const nWords = counts.size;
  const wordSyms: Int32Array[] = new Array(nWords);
  const wordLen = new Int32Array(nWords);
  const wordCount = new Float64Array(nWords);
  let totalWords = 0;
  {
    let w = 0;
    for (const [word, c] of counts) {
      const bytes = Buffer.from(word, 'utf8');
      const syms = new Int32Array(bytes.length);
      for (let i = 0; i < bytes.length; i++) syms[i] = bytes[i]!;
      wordSyms[w] = syms;
      wordLen[w] = bytes.length;
      wordCount[w] = c;
      totalWords += c;
      w++;
    }
  }

  // Pair key = a · 65536 + b (ids < 65536).
  const pairCount = new Map<number, number>();
  const pairWords = new Map<number, number[]>();
  for (let w = 0; w < nWords; w++) {
    const s = wordSyms[w]!, c = wordCount[w]!;
    for (let i = 0; i + 1 < wordLen[w]!; i++) {
      const key = s[i]! * 65536 + s[i + 1]!;
      pairCount.set(key, (pairCount.get(key) ?? 0) + c);
      const list = pairWords.get(key);
      if (list === undefined) pairWords.set(key, [w]);
      else if (list[list.length - 1] !== w) list.push(w);
    }
  }
  const heap = new PairHeap();
  for (const [key, c] of pairCount) heap.push(c, key);

  const tokens: string[] = BYTE_TO_CHAR.slice();
  const tokenIds = new Map<string, number>(tokens.map((t, i) => [t, i]));
  const merges: [string, string][] = [];
  const merged = new Set<number>();
  const seen = new Int32Array(nWords).fill(-1);
  let learned = 0;

  while (learned < target) {
    if (heap.size === 0) {
      throw new DataError(
        `the input has too little text for --vocab-size ${vocabSize}: BPE ran out of pairs to merge after ${learned} new tokens ` +
          `(vocabulary ${reserved + 1 + 256 + learned}); give more text or a --vocab-size ≤ ${reserved + 1 + 256 + learned}`,
      );
    }
    const [cnt, key] = heap.pop();
    const current = pairCount.get(key) ?? 0;
    if (current !== cnt) {
      if (current > 0) heap.push(current, key);
      continue;
    }
    // A pair can reappear when a later merge rebuilt one of its tokens by another route; one merge per pair.
    if (merged.has(key)) continue;
    merged.add(key);
    const a = Math.floor(key / 65536), b = key % 65536;
    const str = tokens[a]! + tokens[b]!;
    let c = tokenIds.get(str);
    if (c === undefined) {
      c = tokens.length;
      tokens.push(str);
      tokenIds.set(str, c);
      learned++;
    }
    merges.push([tokens[a]!, tokens[b]!]);

    const touched = new Set<number>();
    const words = pairWords.get(key) ?? [];
    pairWords.delete(key);
    const stamp = merges.length;
    for (const w of words) {
      if (seen[w] === stamp) continue;
      seen[w] = stamp;
      const s = wordSyms[w]!, len = wordLen[w]!, wc = wordCount[w]!;
      let found = false;
      for (let i = 0; i + 1 < len; i++) if (s[i] === a && s[i + 1] === b) { found = true; break; }
      if (!found) continue; // stale index entry
      // Old pairs out, merged word's pairs in (unchanged pairs cancel out).
      for (let i = 0; i + 1 < len; i++) {
        const k = s[i]! * 65536 + s[i + 1]!;
        const v = pairCount.get(k)! - wc;
        if (v > 0) pairCount.set(k, v);
        else pairCount.delete(k);
      }
      let j = 0;
      for (let i = 0; i < len; i++) {
        if (i + 1 < len && s[i] === a && s[i + 1] === b) {
          s[j++] = c;
          i++;
        } else s[j++] = s[i]!;
      }
      wordLen[w] = j;
      for (let i = 0; i + 1 < j; i++) {
        const k = s[i]! * 65536 + s[i + 1]!;
        pairCount.set(k, (pairCount.get(k) ?? 0) + wc);
        if (s[i] === c || s[i + 1] === c) {
          touched.add(k);
          const list = pairWords.get(k);
          if (list === undefined) pairWords.set(k, [w]);
          else if (list[list.length - 1] !== w) list.push(w);
        }
      }
    }
    for (const k of touched) {
      const v = pairCount.get(k);
      if (v !== undefined && !merged.has(k)) heap.push(v, k);
    }
    onMerge?.(learned, target);
  }

  const specials = [...Array.from({ length: reserved }, (_, i) => reservedToken(i)), EOS_TOKEN];
  const vocab = [...specials, ...tokens];
  const unique = new Set(vocab);
  if (unique.size !== vocab.length) throw new Error('BPE vocabulary has duplicate token strings (a special token collides with a learned one)');
  return { vocab, merges, reserved, eosId: reserved, distinctWords: nWords, totalWords };
}

/** The Hugging Face `tokenizer.json` object for a trained model. */
export function tokenizerJson(model: BpeModel): Record<string, unknown> {
  const vocab: Record<string, number> = {};
  model.vocab.forEach((t, i) => (vocab[t] = i));
  const added = model.vocab.slice(0, model.reserved + 1).map((content, id) => ({
    id,
    content,
    single_word: false,
    lstrip: false,
    rstrip: false,
    normalized: false,
    special: true,
  }));
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: added,
    normalizer: null,
    pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
    post_processor: null,
    decoder: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: false,
      vocab,
      // "a b" strings: byte-level symbols never contain a space, and every tokenizers version reads this form.
      merges: model.merges.map(([a, b]) => `${a} ${b}`),
    },
  };
}
