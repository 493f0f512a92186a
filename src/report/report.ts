/**
 * `unforget report`: one self-contained HTML page for run, sweep and experiment folders. The kind of
 * folder is read from its files:
 *   sweep       sweep.yaml (+ results.jsonl): the results table, each main metric against each
 *               numeric swept parameter, and the runs' learning curves overlaid;
 *   experiment  figure files (plot.svg/png) or run subfolders (a demo's no-replay/ and self-replay/):
 *               the figures inlined, the summary tables, then each subfolder;
 *   run         metrics.jsonl / summary.json: learning curves, the summary table, config.yaml.
 */
import fs from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';
import { DataError } from '../errors.js';
import { writeFileAtomic } from '../io/atomic.js';
import { flattenScalars, readResults, type ResultRow } from '../sweep/results.js';
import { details, esc, existingFigure, figure, page, pre, table } from './html.js';
import { linesFigureSpec } from './plot.js';

export type FolderKind = 'run' | 'sweep' | 'experiment';

type Plain = Record<string, unknown>;
const isPlain = (v: unknown): v is Plain => v !== null && typeof v === 'object' && !Array.isArray(v);
const isNum = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);

/**
 * Which figures carry a PNG download (a data link of ~100 KB each): 'top' (default) those of the
 * folders named on the command line, not of the runs nested in them; 'all'; or 'none'. Every
 * figure is inline SVG either way.
 */
export type PngPolicy = 'all' | 'top' | 'none';
export const PNG_POLICIES: readonly PngPolicy[] = ['all', 'top', 'none'];
export interface ReportOptions {
  png?: PngPolicy;
}
/** Heading level of a folder named on the command line; nested runs are deeper. */
const TOP = 3;
function pngAt(opts: ReportOptions, level: number): boolean {
  const p = opts.png ?? 'top';
  return p === 'all' || (p === 'top' && level <= TOP);
}

/** Figure files of a folder, by name without extension (plot.svg + plot.png → 'plot'). */
function figureNames(dir: string): string[] {
  const names = new Set<string>();
  for (const f of fs.readdirSync(dir)) {
    const m = /^(.+)\.(svg|png)$/i.exec(f);
    if (m && fs.statSync(path.join(dir, f)).isFile()) names.add(m[1]!);
  }
  return [...names].sort();
}

/** Subfolders that are runs themselves (a demo's no-replay/ and self-replay/). */
function runSubfolders(dir: string): string[] {
  return fs
    .readdirSync(dir, { withFileTypes: true })
    .filter((e) => e.isDirectory() && ['summary.json', 'metrics.jsonl'].some((f) => fs.existsSync(path.join(dir, e.name, f))))
    .map((e) => e.name)
    .sort();
}

export function detectKind(dir: string): FolderKind {
  let st: fs.Stats;
  try {
    st = fs.statSync(dir);
  } catch {
    throw new DataError(`${dir}: folder not found`);
  }
  if (!st.isDirectory()) throw new DataError(`${dir}: not a folder`);
  const has = (f: string) => fs.existsSync(path.join(dir, f));
  if (has('sweep.yaml')) return 'sweep';
  if (figureNames(dir).length > 0 || runSubfolders(dir).length > 0) return 'experiment';
  if (has('metrics.jsonl') || has('summary.json')) return 'run';
  throw new DataError(`${dir}: not a run, sweep or experiment folder (no metrics.jsonl, summary.json, sweep.yaml or plot)`);
}

