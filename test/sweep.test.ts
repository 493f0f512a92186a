/**
 * `unforget sweep` end to end: a real 2×2 grid of tiny training runs (one combination invalid), the
 * results table in JSON Lines and CSV, a sweep killed half-way and resumed, and the refusals.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import YAML from 'yaml';
import { cli, cliOk, MAIN } from './helpers/cli.js';
import { parseSweep } from '../src/sweep/spec.js';
import { parseOverride } from '../src/config/load.js';

let dir = '';

before(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'unforget-sweep-'));
  cliOk(dir, ['data', 'markov', '--out', 'd.bin', '--symbols', '8', '--tokens', '20000', '--seed', '1']);
});

after(() => {
  if (!process.env.UNFORGET_KEEP_TMP) fs.rmSync(dir, { recursive: true, force: true });
});

/** Tiny runs: D ≤ 24, L=1, T=8, one native thread, 20 steps. */
const TINY_BASE = {
  'data.path': 'd.bin',
  model: { L: 1, T: 8 },
  'opt.batch_size': 8,
  'data.num_tokens_valid': 600,
  'stop.num_tokens_train': 1280,
  'log.every_tokens': 320,
  'run.threads': 1,
};

function writeSweep(name: string, doc: unknown): string {
  fs.writeFileSync(path.join(dir, name), YAML.stringify(doc));
  return name;
}

function readJsonl(file: string): Array<Record<string, unknown>> {
  return fs.readFileSync(file, 'utf8').split('\n').filter((l) => l !== '').map((l) => JSON.parse(l));
}

/** An RFC 4180 reader written independently of the writer: quoted fields, doubled quotes, commas and newlines inside. */
function parseCsv(text: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [], field = '', quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') { field += '"'; i++; }
      else if (c === '"') quoted = false;
      else field += c;
    } else if (c === '"') quoted = true;
    else if (c === ',') { row.push(field); field = ''; }
    else if (c === '\n' || c === '\r') {
      if (c === '\r' && text[i + 1] === '\n') i++;
      row.push(field); rows.push(row); row = []; field = '';
    } else field += c;
  }
  if (field !== '' || row.length) { row.push(field); rows.push(row); }
  return rows;
}

