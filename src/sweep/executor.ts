/**
 * The executor seam: a list of `unforget` command lines, each run once into its own run folder,
 * either as child processes on this machine or as one Slurm job array. `unforget sweep` runs its grid
 * through it; an experiment can run its own grid the same way.
 *
 * A task's `argv` are `unforget` CLI arguments that write its run into `<out>/runs/<id>` (for
 * `train`: `log.dir=<out>/runs run.id=<id>`; for `experiment`: `--out <out>/runs/<id>`). Before a
 * task starts its folder is deleted, so a half-done attempt is redone; its stdout and stderr go to
 * `<out>/logs/<id>.log`. A task is ok when it exits 0 and leaves a summary.json whose stop_reason is
 * not `interrupted`. runTasks runs every task it is given: skipping finished ones is the caller's
 * (the sweep's) decision.
 *
 * Slurm: the tasks are written to a manifest (`<out>/slurm/submit-K/manifest.json`) and submitted
 * with `sbatch --array=0-(n-1)` under a job name made from the out folder; array task i runs
 * `node slurm_task.js MANIFEST i`, which runs task i exactly as the local executor does and then
 * writes an exit marker `<out>/slurm/done/<id>.json`. The submitter polls those markers and squeue
 * (no accounting needed). A submission first waits for any array of the same out folder that Slurm
 * still runs (a submitter killed earlier leaves it running), takes the ok results it left, and only
 * then submits what remains — so no task runs twice at the same time.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { UnforgetError } from '../errors.js';
import { writeFileAtomic, writeJsonAtomic } from '../io/atomic.js';
import { cancelJob, isEnded, onPath, queuedTasks, requireSlurmCommands, shellQuote, submitArray, type QueuedTask, type SlurmOptions } from './slurm.js';

const CLI_MAIN = fileURLToPath(new URL('../cli/main.js', import.meta.url));
const CHILD_GUARD = pathToFileURL(fileURLToPath(new URL('./child_guard.js', import.meta.url))).href;
const SLURM_TASK = fileURLToPath(new URL('./slurm_task.js', import.meta.url));

export type ExecutorName = 'local' | 'slurm';
export const EXECUTORS: readonly ExecutorName[] = ['local', 'slurm'];

/** One run: its id (a folder name) and its `unforget` CLI arguments. */
export interface Task {
  id: string;
  argv: string[];
  /** The run's folder, where argv writes it, when that is not `<out>/runs/<id>` (an experiment's stages keep their
   *  runs in the experiment's folder); absolute. */
  runDir?: string;
}

export interface TaskResult {
  id: string;
  status: 'ok' | 'failed';
  /** null when the run was killed by a signal or ended in Slurm without an exit code. */
  exitCode: number | null;
  /** Why it failed: its last `error:` line, else a short reason. */
  error: string | null;
  /** The run's own wall time (not time queued), seconds. */
  wallS: number;
  /** The run's summary.json, when it wrote one. */
  summary: Record<string, unknown> | null;
}

export interface RunTasksOptions {
  executor: ExecutorName;
  /** Holds `runs/<id>/`, `logs/<id>.log` and (Slurm) `slurm/`. */
  out: string;
  /** Local: runs at once (default 1). */
  workers?: number;
  /** Slurm: resources of each array task and the poll interval. */
  slurm?: SlurmOptions;
  /** Aborting kills local runs, or cancels the Slurm array (scancel); those runs get no result. */
  signal?: AbortSignal;
  /** Progress lines: each run's start and end. */
  log?: (line: string) => void;
  /** Called once per run that ended (ok or failed), as soon as it is known. */
  onResult?: (result: TaskResult) => void;
}

export interface RunTasksOutcome {
  /** One per run that ended, in the order they ended. */
  results: TaskResult[];
  interrupted: boolean;
}

export const taskPaths = (out: string, task: Task) => ({
  runDir: task.runDir ?? path.join(out, 'runs', task.id),
  log: path.join(out, 'logs', `${task.id}.log`),
});

const SAFE_TASK_ID = /^[A-Za-z0-9_=,+-][A-Za-z0-9._=,+-]*$/;

/** Throws the one-line error for an executor this machine cannot use (before anything is started). */
export function checkExecutor(executor: ExecutorName): void {
  if (!EXECUTORS.includes(executor)) throw new UnforgetError(`--executor: expected local or slurm, got '${executor}'`);
  if (executor === 'slurm') requireSlurmCommands();
}

