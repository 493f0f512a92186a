/**
 * Any model folder unforget reads: its own checkpoints (gpt: config.yaml + model.safetensors or the reference's
 * weights.npz), Hugging Face folders (config.json + model.safetensors or shards), and unforget run folders of a
 * Hugging Face architecture, which hold both (the transformers layout beside the run's config.yaml).
 */
import fs from 'node:fs';
import path from 'node:path';
import { DataError } from '../errors.js';
import { isHFFolder, readHFConfig, type HFConfigInfo } from './hf_config.js';
import { initHFTensorStream, readHFWeights, readPeftAdapter, writeHFFolder } from './hf_folder.js';
import { mergePeftAdapter } from './lora.js';
import { native } from '../backend/native.js';
import { hfParamShapes, hfTensorPlaces, type ArchConfig, type HFTensorPlace } from './arch.js';
import { CONFIG_FILE, loadCheckpoint, readCheckpointConfig, type CheckpointConfig } from './checkpoint.js';
import { MATRICES, Transformer } from './transformer.js';

export interface LoadedModel {
  model: Transformer;
  dir: string;
  /** What the folder's config.yaml says (data, split, seeds), when it is an unforget run folder; else null. */
  checkpoint: CheckpointConfig | null;
  /** The Hugging Face config, for folders in the transformers layout; else null. */
  hf: HFConfigInfo | null;
}

export interface LoadOptions {
  /** Sequence length (Hugging Face configs record none): default the run's own T, else min(1024, max positions). */
  T?: number | null;
  /** The model will not be trained (π, a LoRA base, evaluation, sampling): bf16/f16 matrices stay half precision. */
  frozen?: boolean;
}

/** Whether `dir` holds a model in the transformers layout (a Hugging Face folder, or a run folder of that family). */
export function isHFModelFolder(dir: string): boolean {
  return fs.existsSync(dir) && fs.statSync(dir).isDirectory() && isHFFolder(dir);
}

/** The T an unforget run folder recorded in its config.yaml (model.T), or null. */
function runT(dir: string): number | null {
  if (!fs.existsSync(path.join(dir, CONFIG_FILE))) return null;
  try {
    return readCheckpointConfig(dir).model.T;
  } catch {
    return null;
  }
}

/** Whether `dir` holds a PEFT adapter (adapter_config.json) and no model of its own. */
export function isAdapterFolder(dir: string): boolean {
  return fs.existsSync(path.join(dir, 'adapter_config.json')) && !fs.existsSync(path.join(dir, 'config.json'));
}

/**
 * A model folder of any kind (see the file comment); every tensor checked, one-line errors naming the culprit.
 * A PEFT adapter folder (a LoRA run of a Hugging Face model) gives its base model (`opts.base`, else the adapter's
 * base_model_name_or_path) with the adapter merged in.
 */
export function loadModelFolder(dir: string, opts: LoadOptions & { base?: string | null } = {}): LoadedModel {
  if (!fs.existsSync(dir)) throw new DataError(`${dir}: model folder does not exist`);
  if (isAdapterFolder(dir)) {
    const adapterConfig = path.join(dir, 'adapter_config.json');
    const first = readPeftAdapter(dir);
    const basePath = opts.base ?? first.config.baseModel;
    if (!basePath) throw new DataError(`${adapterConfig}: base_model_name_or_path is null; give the base model folder`);
    if (!fs.existsSync(basePath)) throw new DataError(`${adapterConfig}: base model ${basePath} does not exist`);
    const T = opts.T ?? runT(dir);
    const base = loadModelFolder(basePath, { T });
    if (!base.hf) throw new DataError(`${adapterConfig}: base model ${basePath} is not in the transformers layout`);
    const adapter = readPeftAdapter(dir, base.model.cfg);
    mergePeftAdapter(base.model, { scale: adapter.config.scale, tensors: adapter.tensors });
    const checkpoint = fs.existsSync(path.join(dir, CONFIG_FILE)) ? readCheckpointConfig(dir, base.model.cfg) : null;
    return { model: base.model, dir, checkpoint, hf: base.hf };
  }
  if (isHFModelFolder(dir)) {
    const hf = readHFConfig(dir, { T: opts.T ?? runT(dir) });
    const model = modelFromHFTensors(hf.arch, readHFWeights(dir, hf.arch, { keepHalf: opts.frozen ?? false }), hf.file);
    const checkpoint = fs.existsSync(path.join(dir, CONFIG_FILE)) ? readCheckpointConfig(dir, hf.arch) : null;
    return { model, dir, checkpoint, hf };
  }
  const { model, config } = loadCheckpoint(dir);
  if (opts.T != null && opts.T !== model.cfg.T) {
    throw new DataError(`${dir}: the checkpoint was trained with T=${model.cfg.T}; a gpt cannot be evaluated at T=${opts.T}`);
  }
  return { model, dir, checkpoint: config, hf: null };
}

/**
 * A Transformer holding the Hugging Face tensors. When every matrix arrives as bf16 (or every one as f16) bits, the
 * model keeps them so (frozen, half the memory); the vectors, and everything else, are float32.
 */
