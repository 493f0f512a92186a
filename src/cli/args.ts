/** Argument helpers shared by the subcommands, so that every command words the same mistake the same way. */
import path from 'node:path';
import { UnforgetError } from '../errors.js';
import { MCQ_STYLES, type McqStyle } from '../eval/mcq.js';
import type { Reporter } from '../train/train.js';
import { makeReporter } from './progress.js';

/** Split positional arguments into YAML files and key=value overrides. */
export function splitArgs(args: string[]): { files: string[]; overrides: string[] } {
  const files: string[] = [], overrides: string[] = [];
  for (const a of args) (a.includes('=') ? overrides : files).push(a);
  return { files, overrides };
}

/** An integer flag ≥ min; `def` when absent. An empty value is an error, not 0 (which Number('') would give). */
export function intOpt(v: string | undefined, name: string, def: number, min = 0): number {
  if (v === undefined) return def;
  const n = Number(v);
  if (v.trim() === '' || !Number.isSafeInteger(n) || n < min) throw new UnforgetError(`--${name}: expected an integer ≥ ${min}, got '${v}'`);
  return n;
}

/** A finite number flag ≥ 0; `def` when absent. */
export function numOpt(v: string | undefined, name: string, def: number): number {
  if (v === undefined) return def;
  const n = Number(v);
  if (v.trim() === '' || !Number.isFinite(n) || n < 0) throw new UnforgetError(`--${name}: expected a finite number ≥ 0, got '${v}'`);
  return n;
}

/** The `--mcq-style` flag, harness by default. */
export function mcqStyleOpt(v: string | undefined, cmd: string): McqStyle {
  if (v === undefined) return 'harness';
  if (!(MCQ_STYLES as readonly string[]).includes(v)) throw new UnforgetError(`${cmd}: --mcq-style must be one of ${MCQ_STYLES.join(', ')}, got '${v}'`);
  return v as McqStyle;
}

/** The JSON key of each --mcq file: its base name, which must tell the files apart. */
export function mcqKeys(files: string[], cmd: string): string[] {
  const keys = files.map((f) => path.basename(f));
  keys.forEach((k, i) => {
    const j = keys.indexOf(k);
    if (j !== i) throw new UnforgetError(`${cmd}: --mcq ${files[j]} and ${files[i]} have the same name '${k}'; the output is keyed by file name`);
  });
  return keys;
}

/** Ctrl-C: stop cleanly at the next step; a second Ctrl-C aborts. */
function interruptFlag(): { stop: () => boolean; dispose: () => void } {
  let interrupted = false;
  const onSigint = () => {
    if (interrupted) process.exit(130);
    interrupted = true;
    process.stderr.write('\ninterrupt: stopping after this step (Ctrl-C again to abort)\n');
  };
  process.on('SIGINT', onSigint);
  return { stop: () => interrupted, dispose: () => process.off('SIGINT', onSigint) };
}

/** What a long-running command hands the library: a progress reporter and the Ctrl-C flag. */
export interface RunHooks {
  reporter: Reporter;
  shouldStop: () => boolean;
}

/**
 * Runs `fn` with a progress reporter and Ctrl-C handling, and removes the handler afterwards even on
 * error, so that train, experiment and demo stop the same way.
 */
export async function withInterrupt<T>(progress: boolean, fn: (hooks: RunHooks) => Promise<T>): Promise<T> {
  const flag = interruptFlag();
  try {
    return await fn({ reporter: makeReporter(progress), shouldStop: flag.stop });
  } finally {
    flag.dispose();
  }
}