/** Runs every task once; resolves when all have ended or the signal aborted. */
export async function runTasks(tasks: readonly Task[], opts: RunTasksOptions): Promise<RunTasksOutcome> {
  checkExecutor(opts.executor);
  const ids = new Set<string>();
  for (const t of tasks) {
    if (!SAFE_TASK_ID.test(t.id)) throw new UnforgetError(`task id '${t.id}' cannot be a folder name (letters, digits and . _ = , + - only)`);
    if (ids.has(t.id)) throw new UnforgetError(`task id '${t.id}' is given twice`);
    if (t.runDir !== undefined && !path.isAbsolute(t.runDir)) throw new UnforgetError(`task '${t.id}': its run folder must be an absolute path, got '${t.runDir}'`);
    ids.add(t.id);
  }
  if (tasks.some((t) => t.runDir === undefined)) fs.mkdirSync(path.join(opts.out, 'runs'), { recursive: true });
  fs.mkdirSync(path.join(opts.out, 'logs'), { recursive: true });
  const results: TaskResult[] = [];
  const log = opts.log ?? (() => {});
  const record = (r: TaskResult, logFile: string, note = '') => {
    results.push(r);
    opts.onResult?.(r);
    log(`[${results.length}/${tasks.length}] ${r.id}: ${r.status}${note} in ${r.wallS.toFixed(1)} s${r.error ? ` — ${r.error} (log: ${logFile})` : ''}`);
  };
  if (tasks.length === 0) return { results, interrupted: false };
  if (opts.executor === 'local') await refuseIfArrayActive(opts.out);
  const interrupted = opts.executor === 'local' ? await runLocal(tasks, opts, log, record) : await runSlurm(tasks, opts, log, record);
  return { results, interrupted };
}

// ---------------------------------------------------------------------------------------------
// One run as a child process (the local executor, and each Slurm array task)
// ---------------------------------------------------------------------------------------------

interface ChildEnd {
  code: number | null;
  signal: NodeJS.Signals | null;
  stderrTail: string;
  spawnError: string | null;
  wallS: number;
}

/**
 * Runs `unforget ARGV` into a fresh run folder, its output into the log. The child is preloaded with
 * the guard that stops it when this process dies, so an orphan never races a restarted attempt.
 */
function runChild(task: Task, out: string, signal: AbortSignal | undefined, onStart: () => void): Promise<ChildEnd> {
  return new Promise((resolve) => {
    const p = taskPaths(out, task);
    fs.rmSync(p.runDir, { recursive: true, force: true });
    const logFd = fs.openSync(p.log, 'w');
    fs.writeSync(logFd, `$ unforget ${task.argv.join(' ')}\n`);
    const t0 = performance.now();
    const child = spawn(process.execPath, ['--import', CHILD_GUARD, CLI_MAIN, ...task.argv], { stdio: ['ignore', 'pipe', 'pipe', 'ipc'] });
    const kill = () => child.kill('SIGTERM');
    signal?.addEventListener('abort', kill, { once: true });
    onStart();
    let stderrTail = '';
    child.stdout!.on('data', (b: Buffer) => fs.writeSync(logFd, b));
    child.stderr!.on('data', (b: Buffer) => {
      fs.writeSync(logFd, b);
      stderrTail = (stderrTail + b.toString('utf8')).slice(-8192);
    });
    let spawnError: string | null = null;
    child.on('error', (err) => {
      spawnError = err.message;
    });
    child.on('close', (code, sig) => {
      signal?.removeEventListener('abort', kill);
      fs.closeSync(logFd);
      resolve({ code, signal: sig, stderrTail, spawnError, wallS: Math.round(performance.now() - t0) / 1000 });
    });
  });
}

