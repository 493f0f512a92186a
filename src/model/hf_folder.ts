/**
 * Hugging Face model folders and PEFT LoRA adapters on disk: weights read straight into one typed array per
 * tensor (a 1B model is gigabytes: never the whole file in one buffer), folders written file by file atomically,
 * transformers' initialisation, and adapters in PEFT's layout (shared/HF.md).
 */
import fs from 'node:fs';
import path from 'node:path';
import { DataError, fileError } from '../errors.js';
import { HOST_LITTLE_ENDIAN, numel, shapeStr } from '../util/shape.js';
import { Rng } from '../util/rng.js';
import { writeFileAtomic, writeJsonAtomic } from '../io/atomic.js';
import { readBytesAt, readSafetensorsLayout, writeSafetensors, type SafetensorsEntry } from '../io/safetensors.js';
import { hfTensorPlaces, type ArchConfig } from './arch.js';
import { hfConfigJson, type HFConfigExtras } from './hf_config.js';

export type HFDtype = 'F32' | 'BF16' | 'F16';

export interface HFTensor {
  dtype: HFDtype;
  shape: number[];
  /** Float32Array, or with `keepHalf` the raw bf16/f16 bits of a tensor stored as BF16/F16. */
  data: Float32Array | Uint16Array;
}

export interface F32Tensor {
  shape: number[];
  data: Float32Array;
}

const WEIGHTS_FILE = 'model.safetensors';
const INDEX_FILE = 'model.safetensors.index.json';
const HF_DTYPES: readonly string[] = ['F32', 'BF16', 'F16'];

/** Tensor name → the file that holds it: the single weights file, or the shards named by the index. */
function weightFiles(dir: string): { lookup: (name: string) => string | undefined; source: string } {
  const single = path.join(dir, WEIGHTS_FILE);
  // transformers looks for the single file first, then the index.
  if (fs.existsSync(single)) return { lookup: () => single, source: single };
  const indexFile = path.join(dir, INDEX_FILE);
  if (!fs.existsSync(indexFile)) {
    throw new DataError(`${single}: not found (nor ${INDEX_FILE} for sharded weights)`);
  }
  let index: unknown;
  try {
    index = JSON.parse(fs.readFileSync(indexFile, 'utf8'));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== undefined) throw fileError(err, indexFile);
    throw new DataError(`${indexFile}: not valid JSON (${(err as Error).message.split('\n')[0]})`);
  }
  const map = (index as { weight_map?: unknown } | null)?.weight_map;
  if (map === null || typeof map !== 'object' || Array.isArray(map)) {
    throw new DataError(`${indexFile}: must hold an object 'weight_map' of tensor name → shard file`);
  }
  for (const [name, shard] of Object.entries(map as Record<string, unknown>)) {
    // A shard is a file beside the index; a path could reach outside the folder.
    if (typeof shard !== 'string' || shard === '' || path.basename(shard) !== shard || shard === '.' || shard === '..') {
      throw new DataError(`${indexFile}: weight_map['${name}'] must be a file name in the same folder, got ${JSON.stringify(shard)}`);
    }
  }
  const weightMap = map as Record<string, string>;
  return {
    lookup: (name) => (Object.hasOwn(weightMap, name) ? path.join(dir, weightMap[name]!) : undefined),
    source: indexFile,
  };
}

function halfIsFinite(dtype: HFDtype, h: number): boolean {
  return dtype === 'BF16' ? (h & 0x7f80) !== 0x7f80 : (h & 0x7c00) !== 0x7c00;
}

/** IEEE half bits → float (exact: every half is a float32). */
function halfToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >>> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24;
  if (exp === 0x1f) return frac === 0 ? sign * Infinity : NaN;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}

/** The index of a flat offset in a shape, for error messages: `[3,17]`. */
function position(flat: number, shape: readonly number[]): string {
  const idx: number[] = [];
  for (let d = shape.length - 1; d >= 0; d--) {
    idx.unshift(flat % shape[d]!);
    flat = Math.floor(flat / shape[d]!);
  }
  return shapeStr(idx);
}

