/**
 * Grid experiments as stages of independent training runs. A stage is a list of points, each an
 * `{id, config}` whose run folder is `<experiment>/<id>` and whose config is also written beside it as
 * `<experiment>/<id>.yaml`, a file `unforget train` accepts as it is. One function, `runStage`, runs a
 * stage: points whose folder already holds a finished summary.json are skipped (an interrupted
 * experiment resumes where it stopped), a half-written folder is cleared and run again, and the rest
 * go to an executor — in-process `train()` by default, or any function given the pending
 * `{id, argv, configFile, runDir}` tasks (a cluster scheduler running `unforget train CONFIG`).
 */
import fs from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';
import { dumpConfig } from '../../config/load.js';
import type { Config } from '../../config/schema.js';
import { ConfigError, NonFiniteLossError, UnforgetError } from '../../errors.js';
import { writeFileAtomic } from '../../io/atomic.js';
import { archParamCounts, gptArch } from '../../model/arch.js';
import { makeRunDir, silentReporter, train, type Reporter } from '../../train/train.js';
import { runTasks, type ExecutorName } from '../../sweep/executor.js';
import type { SlurmOptions } from '../../sweep/slurm.js';
import { atFirstCrossing, childConfig } from './common.js';
import { readMetrics } from './data.js';

export interface StagePoint {
  /** The run folder relative to the experiment folder, e.g. `pretrain/D32-tpp20`. */
  id: string;
  config: Config;
}

/** A pending point as an external executor needs it: `unforget ${argv.join(' ')}` runs it. */
export interface StageTask {
  id: string;
  argv: string[];
  configFile: string;
  runDir: string;
}

export interface PointOutcome {
  id: string;
  runDir: string;
  summary: Record<string, unknown>;
  /** Finished before this call (not run again). */
  resumed: boolean;
}

/** Runs the pending tasks; each must leave a summary.json in its run folder. */
export type StageExecutor = (tasks: StageTask[], points: StagePoint[]) => Promise<void>;

export interface StageOptions {
  /** The experiment folder. */
  dir: string;
  /** The stage's name in log lines. */
  what: string;
  reporter?: Reporter;
  shouldStop?: () => boolean;
  execute?: StageExecutor;
}

/** Reasons a run ends for good; `interrupted` (and a folder without summary.json) means it has to run again. */
const FINISHED = new Set(['train_length', 'target_loss', 'train_time', 'early_stop', 'nonfinite_loss']);

const ID_PART = /^[A-Za-z0-9][A-Za-z0-9._+-]*$/;

/**
 * A point of stage `<id>` in experiment folder `dir`: the experiment's base sections with `patch`
 * applied, writing into `<dir>/<id>` (log.dir and run.id set here, never a model.save_dir).
 */
export function stagePoint(cfg: Config, dir: string, id: string, patch: Record<string, unknown>): StagePoint {
  const parts = id.split('/');
  if (!parts.every((p) => ID_PART.test(p))) throw new Error(`stage point id '${id}': expected folder names joined by /`);
  const config = childConfig(cfg, {
    ...patch,
    'log.dir': path.resolve(dir, ...parts.slice(0, -1)),
    'run.id': parts.at(-1)!,
    'model.save_dir': null,
  });
  return { id, config };
}

/** The summary.json of a run that ended for good, else null. */
export function finishedSummary(runDir: string): Record<string, unknown> | null {
  const file = path.join(runDir, 'summary.json');
  if (!fs.existsSync(file)) return null;
  try {
    const s = JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, unknown>;
    return FINISHED.has(s.stop_reason as string) ? s : null;
  } catch {
    return null;
  }
}

function pointPaths(dir: string, id: string): { runDir: string; configFile: string } {
  const runDir = path.resolve(dir, ...id.split('/'));
  return { runDir, configFile: `${runDir}.yaml` };
}

