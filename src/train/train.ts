/**
 * A training run, read top to bottom: resolve the config, load data and model (and the frozen
 * reference π when finetuning), then loop — batch, replay, step, evaluate, record, checkpoint, stop —
 * and summarise. The metrics and files it writes are those of docs/contract.md §5 and §6.
 */
import fs from 'node:fs';
import path from 'node:path';
import { native } from '../backend/native.js';
import { dumpConfig, generateRunId } from '../config/load.js';
import type { Config } from '../config/schema.js';
import { chatDataset, isChatRowsSidecar, readChatRows, readChatRowsFile } from '../data/chat.js';
import { loadModelTokenizer, type ModelTokenizer } from '../data/hf_tokenizer.js';
import { isTextData, tokenizeTextFile } from '../data/text_tokens.js';
import { BatchStream, TokenDataset, checkTokenIds, readSidecar, readTokenFile, type TokenIds } from '../data/tokens.js';
import { ConfigError, DataError, NonFiniteLossError, UnforgetError } from '../errors.js';
import { loadRunMcqSets, type McqSet } from '../eval/load.js';
import { mcqAccuracy, scoreMcq } from '../eval/mcq.js';
import { appendJsonLine, writeFileAtomic, writeJsonAtomic } from '../io/atomic.js';
import { archParamCounts, gptArch, type ArchConfig } from '../model/arch.js';
import { checkpointTokenId, saveWeights, type CheckpointConfig } from '../model/checkpoint.js';
import { GPT } from '../model/gpt.js';
import { readHFConfigFile, type HFConfigInfo } from '../model/hf_config.js';
import { writePeftAdapter } from '../model/hf_folder.js';
import { initHFModel, loadModelFolder, saveHFModel } from '../model/load.js';
import { LoRA, peftTensors } from '../model/lora.js';
import type { Transformer } from '../model/transformer.js';
import { RealReplay, SynthReplay, type ReplaySource } from '../replay/replay.js';
import { Rng } from '../util/rng.js';
import { evaluate as evaluateSet, type MaskedBatch } from './losses.js';
import { learningRate, makeOptimizer } from './optim.js';
import { Stepper, type StepResult } from './step.js';

export type StopReason = 'train_length' | 'target_loss' | 'train_time' | 'early_stop' | 'interrupted' | 'nonfinite_loss';

/** What the run shows the user while it goes (a progress bar on a terminal, log lines otherwise). */
export interface Reporter {
  start(totalSteps: number | null, label: string): void;
  update(step: number, info: Record<string, number | string>): void;
  log(line: string): void;
  stop(): void;
}

export const silentReporter: Reporter = { start() {}, update() {}, log() {}, stop() {} };

export interface TrainOptions {
  reporter?: Reporter;
  /** Polled once per step; true stops the run cleanly with stop_reason=interrupted. */
  shouldStop?: () => boolean;
}

export interface TrainOutcome {
  runDir: string;
  summary: Record<string, unknown>;
}

type Metrics = Record<string, number>;

/** An evaluation set: the validation batches of one dataset, reported as `<name>_*`. */
interface EvalSet {
  name: string;
  dataset: TokenDataset;
}

/** The frozen reference π of a finetuning run, and what its folder says about the data it learned. */
interface Reference {
  pi: Transformer;
  /** The run's config.yaml, for unforget run folders; null for a Hugging Face folder. */
  config: CheckpointConfig | null;
  /** config.json, for models in the transformers layout. */
  hf: HFConfigInfo | null;
  dir: string;
  /** π's initial weights (regenerated from its run seed), for weights_l2_theta_pi_over_pi_init; null if unknown. */
  init: Transformer | null;
}

/** Everything the loop reads and updates, so that each of its steps is a function of the run. */
interface Run {
  cfg: Config;
  runDir: string;
  metricsFile: string;
  reporter: Reporter;
  model: Transformer;
  ref: Reference | null;
  /** Where a checkpoint of a Hugging Face architecture takes its bos/eos and tokenizer files from. */
  hfSave: { bosId: number | null; eosIds: number[]; tokenizerFrom: string | null } | null;
  lora: LoRA | null;
  replay: ReplaySource | null;
  stepper: Stepper;
  evalSets: EvalSet[];
  /** log.mcq's multiple-choice sets, scored at every evaluation. */
  mcq: McqSet[];
  trainStream: BatchStream;
  mixStream: BatchStream | null;
  mixRows: number;
  B: number;
  T: number;
  totalSteps: number | null;
  warmupSteps: number;
  // progress
  step: number;
  tokensSeen: number;
  stepTime: number;
  nextEvalAt: number;
  /** Sums of the step losses since the last evaluation, for train_loss*. */
  since: { loss: number; ntp: number; reg: number; steps: number };
  best: number;
  evalsSinceBest: number;
  first: Metrics | null;
  last: Metrics;
  lastSavedStep: number;
}

