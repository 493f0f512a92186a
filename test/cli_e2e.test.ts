/**
 * End to end through the command line (docs/contract.md §3–§6): a tiny pretraining run, `eval`, `sample`, the run
 * folder's files, finetuning (forgetting, KL replay), and every stop criterion.
 *
 * The pretraining run is made once in a template folder; every test works in its own fresh copy.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import YAML from 'yaml';
import { cli, cliOk } from './helpers/cli.js';
import { readSafetensors } from '../src/io/safetensors.js';


const D = 16, L = 1, H = 8, T = 8, B = 8;
const N = D / H, F = 4 * D;
const V = 9; // markov --symbols 8 → vocab 9
const TOKENS = 20003; // not a multiple of T: floor(20003/8) = 2500 sequences
const NUM_TOKENS_VALID = 600; // 75 validation sequences → 9 batches of 8 (3 dropped)
const MODEL = [`model.D=${D}`, `model.L=${L}`, `model.H=${H}`, `model.T=${T}`];
const BASE = [...MODEL, `opt.batch_size=${B}`, 'log.progress=false', `data.num_tokens_valid=${NUM_TOKENS_VALID}`];


function readJson(file: string): Record<string, unknown> {
  return JSON.parse(fs.readFileSync(file, 'utf8'));
}

function readMetrics(file: string): Array<Record<string, number>> {
  const text = fs.readFileSync(file, 'utf8');
  assert.ok(text.endsWith('\n'), 'metrics.jsonl should end with a newline');
  return text
    .slice(0, -1)
    .split('\n')
    .map((line, i) => {
      const rec = JSON.parse(line);
      assert.ok(rec !== null && typeof rec === 'object' && !Array.isArray(rec), `metrics.jsonl line ${i + 1} is not a JSON object`);
      return rec;
    });
}

const finite = (x: unknown): boolean => typeof x === 'number' && Number.isFinite(x);

function assertClose(a: number, b: number, tol: number, what: string): void {
  assert.ok(Math.abs(a - b) <= tol, `${what}: ${a} vs ${b} (tolerance ${tol})`);
}

let template = '';
/** Temporary folders made by this file; removed at the end (set UNFORGET_KEEP_TMP=1 to keep them). */
const tmpDirs: string[] = [];

after(() => {
  if (process.env.UNFORGET_KEEP_TMP) return;
  for (const d of tmpDirs) fs.rmSync(d, { recursive: true, force: true });
});
const PRE_STEPS = 20; // 1280 tokens / (8·8)

before(() => {
  template = fs.mkdtempSync(path.join(os.tmpdir(), 'unforget-e2e-tpl-'));
  tmpDirs.push(template);
  const made = JSON.parse(cliOk(template, ['data', 'markov', '--out', 'd.bin', '--symbols', '8', '--tokens', String(TOKENS), '--seed', '1']).stdout);
  assert.equal(made.vocab_size, V);
  // A second dataset: a different chain (other seed) over the same vocabulary.
  const made2 = JSON.parse(cliOk(template, ['data', 'markov', '--out', 'd2.bin', '--symbols', '8', '--tokens', '12000', '--seed', '7']).stdout);
  assert.equal(made2.vocab_size, V);
  assert.notEqual(made2.entropy_rate, made.entropy_rate, 'the second chain should differ from the first');
  cliOk(template, ['train', 'data.path=d.bin', ...BASE, 'opt.lr=3e-3', `stop.num_tokens_train=${PRE_STEPS * B * T}`, 'log.every_tokens=320', 'run.id=pre']);
});

function freshDir(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'unforget-e2e-'));
  tmpDirs.push(dir);
  fs.cpSync(template, dir, { recursive: true });
  return dir;
}

// ---------------------------------------------------------------------------------------------
// Pretraining: the run folder
// ---------------------------------------------------------------------------------------------