function nonFinite(file: string, name: string, shape: readonly number[], i: number, value: number): DataError {
  return new DataError(`${file}: tensor '${name}' holds ${value} at index ${position(i, shape)} (flat ${i})`);
}

/** One tensor read from an open file straight into its own array, checked to be finite. */
function readTensor(fd: number, file: string, dataStart: number, e: SafetensorsEntry, keepHalf: boolean): HFTensor {
  const dtype = e.dtype as HFDtype;
  const n = numel(e.shape);
  const at = dataStart + e.begin;
  if (dtype === 'F32') {
    const data = new Float32Array(n);
    const bytes = new Uint8Array(data.buffer);
    readBytesAt(fd, file, bytes, at);
    if (!HOST_LITTLE_ENDIAN) {
      const dv = new DataView(data.buffer);
      for (let i = 0; i < n; i++) data[i] = dv.getFloat32(4 * i, true);
    }
    for (let i = 0; i < n; i++) if (!Number.isFinite(data[i]!)) throw nonFinite(file, e.name, e.shape, i, data[i]!);
    return { dtype, shape: e.shape, data };
  }
  const bits = new Uint16Array(n);
  readBytesAt(fd, file, new Uint8Array(bits.buffer), at);
  if (!HOST_LITTLE_ENDIAN) {
    const dv = new DataView(bits.buffer);
    for (let i = 0; i < n; i++) bits[i] = dv.getUint16(2 * i, true);
  }
  for (let i = 0; i < n; i++) {
    if (!halfIsFinite(dtype, bits[i]!)) {
      const v = dtype === 'BF16' ? new Float32Array(new Uint32Array([bits[i]! << 16]).buffer)[0]! : halfToFloat(bits[i]!);
      throw nonFinite(file, e.name, e.shape, i, v);
    }
  }
  if (keepHalf) return { dtype, shape: e.shape, data: bits };
  const data = new Float32Array(n);
  if (dtype === 'BF16') {
    // bf16 is the upper half of a float32: the widening is a shift.
    const wide = new Uint32Array(data.buffer);
    for (let i = 0; i < n; i++) wide[i] = bits[i]! << 16;
  } else {
    for (let i = 0; i < n; i++) data[i] = halfToFloat(bits[i]!);
  }
  return { dtype, shape: e.shape, data };
}

/**
 * Every tensor of `hfTensorPlaces(arch)` from the folder's model.safetensors (or the shards of
 * model.safetensors.index.json), each with exactly its expected shape. Tensors not in the places are not read (a
 * redundant lm_head.weight beside tied embeddings, rotary inv_freq buffers). `keepHalf` keeps BF16/F16 tensors as
 * their raw bits; otherwise everything is widened, exactly, to float32. A NaN or ±inf anywhere is an error.
 */
export function readHFWeights(dir: string, arch: ArchConfig, opts: { keepHalf: boolean }): Map<string, HFTensor> {
  const { lookup, source } = weightFiles(dir);
  const places = hfTensorPlaces(arch);
  const byFile = new Map<string, Array<{ name: string; shape: number[] }>>();
  for (const p of places) {
    const file = lookup(p.name);
    if (file === undefined) throw new DataError(`${source}: tensor '${p.name}' is missing from weight_map (expected shape ${shapeStr(p.shape)})`);
    const list = byFile.get(file) ?? [];
    list.push(p);
    byFile.set(file, list);
  }
  const found = new Map<string, HFTensor>();
  for (const [file, wanted] of byFile) {
    let fd: number;
    try {
      fd = fs.openSync(file, 'r');
    } catch (err) {
      throw fileError(err, file, source === file ? undefined : `shard named by ${INDEX_FILE}`);
    }
    try {
      const layout = readSafetensorsLayout(fd, file);
      const entries = new Map(layout.entries.map((e) => [e.name, e]));
      for (const w of wanted) {
        const e = entries.get(w.name);
        if (e === undefined) throw new DataError(`${file}: tensor '${w.name}' is missing (expected shape ${shapeStr(w.shape)})`);
        if (e.shape.length !== w.shape.length || e.shape.some((d, i) => d !== w.shape[i])) {
          throw new DataError(`${file}: tensor '${w.name}' has shape ${shapeStr(e.shape)}, expected ${shapeStr(w.shape)}`);
        }
        if (!HF_DTYPES.includes(e.dtype)) {
          throw new DataError(`${file}: tensor '${w.name}' has unsupported dtype ${e.dtype} (supported: ${HF_DTYPES.join(', ')})`);
        }
        found.set(w.name, readTensor(fd, file, layout.dataStart, e, opts.keepHalf));
      }
    } finally {
      fs.closeSync(fd);
    }
  }
  // In transformers' order, whatever the shards' order.
  return new Map(places.map((p) => [p.name, found.get(p.name)!]));
}

