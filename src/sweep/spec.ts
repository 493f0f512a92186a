/**
 * A sweep file, W&B style: which command to run, the overrides every run shares (`base`), and the
 * parameters whose values span the grid. Parsing resolves it into the full list of runs, each with a
 * stable id derived from its values, so a sweep started again finds the runs it already did.
 *
 *   command: train                  # or: experiment toy-continual [--preset demo]
 *   method: grid                    # optional; grid is the only method
 *   base: {data.path: d.bin, stop.num_tokens_train: 1000000}   # or a list of key=value strings
 *   parameters:
 *     opt.lr: {values: [1e-3, 3e-3]}
 *     model.D: {values: [64, 128]}
 *     run.seed: {value: 0}          # fixed for every run
 *   metric: {name: valid_ntp, goal: minimize}   # optional: the metric reports lead with
 *   slurm: {partition: gpu, gpus: 1, time: '2:00:00'}   # optional: resources with --executor slurm
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import YAML from 'yaml';
import { parseOverride } from '../config/load.js';
import { DataError, fileError, UnforgetError } from '../errors.js';
import { parseSlurmOptions, type SlurmOptions } from './slurm.js';

export type Value = null | boolean | number | string | Value[];

export interface SweepParameter {
  key: string;
  values: Value[];
  /** True when given as `{value: x}` (one value for every run, left out of run ids). */
  fixed: boolean;
}

export interface SweepRun {
  id: string;
  /** Parameter key → value, in the file's parameter order. */
  params: Record<string, Value>;
}

export interface SweepSpec {
  /** `['train']` or `['experiment', NAME, ...options]`. */
  command: string[];
  method: 'grid';
  /** `key=value` overrides shared by every run, before the parameters. */
  base: string[];
  parameters: SweepParameter[];
  metric: { name: string; goal: 'minimize' | 'maximize' } | null;
  /** The `slurm:` block (resources for `--executor slurm`); null when the file has none. */
  slurm: SlurmOptions | null;
  runs: SweepRun[];
  /** The sweep file, as errors name it. */
  source: string;
}

const TOP_LEVEL_KEYS = ['command', 'method', 'base', 'parameters', 'metric', 'name', 'description', 'slurm'] as const;
/** The sweep decides where each run's folder goes. */
const RESERVED_KEYS = ['run.id', 'log.dir', 'model.save_dir', 'log.progress'];

type Plain = Record<string, unknown>;
const isPlain = (v: unknown): v is Plain => v !== null && typeof v === 'object' && !Array.isArray(v);

function isValue(v: unknown): v is Value {
  if (v === null || typeof v === 'boolean' || typeof v === 'string') return true;
  if (typeof v === 'number') return Number.isFinite(v);
  return Array.isArray(v) && v.every(isValue);
}

/**
 * A value as the text of a `key=value` override that the config loader parses back to the same value:
 * a string that YAML would read as something else (`'1e-3'`, `'null'`, `'true'`) is quoted.
 */
export function overrideText(key: string, v: Value): string {
  if (typeof v === 'string') {
    let same = false;
    try {
      same = parseOverride(`${key}=${v}`).value === v;
    } catch {
      // Text YAML cannot parse bare (an unclosed bracket): quoted, it is a plain string.
    }
    return same ? v : JSON.stringify(v);
  }
  return JSON.stringify(v);
}

/** A value as it appears in a run id: strings bare, lists as `[a,b]`. */
function idText(v: Value): string {
  return typeof v === 'string' ? v : JSON.stringify(v);
}

const SAFE_ID = /^[A-Za-z0-9._=,+-]+$/;
const MAX_ID = 96;

/**
 * The run id of one grid point: `key=value` of the swept (multi-valued) parameters joined by commas,
 * e.g. `opt.lr=0.001,model.D=64`. When that text has characters a folder name should not (or is long),
 * it is sanitised and a hash of the exact values is appended, so ids stay unique and stable.
 */
export function runId(params: Record<string, Value>, swept: readonly string[]): string {
  if (swept.length === 0) return 'run';
  const readable = swept.map((k) => `${k}=${idText(params[k]!)}`).join(',');
  if (SAFE_ID.test(readable) && readable.length <= MAX_ID && !readable.startsWith('.')) return readable;
  const hash = createHash('sha256').update(JSON.stringify(swept.map((k) => [k, params[k]]))).digest('hex').slice(0, 8);
  const cleaned = readable.replace(/[^A-Za-z0-9._=,+-]+/g, '_').replace(/^\.+/, '_').slice(0, MAX_ID - 9);
  return `${cleaned}-${hash}`;
}

