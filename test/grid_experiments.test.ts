/**
 * The grid experiments (capacity, lr) end to end at a toy size on two made-up languages, their
 * protocol checked against the runs' own metrics.jsonl; resuming; the stage runner with an external
 * executor (child `unforget train CONFIG` processes, as a cluster scheduler would run them); Spearman
 * against hand-computed values; bad configs.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { loadConfig } from '../src/config/load.js';
import { runStage, stagePoint } from '../src/experiments/language/stage.js';
import { averageRanks, spearman } from '../src/util/stats.js';
import { cli, cliOk } from './helpers/cli.js';
import { CAP, fakeCorpora, TINY } from './helpers/grid.js';

test('spearman uses average ranks for ties (hand-computed)', () => {
  assert.deepEqual(averageRanks([3, 1, 3, 2]), [3.5, 1, 3.5, 2]);
  assert.deepEqual(averageRanks([5, 5, 5]), [2, 2, 2]);
  // No ties: 1 − 6·Σd²/(n(n²−1)) with d = (−1, 1, −1, 1, 0): 1 − 24/120.
  assert.ok(Math.abs(spearman([1, 2, 3, 4, 5], [2, 1, 4, 3, 5])! - 0.8) < 1e-12);
  // Ties in x: ranks (1, 2.5, 2.5, 4) against (1, 2, 3, 4): Σdxdy = 4.5, Σdx² = 4.5, Σdy² = 5 → 4.5/√22.5 = 3/√10.
  assert.ok(Math.abs(spearman([1, 2, 2, 3], [10, 20, 30, 40])! - 3 / Math.sqrt(10)) < 1e-12);
  // Monotone but not linear: still ±1.
  assert.equal(spearman([1, 10, 100], [3, 2, 1]), -1);
  assert.equal(spearman([1, 2, 3], [7, 7, 7]), null);
  assert.equal(spearman([1], [2]), null);
});

const json = (file: string) => JSON.parse(fs.readFileSync(file, 'utf8'));
const metrics = (runDir: string) => fs.readFileSync(path.join(runDir, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, number>);

/** Forgetting at the first evaluation at or below the target, interpolated linearly from the one before (written out here, independently). */
function handForgetting(runDir: string, target: number): { reached: boolean; forgetting: number | null; allAbove: boolean; lastTokens: number; stoppedAtCrossing: boolean } {
  const rows = metrics(runDir).filter((r) => r.valid_ntp !== undefined && r.prev_ntp !== undefined);
  const before = rows[0]!.prev_ntp!;
  for (let i = 0; i < rows.length; i++) {
    if (rows[i]!.valid_ntp! > target) continue;
    // Target stops are checked from the first step on, so a run already at the target stops at its next evaluation.
    const stoppedAtCrossing = rows.length - 1 === Math.max(i, 1);
    if (i === 0) return { reached: true, forgetting: 0, allAbove: false, lastTokens: rows.at(-1)!.train_tokens_seen!, stoppedAtCrossing };
    const a = rows[i - 1]!, b = rows[i]!;
    const prev = a.prev_ntp! + ((a.valid_ntp! - target) / (a.valid_ntp! - b.valid_ntp!)) * (b.prev_ntp! - a.prev_ntp!);
    return { reached: true, forgetting: prev - before, allAbove: false, lastTokens: rows.at(-1)!.train_tokens_seen!, stoppedAtCrossing };
  }
  return { reached: false, forgetting: null, allAbove: true, lastTokens: rows.at(-1)!.train_tokens_seen!, stoppedAtCrossing: false };
}