test('pretrain run folder: config.yaml, metrics.jsonl, summary.json, model.safetensors', () => {
  const run = path.join(template, 'runs', 'pre');
  assert.deepEqual(fs.readdirSync(run).sort(), ['config.yaml', 'metrics.jsonl', 'model.safetensors', 'summary.json']);

  // config.yaml: parseable YAML, fully resolved (V from the sidecar).
  const cfg = YAML.parse(fs.readFileSync(path.join(run, 'config.yaml'), 'utf8'));
  assert.equal(cfg.model.V, V);
  assert.equal(typeof cfg.model.V, 'number');
  assert.deepEqual([cfg.model.D, cfg.model.L, cfg.model.H, cfg.model.T], [D, L, H, T]);
  assert.equal(cfg.data.path, 'd.bin');
  assert.equal(cfg.opt.batch_size, B);
  assert.equal(cfg.run.id, 'pre');
  assert.equal(typeof cfg.run.seed, 'number');
  assert.equal(cfg.opt.lr, 3e-3);
  assert.equal(cfg.stop.num_tokens_train, PRE_STEPS * B * T);

  // metrics.jsonl: one object per log event, every 320 tokens (5 steps) from step 0 to the end.
  const m = readMetrics(path.join(run, 'metrics.jsonl'));
  assert.deepEqual(m.map((r) => r.step), [0, 5, 10, 15, 20]);
  assert.deepEqual(m.map((r) => r.train_tokens_seen), [0, 320, 640, 960, 1280]);
  for (const r of m) {
    for (const k of ['step', 'valid_ntp', 'valid_ntp_h2', 'train_tokens_seen', 'train_time_elapsed', 'epoch', 'lr', 'weights_l2_theta']) {
      assert.ok(finite(r[k]), `metrics step ${r.step}: ${k} = ${r[k]}`);
    }
    if (r.step > 0) for (const k of ['train_loss', 'train_loss_ntp', 'train_loss_reg']) assert.ok(finite(r[k]), `metrics step ${r.step}: ${k} = ${r[k]}`);
    assert.equal(r.lr, 3e-3);
  }
  for (let i = 1; i < m.length; i++) assert.ok(m[i]!.train_time_elapsed! >= m[i - 1]!.train_time_elapsed!, 'train_time_elapsed decreases');
  assert.ok(m[m.length - 1]!.valid_ntp! < m[0]!.valid_ntp!, 'pretraining should lower valid_ntp');
  // epoch: 1280 tokens over (2500 − 75 = 2425 training sequences → 303 batches of 8 per epoch)
  assertClose(m[m.length - 1]!.epoch!, PRE_STEPS / Math.floor((2500 - 75) / B), 1e-12, 'epoch');

  // summary.json: the final metrics plus stop_reason and parameter counts.
  const s = readJson(path.join(run, 'summary.json'));
  assert.equal(s.stop_reason, 'train_length');
  assert.equal(s.n_param_nonembed, 12 * L * D * D);
  assert.equal(s.n_param_embed, D * V);
  assert.equal(s.valid_ntp, m[m.length - 1]!.valid_ntp);
  assert.equal(s.train_tokens_seen, PRE_STEPS * B * T);

  // model.safetensors: exactly the names, shapes and dtype.
  const st = readSafetensors(path.join(run, 'model.safetensors'));
  const shapes: Record<string, number[]> = {};
  for (const [name, t] of st.tensors) {
    assert.equal(t.dtype, 'F32', `${name} dtype`);
    shapes[name] = t.shape;
    for (let i = 0; i < t.data.length; i++) assert.ok(Number.isFinite(t.data[i]!), `${name}[${i}] is not finite`);
  }
  assert.deepEqual(shapes, {
    embed_in: [V, D],
    embed_out: [V, D],
    qkv: [L, 3, N, D, H],
    out: [L, N, H, D],
    up: [L, D, F],
    down: [L, F, D],
  });
});

test('train prints the summary as JSON on stdout', () => {
  const dir = freshDir();
  const r = cliOk(dir, ['train', 'data.path=d.bin', ...BASE, 'stop.num_tokens_train=128', 'run.id=small']);
  const s = JSON.parse(r.stdout.trim());
  assert.equal(s.stop_reason, 'train_length');
  assert.equal(s.steps, 2);
  assert.deepEqual(s, readJson(path.join(dir, 'runs', 'small', 'summary.json')));
});

