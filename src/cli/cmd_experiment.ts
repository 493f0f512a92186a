/**
 * `unforget experiment NAME [--preset P] [--out DIR] [CONFIG.yaml ...] [key=value ...]`: one of the
 * study's experiments, configured by a named preset that files and overrides then change. The grid experiments
 * (capacity, lr) also take `--executor local|slurm [--workers N] [slurm.KEY=VALUE ...]`: their training runs then
 * go through the sweep's executors as child processes (default: in this process, one after another).
 */
import path from 'node:path';
import { parseArgs } from 'node:util';
import { loadConfig, parseOverride } from '../config/load.js';
import type { ExtraSections } from '../config/schema.js';
import { UnforgetError } from '../errors.js';
import { taskExecutor, type StageExecutor } from '../experiments/language/stage.js';
import { checkExecutor, type ExecutorName } from '../sweep/executor.js';
import { parseSlurmOptions } from '../sweep/slurm.js';
import { CAPACITY_PRESETS, capacitySections, runCapacity } from '../experiments/language/capacity.js';
import { INSTRUCT_PRESETS, instructSections, runInstruct } from '../experiments/language/instruct.js';
import { LR_PRESETS, lrSections, runLrTradeoff } from '../experiments/language/lrtradeoff.js';
import { LR_SWEEP_PRESETS, lrSweepSections, runLrSweep } from '../experiments/language/lrsweep.js';
import { SHIFT_PRESETS, runLanguageShift, shiftSections } from '../experiments/language/shift.js';
import { TOY_PRESETS, runToyContinual, toySections } from '../experiments/toy/continual.js';
import { accuracyTable } from '../experiments/toy/demo.js';
import { splitArgs, withInterrupt, type RunHooks } from './args.js';

interface ExperimentEntry {
  presets: Record<string, Record<string, unknown>>;
  defaultPreset: string;
  sections: ExtraSections;
  run: (cfg: never, opts: RunHooks & { execute?: StageExecutor }) => Promise<{ runDir: string; summary: Record<string, unknown>; table?: string }>;
  /** Its runs are a grid of independent `train` runs that `--executor local|slurm` can run as child processes. */
  grid?: boolean;
  /** The text printed at the end; without it, the experiment's own `table`. */
  print?: (r: { summary: Record<string, unknown>; table?: string }) => string;
}

/** The experiments by command-line name; each has its own config section and presets. */
const EXPERIMENTS: Record<string, ExperimentEntry> = {
  'toy-continual': {
    presets: TOY_PRESETS,
    defaultPreset: 'reference',
    sections: toySections,
    run: runToyContinual as ExperimentEntry['run'],
    print: (r) => accuracyTable(r.summary.tasks as string[], [['final accuracy', r.summary.final_accuracy as Record<string, number>]]),
  },
  'language-shift': { presets: SHIFT_PRESETS, defaultPreset: 'small', sections: shiftSections, run: runLanguageShift as ExperimentEntry['run'] },
  capacity: { presets: CAPACITY_PRESETS, defaultPreset: 'small', sections: capacitySections, run: runCapacity as ExperimentEntry['run'], grid: true },
  lr: { presets: LR_SWEEP_PRESETS, defaultPreset: 'small', sections: lrSweepSections, run: runLrSweep as ExperimentEntry['run'], grid: true },
  'lr-tradeoff': { presets: LR_PRESETS, defaultPreset: 'small', sections: lrSections, run: runLrTradeoff as ExperimentEntry['run'] },
  instruct: { presets: INSTRUCT_PRESETS, defaultPreset: 'small', sections: instructSections, run: runInstruct as ExperimentEntry['run'] },
};

export async function cmdExperiment(args: string[]): Promise<void> {
  const [name, ...rest] = args;
  const { values, positionals } = parseArgs({
    args: rest,
    options: { preset: { type: 'string' }, out: { type: 'string' }, executor: { type: 'string' }, workers: { type: 'string' } },
    strict: true,
    allowPositionals: true,
  });
  const entry = name !== undefined && Object.hasOwn(EXPERIMENTS, name) ? EXPERIMENTS[name]! : null;
  if (!entry) throw new UnforgetError(`experiment: unknown experiment '${name ?? ''}' (available: ${Object.keys(EXPERIMENTS).join(', ')})`);
  const grid = gridExecution(name!, entry, values, positionals);
  const presetName = values.preset ?? entry.defaultPreset;
  const preset = entry.presets[presetName];
  if (!preset) throw new UnforgetError(`experiment ${name}: unknown preset '${presetName}' (presets: ${Object.keys(entry.presets).join(', ')})`);
  const { files, overrides } = splitArgs(grid.rest);
  // --out DIR is the run folder itself: its parent becomes log.dir and its name run.id.
  if (values.out) overrides.push(`log.dir=${path.dirname(values.out)}`, `run.id=${path.basename(values.out)}`);
  const cfg = loadConfig(files, overrides, preset as never, { sections: entry.sections, requireStop: false });
  await withInterrupt(cfg.log.progress, async (hooks) => {
    const execute = grid.executor === null ? undefined
      : taskExecutor({ executor: grid.executor, slurm: grid.slurm, workers: grid.workers, shouldStop: hooks.shouldStop, log: (l) => hooks.reporter.log(l) });
    const r = await entry.run(cfg as never, { ...hooks, execute });
    process.stderr.write(`run folder: ${r.runDir}\n`);
    const text = entry.print ? entry.print(r) : r.table;
    if (text) process.stdout.write(text + '\n');
  });
}

/**
 * `--executor local|slurm [--workers N]` and `slurm.KEY=VALUE` arguments (the keys of a sweep file's `slurm:` block)
 * of a grid experiment, checked before anything runs; the other arguments are returned for the config.
 */
function gridExecution(name: string, entry: ExperimentEntry, values: { executor?: string; workers?: string }, args: string[]) {
  const slurmArgs = args.filter((a) => a.startsWith('slurm.'));
  const rest = args.filter((a) => !a.startsWith('slurm.'));
  if (values.executor === undefined && values.workers === undefined && slurmArgs.length === 0) {
    return { executor: null, slurm: undefined, workers: undefined, rest };
  }
  if (!entry.grid) throw new UnforgetError(`experiment ${name}: --executor, --workers and slurm.* apply to the grid experiments (capacity, lr)`);
  const executor = (values.executor ?? 'local') as ExecutorName;
  const workers = values.workers === undefined ? 1 : Number(values.workers);
  if (!Number.isInteger(workers) || workers < 1) throw new UnforgetError(`--workers: expected an integer ≥ 1, got '${values.workers}'`);
  if (slurmArgs.length > 0 && executor !== 'slurm') throw new UnforgetError(`${slurmArgs[0]}: slurm.* settings need --executor slurm`);
  const raw: Record<string, unknown> = {};
  for (const a of slurmArgs) {
    const { key, value } = parseOverride(a);
    raw[key.slice('slurm.'.length)] = value;
  }
  checkExecutor(executor);
  const slurm = parseSlurmOptions(raw, 'slurm');
  return { executor, slurm, workers, rest };
}
