/**
 * Replay batches for the regularisers of docs/contract.md §2: rows of the previous dataset (real replay) or
 * sequences the frozen reference model π samples itself (self-generated replay).
 */
import type { GPT } from '../model/gpt.js';
import { sample } from '../model/sample.js';
import { Rng } from '../util/rng.js';

export interface ReplaySource {
  /** The next replay batch, [rows, T] token ids. */
  next(): Int32Array;
  readonly rows: number;
  /** Seconds spent producing batches (sampling cost for self-generated replay). */
  seconds: number;
  /** Sequences produced by sampling so far. */
  sampled: number;
}

/** Uniformly random tokens (benchmarks only), position 0 = the dataset token id. */
export class RandomReplay implements ReplaySource {
  seconds = 0;
  sampled = 0;
  constructor(readonly rows: number, private readonly T: number, private readonly V: number, private readonly tokenId: number, private readonly rng: Rng) {}
  next(): Int32Array {
    const out = new Int32Array(this.rows * this.T);
    for (let i = 0; i < out.length; i++) out[i] = i % this.T === 0 ? this.tokenId : this.rng.int(this.V);
    return out;
  }
}

/** Rows of a previous dataset's training split, in a reshuffled order each epoch. */
export class RealReplay implements ReplaySource {
  seconds = 0;
  sampled = 0;
  constructor(
    readonly rows: number,
    private readonly nextBatch: () => Int32Array,
  ) {}
  next(): Int32Array {
    return this.nextBatch();
  }
}

/**
 * Self-generated replay: π samples `buffer × rows` sequences at a time, each prompted with one of
 * `prompts` (cycled in equal shares): a dataset token id, or a prompt of several tokens (a BOS and
 * a text's tokens), all of one length. It samples to the full length T at `temperature`, with no
 * early stop. Batches are consumed in order; a new buffer is drawn when the current one runs out.
 */
export class SynthReplay implements ReplaySource {
  seconds = 0;
  sampled = 0;
  private buf: Int32Array | null = null;
  private pos = 0;
  private readonly prompts: number[][];
  private readonly promptLength: number;
  constructor(
    private readonly pi: GPT,
    readonly rows: number,
    private readonly buffer: number,
    prompts: ReadonlyArray<number | readonly number[]>,
    private readonly temperature: number,
    private readonly rng: Rng,
    /** Sampling restrictions (reg.top_k, reg.top_p), and the rows decoded together (larger batches make the
     *  per-position products efficient). */
    private readonly opts: { topK?: number; topP?: number; decodeBatch?: number } = {},
  ) {
    if (prompts.length === 0) throw new Error('SynthReplay: at least one prompt is needed');
    this.prompts = prompts.map((p) => (typeof p === 'number' ? [p] : [...p]));
    this.promptLength = this.prompts[0]!.length;
    if (this.prompts.some((p) => p.length !== this.promptLength)) throw new Error('SynthReplay: every prompt must have the same number of tokens');
    if (this.promptLength < 1 || this.promptLength > pi.cfg.T) throw new Error(`SynthReplay: a prompt of ${this.promptLength} tokens does not fit T=${pi.cfg.T}`);
  }

  /** Samples a buffer now if none is left (a benchmark samples its replay before timing the steps). */
  prepare(): void {
    if (!this.buf || this.pos >= this.buf.length) this.refill();
  }

  private refill(): void {
    const t0 = performance.now();
    const n = this.rows * this.buffer;
    const P = this.promptLength;
    const prompts = new Int32Array(n * P);
    for (let i = 0; i < n; i++) prompts.set(this.prompts[i % this.prompts.length]!, i * P);
    this.buf = sample(this.pi, {
      prompts,
      promptLength: P,
      length: this.pi.cfg.T,
      temperature: this.temperature,
      topK: this.opts.topK ?? 0,
      topP: this.opts.topP ?? 1,
      rng: this.rng,
      batchSize: this.opts.decodeBatch ?? Math.min(n, 1024),
    });
    this.pos = 0;
    this.sampled += n;
    this.seconds += (performance.now() - t0) / 1000;
  }

  next(): Int32Array {
    const T = this.pi.cfg.T;
    const size = this.rows * T;
    if (!this.buf || this.pos + size > this.buf.length) this.refill();
    const out = this.buf!.subarray(this.pos, this.pos + size);
    this.pos += size;
    return out;
  }
}