test('a run without a validation split says so on stderr and reports no valid_* metrics', () => {
  const dir = freshDir();
  const noValid = BASE.filter((o) => !o.startsWith('data.num_tokens_valid'));
  const r = cliOk(dir, ['train', 'data.path=d.bin', ...noValid, 'stop.num_tokens_train=128', 'run.id=nv']);
  assert.match(r.stderr, /^note: no validation split \(data\.num_tokens_valid=0 is under one sequence of T=8\), so valid_\* metrics are not reported$/m);
  const s = JSON.parse(r.stdout.trim());
  assert.ok(!Object.keys(s).some((k) => k.startsWith('valid_')), Object.keys(s).join(','));
  // With a split there is no note.
  const withValid = cliOk(dir, ['train', 'data.path=d.bin', ...BASE, 'stop.num_tokens_train=128', 'run.id=v']);
  assert.doesNotMatch(withValid.stderr, /no validation split/);
});

// ---------------------------------------------------------------------------------------------
// eval
// ---------------------------------------------------------------------------------------------

test('eval --split all and --split valid print finite {ntp, ntp_h2, sequences}', () => {
  const dir = freshDir();
  const all = JSON.parse(cliOk(dir, ['eval', '--model', 'runs/pre', '--data', 'd.bin', '--split', 'all']).stdout);
  assert.deepEqual(Object.keys(all).sort(), ['ntp', 'ntp_h2', 'sequences']);
  assert.ok(finite(all.ntp) && finite(all.ntp_h2), JSON.stringify(all));
  assert.equal(all.sequences, Math.floor(TOKENS / T));
  assert.ok(all.ntp > 0 && all.ntp < Math.log(V) + 0.5, `ntp ${all.ntp}`);

  // --split all is the default.
  const dflt = JSON.parse(cliOk(dir, ['eval', '--model', 'runs/pre', '--data', 'd.bin']).stdout);
  assert.deepEqual(dflt, all);

  const valid = JSON.parse(cliOk(dir, ['eval', '--model', 'runs/pre', '--data', 'd.bin', '--split', 'valid']).stdout);
  assert.ok(finite(valid.ntp) && finite(valid.ntp_h2), JSON.stringify(valid));
  // floor(600/8) = 75 validation sequences, grouped in batches of 8 with the remainder dropped.
  assert.equal(valid.sequences, Math.floor(Math.floor(NUM_TOKENS_VALID / T) / B) * B);
  // The validation split is the one training evaluated: same numbers as the run's final valid_ntp.
  const s = readJson(path.join(dir, 'runs', 'pre', 'summary.json'));
  assertClose(valid.ntp, s.valid_ntp as number, 1e-5, 'eval --split valid ntp vs summary valid_ntp');
  assertClose(valid.ntp_h2, s.valid_ntp_h2 as number, 1e-5, 'eval --split valid ntp_h2 vs summary valid_ntp_h2');
});

// ---------------------------------------------------------------------------------------------
// sample
// ---------------------------------------------------------------------------------------------

function sampleIds(dir: string, seed: number): number[][] {
  const r = cliOk(dir, ['sample', '--model', 'runs/pre', '--n', '3', '--token-id', '0', '--seed', String(seed)]);
  const lines = r.stdout.trimEnd().split('\n');
  assert.equal(lines.length, 3, `expected 3 lines:\n${r.stdout}`);
  return lines.map((line) => {
    const rec = JSON.parse(line);
    assert.ok(Array.isArray(rec.ids), line);
    const ids = rec.ids as number[];
    assert.equal(ids.length, T);
    assert.equal(ids[0], 0);
    for (const id of ids) assert.ok(Number.isInteger(id) && id >= 0 && id < V, `id ${id} outside [0, ${V})`);
    return ids;
  });
}

test('sample --n 3 --token-id 0: 3 lines of T ids, reproducible by seed', () => {
  const dir = freshDir();
  const a = sampleIds(dir, 1);
  const b = sampleIds(dir, 1);
  const c = sampleIds(dir, 2);
  assert.deepEqual(a, b, 'the same seed should give the same samples');
  assert.notDeepEqual(a, c, 'another seed should give other samples');
  // The pretrained model learned the chain: samples are not all the dataset id.
  assert.ok(a.flat().slice(1).some((id) => id !== 0));
});