export function modelFromHFTensors(arch: ArchConfig, tensors: ReadonlyMap<string, { shape: number[]; data: Float32Array | Uint16Array; dtype?: string }>, file = 'model'): Transformer {
  const places = hfTensorPlaces(arch);
  for (const p of places) if (!tensors.has(p.name)) throw new DataError(`${file}: tensor ${p.name} is missing`);
  const matrices = places.filter((p) => MATRICES.has(p.param)).map((p) => tensors.get(p.name)!);
  const dtypes = new Set(matrices.map((t) => (t.data instanceof Uint16Array ? t.dtype : 'F32')));
  const halfKind = dtypes.size === 1 && (dtypes.has('BF16') || dtypes.has('F16')) ? (dtypes.has('BF16') ? 0 : 1) : null;
  const shapes = hfParamShapes(arch);
  const size = (name: string) => shapes.find(([n]) => n === name)![1].reduce((a, b) => a * b, 1);
  const half = halfKind === null ? null
    : { data: new Uint16Array(shapes.filter(([n]) => MATRICES.has(n)).reduce((s, [n]) => s + size(n), 0)), kind: halfKind as 0 | 1 };
  const m = new Transformer(arch, undefined, half);
  for (const p of places) placeTensor(m, p, tensors.get(p.name)!);
  return m;
}

/** Copies one transformers tensor into its place in `m`, widening or narrowing between float32 and half as needed. */
function placeTensor(m: Transformer, p: HFTensorPlace, t: { data: Float32Array | Uint16Array; dtype?: string }): void {
  const dst = m.storage(p.param);
  const at = p.layer >= 0 ? p.layer * (dst.length / m.cfg.L) + p.offset : p.offset;
  const k = native();
  if (dst instanceof Uint16Array) {
    if (t.data instanceof Uint16Array) dst.set(t.data, at);
    else k.narrowHalf(dst.subarray(at, at + t.data.length), t.data, t.data.length, m.half!.kind);
  } else if (t.data instanceof Float32Array) dst.set(t.data, at);
  else k.widenHalf(dst.subarray(at, at + t.data.length), t.data, t.data.length, t.dtype === 'F16' ? 1 : 0);
}

/**
 * A fresh model initialised as transformers does (initHFTensors' values), tensor by tensor into its storage; with
 * `half` its matrices are kept frozen in that precision (a benchmark's stand-in for a bf16 checkpoint).
 */
export function initHFModel(arch: ArchConfig, seed: number, initializerRange: number, opts: { padId?: number | null; half?: 0 | 1 | null } = {}): Transformer {
  const shapes = hfParamShapes(arch);
  const total = shapes.filter(([n]) => MATRICES.has(n)).reduce((s, [, sh]) => s + sh.reduce((a, b) => a * b, 1), 0);
  const half = opts.half != null ? { data: new Uint16Array(total), kind: opts.half } : null;
  const m = new Transformer(arch, undefined, half);
  const places = new Map(hfTensorPlaces(arch).map((p) => [p.name, p]));
  for (const [name, t] of initHFTensorStream(arch, seed, initializerRange, { padId: opts.padId ?? null })) placeTensor(m, places.get(name)!, t);
  if (half) m.setTrainable(false);
  return m;
}

/** The model's tensors under transformers' names and shapes (copies). */
export function hfTensorsOf(m: Transformer): Map<string, { shape: number[]; data: Float32Array }> {
  const out = new Map<string, { shape: number[]; data: Float32Array }>();
  const k = native();
  for (const p of hfTensorPlaces(m.cfg)) {
    const src = m.storage(p.param);
    const layerSize = p.layer >= 0 ? src.length / m.cfg.L : 0;
    const at = p.layer >= 0 ? p.layer * layerSize + p.offset : p.offset;
    const n = p.shape.reduce((a, b) => a * b, 1);
    let data: Float32Array;
    if (src instanceof Float32Array) data = src.slice(at, at + n);
    else k.widenHalf((data = new Float32Array(n)), src.subarray(at, at + n), n, m.half!.kind);
    out.set(p.name, { shape: p.shape, data });
  }
  return out;
}

/** Writes the transformers layout of `m` into `dir` (config.json, model.safetensors, generation_config.json and,
 *  from `tokenizerFrom`, the tokenizer files), keeping whatever else the folder holds. */
export function saveHFModel(dir: string, m: Transformer, hf: { bosId?: number | null; eosIds?: number[]; tokenizerFrom?: string | null } = {}): void {
  writeHFFolder(dir, m.cfg, hfTensorsOf(m), {
    extras: { bosId: hf.bosId ?? null, eosIds: hf.eosIds ?? [] },
    // A folder without tokenizer files (one that only evaluates token files) passes none on.
    tokenizerFrom: hf.tokenizerFrom && fs.existsSync(path.join(hf.tokenizerFrom, 'tokenizer.json')) ? hf.tokenizerFrom : null,
  });
}

/** A frozen copy of `m` whose matrices are stored in half precision (kind 0: bf16, 1: f16, rounded to nearest even). */
export function halfCopy(m: Transformer, kind: 0 | 1): Transformer {
  const shapes = m.outIn ? hfParamShapes(m.cfg) : null;
  if (!shapes) throw new Error('halfCopy: only the Hugging Face family keeps half-precision weights');
  const total = shapes.filter(([n]) => MATRICES.has(n)).reduce((s, [, sh]) => s + sh.reduce((a, b) => a * b, 1), 0);
  const out = new Transformer(m.cfg, undefined, { data: new Uint16Array(total), kind });
  const k = native();
  for (const [name] of shapes) {
    const src = m.storage(name), dst = out.storage(name);
    if (dst instanceof Uint16Array) {
      if (src instanceof Uint16Array) dst.set(src);
      else k.narrowHalf(dst, src, src.length, kind);
    } else dst.set(src instanceof Float32Array ? src : new Float32Array(0));
  }
  out.setTrainable(false);
  return out;
}
