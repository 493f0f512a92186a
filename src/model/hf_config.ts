/**
 * A Hugging Face model folder's config.json (and generation_config.json) ⇄ `ArchConfig`.
 *
 * Defaults follow transformers' own config classes (LlamaConfig, Qwen2Config, Qwen3Config; transformers 4.4x and
 * 5.x agree on them), so that a folder means here what it means to transformers. Anything transformers would
 * compute differently from the model here (biases on o_proj, sliding-window attention, other RoPE scalings) is
 * refused rather than approximated.
 */
import fs from 'node:fs';
import path from 'node:path';
import { ConfigError, DataError } from '../errors.js';
import { HF_CLASSES, HF_FAMILIES, type ArchConfig, type HFFamily, type Llama3Scaling } from './arch.js';
import { readJsonObject } from '../io/json.js';

export interface HFConfigInfo {
  dir: string;
  /** The config.json path. */
  file: string;
  arch: ArchConfig;
  raw: Record<string, unknown>;
  bosId: number | null;
  eosIds: number[];
  /** pad_token_id: transformers zeroes this embedding row at initialisation. */
  padId: number | null;
  torchDtype: string | null;
  initializerRange: number;
  /** generation_config.json, when the folder has one. */
  generation: Record<string, unknown> | null;
}

/** What config.json carries beside the architecture. */
export interface HFConfigExtras {
  bosId?: number | null;
  eosIds?: number[];
  padId?: number | null;
  initializerRange?: number;
  torchDtype?: string;
}

/**
 * Each family's defaults for keys a config.json may leave out, as transformers' config classes set them.
 * num_key_value_heads: LlamaConfig defaults to num_attention_heads, Qwen2Config and Qwen3Config to 32 (their
 * constructor default, replaced by num_attention_heads only when given as null). head_dim: Llama and Qwen2 derive
 * hidden_size / num_attention_heads, Qwen3Config defaults to 128. tie_word_embeddings: all three constructors
 * default to false, overriding PretrainedConfig's true; the real Llama-3.2 / Qwen2.5 / Qwen3 small models set it
 * to true in their config.json.
 */
const FAMILY_DEFAULTS: Record<HFFamily, { kvHeads: number | 'heads'; headDim: number | 'derived'; tied: boolean }> = {
  llama: { kvHeads: 'heads', headDim: 'derived', tied: false },
  qwen2: { kvHeads: 32, headDim: 'derived', tied: false },
  qwen3: { kvHeads: 32, headDim: 128, tied: false },
};
const DEFAULT_ROPE_THETA = 10000;
const DEFAULT_INITIALIZER_RANGE = 0.02;
const DEFAULT_T = 1024;


const show = (v: unknown): string => (v === undefined ? 'nothing' : JSON.stringify(v));

/** Typed access to one JSON object's keys, each failure a DataError naming the file and the key. */
class Keys {
  constructor(readonly file: string, readonly obj: Record<string, unknown>, readonly prefix = '') {}

  fail(key: string, message: string): never {
    throw new DataError(`${this.file}: key '${this.prefix}${key}' ${message}`);
  }

  has(key: string): boolean {
    return this.obj[key] !== undefined && this.obj[key] !== null;
  }

  int(key: string, opts: { min?: number; default?: number } = {}): number {
    const v = this.obj[key];
    if ((v === undefined || v === null) && opts.default !== undefined) return opts.default;
    if (v === undefined) this.fail(key, 'is missing');
    if (typeof v !== 'number' || !Number.isSafeInteger(v)) this.fail(key, `must be an integer, got ${show(v)}`);
    if (opts.min !== undefined && v < opts.min) this.fail(key, `must be at least ${opts.min}, got ${v}`);
    return v;
  }