/** Checks a tensor map holds exactly the expected names and shapes (a caller's mistake must not reach a file). */
function checkTensorSet(file: string, tensors: ReadonlyMap<string, F32Tensor>, expected: Array<{ name: string; shape: number[] }>): void {
  const names = new Set(expected.map((e) => e.name));
  for (const name of tensors.keys()) {
    if (!names.has(name)) throw new DataError(`${file}: tensor '${name}' does not belong to this architecture`);
  }
  for (const e of expected) {
    const t = tensors.get(e.name);
    if (t === undefined) throw new DataError(`${file}: tensor '${e.name}' is missing (expected shape ${shapeStr(e.shape)})`);
    if (t.shape.length !== e.shape.length || t.shape.some((d, i) => d !== e.shape[i])) {
      throw new DataError(`${file}: tensor '${e.name}' has shape ${shapeStr(t.shape)}, expected ${shapeStr(e.shape)}`);
    }
    if (!(t.data instanceof Float32Array) || t.data.length !== numel(e.shape)) {
      throw new DataError(`${file}: tensor '${e.name}' needs a Float32Array of ${numel(e.shape)} values`);
    }
  }
}

/** The tokenizer files a model folder carries, copied verbatim from `tokenizerFrom`. */
const TOKENIZER_FILES = ['tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json'];

export interface WriteHFFolderOptions {
  extras?: HFConfigExtras;
  /** A folder whose tokenizer.json (required), tokenizer_config.json, special_tokens_map.json and generation_config.json are copied. */
  tokenizerFrom?: string | null;
  /** generation_config.json to write; else the one of `tokenizerFrom`; else bos/eos from `extras`. */
  generation?: Record<string, unknown> | null;
}

/**
 * Writes a folder transformers loads as `arch`: model.safetensors (float32, transformers' names, metadata
 * {format: "pt"}), generation_config.json, tokenizer files, and config.json last, so that a folder that looks like
 * a model (`isHFFolder`) has its weights. Each file atomically; other files already in `dir` stay.
 */
export function writeHFFolder(dir: string, arch: ArchConfig, tensors: ReadonlyMap<string, F32Tensor>, opts: WriteHFFolderOptions = {}): void {
  const weightsFile = path.join(dir, WEIGHTS_FILE);
  const expected = hfTensorPlaces(arch);
  checkTensorSet(weightsFile, tensors, expected);
  const config = hfConfigJson(arch, opts.extras);

  const copies: Array<[string, Buffer]> = [];
  let generation = opts.generation ?? null;
  const from = opts.tokenizerFrom ?? null;
  if (from !== null) {
    for (const name of [...TOKENIZER_FILES, 'generation_config.json']) {
      const src = path.join(from, name);
      let bytes: Buffer;
      try {
        bytes = fs.readFileSync(src);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT' && name !== 'tokenizer.json') continue;
        throw fileError(err, src, name === 'tokenizer.json' ? 'tokenizer.json (tokenizer source)' : undefined);
      }
      if (name === 'generation_config.json') {
        if (generation === null) {
          try {
            generation = JSON.parse(bytes.toString('utf8')) as Record<string, unknown>;
          } catch (err) {
            throw new DataError(`${src}: not valid JSON (${(err as Error).message.split('\n')[0]})`);
          }
        }
      } else copies.push([name, bytes]);
    }
  }
  if (generation === null) {
    generation = { bos_token_id: config.bos_token_id, eos_token_id: config.eos_token_id };
    if (config.pad_token_id !== null) generation.pad_token_id = config.pad_token_id;
  }

  fs.mkdirSync(dir, { recursive: true });
  const record: Record<string, F32Tensor> = {};
  for (const e of expected) record[e.name] = tensors.get(e.name)!;
  writeSafetensors(weightsFile, record, { format: 'pt' });
  for (const [name, bytes] of copies) {
    const dest = path.join(dir, name);
    // Copying a folder's tokenizer onto itself would only rewrite the same bytes.
    if (path.resolve(dest) !== path.resolve(from!, name)) writeFileAtomic(dest, bytes);
  }
  writeJsonAtomic(path.join(dir, 'generation_config.json'), generation);
  writeJsonAtomic(path.join(dir, 'config.json'), config);
}

