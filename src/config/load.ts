/**
 * Loading the run configuration, Hydra/OmegaConf style: defaults ← base ← YAML files in order ←
 * `key=value` overrides, then validation that names the offending dotted key on one line.
 */
import fs from 'node:fs';
import { randomBytes } from 'node:crypto';
import YAML from 'yaml';
import type { z } from 'zod';
import { ConfigError, DataError, fileError } from '../errors.js';
import {
  ACCEPTED_REFERENCE_SETTINGS,
  CONFIG_ALIASES,
  buildSchema,
  checkConfig,
  showValue,
  type Config,
  type ConfigWith,
  type DeepPartial,
  type ExtraSections,
} from './schema.js';

type Plain = Record<string, unknown>;

function isPlainObject(v: unknown): v is Plain {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

/**
 * Merges `src` into `dst` (mutating `dst`): mappings merge key by key, anything else (scalars, lists,
 * null) replaces — except that a null never wipes out a whole section, because an empty YAML section
 * (`reg:` with everything commented out) parses as null.
 */
function deepMergeInto(dst: Plain, src: Plain): Plain {
  for (const [k, v] of Object.entries(src)) {
    const cur = dst[k];
    if (isPlainObject(v) && isPlainObject(cur)) deepMergeInto(cur, v);
    else if (v === null && isPlainObject(cur)) continue;
    else dst[k] = isPlainObject(v) ? deepMergeInto({}, v) : v;
  }
  return dst;
}

/** Turns `{'opt.lr': 1}` into `{opt: {lr: 1}}` at every level, so files may use dotted keys too. */
function expandDotted(obj: Plain): Plain {
  const out: Plain = {};
  for (const [k, v] of Object.entries(obj)) {
    const value = isPlainObject(v) ? expandDotted(v) : v;
    const segs = k.split('.');
    let nested: unknown = value;
    for (let i = segs.length - 1; i >= 1; i--) nested = { [segs[i]!]: nested };
    deepMergeInto(out, { [segs[0]!]: nested });
  }
  return out;
}

function firstLine(msg: string): string {
  return msg.split('\n')[0]!.trim();
}

/** Reads one YAML config file into a plain (dot-expanded) mapping; DataError naming the file otherwise. */
function readYamlFile(file: string): Plain {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw fileError(err, file, 'config file');
  }
  return parseYamlMapping(text, file);
}

function parseYamlMapping(text: string, source: string): Plain {
  let doc: unknown;
  try {
    doc = YAML.parse(text);
  } catch (err) {
    throw new DataError(`${source}: invalid YAML: ${firstLine((err as Error).message)}`);
  }
  if (doc === null || doc === undefined) return {};
  if (!isPlainObject(doc)) {
    throw new DataError(`${source}: expected a mapping of config sections at the top level, got ${showValue(doc)}`);
  }
  // A section with everything commented out (`reg:`) parses as null: it means "no settings here".
  for (const [k, v] of Object.entries(doc)) if (v === null) delete doc[k];
  return expandDotted(doc);
}

const NULL_LITERALS = ['null', 'Null', 'NULL', '~'];

/**
 * Parses the value of a `key=value` override as a YAML flow value: `3e-4` → number, `[sort,add]` →
 * list, `null` → null, `true` → boolean. Text that YAML would read as a block structure or a comment
 * (`a: b`, `- x`, `#x`) is kept as the literal string, as a user typing a path or name means it.
 */
export function parseOverrideValue(key: string, raw: string): unknown {
  const text = raw.trim();
  if (text === '') return '';
  let value: unknown;
  try {
    value = YAML.parse(text);
  } catch (err) {
    throw new ConfigError(key, `cannot parse value '${raw}': ${firstLine((err as Error).message)}`);
  }
  if (value === null || value === undefined) return NULL_LITERALS.includes(text) ? null : raw;
  if (typeof value === 'object' && !text.startsWith('[') && !text.startsWith('{')) return raw;
  return value;
}

