/**
 * Checkpoints: a folder with `model.safetensors` (SPEC §7 names and shapes, float32) and the run's
 * resolved `config.yaml` (whose `model` section gives D, L, H, T, V). Writes are atomic.
 */
import fs from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';
import { DataError } from '../errors.js';
import { expectShapes, readSafetensors, writeSafetensors } from '../io/safetensors.js';
import { GPT, specShapes, validateGPTConfig, type GPTConfig } from './gpt.js';

export const WEIGHTS_FILE = 'model.safetensors';
export const CONFIG_FILE = 'config.yaml';

export interface CheckpointPaths {
  dir: string;
  weights: string;
  config: string;
}

/** Accepts a run folder or the path of its model.safetensors. */
export function checkpointPaths(p: string): CheckpointPaths {
  const isFile = p.endsWith('.safetensors');
  const dir = isFile ? path.dirname(p) : p;
  return { dir, weights: isFile ? p : path.join(dir, WEIGHTS_FILE), config: path.join(dir, CONFIG_FILE) };
}

/** The whole saved config of a checkpoint, as a plain object. */
export function readCheckpointConfig(p: string): Record<string, unknown> {
  const { config } = checkpointPaths(p);
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

export function modelConfigOf(saved: Record<string, unknown>, file: string): GPTConfig {
  const m = saved.model as Record<string, unknown> | undefined;
  if (!m || typeof m !== 'object') throw new DataError(`${file}: has no 'model' section`);
  const cfg = { D: m.D, L: m.L, H: m.H, T: m.T, V: m.V } as GPTConfig;
  for (const k of ['D', 'L', 'H', 'T', 'V'] as const) {
    if (!Number.isInteger(cfg[k]) || cfg[k] <= 0) throw new DataError(`${file}: model.${k} must be a positive integer, got ${String(cfg[k])}`);
  }
  try {
    validateGPTConfig(cfg);
  } catch (e) {
    throw new DataError(`${file}: ${(e as Error).message}`);
  }
  return cfg;
}

/** Load a model from a checkpoint folder (or its model.safetensors). */
export function loadModel(p: string): GPT {
  const paths = checkpointPaths(p);
  if (!fs.existsSync(paths.dir)) throw new DataError(`${paths.dir}: checkpoint folder does not exist`);
  const cfg = modelConfigOf(readCheckpointConfig(p), paths.config);
  const file = readSafetensors(paths.weights);
  const shapes = specShapes(cfg);
  expectShapes(paths.weights, file.tensors, shapes);
  const tensors: Record<string, Float32Array> = {};
  for (const name of Object.keys(shapes)) {
    const data = file.tensors.get(name)!.data;
    for (let i = 0; i < data.length; i++) {
      if (!Number.isFinite(data[i]!)) throw new DataError(`${paths.weights}: tensor '${name}' holds a non-finite value at index ${i}`);
    }
    tensors[name] = data;
  }
  return GPT.fromSpec(cfg, tensors);
}

/** Write model.safetensors (atomically) into `dir`. */
export function saveWeights(dir: string, model: GPT, metadata: Record<string, string> = {}): void {
  fs.mkdirSync(dir, { recursive: true });
  writeSafetensors(path.join(dir, WEIGHTS_FILE), model.toSpec(), { format: 'pt', ...metadata });
}