/**
 * Fresh weights as transformers' `_init_weights` makes them for LlamaForCausalLM / Qwen2ForCausalLM /
 * Qwen3ForCausalLM: every Linear weight and the embedding ~ N(0, initializerRange²), biases 0, every RMSNorm weight
 * (layer norms, final norm, q_norm / k_norm) 1. The embedding is built with padding_idx = pad_token_id, so that
 * row is zeroed when `padId` is set; a tied lm_head is the embedding itself, an untied one a plain Linear.
 * Tensors are drawn in transformers' order from one seeded stream each, so a tensor does not change when another
 * is added.
 */
export function initHFTensors(arch: ArchConfig, seed: number, initializerRange = 0.02, opts: { padId?: number | null } = {}): Map<string, F32Tensor> {
  return new Map(initHFTensorStream(arch, seed, initializerRange, opts));
}

/** initHFTensors one tensor at a time (the same values), so a large model is initialised without a second copy. */
export function* initHFTensorStream(arch: ArchConfig, seed: number, initializerRange = 0.02, opts: { padId?: number | null } = {}): Generator<[string, F32Tensor]> {
  const root = new Rng(seed);
  const padId = opts.padId ?? null;
  if (padId !== null && (!Number.isSafeInteger(padId) || padId < 0 || padId >= arch.V)) {
    throw new RangeError(`initHFTensors: padId ${padId} is not a token id below V = ${arch.V}`);
  }
  for (const p of hfTensorPlaces(arch)) {
    const data = new Float32Array(numel(p.shape));
    if (p.name.endsWith('norm.weight')) data.fill(1);
    else if (p.name.endsWith('.bias')) data.fill(0);
    else {
      root.fork(p.name).fillNormal(data, initializerRange);
      if (p.name === 'model.embed_tokens.weight' && padId !== null) data.fill(0, padId * arch.D, (padId + 1) * arch.D);
    }
    yield [p.name, { shape: [...p.shape], data }];
  }
}

// ---------------------------------------------------------------------------------------------------------------
// PEFT LoRA adapters

export const LORA_MODULES = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'] as const;
export type LoraModule = (typeof LORA_MODULES)[number];

const MODULE_PARENT: Record<LoraModule, 'self_attn' | 'mlp'> = {
  q_proj: 'self_attn', k_proj: 'self_attn', v_proj: 'self_attn', o_proj: 'self_attn',
  gate_proj: 'mlp', up_proj: 'mlp', down_proj: 'mlp',
};

/** Each linear module LoRA may adapt, with its input and output sizes (the weight is [out, in]). */
export function loraModuleShapes(arch: ArchConfig): Array<{ module: LoraModule; in: number; out: number }> {
  const { D, N, Nkv, H, F } = arch;
  return [
    { module: 'q_proj', in: D, out: N * H },
    { module: 'k_proj', in: D, out: Nkv * H },
    { module: 'v_proj', in: D, out: Nkv * H },
    { module: 'o_proj', in: N * H, out: D },
    { module: 'gate_proj', in: D, out: F },
    { module: 'up_proj', in: D, out: F },
    { module: 'down_proj', in: F, out: D },
  ];
}

