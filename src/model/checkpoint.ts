/**
 * Checkpoints (docs/contract.md §6): a folder with the weights and the run's resolved `config.yaml` (whose
 * `model` section gives D, L, H, T, V). The weights are either our `model.safetensors` or the study's reference
 * `weights.npz` (np.savez); both hold the same tensors under the same names and shapes. Writes are atomic.
 */
import fs from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import YAML from 'yaml';
import { DataError } from '../errors.js';
import { writeFileAtomic } from '../io/atomic.js';
import { readNpz, writeNpz } from '../io/npz.js';
import { expectShapes, readSafetensors, writeSafetensors } from '../io/safetensors.js';
import { readSidecar } from '../data/tokens.js';
import { gptArch, type ArchConfig } from './arch.js';
import { GPT, gptConfigOf, gptToSpec, specShapes, validateGPTConfig, type GPTConfig } from './gpt.js';
import type { Transformer } from './transformer.js';

export const WEIGHTS_FILE = 'model.safetensors';
/** The weights file of the study's reference code (np.savez of the checkpoint tensors). */
export const NPZ_WEIGHTS_FILE = 'weights.npz';
export const CONFIG_FILE = 'config.yaml';

export type WeightsFormat = 'safetensors' | 'npz';

export interface CheckpointPaths {
  dir: string;
  weights: string;
  config: string;
  format: WeightsFormat;
}

/**
 * Accepts a checkpoint folder, or the path of its model.safetensors or weights.npz. A folder's
 * model.safetensors wins over a weights.npz beside it; a folder with neither reports model.safetensors
 * (loading then names both).
 */
export function checkpointPaths(p: string): CheckpointPaths {
  if (p.endsWith('.safetensors') || p.endsWith('.npz')) {
    const dir = path.dirname(p);
    return { dir, weights: p, config: path.join(dir, CONFIG_FILE), format: p.endsWith('.npz') ? 'npz' : 'safetensors' };
  }
  const st = path.join(p, WEIGHTS_FILE), npz = path.join(p, NPZ_WEIGHTS_FILE);
  const useNpz = !fs.existsSync(st) && fs.existsSync(npz);
  return { dir: p, weights: useNpz ? npz : st, config: path.join(p, CONFIG_FILE), format: useNpz ? 'npz' : 'safetensors' };
}

/**
 * What a checkpoint's config.yaml says, parsed once: train, eval and sample all read a checkpoint through this.
 * The fields a config does not record get the defaults the run had (docs/contract.md §3).
 */
export interface CheckpointConfig {
  /** The config.yaml it was read from. */
  file: string;
  /** The model's options: a gpt's from config.yaml, or, for a run folder of a Hugging Face architecture, the
   *  architecture of its config.json with the run's T. */
  model: ArchConfig;
  /** data.path: as recorded, or relative to the checkpoint folder when only that exists; null when none is recorded. */
  dataPath: string | null;
  /** data.token_id, the dataset token id the config set; null when it relied on the data's sidecar. */
  tokenId: number | null;
  /** The train/validation split the run used. */
  split: { numTokensValid: number; splitSeed: number; batchSize: number | null };
  /** run.seed, which regenerates the run's initial weights; null when not recorded. */
  runSeed: number | null;
}

function readConfigYaml(config: string): Record<string, unknown> {
  if (!fs.existsSync(config)) throw new DataError(`${config}: checkpoint config is missing (needed for the model's dimensions and previous data)`);
  let parsed: unknown;
  try {
    parsed = YAML.parse(fs.readFileSync(config, 'utf8'));
  } catch (e) {
    throw new DataError(`${config}: not valid YAML (${(e as Error).message.split('\n')[0]})`);
  }
  if (!parsed || typeof parsed !== 'object') throw new DataError(`${config}: expected a mapping`);
  return parsed as Record<string, unknown>;
}

/** The config of the checkpoint at `p` (a folder, or its weights file); `arch` for a run folder of a Hugging Face
 *  architecture, whose dimensions come from its config.json rather than config.yaml. */
