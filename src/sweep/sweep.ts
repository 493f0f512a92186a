/**
 * Running a grid sweep: every grid point is one `unforget train` (or `experiment NAME`) child process
 * whose run folder lands in `<out>/runs/<run id>`, N at a time. After each run ends, its row goes into
 * results.jsonl/results.csv (rewritten atomically), so a sweep that is killed and started again
 * skips the runs that finished (row ok and summary.json present), clears and redoes half-done ones,
 * and retries failed ones.
 *
 * <out>/sweep.yaml      the resolved grid; a different grid in the same folder is refused
 * <out>/results.jsonl   one row per finished or failed run (also results.csv)
 * <out>/runs/<id>/      each run's folder (config.yaml, metrics.jsonl, summary.json, ...)
 * <out>/logs/<id>.log   each run's stdout and stderr
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import YAML from 'yaml';
import { DataError, UnforgetError } from '../errors.js';
import { writeFileAtomic } from '../io/atomic.js';
import { makeRow, readResults, writeResults, type ResultRow } from './results.js';
import { gridIdentity, overrideText, resolvedDocument, type SweepRun, type SweepSpec } from './spec.js';

const CLI_MAIN = fileURLToPath(new URL('../cli/main.js', import.meta.url));
const CHILD_GUARD = pathToFileURL(fileURLToPath(new URL('./child_guard.js', import.meta.url))).href;

export interface SweepOptions {
  out: string;
  workers: number;
  /** Aborting kills the running children; their runs are not recorded (a restart redoes them). */
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

/** The line that says why a run failed: its last `error:` line, else its last line of output. */
function errorLine(stderrTail: string, code: number | null, sig: NodeJS.Signals | null): string {
  const lines = stderrTail.split('\n').map((l) => l.trim()).filter((l) => l !== '');
  const err = [...lines].reverse().find((l) => l.startsWith('error:') || l.startsWith('internal error'));
  if (err) return err;
  if (sig) return `killed by ${sig}`;
  return lines[lines.length - 1] ?? `exit code ${code}`;
}

function readSummary(file: string): Record<string, unknown> | null {
  try {
    const s = JSON.parse(fs.readFileSync(file, 'utf8'));
    return s !== null && typeof s === 'object' && !Array.isArray(s) ? s : null;
  } catch {
    return null;
  }
}

export async function runSweep(spec: SweepSpec, opts: SweepOptions): Promise<SweepOutcome> {
  if (!Number.isInteger(opts.workers) || opts.workers < 1) throw new UnforgetError(`--workers: expected an integer ≥ 1, got ${opts.workers}`);
  const out = opts.out;
  const log = opts.log ?? (() => {});
  const p = sweepPaths(out);
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

    // ---- the pool ----
    let ok = 0, failed = 0, started = 0, finished = 0;
    const running = new Set<ChildProcess>();
    const aborted = () => opts.signal?.aborted === true;
    const killAll = () => {
      for (const c of running) c.kill('SIGTERM');
    };
    opts.signal?.addEventListener('abort', killAll, { once: true });

    const runOne = (run: SweepRun): Promise<void> =>
      new Promise((resolve) => {
        const runDir = path.join(out, runDirOf(run.id));
        // A folder left by a killed or failed attempt: the run starts over.
        fs.rmSync(runDir, { recursive: true, force: true });
        const logFile = path.join(p.logs, `${run.id}.log`);
        const logFd = fs.openSync(logFile, 'w');
        const args = childArgs(spec, run, out);
        fs.writeSync(logFd, `$ unforget ${args.join(' ')}\n`);
        const t0 = performance.now();
        const child = spawn(process.execPath, ['--import', CHILD_GUARD, CLI_MAIN, ...args], { stdio: ['ignore', 'pipe', 'pipe', 'ipc'] });
        running.add(child);
        const n = ++started;
        log(`${run.id}: started (${n} of ${pending.length})`);
        let stderrTail = '';
        child.stdout!.on('data', (b: Buffer) => fs.writeSync(logFd, b));
        child.stderr!.on('data', (b: Buffer) => {
          fs.writeSync(logFd, b);
          stderrTail = (stderrTail + b.toString('utf8')).slice(-8192);
        });
        let spawnError: Error | null = null;
        child.on('error', (err) => {
          spawnError = err;
        });
        child.on('close', (code, sig) => {
          running.delete(child);
          fs.closeSync(logFd);
          finished++;
          const wall = (performance.now() - t0) / 1000;
          if (aborted()) {
            resolve();
            return;
          }
          const summary = readSummary(path.join(runDir, 'summary.json'));
          let error: string | null = null;
          if (spawnError) error = `cannot start: ${(spawnError as Error).message}`;
          else if (code !== 0) error = errorLine(stderrTail, code, sig);
          else if (!summary) error = 'exited 0 but wrote no summary.json';
          else if (summary.stop_reason === 'interrupted') error = 'interrupted (stop_reason=interrupted)';
          const status = error === null ? 'ok' : 'failed';
          if (status === 'ok') ok++;
          else failed++;
          byId.set(run.id, makeRow({ run_id: run.id, status, exit_code: code, error, wall_s: Math.round(wall * 1000) / 1000, run_dir: runDirOf(run.id) }, run.params, summary));
          writeResults(p.jsonl, p.csv, rowsInOrder());
          log(`[${finished}/${pending.length}] ${run.id}: ${status} in ${wall.toFixed(1)} s${error ? ` — ${error} (log: ${logFile})` : ''}`);
          resolve();
        });
      });

    const queue = [...pending];
    const worker = async () => {
      for (let run = queue.shift(); run !== undefined && !aborted(); run = queue.shift()) await runOne(run);
    };
    await Promise.all(Array.from({ length: Math.min(opts.workers, Math.max(1, pending.length)) }, worker));
    opts.signal?.removeEventListener('abort', killAll);

    const rows = rowsInOrder();
    return {
      out,
      total: spec.runs.length,
      skipped,
      ok,
      failed,
      notRun: pending.length - ok - failed,
      interrupted: aborted(),
      rows,
    };
  } finally {
    releaseLock();
  }
}