/** PEFT's saved name: `base_model.model.model.layers.{i}.self_attn.q_proj.lora_A.weight` (A [r, in], B [out, r]). */
export function peftTensorName(layer: number, module: string, which: 'A' | 'B'): string {
  if (!(LORA_MODULES as readonly string[]).includes(module)) throw new RangeError(`peftTensorName: unknown module '${module}' (known: ${LORA_MODULES.join(', ')})`);
  return `base_model.model.model.layers.${layer}.${MODULE_PARENT[module as LoraModule]}.${module}.lora_${which}.weight`;
}

const PEFT_NAME = /^base_model\.model\.model\.layers\.(0|[1-9]\d*)\.(self_attn|mlp)\.([a-z_]+)\.lora_(A|B)\.weight$/;

export interface PeftAdapterConfig {
  r: number;
  alpha: number;
  targetModules: string[];
  baseModel: string | null;
}

export interface PeftAdapter {
  config: PeftAdapterConfig & {
    /** lora_alpha / r, or lora_alpha / sqrt(r) with use_rslora. */
    scale: number;
    useRslora: boolean;
    raw: Record<string, unknown>;
  };
  /** PEFT names → tensors, A [r, in] and B [out, r]. */
  tensors: Map<string, F32Tensor>;
  /** Layers that hold adapters (0 … L−1 as PEFT writes them for every layer). */
  layers: number;
}

/**
 * Checks a set of adapter tensors against r and the target modules: every name PEFT's, every module targeted,
 * A and B both present for each (layer, module) of layers 0 … n−1, A [r, in], B [out, r], and each module's sizes
 * the same in every layer (and, given `arch`, its sizes and layer count). Returns the layer count.
 */
function checkAdapterTensors(file: string, r: number, modules: readonly string[], tensors: ReadonlyMap<string, F32Tensor>, arch?: ArchConfig): number {
  const shapes = arch ? new Map(loraModuleShapes(arch).map((m) => [m.module as string, m])) : null;
  const sizes = new Map<string, { in: number; out: number; from: string }>();
  let layers = 0;
  for (const [name, t] of tensors) {
    const m = PEFT_NAME.exec(name);
    if (m === null) throw new DataError(`${file}: tensor '${name}' is not a PEFT LoRA weight (base_model.model.model.layers.{i}.<self_attn|mlp>.<module>.lora_<A|B>.weight)`);
    const [, layerStr, parent, module, which] = m as unknown as [string, string, string, string, 'A' | 'B'];
    if (!(LORA_MODULES as readonly string[]).includes(module) || MODULE_PARENT[module as LoraModule] !== parent) {
      throw new DataError(`${file}: tensor '${name}' adapts an unknown module ${parent}.${module}`);
    }
    if (!modules.includes(module)) throw new DataError(`${file}: tensor '${name}' adapts ${module}, which is not among target_modules [${modules.join(', ')}]`);
    layers = Math.max(layers, Number(layerStr) + 1);
    if (t.shape.length !== 2 || !(t.data instanceof Float32Array) || t.data.length !== numel(t.shape)) {
      throw new DataError(`${file}: tensor '${name}' must be a matrix with its values, got shape ${shapeStr(t.shape)}`);
    }
    const [rows, cols] = t.shape as [number, number];
    const rank = which === 'A' ? rows : cols;
    if (rank !== r) throw new DataError(`${file}: tensor '${name}' has shape ${shapeStr(t.shape)}, whose rank ${rank} differs from r = ${r}`);
    const dim = which === 'A' ? cols : rows;
    const known = sizes.get(module) ?? { in: -1, out: -1, from: name };
    const side = which === 'A' ? 'in' : 'out';
    if (known[side] !== -1 && known[side] !== dim) {
      throw new DataError(`${file}: tensor '${name}' has shape ${shapeStr(t.shape)}, but '${known.from}' gives ${module} ${side} size ${known[side]}`);
    }
    const want = shapes?.get(module);
    if (want && want[side] !== dim) {
      const expected = which === 'A' ? [r, want.in] : [want.out, r];
      throw new DataError(`${file}: tensor '${name}' has shape ${shapeStr(t.shape)}, expected ${shapeStr(expected)}`);
    }
    known[side] = dim;
    sizes.set(module, known);
  }
  if (arch && layers > arch.L) throw new DataError(`${file}: adapters for layer ${layers - 1}, but the model has ${arch.L} layers`);
  const L = arch?.L ?? layers;
  if (L === 0) throw new DataError(`${file}: holds no LoRA tensors`);
  for (let l = 0; l < L; l++) {
    for (const module of modules) {
      for (const which of ['A', 'B'] as const) {
        const name = peftTensorName(l, module, which);
        if (!tensors.has(name)) throw new DataError(`${file}: tensor '${name}' is missing`);
      }
    }
  }
  return L;
}

