/**
 * `unforget demo [--out DIR] [key=value ...]`: the toy experiment without and with self-generated
 * replay, with the accuracy table on stdout and a figure in the output folder.
 */
import path from 'node:path';
import { parseArgs } from 'node:util';
import { UnforgetError } from '../errors.js';
import { runDemo } from '../experiments/toy/demo.js';
import { splitArgs, withInterrupt } from './args.js';

export async function cmdDemo(args: string[]): Promise<void> {
  const { values, positionals } = parseArgs({ args, options: { out: { type: 'string' } }, strict: true, allowPositionals: true });
  const { files, overrides } = splitArgs(positionals);
  // Both runs are built from the demo preset plus overrides; runDemo takes no config files.
  if (files.length) throw new UnforgetError(`demo: unexpected argument '${files[0]}' (give key=value overrides)`);
  const stamp = new Date().toISOString().replace(/[-:]/g, '').replace('T', '-').slice(0, 15);
  const out = values.out ?? path.join('runs', `demo-${stamp}`);
  // Progress is always on: runDemo loads its configs itself, so log.progress is not known here.
  await withInterrupt(true, async (hooks) => {
    const r = await runDemo(out, overrides, hooks);
    process.stdout.write(`final accuracy after training all tasks (${out}; ${r.seconds.toFixed(0)} s):\n${r.table}\n`);
    process.stdout.write(`figure: ${path.join(out, 'plot.png')} (and plot.svg)\n`);
  });
}