/** The line that says why a run failed: its last `error:` line, else its last line of output. */
function errorLine(stderrTail: string, code: number | null, sig: string | null): string {
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

/** Whether a run that ended went well, judged from how it exited and what its folder holds. */
function resultOf(task: Task, out: string, end: ChildEnd): TaskResult {
  const id = task.id;
  const summary = readSummary(path.join(taskPaths(out, task).runDir, 'summary.json'));
  let error: string | null = null;
  if (end.spawnError) error = `cannot start: ${end.spawnError}`;
  else if (end.code !== 0) error = errorLine(end.stderrTail, end.code, end.signal);
  else if (!summary) error = 'exited 0 but wrote no summary.json';
  else if (summary.stop_reason === 'interrupted') error = 'interrupted (stop_reason=interrupted)';
  return { id, status: error === null ? 'ok' : 'failed', exitCode: end.code, error, wallS: end.wallS, summary };
}

// ---------------------------------------------------------------------------------------------
// Local: a pool of child processes
// ---------------------------------------------------------------------------------------------

async function runLocal(
  tasks: readonly Task[],
  opts: RunTasksOptions,
  log: (line: string) => void,
  record: (r: TaskResult, logFile: string) => void,
): Promise<boolean> {
  const workers = opts.workers ?? 1;
  if (!Number.isInteger(workers) || workers < 1) throw new UnforgetError(`--workers: expected an integer ≥ 1, got ${workers}`);
  const aborted = () => opts.signal?.aborted === true;
  let started = 0;
  const queue = [...tasks];
  const worker = async () => {
    for (let task = queue.shift(); task !== undefined && !aborted(); task = queue.shift()) {
      const end = await runChild(task, opts.out, opts.signal, () => log(`${task!.id}: started (${++started} of ${tasks.length})`));
      // A run killed by the abort is not a result: a restart redoes it.
      if (!aborted()) record(resultOf(task, opts.out, end), taskPaths(opts.out, task).log);
    }
  };
  await Promise.all(Array.from({ length: Math.min(workers, tasks.length) }, worker));
  return aborted();
}

// ---------------------------------------------------------------------------------------------
// Slurm: one job array
// ---------------------------------------------------------------------------------------------

interface Manifest {
  out: string;
  tasks: Task[];
}

/** What an array task leaves when its run has ended (written last, atomically). */
interface ExitMarker {
  job_id: string;
  task_index: number;
  host: string;
  exit_code: number | null;
  signal: string | null;
  spawn_error: string | null;
  wall_s: number;
  stderr_tail: string;
}

const slurmDir = (out: string) => path.join(out, 'slurm');
const markerFile = (out: string, id: string) => path.join(slurmDir(out), 'done', `${id}.json`);

/** The array's job name: how a later submission finds arrays of the same out folder still in Slurm. */
function jobNameOf(out: string): string {
  const hash = createHash('sha256').update(out).digest('hex').slice(0, 10);
  return `unforget-${path.basename(out).replace(/[^A-Za-z0-9._-]+/g, '_').slice(0, 24)}-${hash}`;
}

function readMarker(out: string, id: string): ExitMarker | null {
  try {
    const m = JSON.parse(fs.readFileSync(markerFile(out, id), 'utf8')) as ExitMarker;
    return typeof m.job_id === 'string' ? m : null;
  } catch {
    return null;
  }
}

const endOfMarker = (m: ExitMarker): ChildEnd => ({ code: m.exit_code, signal: m.signal as NodeJS.Signals | null, stderrTail: m.stderr_tail, spawnError: m.spawn_error, wallS: m.wall_s });

function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener('abort', done, { once: true });
  });
}

/** Runs here would race an array of the same folder that Slurm still runs (its submitter was killed). */
async function refuseIfArrayActive(out: string): Promise<void> {
  if (!fs.existsSync(slurmDir(out)) || onPath('squeue') === null) return;
  const q = await queuedTasks(jobNameOf(fs.realpathSync(out)));
  if ('error' in q) return;
  const active = [...new Set(q.tasks.filter((t) => !isEnded(t.state)).map((t) => t.jobId))];
  if (active.length) {
    throw new UnforgetError(`${out}: Slurm job ${active.join(', ')} of this sweep folder is still queued or running; wait for it to end (or scancel ${active.join(' ')}) before running here`);
  }
}