test('sweep file parsing: base as mapping or list, fixed values, ids, W&B forms, refusals', () => {
  const a = parseSweep({ command: 'train', base: { opt: { lr: 0.01 }, 'data.path': 'd.bin' }, parameters: { 'model.D': { values: [16, 32] }, 'run.seed': { value: 3 } } }, 's.yaml');
  const b = parseSweep({ command: 'train', method: 'grid', base: ['opt.lr=0.01', 'data.path=d.bin'], parameters: { 'model.D': { values: [16, 32] }, 'run.seed': { value: 3 } } }, 's.yaml');
  assert.deepEqual(a.base, b.base);
  assert.deepEqual(a.runs, b.runs);
  assert.deepEqual(a.runs.map((r) => r.id), ['model.D=16', 'model.D=32']); // the fixed seed is not in the id
  assert.deepEqual(a.runs[1]!.params, { 'model.D': 32, 'run.seed': 3 });
  // The cartesian product, first parameter slowest.
  const g = parseSweep({ command: 'experiment toy-continual --preset demo', parameters: { 'opt.lr': { values: [1e-3, 1e-2] }, 'reg.coeff': { values: [1, 10, 100] } } }, 's.yaml');
  assert.equal(g.runs.length, 6);
  assert.deepEqual(g.runs.map((r) => [r.params['opt.lr'], r.params['reg.coeff']]), [[1e-3, 1], [1e-3, 10], [1e-3, 100], [1e-2, 1], [1e-2, 10], [1e-2, 100]]);
  assert.deepEqual(g.command, ['experiment', 'toy-continual', '--preset', 'demo']);
  // Values a folder name cannot hold get a sanitised id plus a hash; ids stay distinct and stable.
  const odd = parseSweep({ command: 'train', parameters: { 'data.path': { values: ['a/b.bin', 'a_b.bin', 'a:b.bin'] } } }, 's.yaml');
  const ids = odd.runs.map((r) => r.id);
  assert.equal(new Set(ids).size, 3);
  for (const id of ids) assert.ok(!/[/\\:]/.test(id), id);
  assert.deepEqual(parseSweep({ command: 'train', parameters: { 'data.path': { values: ['a/b.bin', 'a_b.bin', 'a:b.bin'] } } }, 's.yaml').runs.map((r) => r.id), ids);
  // A string that YAML would read as a number is passed so the config still sees a string.
  const s = parseSweep({ command: 'train', base: { 'data.path': '1e-3' }, parameters: { 'model.D': { value: 16 } } }, 's.yaml');
  assert.equal(parseOverride(s.base[0]!).value, '1e-3');

  const bad: Array<[unknown, RegExp]> = [
    [{ command: 'train', parameters: { 'opt.lr': { values: [1] } }, early_terminate: {} }, /unknown top-level key 'early_terminate'/],
    [{ command: 'train', method: 'bayes', parameters: { 'opt.lr': { values: [1] } } }, /only 'grid'/],
    [{ command: 'sample', parameters: { 'opt.lr': { values: [1] } } }, /command/],
    [{ command: 'train', parameters: { 'opt.lr': { min: 0, max: 1 } } }, /parameters\.opt\.lr: unknown key 'min'/],
    [{ command: 'train', parameters: { 'opt.lr': { values: [1, 1] } } }, /listed twice/],
    [{ command: 'train', parameters: { 'run.id': { values: ['a', 'b'] } } }, /'run\.id' is set by the sweep/],
    [{ command: 'train', base: ['log.dir=x'], parameters: { 'opt.lr': { values: [1] } } }, /'log\.dir' is set by the sweep/],
    [{ command: 'train' }, /parameters/],
  ];
  for (const [doc, re] of bad) assert.throws(() => parseSweep(doc, 's.yaml'), re);
});