  positive(key: string, dflt?: number): number {
    const v = this.obj[key];
    if ((v === undefined || v === null) && dflt !== undefined) return dflt;
    if (v === undefined) this.fail(key, 'is missing');
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) this.fail(key, `must be a positive number, got ${show(v)}`);
    return v;
  }

  bool(key: string, dflt: boolean): boolean {
    const v = this.obj[key];
    if (v === undefined || v === null) return dflt;
    if (typeof v !== 'boolean') this.fail(key, `must be true or false, got ${show(v)}`);
    return v;
  }

  string(key: string, dflt: string): string {
    const v = this.obj[key];
    if (v === undefined || v === null) return dflt;
    if (typeof v !== 'string') this.fail(key, `must be a string, got ${show(v)}`);
    return v;
  }

  tokenId(key: string): number | null {
    const v = this.obj[key];
    if (v === undefined || v === null) return null;
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) this.fail(key, `must be a token id (an integer ≥ 0) or null, got ${show(v)}`);
    return v;
  }

  /** eos_token_id: one id, a list of ids, or null. */
  tokenIds(key: string): number[] {
    const v = this.obj[key];
    if (v === undefined || v === null) return [];
    const list = Array.isArray(v) ? v : [v];
    for (const id of list) {
      if (typeof id !== 'number' || !Number.isSafeInteger(id) || id < 0) this.fail(key, `must be a token id or a list of token ids, got ${show(v)}`);
    }
    return list as number[];
  }
}

/**
 * RoPE base and scaling from either spelling: transformers 4's `rope_theta` + `rope_scaling`, or transformers 5's
 * `rope_parameters` ({rope_type, rope_theta, ...}, which takes precedence, as there).
 */
function readRope(k: Keys): { theta: number; scaling: Llama3Scaling | null } {
  let scalingKey = 'rope_scaling';
  let params: unknown = k.obj.rope_scaling;
  let theta = k.positive('rope_theta', DEFAULT_ROPE_THETA);
  if (k.has('rope_parameters')) {
    scalingKey = 'rope_parameters';
    params = k.obj.rope_parameters;
  }
  if (params === undefined || params === null) return { theta, scaling: null };
  if (typeof params !== 'object' || Array.isArray(params)) k.fail(scalingKey, `must be an object or null, got ${show(params)}`);
  const s: Keys = new Keys(k.file, params as Record<string, unknown>, `${scalingKey}.`);
  if (s.has('full_attention') || s.has('sliding_attention')) k.fail(scalingKey, 'per layer type is not supported (only one RoPE for all layers)');
  if (scalingKey === 'rope_parameters') theta = s.positive('rope_theta', theta);
  const typeKey = s.has('rope_type') ? 'rope_type' : 'type';
  const type = s.string(typeKey, 'default');
  if (type === 'default') return { theta, scaling: null };
  if (type !== 'llama3') k.fail(`${scalingKey}.${typeKey}`, `'${type}' is not supported (supported: default, llama3)`);
  const scaling: Llama3Scaling = {
    type: 'llama3',
    factor: s.positive('factor'),
    lowFreqFactor: s.positive('low_freq_factor'),
    highFreqFactor: s.positive('high_freq_factor'),
    originalMaxPositions: s.int('original_max_position_embeddings', { min: 1 }),
  };
  if (scaling.highFreqFactor <= scaling.lowFreqFactor) {
    s.fail('high_freq_factor', `must exceed low_freq_factor (${scaling.lowFreqFactor}), got ${scaling.highFreqFactor}`);
  }
  return { theta, scaling };
}

/** A config.json holding model_type or architectures: a Hugging Face model folder. Never throws. */
export function isHFFolder(dir: string): boolean {
  try {
    const obj = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8')) as unknown;
    return obj !== null && typeof obj === 'object' && !Array.isArray(obj) && ('model_type' in obj || 'architectures' in obj);
  } catch {
    return false;
  }
}

/**
 * The architecture of the Hugging Face model in `dir`. T is `opts.T` when given (at most max_position_embeddings),
 * else min(1024, max_position_embeddings). bos/eos come from config.json, overridden key by key by
 * generation_config.json when the folder has one (what generate() uses).
 */
export function readHFConfig(dir: string, opts: { T?: number | null } = {}): HFConfigInfo {
  return readHFConfigFile(path.join(dir, 'config.json'), opts);
}

/**
 * readHFConfig for a config file of any name (`model.config=FILE.json`, a fresh model of that architecture); the
 * generation_config.json beside it counts only when the file is a folder's config.json.
 */
