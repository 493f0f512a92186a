/** `unforget bench [key=value ...] [--steps N] ...`: training and sampling throughput of a config on synthetic data. */
import { parseArgs } from 'node:util';
import { runBench } from '../bench/bench.js';
import { loadConfig } from '../config/load.js';
import { intOpt, splitArgs } from './args.js';

export function cmdBench(args: string[]): void {
  const { values, positionals } = parseArgs({
    args,
    options: { steps: { type: 'string' }, warmup: { type: 'string' }, 'sample-batch': { type: 'string' }, 'sample-reps': { type: 'string' }, 'no-sample': { type: 'boolean' }, 'sample-tokens': { type: 'string' }, 'bf16-base': { type: 'boolean' }, 'no-train': { type: 'boolean' }, 'sample-warmup': { type: 'string' } },
    strict: true,
    allowPositionals: true,
  });
  const { files, overrides } = splitArgs(positionals);
  const cfg = loadConfig(files, overrides, undefined, { requireStop: false });
  const r = runBench(cfg, {
    steps: intOpt(values.steps, 'steps', 20, 1),
    warmup: intOpt(values.warmup, 'warmup', 3, 0),
    sampleBatch: intOpt(values['sample-batch'], 'sample-batch', 64, 1),
    sampleReps: intOpt(values['sample-reps'], 'sample-reps', 1, 1),
    sample: !values['no-sample'],
    sampleTokens: values['sample-tokens'] !== undefined ? intOpt(values['sample-tokens'], 'sample-tokens', 1, 1) : null,
    bf16Base: values['bf16-base'] ?? false,
    train: !values['no-train'],
    sampleWarmup: values['sample-warmup'] !== undefined ? intOpt(values['sample-warmup'], 'sample-warmup', 0, 0) : null,
  });
  process.stdout.write(JSON.stringify(r) + '\n');
}
