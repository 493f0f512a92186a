/** `unforget report DIR... [--out FILE.html] [--png top|all|none]`: one self-contained HTML page of run, sweep or experiment folders. */
import path from 'node:path';
import { parseArgs } from 'node:util';
import { UnforgetError } from '../errors.js';
import { PNG_POLICIES, writeReport, type PngPolicy } from '../report/report.js';

export async function cmdReport(args: string[]): Promise<void> {
  const { values, positionals } = parseArgs({ args, options: { out: { type: 'string' }, png: { type: 'string' } }, strict: true, allowPositionals: true });
  if (positionals.length === 0) throw new UnforgetError('report: give at least one run, sweep or experiment folder');
  if (positionals.length > 1 && values.out === undefined) throw new UnforgetError('report: with several folders, say where the page goes: --out FILE.html');
  const png = values.png ?? 'top';
  if (!PNG_POLICIES.includes(png as PngPolicy)) throw new UnforgetError(`report: --png must be one of ${PNG_POLICIES.join(', ')}, not '${png}'`);
  const out = values.out ?? path.join(positionals[0]!, 'report.html');
  await writeReport(positionals, out, { png: png as PngPolicy });
  process.stdout.write(`report: ${out}\n`);
}