async function runSlurm(
  tasks: readonly Task[],
  opts: RunTasksOptions,
  log: (line: string) => void,
  record: (r: TaskResult, logFile: string, note?: string) => void,
): Promise<boolean> {
  const o = opts.slurm ?? {};
  fs.mkdirSync(path.join(slurmDir(opts.out), 'done'), { recursive: true });
  // Absolute and without symlinks: array tasks run elsewhere, and the job name must not depend on how the folder was named.
  const out = fs.realpathSync(opts.out);
  const jobName = jobNameOf(out);
  const pollMs = (o.poll_seconds ?? 10) * 1000;
  const aborted = () => opts.signal?.aborted === true;
  const byId = new Map(tasks.map((t) => [t.id, t]));
  const logOf = (id: string) => taskPaths(opts.out, byId.get(id)!).log;
  let squeueTrouble = '';
  const poll = async (): Promise<QueuedTask[] | null> => {
    const q = await queuedTasks(jobName);
    if ('error' in q) {
      if (q.error !== squeueTrouble) log(`sweep: squeue failed (${q.error}); trying again`);
      squeueTrouble = q.error;
      return null;
    }
    squeueTrouble = '';
    return q.tasks;
  };
  const cancel = async (jobIds: Iterable<string>) => {
    for (const id of jobIds) {
      const err = await cancelJob(id);
      log(err === null ? `sweep: cancelled Slurm job ${id}; its unfinished runs are redone on the next submission` : `sweep: scancel ${id} failed: ${err}`);
    }
  };

  // Runs that ended well under an earlier array but were never collected (their submitter was
  // killed); failed ones are submitted again. `fromJobs` limits this to markers of those arrays.
  const collected = new Set<string>();
  const collectEarlier = (fromJobs: Set<string> | null) => {
    for (const task of tasks) {
      if (collected.has(task.id)) continue;
      const m = readMarker(out, task.id);
      if (m === null || (fromJobs !== null && !fromJobs.has(m.job_id))) continue;
      const r = resultOf(task, out, endOfMarker(m));
      if (r.status !== 'ok') continue;
      collected.add(task.id);
      record(r, logOf(task.id), ` (Slurm task ${m.job_id}_${m.task_index}, submitted earlier)`);
    }
  };

  // An array of this folder that Slurm still runs: wait for it to end, so no run is started twice at once.
  const stillActive = (q: QueuedTask[]) => new Set(q.filter((t) => !isEnded(t.state)).map((t) => t.jobId));
  // Not knowing is not "none": without an answer from squeue nothing is submitted.
  let first = await poll();
  for (let attempt = 1; first === null && attempt < 3 && !aborted(); attempt++) {
    await sleep(pollMs, opts.signal);
    first = await poll();
  }
  if (aborted()) return true;
  if (first === null) throw new UnforgetError(`squeue failed (${squeueTrouble}); cannot tell whether an array of ${opts.out} submitted earlier still runs, so nothing was submitted`);
  let active = stillActive(first);
  if (active.size > 0) {
    log(`sweep: Slurm job ${[...active].join(', ')} of this sweep folder, submitted earlier, is still queued or running; waiting for it to end before submitting`);
    const waitedFor = new Set(active);
    while (active.size > 0 && !aborted()) {
      await sleep(pollMs, opts.signal);
      collectEarlier(waitedFor);
      const q = await poll();
      if (q !== null) active = stillActive(q);
    }
    if (aborted()) {
      await cancel(active);
      return true;
    }
  }
  collectEarlier(null);
  const todo = tasks.filter((t) => !collected.has(t.id));
  if (todo.length === 0) return false;

  // ---- submit ----
  let k = 1;
  while (fs.existsSync(path.join(slurmDir(out), `submit-${k}`))) k++;
  const submitDir = path.join(slurmDir(out), `submit-${k}`);
  fs.mkdirSync(submitDir);
  const manifestFile = path.join(submitDir, 'manifest.json');
  writeJsonAtomic(manifestFile, { out, tasks: todo } satisfies Manifest);
  const script = path.join(submitDir, 'job.sh');
  writeFileAtomic(
    script,
    [
      '#!/bin/sh',
      '# One run of an unforget sweep per array task (written by unforget).',
      ...(o.setup ?? []),
      `exec ${shellQuote(process.execPath)} ${shellQuote(SLURM_TASK)} ${shellQuote(manifestFile)} "$SLURM_ARRAY_TASK_ID"`,
      '',
    ].join('\n'),
  );
  for (const t of todo) fs.rmSync(markerFile(out, t.id), { force: true });
  let jobId: string;
  try {
    jobId = await submitArray(script, todo.length, o, { jobName, output: path.join(submitDir, '%a.out'), chdir: process.cwd() });
  } catch (err) {
    fs.rmSync(submitDir, { recursive: true, force: true });
    throw err;
  }
  writeJsonAtomic(path.join(slurmDir(out), 'job.json'), { job_id: jobId, job_name: jobName, submit_dir: path.basename(submitDir), run_ids: todo.map((t) => t.id) });
  log(`sweep: submitted ${todo.length} run${todo.length === 1 ? '' : 's'} as Slurm array job ${jobId} (job name ${jobName})`);

  // ---- wait ----
  const waiting = new Map(todo.map((t, i) => [t.id, i]));
  const started = new Set<string>();
  const goneSince = new Map<string, { at: number; state: string }>();
  const graceMs = Math.max(3 * pollMs, 5000);
  while (waiting.size > 0 && !aborted()) {
    const q = await poll();
    // Markers after squeue: a task squeue no longer shows has written its marker by now, if it ever will.
    for (const [id, index] of waiting) {
      const m = readMarker(out, id);
      if (m === null || m.job_id !== jobId) continue;
      if (!started.has(id)) log(`${id}: started (Slurm task ${jobId}_${index} on ${m.host})`);
      waiting.delete(id);
      goneSince.delete(id);
      record(resultOf(byId.get(id)!, out, endOfMarker(m)), logOf(id));
    }
    if (q !== null) {
      const byIndex = new Map(q.filter((t) => t.jobId === jobId).map((t) => [t.index, t.state]));
      for (const [id, index] of waiting) {
        const state = byIndex.get(index);
        if (state === 'RUNNING' && !started.has(id)) {
          started.add(id);
          log(`${id}: started (Slurm task ${jobId}_${index}, ${started.size} of ${todo.length})`);
        }
        if (state !== undefined && !isEnded(state)) {
          goneSince.delete(id);
          continue;
        }
        const since = goneSince.get(id) ?? { at: Date.now(), state: state ?? 'no longer in squeue' };
        goneSince.set(id, since);
        if (Date.now() - since.at < graceMs) continue;
        // Cancelled, timed out, out of memory, node failure, or the task could not start node at all.
        waiting.delete(id);
        const slurmOut = path.join(submitDir, `${index}.out`);
        record(
          { id, status: 'failed', exitCode: null, error: `ended in Slurm (${since.state}) without finishing its run; see ${slurmOut}`, wallS: 0, summary: null },
          logOf(id),
        );
      }
    }
    if (waiting.size > 0) await sleep(pollMs, opts.signal);
  }
  if (aborted()) {
    await cancel([jobId]);
    return true;
  }
  return false;
}

