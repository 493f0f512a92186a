/**
 * Where evaluation gets its models, tokenizers and multiple-choice sets: one loader for every command that scores a
 * model (`eval --mcq`, `forgetting`), and the sets a training run scores at each evaluation (`log.mcq`).
 */
import path from 'node:path';
import type { Config } from '../config/schema.js';
import { loadTokenizer, readTokenizerJson } from '../data/tokenizer.js';
import { readSidecar } from '../data/tokens.js';
import { ConfigError } from '../errors.js';
import { checkpointPaths, checkpointTokenId, loadCheckpoint, readCheckpointConfig } from '../model/checkpoint.js';
import type { GPT } from '../model/gpt.js';
import { checkMcqFits, prepareMcq, readMcqFile, type McqStyle, type McqTokenizer, type PreparedMcq } from './mcq.js';

/** A model ready to be scored and sampled, with what its sequences start with and its tokenizer. */
export interface LoadedModel {
  dir: string;
  /** Today an unforget checkpoint; Hugging Face folders and base + PEFT adapters come through here too. */
  model: GPT;
  /** The first token of every sequence: the checkpoint's dataset token id (a model's BOS); null if none is known. */
  startToken: number | null;
  /** Null when no tokenizer is known (beside the checkpoint, in its data's sidecar, or given). */
  tokenizer: McqTokenizer | null;
}

/** The model in `dir` (a checkpoint folder or its weights file); `tokenizer` overrides where its tokenizer comes from. */
export async function loadScoringModel(dir: string, opts: { tokenizer?: string | null } = {}): Promise<LoadedModel> {
  const { model, config } = loadCheckpoint(dir);
  const codec = await loadTokenizer(opts.tokenizer ?? null, checkpointPaths(dir).dir, config.dataPath);
  return { dir, model, startToken: checkpointTokenId(config), tokenizer: codec ? bpeMcqTokenizer(codec.file) : null };
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
  const codec = await loadTokenizer(null, dir, cfg.data.path);
  if (!codec) {
    throw new ConfigError('log.mcq', `needs a tokenizer: none beside ${cfg.model.load_path ? 'the checkpoint (model.load_path)' : cfg.data.path} or named by the data sidecar of ${cfg.data.path}`);
  }
  const tok = bpeMcqTokenizer(codec.file);
  const startToken = cfg.data.token_id ?? readSidecar(cfg.data.path)?.dataset_token_id ?? null;
  const T = cfg.model.load_path ? readCheckpointConfig(cfg.model.load_path).model.T : cfg.model.T;
  const style: McqStyle = cfg.log.mcq_style;
  if (style === 'chat' && !tok.renderChat) throw new ConfigError('log.mcq_style', `'chat' needs a tokenizer with a chat template, and ${codec.file} has none; use 'harness'`);
  const sets: McqSet[] = [];
  for (let i = 0; i < files.length; i++) {
    const prepared = await prepareMcq(tok, itemsOf[i]!, { style, startToken });
    checkMcqFits(prepared, T);
    sets.push({ name: mcqSetName(files[i]!), file: files[i]!, prepared });
  }
  return sets;
}