function checkTargetModules(file: string, key: string, modules: unknown): string[] {
  if (modules === 'all-linear') return [...LORA_MODULES];
  if (!Array.isArray(modules) || modules.length === 0) {
    throw new DataError(`${file}: key '${key}' must be a non-empty list of module names or "all-linear", got ${JSON.stringify(modules)}`);
  }
  const seen = new Set<string>();
  for (const m of modules) {
    if (typeof m !== 'string' || !(LORA_MODULES as readonly string[]).includes(m)) {
      throw new DataError(`${file}: key '${key}' names ${JSON.stringify(m)}; supported modules: ${LORA_MODULES.join(', ')}`);
    }
    if (seen.has(m)) throw new DataError(`${file}: key '${key}' names ${m} twice`);
    seen.add(m);
  }
  return [...seen];
}

/**
 * Writes a PEFT LoRA adapter folder: adapter_config.json (the keys PEFT's LoraConfig reads, plain LoRA:
 * no dropout, no bias, no rsLoRA, no DoRA) and adapter_model.safetensors (float32, metadata {format: "pt"}).
 * Weights first, then the config, each atomically.
 */
export function writePeftAdapter(dir: string, cfg: PeftAdapterConfig, tensors: ReadonlyMap<string, F32Tensor>): void {
  const weightsFile = path.join(dir, 'adapter_model.safetensors');
  const configFile = path.join(dir, 'adapter_config.json');
  if (!Number.isSafeInteger(cfg.r) || cfg.r < 1) throw new DataError(`${configFile}: key 'r' must be a positive integer, got ${cfg.r}`);
  if (!Number.isFinite(cfg.alpha) || cfg.alpha <= 0) throw new DataError(`${configFile}: key 'lora_alpha' must be a positive number, got ${cfg.alpha}`);
  const modules = checkTargetModules(configFile, 'target_modules', cfg.targetModules);
  checkAdapterTensors(weightsFile, cfg.r, modules, tensors);
  const config = {
    peft_type: 'LORA',
    task_type: 'CAUSAL_LM',
    base_model_name_or_path: cfg.baseModel,
    revision: null,
    inference_mode: true,
    r: cfg.r,
    lora_alpha: cfg.alpha,
    lora_dropout: 0,
    target_modules: modules,
    bias: 'none',
    fan_in_fan_out: false,
    use_rslora: false,
    use_dora: false,
    init_lora_weights: true,
    modules_to_save: null,
    layers_to_transform: null,
    layers_pattern: null,
    rank_pattern: {},
    alpha_pattern: {},
    auto_mapping: null,
  };
  fs.mkdirSync(dir, { recursive: true });
  const record: Record<string, F32Tensor> = {};
  for (const [name, t] of tensors) record[name] = t;
  writeSafetensors(weightsFile, record, { format: 'pt' });
  writeJsonAtomic(configFile, config);
}

/**
 * Reads a PEFT LoRA adapter folder, refusing what would change the computation beyond W + scale·B·A (DoRA, bias,
 * per-module ranks, layer subsets, extra trained modules, fan_in_fan_out). Given `arch`, also checks every
 * module's sizes and that all of its layers are present.
 */
