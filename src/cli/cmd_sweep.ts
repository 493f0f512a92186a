/** `unforget sweep FILE.yaml [--workers N] [--out DIR]`: a grid of train/experiment runs, resumable. */
import path from 'node:path';
import { parseArgs } from 'node:util';
import { UnforgetError } from '../errors.js';
import { readSweepFile } from '../sweep/spec.js';
import { runSweep, sweepPaths } from '../sweep/sweep.js';

/** Returns the exit code: 0 when every run is ok, 1 when any failed, 130 when interrupted. */
export async function cmdSweep(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    options: { workers: { type: 'string' }, out: { type: 'string' } },
    strict: true,
    allowPositionals: true,
  });
  if (positionals.length !== 1) throw new UnforgetError(`sweep: expected one sweep file, got ${positionals.length ? positionals.join(' ') : 'none'}`);
  const file = positionals[0]!;
  const workers = values.workers === undefined ? 1 : Number(values.workers);
  if (!Number.isInteger(workers) || workers < 1) throw new UnforgetError(`--workers: expected an integer ≥ 1, got '${values.workers}'`);
  const spec = readSweepFile(file);
  const out = values.out ?? path.join('runs', `sweep-${path.basename(file).replace(/\.ya?ml$/i, '')}`);

  const controller = new AbortController();
  const onSignal = (sig: NodeJS.Signals) => {
    if (controller.signal.aborted) process.exit(130);
    process.stderr.write(`\n${sig}: stopping the sweep; running runs are killed and will be redone on restart (again to exit at once)\n`);
    controller.abort();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    const r = await runSweep(spec, { out, workers, signal: controller.signal, log: (line) => process.stderr.write(line + '\n') });
    const failedRows = r.rows.filter((row) => row.status === 'failed');
    const parts = [`${r.rows.length - failedRows.length} ok`, `${failedRows.length} failed`];
    if (r.skipped > 0) parts.push(`${r.skipped} skipped as already finished`);
    if (r.notRun > 0) parts.push(`${r.notRun} not run`);
    const { csv } = sweepPaths(out);
    process.stdout.write(`sweep ${r.interrupted ? 'interrupted' : 'done'}: ${r.total} runs: ${parts.join(', ')}; results: ${csv}\n`);
    for (const row of failedRows) process.stdout.write(`  failed: ${row.run_id}: ${row.error}\n`);
    if (r.interrupted) return 130;
    return failedRows.length > 0 ? 1 : 0;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}
