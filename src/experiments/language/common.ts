/**
 * Shared by the language experiments: child training configs built from the experiment's
 * config, and the experiment's run folder.
 */
import fs from 'node:fs';
import path from 'node:path';
import { dumpConfig, validateConfig } from '../../config/load.js';
import { baseSections, type Config } from '../../config/schema.js';
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