function readJsonObject(file: string): Plain | null {
  if (!fs.existsSync(file)) return null;
  let v: unknown;
  try {
    v = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (err) {
    throw new DataError(`${file}: not JSON (${(err as Error).message})`);
  }
  if (!isPlain(v)) throw new DataError(`${file}: expected a JSON object`);
  return v;
}

/** metrics.jsonl records; a line that does not parse (the last line of a killed run) is skipped. */
export function readMetrics(file: string): Plain[] {
  if (!fs.existsSync(file)) return [];
  const out: Plain[] = [];
  for (const line of fs.readFileSync(file, 'utf8').split('\n')) {
    if (line.trim() === '') continue;
    try {
      const rec = JSON.parse(line);
      if (isPlain(rec)) out.push(rec);
    } catch {
      // A half-written line: nothing to draw from it.
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Learning curves
// ---------------------------------------------------------------------------------------------

interface CurveGroup {
  title: string;
  yTitle: string;
  match: (key: string) => boolean;
}

/** Which metrics share a figure (the metric names of docs/contract.md §5; the toy experiment's acc_<task> and ntp_<task>). */
const CURVE_GROUPS: CurveGroup[] = [
  { title: 'Loss', yTitle: 'loss (nats/token)', match: (k) => k === 'train_loss' || k === 'train_loss_ntp' || /^[a-z]+_ntp$/.test(k) || /^ntp_/.test(k) },
  { title: 'NTP over the second half of positions', yTitle: 'loss (nats/token)', match: (k) => /^[a-z]+_ntp_h2$/.test(k) },
  { title: 'KL(π‖θ) and the regulariser', yTitle: 'nats/token', match: (k) => /^[a-z]+_kl$/.test(k) || k === 'train_loss_reg' },
  { title: 'Accuracy', yTitle: 'accuracy', match: (k) => /^acc_/.test(k) },
  { title: 'Learning rate', yTitle: 'lr', match: (k) => k === 'lr' },
  { title: '‖θ‖', yTitle: 'L2 norm of the weights', match: (k) => k === 'weights_l2_theta' },
  { title: '‖θ−π‖ / ‖π−θ_init‖', yTitle: 'ratio', match: (k) => k === 'weights_l2_theta_pi_over_pi_init' },
];

/** The x axis of a run's curves: tokens seen when every record has it, else the step. */
function curveX(records: readonly Plain[]): { key: string; title: string } {
  return records.length > 0 && records.every((r) => isNum(r.train_tokens_seen))
    ? { key: 'train_tokens_seen', title: 'training tokens seen' }
    : { key: 'step', title: 'step' };
}

/** Line specs with point marks when a series is short enough for points to help. */
function curveSpec(title: string, xTitle: string, yTitle: string, series: Array<{ name: string; points: Array<{ x: number; y: number }> }>, logX = false): object {
  const spec = linesFigureSpec({ title, xTitle, yTitle, series, logX }) as Plain;
  const longest = Math.max(0, ...series.map((s) => s.points.length));
  return longest <= 60 ? { ...spec, mark: { type: 'line', point: { filled: true, size: 30 } } } : spec;
}

async function learningCurves(records: readonly Plain[], withPng: boolean): Promise<string> {
  if (records.length === 0) return '';
  const x = curveX(records);
  const keys: string[] = [];
  for (const r of records) for (const k of Object.keys(r)) if (!keys.includes(k)) keys.push(k);
  const parts: string[] = [];
  for (const g of CURVE_GROUPS) {
    const series = keys
      .filter((k) => g.match(k))
      .map((k) => ({ name: k, points: records.filter((r) => isNum(r[x.key]) && isNum(r[k])).map((r) => ({ x: r[x.key] as number, y: r[k] as number })) }))
      // A regulariser that is 0 throughout (no reg.method) says nothing.
      .filter((s) => s.points.length > 0 && !(s.name === 'train_loss_reg' && s.points.every((p) => p.y === 0)));
    if (series.length === 0) continue;
    parts.push(await figure(g.title, curveSpec(g.title, x.title, g.yTitle, series), withPng));
  }
  return parts.join('\n');
}

// ---------------------------------------------------------------------------------------------
// Summary tables
// ---------------------------------------------------------------------------------------------

/**
 * A summary.json as tables: per-task mappings (`final_accuracy`, a demo's `no_replay`/`self_replay`)
 * as one task × column table, an accuracy matrix as a matrix, and every other scalar as key/value rows.
 */
function summaryTables(summary: Plain): string {
  const parts: string[] = [];
  const used = new Set<string>();
  const tasks = Array.isArray(summary.tasks) && summary.tasks.every((t) => typeof t === 'string') ? (summary.tasks as string[]) : null;
  if (tasks) {
    used.add('tasks');
    const cols = Object.keys(summary).filter((k) => isPlain(summary[k]) && tasks.some((t) => t in (summary[k] as Plain)));
    if (cols.length) {
      cols.forEach((c) => used.add(c));
      parts.push(table(['task', ...cols], tasks.map((t) => [t, ...cols.map((c) => (summary[c] as Plain)[t] ?? null)])));
    }
    const m = summary.accuracy_matrix;
    if (Array.isArray(m) && m.every((row) => Array.isArray(row))) {
      used.add('accuracy_matrix');
      parts.push(
        '<h4>Accuracy matrix (row: after training on task; column: accuracy on task)</h4>',
        table(['after \\ on', ...tasks], (m as unknown[][]).map((row, i) => [tasks[i] ?? String(i), ...row])),
      );
    }
  }
  const rest: Plain = {};
  for (const [k, v] of Object.entries(summary)) if (!used.has(k)) rest[k] = v;
  const scalars = Object.entries(flattenScalars(rest));
  if (scalars.length) parts.unshift(table(['key', 'value'], scalars));
  return parts.join('\n');
}

function configBlock(dir: string): string {
  const file = path.join(dir, 'config.yaml');
  return fs.existsSync(file) ? details('config.yaml', pre(fs.readFileSync(file, 'utf8')), true) : '';
}

async function runSection(dir: string, level: number, opts: ReportOptions): Promise<string> {
  const h = `h${level}`;
  const summary = readJsonObject(path.join(dir, 'summary.json'));
  const records = readMetrics(path.join(dir, 'metrics.jsonl'));
  const parts: string[] = [];
  if (summary) parts.push(`<${h}>Summary</${h}>`, summaryTables(summary));
  const curves = await learningCurves(records, pngAt(opts, level));
  if (curves) parts.push(`<${h}>Learning curves</${h}>`, curves);
  parts.push(configBlock(dir));
  return parts.join('\n');
}

async function experimentSection(dir: string, level: number, opts: ReportOptions): Promise<string> {
  const h = `h${level}`;
  const parts: string[] = [];
  for (const name of figureNames(dir)) {
    const svgFile = path.join(dir, `${name}.svg`);
    const pngFile = path.join(dir, `${name}.png`);
    const svg = fs.existsSync(svgFile) ? fs.readFileSync(svgFile, 'utf8') : null;
    const png = fs.existsSync(pngFile) ? new Uint8Array(fs.readFileSync(pngFile)) : null;
    parts.push(existingFigure(`${name} (${path.basename(dir)})`, svg, png, name, pngAt(opts, level)));
  }
  const summary = readJsonObject(path.join(dir, 'summary.json'));
  if (summary) parts.push(`<${h}>Summary</${h}>`, summaryTables(summary));
  const records = readMetrics(path.join(dir, 'metrics.jsonl'));
  const curves = await learningCurves(records, pngAt(opts, level));
  if (curves) parts.push(`<${h}>Learning curves</${h}>`, curves);
  parts.push(configBlock(dir));
  for (const sub of runSubfolders(dir)) {
    const subDir = path.join(dir, sub);
    const body = figureNames(subDir).length > 0 ? await experimentSection(subDir, level + 1, opts) : await runSection(subDir, level + 1, opts);
    parts.push(`<${h}>${esc(sub)}/</${h}>`, `<div class="sub">${body}</div>`);
  }
  return parts.join('\n');
}

// ---------------------------------------------------------------------------------------------
// Sweeps
// ---------------------------------------------------------------------------------------------

interface SweepDoc {
  command: string;
  base: string[];
  parameters: Array<{ key: string; values: unknown[]; fixed: boolean }>;
  metric: { name: string; goal: 'minimize' | 'maximize' } | null;
  runs: Array<{ id: string; params: Plain }>;
}

function readSweepDoc(file: string): SweepDoc {
  let doc: unknown;
  try {
    doc = YAML.parse(fs.readFileSync(file, 'utf8'));
  } catch (err) {
    throw new DataError(`${file}: invalid YAML: ${(err as Error).message.split('\n')[0]}`);
  }
  if (!isPlain(doc) || !isPlain(doc.parameters) || !Array.isArray(doc.runs)) throw new DataError(`${file}: not a resolved sweep (written by unforget sweep)`);
  const parameters = Object.entries(doc.parameters).map(([key, p]) => {
    const spec = isPlain(p) ? p : {};
    return Array.isArray(spec.values) ? { key, values: spec.values as unknown[], fixed: false } : { key, values: [spec.value], fixed: true };
  });
  const metric = isPlain(doc.metric) && typeof doc.metric.name === 'string' ? { name: doc.metric.name, goal: doc.metric.goal === 'maximize' ? ('maximize' as const) : ('minimize' as const) } : null;
  return {
    command: String(doc.command ?? ''),
    base: Array.isArray(doc.base) ? doc.base.map(String) : [],
    parameters,
    metric,
    runs: (doc.runs as unknown[]).filter(isPlain).map((r) => ({ id: String(r.id), params: isPlain(r.params) ? r.params : {} })),
  };
}

/** The metrics a sweep report leads with: the sweep's own metric, then the main metrics of docs/contract.md §5 that are present. */
function mainMetrics(rows: readonly ResultRow[], doc: SweepDoc): string[] {
  const present = (k: string) => rows.some((r) => r.status === 'ok' && isNum(r[k]));
  const candidates = [doc.metric?.name, 'valid_ntp', 'prev_ntp', 'forgetting', 'mix_ntp', 'train_loss'].filter((k): k is string => k !== undefined);
  const keys: string[] = [];
  for (const r of rows) for (const k of Object.keys(r)) if (k.startsWith('final_accuracy.') && !keys.includes(k)) keys.push(k);
  const out: string[] = [];
  for (const k of [...candidates, ...keys]) if (!out.includes(k) && present(k)) out.push(k);
  return out.slice(0, 6);
}

const goalOf = (metric: string, doc: SweepDoc): 'minimize' | 'maximize' =>
  doc.metric?.name === metric ? doc.metric.goal : /accuracy|^acc_/.test(metric) ? 'maximize' : 'minimize';

const paramText = (v: unknown) => (typeof v === 'string' ? v : JSON.stringify(v));

async function sweepSection(dir: string, level: number, opts: ReportOptions): Promise<string> {
  const h = `h${level}`;
  const doc = readSweepDoc(path.join(dir, 'sweep.yaml'));
  const rows = readResults(path.join(dir, 'results.jsonl'));
  const swept = doc.parameters.filter((p) => !p.fixed && p.values.length > 1);
  const sweptKeys = swept.map((p) => p.key);
  const metrics = mainMetrics(rows, doc);
  const ok = rows.filter((r) => r.status === 'ok');
  const failed = rows.filter((r) => r.status === 'failed');
  const parts: string[] = [];

  parts.push(
    `<p>command <code>unforget ${esc(doc.command)}</code>; ${doc.runs.length} runs in the grid: ${ok.length} ok, ${failed.length} failed, ${doc.runs.length - ok.length - failed.length} not run yet.</p>`,
    table(['parameter', 'values'], doc.parameters.map((p) => [p.key, p.values.map(paramText).join(', ') + (p.fixed ? ' (fixed)' : '')])),
  );
  if (doc.base.length) parts.push(details('base overrides (every run)', pre(doc.base.join('\n'))));

  // ---- results ----
  const lead = metrics[0];
  const best = new Set<number>();
  if (lead !== undefined) {
    const sign = goalOf(lead, doc) === 'maximize' ? -1 : 1;
    let bi = -1;
    rows.forEach((r, i) => {
      const v = r[lead];
      if (r.status === 'ok' && isNum(v) && (bi < 0 || sign * v < sign * (rows[bi]![lead] as number))) bi = i;
    });
    if (bi >= 0) best.add(bi);
  }
  const cols = ['run_id', 'status', ...sweptKeys, ...metrics, 'wall_s', 'error'];
  parts.push(
    `<${h}>Results</${h}>`,
    lead !== undefined && best.size ? `<p class="meta">Bold: the best run by ${esc(lead)} (${goalOf(lead, doc)}).</p>` : '',
    table(cols, rows.map((r) => cols.map((c) => r[c] ?? null)), { highlight: best }),
  );
  const allCols: string[] = [];
  for (const r of rows) for (const k of Object.keys(r)) if (!allCols.includes(k)) allCols.push(k);
  if (rows.length) parts.push(details('all columns (as in results.csv)', table(allCols, rows.map((r) => allCols.map((c) => r[c] ?? null)))));

  // ---- metrics against each numeric swept parameter ----
  const figs: string[] = [];
  for (const p of swept) {
    if (!p.values.every(isNum)) continue;
    const values = p.values as number[];
    const logX = values.every((v) => v > 0) && Math.max(...values) / Math.min(...values) >= 10;
    const others = sweptKeys.filter((k) => k !== p.key);
    for (const m of metrics) {
      const bySeries = new Map<string, Array<{ x: number; y: number }>>();
      for (const r of ok) {
        const x = r[p.key], y = r[m];
        if (!isNum(x) || !isNum(y)) continue;
        const name = others.length ? others.map((k) => `${k}=${paramText(r[k])}`).join(', ') : 'runs';
        if (!bySeries.has(name)) bySeries.set(name, []);
        bySeries.get(name)!.push({ x, y });
      }
      if (bySeries.size === 0) continue;
      const series = [...bySeries].map(([name, points]) => ({ name, points: points.sort((a, b) => a.x - b.x) }));
      const title = `${m} against ${p.key}`;
      const spec = curveSpec(title, p.key, m, series, logX) as { encoding: { x: Plain } };
      // Whole-number parameters (model.D, a seed) get whole-number ticks, not 16.0, 16.5, ...
      if (values.every(Number.isInteger)) spec.encoding.x.axis = { format: '~g', tickMinStep: 1 };
      figs.push(await figure(title, spec, pngAt(opts, level)));
    }
  }
  if (figs.length) parts.push(`<${h}>Metrics against the swept parameters</${h}>`, ...figs);

  // ---- the runs' learning curves, overlaid ----
  const curves = ok.slice(0, 30).map((r) => ({ id: String(r.run_id), records: readMetrics(path.join(dir, String(r.run_dir ?? path.join('runs', String(r.run_id))), 'metrics.jsonl')) }));
  const curveKey = ['valid_ntp', 'train_loss'].find((k) => curves.some((c) => c.records.some((rec) => isNum(rec[k]))));
  if (curveKey) {
    const x = curveX(curves.flatMap((c) => c.records));
    const series = curves
      .map((c) => ({ name: c.id, points: c.records.filter((rec) => isNum(rec[x.key]) && isNum(rec[curveKey])).map((rec) => ({ x: rec[x.key] as number, y: rec[curveKey] as number })) }))
      .filter((s) => s.points.length > 0);
    const title = `${curveKey} of each run`;
    parts.push(`<${h}>Learning curves</${h}>`, await figure(title, curveSpec(title, x.title, curveKey, series), pngAt(opts, level)));
    if (ok.length > 30) parts.push(`<p class="meta">The first 30 of ${ok.length} finished runs.</p>`);
  }
  if (failed.length) {
    parts.push(`<${h}>Failed runs</${h}>`, table(['run_id', 'exit_code', 'error'], failed.map((r) => [r.run_id, r.exit_code, r.error])));
  }
  return parts.join('\n');
}

// ---------------------------------------------------------------------------------------------
// The page
// ---------------------------------------------------------------------------------------------

/** The report of one or more folders as an HTML page. */
export async function buildReport(dirs: readonly string[], opts: ReportOptions = {}): Promise<string> {
  const sections: string[] = [];
  const nav: string[] = [];
  for (const [i, dir] of dirs.entries()) {
    const kind = detectKind(dir);
    const body = kind === 'sweep' ? await sweepSection(dir, TOP, opts) : kind === 'experiment' ? await experimentSection(dir, TOP, opts) : await runSection(dir, TOP, opts);
    const id = `sec-${i + 1}`;
    nav.push(`<li><a href="#${id}">${esc(kind)}: ${esc(dir)}</a></li>`);
    sections.push(`<section id="${id}">\n<h2>${esc(kind)}: ${esc(dir)}</h2>\n${body}\n</section>`);
  }
  const title = `unforget report: ${dirs.map((d) => path.basename(path.resolve(d))).join(', ')}`;
  const head = [`<h1>${esc(title)}</h1>`, `<p class="meta">generated ${esc(new Date().toISOString())} by unforget report</p>`];
  if (dirs.length > 1) head.push(`<nav><ul>${nav.join('')}</ul></nav>`);
  return page(title, [...head, ...sections].join('\n'));
}

export async function writeReport(dirs: readonly string[], outFile: string, opts: ReportOptions = {}): Promise<void> {
  const html = await buildReport(dirs, opts);
  fs.mkdirSync(path.dirname(path.resolve(outFile)), { recursive: true });
  writeFileAtomic(outFile, html);
}

