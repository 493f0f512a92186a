/**
 * What each Slurm array task of a sweep runs: `node slurm_task.js MANIFEST INDEX` (see executor.ts).
 * Its stdout is the task's Slurm output file; the run's own output goes to the sweep's log folder.
 */
import { UnforgetError } from '../errors.js';
import { runArrayTask } from './executor.js';

try {
  process.exitCode = await runArrayTask(process.argv[2] ?? '', process.argv[3]);
} catch (err) {
  process.stderr.write(err instanceof UnforgetError ? `error: ${err.message}\n` : `internal error: ${(err as Error).stack ?? err}\n`);
  process.exitCode = 1;
}