export function readHFConfigFile(file: string, opts: { T?: number | null } = {}): HFConfigInfo {
  const dir = path.dirname(file);
  const raw = readJsonObject(file, 'config.json');
  const k: Keys = new Keys(file, raw);

  const modelType = raw.model_type;
  if (typeof modelType !== 'string') k.fail('model_type', `must name the model type (supported: ${HF_FAMILIES.join(', ')}), got ${show(modelType)}`);
  const family = HF_FAMILIES.find((f) => HF_CLASSES[f].modelType === modelType);
  if (family === undefined) k.fail('model_type', `'${modelType}' is not supported (supported: ${HF_FAMILIES.join(', ')})`);
  const defaults = FAMILY_DEFAULTS[family];

  const D = k.int('hidden_size', { min: 1 });
  const L = k.int('num_hidden_layers', { min: 1 });
  const N = k.int('num_attention_heads', { min: 1 });
  const Nkv = k.int('num_key_value_heads', { min: 1, default: defaults.kvHeads === 'heads' ? N : defaults.kvHeads });
  const F = k.int('intermediate_size', { min: 1 });
  const V = k.int('vocab_size', { min: 1 });
  const maxPositions = k.int('max_position_embeddings', { min: 1 });
  const normEps = k.positive('rms_norm_eps');
  if (N % Nkv !== 0) k.fail('num_key_value_heads', `(${Nkv}) must divide num_attention_heads (${N})`);
  let H: number;
  if (k.has('head_dim')) H = k.int('head_dim', { min: 1 });
  else if (defaults.headDim === 'derived') {
    if (D % N !== 0) k.fail('num_attention_heads', `(${N}) must divide hidden_size (${D}) when head_dim is not given`);
    H = D / N;
  } else H = defaults.headDim;
  if (H % 2 !== 0) k.fail(k.has('head_dim') ? 'head_dim' : 'hidden_size', `gives an odd head size ${H}; RoPE rotates pairs and needs it even`);

  const act = k.string('hidden_act', 'silu');
  if (act !== 'silu') k.fail('hidden_act', `'${act}' is not supported (only silu)`);
  // Qwen2 has q/k/v biases by construction and no attention_bias key; Llama's and Qwen3's attention_bias would
  // also put a bias on o_proj, which the model here does not have.
  if (family !== 'qwen2' && k.bool('attention_bias', false)) k.fail('attention_bias', 'true is not supported (biases on q/k/v/o projections)');
  if (family === 'llama' && k.bool('mlp_bias', false)) k.fail('mlp_bias', 'true is not supported (biases on the MLP projections)');
  if (family !== 'llama') {
    if (k.bool('use_sliding_window', false)) k.fail('use_sliding_window', 'true is not supported (sliding-window attention)');
    const types = raw.layer_types;
    if (types !== undefined && types !== null) {
      if (!Array.isArray(types)) k.fail('layer_types', `must be a list, got ${show(types)}`);
      const i = types.findIndex((t) => t !== 'full_attention');
      if (i >= 0) k.fail('layer_types', `layer ${i} is ${show(types[i])}; only full_attention is supported`);
    }
  }
  const rope = readRope(k);
  const tiedEmbeddings = k.bool('tie_word_embeddings', defaults.tied);

  let T: number;
  if (opts.T !== undefined && opts.T !== null) {
    if (!Number.isSafeInteger(opts.T) || opts.T < 1) throw new ConfigError('model.T', `must be a positive integer, got ${opts.T}`);
    if (opts.T > maxPositions) throw new ConfigError('model.T', `${opts.T} exceeds max_position_embeddings ${maxPositions} of ${file}`);
    T = opts.T;
  } else T = Math.min(DEFAULT_T, maxPositions);

  const arch: ArchConfig = {
    family, D, L, N, Nkv, H, F, V, T,
    mlp: 'swiglu', normGain: true, normEps,
    qkNorm: family === 'qwen3' ? 'rms_gain' : 'none',
    qkvBias: family === 'qwen2',
    ropeTheta: rope.theta, ropeScaling: rope.scaling, tiedEmbeddings, maxPositions,
  };

  let bosId = k.tokenId('bos_token_id');
  let eosIds = k.tokenIds('eos_token_id');
  const padId = k.tokenId('pad_token_id');
  let generation: Record<string, unknown> | null = null;
  const genFile = path.join(dir, 'generation_config.json');
  if (path.basename(file) === 'config.json' && fs.existsSync(genFile)) {
    generation = readJsonObject(genFile, 'generation_config.json');
    const g = new Keys(genFile, generation);
    if ('bos_token_id' in generation) bosId = g.tokenId('bos_token_id');
    if ('eos_token_id' in generation) eosIds = g.tokenIds('eos_token_id');
  }
  const dtypeKey = k.has('torch_dtype') ? 'torch_dtype' : 'dtype';
  const torchDtype = k.has(dtypeKey) ? k.string(dtypeKey, '') : null;
  const initializerRange = k.has('initializer_range') ? k.positive('initializer_range') : DEFAULT_INITIALIZER_RANGE;
  return { dir, file, arch, raw, bosId, eosIds, padId, torchDtype, initializerRange, generation };
}

