/**
 * Talking to Slurm: the `slurm:` block of a sweep file (resources of each array task), and the three
 * commands a submission needs — `sbatch` to submit one job array, `squeue` to watch it, `scancel` to
 * stop it. Nothing here needs Slurm accounting (`sacct`): each task writes its own exit marker, and
 * squeue's states cover tasks that ended without one.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { UnforgetError } from '../errors.js';

/** Resources and submission settings of every array task (the sweep file's `slurm:` block). */
export interface SlurmOptions {
  partition?: string;
  account?: string;
  qos?: string;
  cpus_per_task?: number;
  /** GPUs per task: a count, or `TYPE:COUNT` (e.g. `a100:1`). */
  gpus?: number | string;
  /** Memory per task: `8G`, `500M`; a bare number is megabytes (Slurm's unit). */
  mem?: string | number;
  /** Time limit per task: `HH:MM:SS`, `D-HH:MM`, ...; a bare number is minutes. */
  time?: string | number;
  /** At most this many tasks of the array run at once (`--array=...%N`). */
  max_concurrent?: number;
  /** Shell lines run before each task, e.g. `module load nodejs`. */
  setup?: string[];
  /** Further sbatch arguments as given, e.g. `[--constraint=v100, --exclusive]`. */
  sbatch_args?: string[];
  /** Seconds between squeue polls while waiting (default 10). */
  poll_seconds?: number;
}

export const SLURM_KEYS = [
  'partition', 'account', 'qos', 'cpus_per_task', 'gpus', 'mem', 'time', 'max_concurrent', 'setup', 'sbatch_args', 'poll_seconds',
] as const;

/** sbatch options the submission sets itself: the array, its name (how a re-submission finds it), output, folder. */
const OWN_SBATCH_FLAGS = ['--array', '-a', '--parsable', '--job-name', '-J', '--output', '-o', '--error', '-e', '--chdir', '-D', '--wrap'];

type Plain = Record<string, unknown>;
const isPlain = (v: unknown): v is Plain => v !== null && typeof v === 'object' && !Array.isArray(v);
const show = (v: unknown) => JSON.stringify(v) ?? String(v);

/** Parses and checks a `slurm:` block; `where` names it in errors (e.g. `sweep.yaml: slurm`). */
export function parseSlurmOptions(raw: unknown, where: string): SlurmOptions {
  if (raw === undefined || raw === null) return {};
  if (!isPlain(raw)) throw new UnforgetError(`${where}: expected a mapping (partition, cpus_per_task, gpus, mem, time, ...), got ${show(raw)}`);
  const out: SlurmOptions = {};
  for (const [key, v] of Object.entries(raw)) {
    const at = `${where}.${key}`;
    const word = (re: RegExp, what: string): string => {
      if (typeof v !== 'string' || !re.test(v)) throw new UnforgetError(`${at}: expected ${what}, got ${show(v)}`);
      return v;
    };
    const int = (min: number): number => {
      if (typeof v !== 'number' || !Number.isInteger(v) || v < min) throw new UnforgetError(`${at}: expected an integer ≥ ${min}, got ${show(v)}`);
      return v;
    };
    const strings = (): string[] => {
      if (!Array.isArray(v) || !v.every((s) => typeof s === 'string' && s.trim() !== '')) throw new UnforgetError(`${at}: expected a list of non-empty strings, got ${show(v)}`);
      return v as string[];
    };
    switch (key) {
      case 'partition':
      case 'account':
      case 'qos':
        out[key] = word(/^[A-Za-z0-9_.,:+-]+$/, 'a name (letters, digits, _ . , : + -)');
        break;
      case 'cpus_per_task':
      case 'max_concurrent':
        out[key] = int(1);
        break;
      case 'gpus':
        out.gpus = typeof v === 'number' ? int(0) : word(/^([A-Za-z0-9_-]+:)?\d+$/, 'a GPU count or TYPE:COUNT (e.g. 1 or a100:2)');
        break;
      case 'mem':
        out.mem = typeof v === 'number' ? int(1) : word(/^\d+[KMGT]?$/i, 'a size such as 8G or 500M (or a number of megabytes)');
        break;
      case 'time':
        out.time = typeof v === 'number' ? int(1) : word(/^(\d+-\d+(:\d+){0,2}|\d+(:\d+){0,2})$/, 'a time limit such as 2:00:00 or 1-12:00 (or a number of minutes)');
        break;
      case 'setup':
        out.setup = strings();
        break;
      case 'sbatch_args': {
        const args = strings();
        for (const a of args) {
          const flag = a.startsWith('--') ? a.split('=')[0]! : a.startsWith('-') ? a.slice(0, 2) : null;
          if (flag !== null && OWN_SBATCH_FLAGS.includes(flag)) throw new UnforgetError(`${at}: '${a}' is set by the sweep itself (array, job name, output and folder); remove it`);
        }
        out.sbatch_args = args;
        break;
      }
      case 'poll_seconds':
        if (typeof v !== 'number' || !(v >= 0.1 && v <= 3600)) throw new UnforgetError(`${at}: expected a number of seconds between 0.1 and 3600, got ${show(v)}`);
        out.poll_seconds = v;
        break;
      default:
        throw new UnforgetError(`${where}: unknown key '${key}' (known: ${SLURM_KEYS.join(', ')})`);
    }
  }
  return out;
}

