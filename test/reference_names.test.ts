import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import YAML from 'yaml';
import { loadConfig } from '../src/config/load.js';
import { CONFIG_ALIASES } from '../src/config/schema.js';
import { writeTokenFile } from '../src/data/tokens.js';
import { ConfigError } from '../src/errors.js';
import { childArgs } from '../src/sweep/sweep.js';
import { parseSweep } from '../src/sweep/spec.js';
import { MAIN } from './helpers/cli.js';

function tmpDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'unforget-refnames-test-'));
}

const STOP = ['stop.num_tokens_train=1000'];

function oneLineConfigError(fn: () => unknown, re: RegExp): void {
  assert.throws(fn, (e: unknown) => e instanceof ConfigError && re.test(e.message) && !e.message.includes('\n'));
}

test('opt.peak_lr is opt.lr: on the command line, in a YAML file (nested or dotted), after a base', () => {
  assert.deepEqual(CONFIG_ALIASES, { 'opt.peak_lr': 'opt.lr' });
  assert.equal(loadConfig([], [...STOP, 'opt.peak_lr=3e-4']).opt.lr, 3e-4);
  const dir = tmpDir();
  const nested = path.join(dir, 'nested.yaml');
  fs.writeFileSync(nested, 'opt:\n  peak_lr: 2.5e-3\n  batch_size: 8\nstop:\n  num_tokens_train: 1000\n');
  const cfg = loadConfig([nested], []);
  assert.equal(cfg.opt.lr, 2.5e-3);
  assert.equal(cfg.opt.batch_size, 8);
  const dotted = path.join(dir, 'dotted.yaml');
  fs.writeFileSync(dotted, 'opt.peak_lr: 7e-4\n');
  assert.equal(loadConfig([dotted], STOP).opt.lr, 7e-4);
  // A later layer wins as with any key; an experiment's base (a preset) is overridden by the alias.
  assert.equal(loadConfig([dotted], [...STOP, 'opt.peak_lr=1e-2']).opt.lr, 1e-2);
  assert.equal(loadConfig([], [...STOP, 'opt.peak_lr=5e-5'], { opt: { lr: 3e-3 } }).opt.lr, 5e-5);
  // The resolved config names the target only.
  assert.ok(!('peak_lr' in (loadConfig([], [...STOP, 'opt.peak_lr=1e-3']).opt as Record<string, unknown>)));
});

test('an alias and its target both given is a one-line error naming both; unknown keys still fail', () => {
  oneLineConfigError(() => loadConfig([], [...STOP, 'opt.lr=1e-3', 'opt.peak_lr=3e-4']), /'opt\.peak_lr'.*opt\.lr/);
  oneLineConfigError(() => loadConfig([], [...STOP, 'opt.peak_lr=3e-4', 'opt.lr=1e-3']), /'opt\.peak_lr'.*opt\.lr/);
  const dir = tmpDir();
  const both = path.join(dir, 'both.yaml');
  fs.writeFileSync(both, 'opt:\n  lr: 1e-3\n  peak_lr: 3e-4\n');
  oneLineConfigError(() => loadConfig([both], STOP), new RegExp(`'opt\\.peak_lr'.*opt\\.lr.*${path.basename(both)}`));
  const lrFile = path.join(dir, 'lr.yaml');
  fs.writeFileSync(lrFile, 'opt.lr: 1e-3\n');
  oneLineConfigError(() => loadConfig([lrFile], [...STOP, 'opt.peak_lr=3e-4']), /'opt\.peak_lr'.*opt\.lr/);
  oneLineConfigError(() => loadConfig([], [...STOP, 'opt.peak_lrr=3e-4']), /'opt\.peak_lrr': unknown key/);
  oneLineConfigError(() => loadConfig([], [...STOP, 'opt.peak_lr=fast']), /'opt\.lr': expected a finite number/);
  // Reference keys with no counterpart here stay unknown.
  for (const key of ['model.remat', 'model.load_idx', 'log.project', 'log.measure_time', 'run.tags']) {
    oneLineConfigError(() => loadConfig([], [...STOP, `${key}=1`]), new RegExp(`'${key.replace('.', '\\.')}': unknown key`));
  }
});

test('log.mode=offline is accepted (what unforget always does); any other mode is a one-line error', () => {
  const cfg = loadConfig([], [...STOP, 'log.mode=offline']);
  assert.ok(!('mode' in (cfg.log as Record<string, unknown>)));
  oneLineConfigError(() => loadConfig([], [...STOP, 'log.mode=online']), /'log\.mode': only 'offline' is accepted.*got 'online'/);
});

test('a sweep file that sweeps opt.peak_lr gives each run its opt.lr', () => {
  const spec = parseSweep(YAML.parse('command: train\nbase: {data.path: d.bin, stop.num_tokens_train: 1000}\nparameters:\n  opt.peak_lr: {values: [1.0e-2, 2.15e-3]}\n'), 'sweep.yaml');
  const lrs = spec.runs.map((run) => {
    const args = childArgs(spec, run, '/tmp/sweep-out');
    assert.equal(args[0], 'train');
    return loadConfig([], args.slice(1).filter((a) => a.includes('='))).opt.lr;
  });
  assert.deepEqual(lrs, [1e-2, 2.15e-3]);
});

