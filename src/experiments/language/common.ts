/**
 * Shared by the language experiments: child training configs built from the experiment's
 * config, and the experiment's run folder.
 */
import fs from 'node:fs';
import path from 'node:path';
import { dumpConfig, validateConfig } from '../../config/load.js';
import { baseSections, type Config } from '../../config/schema.js';
import { ConfigError, UnforgetError } from '../../errors.js';
import { writeFileAtomic } from '../../io/atomic.js';
import { makeRunDir } from '../../train/train.js';

type Plain = Record<string, unknown>;

/**
 * A training run's config: the experiment's base sections (model, opt, reg, log, …; not its own
 * sections) with `patch` (dotted key → value) applied, validated like `unforget train`'s.
 */
export function childConfig(cfg: Config, patch: Record<string, unknown>): Config {
  const raw: Plain = {};
  for (const k of Object.keys(baseSections)) raw[k] = structuredClone((cfg as unknown as Plain)[k]);
  for (const [key, value] of Object.entries(patch)) {
    const parts = key.split('.');
    let o = raw;
    for (const p of parts.slice(0, -1)) o = (o[p] ??= {}) as Plain;
    o[parts.at(-1)!] = value;
  }
  return validateConfig(raw, { requireStop: true });
}

/** Creates the experiment's run folder and writes its resolved config. */
export function experimentDir(cfg: Config): string {
  const dir = makeRunDir(cfg, 'choose another --out or run.id');
  fs.mkdirSync(dir, { recursive: true });
  writeFileAtomic(path.join(dir, 'config.yaml'), dumpConfig(cfg));
  return dir;
}

/** Linear interpolation of `y` at `x = target` along a path, at its first crossing (x falling). */
export function atFirstCrossing(points: Array<{ x: number; y: number }>, target: number): { y: number; x: number; index: number } | null {
  for (let i = 0; i < points.length; i++) {
    const p = points[i]!;
    if (p.x <= target) {
      if (i === 0) return { y: p.y, x: p.x, index: 0 };
      const q = points[i - 1]!;
      const w = (q.x - target) / (q.x - p.x);
      return { y: q.y + w * (p.y - q.y), x: target, index: i };
    }
  }
  return null;
}

/** The config patch of a replay method: reg.method, reg.synth, and the method's own coefficient, else reg.coeff. */
export function replayPatch(method: 'ntp_pre' | 'kl_pre', synth: boolean, coeffs: { ntp: number | null; kl: number | null },
  fallback: number): Record<string, unknown> {
  return { 'reg.method': method, 'reg.synth': synth, 'reg.coeff': (method === 'ntp_pre' ? coeffs.ntp : coeffs.kl) ?? fallback };
}

/** An experiment's method list: no method twice, and standard finetuning, against which forgetting is measured. */
export function checkMethods(key: string, methods: readonly string[]): void {
  if (new Set(methods).size !== methods.length) throw new ConfigError(key, 'names a method twice');
  if (!methods.includes('standard')) throw new ConfigError(key, "must include 'standard' (forgetting is measured against it)");
}

/** Stops the experiment when a child run was interrupted; finished runs stay in `dir`. */
export function stopIfInterrupted(dir: string): (summary: Record<string, unknown>, what: string) => void {
  return (summary, what) => {
    if (summary.stop_reason === 'interrupted') throw new UnforgetError(`interrupted during ${what}; finished runs are kept in ${dir}`);
  };
}
