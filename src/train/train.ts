/**
 * A training run, read top to bottom: resolve the config, load data and model (and the frozen
 * reference π when finetuning), then loop — batch, replay, step, log, evaluate, stop — and save.
 */
import fs from 'node:fs';
import path from 'node:path';
import { native } from '../backend/native.js';
import { dumpConfig, generateRunId } from '../config/load.js';
import type { Config } from '../config/schema.js';
import { BatchStream, TokenDataset, readTokenFile } from '../data/tokens.js';
import { ConfigError, DataError, NonFiniteLossError, UnforgetError } from '../errors.js';
import { appendJsonLine, writeFileAtomic, writeJsonAtomic } from '../io/atomic.js';
import { loadModel, modelConfigOf, readCheckpointConfig, saveWeights, checkpointPaths } from '../model/checkpoint.js';
import { GPT, paramCounts, type GPTConfig } from '../model/gpt.js';
import { LoRA } from '../model/lora.js';
import { RandomReplay, RealReplay, SynthReplay, type ReplaySource } from '../replay/replay.js';
import { Rng } from '../util/rng.js';
import { evaluate, type EvalResult } from './losses.js';
import { learningRate, makeOptimizer } from './optim.js';
import { Stepper } from './step.js';

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

/** An evaluation set: batches of one data split. */
interface EvalSet {
  name: string;
  dataset: TokenDataset;
  B: number;
  T: number;
}

function* validBatches(s: EvalSet): Generator<Int32Array> {
  for (let i = 0; i < s.dataset.numValidBatches; i++) yield s.dataset.validBatch(i);
}

/** The previous run's data, as recorded in its config.yaml. */
interface PrevData {
  path: string;
  tokenId: number | null;
  splitSeed: number;
  numTokensValid: number;
  batchSize: number;
  runSeed: number | null;
}

function prevDataOf(saved: Record<string, unknown>, configFile: string): PrevData | null {
  const data = (saved.data ?? {}) as Record<string, unknown>;
  const opt = (saved.opt ?? {}) as Record<string, unknown>;
  const run = (saved.run ?? {}) as Record<string, unknown>;
  if (typeof data.path !== 'string') return null;
  const num = (v: unknown, d: number) => (typeof v === 'number' ? v : d);
  // A relative data path in a checkpoint's config is relative to where that run was started;
  // try it as given, then relative to the checkpoint folder.
  let p = data.path;
  if (!fs.existsSync(p) && !path.isAbsolute(p)) {
    const alt = path.join(path.dirname(configFile), p);
    if (fs.existsSync(alt)) p = alt;
  }
  return {
    path: p,
    tokenId: typeof data.token_id === 'number' ? data.token_id : null,
    splitSeed: num(data.split_seed, 0),
    numTokensValid: num(data.num_tokens_valid, 0),
    batchSize: num(opt.batch_size, 32),
    runSeed: typeof run.seed === 'number' ? run.seed : null,
  };
}