/** A finetuning run either stops at the target (or crosses it at its last evaluation) or runs to the cap without crossing. */
function checkProtocol(runDir: string, target: number, cap: number, got: { reached: boolean; forgetting: number | null }, what: string): void {
  const hand = handForgetting(runDir, target);
  const s = json(path.join(runDir, 'summary.json'));
  assert.equal(got.reached, hand.reached, `${what}: reached`);
  if (hand.reached) {
    assert.ok(hand.stoppedAtCrossing, `${what}: went on past its first evaluation at the target (stopped for ${s.stop_reason})`);
    assert.ok(Math.abs(got.forgetting! - hand.forgetting!) < 1e-9, `${what}: forgetting ${got.forgetting} against ${hand.forgetting} by hand`);
  } else {
    assert.equal(s.stop_reason, 'train_length', `${what}: missed the target, so it must have run to the cap`);
    assert.ok(hand.lastTokens >= cap, `${what}: stopped at ${hand.lastTokens} tokens, before the cap ${cap}`);
    assert.equal(got.forgetting, null);
  }
}

test('capacity: the grid is pretrained, every model is finetuned to one target without and with replay, and a second call resumes', { timeout: 120_000 }, () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'uf-capgrid-'));
  fakeCorpora(path.join(dir, 'corpora'));
  const r = cliOk(dir, ['experiment', 'capacity', '--out', 'runs/cap', ...CAP]);
  const out = path.join(dir, 'runs/cap');
  const s = json(path.join(out, 'summary.json'));
  assert.equal(s.points.length, 4);
  assert.ok(Number.isFinite(s.target_loss) && s.probe !== null);
  assert.ok(Math.abs(s.target_loss - (s.probe.valid_ntp + 0.05)) < 1e-12, 'the auto target is the probe loss plus the margin');
  for (const p of s.points) {
    // The study's parameter count: 12·L·D² + D·V with L=1, V=300.
    assert.equal(p.n_params, 12 * p.D * p.D + 300 * p.D);
    const pre = json(path.join(out, p.pretrain_dir, 'summary.json'));
    assert.equal(pre.n_param_nonembed + pre.n_param_embed, p.n_params);
    assert.ok(p.pretrain_tokens >= p.tokens_per_param * p.n_params && p.pretrain_tokens < p.tokens_per_param * p.n_params + 8 * 32, 'pretrained for tokens_per_param × params tokens');
    for (const m of ['none', 'kl_pre']) {
      const f = p.finetune[m];
      const runDir = path.join(out, f.run_dir);
      const cfg = json(path.join(runDir, 'summary.json'));
      assert.ok(Math.abs(f.prev_ntp_before - cfg.prev_ntp_start) < 1e-12);
      assert.ok(Math.abs(f.prev_ntp_before - p.pretrain_valid_ntp) < 1e-9, 'the old-data loss before finetuning is the pretraining run’s held-out loss');
      checkProtocol(runDir, s.target_loss, 16384, f, `D=${p.D} tpp=${p.tokens_per_param} ${m}`);
      // Each point's config is a file `unforget train` takes as it is.
      const c = loadConfig([`${runDir}.yaml`], []);
      assert.equal(c.stop.target_loss, s.target_loss);
      assert.equal(c.reg.method, m === 'none' ? null : 'kl_pre');
      if (m === 'kl_pre') assert.equal(c.reg.synth, true);
    }
  }
  for (const m of ['none', 'kl_pre']) {
    const reached = s.points.filter((p: { finetune: Record<string, { reached: boolean }> }) => p.finetune[m]!.reached);
    assert.equal(s.spearman[m].tokens_per_param.n, reached.length);
  }
  for (const f of ['forgetting_vs_tokens_per_param', 'forgetting_vs_width', 'forgetting_grid']) assert.ok(fs.existsSync(path.join(out, `${f}.png`)), f);
  assert.match(r.stdout, /Spearman ρ of forgetting/);

  // Resume: a run left without its summary (as an interrupted one) is run again; nothing else is.
  const ftDir = path.join(out, s.points[3].finetune.kl_pre.run_dir);
  const keep = path.join(out, s.points[0].finetune.none.run_dir, 'summary.json');
  const keptAt = fs.statSync(keep).mtimeMs;
  fs.rmSync(path.join(ftDir, 'summary.json'));
  const again = cliOk(dir, ['experiment', 'capacity', '--out', 'runs/cap', ...CAP, 'run.threads=2']);
  assert.match(again.stderr, /pretraining: 4 of 4 runs already finished; 0 to run/);
  assert.match(again.stderr, /finetuning: 7 of 8 runs already finished; 1 to run/);
  assert.match(again.stderr, /clearing the unfinished run folder/);
  assert.equal(fs.statSync(keep).mtimeMs, keptAt);
  const s2 = json(path.join(out, 'summary.json'));
  assert.deepEqual(s2.points.map((p: { finetune: { none: { forgetting: number } } }) => p.finetune.none.forgetting), s.points.map((p: { finetune: { none: { forgetting: number } } }) => p.finetune.none.forgetting));
  // Another config in the same folder is refused before anything runs.
  const other = cli(dir, ['experiment', 'capacity', '--out', 'runs/cap', ...CAP, 'capacity.kl_coeff=3']);
  assert.equal(other.status, 1);
  assert.match(other.stderr, /holds an experiment with another config/);
  fs.rmSync(dir, { recursive: true, force: true });
});