// ---------------------------------------------------------------------------------------------
// Finetuning
// ---------------------------------------------------------------------------------------------

test('finetune: prev_ntp in metrics, prev_ntp_start and forgetting in summary', () => {
  const dir = freshDir();
  cliOk(dir, ['train', 'model.load_path=runs/pre', 'data.path=d2.bin', 'opt.batch_size=8', 'log.progress=false', `data.num_tokens_valid=${NUM_TOKENS_VALID}`, 'opt.lr=1e-2', 'stop.num_tokens_train=960', 'log.every_tokens=320', 'run.id=ft']);
  const run = path.join(dir, 'runs', 'ft');
  const cfg = YAML.parse(fs.readFileSync(path.join(run, 'config.yaml'), 'utf8'));
  assert.deepEqual([cfg.model.D, cfg.model.L, cfg.model.H, cfg.model.T, cfg.model.V], [D, L, H, T, V], 'D, L, H, T, V come from the checkpoint');

  const m = readMetrics(path.join(run, 'metrics.jsonl'));
  assert.ok(m.length >= 2);
  for (const r of m) {
    for (const k of ['prev_ntp', 'prev_ntp_h2', 'valid_ntp', 'weights_l2_theta', 'weights_l2_theta_pi_over_pi_init']) assert.ok(finite(r[k]), `step ${r.step}: ${k} = ${r[k]}`);
  }
  assert.equal(m[0]!.weights_l2_theta_pi_over_pi_init, 0, 'θ = π at step 0');

  const pre = readJson(path.join(dir, 'runs', 'pre', 'summary.json'));
  const s = readJson(path.join(run, 'summary.json'));
  assert.equal(s.stop_reason, 'train_length');
  assert.ok(finite(s.prev_ntp_start) && finite(s.forgetting), JSON.stringify(s));
  assert.equal(s.prev_ntp_start, m[0]!.prev_ntp);
  assert.equal(s.prev_ntp, m[m.length - 1]!.prev_ntp);
  assertClose(s.forgetting as number, (m[m.length - 1]!.prev_ntp as number) - (s.prev_ntp_start as number), 1e-12, 'forgetting = prev_ntp(end) − prev_ntp_start');
  // At step 0 θ = π, and prev is π's own validation split: prev_ntp_start is π's final valid_ntp.
  assertClose(s.prev_ntp_start as number, pre.valid_ntp as number, 1e-5, 'prev_ntp_start vs the pretrain run valid_ntp');
  // Training on another chain with a large lr moves prev_ntp.
  assert.notEqual(s.forgetting, 0);
});

test('finetune with reg.method=kl_pre reg.synth=true logs valid_kl and prev_kl', () => {
  const dir = freshDir();
  cliOk(dir, ['train', 'model.load_path=runs/pre', 'data.path=d2.bin', 'opt.batch_size=8', 'log.progress=false', `data.num_tokens_valid=${NUM_TOKENS_VALID}`, 'opt.lr=1e-2', 'reg.method=kl_pre', 'reg.synth=true', 'reg.buffer=2', 'stop.num_tokens_train=640', 'log.every_tokens=320', 'run.id=kl']);
  const run = path.join(dir, 'runs', 'kl');
  const m = readMetrics(path.join(run, 'metrics.jsonl'));
  assert.ok(m.length >= 2);
  for (const r of m) {
    for (const k of ['valid_kl', 'prev_kl', 'valid_ntp', 'prev_ntp']) {
      assert.ok(finite(r[k]), `step ${r.step}: ${k} = ${r[k]}`);
      if (k.endsWith('_kl')) assert.ok(r[k]! >= -1e-6, `${k} = ${r[k]} < 0`);
    }
  }
  assert.ok(Math.abs(m[0]!.valid_kl!) < 1e-5 && Math.abs(m[0]!.prev_kl!) < 1e-5, 'KL(π‖θ) is 0 at step 0');
  const last = m[m.length - 1]!;
  assert.ok(last.valid_kl! > 0, 'training moved θ away from π');
  assert.ok(finite(last.train_loss_reg) && last.train_loss_reg! >= 0, `train_loss_reg = ${last.train_loss_reg}`);
  const s = readJson(path.join(run, 'summary.json'));
  assert.equal(s.stop_reason, 'train_length');
  assert.ok(finite(s.forgetting));
  const cfg = YAML.parse(fs.readFileSync(path.join(run, 'config.yaml'), 'utf8'));
  assert.equal(cfg.reg.method, 'kl_pre');
  assert.equal(cfg.reg.synth, true);
});

