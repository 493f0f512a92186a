/** `unforget sweep FILE.yaml [--workers N] [--out DIR] [--executor local|slurm]`: a grid of train/experiment runs, resumable. */
import path from 'node:path';
import { parseArgs } from 'node:util';
import { UnforgetError } from '../errors.js';
import { EXECUTORS, type ExecutorName } from '../sweep/executor.js';
import { readSweepFile } from '../sweep/spec.js';
import { runSweep, sweepPaths } from '../sweep/sweep.js';

/** Returns the exit code: 0 when every run is ok, 1 when any failed, 130 when interrupted. */
export async function cmdSweep(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    options: { workers: { type: 'string' }, out: { type: 'string' }, executor: { type: 'string' } },
    strict: true,
    allowPositionals: true,
  });
  if (positionals.length !== 1) throw new UnforgetError(`sweep: expected one sweep file, got ${positionals.length ? positionals.join(' ') : 'none'}`);
  const file = positionals[0]!;
  const workers = values.workers === undefined ? 1 : Number(values.workers);
  if (!Number.isInteger(workers) || workers < 1) throw new UnforgetError(`--workers: expected an integer ≥ 1, got '${values.workers}'`);
  const executor = (values.executor ?? 'local') as ExecutorName;
  if (!EXECUTORS.includes(executor)) throw new UnforgetError(`--executor: expected local or slurm, got '${values.executor}'`);
  const spec = readSweepFile(file);
  if (executor === 'local' && spec.slurm) process.stderr.write(`sweep: ${file}: the slurm: block is ignored with --executor local\n`);
  if (executor === 'slurm' && values.workers !== undefined) process.stderr.write('sweep: --workers applies to --executor local; on Slurm, slurm.max_concurrent limits the tasks running at once\n');
  const out = values.out ?? path.join('runs', `sweep-${path.basename(file).replace(/\.ya?ml$/i, '')}`);

  const controller = new AbortController();
  const onSignal = (sig: NodeJS.Signals) => {
    if (controller.signal.aborted) process.exit(130);
    const what = executor === 'slurm' ? 'its Slurm array is cancelled; unfinished runs' : 'running runs are killed and';
    process.stderr.write(`\n${sig}: stopping the sweep; ${what} will be redone on restart (again to exit at once)\n`);
    controller.abort();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    const r = await runSweep(spec, {
      out,
      workers,
      executor,
      slurm: spec.slurm ?? undefined,
      signal: controller.signal,
      log: (line) => process.stderr.write(line + '\n'),
    });
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