export async function train(cfgIn: Config, opts: TrainOptions = {}): Promise<TrainOutcome> {
  const mcq = await loadRunMcqSets(cfgIn);
  const run = await setUp(structuredClone(cfgIn), opts.reporter ?? silentReporter, mcq);
  const { cfg, reporter } = run;

  reporter.start(run.totalSteps, path.basename(run.runDir));
  if (!run.evalSets.some((s) => s.name === 'valid')) {
    reporter.log(`note: no validation split (data.num_tokens_valid=${cfg.data.num_tokens_valid} is under one sequence of T=${run.T}), so valid_* metrics are not reported`);
  }
  let stopReason: StopReason | null = null;
  let failure: NonFiniteLossError | null = null;
  try {
    evaluateAndSave(run, false);
    for (;;) {
      stopReason = stopBeforeStep(run, opts.shouldStop);
      if (stopReason) break;
      const lr = learningRate(run.step, cfg.opt.lr, run.warmupSteps, cfg.opt.lr_decay, run.totalSteps);
      const result = trainStep(run, lr);
      failure = divergence(run, result, lr);
      if (failure) {
        stopReason = 'nonfinite_loss';
        break;
      }
      advance(run, result);
      reporter.update(run.step, { loss: result.loss.toFixed(4), lr: lr.toPrecision(3) });
      if (run.tokensSeen >= run.nextEvalAt) {
        while (run.nextEvalAt <= run.tokensSeen) run.nextEvalAt += cfg.log.every_tokens;
        stopReason = earlyStop(run, evaluateAndSave(run, false));
        if (stopReason) break;
      }
      // Let signal handlers (Ctrl-C) run between steps.
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
    if (!failure && run.lastSavedStep !== run.step) evaluateAndSave(run, true);
  } finally {
    reporter.stop();
  }
  const summary = summarise(run, stopReason);
  if (failure) throw failure;
  return { runDir: run.runDir, summary };
}

// ---- set-up ------------------------------------------------------------------------------------

async function setUp(cfg: Config, reporter: Reporter, mcq: McqSet[]): Promise<Run> {
  if (cfg.run.threads !== null) native().setNumThreads(cfg.run.threads);
  if (!cfg.data.path) throw new ConfigError('data.path', 'is required (a .bin token file)');
  const chatTok = chatTokenizer(cfg);
  const ref = cfg.model.load_path ? loadReference(cfg.model.load_path, cfg.model.T) : null;
  const fresh = ref ? null : freshArch(cfg, cfg.data.path, chatTok);
  const mcfg: ArchConfig = ref ? ref.pi.cfg : fresh!.arch;
  Object.assign(cfg.model, { D: mcfg.D, L: mcfg.L, H: mcfg.H, T: mcfg.T, V: mcfg.V });
  const { T } = mcfg;
  // A token file's windows start with data.token_id, else the sidecar's dataset id, else the model's BOS.
  const bos = ref?.hf?.bosId ?? fresh?.hf?.bosId ?? null;
  if (T < 2) throw new ConfigError('model.T', 'must be at least 2 (position t predicts token t+1)');
  const B = cfg.opt.batch_size;

  // ---- data ----
  const split = { batchSize: B, numTokensValid: cfg.data.num_tokens_valid, splitSeed: cfg.data.split_seed };
  const train = chatTok
    ? await openChatJsonl(cfg, chatTok, mcfg, split, reporter)
    : openDataset(cfg.data.path, mcfg, { ...split, tokenId: cfg.data.token_id, what: 'data.token_id', fallbackTokenId: bos });
  const evalSets: EvalSet[] = [];
  if (train.numValidBatches > 0) evalSets.push({ name: 'valid', dataset: train });
  if ((cfg.stop.target_loss !== null || cfg.stop.early_stop_steps !== null) && train.numValidBatches === 0) {
    throw new ConfigError(cfg.stop.target_loss !== null ? 'stop.target_loss' : 'stop.early_stop_steps', 'needs a validation split: set data.num_tokens_valid');
  }
  // π's data as chat JSONL would need its tokenizer and format, which a checkpoint does not record.
  const prev = cfg.prev.path === null && ref?.config?.dataPath && !ref.config.dataPath.endsWith('.jsonl') ? ref.config : null;
  if (cfg.prev.path !== null) {
    if (!ref) throw new ConfigError('prev.path', 'measures forgetting of a loaded model: set model.load_path too');
    evalSets.push({ name: 'prev', dataset: await openPrevPath(cfg.prev.path, ref, mcfg, B, bos) });
  } else if (prev) {
    const p = openDataset(prev.dataPath!, mcfg, { ...prev.split, batchSize: prev.split.batchSize ?? 32, tokenId: prev.tokenId, what: 'previous data', fallbackTokenId: bos });
    if (p.numValidBatches > 0) evalSets.push({ name: 'prev', dataset: p });
  }
  let mix: TokenDataset | null = null;
  if (cfg.mix.path) {
    mix = openDataset(cfg.mix.path, mcfg, { ...split, tokenId: null, what: 'mix data', fallbackTokenId: bos });
    if (mix.numValidBatches > 0) evalSets.push({ name: 'mix', dataset: mix });
  }

  // ---- model, replay, optimizer ----
  // Under LoRA θ is π's own frozen weights with adapters hooked in; otherwise a trainable copy.
  const model = ref ? (cfg.model.lora_rank !== null ? ref.pi.sharing() : ref.pi.clone()) : fresh!.init();
  model.setTrainable(true);
  const rng = new Rng(cfg.run.seed);
  // LoRA: the base weights are frozen and only the adapters train; checkpoints hold W + A·B.
  const lora = cfg.model.lora_rank !== null ? new LoRA(model, cfg.model.lora_rank, cfg.run.seed + 7, { alpha: cfg.model.lora_alpha, targets: cfg.model.lora_targets }) : null;
  lora?.attach();
  const replay = await makeReplay(cfg, ref, prev, mcfg, bos, rng.fork('replay'), reporter);
  const stepper = new Stepper(model, lora ? lora.params : model.params, makeOptimizer(cfg.opt), cfg.reg.method, cfg.reg.coeff, ref?.pi ?? null, replay);

  // ---- length and schedule ----
  const tokensPerStep = B * T;
  const counts = archParamCounts(mcfg);
  let totalSteps: number | null = null;
  if (cfg.stop.num_tokens_train !== null) totalSteps = Math.ceil(cfg.stop.num_tokens_train / tokensPerStep);
  else if (cfg.stop.tokens_per_param !== null) totalSteps = Math.ceil((cfg.stop.tokens_per_param * (counts.n_param_nonembed + counts.n_param_embed)) / tokensPerStep);
  else if (cfg.stop.num_epochs !== null) totalSteps = Math.ceil(cfg.stop.num_epochs * train.numTrainBatches);

  // ---- run folder ----
  const runDir = makeRunDir(cfg);
  fs.mkdirSync(runDir, { recursive: true });
  cfg.run.id = path.basename(runDir);
  writeFileAtomic(path.join(runDir, 'config.yaml'), dumpConfig(cfg));

  return {
    cfg, runDir, metricsFile: path.join(runDir, 'metrics.jsonl'), reporter,
    model, ref, lora, replay, stepper, evalSets, mcq,
    hfSave: mcfg.family === 'gpt' ? null : {
      bosId: ref?.hf?.bosId ?? fresh?.hf?.bosId ?? null,
      eosIds: ref?.hf?.eosIds ?? fresh?.hf?.eosIds ?? [],
      tokenizerFrom: ref?.hf?.dir ?? null,
    },
    trainStream: new BatchStream(train, cfg.run.seed),
    mixStream: mix ? new BatchStream(mix, cfg.run.seed + 1) : null,
    mixRows: cfg.mix.path ? Math.floor(cfg.mix.coeff * B) : 0,
    B, T, totalSteps, warmupSteps: Math.ceil(cfg.opt.warmup_tokens / tokensPerStep),
    step: 0, tokensSeen: 0, stepTime: 0, nextEvalAt: cfg.log.every_tokens,
    since: { loss: 0, ntp: 0, reg: 0, steps: 0 },
    best: Infinity, evalsSinceBest: 0, first: null, last: {}, lastSavedStep: -1,
  };
}

/** π from a model folder, frozen; its config tells the model's dimensions and, for unforget runs, the data it learned. */
function loadReference(loadPath: string, T: number | null): Reference {
  const { model: pi, checkpoint: config, hf, dir } = loadModelFolder(loadPath, { T, frozen: true });
  pi.setTrainable(false);
  // ‖π − θ_init‖ needs π's own initialisation, which the run seed of a gpt run whose data is known regenerates.
  const known = pi.cfg.family === 'gpt' && config !== null && config.dataPath !== null && config.runSeed !== null;
  return { pi, config, hf, dir, init: known ? GPT.init(pi.cfg, config.runSeed!) : null };
}

/** The architecture of a run from scratch (gpt from D, L, H, or model.config's Hugging Face config) and its
 *  initialisation; V defaults to the data sidecar's vocab_size. */
function freshArch(cfg: Config, dataPath: string, chatTok: ModelTokenizer | null): { arch: ArchConfig; hf: HFConfigInfo | null; init: () => Transformer } {
  if (cfg.model.config !== null) {
    if (!fs.existsSync(cfg.model.config)) throw new ConfigError('model.config', `${cfg.model.config}: no such file (a Hugging Face config.json)`);
    const hf = readHFConfigFile(cfg.model.config, { T: cfg.model.T });
    // model.V, when set, replaces the config's vocab_size: that architecture with this data's tokenizer.
    const arch = cfg.model.V !== null ? { ...hf.arch, V: cfg.model.V } : hf.arch;
    return { arch, hf, init: () => initHFModel(arch, cfg.run.seed, hf.initializerRange, { padId: hf.padId }) };
  }
  const V = cfg.model.V ?? chatTok?.vocabSize ?? readTokenFile(dataPath).sidecar.vocab_size ?? null;
  if (V === null) throw new ConfigError('model.V', `is not set and ${dataPath} has no sidecar vocab_size`);
  const arch = gptArch({ D: cfg.model.D, L: cfg.model.L, H: cfg.model.H, T: cfg.model.T ?? 128, V });
  return { arch, hf: null, init: () => GPT.init(arch, cfg.run.seed) };
}

interface DatasetOptions {
  batchSize: number;
  numTokensValid: number;
  splitSeed: number;
  /** Overrides the sidecar's dataset token id; null keeps it. */
  tokenId: number | null;
  /** Where the token id came from, for the error when it is out of range. */
  what: string;
  /** The first token of each window when neither tokenId nor the sidecar gives one (the model's BOS). */
  fallbackTokenId?: number | null;
  /** Only evaluated: a file shorter than one batch is fine as long as it holds one window. */
  evalOnly?: boolean;
}

/**
 * The tokenizer of chat JSONL data (data.format chat or prompt_completion with a .jsonl data.path):
 * data.tokenizer, else model.load_path's; null for token files.
 */
function chatTokenizer(cfg: Config): ModelTokenizer | null {
  const { path: file, format, tokenizer } = cfg.data;
  const jsonl = file !== null && file.endsWith('.jsonl');
  if (!jsonl) return null;
  if (format === 'tokens') throw new ConfigError('data.format', `data.path ${file} is JSONL: set data.format=chat or data.format=prompt_completion (or tokenize it first)`);
  const dir = tokenizer ?? cfg.model.load_path;
  if (dir === null) throw new ConfigError('data.tokenizer', `is needed to tokenize ${file} (a folder or a tokenizer.json; or finetune a model folder that has one)`);
  const tok = loadModelTokenizer(dir);
  if (tok === null) throw new ConfigError(tokenizer !== null ? 'data.tokenizer' : 'model.load_path', `${dir} has no tokenizer.json to tokenize ${file}`);
  return tok;
}

/** Chat JSONL rendered, tokenised into masked rows of T, split and batched like a token file. */
async function openChatJsonl(cfg: Config, tok: ModelTokenizer, m: ArchConfig, split: Omit<DatasetOptions, 'tokenId' | 'what'>, reporter: Reporter): Promise<TokenDataset> {
  const file = cfg.data.path!;
  if (tok.vocabSize > m.V) throw new DataError(`${tok.file}: the tokenizer has ${tok.vocabSize} ids, more than the model's vocabulary of ${m.V}`);
  const rows = await readChatRows(file, tok, { format: cfg.data.format as 'chat' | 'prompt_completion', trainOn: cfg.data.train_on, T: m.T });
  reporter.log(`data: ${rows.rows} rows of T=${m.T} from ${rows.rows + rows.dropped} examples of ${file}; ${rows.dropped} longer ones dropped`);
  const tokenId = cfg.data.token_id ?? tok.bosId;
  return chatDataset(rows, { T: m.T, ...split, tokenId, source: file });
}

/** A token file cut into T-long sequences (or chat rows with their mask), split and batched (docs/contract.md §3). */
function openDataset(file: string, m: ArchConfig, o: DatasetOptions): TokenDataset {
  if (file.endsWith('.jsonl')) throw new DataError(`${file}: chat JSONL can only be the training data; tokenize it with 'unforget tokenize --chat' to use it here`);
  if (isChatRowsSidecar(readSidecar(file))) {
    const rows = readChatRowsFile(file, { V: m.V });
    const tokenId = o.tokenId ?? rows.sidecar.dataset_token_id ?? o.fallbackTokenId ?? null;
    if (tokenId !== null && tokenId >= m.V) throw new DataError(`${file}: dataset token id ${tokenId} (${o.what}) is ≥ vocabulary size ${m.V}`);
    return chatDataset(rows, { T: m.T, batchSize: o.batchSize, numTokensValid: o.numTokensValid, splitSeed: o.splitSeed, tokenId, source: file });
  }
  const tf = readTokenFile(file, { V: m.V });
  const tokenId = o.tokenId ?? tf.sidecar.dataset_token_id ?? o.fallbackTokenId ?? null;
  if (o.evalOnly) return evalOnlyDataset(tf.tokens, file, m, o.batchSize, tokenId, o.what);
  if (tokenId !== null && tokenId >= m.V) throw new DataError(`${file}: dataset token id ${tokenId} (${o.what}) is ≥ vocabulary size ${m.V}`);
  return new TokenDataset(tf.tokens, { T: m.T, batchSize: o.batchSize, numTokensValid: o.numTokensValid, splitSeed: o.splitSeed, tokenId, source: file });
}

/** Every window of `tokens` as one evaluation set (batches of up to `batchSize`; no training split). */
function evalOnlyDataset(tokens: TokenIds, file: string, m: ArchConfig, batchSize: number, tokenId: number | null, what: string): TokenDataset {
  const windows = Math.floor(tokens.length / m.T);
  if (windows === 0) throw new DataError(`${file}: holds ${tokens.length} tokens, fewer than one sequence of T=${m.T} (${what})`);
  if (tokenId !== null && tokenId >= m.V) throw new DataError(`${file}: start token id ${tokenId} (${what}) is ≥ vocabulary size ${m.V}`);
  const B = Math.min(batchSize, windows);
  return new TokenDataset(tokens, { T: m.T, batchSize: B, numTokensValid: Math.floor(windows / B) * B * m.T, splitSeed: 0, tokenId, source: file, allowNoTrain: true });
}

/**
 * The tokenizer of the model being finetuned: the one beside model.load_path, else (a PEFT adapter, a run folder
 * without tokenizer files) its Hugging Face base folder's; null when neither has a tokenizer.json.
 */
function referenceTokenizer(ref: Reference): ModelTokenizer | null {
  return loadModelTokenizer(ref.dir) ?? (ref.hf && ref.hf.dir !== ref.dir ? loadModelTokenizer(ref.hf.dir) : null);
}

/**
 * prev.path, the old data forgetting is measured on, as one evaluation set of all its windows: a token file, or
 * text / JSONL of {"text": ...} tokenised with the model's own tokenizer. Windows start with the BOS where the
 * model has one (else, for unforget checkpoints, their dataset token id), as its training sequences did.
 */
async function openPrevPath(file: string, ref: Reference, m: ArchConfig, B: number, bos: number | null): Promise<TokenDataset> {
  if (!fs.existsSync(file)) throw new ConfigError('prev.path', `${file}: no such file`);
  if (!isTextData(file)) {
    return openDataset(file, m, { batchSize: B, numTokensValid: 0, splitSeed: 0, tokenId: null, what: 'prev.path', fallbackTokenId: bos, evalOnly: true });
  }
  const tok = referenceTokenizer(ref);
  if (tok === null) throw new ConfigError('prev.path', `${file} is text, but ${ref.dir} has no tokenizer.json to tokenize it with; give a token file`);
  const tokens = await tokenizeTextFile(file, tok, 'prev.path');
  checkTokenIds(tokens, m.V, `${file} (tokenized with ${tok.file})`);
  const start = bos ?? (ref.config ? checkpointTokenId(ref.config) : null);
  return evalOnlyDataset(tokens, file, m, B, start, 'prev.path');
}

/** Resolve the run folder `<model.save_dir or log.dir>/<run.id>`; refuses an existing non-empty folder. */
export function makeRunDir(cfg: Config, hint = 'choose another run.id'): string {
  const id = cfg.run.id ?? generateRunId();
  const dir = path.join(cfg.model.save_dir ?? cfg.log.dir, id);
  if (fs.existsSync(dir) && fs.readdirSync(dir).length > 0) {
    throw new UnforgetError(`run folder ${dir} already exists and is not empty; ${hint}`);
  }
  return dir;
}

/** The replay source of reg.method (docs/contract.md §2), or null when the method replays nothing. */
async function makeReplay(cfg: Config, ref: Reference | null, prev: CheckpointConfig | null, m: ArchConfig, bos: number | null, rng: Rng, reporter: Reporter): Promise<ReplaySource | null> {
  const method = cfg.reg.method;
  if (method === null || method === 'kl_dwn') {
    if (method === 'kl_dwn' && !ref) throw new ConfigError('reg.method', 'kl_dwn needs model.load_path (the reference model π)');
    return null;
  }
  const B = cfg.opt.batch_size;
  const rows = method === 'replace' ? Math.floor(cfg.reg.coeff * B) : cfg.reg.batch_size ?? B;
  if (method === 'replace') {
    if (cfg.reg.coeff > 1) throw new ConfigError('reg.coeff', `with reg.method=replace is the replaced share of each batch and must be ≤ 1, got ${cfg.reg.coeff}`);
    if (rows === 0) throw new ConfigError('reg.coeff', `with reg.method=replace replaces floor(${cfg.reg.coeff} · ${B}) = 0 rows of each batch; raise it to at least ${(1 / B).toPrecision(3)}, or set reg.method=null`);
  }
  if (cfg.reg.synth) {
    if (!ref) throw new ConfigError('reg.synth', 'self-generated replay needs model.load_path (the model π that samples it)');
    const prompt = await replayPrompt(cfg, ref, prev, bos);
    if (prompt.length > 1) reporter.log(`replay: π samples from the prompt ${JSON.stringify(cfg.reg.prompt)}, ids [${prompt.join(', ')}]`);
    return new SynthReplay(ref.pi, rows, cfg.reg.buffer, [prompt], cfg.reg.temperature, rng, { topK: cfg.reg.top_k ?? 0, topP: cfg.reg.top_p ?? 1 });
  }
  const replayPath = cfg.reg.path ?? prev?.dataPath ?? null;
  if (!replayPath) throw new ConfigError('reg.path', `reg.method=${method} with real replay needs previous data: set reg.path or finetune from a checkpoint (model.load_path)`);
  // Batch size 1 here: the split only has to exist; replay rows are drawn from its training part.
  const split = prev?.split;
  const ds = openDataset(replayPath, m, { batchSize: 1, numTokensValid: split?.numTokensValid ?? 0, splitSeed: split?.splitSeed ?? 0, tokenId: prev?.tokenId ?? null, what: 'replay data', fallbackTokenId: bos });
  const pool = ds.trainIndices;
  if (rows > pool.length) {
    throw new ConfigError(cfg.reg.batch_size !== null ? 'reg.batch_size' : 'opt.batch_size', `${rows} rows per replay batch, but the real replay data's training split (${replayPath}) has only ${pool.length} sequences`);
  }
  const order = new Rng(cfg.run.seed + 2);
  let perm = order.permutation(pool.length), pos = 0;
  const idx = new Int32Array(rows);
  return new RealReplay(rows, () => {
    for (let r = 0; r < rows; r++) {
      if (pos >= perm.length) { perm = order.permutation(pool.length); pos = 0; }
      idx[r] = pool[perm[pos++]!]!;
    }
    return ds.sequences(idx);
  });
}

/**
 * The tokens self-generated replay starts from (reg.prompt): the BOS or EOS of a Hugging Face model, a token id, a
 * text (encoded with the model's tokenizer, after the BOS where the model has one), or (default) the previous
 * data's dataset token id for unforget checkpoints and the BOS otherwise.
 */
async function replayPrompt(cfg: Config, ref: Reference, prev: CheckpointConfig | null, bos: number | null): Promise<number[]> {
  const p = cfg.reg.prompt;
  const V = ref.pi.cfg.V;
  let id: number | null;
  if (p === null) {
    id = prev ? checkpointTokenId(prev) : ref.config ? checkpointTokenId(ref.config) : null;
    id ??= bos;
    if (id === null) {
      throw new ConfigError('reg.synth', "self-generated replay needs a start token: the model has no BOS and neither the checkpoint's data.token_id nor its data sidecar gives a dataset token id; set reg.prompt to eos or a token id");
    }
  } else if (p === 'bos') {
    if (bos === null) throw new ConfigError('reg.prompt', `bos: ${ref.dir} has no BOS token (bos_token_id is null); use reg.prompt=eos or a token id`);
    id = bos;
  } else if (p === 'eos') {
    id = ref.hf?.eosIds[0] ?? null;
    if (id === null) throw new ConfigError('reg.prompt', `eos: ${ref.dir} has no EOS token (eos_token_id); use a token id`);
  } else if (typeof p === 'number') {
    id = p;
  } else {
    return textPrompt(p, ref, bos);
  }
  if (id < 0 || id >= V) throw new ConfigError('reg.prompt', `token id ${id} is outside the vocabulary [0, ${V})`);
  return [id];
}

/** reg.prompt as a text: its tokens without special tokens added, after the BOS where the model has one. */
async function textPrompt(text: string, ref: Reference, bos: number | null): Promise<number[]> {
  const { T, V } = ref.pi.cfg;
  const tok = referenceTokenizer(ref);
  if (tok === null) throw new ConfigError('reg.prompt', `a text prompt needs the model's tokenizer, and ${ref.dir} has no tokenizer.json; use bos, eos or a token id`);
  const ids = [...(bos !== null ? [bos] : []), ...(await tok.encode(text, { addSpecialTokens: false }))];
  if (ids.length === 0) throw new ConfigError('reg.prompt', `${JSON.stringify(text)} encodes to no tokens`);
  const bad = ids.find((id) => id >= V);
  if (bad !== undefined) throw new ConfigError('reg.prompt', `${JSON.stringify(text)} encodes to token id ${bad} (${tok.file}), outside the model's vocabulary [0, ${V})`);
  if (ids.length >= T) throw new ConfigError('reg.prompt', `${JSON.stringify(text)} is ${ids.length} tokens long, leaving nothing to sample within T=${T}`);
  return ids;
}

// ---- the loop's steps --------------------------------------------------------------------------

/** The stop criteria checked before each step: the run's length, its time budget, an interrupt. */
function stopBeforeStep(run: Run, shouldStop?: () => boolean): StopReason | null {
  if (run.totalSteps !== null && run.step >= run.totalSteps) return 'train_length';
  if (run.cfg.stop.train_time !== null && run.stepTime >= run.cfg.stop.train_time) return 'train_time';
  if (shouldStop?.()) return 'interrupted';
  return null;
}

/** One optimisation step on the next batch (with mix.coeff's rows from the second dataset). */
function trainStep(run: Run, lr: number): StepResult {
  const t0 = performance.now();
  const { ids, mask } = run.trainStream.nextMasked();
  if (run.mixStream && run.mixRows > 0) {
    const at = (run.B - run.mixRows) * run.T;
    ids.set(run.mixStream.nextBatch().subarray(0, run.mixRows * run.T), at);
    mask?.fill(1, at);
  }
  const r = run.stepper.step(ids, run.B, run.T, lr, mask ?? undefined);
  run.stepTime += (performance.now() - t0) / 1000;
  return r;
}

/** The error that stops a run whose loss or weights became non-finite; neither may reach a checkpoint. */
function divergence(run: Run, r: StepResult, lr: number): NonFiniteLossError | null {
  const trainable = run.stepper.trainable;
  // A finite loss can still come with an update that overflows the weights.
  const what = !Number.isFinite(r.loss)
    ? `training loss became ${r.loss}`
    : !Number.isFinite(native().sumSquares(trainable.data, trainable.size))
      ? `training diverged (loss ${r.loss.toPrecision(4)}; the update made the weights non-finite)`
      : null;
  if (!what) return null;
  return new NonFiniteLossError(`${what} at step ${run.step} (lr=${lr.toPrecision(3)}); stopped and kept the checkpoint of step ${run.lastSavedStep} in ${run.runDir}`);
}

function advance(run: Run, r: StepResult): void {
  run.step++;
  run.tokensSeen += run.B * run.T;
  run.since.loss += r.loss;
  run.since.ntp += r.ntp;
  run.since.reg += r.reg;
  run.since.steps++;
}

/** An evaluation, recorded and checkpointed: every evaluation also saves the weights it measured. */
function evaluateAndSave(run: Run, final: boolean): Metrics {
  // Under LoRA: a plain model holding W + A·B (gpt), or, for the Hugging Face family, none (its checkpoint is the
  // adapter, and the weight norms come from the adapter stack by stack).
  const theta = run.lora && !run.model.outIn ? run.lora.merged() : run.model;
  const metrics = evaluate(run, theta);
  record(run, metrics, final);
  checkpoint(run, theta);
  return metrics;
}

/** The metrics of docs/contract.md §5 at this point of the run; `theta` is the model as trained so far. */
function evaluate(run: Run, theta: Transformer): Metrics {
  const { cfg, since } = run;
  const m: Metrics = {
    step: run.step,
    train_tokens_seen: run.tokensSeen,
    train_time_elapsed: run.stepTime,
    epoch: run.trainStream.fractionalEpoch,
    lr: learningRate(Math.max(0, run.step - 1), cfg.opt.lr, run.warmupSteps, cfg.opt.lr_decay, run.totalSteps),
  };
  if (since.steps > 0) {
    m.train_loss = since.loss / since.steps;
    m.train_loss_ntp = since.ntp / since.steps;
    m.train_loss_reg = since.reg / since.steps;
  }
  const pi = run.ref?.pi ?? null;
  for (const s of run.evalSets) {
    const r = evaluateSet(run.model, validBatches(s.dataset), run.T, pi);
    m[`${s.name}_ntp`] = r.ntp;
    m[`${s.name}_ntp_h2`] = r.ntp_h2;
    if (r.kl !== undefined) m[`${s.name}_kl`] = r.kl;
  }
  for (const s of run.mcq) {
    const r = mcqAccuracy(s.prepared, scoreMcq(run.model, s.prepared, run.B));
    m[`mcq_${s.name}_acc`] = r.acc;
    if (r.acc_norm !== undefined) m[`mcq_${s.name}_acc_norm`] = r.acc_norm;
  }
  const k = native();
  if (run.lora && run.model.outIn) m.weights_l2_theta = run.lora.norms().theta;
  else m.weights_l2_theta = Math.sqrt(k.sumSquares(theta.params.data, theta.params.size));
  if (pi && run.ref?.init) {
    const num = Math.sqrt(k.diffSumSquares(theta.params.data, pi.params.data, theta.params.size));
    const den = Math.sqrt(k.diffSumSquares(pi.params.data, run.ref.init.params.data, pi.params.size));
    m.weights_l2_theta_pi_over_pi_init = num / den;
  }
  if (run.replay) {
    m.replay_sample_time = run.replay.seconds;
    m.replay_sequences = run.replay.sampled;
  }
  return m;
}

function* validBatches(d: TokenDataset): Generator<MaskedBatch> {
  for (let i = 0; i < d.numValidBatches; i++) yield { ids: d.validBatch(i), mask: d.validMask(i) };
}

/** Appends the metrics to metrics.jsonl, shows them, and keeps the best valid_ntp for early stopping. */
function record(run: Run, m: Metrics, final: boolean): void {
  appendJsonLine(run.metricsFile, m);
  run.since = { loss: 0, ntp: 0, reg: 0, steps: 0 };
  run.first ??= m;
  run.last = m;
  const shown = ['train_loss', 'valid_ntp', 'prev_ntp', 'valid_kl'].filter((k) => m[k] !== undefined).map((k) => `${k}=${m[k]!.toFixed(4)}`);
  run.reporter.log(`step ${run.step}${final ? ' (end)' : ''}: tokens=${run.tokensSeen} ${shown.join(' ')}`);
  if (m.valid_ntp !== undefined) {
    if (m.valid_ntp < run.best - 1e-12) {
      run.best = m.valid_ntp;
      run.evalsSinceBest = 0;
    } else run.evalsSinceBest++;
  }
}

/** Writes model.safetensors (atomically) with the weights just evaluated. */
function checkpoint(run: Run, theta: Transformer): void {
  if (run.hfSave && run.lora) {
    // As PEFT saves it: the adapters alone, naming the base they belong to.
    writePeftAdapter(run.runDir, {
      r: run.lora.rank, alpha: run.lora.rank * run.lora.scaling,
      targetModules: run.lora.modules.map((m) => m.name), baseModel: path.resolve(run.cfg.model.load_path!),
    }, peftTensors(run.lora));
  } else if (run.hfSave) saveHFModel(run.runDir, theta, run.hfSave);
  else saveWeights(run.runDir, theta);
  run.lastSavedStep = run.step;
}

/** The stop criteria checked after an evaluation: the target loss reached, or no new best for too long. */
function earlyStop(run: Run, m: Metrics): StopReason | null {
  const { target_loss, early_stop_steps } = run.cfg.stop;
  if (target_loss !== null && m.valid_ntp !== undefined && m.valid_ntp <= target_loss) return 'target_loss';
  if (early_stop_steps !== null && run.evalsSinceBest >= early_stop_steps) return 'early_stop';
  return null;
}

/** summary.json: the last metrics, why the run stopped, its speed, parameter counts and the forgetting. */
function summarise(run: Run, stopReason: StopReason | null): Record<string, unknown> {
  const summary: Record<string, unknown> = {
    ...run.last,
    stop_reason: stopReason,
    steps: run.step,
    tokens_per_s: run.stepTime > 0 ? run.tokensSeen / run.stepTime : null,
    ...archParamCounts(run.model.cfg),
    run_dir: run.runDir,
  };
  const start = run.first?.prev_ntp;
  if (start !== undefined) {
    summary.prev_ntp_start = start;
    summary.forgetting = (run.last.prev_ntp ?? NaN) - start;
  }
  for (const s of run.mcq) {
    summary[`mcq_${s.name}_acc_start`] = run.first?.[`mcq_${s.name}_acc`] ?? null;
    summary[`mcq_${s.name}_acc_end`] = run.last[`mcq_${s.name}_acc`] ?? null;
  }
  writeJsonAtomic(path.join(run.runDir, 'summary.json'), summary);
  return summary;
}
