/**
 * The run configuration: nested sections whose dotted keys (`opt.lr`, `reg.method`) are the names
 * of docs/contract.md and of the study's reference code.
 *
 * Every section is a strict object (an unknown key is an error, never silently ignored) whose fields
 * all have defaults. Fields are built with the small helpers below instead of bare zod types so that
 * every validation message has one uniform, one-line shape — `expected a finite number ≥ 0, got NaN`
 * — and so that values arriving as strings from the command line ('3e-4', 'NaN', 'none') are read the
 * way OmegaConf/Hydra users expect.
 *
 * Extending: an experiment adds its own section (e.g. `toy`) with `section({...})` and the field
 * helpers, and passes it to `loadConfig(..., { sections: { toy } })`.
 */
import { z } from 'zod';
import { ConfigError } from '../errors.js';

// ---------------------------------------------------------------------------------------------
// Field helpers
// ---------------------------------------------------------------------------------------------

/** How a value is shown in an error message: `NaN`, `'adam'`, `null`, `[1,2]`, `a mapping`. */
export function showValue(v: unknown): string {
  if (v === undefined) return 'nothing';
  if (v === null) return 'null';
  if (typeof v === 'string') {
    // Escape control characters and keep messages one short line (a binary file passed as a
    // config would otherwise be printed whole).
    const esc = JSON.stringify(v).slice(1, -1).replace(/\\"/g, '"');
    return esc.length <= 60 ? `'${esc}'` : `'${esc.slice(0, 57)}...' (${v.length} characters)`;
  }
  if (typeof v === 'number' || typeof v === 'boolean' || typeof v === 'bigint') return String(v);
  if (Array.isArray(v)) {
    const s = JSON.stringify(v) ?? 'a list';
    return s.length <= 60 ? s : 'a list';
  }
  return 'a mapping';
}

const INVALID: unique symbol = Symbol('invalid');
type Invalid = typeof INVALID;

/**
 * A field that accepts any input, converts it with `convert`, and reports
 * `expected <expected>, got <show(value)>` when `convert` rejects it.
 */
export function field<T>(expected: string, convert: (v: unknown) => T | Invalid, show: (v: unknown) => string = showValue) {
  return z.unknown().transform((v, ctx): T => {
    const out = convert(v);
    if (out === INVALID) {
      ctx.addIssue({ code: 'custom', message: `expected ${expected}, got ${show(v)}` });
      return z.NEVER;
    }
    return out;
  });
}

/** Spellings of "no value" accepted where a field is nullable (YAML null, plus common strings). */
function isNullish(v: unknown): boolean {
  return v === null || (typeof v === 'string' && ['null', 'none', '~'].includes(v.trim().toLowerCase()));
}

/**
 * Reads a number from a number or a numeric string ('3e-4', '1_000_000', 'NaN', 'inf'): YAML 1.2
 * keeps 'NaN' and '1_000' as strings, and quoted command-line values arrive as strings.
 */
function toNumber(v: unknown): number | Invalid {
  if (typeof v === 'number') return v;
  if (typeof v !== 'string') return INVALID;
  const s = v.trim().toLowerCase();
  if (s === 'nan' || s === '.nan') return NaN;
  if (/^[+]?(inf|infinity|\.inf)$/.test(s)) return Infinity;
  if (/^-(inf|infinity|\.inf)$/.test(s)) return -Infinity;
  const plain = s.replace(/(\d)_(?=\d)/g, '$1'); // digit separators: 1_000_000
  return /^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/.test(plain) ? Number(plain) : INVALID;
}

/** Shows a numeric string as the number it was read as, so 'NaN' and .nan both report `got NaN`. */
function showNumeric(v: unknown): string {
  const x = toNumber(v);
  return x === INVALID ? showValue(v) : String(x);
}

interface RangeOpts {
  /** Inclusive lower bound. */
  min?: number;
  /** Exclusive lower bound. */
  gt?: number;
  /** Inclusive upper bound. */
  max?: number;
  /** Exclusive upper bound. */
  lt?: number;
}

function rangeText(r: RangeOpts): string {
  const parts: string[] = [];
  if (r.gt !== undefined) parts.push(`> ${r.gt}`);
  else if (r.min !== undefined) parts.push(`≥ ${r.min}`);
  if (r.lt !== undefined) parts.push(`< ${r.lt}`);
  else if (r.max !== undefined) parts.push(`≤ ${r.max}`);
  return parts.length ? ' ' + parts.join(' and ') : '';
}

function inRange(x: number, r: RangeOpts): boolean {
  return (
    (r.min === undefined || x >= r.min) &&
    (r.gt === undefined || x > r.gt) &&
    (r.max === undefined || x <= r.max) &&
    (r.lt === undefined || x < r.lt)
  );
}

/** A finite float, optionally bounded. */
export function num(r: RangeOpts = {}) {
  return field<number>(`a finite number${rangeText(r)}`, (v) => {
    const x = toNumber(v);
    return x !== INVALID && Number.isFinite(x) && inRange(x, r) ? x : INVALID;
  }, showNumeric);
}

/** A finite float or null. */
export function numOrNull(r: RangeOpts = {}) {
  return field<number | null>(`a finite number${rangeText(r)} or null`, (v) => {
    if (isNullish(v)) return null;
    const x = toNumber(v);
    return x !== INVALID && Number.isFinite(x) && inRange(x, r) ? x : INVALID;
  }, showNumeric);
}

/** A safe integer, optionally bounded. */
export function int(r: RangeOpts = {}) {
  return field<number>(`an integer${rangeText(r)}`, (v) => {
    const x = toNumber(v);
    return x !== INVALID && Number.isSafeInteger(x) && inRange(x, r) ? x : INVALID;
  }, showNumeric);
}

/** A safe integer or null. */
export function intOrNull(r: RangeOpts = {}) {
  return field<number | null>(`an integer${rangeText(r)} or null`, (v) => {
    if (isNullish(v)) return null;
    const x = toNumber(v);
    return x !== INVALID && Number.isSafeInteger(x) && inRange(x, r) ? x : INVALID;
  }, showNumeric);
}

/** true/false (also the strings true/false/yes/no/on/off, as OmegaConf accepts). */
export function bool() {
  return field<boolean>('true or false', (v) => {
    if (typeof v === 'boolean') return v;
    if (typeof v !== 'string') return INVALID;
    const s = v.trim().toLowerCase();
    if (['true', 'yes', 'on'].includes(s)) return true;
    if (['false', 'no', 'off'].includes(s)) return false;
    return INVALID;
  });
}

/** A non-empty string. */
export function str() {
  return field<string>('a non-empty string', (v) => (typeof v === 'string' && v.length > 0 ? v : INVALID));
}

/**
 * A non-empty string or null. Only a real YAML null means null here: a file may legitimately be
 * called 'none'.
 */
export function strOrNull() {
  return field<string | null>('a non-empty string or null', (v) =>
    v === null ? null : typeof v === 'string' && v.length > 0 ? v : INVALID,
  );
}

/** One of `values` (exact spelling). */
export function oneOf<const V extends string>(values: readonly V[]) {
  return field<V>(`one of ${values.join(', ')}`, (v) =>
    typeof v === 'string' && (values as readonly string[]).includes(v) ? (v as V) : INVALID,
  );
}

/** One of `values`, or null (YAML null, 'null' or 'none'). */
export function oneOfOrNull<const V extends string>(values: readonly V[]) {
  return field<V | null>(`null or one of ${values.join(', ')}`, (v) => {
    if (isNullish(v)) return null;
    return typeof v === 'string' && (values as readonly string[]).includes(v) ? (v as V) : INVALID;
  });
}

/**
 * A non-empty list of strings, each in `allowed` if given. A single string counts as a one-element
 * list, so `toy.tasks=sort` works as well as `toy.tasks=[sort,add]`.
 */
export function strList(allowed?: readonly string[]) {
  const what = allowed ? `a non-empty list of ${allowed.join(', ')}` : 'a non-empty list of strings';
  return field<string[]>(what, (v) => {
    const list = typeof v === 'string' ? [v] : v;
    if (!Array.isArray(list) || list.length === 0) return INVALID;
    for (const x of list) {
      if (typeof x !== 'string' || x.length === 0) return INVALID;
      if (allowed && !allowed.includes(x)) return INVALID;
    }
    return [...list] as string[];
  });
}

/** strList(), or null (YAML null, 'null' or 'none'). */
export function strListOrNull() {
  return field<string[] | null>('null or a non-empty list of strings', (v) => {
    if (isNullish(v)) return null;
    const list = typeof v === 'string' ? [v] : v;
    if (!Array.isArray(list) || list.length === 0 || list.some((x) => typeof x !== 'string' || x.length === 0)) return INVALID;
    return [...list] as string[];
  });
}

/** A non-empty list of finite numbers in range (integers if `int`); a single number is a one-element list. */
export function numList(r: RangeOpts & { int?: boolean } = {}) {
  const what = `a non-empty list of ${r.int ? 'integers' : 'numbers'}${rangeText(r)}`;
  return field<number[]>(what, (v) => {
    const list = Array.isArray(v) ? v : [v];
    if (list.length === 0) return INVALID;
    const out: number[] = [];
    for (const x of list) {
      const n = toNumber(x);
      if (n === INVALID || !Number.isFinite(n) || !inRange(n, r) || (r.int && !Number.isSafeInteger(n))) return INVALID;
      out.push(n);
    }
    return out;
  });
}

/** A config section: a strict object (unknown keys are errors) that is filled with defaults when absent. */
export function section<S extends z.ZodRawShape>(shape: S) {
  const obj = z.strictObject(shape);
  // Every field has a default, so {} is a valid input; zod's types cannot see that for a generic shape.
  return obj.prefault({} as z.input<typeof obj>);
}

// ---------------------------------------------------------------------------------------------
// The base sections (docs/contract.md §2–§6)
// ---------------------------------------------------------------------------------------------

export const REG_METHODS = ['ntp_pre', 'kl_pre', 'kl_dwn', 'replace'] as const;
export type RegMethod = (typeof REG_METHODS)[number];

/** A run folder name: a single path component. */
const runId = field<string | null>('a folder name (no / or \\) or null', (v) => {
  if (v === null) return null;
  if (typeof v !== 'string' || v.length === 0 || /[/\\]/.test(v) || v === '.' || v === '..') return INVALID;
  return v;
});

export const baseSections = {
  run: section({
    seed: int().default(0),
    /** Run folder name; null → generated (see `generateRunId`). */
    id: runId.default(null),
    /** Native threads; null → the backend's default. */
    threads: intOrNull({ gt: 0 }).default(null),
  }),
  model: section({
    D: int({ gt: 0 }).default(128),
    L: int({ gt: 0 }).default(2),
    /** Head size (not the number of heads); N = D / H heads. */
    H: int({ gt: 0 }).default(32),
    /** Sequence length; null → a gpt's 128, a checkpoint's own T, or for a Hugging Face architecture
     *  min(1024, max_position_embeddings). */
    T: intOrNull({ gt: 0 }).default(null),
    /** A Hugging Face config.json to build a fresh model of that architecture from (instead of D, L, H). */
    config: strOrNull().default(null),
    /** Vocabulary size; null → the data sidecar's vocab_size. */
    V: intOrNull({ gt: 0 }).default(null),
    load_path: strOrNull().default(null),
    save_dir: strOrNull().default(null),
    /** LoRA rank r (null: full finetuning); 1 ≤ r ≤ min(in, out) of the projections. */
    lora_rank: intOrNull({ gt: 0 }).default(null),
    /** LoRA scaling alpha / r, as PEFT's lora_alpha; null → r (scaling 1). */
    lora_alpha: numOrNull({ gt: 0 }).default(null),
    /** Projections that get adapters: transformers' module names (q_proj, k_proj, v_proj, o_proj, gate_proj,
     *  up_proj, down_proj; gpt: qkv, out, up, down) or all-linear (the default). */
    lora_targets: strList().default(['all-linear']),
  }),
  prev: section({
    /** The old data on which prev_* and forgetting are measured: a token file (or text or JSONL to tokenize);
     *  null → the loaded checkpoint's data (a Hugging Face folder records none). */
    path: strOrNull().default(null),
  }),
  data: section({
    path: strOrNull().default(null),
    /** How a .jsonl data.path is read: chat ({"messages": [...]}) or prompt_completion; .bin files say themselves. */
    format: oneOf(['tokens', 'chat', 'prompt_completion'] as const).default('tokens'),
    /** Which tokens of chat data count in the loss: the assistant turns, or all. */
    train_on: oneOf(['assistant', 'all'] as const).default('assistant'),
    /** Tokenizer of chat data: a folder or a tokenizer.json; null → model.load_path's. */
    tokenizer: strOrNull().default(null),
    /** Overrides the sidecar's dataset_token_id. Token files are uint16, or uint32 for large vocabularies. */
    token_id: intOrNull({ min: 0, max: 2 ** 32 - 1 }).default(null),
    split_seed: int().default(0),
    num_tokens_valid: int({ min: 0 }).default(0),
  }),
  opt: section({
    optimizer: oneOf(['adamw', 'sgd'] as const).default('adamw'),
    lr: num({ min: 0 }).default(1e-3),
    b1: num({ min: 0, lt: 1 }).default(0.9),
    b2: num({ min: 0, lt: 1 }).default(0.999),
    eps: num({ gt: 0 }).default(1e-8),
    weight_decay: num({ min: 0 }).default(0.02),
    batch_size: int({ gt: 0 }).default(32),
    warmup_tokens: int({ min: 0 }).default(0),
    lr_decay: oneOfOrNull(['cosine'] as const).default(null),
  }),
  stop: section({
    num_tokens_train: intOrNull({ gt: 0 }).default(null),
    tokens_per_param: numOrNull({ gt: 0 }).default(null),
    num_epochs: numOrNull({ gt: 0 }).default(null),
    target_loss: numOrNull().default(null),
    /** Seconds of step time. */
    train_time: numOrNull({ gt: 0 }).default(null),
    /** Evaluations without a new best valid_ntp. */
    early_stop_steps: intOrNull({ gt: 0 }).default(null),
  }),
  log: section({
    every_tokens: int({ gt: 0 }).default(65536),
    dir: str().default('runs'),
    progress: bool().default(true),
    /** Multiple-choice JSONL sets scored at every evaluation (metrics mcq_<name>_acc, _acc_norm). */
    mcq: strListOrNull().default(null),
    mcq_style: oneOf(['harness', 'chat'] as const).default('harness'),
  }),
  reg: section({
    method: oneOfOrNull(REG_METHODS).default(null),
    coeff: num({ min: 0 }).default(1),
    synth: bool().default(false),
    temperature: num({ gt: 0 }).default(1),
    /** Self-generated replay sampling: the k most likely tokens only (null: all). */
    top_k: intOrNull({ gt: 0 }).default(null),
    /** Nucleus sampling: the most likely tokens that cover this probability (null: all). */
    top_p: numOrNull({ gt: 0, max: 1 }).default(null),
    /** What self-generated replay is prompted with: bos, eos, a token id, or a text; null → the previous data's
     *  dataset token id (unforget checkpoints) or bos (Hugging Face models). */
    prompt: field<string | number | null>('bos, eos, a token id or a text', (v) => {
      if (v === null) return null;
      if (typeof v === 'number') return Number.isSafeInteger(v) && v >= 0 ? v : INVALID;
      if (typeof v !== 'string' || v.length === 0) return INVALID;
      return /^\d+$/.test(v) ? Number(v) : v;
    }).default(null),
    buffer: int({ gt: 0 }).default(8),
    /** null → opt.batch_size. */
    batch_size: intOrNull({ gt: 0 }).default(null),
    /** Real replay data; null → the loaded checkpoint's data.path. */
    path: strOrNull().default(null),
  }),
  mix: section({
    path: strOrNull().default(null),
    coeff: num({ min: 0, max: 1 }).default(0),
  }),
};

/**
 * The study's reference implementation spells some keys differently; each alias here means exactly
 * its target (same quantity, same units), so its commands, config files and sweep files run as
 * written. Keys of the reference whose meaning differs or that have no counterpart are not here.
 */
export const CONFIG_ALIASES: Readonly<Record<string, string>> = {
  'opt.peak_lr': 'opt.lr',
};

/**
 * Reference keys accepted only with the value that is what unforget always does, and then dropped:
 * `log.mode=offline` (W&B logging kept local; unforget logs to the run folder only).
 */
export const ACCEPTED_REFERENCE_SETTINGS: Readonly<Record<string, { values: readonly unknown[]; why: string }>> = {
  'log.mode': { values: ['offline'], why: 'unforget logs to the run folder only (metrics.jsonl), which is W&B offline mode; online syncing has no counterpart' },
};

export type BaseSections = typeof baseSections;
/** Extra sections an experiment registers: section name → zod schema (normally built with `section`). */
export type ExtraSections = Record<string, z.ZodType>;

/** The schema of the whole config: the base sections plus `extra`. Unknown sections are errors. */
export function buildSchema<E extends ExtraSections = {}>(extra?: E) {
  for (const name of Object.keys(extra ?? {})) {
    if (Object.hasOwn(baseSections, name)) throw new Error(`config section '${name}' is already defined`);
  }
  return z.strictObject({ ...baseSections, ...(extra ?? ({} as E)) });
}

export const configSchema = buildSchema();

/** The fully resolved base configuration. */
export type Config = z.output<typeof configSchema>;
/** The config including extra sections `E`. */
export type ConfigWith<E extends ExtraSections> = Config & { [K in keyof E]: z.output<E[K]> };

export type DeepPartial<T> = T extends readonly unknown[]
  ? T
  : T extends object
    ? { [K in keyof T]?: DeepPartial<T[K]> | null }
    : T;

export const LENGTH_CRITERIA = ['num_tokens_train', 'tokens_per_param', 'num_epochs'] as const;
export const STOP_CRITERIA = [...LENGTH_CRITERIA, 'target_loss', 'train_time', 'early_stop_steps'] as const;

/**
 * Rules over several keys. `requireStop: false` is for commands whose length is fixed elsewhere
 * (bench, experiments with steps per task): no stop criterion is needed, and cosine decay is allowed.
 */
export function checkConfig(cfg: Config, opts: { requireStop?: boolean } = {}): void {
  const m = cfg.model;
  if (m.H % 2 !== 0) throw new ConfigError('model.H', `expected an even head size (RoPE rotates pairs of dimensions), got ${m.H}`);
  if (m.D % m.H !== 0) {
    throw new ConfigError('model.H', `model.D=${m.D} is not divisible by the head size model.H=${m.H}`);
  }

  const lengthSet = LENGTH_CRITERIA.filter((k) => cfg.stop[k] !== null);
  if (lengthSet.length > 1) {
    throw new ConfigError(
      `stop.${lengthSet[1]}`,
      `conflicts with stop.${lengthSet[0]}; set at most one of stop.${LENGTH_CRITERIA.join(', stop.')}`,
    );
  }
  if (cfg.opt.lr_decay === 'cosine' && lengthSet.length === 0 && (opts.requireStop ?? true)) {
    throw new ConfigError(
      'opt.lr_decay',
      `cosine decay needs a fixed run length: set one of stop.${LENGTH_CRITERIA.join(', stop.')}`,
    );
  }
  if ((opts.requireStop ?? true) && STOP_CRITERIA.every((k) => cfg.stop[k] === null)) {
    throw new ConfigError('stop', `no stopping criterion; set at least one of stop.${STOP_CRITERIA.join(', stop.')}`);
  }

  if (cfg.reg.method === 'replace' && cfg.reg.coeff > 1) {
    throw new ConfigError('reg.coeff', `with reg.method=replace it is the fraction of rows replaced and must be ≤ 1, got ${cfg.reg.coeff}`);
  }
  if (cfg.mix.coeff > 0 && cfg.mix.path === null) {
    throw new ConfigError('mix.path', `mix.coeff=${cfg.mix.coeff} needs a second dataset in mix.path`);
  }
}