/** Splits `a.b.c=value` into the dotted key and its parsed value. */
export function parseOverride(arg: string): { key: string; value: unknown } {
  const eq = arg.indexOf('=');
  if (eq < 0) throw new ConfigError(arg, `malformed override '${arg}': expected key=value, e.g. opt.lr=3e-4`);
  const key = arg.slice(0, eq).trim();
  if (key === '' || key.split('.').some((s) => s === '')) {
    throw new ConfigError(key, `malformed override '${arg}': expected key=value with a dotted key, e.g. opt.lr=3e-4`);
  }
  return { key, value: parseOverrideValue(key, arg.slice(eq + 1)) };
}

/** Sets a dotted key in a nested mapping (mutating it), creating intermediate sections. */
function setDotted(obj: Plain, key: string, value: unknown): void {
  const segs = key.split('.');
  let cur = obj;
  for (const s of segs.slice(0, -1)) {
    if (!isPlainObject(cur[s])) cur[s] = {}; // a scalar here is replaced; validation then reports the key
    cur = cur[s] as Plain;
  }
  const last = segs[segs.length - 1]!;
  if (isPlainObject(value) && isPlainObject(cur[last])) deepMergeInto(cur[last] as Plain, value);
  else cur[last] = isPlainObject(value) ? deepMergeInto({}, value) : value;
}

// ---------------------------------------------------------------------------------------------
// The reference implementation's spellings
// ---------------------------------------------------------------------------------------------

/** Removes the dotted `key` from a nested mapping; returns whether it was there and its value. */
function takeDotted(obj: Plain, key: string): { found: boolean; value?: unknown } {
  const segs = key.split('.');
  let cur: Plain = obj;
  for (const s of segs.slice(0, -1)) {
    if (!isPlainObject(cur[s])) return { found: false };
    cur = cur[s] as Plain;
  }
  const last = segs[segs.length - 1]!;
  if (!Object.hasOwn(cur, last)) return { found: false };
  const value = cur[last];
  delete cur[last];
  return { found: true, value };
}

function hasDotted(obj: Plain, key: string): boolean {
  let cur: unknown = obj;
  for (const s of key.split('.')) {
    if (!isPlainObject(cur) || !Object.hasOwn(cur, s)) return false;
    cur = cur[s];
  }
  return true;
}

/**
 * Rewrites one layer of user input (a config file, or one override as a mapping) from the reference's
 * spellings to unforget's: an alias becomes its target, and an accepted reference setting is checked
 * and dropped. `given` collects, across all layers, which alias and target keys the user wrote, so an
 * alias and its target both given is an error wherever each was written.
 */
function resolveReferenceKeys(layer: Plain, where: string, given: Map<string, string>): void {
  for (const [key, rule] of Object.entries(ACCEPTED_REFERENCE_SETTINGS)) {
    const t = takeDotted(layer, key);
    if (t.found && !rule.values.includes(t.value)) {
      throw new ConfigError(key, `only ${rule.values.map((v) => showValue(v)).join(', ')} is accepted (the reference implementation's key): ${rule.why}; got ${showValue(t.value)}`);
    }
  }
  for (const [alias, target] of Object.entries(CONFIG_ALIASES)) {
    if (hasDotted(layer, target)) given.set(target, where);
    const t = takeDotted(layer, alias);
    if (t.found) given.set(alias, where);
    if (given.has(alias) && given.has(target)) {
      throw new ConfigError(alias, `is the reference implementation's name for ${target}; give one of them, not both (${alias}: ${given.get(alias)}; ${target}: ${given.get(target)})`);
    }
    if (t.found) setDotted(layer, target, t.value);
  }
}

// ---------------------------------------------------------------------------------------------
// Validation
// ---------------------------------------------------------------------------------------------

