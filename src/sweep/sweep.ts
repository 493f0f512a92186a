/**
 * Running a grid sweep: every grid point is one `unforget train` (or `experiment NAME`) run whose
 * folder lands in `<out>/runs/<run id>` — a child process here, N at a time, or one task of a Slurm
 * job array (executor.ts runs them either way). After each run ends, its row goes into
 * results.jsonl/results.csv (rewritten atomically), so a sweep that is killed and started again
 * skips the runs that finished (row ok and summary.json present), clears and redoes half-done ones,
 * and retries failed ones.
 *
 * <out>/sweep.yaml      the resolved grid; a different grid in the same folder is refused
 * <out>/results.jsonl   one row per finished or failed run (also results.csv)
 * <out>/runs/<id>/      each run's folder (config.yaml, metrics.jsonl, summary.json, ...)
 * <out>/logs/<id>.log   each run's stdout and stderr
 * <out>/slurm/          (Slurm) each submission's manifest, job script and Slurm output; exit markers
 */
import fs from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';
import { loadConfig } from '../config/load.js';
import { DataError, UnforgetError } from '../errors.js';
import { writeFileAtomic } from '../io/atomic.js';
import { checkExecutor, runTasks, type ExecutorName } from './executor.js';
import { makeRow, readResults, writeResults, type ResultRow } from './results.js';
import type { SlurmOptions } from './slurm.js';
import { gridIdentity, overrideText, resolvedDocument, type SweepRun, type SweepSpec } from './spec.js';

export interface SweepOptions {
  out: string;
  /** Local executor: runs at once. */
  workers: number;
  /** Where runs run (default local). */
  executor?: ExecutorName;
  /** Slurm executor: resources of each array task (the sweep file's `slurm:` block). */
  slurm?: SlurmOptions;
  /**
   * Aborting kills the running children (local) or cancels the array (Slurm); their runs are not
   * recorded (a restart redoes them).
   */
  signal?: AbortSignal;
  /** Progress lines (one per run start and end). */
  log?: (line: string) => void;
}

export interface SweepOutcome {
  out: string;
  total: number;
  /** Runs found finished and not run again. */
  skipped: number;
  ok: number;
  failed: number;
  /** Runs not done because the sweep was interrupted. */
  notRun: number;
  interrupted: boolean;
  rows: ResultRow[];
}

export const sweepPaths = (out: string) => ({
  sweepYaml: path.join(out, 'sweep.yaml'),
  jsonl: path.join(out, 'results.jsonl'),
  csv: path.join(out, 'results.csv'),
  runs: path.join(out, 'runs'),
  logs: path.join(out, 'logs'),
  lock: path.join(out, '.lock'),
});

/** Where a run's folder is, relative to the sweep folder (as recorded in the results). */
export const runDirOf = (id: string) => path.join('runs', id);

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** One sweep process per folder: a lock file holding its pid; a stale lock (dead pid) is taken over. */
function acquireLock(file: string): () => void {
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      fs.writeFileSync(file, `${process.pid}\n`, { flag: 'wx' });
      return () => fs.rmSync(file, { force: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const pid = Number(fs.readFileSync(file, 'utf8').trim());
      if (Number.isInteger(pid) && pid > 0 && pid !== process.pid && pidAlive(pid)) {
        throw new UnforgetError(`${path.dirname(file)}: another sweep (pid ${pid}) is running in this folder; if it is not, delete ${file}`);
      }
      fs.rmSync(file, { force: true });
    }
  }
  throw new UnforgetError(`${file}: cannot take the sweep lock`);
}

/** Saves the resolved grid, or checks that the folder's saved grid is the same one. */
function checkOrSaveSweepYaml(file: string, spec: SweepSpec): void {
  const doc = resolvedDocument(spec);
  if (fs.existsSync(file)) {
    let saved: unknown;
    try {
      saved = YAML.parse(fs.readFileSync(file, 'utf8'));
    } catch (err) {
      throw new DataError(`${file}: invalid YAML: ${(err as Error).message.split('\n')[0]}`);
    }
    const s = (saved ?? {}) as Record<string, unknown>;
    if (gridIdentity(s) !== gridIdentity(doc)) {
      const what = JSON.stringify(s.command) !== JSON.stringify(doc.command)
        ? 'command'
        : JSON.stringify(s.base) !== JSON.stringify(doc.base)
          ? 'base'
          : 'parameter grid';
      throw new UnforgetError(`${file} holds a different sweep (its ${what} differs); use another --out, or delete that folder to start over`);
    }
  }
  writeFileAtomic(file, YAML.stringify(doc, { lineWidth: 0 }));
}