/** Runs every point of a stage that has not finished yet; returns every point's outcome, by id. */
export async function runStage(points: StagePoint[], opts: StageOptions): Promise<Map<string, PointOutcome>> {
  const reporter = opts.reporter ?? silentReporter;
  const ids = new Set<string>();
  const pending: StagePoint[] = [];
  const tasks: StageTask[] = [];
  const out = new Map<string, PointOutcome>();
  for (const p of points) {
    if (ids.has(p.id)) throw new Error(`stage ${opts.what}: point '${p.id}' twice`);
    ids.add(p.id);
    const { runDir, configFile } = pointPaths(opts.dir, p.id);
    if (path.join(p.config.log.dir, p.config.run.id ?? '') !== runDir) throw new Error(`stage ${opts.what}: point '${p.id}' is not configured to write into ${runDir}`);
    const done = finishedSummary(runDir);
    if (done) {
      out.set(p.id, { id: p.id, runDir, summary: done, resumed: true });
      continue;
    }
    fs.mkdirSync(path.dirname(runDir), { recursive: true });
    writeFileAtomic(configFile, dumpConfig(p.config));
    pending.push(p);
    tasks.push({ id: p.id, argv: ['train', configFile], configFile, runDir });
  }
  if (out.size > 0) reporter.log(`${opts.what}: ${out.size} of ${points.length} runs already finished; ${pending.length} to run`);
  for (const t of tasks) {
    // A run folder without a finished summary is what an interrupted run left: it starts again from scratch.
    if (fs.existsSync(t.runDir)) {
      reporter.log(`${t.id}: clearing the unfinished run folder ${t.runDir}`);
      fs.rmSync(t.runDir, { recursive: true, force: true });
    }
  }
  if (pending.length > 0) await (opts.execute ?? localExecutor(reporter, opts.shouldStop))(tasks, pending);
  for (const t of tasks) {
    const summary = finishedSummary(t.runDir);
    if (!summary) {
      const s = fs.existsSync(path.join(t.runDir, 'summary.json')) ? 'was interrupted' : 'left no summary.json';
      throw new UnforgetError(`${opts.what}: run ${t.id} ${s}; finished runs are kept in ${opts.dir} (run the same command again to resume)`);
    }
    out.set(t.id, { id: t.id, runDir: t.runDir, summary, resumed: false });
  }
  return new Map(points.map((p) => [p.id, out.get(p.id)!]));
}

/**
 * The sweep's executors for a stage (`--executor local|slurm`): each pending point is an `unforget train CONFIG`
 * child process, locally or as a task of one Slurm job array, its log under the experiment folder's `logs/` and the
 * array's files under its `slurm/`. Its run folder stays the point's own folder in the experiment. Ctrl-C (shouldStop) kills the local
 * children or cancels the array.
 */
export function taskExecutor(o: { executor: ExecutorName; slurm?: SlurmOptions; workers?: number;
  log: (line: string) => void; shouldStop?: () => boolean }): StageExecutor {
  return async (tasks) => {
    if (tasks.length === 0) return;
    // The experiment folder: a point `a/b` runs in `<dir>/a/b` (pointPaths).
    const dir = path.resolve(tasks[0]!.runDir, ...tasks[0]!.id.split('/').map(() => '..'));
    const stop = new AbortController();
    const timer = setInterval(() => o.shouldStop?.() && stop.abort(), 250);
    try {
      // Task ids name log files and markers: the stage's `pretrain/...` ids with a dot for the slash.
      await runTasks(tasks.map((t) => ({ id: t.id.replaceAll('/', '.'), argv: t.argv, runDir: t.runDir })),
        { executor: o.executor, out: dir, slurm: o.slurm, workers: o.workers, signal: stop.signal, log: o.log });
    } finally {
      clearInterval(timer);
    }
  };
}

/** In-process `train()`, one point after another; a run whose loss diverged is an outcome, not an error. */
function localExecutor(reporter: Reporter, shouldStop?: () => boolean): StageExecutor {
  return async (tasks, points) => {
    for (let i = 0; i < points.length; i++) {
      reporter.log(`[${i + 1}/${points.length}] ${tasks[i]!.id}`);
      try {
        const r = await train(points[i]!.config, { reporter, shouldStop });
        if (r.summary.stop_reason === 'interrupted') return;
      } catch (e) {
        if (!(e instanceof NonFiniteLossError)) throw e;
        reporter.log(`${tasks[i]!.id}: ${e.message}`);
      }
    }
  };
}

/** Keys that may differ when an experiment is resumed: they change how fast it runs, not what it computes. */
const VOLATILE = new Set(['run.threads', 'log.progress', 'capacity.threads', 'lr.threads']);

function comparable(v: unknown, at = ''): unknown {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return v;
  const o = v as Record<string, unknown>;
  return Object.fromEntries(
    Object.keys(o)
      .sort()
      .filter((k) => !VOLATILE.has(at + k))
      .map((k) => [k, comparable(o[k], `${at}${k}.`)]),
  );
}

/**
 * The experiment's run folder: created with its resolved config, or, when it already holds the same
 * experiment (its config.yaml equal up to thread counts and progress display), reused so that the
 * finished runs are kept. A folder holding something else is refused.
 */
export function openExperimentDir(cfg: Config, log: (line: string) => void): { dir: string; resumed: boolean } {
  const hint = 'choose another --out or run.id, or give the same config to resume it';
  const text = dumpConfig(cfg);
  if (cfg.run.id !== null) {
    const dir = path.join(cfg.model.save_dir ?? cfg.log.dir, cfg.run.id);
    const file = path.join(dir, 'config.yaml');
    if (fs.existsSync(file)) {
      const same = JSON.stringify(comparable(YAML.parse(fs.readFileSync(file, 'utf8')))) === JSON.stringify(comparable(YAML.parse(text)));
      if (!same) throw new UnforgetError(`run folder ${dir} holds an experiment with another config; ${hint}`);
      log(`resuming the experiment in ${dir}`);
      return { dir, resumed: true };
    }
  }
  const dir = makeRunDir(cfg, hint);
  fs.mkdirSync(dir, { recursive: true });
  writeFileAtomic(path.join(dir, 'config.yaml'), text);
  return { dir, resumed: false };
}