function checkKey(key: string, where: string): void {
  if (!/^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$/.test(key)) {
    throw new UnforgetError(`${where}: '${key}' is not a dotted config key (e.g. opt.lr)`);
  }
  if (RESERVED_KEYS.includes(key)) {
    throw new UnforgetError(`${where}: '${key}' is set by the sweep itself (each run's folder is <out>/runs/<run id>); remove it`);
  }
}

/** `base` as key=value strings: a list of them, or a mapping (nested sections flattened to dotted keys). */
function parseBase(raw: unknown, source: string): string[] {
  if (raw === undefined || raw === null) return [];
  if (Array.isArray(raw)) {
    return raw.map((item, i) => {
      if (typeof item !== 'string' || !item.includes('=')) {
        throw new UnforgetError(`${source}: base[${i}]: expected a 'key=value' string, got ${JSON.stringify(item)}`);
      }
      const { key } = parseOverride(item);
      checkKey(key, `${source}: base`);
      return item;
    });
  }
  if (!isPlain(raw)) throw new UnforgetError(`${source}: base: expected a mapping of config keys to values, or a list of key=value strings`);
  const out: string[] = [];
  const walk = (obj: Plain, prefix: string) => {
    for (const [k, v] of Object.entries(obj)) {
      const key = prefix ? `${prefix}.${k}` : k;
      if (isPlain(v)) walk(v, key);
      else {
        checkKey(key, `${source}: base`);
        if (!isValue(v)) throw new UnforgetError(`${source}: base: '${key}' has a value that is not a number, string, boolean, null or list`);
        out.push(`${key}=${overrideText(key, v)}`);
      }
    }
  };
  walk(raw, '');
  return out;
}

function parseParameters(raw: unknown, source: string): SweepParameter[] {
  if (!isPlain(raw) || Object.keys(raw).length === 0) {
    throw new UnforgetError(`${source}: parameters: expected a mapping of config keys to {values: [...]} or {value: x}`);
  }
  const out: SweepParameter[] = [];
  for (const [key, spec] of Object.entries(raw)) {
    const where = `${source}: parameters.${key}`;
    checkKey(key, `${source}: parameters`);
    if (!isPlain(spec)) throw new UnforgetError(`${where}: expected {values: [...]} or {value: x}, got ${JSON.stringify(spec)}`);
    const extra = Object.keys(spec).filter((k) => k !== 'values' && k !== 'value');
    if (extra.length) {
      throw new UnforgetError(`${where}: unknown key '${extra[0]}' (a grid sweep takes {values: [...]} or {value: x}; distributions are not supported)`);
    }
    if ('values' in spec && 'value' in spec) throw new UnforgetError(`${where}: give either values or value, not both`);
    let values: unknown[];
    let fixed = false;
    if ('values' in spec) {
      if (!Array.isArray(spec.values) || spec.values.length === 0) throw new UnforgetError(`${where}.values: expected a non-empty list`);
      values = spec.values;
    } else if ('value' in spec) {
      values = [spec.value];
      fixed = true;
    } else {
      throw new UnforgetError(`${where}: expected {values: [...]} or {value: x}`);
    }
    const seen = new Set<string>();
    for (const v of values) {
      if (!isValue(v)) throw new UnforgetError(`${where}: value ${JSON.stringify(v)} is not a finite number, string, boolean, null or list`);
      const k = JSON.stringify(v);
      if (seen.has(k)) throw new UnforgetError(`${where}: value ${k} is listed twice`);
      seen.add(k);
    }
    out.push({ key, values: values as Value[], fixed });
  }
  return out;
}

function parseCommand(raw: unknown, source: string): string[] {
  const words = typeof raw === 'string' ? raw.trim().split(/\s+/) : Array.isArray(raw) && raw.every((w) => typeof w === 'string') ? (raw as string[]) : null;
  if (!words || words.length === 0 || words[0] === '') {
    throw new UnforgetError(`${source}: command: expected 'train' or 'experiment NAME', got ${JSON.stringify(raw)}`);
  }
  if (words[0] === 'train') {
    if (words.length > 1) throw new UnforgetError(`${source}: command: 'train' takes no further words (put config in base or parameters), got '${words.slice(1).join(' ')}'`);
    return words;
  }
  if (words[0] === 'experiment') {
    if (words.length < 2) throw new UnforgetError(`${source}: command: 'experiment' needs a NAME, e.g. 'experiment toy-continual'`);
    const bad = words.slice(2).find((w) => w === '--out' || w.startsWith('--out=') || w.includes('='));
    if (bad) throw new UnforgetError(`${source}: command: '${bad}' does not belong in the command (the sweep sets --out; overrides go in base or parameters)`);
    return words;
  }
  throw new UnforgetError(`${source}: command: expected 'train' or 'experiment NAME', got '${words[0]}'`);
}