/** The command line of one run (after `node main.js`). */
export function childArgs(spec: SweepSpec, run: SweepRun, out: string): string[] {
  const params = Object.entries(run.params).map(([k, v]) => `${k}=${overrideText(k, v)}`);
  const runDir = path.resolve(out, runDirOf(run.id));
  if (spec.command[0] === 'train') {
    return ['train', ...spec.base, ...params, `log.dir=${path.dirname(runDir)}`, `run.id=${run.id}`, 'log.progress=false'];
  }
  return [...spec.command, '--out', runDir, ...spec.base, ...params, 'log.progress=false'];
}

/**
 * Every grid point's `train` config, loaded as its run would load it: on a cluster a bad value should
 * be found before the array waits in the queue, not when its task finally starts.
 */
export function checkTrainPoints(spec: SweepSpec, out: string): void {
  if (spec.command[0] !== 'train') return;
  for (const run of spec.runs) {
    try {
      loadConfig([], childArgs(spec, run, out).slice(1));
    } catch (err) {
      if (!(err instanceof UnforgetError)) throw err;
      throw new UnforgetError(`${spec.source}: grid point '${run.id}': ${err.message}`);
    }
  }
}

export async function runSweep(spec: SweepSpec, opts: SweepOptions): Promise<SweepOutcome> {
  if (!Number.isInteger(opts.workers) || opts.workers < 1) throw new UnforgetError(`--workers: expected an integer ≥ 1, got ${opts.workers}`);
  const executor = opts.executor ?? 'local';
  const out = opts.out;
  const log = opts.log ?? (() => {});
  const p = sweepPaths(out);
  // Refusals come before the out folder exists.
  checkExecutor(executor);
  if (executor === 'slurm') checkTrainPoints(spec, out);
  fs.mkdirSync(out, { recursive: true });
  const releaseLock = acquireLock(p.lock);
  try {
    checkOrSaveSweepYaml(p.sweepYaml, spec);
    fs.mkdirSync(p.runs, { recursive: true });
    fs.mkdirSync(p.logs, { recursive: true });

    // ---- what is already done ----
    const inGrid = new Set(spec.runs.map((r) => r.id));
    const byId = new Map<string, ResultRow>();
    for (const row of readResults(p.jsonl)) if (inGrid.has(row.run_id as string)) byId.set(row.run_id as string, row);
    const isDone = (id: string) => byId.get(id)?.status === 'ok' && fs.existsSync(path.join(out, runDirOf(id), 'summary.json'));
    const pending = spec.runs.filter((r) => !isDone(r.id));
    // A row without its run folder's summary is stale: the run is done again and its row replaced.
    const rowsInOrder = () => spec.runs.map((r) => byId.get(r.id)).filter((r): r is ResultRow => r !== undefined);
    writeResults(p.jsonl, p.csv, rowsInOrder());
    const skipped = spec.runs.length - pending.length;
    if (skipped > 0) log(`sweep: ${skipped} of ${spec.runs.length} runs already finished; ${pending.length} to run`);

    // ---- the runs ----
    const runsById = new Map(spec.runs.map((r) => [r.id, r]));
    const tasks = pending.map((run) => ({ id: run.id, argv: childArgs(spec, run, out) }));
    const done = await runTasks(tasks, {
      executor,
      out,
      workers: opts.workers,
      slurm: opts.slurm,
      signal: opts.signal,
      log,
      onResult: (r) => {
        const fields = { run_id: r.id, status: r.status, exit_code: r.exitCode, error: r.error, wall_s: r.wallS, run_dir: runDirOf(r.id) };
        byId.set(r.id, makeRow(fields, runsById.get(r.id)!.params, r.summary));
        writeResults(p.jsonl, p.csv, rowsInOrder());
      },
    });
    const ok = done.results.filter((r) => r.status === 'ok').length;
    const failed = done.results.length - ok;
    return {
      out,
      total: spec.runs.length,
      skipped,
      ok,
      failed,
      notRun: pending.length - done.results.length,
      interrupted: done.interrupted,
      rows: rowsInOrder(),
    };
  } finally {
    releaseLock();
  }
}