function dotted(path: readonly PropertyKey[]): string {
  return path.map((s, i) => (typeof s === 'number' ? `[${s}]` : `${i ? '.' : ''}${String(s)}`)).join('');
}

/** The keys the schema defines for the object at `path` (looking through default/prefault wrappers). */
function schemaKeysAt(schema: z.ZodType, path: readonly PropertyKey[]): string[] {
  type Def = { type: string; innerType?: unknown; shape?: Record<string, unknown> };
  const unwrap = (s: unknown): { def: Def } | undefined => {
    let cur = s as { def: Def } | undefined;
    while (cur?.def && ['prefault', 'default', 'optional', 'nullable'].includes(cur.def.type)) {
      cur = cur.def.innerType as { def: Def };
    }
    return cur;
  };
  let cur = unwrap(schema);
  for (const seg of path) {
    cur = cur?.def.type === 'object' ? unwrap(cur.def.shape?.[String(seg)]) : undefined;
  }
  return cur?.def.type === 'object' ? Object.keys(cur.def.shape ?? {}) : [];
}

/** Optimal-string-alignment distance: edits plus adjacent transpositions ('otp' → 'opt' is 1). */
function editDistance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let v = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) v = Math.min(v, d[i - 2]![j - 2]! + 1);
      d[i]![j] = v;
    }
  }
  return d[a.length]![b.length]!;
}

function suggestion(unknown: string, known: readonly string[]): string {
  let best: string | undefined;
  let bestD = Infinity;
  for (const k of known) {
    const d = k.toLowerCase() === unknown.toLowerCase() ? 0 : editDistance(unknown, k);
    if (d < bestD) [best, bestD] = [k, d];
  }
  // Close enough to be a typo, and not a rewrite of most of a short name ('a' is not a typo of 'D').
  const maxD = unknown.length >= 5 ? 2 : 1;
  return best !== undefined && bestD <= maxD && bestD < unknown.length ? best : '';
}

/** Turns the first zod issue into a one-line ConfigError naming the dotted key. */
function toConfigError(issues: readonly z.core.$ZodIssue[], schema: z.ZodType): ConfigError {
  // An unknown key is usually the cause of any other complaint (a typo), so report it first.
  const issue = issues.find((i) => i.code === 'unrecognized_keys') ?? issues[0]!;
  if (issue.code === 'unrecognized_keys') {
    const [first, ...rest] = issue.keys;
    const key = dotted([...issue.path, first!]);
    const hint = suggestion(first!, schemaKeysAt(schema, issue.path));
    const more = rest.length ? ` (also unknown: ${rest.map((k) => dotted([...issue.path, k])).join(', ')})` : '';
    return new ConfigError(key, `unknown key${hint ? ` (did you mean '${dotted([...issue.path, hint])}'?)` : ''}${more}`);
  }
  const key = issue.path.length ? dotted(issue.path) : '<root>';
  if (issue.code === 'invalid_type' && issue.expected === 'object') {
    return new ConfigError(key, `expected a mapping of keys, got ${showValue(issue.input)}`);
  }
  return new ConfigError(key, issue.message);
}

export interface LoadOptions<E extends ExtraSections> {
  /** Extra sections (e.g. an experiment's `toy`), built with `section()` from schema.ts. */
  sections?: E;
  /** Require at least one stop.* criterion (default true: a training run must end). */
  requireStop?: boolean;
}

/** Checks a merged raw mapping against the schema alone (keys and types); throws ConfigError. */
function parseWithSchema<E extends ExtraSections>(raw: unknown, sections: E | undefined): ConfigWith<E> {
  const schema = buildSchema(sections);
  const res = schema.safeParse(raw, { reportInput: true });
  if (!res.success) throw toConfigError(res.error.issues, schema);
  return res.data as unknown as ConfigWith<E>;
}

