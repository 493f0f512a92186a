/** `unforget corpus list` and `unforget corpus fetch NAME... [--out DIR] [--force]`. */
import { parseArgs } from 'node:util';
import { CORPORA, checkCorpusNames, fetchCorpus } from '../data/corpora.js';
import { UnforgetError } from '../errors.js';

function cmdList(): void {
  const rows = Object.values(CORPORA).map((c) => [c.name, c.language, `${c.origin.kind} ${c.origin.package}`, c.description]);
  const w = [0, 1, 2].map((i) => Math.max(...rows.map((r) => r[i]!.length)));
  for (const r of rows) process.stdout.write(`${r[0]!.padEnd(w[0]!)}  ${r[1]!.padEnd(w[1]!)}  ${r[2]!.padEnd(w[2]!)}  ${r[3]}\n`);
}

function cmdFetch(args: string[]): void {
  const { values, positionals } = parseArgs({
    args,
    options: { out: { type: 'string', default: 'data/corpora' }, force: { type: 'boolean', default: false } },
    strict: true,
    allowPositionals: true,
  });
  if (positionals.length === 0) throw new UnforgetError(`corpus fetch: give at least one corpus name (known: ${Object.keys(CORPORA).join(', ')})`);
  // Every name is checked before anything is downloaded.
  checkCorpusNames(positionals);
  const log = (line: string) => process.stderr.write(`${line}\n`);
  for (const name of positionals) {
    const r = fetchCorpus(name, values.out, { force: values.force, log });
    const m = r.manifest;
    if (r.status === 'skipped') log(`${name}: already complete in ${r.dir} (use --force to fetch again)`);
    else log(`${name}: ${m.documents} documents, ${(m.bytes / 1e6).toFixed(2)} MB of text, licence ${m.license} -> ${r.dir}`);
    process.stdout.write(JSON.stringify({ name, status: r.status, dir: r.dir, source: m.source, license: m.license, documents: m.documents, bytes: m.bytes }) + '\n');
  }
}

export function cmdCorpus(args: string[]): void {
  const [sub, ...rest] = args;
  if (sub === 'list') {
    if (rest.length) throw new UnforgetError(`corpus list: unexpected argument '${rest[0]}'`);
    cmdList();
  } else if (sub === 'fetch') cmdFetch(rest);
  else throw new UnforgetError(`corpus: unknown subcommand '${sub ?? ''}' (available: list, fetch)`);
}
