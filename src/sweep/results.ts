/**
 * A sweep's results table: one flat row per finished or failed run — its id, status, exit code,
 * error line, wall time, parameter values and the scalars of its summary.json — kept as JSON Lines
 * and as CSV, both rewritten whole (atomically) after every run so a kill never leaves half a row.
 */
import fs from 'node:fs';
import { DataError } from '../errors.js';
import { writeFileAtomic } from '../io/atomic.js';
import type { Value } from './spec.js';

export type Cell = null | boolean | number | string;
export type ResultRow = Record<string, Cell>;

/** Columns every row has, in this order, before the parameters and the summary. */
export const ROW_KEYS = ['run_id', 'status', 'exit_code', 'error', 'wall_s', 'run_dir'] as const;

/**
 * The scalars of a summary.json, nested mappings flattened to dotted keys (`final_accuracy.sort`).
 * Lists (an accuracy matrix) are left out: they have no single cell.
 */
export function flattenScalars(obj: Record<string, unknown>, prefix = ''): Record<string, Cell> {
  const out: Record<string, Cell> = {};
  for (const [k, v] of Object.entries(obj)) {
    const key = prefix ? `${prefix}.${k}` : k;
    if (v === null || typeof v === 'boolean' || typeof v === 'string') out[key] = v;
    else if (typeof v === 'number') out[key] = Number.isFinite(v) ? v : null;
    else if (v !== undefined && typeof v === 'object' && !Array.isArray(v)) Object.assign(out, flattenScalars(v as Record<string, unknown>, key));
  }
  return out;
}

/** One results row. A summary key that clashes with a row key or parameter is kept as `summary.<key>`. */
export function makeRow(
  fields: { run_id: string; status: 'ok' | 'failed'; exit_code: number | null; error: string | null; wall_s: number; run_dir: string },
  params: Record<string, Value>,
  summary: Record<string, unknown> | null,
): ResultRow {
  const row: ResultRow = { ...fields };
  for (const [k, v] of Object.entries(params)) row[k] = Array.isArray(v) ? JSON.stringify(v) : v;
  if (summary) {
    for (const [k, v] of Object.entries(flattenScalars(summary))) {
      if (k === 'run_dir') continue; // the row's own run_dir is the same folder
      row[k in row ? `summary.${k}` : k] = v;
    }
  }
  return row;
}

/** Reads `results.jsonl`; a missing file is an empty table. */
export function readResults(file: string): ResultRow[] {
  if (!fs.existsSync(file)) return [];
  const rows: ResultRow[] = [];
  fs.readFileSync(file, 'utf8').split('\n').forEach((line, i) => {
    if (line.trim() === '') return;
    let rec: unknown;
    try {
      rec = JSON.parse(line);
    } catch {
      throw new DataError(`${file}: line ${i + 1} is not JSON; remove the line (its run is then done again)`);
    }
    if (rec === null || typeof rec !== 'object' || Array.isArray(rec) || typeof (rec as ResultRow).run_id !== 'string') {
      throw new DataError(`${file}: line ${i + 1} is not a results row (no run_id)`);
    }
    rows.push(rec as ResultRow);
  });
  return rows;
}

/** The union of the rows' keys, in order of first appearance. */
export function columnsOf(rows: readonly ResultRow[]): string[] {
  const cols = new Set<string>(ROW_KEYS);
  for (const r of rows) for (const k of Object.keys(r)) cols.add(k);
  return [...cols];
}

/** One CSV field (RFC 4180): quoted when it holds a comma, quote, line break or edge space. */
export function csvField(v: Cell | undefined): string {
  if (v === null || v === undefined) return '';
  const s = String(v);
  return /[",\r\n]|^\s|\s$/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

export function toCsv(rows: readonly ResultRow[]): string {
  const cols = columnsOf(rows);
  const lines = [cols.map(csvField).join(','), ...rows.map((r) => cols.map((c) => csvField(r[c])).join(','))];
  return lines.join('\n') + '\n';
}

/** Rewrites results.jsonl and results.csv, each atomically. */
export function writeResults(jsonlFile: string, csvFile: string, rows: readonly ResultRow[]): void {
  writeFileAtomic(jsonlFile, rows.map((r) => JSON.stringify(r) + '\n').join(''));
  writeFileAtomic(csvFile, toCsv(rows));
}