function openDataset(file: string, V: number, T: number, B: number, numTokensValid: number, splitSeed: number, tokenIdOverride: number | null, what: string) {
  const tf = readTokenFile(file, { V });
  const tokenId = tokenIdOverride ?? tf.sidecar.dataset_token_id ?? null;
  if (tokenId !== null && tokenId >= V) throw new DataError(`${file}: dataset token id ${tokenId} (${what}) is ≥ vocabulary size ${V}`);
  const dataset = new TokenDataset(tf.tokens, { T, batchSize: B, numTokensValid, splitSeed, tokenId, source: file });
  return { file: tf, dataset, tokenId };
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

export async function train(cfgIn: Config, opts: TrainOptions = {}): Promise<TrainOutcome> {
  const reporter = opts.reporter ?? silentReporter;
  const cfg: Config = structuredClone(cfgIn);
  if (cfg.run.threads !== null) native().setNumThreads(cfg.run.threads);
  if (!cfg.data.path) throw new ConfigError('data.path', 'is required (a .bin token file)');

  // ---- the reference model π (finetuning) and the model θ ----
  let pi: GPT | null = null;
  let prev: PrevData | null = null;
  let thetaInit: GPT | null = null;
  let mcfg: GPTConfig;
  if (cfg.model.load_path) {
    const saved = readCheckpointConfig(cfg.model.load_path);
    const cfile = checkpointPaths(cfg.model.load_path).config;
    mcfg = modelConfigOf(saved, cfile);
    pi = loadModel(cfg.model.load_path);
    pi.setTrainable(false);
    prev = prevDataOf(saved, cfile);
    // ‖π − θ_init‖ needs π's own initialisation, which its run seed regenerates exactly.
    if (prev?.runSeed !== null && prev?.runSeed !== undefined) thetaInit = GPT.init(mcfg, prev.runSeed);
    Object.assign(cfg.model, mcfg);
  } else {
    let V = cfg.model.V;
    if (V === null) {
      V = readTokenFile(cfg.data.path).sidecar.vocab_size ?? null;
      if (V === null) throw new ConfigError('model.V', `is not set and ${cfg.data.path} has no sidecar vocab_size`);
      cfg.model.V = V;
    }
    mcfg = { D: cfg.model.D, L: cfg.model.L, H: cfg.model.H, T: cfg.model.T, V };
  }
  const { T, V } = mcfg;
  if (T < 2) throw new ConfigError('model.T', 'must be at least 2 (position t predicts token t+1)');
  const B = cfg.opt.batch_size;

  // ---- data ----
  const train = openDataset(cfg.data.path, V, T, B, cfg.data.num_tokens_valid, cfg.data.split_seed, cfg.data.token_id, 'data.token_id');
  const evalSets: EvalSet[] = [];
  if (train.dataset.numValidBatches > 0) evalSets.push({ name: 'valid', dataset: train.dataset, B, T });
  if ((cfg.stop.target_loss !== null || cfg.stop.early_stop_steps !== null) && train.dataset.numValidBatches === 0) {
    throw new ConfigError(cfg.stop.target_loss !== null ? 'stop.target_loss' : 'stop.early_stop_steps', 'needs a validation split: set data.num_tokens_valid');
  }
  let prevSet: EvalSet | null = null;
  if (prev) {
    const p = openDataset(prev.path, V, T, prev.batchSize, prev.numTokensValid, prev.splitSeed, prev.tokenId, 'previous data');
    if (p.dataset.numValidBatches > 0) {
      prevSet = { name: 'prev', dataset: p.dataset, B: prev.batchSize, T };
      evalSets.push(prevSet);
    }
  }
  let mix: ReturnType<typeof openDataset> | null = null;
  const mixRows = cfg.mix.path ? Math.floor(cfg.mix.coeff * B) : 0;
  if (cfg.mix.path) {
    mix = openDataset(cfg.mix.path, V, T, B, cfg.data.num_tokens_valid, cfg.data.split_seed, null, 'mix data');
    if (mix.dataset.numValidBatches > 0) evalSets.push({ name: 'mix', dataset: mix.dataset, B, T });
  }

  // ---- model, replay, optimizer ----
  const model = pi ? pi.clone() : GPT.init(mcfg, cfg.run.seed);
  model.setTrainable(true);
  const rng = new Rng(cfg.run.seed);
  // LoRA: the base weights are frozen and only the adapters train; checkpoints hold W + A·B.
  const lora = cfg.model.lora_rank !== null ? new LoRA(model, cfg.model.lora_rank, cfg.run.seed + 7) : null;
  lora?.attach();
  const effective = () => (lora ? lora.merged() : model);
  const replay = makeReplay(cfg, pi, prev, T, V, rng.fork('replay'));
  const stepper = new Stepper(model, lora ? lora.params : model.params, makeOptimizer(cfg.opt), cfg.reg.method, cfg.reg.coeff, pi, replay);

  // ---- length and schedule ----
  const tokensPerStep = B * T;
  const counts = paramCounts(mcfg);
  let totalSteps: number | null = null;
  if (cfg.stop.num_tokens_train !== null) totalSteps = Math.ceil(cfg.stop.num_tokens_train / tokensPerStep);
  else if (cfg.stop.tokens_per_param !== null) totalSteps = Math.ceil((cfg.stop.tokens_per_param * (counts.n_param_nonembed + counts.n_param_embed)) / tokensPerStep);
  else if (cfg.stop.num_epochs !== null) totalSteps = Math.ceil(cfg.stop.num_epochs * train.dataset.numTrainBatches);
  const warmupSteps = Math.ceil(cfg.opt.warmup_tokens / tokensPerStep);

  // ---- run folder ----
  const runDir = makeRunDir(cfg);
  fs.mkdirSync(runDir, { recursive: true });
  cfg.run.id = path.basename(runDir);
  writeFileAtomic(path.join(runDir, 'config.yaml'), dumpConfig(cfg));
  const metricsFile = path.join(runDir, 'metrics.jsonl');

  // ---- evaluation ----
  const evalAll = (): Record<string, number> => {
    const out: Record<string, number> = {};
    for (const s of evalSets) {
      const r: EvalResult = evaluate(model, validBatches(s), s.T, pi);
      out[`${s.name}_ntp`] = r.ntp;
      out[`${s.name}_ntp_h2`] = r.ntp_h2;
      if (r.kl !== undefined) out[`${s.name}_kl`] = r.kl;
    }
    return out;
  };
  const weightsFinite = () => Number.isFinite(native().sumSquares(stepper.trainable.data, stepper.trainable.size));
  const weightNorms = (theta: GPT): Record<string, number> => {
    const k = native();
    const out: Record<string, number> = { weights_l2_theta: Math.sqrt(k.sumSquares(theta.params.data, theta.params.size)) };
    if (pi && thetaInit) {
      const num = Math.sqrt(k.diffSumSquares(theta.params.data, pi.params.data, theta.params.size));
      const den = Math.sqrt(k.diffSumSquares(pi.params.data, thetaInit.params.data, pi.params.size));
      out.weights_l2_theta_pi_over_pi_init = num / den;
    }
    return out;
  };

  // ---- the loop ----
  let step = 0, tokensSeen = 0, stepTime = 0;
  let sumLoss = 0, sumNtp = 0, sumReg = 0, nSince = 0;
  let nextLogAt = cfg.log.every_tokens;
  let best = Infinity, evalsSinceBest = 0;
  let stopReason: StopReason | null = null;
  let last: Record<string, number> = {};
  let lastSavedStep = -1;
  const start: Record<string, number> = {};
  const trainStream = new BatchStream(train.dataset, cfg.run.seed);
  const mixStream = mix ? new BatchStream(mix.dataset, cfg.run.seed + 1) : null;

  const logEvent = (final: boolean) => {
    const rec: Record<string, number> = {
      step,
      train_tokens_seen: tokensSeen,
      train_time_elapsed: stepTime,
      epoch: trainStream.fractionalEpoch,
      lr: learningRate(Math.max(0, step - 1), cfg.opt.lr, warmupSteps, cfg.opt.lr_decay, totalSteps),
    };
    if (nSince > 0) {
      rec.train_loss = sumLoss / nSince;
      rec.train_loss_ntp = sumNtp / nSince;
      rec.train_loss_reg = sumReg / nSince;
    }
    const theta = effective();
    Object.assign(rec, evalAll(), weightNorms(theta));
    if (replay) {
      rec.replay_sample_time = replay.seconds;
      rec.replay_sequences = replay.sampled;
    }
    sumLoss = sumNtp = sumReg = nSince = 0;
    appendJsonLine(metricsFile, rec);
    last = rec;
    if (step === 0) Object.assign(start, rec);
    saveWeights(runDir, theta);
    lastSavedStep = step;
    const shown = ['train_loss', 'valid_ntp', 'prev_ntp', 'valid_kl'].filter((k) => rec[k] !== undefined).map((k) => `${k}=${rec[k]!.toFixed(4)}`);
    reporter.log(`step ${step}${final ? ' (end)' : ''}: tokens=${tokensSeen} ${shown.join(' ')}`);
    if (rec.valid_ntp !== undefined) {
      if (rec.valid_ntp < best - 1e-12) {
        best = rec.valid_ntp;
        evalsSinceBest = 0;
      } else evalsSinceBest++;
    }
    return rec;
  };

  reporter.start(totalSteps, path.basename(runDir));
  if (train.dataset.numValidBatches === 0) {
    reporter.log(`note: no validation split (data.num_tokens_valid=${cfg.data.num_tokens_valid} is under one sequence of T=${T}), so valid_* metrics are not reported`);
  }
  logEvent(false);
  let failure: NonFiniteLossError | null = null;
  try {
    for (;;) {
      if (totalSteps !== null && step >= totalSteps) { stopReason = 'train_length'; break; }
      if (cfg.stop.train_time !== null && stepTime >= cfg.stop.train_time) { stopReason = 'train_time'; break; }
      if (opts.shouldStop?.()) { stopReason = 'interrupted'; break; }
      const lr = learningRate(step, cfg.opt.lr, warmupSteps, cfg.opt.lr_decay, totalSteps);
      const t0 = performance.now();
      const ids = trainStream.nextBatch();
      if (mixStream && mixRows > 0) ids.set(mixStream.nextBatch().subarray(0, mixRows * T), (B - mixRows) * T);
      const r = stepper.step(ids, B, T, lr);
      stepTime += (performance.now() - t0) / 1000;
      // A finite loss can still come with an update that overflows the weights; neither may reach
      // a checkpoint.
      const what = !Number.isFinite(r.loss)
        ? `training loss became ${r.loss}`
        : !weightsFinite()
          ? `training diverged (loss ${r.loss.toPrecision(4)}; the update made the weights non-finite)`
          : null;
      if (what) {
        stopReason = 'nonfinite_loss';
        failure = new NonFiniteLossError(
          `${what} at step ${step} (lr=${lr.toPrecision(3)}); stopped and kept the checkpoint of step ${lastSavedStep} in ${runDir}`,
        );
        break;
      }
      step++;
      tokensSeen += tokensPerStep;
      sumLoss += r.loss;
      sumNtp += r.ntp;
      sumReg += r.reg;
      nSince++;
      reporter.update(step, { loss: r.loss.toFixed(4), lr: lr.toPrecision(3) });
      if (tokensSeen >= nextLogAt) {
        while (nextLogAt <= tokensSeen) nextLogAt += cfg.log.every_tokens;
        const rec = logEvent(false);
        if (cfg.stop.target_loss !== null && rec.valid_ntp !== undefined && rec.valid_ntp <= cfg.stop.target_loss) { stopReason = 'target_loss'; break; }
        if (cfg.stop.early_stop_steps !== null && evalsSinceBest >= cfg.stop.early_stop_steps) { stopReason = 'early_stop'; break; }
      }
      // Let signal handlers (Ctrl-C) run between steps.
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
    if (!failure && lastSavedStep !== step) logEvent(true);
  } finally {
    reporter.stop();
  }

  // ---- summary ----
  const summary: Record<string, unknown> = {
    ...last,
    stop_reason: stopReason,
    steps: step,
    tokens_per_s: stepTime > 0 ? tokensSeen / stepTime : null,
    ...counts,
    run_dir: runDir,
  };
  if (prevSet && start.prev_ntp !== undefined) {
    summary.prev_ntp_start = start.prev_ntp;
    summary.forgetting = (last.prev_ntp ?? NaN) - start.prev_ntp;
  }
  writeJsonAtomic(path.join(runDir, 'summary.json'), summary);
  if (failure) throw failure;
  return { runDir, summary };
}

function makeReplay(cfg: Config, pi: GPT | null, prev: PrevData | null, T: number, V: number, rng: Rng): ReplaySource | null {
  const method = cfg.reg.method;
  if (method === null || method === 'kl_dwn') {
    if (method === 'kl_dwn' && !pi) throw new ConfigError('reg.method', 'kl_dwn needs model.load_path (the reference model π)');
    return null;
  }
  const B = cfg.opt.batch_size;
  const rows = method === 'replace' ? Math.floor(cfg.reg.coeff * B) : cfg.reg.batch_size ?? B;
  if (method === 'replace') {
    if (cfg.reg.coeff > 1) throw new ConfigError('reg.coeff', `with reg.method=replace is the replaced share of each batch and must be ≤ 1, got ${cfg.reg.coeff}`);
    if (rows === 0) return null;
  }
  if (cfg.reg.synth) {
    if (!pi) throw new ConfigError('reg.synth', 'self-generated replay needs model.load_path (the model π that samples it)');
    const tokenId = prev?.tokenId ?? (prev ? readTokenFile(prev.path).sidecar.dataset_token_id : null);
    if (tokenId === null || tokenId === undefined) {
      throw new ConfigError('reg.synth', "needs the previous dataset's token id: neither the checkpoint's data.token_id nor its data sidecar gives one");
    }
    return new SynthReplay(pi, rows, cfg.reg.buffer, [tokenId], cfg.reg.temperature, rng);
  }
  const replayPath = cfg.reg.path ?? prev?.path ?? null;
  if (!replayPath) throw new ConfigError('reg.path', `reg.method=${method} with real replay needs previous data: set reg.path or finetune from a checkpoint (model.load_path)`);
  // Batch size 1 here: the split only has to exist; replay rows are drawn from its training part.
  const ds = openDataset(replayPath, V, T, 1, prev?.numTokensValid ?? 0, prev?.splitSeed ?? 0, prev?.tokenId ?? null, 'replay data').dataset;
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

export { RandomReplay };
