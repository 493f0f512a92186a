/**
 * Where evaluation gets its models, tokenizers and multiple-choice sets: one loader for every command that scores a
 * model (`eval --mcq`, `forgetting`), and the sets a training run scores at each evaluation (`log.mcq`).
 */
import fs from 'node:fs';
import path from 'node:path';
import type { Config } from '../config/schema.js';
import { loadTokenizer, readTokenizerJson } from '../data/tokenizer.js';
import { readSidecar } from '../data/tokens.js';
import { ConfigError } from '../errors.js';
import { loadModelTokenizer } from '../data/hf_tokenizer.js';
import { checkpointPaths, checkpointTokenId, readCheckpointConfig } from '../model/checkpoint.js';
import { readHFConfig } from '../model/hf_config.js';
import { isAdapterFolder, isHFModelFolder, loadModelFolder } from '../model/load.js';
import type { Transformer } from '../model/transformer.js';
import { checkMcqFits, prepareMcq, readMcqFile, type McqStyle, type McqTokenizer, type PreparedMcq } from './mcq.js';

/** A model ready to be scored and sampled, with what its sequences start with and its tokenizer. */
export interface LoadedModel {
  dir: string;
  /** An unforget checkpoint, a Hugging Face folder, or a base with a PEFT adapter merged in. */
  model: Transformer;
  /** The first token of every sequence: the checkpoint's dataset token id (a model's BOS); null if none is known. */
  startToken: number | null;
  /** Null when no tokenizer is known (beside the checkpoint, in its data's sidecar, or given). */
  tokenizer: McqTokenizer | null;
}

/** The model in `dir` (a checkpoint folder or its weights file); `tokenizer` overrides where its tokenizer comes from. */
export async function loadScoringModel(dir: string, opts: { tokenizer?: string | null; T?: number | null; base?: string | null } = {}): Promise<LoadedModel> {
  const folder = checkpointPaths(dir).dir;
  const { model, checkpoint: config, hf } = loadModelFolder(folder, { T: opts.T ?? null, base: opts.base ?? null, frozen: true });
  // Hugging Face models (and runs of their architectures) carry their own tokenizer files with special tokens and
  // chat templates; unforget's gpt runs a BPE tokenizer.json beside the checkpoint or named by its data.
  const hfTok = hf ? loadModelTokenizer(opts.tokenizer ?? (fs.existsSync(path.join(folder, 'tokenizer.json')) ? folder : hf.dir)) : null;
  if (hfTok) {
    const startToken = (config ? checkpointTokenId(config) : null) ?? hfTok.bosId ?? hf?.bosId ?? null;
    return { dir, model, startToken, tokenizer: hfTok };
  }
  const codec = await loadTokenizer(opts.tokenizer ?? null, folder, config?.dataPath ?? null);
  const startToken = (config ? checkpointTokenId(config) : null) ?? hf?.bosId ?? null;
  return { dir, model, startToken, tokenizer: codec ? bpeMcqTokenizer(codec.file) : null };
}

/** The T a run will have: model.T, else the loaded model's own (a run's T, or a Hugging Face default). */
function runT(cfg: Config): number {
  const lp = cfg.model.load_path;
  if (cfg.model.T !== null) return cfg.model.T;
  if (lp === null) return 128;
  if (isAdapterFolder(lp) || !isHFModelFolder(lp)) return readCheckpointConfig(lp).model.T;
  return readHFConfig(lp).arch.T;
}

/**
 * An unforget tokenizer.json as an McqTokenizer. It has no BOS: unforget's sequences start with the dataset token
 * id instead, which the caller passes as the start token.
 */
export function bpeMcqTokenizer(file: string): McqTokenizer {
  const tok = readTokenizerJson(file);
  return {
    bosId: null,
    async encode(text) {
      return (await tok.encode(text, null, { addSpecialTokens: false })).getIds();
    },
  };
}

/**
 * The name a set's metrics carry: the file's name without its extension, with anything but letters, digits and
 * `_` replaced by `_`, so that `mcq_<name>_acc` is one plain key.
 */
export function mcqSetName(file: string): string {
  const base = path.basename(file);
  const dot = base.lastIndexOf('.');
  return (dot > 0 ? base.slice(0, dot) : base).replace(/[^A-Za-z0-9_]/g, '_');
}

/** A multiple-choice set of a training run, tokenised once. */
export interface McqSet {
  name: string;
  file: string;
  prepared: PreparedMcq;
}

/**
 * The sets of `log.mcq`, read, tokenised and checked against the run's T before the run folder exists. Sequences
 * start with the run's dataset token id (data.token_id, else the data's sidecar), like its training sequences, so
 * that the end accuracy equals `unforget eval --mcq` on the run's checkpoint. The tokenizer is the one beside the
 * loaded checkpoint (model.load_path), else beside the data file, else the data sidecar's.
 */
export async function loadRunMcqSets(cfg: Config): Promise<McqSet[]> {
  const files = cfg.log.mcq;
  // Without data the run fails in its own set-up with the key to fix.
  if (files === null || !cfg.data.path) return [];
  const names = new Map<string, string>();
  for (const f of files) {
    const name = mcqSetName(f);
    const other = names.get(name);
    if (other !== undefined) throw new ConfigError('log.mcq', `${other} and ${f} would both report as mcq_${name}_*; rename one`);
    names.set(name, f);
  }
  const itemsOf = files.map((f) => readMcqFile(f));
  const dir = cfg.model.load_path ? checkpointPaths(cfg.model.load_path).dir : path.dirname(cfg.data.path);
  const hfTok = loadModelTokenizer(cfg.data.tokenizer ?? dir);
  const codec = hfTok ? null : await loadTokenizer(null, dir, cfg.data.path);
  if (!hfTok && !codec) {
    throw new ConfigError('log.mcq', `needs a tokenizer: none beside ${cfg.model.load_path ? 'the checkpoint (model.load_path)' : cfg.data.path} or named by the data sidecar of ${cfg.data.path}`);
  }
  const tok: McqTokenizer = hfTok ?? bpeMcqTokenizer(codec!.file);
  const startToken = cfg.data.token_id ?? readSidecar(cfg.data.path)?.dataset_token_id ?? hfTok?.bosId ?? null;
  const T = runT(cfg);
  const style: McqStyle = cfg.log.mcq_style;
  if (style === 'chat' && !(hfTok?.chatTemplate)) throw new ConfigError('log.mcq_style', `'chat' needs a tokenizer with a chat template, and ${hfTok?.file ?? codec!.file} has none; use 'harness'`);
  const sets: McqSet[] = [];
  for (let i = 0; i < files.length; i++) {
    const prepared = await prepareMcq(tok, itemsOf[i]!, { style, startToken });
    checkMcqFits(prepared, T);
    sets.push({ name: mcqSetName(files[i]!), file: files[i]!, prepared });
  }
  return sets;
}