// ---------------------------------------------------------------------------------------------
// Stop criteria
// ---------------------------------------------------------------------------------------------

test('stop.target_loss stops at the first evaluation at or below the target', () => {
  const dir = freshDir();
  // A target every evaluation meets: the run stops at the first log event after a step.
  cliOk(dir, ['train', 'data.path=d.bin', ...BASE, 'stop.target_loss=100', 'stop.num_tokens_train=64000', 'log.every_tokens=192', 'run.id=tl']);
  const s = readJson(path.join(dir, 'runs', 'tl', 'summary.json'));
  assert.equal(s.stop_reason, 'target_loss');
  assert.equal(s.steps, 3);
  assert.ok((s.valid_ntp as number) <= 100);

  // A target reached only after some training.
  const pre = readJson(path.join(dir, 'runs', 'pre', 'summary.json'));
  const m0 = readMetrics(path.join(dir, 'runs', 'pre', 'metrics.jsonl'))[0]!;
  const target = ((m0.valid_ntp as number) + (pre.valid_ntp as number)) / 2; // halfway between init and the pretrained loss
  cliOk(dir, ['train', 'data.path=d.bin', ...BASE, 'opt.lr=3e-3', `stop.target_loss=${target}`, 'stop.num_tokens_train=64000', 'log.every_tokens=64', 'run.id=tl2']);
  const s2 = readJson(path.join(dir, 'runs', 'tl2', 'summary.json'));
  assert.equal(s2.stop_reason, 'target_loss');
  assert.ok((s2.valid_ntp as number) <= target);
  const m = readMetrics(path.join(dir, 'runs', 'tl2', 'metrics.jsonl'));
  for (const r of m.slice(0, -1)) assert.ok(r.valid_ntp! > target, `step ${r.step} already met the target`);
});

test('stop.train_time=0.5 stops with train_time', () => {
  const dir = freshDir();
  const t0 = Date.now();
  cliOk(dir, ['train', 'data.path=d.bin', ...BASE, 'stop.train_time=0.5', 'log.every_tokens=1000000', 'run.id=tt']);
  const wall = (Date.now() - t0) / 1000;
  const s = readJson(path.join(dir, 'runs', 'tt', 'summary.json'));
  assert.equal(s.stop_reason, 'train_time');
  assert.ok((s.train_time_elapsed as number) >= 0.5, `train_time_elapsed ${s.train_time_elapsed}`);
  assert.ok((s.train_time_elapsed as number) < 5, `train_time_elapsed ${s.train_time_elapsed}`);
  assert.ok(wall < 20, `the run took ${wall}s of wall time`);
  assert.ok((s.steps as number) > 0);
});

test('stop.early_stop_steps=1 with lr 0 stops with early_stop', () => {
  const dir = freshDir();
  cliOk(dir, ['train', 'data.path=d.bin', ...BASE, 'opt.lr=0', 'stop.early_stop_steps=1', 'stop.num_tokens_train=64000', 'log.every_tokens=128', 'run.id=es']);
  const s = readJson(path.join(dir, 'runs', 'es', 'summary.json'));
  assert.equal(s.stop_reason, 'early_stop');
  // Step 0 sets the best; the first evaluation after training (step 2) does not improve it.
  assert.equal(s.steps, 2);
  const m = readMetrics(path.join(dir, 'runs', 'es', 'metrics.jsonl'));
  assert.deepEqual(m.map((r) => r.step), [0, 2]);
  assert.equal(m[1]!.valid_ntp, m[0]!.valid_ntp, 'lr 0 leaves the model unchanged');
});