/** The sbatch options for an array task's resources. */
export function resourceArgs(o: SlurmOptions): string[] {
  const args: string[] = [];
  if (o.partition !== undefined) args.push(`--partition=${o.partition}`);
  if (o.account !== undefined) args.push(`--account=${o.account}`);
  if (o.qos !== undefined) args.push(`--qos=${o.qos}`);
  if (o.cpus_per_task !== undefined) args.push(`--cpus-per-task=${o.cpus_per_task}`);
  if (o.gpus !== undefined && o.gpus !== 0) args.push(`--gpus=${o.gpus}`);
  if (o.mem !== undefined) args.push(`--mem=${o.mem}`);
  if (o.time !== undefined) args.push(`--time=${o.time}`);
  return [...args, ...(o.sbatch_args ?? [])];
}

/** The full path of `cmd` on PATH, or null. */
export function onPath(cmd: string, envPath = process.env.PATH ?? ''): string | null {
  for (const dir of envPath.split(path.delimiter)) {
    if (dir === '') continue;
    const file = path.join(dir, cmd);
    try {
      fs.accessSync(file, fs.constants.X_OK);
      if (fs.statSync(file).isFile()) return file;
    } catch {
      // not here
    }
  }
  return null;
}

/** Throws the one-line error a user sees when this machine cannot submit to Slurm. */
export function requireSlurmCommands(): void {
  for (const cmd of ['sbatch', 'squeue', 'scancel']) {
    if (onPath(cmd) === null) {
      throw new UnforgetError(`--executor slurm: '${cmd}' is not on PATH; run the sweep on a Slurm login node (or load its Slurm module), or use --executor local`);
    }
  }
}

interface Ran {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a Slurm command; `code` is -1 when it could not run at all (then `stderr` says why). */
function runCommand(cmd: string, args: readonly string[], timeoutMs = 60_000): Promise<Ran> {
  return new Promise((resolve) => {
    execFile(cmd, args, { encoding: 'utf8', timeout: timeoutMs, maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
      if (!err) return resolve({ code: 0, stdout, stderr });
      const exitCode = (err as { code?: unknown }).code;
      if (typeof exitCode === 'number') return resolve({ code: exitCode, stdout, stderr });
      resolve({ code: -1, stdout: stdout ?? '', stderr: `${cmd}: ${err.message}` });
    });
  });
}

const firstLine = (s: string) => s.split('\n').map((l) => l.trim()).find((l) => l !== '') ?? '';

/** Submits `script` as a job array of `n` tasks (indices 0..n-1); returns the array's job id. */
export async function submitArray(
  script: string,
  n: number,
  o: SlurmOptions,
  own: { jobName: string; output: string; chdir: string },
): Promise<string> {
  const array = `0-${n - 1}${o.max_concurrent !== undefined ? `%${o.max_concurrent}` : ''}`;
  const args = ['--parsable', `--array=${array}`, `--job-name=${own.jobName}`, `--output=${own.output}`, `--chdir=${own.chdir}`, ...resourceArgs(o), script];
  const r = await runCommand('sbatch', args);
  const id = r.stdout.trim().split('\n').pop()?.split(';')[0]?.trim() ?? '';
  if (r.code !== 0 || !/^\d+$/.test(id)) {
    throw new UnforgetError(`sbatch refused the array: ${firstLine(r.stderr) || firstLine(r.stdout) || `exit code ${r.code}`}`);
  }
  return id;
}

export interface QueuedTask {
  jobId: string;
  index: number;
  state: string;
}

/** Job states after which a task does nothing more (squeue shows them for a while, then forgets the task). */
const ENDED = new Set(['COMPLETED', 'FAILED', 'CANCELLED', 'TIMEOUT', 'NODE_FAIL', 'PREEMPTED', 'BOOT_FAIL', 'DEADLINE', 'OUT_OF_MEMORY', 'REVOKED']);

export const isEnded = (state: string) => ENDED.has(state.split(/\s/)[0]!.replace(/\+$/, ''));

/**
 * Every array task of this user's jobs named `jobName` that squeue still knows, in any state (ended
 * tasks stay listed for a while); an error when squeue itself failed, as an unreachable controller is not "no jobs".
 */
export async function queuedTasks(jobName: string): Promise<{ tasks: QueuedTask[] } | { error: string }> {
  const r = await runCommand('squeue', ['-h', '-r', `--name=${jobName}`, `--user=${os.userInfo().username}`, '--states=all', '--format=%F|%K|%T']);
  if (r.code !== 0) return { error: firstLine(r.stderr) || `exit code ${r.code}` };
  const tasks: QueuedTask[] = [];
  for (const line of r.stdout.split('\n')) {
    const [jobId, index, state] = line.trim().split('|');
    if (!jobId || state === undefined || !/^\d+$/.test(index ?? '')) continue;
    tasks.push({ jobId, index: Number(index), state });
  }
  return { tasks };
}

/** Cancels a whole array (its running tasks get SIGTERM). */
export async function cancelJob(jobId: string): Promise<string | null> {
  const r = await runCommand('scancel', [jobId]);
  return r.code === 0 ? null : firstLine(r.stderr) || `exit code ${r.code}`;
}

/** A word for a single-quoted POSIX shell string. */
export function shellQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}
