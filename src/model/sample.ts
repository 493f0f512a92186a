/**
 * Batched autoregressive sampling with a KV cache. Every row is prompted with the same number of
 * tokens (for replay: one dataset/task token id per row), then extended to `length` tokens.
 * Randomness comes from a seeded Rng, so a sample is reproducible.
 */
import { native } from '../backend/native.js';
import { OperandPacks, packingPays } from '../backend/packing.js';
import { Rng } from '../util/rng.js';
import type { Transformer as GPT, KVCache } from './transformer.js';

export interface SampleOptions {
  /** Prompt ids, [rows, P] row-major; rows = number of sequences to sample. */
  prompts: Int32Array;
  /** Prompt length P (≥ 1). */
  promptLength: number;
  /** Total sequence length to reach (prompt included), ≤ model T. */
  length: number;
  temperature: number;
  /** Restrict to the k most likely tokens (0: no restriction). */
  topK?: number;
  /** Restrict to the most likely tokens covering this probability (1: no restriction). */
  topP?: number;
  /** Rows decoded together (default: all). */
  batchSize?: number;
  rng: Rng;
  /** Called after each batch with the number of rows finished so far. */
  onProgress?: (rowsDone: number) => void;
}

/** Returns the sampled sequences [rows, length] (prompt included). */
export function sample(model: GPT, o: SampleOptions): Int32Array {
  const P = o.promptLength;
  const rows = o.prompts.length / P;
  if (!Number.isInteger(rows) || P < 1) throw new Error('sample: prompts must be [rows, promptLength] with promptLength ≥ 1');
  if (o.length > model.cfg.T) throw new Error(`sample: length ${o.length} exceeds the model's T=${model.cfg.T}`);
  if (o.length < P) throw new Error(`sample: length ${o.length} is shorter than the prompt (${P})`);
  const { V } = model.cfg;
  const out = new Int32Array(rows * o.length);
  const Bmax = Math.max(1, Math.min(o.batchSize ?? rows, rows));
  for (let r0 = 0; r0 < rows; r0 += Bmax) {
    const B = Math.min(Bmax, rows - r0);
    const cache = samplerCache(model, B, o.length);
    const ids = new Int32Array(B);
    const u = new Float64Array(B);
    const logits = new Float32Array(B * V);
    for (let pos = 0; pos < o.length; pos++) {
      if (pos < P) {
        for (let b = 0; b < B; b++) ids[b] = o.prompts[(r0 + b) * P + pos]!;
      } else {
        o.rng.fillUniform(u);
        native().sampleRows(logits, B, V, o.temperature, o.topK ?? 0, u, ids, o.topP ?? 1);
      }
      for (let b = 0; b < B; b++) out[(r0 + b) * o.length + pos] = ids[b]!;
      if (pos + 1 < o.length) model.decode(cache, ids, pos, logits);
    }
    o.onProgress?.(r0 + B);
  }
  return out;
}

/** What a model's sampler keeps between calls: its decoder weight packings, and its last KV cache's storage. */
interface SamplerMemory {
  packs: OperandPacks;
  kv: { B: number; Tmax: number; k: WeakRef<Float32Array[]>; v: WeakRef<Float32Array[]> } | null;
}
const memory = new WeakMap<GPT, SamplerMemory>();

/**
 * A KV cache for sampling B rows of up to Tmax positions, with the decoder's weights packed when that pays on
 * this machine (backend/packing.ts). It reuses the storage of the model's previous sampler cache while that is
 * still alive and large enough (held weakly, so the garbage collector may free it between calls), which spares
 * zeroing and page-faulting a large cache on every call. So only one sampler cache per model may be in use at a
 * time. Stale contents are never read: decoding writes position pos before it reads positions ≤ pos.
 */
export function samplerCache(model: GPT, B: number, Tmax = model.cfg.T): KVCache {
  let mem = memory.get(model);
  if (!mem) memory.set(model, (mem = { packs: new OperandPacks(), kv: null }));
  const packed = packingPays(B) && !model.half ? mem.packs.pack(model.decodeOperands()) : null;
  const kv = mem.kv, k = kv?.k.deref(), v = kv?.v.deref();
  if (kv && k && v && kv.Tmax >= Tmax && kv.B >= B) return { B, Tmax: kv.Tmax, k, v, packed };
  const cache = model.newCache(B, Tmax, packed);
  mem.kv = { B, Tmax, k: new WeakRef(cache.k), v: new WeakRef(cache.v) };
  return cache;
}