export function readCheckpointConfig(p: string, arch?: ArchConfig): CheckpointConfig {
  const { dir, config: file } = checkpointPaths(p);
  const saved = readConfigYaml(file);
  const section = (name: string) => {
    const s = saved[name];
    return (s !== null && typeof s === 'object' && !Array.isArray(s) ? s : {}) as Record<string, unknown>;
  };
  const data = section('data'), opt = section('opt'), run = section('run');
  const num = (v: unknown) => (typeof v === 'number' ? v : null);
  let dataPath = typeof data.path === 'string' ? data.path : null;
  // A relative data path is relative to where the run was started; the checkpoint folder is the next guess.
  if (dataPath !== null && !fs.existsSync(dataPath) && !path.isAbsolute(dataPath)) {
    const alt = path.join(dir, dataPath);
    if (fs.existsSync(alt)) dataPath = alt;
  }
  return {
    file,
    model: arch ? { ...arch, T: typeof section('model').T === 'number' ? (section('model').T as number) : arch.T } : gptArch(modelConfigOf(saved, file)),
    dataPath,
    tokenId: num(data.token_id),
    split: { numTokensValid: num(data.num_tokens_valid) ?? 0, splitSeed: num(data.split_seed) ?? 0, batchSize: num(opt.batch_size) },
    runSeed: num(run.seed),
  };
}

/** The dataset token id of a checkpoint's data: its config's data.token_id, else its data file's sidecar; null if neither. */
export function checkpointTokenId(c: CheckpointConfig): number | null {
  if (c.tokenId !== null) return c.tokenId;
  if (c.dataPath === null || !fs.existsSync(c.dataPath)) return null;
  return readSidecar(c.dataPath)?.dataset_token_id ?? null;
}

/**
 * D, L, H, T, V of a saved config: from its `model:` section (ours and the reference code's layout),
 * or, for a flat config without one, from the top level.
 */
function modelConfigOf(saved: Record<string, unknown>, file: string): GPTConfig {
  const section = saved.model;
  const nested = section !== null && typeof section === 'object' && !Array.isArray(section);
  const flat = !nested && (['D', 'L', 'H', 'T', 'V'] as const).some((k) => k in saved);
  if (!nested && !flat) throw new DataError(`${file}: has no 'model' section (with D, L, H, T, V)`);
  const m = (nested ? section : saved) as Record<string, unknown>;
  const prefix = nested ? 'model.' : '';
  const cfg = { D: m.D, L: m.L, H: m.H, T: m.T, V: m.V } as GPTConfig;
  for (const k of ['D', 'L', 'H', 'T', 'V'] as const) {
    if (!Number.isInteger(cfg[k]) || cfg[k] <= 0) throw new DataError(`${file}: ${prefix}${k} must be a positive integer, got ${String(cfg[k])}`);
  }
  try {
    validateGPTConfig(cfg);
  } catch (e) {
    throw new DataError(`${file}: ${(e as Error).message}`);
  }
  return cfg;
}

export interface CheckpointTensors {
  paths: CheckpointPaths;
  config: CheckpointConfig;
  /** The checkpoint tensors (row-major float32), in checkpoint order, shapes checked against the config. */
  tensors: Record<string, { shape: number[]; data: Float32Array }>;
}

/**
 * The tensors of a checkpoint (safetensors or npz) and its config, every tensor's presence and shape checked
 * against the config. Extra tensors in the file are ignored.
 */