function parseMetric(raw: unknown, source: string): SweepSpec['metric'] {
  if (raw === undefined || raw === null) return null;
  if (typeof raw === 'string') return { name: raw, goal: 'minimize' };
  if (!isPlain(raw) || typeof raw.name !== 'string') throw new UnforgetError(`${source}: metric: expected {name: METRIC, goal: minimize|maximize}`);
  const goal = raw.goal ?? 'minimize';
  if (goal !== 'minimize' && goal !== 'maximize') throw new UnforgetError(`${source}: metric.goal: expected minimize or maximize, got ${JSON.stringify(goal)}`);
  const extra = Object.keys(raw).find((k) => k !== 'name' && k !== 'goal');
  if (extra) throw new UnforgetError(`${source}: metric: unknown key '${extra}'`);
  return { name: raw.name, goal };
}

/** The cartesian product of the parameters' values, first parameter varying slowest. */
function grid(parameters: readonly SweepParameter[]): Array<Record<string, Value>> {
  let points: Array<Record<string, Value>> = [{}];
  for (const p of parameters) points = points.flatMap((pt) => p.values.map((v) => ({ ...pt, [p.key]: v })));
  return points;
}

/** Parses and resolves a sweep document (already read from YAML); `source` names it in errors. */
export function parseSweep(doc: unknown, source: string): SweepSpec {
  if (!isPlain(doc)) throw new UnforgetError(`${source}: expected a mapping with command and parameters at the top level`);
  for (const k of Object.keys(doc)) {
    if (!(TOP_LEVEL_KEYS as readonly string[]).includes(k)) {
      throw new UnforgetError(`${source}: unknown top-level key '${k}' (known: ${TOP_LEVEL_KEYS.join(', ')})`);
    }
  }
  if (doc.command === undefined) throw new UnforgetError(`${source}: command is required ('train' or 'experiment NAME')`);
  const method = doc.method ?? 'grid';
  if (method !== 'grid') throw new UnforgetError(`${source}: method: only 'grid' is supported, got ${JSON.stringify(method)}`);
  const command = parseCommand(doc.command, source);
  const base = parseBase(doc.base, source);
  const parameters = parseParameters(doc.parameters, source);
  const swept = sweptKeys({ parameters });
  const runs = grid(parameters).map((params) => ({ id: runId(params, swept), params }));
  const ids = new Set<string>();
  for (const r of runs) {
    if (ids.has(r.id)) throw new UnforgetError(`${source}: two grid points get the same run id '${r.id}' (values that differ only in type?)`);
    ids.add(r.id);
  }
  const slurm = doc.slurm === undefined ? null : parseSlurmOptions(doc.slurm, `${source}: slurm`);
  return { command, method: 'grid', base, parameters, metric: parseMetric(doc.metric, source), slurm, runs, source };
}

export function readSweepFile(file: string): SweepSpec {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw fileError(err, file, 'sweep file');
  }
  let doc: unknown;
  try {
    doc = YAML.parse(text);
  } catch (err) {
    throw new DataError(`${file}: invalid YAML: ${(err as Error).message.split('\n')[0]}`);
  }
  return parseSweep(doc, file);
}

/** The resolved sweep as saved in `<out>/sweep.yaml`: what decides whether two sweeps are the same. */
export function resolvedDocument(spec: SweepSpec): Plain {
  return {
    command: spec.command.join(' '),
    method: spec.method,
    base: spec.base,
    parameters: Object.fromEntries(spec.parameters.map((p) => [p.key, p.fixed ? { value: p.values[0] } : { values: p.values }])),
    ...(spec.metric ? { metric: spec.metric } : {}),
    ...(spec.slurm ? { slurm: spec.slurm } : {}),
    runs: spec.runs.map((r) => ({ id: r.id, params: r.params })),
  };
}

/** The part of the resolved document two runs of one sweep must agree on (not `metric`, which only reports read). */
export function gridIdentity(doc: Plain): string {
  return JSON.stringify({ command: doc.command, method: doc.method, base: doc.base, runs: doc.runs });
}

/** The parameters that vary across runs (more than one value), in file order. */
export function sweptKeys(spec: Pick<SweepSpec, 'parameters'>): string[] {
  return spec.parameters.filter((p) => !p.fixed && p.values.length > 1).map((p) => p.key);
}
