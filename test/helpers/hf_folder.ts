/**
 * Tiny random Hugging Face model folders (Llama, Qwen2, Qwen3) as transformers writes them, and an independent
 * reader of such folders into float64 tensors. Test-side only: nothing here comes from src/, so a folder written
 * here checks the product's loader rather than agreeing with it by construction.
 *
 * Every parameter is random (norm weights around 1, biases non-zero) so that a loader that drops, transposes or
 * swaps any one tensor changes the logits.
 */
import fs from 'node:fs';
import path from 'node:path';
import { Rng } from './ref.js';
import { readSafetensors, writeSafetensors } from './safetensors.js';
import type { StDtype, StInput } from './safetensors.js';

export type TinyFamily = 'llama' | 'qwen2' | 'qwen3';

export interface TinySpec {
  family: TinyFamily;
  /** hidden_size */
  D: number;
  /** num_hidden_layers */
  L: number;
  /** num_attention_heads */
  N: number;
  /** num_key_value_heads */
  Nkv: number;
  /** head_dim */
  H: number;
  /** intermediate_size */
  F: number;
  /** vocab_size */
  V: number;
  maxPositions?: number;
  ropeTheta?: number;
  ropeScaling?: { factor: number; lowFreqFactor: number; highFreqFactor: number; originalMaxPositions: number } | null;
  tied: boolean;
  eps?: number;
  dtype: 'f32' | 'bf16' | 'f16';
  /** 1 (default): model.safetensors; n > 1: model.safetensors.index.json and n shards. */
  shards?: number;
  seed: number;
  /** Tied, but an lm_head.weight (different from the embedding) is written too, which loaders must ignore. */
  redundantLmHead?: boolean;
  /** Standard deviation of the random weights and biases (default 0.1). */
  std?: number;
}

/** The keys of a transformers config.json that the reference reads. */
export interface HFConfigJson {
  model_type: string;
  architectures?: string[];
  hidden_size: number;
  intermediate_size: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  num_key_value_heads?: number;
  head_dim?: number;
  vocab_size: number;
  max_position_embeddings?: number;
  rms_norm_eps: number;
  rope_theta?: number;
  rope_scaling?: {
    rope_type?: string;
    type?: string;
    factor: number;
    low_freq_factor: number;
    high_freq_factor: number;
    original_max_position_embeddings: number;
  } | null;
  tie_word_embeddings?: boolean;
  hidden_act?: string;
  attention_bias?: boolean;
  mlp_bias?: boolean;
  [key: string]: unknown;
}

export interface Tensor64 {
  shape: number[];
  data: Float64Array;
  dtype: StDtype;
}

export interface TinyFolder {
  dir: string;
  config: HFConfigJson;
  tensors: Map<string, Tensor64>;
}

const TORCH_DTYPE = { f32: 'float32', bf16: 'bfloat16', f16: 'float16' } as const;
const ST_DTYPE: Record<TinySpec['dtype'], StDtype> = { f32: 'F32', bf16: 'BF16', f16: 'F16' };

