/** `unforget report DIR... [--out FILE.html]`: one self-contained HTML page of run, sweep or experiment folders. */
import path from 'node:path';
import { parseArgs } from 'node:util';
import { UnforgetError } from '../errors.js';
import { writeReport } from '../report/report.js';

export async function cmdReport(args: string[]): Promise<void> {
  const { values, positionals } = parseArgs({ args, options: { out: { type: 'string' } }, strict: true, allowPositionals: true });
  if (positionals.length === 0) throw new UnforgetError('report: give at least one run, sweep or experiment folder');
  if (positionals.length > 1 && values.out === undefined) throw new UnforgetError('report: with several folders, say where the page goes: --out FILE.html');
  const out = values.out ?? path.join(positionals[0]!, 'report.html');
  await writeReport(positionals, out);
  process.stdout.write(`report: ${out}\n`);
}