test('a 2×2 sweep: one row per run, CSV with the same cells, the invalid combination recorded as failed', () => {
  const file = writeSweep('grid.yaml', {
    command: 'train',
    base: TINY_BASE,
    // D=24 with head size 16 is invalid (24 is not divisible by 16): exactly one failing combination.
    parameters: { 'model.D': { values: [16, 24] }, 'model.H': { values: [8, 16] }, 'opt.lr': { value: 0.003 } },
  });
  const r = cli(dir, ['sweep', file, '--out', 'sw-grid', '--workers', '2']);
  assert.equal(r.status, 1, `a sweep with a failed run must exit non-zero:\n${r.stderr}`);
  assert.match(r.stdout, /4 runs: 3 ok, 1 failed/);
  const out = path.join(dir, 'sw-grid');
  const rows = readJsonl(path.join(out, 'results.jsonl'));
  assert.deepEqual(rows.map((x) => x.run_id), ['model.D=16,model.H=8', 'model.D=16,model.H=16', 'model.D=24,model.H=8', 'model.D=24,model.H=16']);
  for (const row of rows) {
    const [D, H] = [row['model.D'], row['model.H']];
    assert.equal(row['opt.lr'], 0.003);
    assert.ok(typeof row.wall_s === 'number' && row.wall_s > 0);
    if (D === 24 && H === 16) {
      assert.equal(row.status, 'failed');
      assert.equal(row.exit_code, 1);
      assert.match(String(row.error), /^error: config key 'model\.H'.*not divisible/);
      continue;
    }
    assert.equal(row.status, 'ok', JSON.stringify(row));
    assert.equal(row.exit_code, 0);
    assert.equal(row.error, null);
    // The parameters reached the run: its own config.yaml says so.
    const runDir = path.join(out, String(row.run_dir));
    const cfg = YAML.parse(fs.readFileSync(path.join(runDir, 'config.yaml'), 'utf8'));
    assert.equal(cfg.model.D, D);
    assert.equal(cfg.model.H, H);
    assert.equal(cfg.opt.lr, 0.003);
    assert.equal(path.resolve(cfg.log.dir, cfg.run.id), path.resolve(runDir));
    const summary = JSON.parse(fs.readFileSync(path.join(runDir, 'summary.json'), 'utf8'));
    assert.equal(summary.steps, 20);
    for (const k of ['valid_ntp', 'train_loss', 'steps', 'n_param_nonembed', 'stop_reason']) assert.equal(row[k], summary[k], k);
  }
  // CSV: the same table; ids with commas quoted.
  const csvText = fs.readFileSync(path.join(out, 'results.csv'), 'utf8');
  assert.ok(csvText.startsWith('run_id,status,exit_code,error,wall_s,run_dir,model.D,model.H,opt.lr,'));
  assert.ok(csvText.includes('\n"model.D=16,model.H=8",ok,0,'));
  const [header, ...body] = parseCsv(csvText);
  const keys = new Set(rows.flatMap((x) => Object.keys(x)));
  assert.deepEqual(new Set(header), keys);
  assert.equal(body.length, 4);
  body.forEach((cells, i) => {
    assert.equal(cells.length, header!.length);
    header!.forEach((k, j) => {
      const v = rows[i]![k];
      assert.equal(cells[j], v === null || v === undefined ? '' : String(v), `row ${i} column ${k}`);
    });
  });
  // sweep.yaml: the resolved grid.
  const saved = YAML.parse(fs.readFileSync(path.join(out, 'sweep.yaml'), 'utf8'));
  assert.equal(saved.runs.length, 4);

  // Again on the same folder: finished runs are kept as they are; the failed one is retried (and fails again).
  const okRun = path.join(out, 'runs', 'model.D=16,model.H=8', 'summary.json');
  const before = fs.statSync(okRun).mtimeMs;
  const again = cli(dir, ['sweep', file, '--out', 'sw-grid']);
  assert.equal(again.status, 1);
  assert.match(again.stdout, /3 ok, 1 failed, 3 skipped as already finished/);
  assert.equal(fs.statSync(okRun).mtimeMs, before);
  const rows2 = readJsonl(path.join(out, 'results.jsonl'));
  assert.deepEqual(rows2.map((x) => x.run_id), rows.map((x) => x.run_id));
});

/** Processes whose command line mentions `needle` (Linux /proc; empty elsewhere). */
function processesMentioning(needle: string): number[] {
  if (!fs.existsSync('/proc/self/cmdline')) return [];
  const pids: number[] = [];
  for (const e of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(e) || Number(e) === process.pid) continue;
    try {
      if (fs.readFileSync(`/proc/${e}/cmdline`, 'utf8').includes(needle)) pids.push(Number(e));
    } catch {
      // gone meanwhile
    }
  }
  return pids;
}

async function waitFor(what: string, cond: () => boolean, timeoutMs = 20_000): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