test('lr: models pretrained at each rate to one old-data loss, finetuned at each rate to one new-data loss', { timeout: 120_000 }, () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'uf-lrgrid-'));
  fakeCorpora(path.join(dir, 'corpora'));
  cliOk(dir, [
    'experiment', 'lr', '--out', 'runs/lr', ...TINY, 'model.D=16', 'lr.pretrain_lrs=[0.01,0.003]', 'lr.finetune_lrs=[0.01,0.003]', 'lr.max_epochs=null',
    'lr.pretrain_auto_tokens=16384', 'lr.pretrain_max_tokens=49152', 'lr.pretrain_every_tokens=2048', 'lr.auto_tokens=4096', 'lr.max_tokens=16384', 'lr.every_tokens=1024', 'lr.finetune_warmup_tokens=0',
  ]);
  const out = path.join(dir, 'runs/lr');
  const s = json(path.join(out, 'summary.json'));
  assert.ok(Math.abs(s.pretrain_target_loss - (s.pretrain_probe.valid_ntp + 0.05)) < 1e-12);
  assert.equal(s.pretrain.length, 2);
  for (const p of s.pretrain) {
    const rows = metrics(path.join(out, p.run_dir)).filter((m) => m.valid_ntp !== undefined);
    // It stopped at the first evaluation at or below the target, and the pretraining ran at its own rate with no decay.
    assert.ok(p.reached);
    assert.ok(rows.at(-1)!.valid_ntp! <= s.pretrain_target_loss && rows.slice(0, -1).every((m) => m.valid_ntp! > s.pretrain_target_loss));
    const c = loadConfig([path.join(out, `${p.run_dir}.yaml`)], []);
    assert.equal(c.opt.lr, p.lr);
    assert.equal(c.opt.lr_decay, null);
  }
  assert.equal(s.runs.length, 2 * 2 * 2);
  for (const run of s.runs) {
    checkProtocol(path.join(out, run.run_dir), s.target_loss, 16384, run, `pre ${run.pretrain_lr} ft ${run.finetune_lr} ${run.method}`);
    const c = loadConfig([path.join(out, `${run.run_dir}.yaml`)], []);
    assert.equal(c.opt.lr, run.finetune_lr);
    assert.equal(path.resolve(c.model.load_path!), path.resolve(out, s.pretrain.find((p: { lr: number }) => p.lr === run.pretrain_lr).run_dir));
  }
  for (const m of ['none', 'kl_pre']) assert.equal(s.spearman[m].pretrain_lr.n, s.runs.filter((r: { method: string; reached: boolean }) => r.method === m && r.reached).length);
  assert.ok(fs.existsSync(path.join(out, 'forgetting_vs_finetune_lr.png')));
  fs.rmSync(dir, { recursive: true, force: true });
});