export function readCheckpointTensors(p: string): CheckpointTensors {
  const paths = checkpointPaths(p);
  if (!fs.existsSync(paths.dir)) throw new DataError(`${paths.dir}: checkpoint folder does not exist`);
  const config = readCheckpointConfig(p);
  if (!fs.existsSync(paths.weights) && paths.weights === path.join(p, WEIGHTS_FILE)) {
    throw new DataError(`${paths.weights}: no such file (and no ${NPZ_WEIGHTS_FILE} beside it)`);
  }
  if (config.model.family !== 'gpt') throw new DataError(`${paths.dir}: holds a ${config.model.family} model in the transformers layout; load it with loadModelFolder`);
  const gpt = gptConfigOf(config.model);
  const shapes = specShapes(gpt);
  const file = paths.format === 'npz' ? readNpz(paths.weights, new Set(Object.keys(shapes))) : readSafetensors(paths.weights).tensors;
  expectShapes(paths.weights, file, shapes);
  const tensors: CheckpointTensors['tensors'] = {};
  for (const name of Object.keys(shapes)) tensors[name] = { shape: shapes[name]!, data: file.get(name)!.data };
  return { paths, config, tensors };
}

/** A checkpoint's model and its config, each read once. */
export function loadCheckpoint(p: string): { model: GPT; config: CheckpointConfig } {
  const { paths, config, tensors } = readCheckpointTensors(p);
  const data: Record<string, Float32Array> = {};
  for (const [name, t] of Object.entries(tensors)) {
    for (let i = 0; i < t.data.length; i++) {
      if (!Number.isFinite(t.data[i]!)) throw new DataError(`${paths.weights}: tensor '${name}' holds a non-finite value at index ${i}`);
    }
    data[name] = t.data;
  }
  return { model: GPT.fromSpec(gptConfigOf(config.model), data), config };
}

/** Load a model from a checkpoint folder (or its model.safetensors / weights.npz). */
export function loadModel(p: string): Transformer {
  return loadCheckpoint(p).model;
}

/** Write model.safetensors (atomically) into `dir`. */
export function saveWeights(dir: string, model: Transformer, metadata: Record<string, string> = {}): void {
  fs.mkdirSync(dir, { recursive: true });
  writeSafetensors(path.join(dir, WEIGHTS_FILE), gptToSpec(model), { format: 'pt', ...metadata });
}

export interface ExportResult {
  out: string;
  format: WeightsFormat;
  weights: string;
}

/**
 * Converts a checkpoint folder to `format` in the new folder `out`: the weights (model.safetensors or
 * weights.npz, same tensors, bit for bit when both are float32), config.yaml copied byte for byte, and
 * tokenizer.json if there is one. The folder is assembled under a temporary name beside `out` and
 * renamed into place, so `out` either appears complete or not at all. An existing non-empty `out` is
 * refused, never merged into.
 */
export function exportCheckpoint(src: string, format: WeightsFormat, out: string): ExportResult {
  const { paths, tensors } = readCheckpointTensors(src);
  if (fs.existsSync(out)) {
    if (!fs.statSync(out).isDirectory()) throw new DataError(`${out}: exists and is not a folder; choose another output`);
    if (fs.readdirSync(out).length > 0) throw new DataError(`${out}: exists and is not empty; choose another output (nothing was written)`);
  }
  const parent = path.dirname(path.resolve(out));
  fs.mkdirSync(parent, { recursive: true });
  const tmp = path.join(parent, `.${path.basename(out)}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`);
  const weightsName = format === 'npz' ? NPZ_WEIGHTS_FILE : WEIGHTS_FILE;
  fs.mkdirSync(tmp);
  try {
    if (format === 'npz') writeNpz(path.join(tmp, weightsName), tensors);
    else writeSafetensors(path.join(tmp, weightsName), tensors, { format: 'pt' });
    writeFileAtomic(path.join(tmp, CONFIG_FILE), fs.readFileSync(paths.config));
    const tokenizer = path.join(paths.dir, 'tokenizer.json');
    if (fs.existsSync(tokenizer)) writeFileAtomic(path.join(tmp, 'tokenizer.json'), fs.readFileSync(tokenizer));
    if (fs.existsSync(out)) fs.rmdirSync(out); // empty (checked above); rename cannot replace it everywhere
    fs.renameSync(tmp, out);
  } catch (e) {
    fs.rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
  return { out, format, weights: path.join(out, weightsName) };
}