test('a sweep killed (SIGKILL) after its first run and started again redoes nothing finished and duplicates no row', async () => {
  const file = writeSweep('kill.yaml', {
    command: 'train',
    // A list of key=value strings this time; 400 steps so that a run is still going when the kill lands.
    base: ['data.path=d.bin', 'model.L=1', 'model.T=8', 'model.D=16', 'model.H=8', 'opt.batch_size=8', 'data.num_tokens_valid=600', 'stop.num_tokens_train=25600', 'log.every_tokens=3200', 'run.threads=1'],
    parameters: { 'opt.lr': { values: [0.003, 0.01] }, 'run.seed': { values: [0, 1] } },
  });
  const out = path.join(dir, 'sw-kill');
  const ids = ['opt.lr=0.003,run.seed=0', 'opt.lr=0.003,run.seed=1', 'opt.lr=0.01,run.seed=0', 'opt.lr=0.01,run.seed=1'];
  const parent = spawn(process.execPath, [MAIN, 'sweep', file, '--out', out], { cwd: dir, stdio: 'ignore' });
  const exited = new Promise<NodeJS.Signals | null>((resolve) => parent.on('exit', (_code, sig) => resolve(sig)));
  const resultsFile = path.join(out, 'results.jsonl');
  const secondMetrics = path.join(out, 'runs', ids[1]!, 'metrics.jsonl');
  try {
    await waitFor('the first run to finish', () => fs.existsSync(resultsFile) && readJsonl(resultsFile).length === 1);
    await waitFor('the second run to start writing', () => fs.existsSync(secondMetrics));
  } catch (err) {
    parent.kill('SIGKILL');
    throw err;
  }
  parent.kill('SIGKILL');
  assert.equal(await exited, 'SIGKILL');
  // The orphaned run notices its sweep is gone and stops (it would otherwise race the restart).
  await waitFor('the orphaned run to exit', () => processesMentioning(out).length === 0, 10_000);
  assert.ok(!fs.existsSync(path.join(out, 'runs', ids[1]!, 'summary.json')), 'the second run should have been cut off half-way');
  const first = path.join(out, 'runs', ids[0]!, 'summary.json');
  const firstText = fs.readFileSync(first, 'utf8');
  const firstMtime = fs.statSync(first).mtimeMs;
  const firstMetrics = fs.readFileSync(path.join(out, 'runs', ids[0]!, 'metrics.jsonl'), 'utf8');

  const r = cli(dir, ['sweep', file, '--out', out]);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /4 runs: 4 ok, 0 failed, 1 skipped as already finished/);
  assert.match(r.stderr, /1 of 4 runs already finished; 3 to run/);
  assert.ok(!r.stderr.includes(`${ids[0]}: started`), 'the finished run was started again');
  assert.equal(fs.statSync(first).mtimeMs, firstMtime);
  assert.equal(fs.readFileSync(first, 'utf8'), firstText);
  assert.equal(fs.readFileSync(path.join(out, 'runs', ids[0]!, 'metrics.jsonl'), 'utf8'), firstMetrics);
  const rows = readJsonl(resultsFile);
  assert.deepEqual(rows.map((x) => x.run_id), ids);
  assert.ok(rows.every((x) => x.status === 'ok'));
  // The half-done run was cleared and done in full: one metrics record per log event, starting at step 0 once.
  const metrics = readJsonl(secondMetrics);
  assert.equal(metrics.filter((m) => m.step === 0).length, 1);
  assert.equal(metrics[metrics.length - 1]!.step, 400);
  assert.equal(parseCsv(fs.readFileSync(path.join(out, 'results.csv'), 'utf8')).length, 5);
  assert.ok(!fs.existsSync(path.join(out, '.lock')));
});

test('a sweep folder holding another grid is refused; so are unknown top-level keys', () => {
  // A run that fails at once (a negative learning rate) keeps this test fast; the grid is what matters.
  const a = writeSweep('a.yaml', { command: 'train', base: TINY_BASE, parameters: { 'opt.lr': { values: [-1] } } });
  const first = cli(dir, ['sweep', a, '--out', 'sw-mix']);
  assert.equal(first.status, 1);
  const results = fs.readFileSync(path.join(dir, 'sw-mix', 'results.jsonl'), 'utf8');
  const b = writeSweep('b.yaml', { command: 'train', base: TINY_BASE, parameters: { 'opt.lr': { values: [-3] } } });
  const r = cli(dir, ['sweep', b, '--out', 'sw-mix']);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /^error: .*sweep\.yaml holds a different sweep \(its parameter grid differs\)/);
  assert.equal(r.stderr.trim().split('\n').length, 1);
  assert.equal(fs.readFileSync(path.join(dir, 'sw-mix', 'results.jsonl'), 'utf8'), results);

  const c = writeSweep('c.yaml', { command: 'train', base: TINY_BASE, paramters: { 'opt.lr': { values: [1] } } });
  const u = cli(dir, ['sweep', c]);
  assert.equal(u.status, 1);
  assert.equal(u.stderr, "error: c.yaml: unknown top-level key 'paramters' (known: command, method, base, parameters, metric, name, description, slurm)\n");
  assert.ok(!fs.existsSync(path.join(dir, 'runs')), 'a refused sweep should create nothing');
});