/**
 * The body of one array task (`node slurm_task.js MANIFEST INDEX`): runs task INDEX of the manifest
 * like the local executor, then writes its exit marker; exits with the run's exit code.
 */
export async function runArrayTask(manifestFile: string, indexText: string | undefined): Promise<number> {
  const manifest = JSON.parse(fs.readFileSync(manifestFile, 'utf8')) as Manifest;
  const index = Number(indexText);
  const task = manifest.tasks[index];
  if (!Number.isInteger(index) || task === undefined) throw new UnforgetError(`${manifestFile}: no task ${indexText} (SLURM_ARRAY_TASK_ID)`);
  const jobId = process.env.SLURM_ARRAY_JOB_ID ?? process.env.SLURM_JOB_ID ?? 'unknown';
  fs.rmSync(markerFile(manifest.out, task.id), { force: true });
  // Slurm ends a task (scancel, time limit) with SIGTERM to all its processes: let the run stop, then write the marker.
  const stop = new AbortController();
  process.on('SIGTERM', () => stop.abort());
  process.stdout.write(`${new Date().toISOString()} ${task.id}: started on ${os.hostname()} (array task ${jobId}_${index})\n`);
  const end = await runChild(task, manifest.out, stop.signal, () => {});
  const marker: ExitMarker = {
    job_id: jobId,
    task_index: index,
    host: os.hostname(),
    exit_code: end.code,
    signal: end.signal,
    spawn_error: end.spawnError,
    wall_s: end.wallS,
    stderr_tail: end.stderrTail.slice(-4096),
  };
  writeJsonAtomic(markerFile(manifest.out, task.id), marker);
  process.stdout.write(`${new Date().toISOString()} ${task.id}: ended (exit code ${end.code}${end.signal ? `, ${end.signal}` : ''})\n`);
  return end.code ?? 1;
}
