/**
 * The language experiments end to end at a toy size, on small synthetic "corpora" written into a
 * corpora folder under the names the experiments expect (so nothing is fetched), plus the
 * matching/interpolation helpers against hand-computed values.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { atFirstCrossing } from '../src/experiments/language/common.js';
import { lrTable, multiplierBound, timeAtForgetting } from '../src/experiments/language/lrtradeoff.js';
import { cli, cliOk } from './helpers/cli.js';
import { fakeCorpora } from './helpers/grid.js';

test('atFirstCrossing interpolates at the first crossing of a falling path', () => {
  const pts = [
    { x: 3.0, y: 1.0 },
    { x: 2.0, y: 1.5 },
    { x: 1.0, y: 2.5 },
    { x: 0.5, y: 3.0 },
  ];
  assert.deepEqual(atFirstCrossing(pts, 1.5), { x: 1.5, y: 2.0, index: 2 });
  assert.deepEqual(atFirstCrossing(pts, 3.5), { x: 3.0, y: 1.0, index: 0 });
  assert.equal(atFirstCrossing(pts, 0.1), null);
});

test('timeAtForgetting interpolates in log time', () => {
  const s = [
    { time: 10, forgetting: 1.0 },
    { time: 1000, forgetting: 0.2 },
  ];
  // Halfway in forgetting → geometric mean of the times.
  assert.ok(Math.abs(timeAtForgetting(s, 0.6)! - 100) < 1e-9);
  assert.equal(timeAtForgetting(s, 0.1), null);
});

test('multiplierBound bounds the compute multiplier outside the no-replay range', () => {
  const s = [
    { time: 10, forgetting: 1.0 },
    { time: 40, forgetting: 0.6 },
    { time: 80, forgetting: 0.5 },
  ];
  // Forgets less than every no-replay run: the series needs more than its slowest run's 80 s.
  assert.deepEqual(multiplierBound(s, 0.3, 20), { relation: '>', value: 4 });
  // Forgets more than every no-replay run: the fastest run (10 s) already forgets less.
  assert.deepEqual(multiplierBound(s, 1.2, 5), { relation: '<', value: 2 });
  assert.equal(multiplierBound(s, 0.7, 20), null);
  assert.equal(multiplierBound([], 0.3, 20), null);
  const table = lrTable([], [{ replay_fraction: 0.25, compute_multiplier: null, lr_time_s_at_equal_forgetting: null, compute_multiplier_bound: { relation: '>', value: 4 } }], 4.5);
  assert.match(table, /\| 0\.25 \| - \| > 4\.00× \(forgets less than every no-replay run that reached the target\) \|/);
});

const TINY = ['model.D=32', 'model.L=1', 'model.H=16', 'model.T=32', 'opt.batch_size=8', 'data.num_tokens_valid=2048', 'lang.vocab_size=300', 'lang.old=brown', 'lang.new=debian-reference-es', 'log.progress=false', 'run.threads=1'];

test('language-shift runs every method and reports forgetting at a matched new-data loss, where replay removes most of it', { timeout: 300_000 }, () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'uf-shift-'));
  fakeCorpora(path.join(dir, 'corpora'));
  const r = cliOk(dir, [
    'experiment', 'language-shift', '--preset', 'small', '--out', 'runs/shift', ...TINY,
    'lang.corpora_dir=corpora', 'shift.pretrain_tokens=60000', 'shift.finetune_tokens=16000', 'shift.finetune_every_tokens=2048', 'shift.finetune_lr=0.01', 'shift.lora_lr=0.03', 'shift.lora_rank=4', 'reg.buffer=2', 'opt.lr=0.01',
  ]);
  const out = path.join(dir, 'runs/shift');
  const s = JSON.parse(fs.readFileSync(path.join(out, 'summary.json'), 'utf8'));
  assert.deepEqual(Object.keys(s.methods), ['standard', 'lora', 'ntp_pre_real', 'ntp_pre_synth', 'kl_pre_real', 'kl_pre_synth']);
  for (const [name, m] of Object.entries<Record<string, number>>(s.methods)) {
    assert.ok(Number.isFinite(m.forgetting), `${name}: forgetting`);
    assert.ok(Math.abs(m.forgetting - (m.prev_ntp - s.prev_ntp_start)) < 1e-9);
    const run = JSON.parse(fs.readFileSync(path.join(out, m.run_dir as unknown as string, 'summary.json'), 'utf8'));
    assert.ok(Math.abs(run.prev_ntp_start - s.prev_ntp_start) < 1e-9, 'every method starts from the same pretrained model');
  }
  // Each method is matched with standard finetuning at the higher of their best new-data losses.
  const best = (m: Record<string, unknown>) => {
    const rows = fs.readFileSync(path.join(out, m.run_dir as string, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, number>);
    return Math.min(...rows.map((x) => x.valid_ntp!));
  };
  for (const m of Object.values<Record<string, number>>(s.methods)) {
    assert.ok(Math.abs(m.valid_ntp! - Math.max(best(m), best(s.methods.standard))) < 1e-9);
    if (m.forgetting_removed !== null) assert.ok(Math.abs(m.forgetting_removed! - (1 - m.forgetting! / m.standard_forgetting!)) < 1e-12);
  }
  assert.equal(s.methods.standard.forgetting_removed, 0);
  assert.ok(s.methods.standard.forgetting > 0, 'standard finetuning on the other language forgets');
  // Replay of either kind, with either loss, removes most of that forgetting at the matched new-data loss.
  for (const name of ['ntp_pre_real', 'ntp_pre_synth', 'kl_pre_real', 'kl_pre_synth']) {
    const m = s.methods[name] as Record<string, number | null>;
    console.log(`# ${name}: forgetting ${m.forgetting?.toFixed(4)} vs standard's ${m.standard_forgetting?.toFixed(4)} at new-data loss ${m.valid_ntp?.toFixed(4)}, removed ${m.forgetting_removed?.toFixed(3)}`);
    assert.ok(m.standard_forgetting !== null && m.standard_forgetting > 0.1, `${name}: standard finetuning forgets at the matched loss (${m.standard_forgetting})`);
    assert.ok(m.forgetting_removed !== null && m.forgetting_removed >= 0.5, `${name} removes ${m.forgetting_removed} of standard finetuning's forgetting (at least 0.5 expected)`);
  }
  for (const f of ['plot.svg', 'plot.png', 'table.md', 'config.yaml']) assert.ok(fs.existsSync(path.join(out, f)), f);
  assert.match(r.stdout, /kl_pre_synth/);
  // The prepared data is cached and reused.
  const again = cliOk(dir, ['experiment', 'language-shift', '--preset', 'small', '--out', 'runs/shift2', ...TINY, 'lang.corpora_dir=corpora', 'shift.pretrained=runs/shift/pretrain', 'shift.methods=[standard]', 'shift.finetune_tokens=4096', 'shift.finetune_every_tokens=2048']);
  assert.match(again.stderr, /cached/);
  fs.rmSync(dir, { recursive: true, force: true });
});

test('lr-tradeoff runs to the end at a toy size', { timeout: 300_000 }, () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'uf-lrt-'));
  fakeCorpora(path.join(dir, 'corpora'));
  cliOk(dir, ['experiment', 'lr-tradeoff', '--out', 'runs/lr', ...TINY, 'lang.corpora_dir=corpora', 'lr.pretrain_tokens=20000', 'lr.lrs=[0.003,0.001]', 'lr.fractions=[0.25]', 'lr.auto_tokens=4096', 'lr.max_tokens=16384', 'lr.every_tokens=1024', 'reg.buffer=2']);
  const lr = JSON.parse(fs.readFileSync(path.join(dir, 'runs/lr/summary.json'), 'utf8'));
  assert.equal(lr.runs.length, 3);
  assert.ok(Number.isFinite(lr.target_loss));
  for (const run of lr.runs) if (run.reached) assert.ok(run.train_time_s > 0);
  assert.ok(fs.existsSync(path.join(dir, 'runs/lr/plot.png')));
  fs.rmSync(dir, { recursive: true, force: true });
});

test('language experiments reject bad settings with one line', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'uf-langerr-'));
  const cases: Array<[string[], RegExp]> = [
    [['experiment', 'language-shift', 'lang.old=[nosuch]'], /lang\.old.*unknown corpus 'nosuch'/],
    [['experiment', 'language-shift', 'shift.methods=[lora]'], /shift\.methods.*standard/],
    [['experiment', 'language-shift', 'lang.new_token_id=50'], /lang\.new_token_id.*not a reserved id/],
    [['experiment', 'capacity', 'capacity.widths=[36,64]'], /capacity\.widths.*multiple of the head size/],
    [['experiment', 'lr-tradeoff', 'lr.fractions=[1.5]'], /lr\.fractions/],
    [['experiment', 'nosuch'], /unknown experiment 'nosuch'/],
  ];
  for (const [args, re] of cases) {
    const r = cli(dir, args);
    assert.equal(r.status, 1, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, re);
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
  }
  assert.deepEqual(fs.readdirSync(dir).filter((f) => f !== 'runs' && f !== 'data'), []);
  fs.rmSync(dir, { recursive: true, force: true });
});