/**
 * The config.json from which transformers (4.4x and 5.x) builds exactly `arch`: every key the family's config
 * class reads, none left to a default, in the transformers-4 spelling (`rope_theta`, `rope_scaling`) that both
 * versions read. Weights written here are float32, hence torch_dtype "float32" unless told otherwise.
 */
export function hfConfigJson(arch: ArchConfig, extras: HFConfigExtras = {}): Record<string, unknown> {
  if (arch.family === 'gpt') throw new Error('hfConfigJson: the gpt architecture has no Hugging Face config');
  const family = arch.family;
  const expectQkNorm = family === 'qwen3' ? 'rms_gain' : 'none';
  if (arch.mlp !== 'swiglu' || !arch.normGain || arch.qkNorm !== expectQkNorm || arch.qkvBias !== (family === 'qwen2')) {
    throw new Error(`hfConfigJson: this ${family} architecture (mlp ${arch.mlp}, qkNorm ${arch.qkNorm}, qkvBias ${arch.qkvBias}) is not one transformers' ${HF_CLASSES[family].architecture} builds`);
  }
  if (arch.maxPositions === null) throw new Error('hfConfigJson: a Hugging Face model needs maxPositions');
  const eos = extras.eosIds ?? [];
  const s = arch.ropeScaling;
  const cfg: Record<string, unknown> = {
    architectures: [HF_CLASSES[family].architecture],
    model_type: HF_CLASSES[family].modelType,
    vocab_size: arch.V,
    hidden_size: arch.D,
    intermediate_size: arch.F,
    num_hidden_layers: arch.L,
    num_attention_heads: arch.N,
    num_key_value_heads: arch.Nkv,
    head_dim: arch.H,
    hidden_act: 'silu',
    max_position_embeddings: arch.maxPositions,
    initializer_range: extras.initializerRange ?? DEFAULT_INITIALIZER_RANGE,
    rms_norm_eps: arch.normEps,
    rope_theta: arch.ropeTheta,
    rope_scaling: s === null ? null : {
      rope_type: 'llama3',
      factor: s.factor,
      low_freq_factor: s.lowFreqFactor,
      high_freq_factor: s.highFreqFactor,
      original_max_position_embeddings: s.originalMaxPositions,
    },
    tie_word_embeddings: arch.tiedEmbeddings,
    attention_dropout: 0,
    use_cache: true,
    bos_token_id: extras.bosId ?? null,
    eos_token_id: eos.length === 0 ? null : eos.length === 1 ? eos[0] : [...eos],
    pad_token_id: extras.padId ?? null,
    torch_dtype: extras.torchDtype ?? 'float32',
  };
  if (family === 'llama') Object.assign(cfg, { attention_bias: false, mlp_bias: false, pretraining_tp: 1 });
  else {
    Object.assign(cfg, { use_sliding_window: false, sliding_window: null, max_window_layers: arch.L });
    if (family === 'qwen3') cfg.attention_bias = false;
  }
  return cfg;
}