/** A finetuning run at a target new-data loss: where its (valid_ntp, prev_ntp) path first crosses it. */
export interface TargetCrossing {
  reached: boolean;
  stop_reason: string;
  /** Old-data loss before finetuning (the step-0 evaluation). */
  prev_ntp_before: number;
  /** Old-data loss at the target, interpolated between the evaluations around the first crossing. */
  prev_ntp_at_target: number | null;
  /** prev_ntp_at_target − prev_ntp_before. */
  forgetting: number | null;
  tokens_to_target: number | null;
  time_to_target_s: number | null;
  valid_ntp_end: number;
  prev_ntp_end: number;
  tokens_end: number;
}

export function crossingAt(runDir: string, target: number, stopReason: string): TargetCrossing {
  const rows = readMetrics(runDir).filter((r) => r.valid_ntp !== undefined && r.prev_ntp !== undefined);
  if (rows.length === 0) throw new UnforgetError(`${runDir}/metrics.jsonl: no evaluation with valid_ntp and prev_ntp`);
  const pts = rows.map((r) => ({ x: r.valid_ntp!, y: r.prev_ntp!, n: r.train_tokens_seen ?? 0, t: r.train_time_elapsed ?? 0 }));
  const before = pts[0]!.y;
  const last = pts.at(-1)!;
  const hit = atFirstCrossing(pts, target);
  let tokens: number | null = null, time: number | null = null;
  if (hit) {
    if (hit.index === 0) (tokens = 0), (time = 0);
    else {
      const a = pts[hit.index - 1]!, b = pts[hit.index]!;
      const w = (a.x - target) / (a.x - b.x);
      tokens = Math.round(a.n + w * (b.n - a.n));
      time = a.t + w * (b.t - a.t);
    }
  }
  return {
    reached: hit !== null,
    stop_reason: stopReason,
    prev_ntp_before: before,
    prev_ntp_at_target: hit ? hit.y : null,
    forgetting: hit ? hit.y - before : null,
    tokens_to_target: tokens,
    time_to_target_s: time,
    valid_ntp_end: last.x,
    prev_ntp_end: last.y,
    tokens_end: last.n,
  };
}

export interface EpochCheck {
  /** The longest pretraining run, in tokens (whole batches). */
  run_tokens: number;
  /** Tokens of the old data's training split. */
  train_tokens: number;
  epochs: number;
  what: string;
}

/**
 * How many times the longest pretraining run reads the old data's training split (its windows of T
 * after data.num_tokens_valid is set aside). More than `maxEpochs` is a ConfigError naming `key`;
 * with `maxEpochs` null it is only reported.
 */
export function checkEpochs(o: { runTokens: number; what: string; dataTokens: number; T: number; B: number; numTokensValid: number; maxEpochs: number | null; key: string; log: (line: string) => void }): EpochCheck {
  const step = o.B * o.T;
  const runTokens = Math.ceil(o.runTokens / step) * step;
  const train = Math.max(0, Math.floor(o.dataTokens / o.T) - Math.floor(o.numTokensValid / o.T)) * o.T;
  const epochs = train > 0 ? runTokens / train : Infinity;
  const text = `the longest pretraining run (${o.what}: ${fmtTokens(runTokens)} tokens) reads the old data's ${fmtTokens(train)} training tokens ${epochs.toFixed(2)} times`;
  if (o.maxEpochs !== null && epochs > o.maxEpochs) {
    throw new ConfigError(o.key, `${text}, more than ${o.maxEpochs}; add English corpora to lang.old (unforget corpus list), shrink the grid, or raise ${o.key} (null: no limit)`);
  }
  o.log(epochs > 1 ? `warning: ${text} (repeated epochs)` : text);
  return { run_tokens: runTokens, train_tokens: train, epochs, what: o.what };
}

function fmtTokens(n: number): string {
  return n >= 1e6 ? `${(n / 1e6).toFixed(1)}M` : n >= 1e3 ? `${(n / 1e3).toFixed(0)}k` : String(n);
}

/**
 * The parameters stop.tokens_per_param multiplies for a gpt, counted as the study counts them: the
 * non-embedding weights (12·L·D²) plus one embedding matrix (D·V).
 */
export function studyParams(D: number, L: number, H: number, V: number): number {
  const c = archParamCounts(gptArch({ D, L, H, T: 2, V }));
  return c.n_param_nonembed + c.n_param_embed;
}

/** Label of a number in point ids and figures: 20 → '20', 0.0003 → '0.0003', 1e-6 → '1e-6'. */
export function numLabel(x: number): string {
  const s = String(x);
  return s.includes('e') ? s.replace('e-0', 'e-').replace('e+', 'e') : s;
}