/** config.json as transformers writes it for the spec's model_type. */
export function tinyConfigJson(o: TinySpec): HFConfigJson {
  const theta = o.ropeTheta ?? (o.family === 'llama' ? 10000 : 1000000);
  const eps = o.eps ?? (o.family === 'llama' ? 1e-5 : 1e-6);
  const maxPositions = o.maxPositions ?? 64;
  const ropeScaling = o.ropeScaling
    ? {
        factor: o.ropeScaling.factor,
        high_freq_factor: o.ropeScaling.highFreqFactor,
        low_freq_factor: o.ropeScaling.lowFreqFactor,
        original_max_position_embeddings: o.ropeScaling.originalMaxPositions,
        rope_type: 'llama3',
      }
    : null;
  const common = {
    hidden_size: o.D,
    intermediate_size: o.F,
    num_hidden_layers: o.L,
    num_attention_heads: o.N,
    num_key_value_heads: o.Nkv,
    vocab_size: o.V,
    max_position_embeddings: maxPositions,
    rms_norm_eps: eps,
    rope_theta: theta,
    rope_scaling: ropeScaling,
    tie_word_embeddings: o.tied,
    hidden_act: 'silu',
    initializer_range: 0.02,
    torch_dtype: TORCH_DTYPE[o.dtype],
    use_cache: true,
    transformers_version: '4.51.3',
  };
  const headDim = o.family === 'qwen3' || o.H * o.N !== o.D ? { head_dim: o.H } : {};
  if (o.family === 'llama') {
    return {
      architectures: ['LlamaForCausalLM'], model_type: 'llama', ...common, ...headDim,
      attention_bias: false, attention_dropout: 0.0, mlp_bias: false, pretraining_tp: 1,
      bos_token_id: 1, eos_token_id: 2,
    };
  }
  if (o.family === 'qwen2') {
    return {
      architectures: ['Qwen2ForCausalLM'], model_type: 'qwen2', ...common, ...headDim,
      attention_dropout: 0.0, use_sliding_window: false, sliding_window: maxPositions, max_window_layers: o.L,
      bos_token_id: 1, eos_token_id: 2,
    };
  }
  return {
    architectures: ['Qwen3ForCausalLM'], model_type: 'qwen3', ...common, ...headDim,
    attention_bias: false, attention_dropout: 0.0, use_sliding_window: false, sliding_window: null,
    max_window_layers: o.L, bos_token_id: 1, eos_token_id: 2,
  };
}

/** The checkpoint's tensors in transformers' module order, [out, in] shapes, with their kind of random init. */
export function tinyTensorList(o: TinySpec): Array<{ name: string; shape: number[]; init: 'weight' | 'norm' | 'bias' }> {
  const { D, L, N, Nkv, H, F, V } = o;
  const list: Array<{ name: string; shape: number[]; init: 'weight' | 'norm' | 'bias' }> = [];
  const add = (name: string, shape: number[], init: 'weight' | 'norm' | 'bias') => list.push({ name, shape, init });
  add('model.embed_tokens.weight', [V, D], 'weight');
  for (let l = 0; l < L; l++) {
    const p = `model.layers.${l}.`;
    add(p + 'self_attn.q_proj.weight', [N * H, D], 'weight');
    if (o.family === 'qwen2') add(p + 'self_attn.q_proj.bias', [N * H], 'bias');
    add(p + 'self_attn.k_proj.weight', [Nkv * H, D], 'weight');
    if (o.family === 'qwen2') add(p + 'self_attn.k_proj.bias', [Nkv * H], 'bias');
    add(p + 'self_attn.v_proj.weight', [Nkv * H, D], 'weight');
    if (o.family === 'qwen2') add(p + 'self_attn.v_proj.bias', [Nkv * H], 'bias');
    add(p + 'self_attn.o_proj.weight', [D, N * H], 'weight');
    if (o.family === 'qwen3') {
      add(p + 'self_attn.q_norm.weight', [H], 'norm');
      add(p + 'self_attn.k_norm.weight', [H], 'norm');
    }
    add(p + 'mlp.gate_proj.weight', [F, D], 'weight');
    add(p + 'mlp.up_proj.weight', [F, D], 'weight');
    add(p + 'mlp.down_proj.weight', [D, F], 'weight');
    add(p + 'input_layernorm.weight', [D], 'norm');
    add(p + 'post_attention_layernorm.weight', [D], 'norm');
  }
  add('model.norm.weight', [D], 'norm');
  if (!o.tied || o.redundantLmHead) add('lm_head.weight', [V, D], 'weight');
  return list;
}

function checkSpec(o: TinySpec): void {
  const bad = (what: string) => { throw new Error(`writeTinyHFFolder: ${what}`); };
  for (const k of ['D', 'L', 'N', 'Nkv', 'H', 'F', 'V'] as const) {
    if (!Number.isInteger(o[k]) || o[k] < 1) bad(`${k} = ${o[k]} is not a positive integer`);
  }
  if (o.N % o.Nkv !== 0) bad(`N = ${o.N} is not a multiple of Nkv = ${o.Nkv}`);
  if (o.H % 2 !== 0) bad(`head_dim H = ${o.H} is odd; rotate-half RoPE needs it even`);
  if (o.redundantLmHead && !o.tied) bad('redundantLmHead needs tied embeddings');
}