export function readPeftAdapter(dir: string, arch?: ArchConfig): PeftAdapter {
  const configFile = path.join(dir, 'adapter_config.json');
  const weightsFile = path.join(dir, 'adapter_model.safetensors');
  let raw: Record<string, unknown>;
  try {
    const parsed = JSON.parse(fs.readFileSync(configFile, 'utf8')) as unknown;
    if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) throw new SyntaxError('must hold a JSON object');
    raw = parsed as Record<string, unknown>;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== undefined) throw fileError(err, configFile, 'adapter_config.json');
    throw new DataError(`${configFile}: not valid JSON (${(err as Error).message.split('\n')[0]})`);
  }
  const fail = (key: string, message: string): never => {
    throw new DataError(`${configFile}: key '${key}' ${message}`);
  };
  const want = (key: string, ok: (v: unknown) => boolean, what: string): void => {
    if (raw[key] !== undefined && !ok(raw[key])) fail(key, `${what} is not supported, got ${JSON.stringify(raw[key])}`);
  };
  if (raw.peft_type !== 'LORA') fail('peft_type', `must be "LORA", got ${JSON.stringify(raw.peft_type)}`);
  const r = raw.r;
  if (typeof r !== 'number' || !Number.isSafeInteger(r) || r < 1) fail('r', `must be a positive integer, got ${JSON.stringify(r)}`);
  const alpha = raw.lora_alpha;
  if (typeof alpha !== 'number' || !Number.isFinite(alpha) || alpha <= 0) fail('lora_alpha', `must be a positive number, got ${JSON.stringify(alpha)}`);
  const modules = checkTargetModules(configFile, 'target_modules', raw.target_modules);
  const empty = (v: unknown) => v === null || (typeof v === 'object' && !Array.isArray(v) && Object.keys(v as object).length === 0);
  want('use_dora', (v) => v === false, 'anything but false (DoRA)');
  want('bias', (v) => v === 'none', 'a bias other than "none"');
  want('fan_in_fan_out', (v) => v === false, 'true');
  want('modules_to_save', (v) => v === null || (Array.isArray(v) && v.length === 0), 'training extra modules');
  want('layers_to_transform', (v) => v === null, 'a subset of layers');
  want('rank_pattern', empty, 'a rank per module');
  want('alpha_pattern', empty, 'an alpha per module');
  want('use_rslora', (v) => typeof v === 'boolean', 'a non-boolean');
  const useRslora = raw.use_rslora === true;
  const base = raw.base_model_name_or_path;
  if (base !== undefined && base !== null && typeof base !== 'string') fail('base_model_name_or_path', `must be a string or null, got ${JSON.stringify(base)}`);

  let fd: number;
  try {
    fd = fs.openSync(weightsFile, 'r');
  } catch (err) {
    throw fileError(err, weightsFile, 'adapter_model.safetensors');
  }
  const tensors = new Map<string, F32Tensor>();
  try {
    const layout = readSafetensorsLayout(fd, weightsFile);
    for (const e of layout.entries) {
      if (!HF_DTYPES.includes(e.dtype)) throw new DataError(`${weightsFile}: tensor '${e.name}' has unsupported dtype ${e.dtype} (supported: ${HF_DTYPES.join(', ')})`);
      const t = readTensor(fd, weightsFile, layout.dataStart, e, false);
      tensors.set(e.name, { shape: t.shape, data: t.data as Float32Array });
    }
  } finally {
    fs.closeSync(fd);
  }
  const layers = checkAdapterTensors(weightsFile, r as number, modules, tensors, arch);
  return {
    config: {
      r: r as number,
      alpha: alpha as number,
      targetModules: modules,
      baseModel: (base as string | null | undefined) ?? null,
      scale: useRslora ? (alpha as number) / Math.sqrt(r as number) : (alpha as number) / (r as number),
      useRslora,
      raw,
    },
    tensors,
    layers,
  };
}
