/**
 * The study's transformer ("gpt", docs/contract.md §1) as options of the one Transformer: pre-norm blocks, RMSNorm
 * without gain, q/k RMSNorm + RoPE, causal softmax attention, GELU-tanh MLP, untied input/output embeddings, no
 * biases; and its checkpoint layout.
 *
 * The memory layout differs from the checkpoint layout only for qkv (docs/contract.md §6): the checkpoint
 * stores [L, 3, N, D, H]; in memory each layer's qkv is one [D, 3·N·H] matrix (columns ordered q heads,
 * k heads, v heads), so the projection is a single GEMM. gptToSpec()/gptFromSpec() convert.
 */
import { ConfigError } from '../errors.js';
import { Rng } from '../util/rng.js';
import { gptArch, type ArchConfig } from './arch.js';
import { Transformer } from './transformer.js';

export interface GPTConfig {
  D: number;
  L: number;
  H: number;
  T: number;
  V: number;
}

export interface SpecTensor {
  shape: number[];
  data: Float32Array;
}

export function validateGPTConfig(c: GPTConfig, prefix = 'model'): void {
  for (const k of ['D', 'L', 'H', 'T', 'V'] as const) {
    if (!Number.isInteger(c[k]) || c[k] <= 0) throw new ConfigError(`${prefix}.${k}`, `must be a positive integer, got ${c[k]}`);
  }
  if (c.D % c.H !== 0) throw new ConfigError(`${prefix}.H`, `head size ${c.H} must divide D=${c.D}`);
  if (c.H % 2 !== 0) throw new ConfigError(`${prefix}.H`, `head size ${c.H} must be even (RoPE rotates halves)`);
}

export function paramCounts(c: GPTConfig): { n_param_nonembed: number; n_param_embed: number } {
  return { n_param_nonembed: 12 * c.L * c.D * c.D, n_param_embed: c.D * c.V };
}

/** The checkpoint's tensors: each one's name and shape there, and the Transformer parameter it is (the shapes differ
 *  only for qkv). */
function tensorTable(c: GPTConfig): Array<{ name: string; spec: number[]; param: string }> {
  const { D, L, H, V } = c;
  const N = D / H, F = 4 * D;
  return [
    { name: 'embed_in', spec: [V, D], param: 'embed' },
    { name: 'embed_out', spec: [V, D], param: 'head' },
    { name: 'qkv', spec: [L, 3, N, D, H], param: 'qkv' },
    { name: 'out', spec: [L, N, H, D], param: 'o' },
    { name: 'up', spec: [L, D, F], param: 'up' },
    { name: 'down', spec: [L, F, D], param: 'down' },
  ];
}

/** Shapes of the checkpoint tensors (docs/contract.md §6). */
export function specShapes(c: GPTConfig): Record<string, number[]> {
  return Object.fromEntries(tensorTable(c).map((t) => [t.name, t.spec]));
}

/** The GPTConfig of a gpt's options. */
export function gptConfigOf(a: ArchConfig): GPTConfig {
  const { D, L, H, T, V } = a;
  return { D, L, H, T, V };
}

/** A gpt with zero weights. */
export function newGPT(cfg: GPTConfig): Transformer {
  validateGPTConfig(cfg);
  return new Transformer(gptArch(cfg));
}

/** The initialisation of docs/contract.md §1: N(0,1)·D^-1/2 everywhere except down, N(0,1)·F^-1/2. */
export function initGPT(cfg: GPTConfig, seed: number): Transformer {
  const m = newGPT(cfg);
  const rng = new Rng(seed);
  const sd = 1 / Math.sqrt(cfg.D);
  for (const name of ['embed', 'head', 'qkv', 'o', 'up'])
    rng.fillNormal(m.params.view(name), sd);
  rng.fillNormal(m.params.view('down'), 1 / Math.sqrt(m.cfg.F));
  return m;
}

/** A gpt's tensors in the checkpoint layout (copies). */
export function gptToSpec(m: Transformer): Record<string, SpecTensor> {
  const cfg = gptConfigOf(m.cfg);
  const out: Record<string, SpecTensor> = {};
  for (const t of tensorTable(cfg)) {
    const mem = m.params.view(t.param);
    out[t.name] = { shape: t.spec, data: t.name === 'qkv' ? qkvLayout(cfg, mem, 'toSpec') : mem.slice() };
  }
  return out;
}

/** A gpt from checkpoint-layout tensors (shapes must already be validated). */
export function gptFromSpec(cfg: GPTConfig, tensors: Record<string, Float32Array>): Transformer {
  const m = newGPT(cfg);
  for (const t of tensorTable(cfg)) {
    const src = tensors[t.name]!;
    m.params.view(t.param).set(t.name === 'qkv' ? qkvLayout(cfg, src, 'fromSpec') : src);
  }
  return m;
}

/** The gpt constructors under one name, as call sites read them: GPT.init(cfg, seed), GPT.fromSpec(cfg, tensors). */
export const GPT = { init: initGPT, fromSpec: gptFromSpec };
export type GPT = Transformer;

/** qkv between the memory layout [L, D, 3, N, H] and the checkpoint's [L, 3, N, D, H], moving H-long rows. */
function qkvLayout(cfg: GPTConfig, src: Float32Array, dir: 'toSpec' | 'fromSpec'): Float32Array {
  const { D, L, H } = cfg;
  const N = D / H;
  const dst = new Float32Array(src.length);
  for (let l = 0; l < L; l++)
    for (let d = 0; d < D; d++)
      for (let j = 0; j < 3; j++)
        for (let n = 0; n < N; n++) {
          const mem = (((l * D + d) * 3 + j) * N + n) * H;
          const spec = (((l * 3 + j) * N + n) * D + d) * H;
          const [from, to] = dir === 'toSpec' ? [mem, spec] : [spec, mem];
          dst.set(src.subarray(from, from + H), to);
        }
  return dst;
}