/** A token file like the tutorial's C4 files: uint16 ids below V=4096, with a little structure to learn. */
function tutorialTokens(file: string, datasetTokenId: number, seed: number, n: number): void {
  const ids = new Uint16Array(n);
  let x = seed + 11;
  let prev = 10;
  for (let i = 0; i < n; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    prev = 10 + ((prev * 31 + (x >>> 24) % 4 + seed * 97) % 600);
    ids[i] = prev;
  }
  writeTokenFile(file, ids, { vocab_size: 4096, dataset_token_id: datasetTokenId, tokenizer: null });
}

test("the reference tutorial's pretrain and finetune commands run with unforget", () => {
  const cwd = tmpDir();
  const root = path.join(cwd, 'data/example_c4');
  fs.mkdirSync(root, { recursive: true });
  // The reference's dataset ids for these stems: c4_en → 0, c4_es → 1.
  tutorialTokens(path.join(root, 'c4_en.bin'), 0, 0, 60_000);
  tutorialTokens(path.join(root, 'c4_es.bin'), 1, 1, 60_000);
  // Its commands with `python train_single.py` → `unforget train`, the checkpoint's weights file named
  // model.safetensors in the find, and, so that the test takes seconds, shorter runs appended (later wins).
  const script = `
set -euo pipefail
unforget() { "$NODE" "$MAIN" "$@"; }
SHORT_PRETRAIN="stop.num_tokens_train=40_960 data.num_tokens_valid=8_192 log.every_tokens=20_480"
SHORT_FINETUNE="stop.num_tokens_train=12_288 data.num_tokens_valid=8_192 log.every_tokens=8_192"

ROOT=$PWD/data/example_c4
RUNS=$PWD/runs

unforget train \\
  data.path="$ROOT/c4_en.bin" \\
  data.num_tokens_valid=100_000 \\
  model.save_dir="$RUNS/pretrain_en" \\
  model.D=128 \\
  model.L=4 \\
  model.H=32 \\
  model.T=128 \\
  model.V=4096 \\
  opt.batch_size=32 \\
  opt.peak_lr=1e-3 \\
  stop.num_tokens_train=1_000_000 \\
  log.every_tokens=100_000 \\
  log.mode=offline \\
  $SHORT_PRETRAIN

CKPT=$(find "$RUNS/pretrain_en" -mindepth 2 -name model.safetensors -print -quit | xargs dirname)
echo "$CKPT"

unforget train \\
  data.path="$ROOT/c4_es.bin" \\
  data.num_tokens_valid=100_000 \\
  model.load_path="$CKPT" \\
  opt.batch_size=32 \\
  opt.peak_lr=3e-4 \\
  stop.num_tokens_train=500_000 \\
  reg.method=kl_pre \\
  reg.coeff=10 \\
  reg.synth=true \\
  reg.batch_size=16 \\
  reg.buffer=8 \\
  log.every_tokens=100_000 \\
  log.mode=offline \\
  $SHORT_FINETUNE
`;
  const r = spawnSync('bash', ['-c', script], {
    cwd,
    encoding: 'utf8',
    env: { ...process.env, NODE: process.execPath, MAIN, UNFORGET_THREADS: process.env.UNFORGET_THREADS ?? '1' },
    timeout: 120_000,
  });
  assert.equal(r.status, 0, r.stderr);
  const pre = fs.readdirSync(path.join(cwd, 'runs/pretrain_en'));
  assert.equal(pre.length, 1);
  const ckpt = path.join(cwd, 'runs/pretrain_en', pre[0]!);
  assert.ok(r.stdout.includes(ckpt), 'the find line locates the pretrained run folder');
  const preCfg = YAML.parse(fs.readFileSync(path.join(ckpt, 'config.yaml'), 'utf8'));
  assert.equal(preCfg.opt.lr, 1e-3);
  assert.deepEqual([preCfg.model.D, preCfg.model.L, preCfg.model.H, preCfg.model.T, preCfg.model.V], [128, 4, 32, 128, 4096]);
  assert.equal(preCfg.stop.num_tokens_train, 40_960);
  // The finetuning run lands in log.dir (runs/) as the reference's lands in its default place.
  const ft = fs.readdirSync(path.join(cwd, 'runs')).filter((d) => d !== 'pretrain_en');
  assert.equal(ft.length, 1);
  const ftDir = path.join(cwd, 'runs', ft[0]!);
  const ftCfg = YAML.parse(fs.readFileSync(path.join(ftDir, 'config.yaml'), 'utf8'));
  assert.equal(ftCfg.opt.lr, 3e-4);
  assert.deepEqual([ftCfg.reg.method, ftCfg.reg.coeff, ftCfg.reg.synth, ftCfg.reg.batch_size, ftCfg.reg.buffer], ['kl_pre', 10, true, 16, 8]);
  const summary = JSON.parse(fs.readFileSync(path.join(ftDir, 'summary.json'), 'utf8'));
  for (const k of ['valid_ntp', 'prev_ntp', 'prev_kl', 'forgetting']) assert.ok(Number.isFinite(summary[k]), `${k} in the finetuning summary`);
});