/**
 * Writes config.json, generation_config.json and the weights of a random model into `dir` (created if needed).
 * Values are drawn as float32 (like torch.randn) and then rounded to the dtype to nearest, ties to even (like
 * tensor.to(torch.bfloat16)), so folders of one seed differ only by that rounding.
 */
export function writeTinyHFFolder(dir: string, o: TinySpec): void {
  checkSpec(o);
  const std = o.std ?? 0.1;
  const rng = new Rng(o.seed);
  const dtype = ST_DTYPE[o.dtype];
  const list = tinyTensorList(o);
  const tensors: StInput = {};
  for (const t of list) {
    const n = t.shape.reduce((a, b) => a * b, 1);
    const data = new Float32Array(n);
    for (let i = 0; i < n; i++) data[i] = t.init === 'norm' ? 1 + 0.2 * rng.normal() : std * rng.normal();
    tensors[t.name] = { shape: t.shape, data, dtype };
  }
  fs.mkdirSync(dir, { recursive: true });
  const config = tinyConfigJson(o);
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(config, null, 2) + '\n');
  fs.writeFileSync(path.join(dir, 'generation_config.json'),
    JSON.stringify({ bos_token_id: 1, eos_token_id: 2, transformers_version: '4.51.3' }, null, 2) + '\n');
  const shards = o.shards ?? 1;
  if (!Number.isInteger(shards) || shards < 1 || shards > list.length) {
    throw new Error(`writeTinyHFFolder: shards = ${shards} must be an integer in [1, ${list.length}] (one tensor per shard at least)`);
  }
  if (shards === 1) {
    writeSafetensors(path.join(dir, 'model.safetensors'), tensors, { format: 'pt' });
    return;
  }
  const pad = (k: number) => String(k).padStart(5, '0');
  const shardName = (s: number) => `model-${pad(s + 1)}-of-${pad(shards)}.safetensors`;
  const weightMap: Record<string, string> = {};
  const groups: StInput[] = Array.from({ length: shards }, () => ({}));
  let totalSize = 0;
  list.forEach((t, k) => {
    const s = Math.floor((k * shards) / list.length);
    groups[s]![t.name] = tensors[t.name]!;
    weightMap[t.name] = shardName(s);
    totalSize += t.shape.reduce((a, b) => a * b, 1) * (dtype === 'F32' ? 4 : 2);
  });
  groups.forEach((g, s) => writeSafetensors(path.join(dir, shardName(s)), g, { format: 'pt' }));
  fs.writeFileSync(path.join(dir, 'model.safetensors.index.json'),
    JSON.stringify({ metadata: { total_size: totalSize }, weight_map: weightMap }, null, 2) + '\n');
}

/** config.json and every tensor of a folder (single file or sharded), in float64, with its stored dtype. */
export function readTinyHFFolder(dir: string): TinyFolder {
  const config = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8')) as HFConfigJson;
  const tensors = new Map<string, Tensor64>();
  const take = (file: string, only?: Set<string>) => {
    for (const [name, t] of readSafetensors(path.join(dir, file)).tensors) {
      if (only && !only.has(name)) throw new Error(`${file}: tensor ${name} is not mapped to this shard by the index`);
      if (tensors.has(name)) throw new Error(`${file}: tensor ${name} is also in another shard`);
      tensors.set(name, { shape: t.shape, data: Float64Array.from(t.data), dtype: t.dtype });
    }
  };
  const indexFile = path.join(dir, 'model.safetensors.index.json');
  if (fs.existsSync(indexFile)) {
    const index = JSON.parse(fs.readFileSync(indexFile, 'utf8')) as { weight_map: Record<string, string> };
    const byShard = new Map<string, Set<string>>();
    for (const [name, file] of Object.entries(index.weight_map)) {
      if (!byShard.has(file)) byShard.set(file, new Set());
      byShard.get(file)!.add(name);
    }
    for (const [file, names] of byShard) take(file, names);
    for (const name of Object.keys(index.weight_map)) {
      if (!tensors.has(name)) throw new Error(`model.safetensors.index.json: ${name} is missing from ${index.weight_map[name]}`);
    }
  } else {
    take('model.safetensors');
  }
  return { dir, config, tensors };
}
