/**
 * `unforget report` on a real run folder, a real sweep folder and a real (tiny) demo folder: a page
 * that needs nothing outside itself, inline SVG figures, the summary values in tables, and text from
 * configs and errors escaped (a run id and a data path carrying markup).
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import YAML from 'yaml';
import { cli, cliOk } from './helpers/cli.js';

let dir = '';
const RUN_ID = '<script>alert(1)';
const EVIL_PATH = '<img src=x onerror=alert(1)>.bin';
const TINY = ['model.D=16', 'model.L=1', 'model.H=8', 'model.T=8', 'opt.batch_size=8', 'data.num_tokens_valid=600', 'stop.num_tokens_train=1280', 'log.every_tokens=320', 'run.threads=1', 'log.progress=false'];

before(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'unforget-report-'));
  cliOk(dir, ['data', 'markov', '--out', 'd.bin', '--symbols', '8', '--tokens', '20000', '--seed', '1']);
  cliOk(dir, ['train', 'data.path=d.bin', ...TINY, 'log.dir=runs', `run.id=${RUN_ID}`]);
  fs.writeFileSync(
    path.join(dir, 'sweep.yaml'),
    YAML.stringify({
      command: 'train',
      base: TINY.filter((o) => !o.startsWith('log.progress')),
      parameters: { 'data.path': { values: ['d.bin', EVIL_PATH] }, 'opt.lr': { values: [0.001, 0.01] } },
    }),
  );
  assert.equal(cli(dir, ['sweep', 'sweep.yaml', '--out', 'sw', '--workers', '2']).status, 1);
});

after(() => {
  if (!process.env.UNFORGET_KEEP_TMP) fs.rmSync(dir, { recursive: true, force: true });
});

/** src=/href= pointing anywhere but this page (http, https, protocol-relative, or a file). */
function externalRefs(html: string): string[] {
  // Attributes only: escaped text (`&lt;img src=x&gt;`) is not a reference.
  const tags = [...html.matchAll(/<[a-zA-Z][^>]*>/g)].map((m) => m[0]);
  const refs = tags.flatMap((t) => [...t.matchAll(/\s(?:[a-z]+:)?(?:src|href)\s*=\s*["']?([^"'\s>]*)/gi)].map((m) => m[1]!));
  return refs.filter((r) => !r.startsWith('#') && !r.startsWith('data:'));
}

function assertSelfContained(html: string): void {
  assert.ok(html.startsWith('<!DOCTYPE html>'));
  assert.deepEqual(externalRefs(html), []);
  assert.ok(!/https?:\/\/[^"\s]*\.(?:js|css)\b/i.test(html), 'a script or stylesheet address');
  assert.ok(!/<(?:script|link|iframe|object|embed)\b/i.test(html), 'an active or linked element');
  assert.ok(/<svg[\s>]/.test(html), 'no inline SVG figure');
  // Ids from several SVGs share one page: each must be unique.
  const ids = [...html.matchAll(/\sid="([^"]+)"/g)].map((m) => m[1]!);
  assert.equal(new Set(ids).size, ids.length, 'duplicate element ids');
  // Every PNG download is a real PNG.
  const pngs = [...html.matchAll(/href="data:image\/png;base64,([^"]+)"/g)];
  assert.ok(pngs.length > 0);
  for (const m of pngs) assert.deepEqual([...Buffer.from(m[1]!, 'base64').subarray(0, 4)], [0x89, 0x50, 0x4e, 0x47]);
}

const shown = (v: number) => (Number.isInteger(v) ? String(v) : String(Number(v.toPrecision(6))));

test('report of a run folder: learning curves, the summary table, config.yaml, escaped', () => {
  const runDir = path.join('runs', RUN_ID);
  const r = cliOk(dir, ['report', runDir]);
  assert.match(r.stdout, /report\.html/);
  const html = fs.readFileSync(path.join(dir, runDir, 'report.html'), 'utf8');
  assertSelfContained(html);
  assert.ok(!html.includes('<script'), 'the run id reached the page unescaped');
  assert.ok(html.includes('&lt;script&gt;alert(1)'));
  const summary = JSON.parse(fs.readFileSync(path.join(dir, runDir, 'summary.json'), 'utf8'));
  for (const k of ['valid_ntp', 'train_loss', 'valid_ntp_h2', 'steps']) {
    assert.ok(html.includes(`<td>${k}</td><td class="num">${shown(summary[k])}</td>`), `summary row ${k} = ${summary[k]}`);
  }
  assert.ok(html.includes(`<td>stop_reason</td><td>train_length</td>`));
  // config.yaml shown (escaped), and the curves drawn against tokens seen.
  assert.ok(html.includes('id: &#39;&lt;script&gt;alert(1)&#39;') || html.includes('id: &lt;script&gt;alert(1)'), 'config.yaml block');
  assert.ok(html.includes('<figcaption>Loss'));
  assert.ok(html.includes('training tokens seen'));
  assert.ok(html.includes('Vega-Lite spec'));
  // The loss figure's spec carries the metrics.jsonl values.
  const metrics = fs.readFileSync(path.join(dir, runDir, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  assert.equal(metrics.length, 5);
  assert.ok(html.includes(`&quot;y&quot;: ${metrics[2].valid_ntp}`), 'the valid_ntp curve point of step 10');
});

test('report of a sweep folder: results table, metric against each numeric parameter, errors escaped', () => {
  cliOk(dir, ['report', 'sw', '--out', 'sweep-report.html']);
  const html = fs.readFileSync(path.join(dir, 'sweep-report.html'), 'utf8');
  assertSelfContained(html);
  assert.ok(!/<img[^>]*onerror/i.test(html), 'markup from a parameter value reached the page');
  assert.ok(html.includes('&lt;img src=x onerror=alert(1)&gt;.bin'));
  assert.ok(html.includes('4 runs in the grid: 2 ok, 2 failed, 0 not run yet'));
  const rows = fs.readFileSync(path.join(dir, 'sw', 'results.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  assert.equal(rows.length, 4);
  for (const row of rows) {
    assert.ok(html.includes(`<td>${row.run_id.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;')}</td>`), `row of ${row.run_id}`);
    if (row.status === 'ok') assert.ok(html.includes(`<td class="num">${shown(row.valid_ntp)}</td>`), `valid_ntp of ${row.run_id}`);
    else assert.match(row.error, /not found|cannot/);
  }
  assert.ok(html.includes('<figcaption>valid_ntp against opt.lr'));
  assert.ok(!html.includes('against data.path'), 'a non-numeric parameter has no x axis');
  assert.ok(html.includes('<figcaption>valid_ntp of each run'));
  assert.ok((html.match(/<svg[\s>]/g) ?? []).length >= 2);
});

test('report of a demo folder inlines its figures and reports both runs; several folders make one page', () => {
  cliOk(dir, [
    'demo', '--out', 'demo', 'model.D=16', 'model.H=8', 'model.L=1', 'toy.steps_per_task=5', 'toy.num_train=256', 'toy.num_valid=64',
    'toy.eval_every=5', 'toy.eval_examples=64', 'opt.batch_size=16', 'reg.batch_size=16', 'toy.tasks=[add,sort]', 'run.threads=1',
  ]);
  cliOk(dir, ['report', 'demo']);
  const html = fs.readFileSync(path.join(dir, 'demo', 'report.html'), 'utf8');
  assertSelfContained(html);
  assert.ok(html.includes('<h2>experiment: demo</h2>'));
  for (const sub of ['no-replay/', 'self-replay/']) assert.ok(html.includes(`<h3>${sub}</h3>`), sub);
  // The demo's own plot.svg, inlined (it draws both panels' titles).
  assert.ok(html.includes('without replay') && html.includes('with self-generated replay'));
  // The per-task table of the demo summary: a row per task, a column per variant.
  const s = JSON.parse(fs.readFileSync(path.join(dir, 'demo', 'summary.json'), 'utf8'));
  assert.ok(html.includes(`<tr><td>add</td><td class="num">${shown(s.no_replay.add)}</td><td class="num">${shown(s.self_replay.add)}</td></tr>`));

  const r = cli(dir, ['report', 'sw', 'demo']);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /^error: report: with several folders, say where the page goes: --out FILE\.html\n$/);
  cliOk(dir, ['report', 'sw', 'demo', '--out', 'both.html']);
  const both = fs.readFileSync(path.join(dir, 'both.html'), 'utf8');
  assertSelfContained(both);
  assert.ok(both.includes('<h2>sweep: sw</h2>') && both.includes('<h2>experiment: demo</h2>'));

  // PNG downloads: by default only for the folder named (the demo's figure), not for the nested runs'
  // learning curves; --png all adds those, --png none drops every one. Every figure stays inline SVG.
  const pngCount = (h: string) => [...h.matchAll(/href="data:image\/png;base64,/g)].length;
  const svgCount = (h: string) => [...h.matchAll(/<svg[\s>]/g)].length;
  cliOk(dir, ['report', 'demo', '--png', 'all', '--out', 'all.html']);
  cliOk(dir, ['report', 'demo', '--png', 'none', '--out', 'none.html']);
  const all = fs.readFileSync(path.join(dir, 'all.html'), 'utf8');
  const none = fs.readFileSync(path.join(dir, 'none.html'), 'utf8');
  assertSelfContained(all);
  assert.equal(pngCount(html), 1, 'default: the demo figure only');
  assert.ok(pngCount(all) > 1 + 2, 'all: the demo figure and the runs\' curves');
  assert.equal(pngCount(none), 0);
  assert.ok(svgCount(html) === svgCount(all) && svgCount(none) === svgCount(all) && svgCount(all) === pngCount(all));
  const badPng = cli(dir, ['report', 'demo', '--png', 'some']);
  assert.equal(badPng.status, 1);
  assert.equal(badPng.stderr, "error: report: --png must be one of all, top, none, not 'some'\n");

  const bad = cli(dir, ['report', 'd.bin']);
  assert.equal(bad.status, 1);
  assert.equal(bad.stderr, 'error: d.bin: not a folder\n');
});