test('runStage hands pending points to an external executor as `unforget train CONFIG` tasks, skips finished ones and clears half-written ones', { timeout: 60_000 }, async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'uf-stage-'));
  cliOk(dir, ['data', 'markov', '--out', 'm.bin', '--tokens', '20000', '--symbols', '32']);
  const cfg = loadConfig([], ['model.D=16', 'model.L=1', 'model.H=8', 'model.T=16', 'opt.batch_size=4', 'log.progress=false', 'run.threads=1', `data.path=${path.join(dir, 'm.bin')}`], undefined, { requireStop: false });
  const exp = path.join(dir, 'exp');
  const points = ['a', 'b', 'c'].map((n, i) => stagePoint(cfg, exp, `pre/${n}`, { 'stop.num_tokens_train': 512 * (i + 1) }));
  // c was interrupted before: a folder without a summary.
  fs.mkdirSync(path.join(exp, 'pre/c'), { recursive: true });
  fs.writeFileSync(path.join(exp, 'pre/c/metrics.jsonl'), '{"step":0}\n');
  const ran: string[][] = [];
  const external = async (tasks: { argv: string[]; id: string }[]) => {
    for (const t of tasks) {
      ran.push(t.argv);
      cliOk(dir, t.argv);
    }
  };
  const first = await runStage(points, { dir: exp, what: 'test', execute: external });
  assert.deepEqual(ran, points.map((p) => ['train', path.join(exp, `${p.id}.yaml`)]));
  assert.deepEqual([...first.keys()], ['pre/a', 'pre/b', 'pre/c']);
  for (const [i, p] of points.entries()) assert.equal(first.get(p.id)!.summary.train_tokens_seen, 512 * (i + 1));
  const again = await runStage(points, { dir: exp, what: 'test', execute: async () => assert.fail('nothing is pending') });
  assert.ok([...again.values()].every((o) => o.resumed));
  // An executor that leaves a point unfinished is an error naming it.
  const more = [...points, stagePoint(cfg, exp, 'pre/d', { 'stop.num_tokens_train': 512 })];
  await assert.rejects(runStage(more, { dir: exp, what: 'test', execute: async () => {} }), /run pre\/d left no summary\.json/);
  fs.rmSync(dir, { recursive: true, force: true });
});

test('capacity and lr reject bad grids with one line, before anything is written', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'uf-griderr-'));
  fakeCorpora(path.join(dir, 'corpora'));
  const cases: Array<[string[], RegExp]> = [
    [['experiment', 'capacity', 'capacity.widths=[36,64]'], /capacity\.widths.*36 is not a multiple of the head size model\.H=8/],
    [['experiment', 'capacity', 'capacity.tokens_per_param=[0,20]'], /capacity\.tokens_per_param.*> 0/],
    [['experiment', 'capacity', 'capacity.widths=[16]'], /capacity\.widths.*at least two values/],
    [['experiment', 'capacity', 'capacity.tokens_per_param=[20,20,40]'], /capacity\.tokens_per_param.*twice/],
    [['experiment', 'lr', 'lr.pretrain_lrs=[0.01]'], /lr\.pretrain_lrs.*at least two/],
    [['experiment', 'lr', 'lr.finetune_lrs=[0.001,-1]'], /lr\.finetune_lrs/],
    // The fake old language holds ~50k tokens: the grid's longest run would read it many times.
    [['experiment', 'capacity', '--out', 'runs/x', ...TINY, 'capacity.widths=[16,32]', 'capacity.tokens_per_param=[20,320]'], /capacity\.max_epochs.*D=32 at 320 tokens\/parameter.*times, more than 1/],
    [['experiment', 'lr', '--out', 'runs/y', ...TINY, 'model.D=16', 'lr.pretrain_max_tokens=1000000'], /lr\.max_epochs.*more than 1/],
  ];
  for (const [args, re] of cases) {
    const r = cli(dir, args);
    assert.equal(r.status, 1, `${args.join(' ')}: ${r.stderr}`);
    // The data is prepared (and logged) before the epoch check can count its tokens; the error itself is one line.
    const lines = r.stderr.trim().split('\n');
    assert.equal(lines.filter((l) => l.startsWith('error:')).length, 1, r.stderr);
    assert.match(lines.at(-1)!, re);
    if (!args.includes('--out')) assert.equal(lines.length, 1, r.stderr);
  }
  assert.ok(!fs.existsSync(path.join(dir, 'runs')), 'no experiment folder was created');
  fs.rmSync(dir, { recursive: true, force: true });
});