/** Validates a merged raw mapping against the schema and the cross-key rules; throws ConfigError. */
export function validateConfig<E extends ExtraSections = {}>(raw: unknown, opts: LoadOptions<E> = {}): ConfigWith<E> {
  const cfg = parseWithSchema(raw, opts.sections);
  checkConfig(cfg, { requireStop: opts.requireStop });
  return cfg;
}

/**
 * A model.load_path the user gave must exist. loadConfig checks it before the cross-key rules, so
 * that a mistyped checkpoint is reported first (not, say, a missing stop criterion); validateConfig
 * does not, as a saved config's checkpoint may since have moved.
 */
function checkLoadPath(loadPath: string | null): void {
  if (loadPath === null || fs.existsSync(loadPath)) return;
  // A path to the weights file itself is allowed too (as model/checkpoint.ts's checkpointPaths reads it).
  const what = /\.(safetensors|npz)$/.test(loadPath) ? 'checkpoint file' : 'checkpoint folder';
  throw new ConfigError('model.load_path', `${loadPath}: ${what} does not exist`);
}

/**
 * The resolved config: schema defaults ← `base` ← each YAML file in order ← each `key=value`
 * override in order. Files that are missing or not YAML mappings are DataErrors naming the file;
 * bad keys and values, and a model.load_path that does not exist, are ConfigErrors naming the dotted key.
 */
export function loadConfig<E extends ExtraSections = {}>(
  files: readonly string[],
  overrides: readonly string[],
  base?: DeepPartial<ConfigWith<E>>,
  opts: LoadOptions<E> = {},
): ConfigWith<E> {
  const raw: Plain = {};
  if (base !== undefined) deepMergeInto(raw, expandDotted(base as Plain));
  const given = new Map<string, string>();
  for (const file of files) {
    const layer = readYamlFile(file);
    resolveReferenceKeys(layer, file, given);
    deepMergeInto(raw, layer);
  }
  for (const arg of overrides) {
    const { key, value } = parseOverride(arg);
    const layer: Plain = {};
    setDotted(layer, key, value);
    resolveReferenceKeys(layer, 'the command line', given);
    for (const [k, v] of Object.entries(layer)) setDotted(raw, k, v);
  }
  const cfg = parseWithSchema(raw, opts.sections);
  checkLoadPath(cfg.model.load_path);
  checkConfig(cfg, { requireStop: opts.requireStop });
  return cfg;
}

/** The config as YAML (the run folder's `config.yaml`); `configFromYamlText` reads it back. */
export function dumpConfig(cfg: Config): string {
  return YAML.stringify(cfg, { lineWidth: 0 });
}

/**
 * Reads a saved `config.yaml` (e.g. a checkpoint's). Top-level sections this program does not know
 * (an experiment's own section, or one from a newer version) are dropped, so any checkpoint can be
 * sampled or evaluated; problems are DataErrors naming `source`. No stop criterion is required.
 */
export function configFromYamlText<E extends ExtraSections = {}>(
  text: string,
  source = 'config.yaml',
  opts: LoadOptions<E> = {},
): ConfigWith<E> {
  const raw = parseYamlMapping(text, source);
  const known = new Set(Object.keys(buildSchema(opts.sections).shape));
  for (const k of Object.keys(raw)) if (!known.has(k)) delete raw[k];
  try {
    return validateConfig(raw, { requireStop: false, ...opts });
  } catch (err) {
    if (err instanceof ConfigError) throw new DataError(`${source}: ${err.message}`);
    throw err;
  }
}

/** A run folder name `YYYYMMDD-HHMMSS-xxxx` (local time, 4 random hex digits against collisions). */
export function generateRunId(date: Date = new Date()): string {
  const p = (n: number, w = 2): string => String(n).padStart(w, '0');
  const stamp = `${p(date.getFullYear(), 4)}${p(date.getMonth() + 1)}${p(date.getDate())}-${p(date.getHours())}${p(date.getMinutes())}${p(date.getSeconds())}`;
  return `${stamp}-${randomBytes(2).toString('hex')}`;
}
