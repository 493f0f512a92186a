/**
 * Bad finetuning/replay inputs: each is one `error:` line naming the culprit, exit code 1, and the
 * checkpoint being finetuned is left byte-for-byte untouched.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, test } from 'node:test';
import { writeTokenFile } from '../src/data/tokens.js';

const CLI = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../src/cli/main.js');
let dir = '';

function run(args: string[]) {
  const r = spawnSync(process.execPath, [CLI, ...args], { cwd: dir, encoding: 'utf8' });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

function snapshot(folder: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const f of fs.readdirSync(folder)) {
    const p = path.join(folder, f);
    out.set(f, `${fs.statSync(p).mtimeMs}:${fs.readFileSync(p).toString('base64')}`);
  }
  return out;
}

const tiny = ['model.D=16', 'model.L=1', 'model.H=8', 'model.T=8', 'opt.batch_size=8', 'log.every_tokens=640'];

before(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'uf-replay-err-'));
  // two datasets sharing a vocabulary; `noid` has no dataset token id in its sidecar
  const tokens = Uint16Array.from({ length: 8000 }, (_, i) => 2 + ((i * 7) % 13));
  writeTokenFile(path.join(dir, 'a.bin'), tokens, { vocab_size: 16, dataset_token_id: 0, tokenizer: null });
  writeTokenFile(path.join(dir, 'noid.bin'), tokens, { vocab_size: 16, dataset_token_id: null, tokenizer: null });
  writeTokenFile(path.join(dir, 'b.bin'), tokens.map((x) => 15 - x + 2), { vocab_size: 16, dataset_token_id: 1, tokenizer: null });
  for (const [id, data] of [['pre', 'a.bin'], ['pre_noid', 'noid.bin']]) {
    const r = run(['train', `data.path=${data}`, ...tiny, 'data.num_tokens_valid=640', 'stop.num_tokens_train=1280', `run.id=${id}`]);
    assert.equal(r.code, 0, r.stderr);
  }
});

after(() => fs.rmSync(dir, { recursive: true, force: true }));

function expectError(args: string[], culprit: RegExp, checkpoint = 'runs/pre') {
  const before = snapshot(path.join(dir, checkpoint));
  const runsBefore = fs.readdirSync(path.join(dir, 'runs')).sort();
  const r = run(args);
  assert.equal(r.code, 1, `exit code for ${args.join(' ')}: ${r.stderr}`);
  const lines = r.stderr.trimEnd().split('\n');
  assert.equal(lines.length, 1, `one line: ${r.stderr}`);
  assert.match(lines[0]!, /^error: /);
  assert.match(lines[0]!, culprit);
  assert.deepEqual(snapshot(path.join(dir, checkpoint)), before, 'the checkpoint is untouched');
  assert.deepEqual(fs.readdirSync(path.join(dir, 'runs')).sort(), runsBefore, 'no run folder was created');
}

const ft = (ckpt: string) => ['train', 'data.path=b.bin', `model.load_path=runs/${ckpt}`, 'stop.num_tokens_train=640', 'opt.batch_size=8', 'run.id=ft'];

test('reg.synth=true without a known dataset token id', () => {
  expectError([...ft('pre_noid'), 'reg.method=kl_pre', 'reg.synth=true'], /reg\.synth/, 'runs/pre_noid');
});

test('reg.batch_size larger than the real replay split allows', () => {
  expectError([...ft('pre'), 'reg.method=ntp_pre', 'reg.synth=false', 'reg.batch_size=100000'], /reg\.batch_size.*100000/);
});

test('reg.method=replace with a share of each batch that rounds to no rows', () => {
  expectError([...ft('pre'), 'reg.method=replace', 'reg.coeff=0'], /reg\.coeff.*0 rows/);
  expectError([...ft('pre'), 'reg.method=replace', 'reg.coeff=0.1', 'reg.synth=true'], /reg\.coeff.*floor\(0\.1 · 8\) = 0 rows/);
});

test('LoRA rank ≤ 0 or > min(in, out)', () => {
  expectError([...ft('pre'), 'model.lora_rank=0'], /model\.lora_rank/);
  expectError([...ft('pre'), 'model.lora_rank=-3'], /model\.lora_rank/);
  expectError([...ft('pre'), 'model.lora_rank=17'], /model\.lora_rank.*\[1, 16\]/);
});

test('finetuning a checkpoint whose config is missing', () => {
  const src = path.join(dir, 'runs/pre');
  const copy = path.join(dir, 'runs/noconfig');
  fs.cpSync(src, copy, { recursive: true });
  fs.rmSync(path.join(copy, 'config.yaml'));
  expectError(ft('noconfig'), /noconfig\/config\.yaml/, 'runs/noconfig');
});

test('kl_pre / kl_dwn / synth replay without a checkpoint to finetune from', () => {
  expectError(['train', 'data.path=b.bin', ...tiny, 'stop.num_tokens_train=640', 'run.id=x', 'reg.method=kl_pre', 'reg.synth=true'], /reg\.synth|model\.load_path/);
  expectError(['train', 'data.path=b.bin', ...tiny, 'stop.num_tokens_train=640', 'run.id=x', 'reg.method=kl_dwn'], /kl_dwn/);
});

test('LoRA, real replay and synthetic replay finetunes run and report prev metrics', () => {
  for (const [id, extra] of [
    ['lora', ['model.lora_rank=4']],
    ['real', ['reg.method=ntp_pre', 'reg.synth=false', 'reg.batch_size=4']],
    ['replace', ['reg.method=replace', 'reg.coeff=0.25', 'reg.synth=true']],
    ['kldwn', ['reg.method=kl_dwn']],
  ] as const) {
    const r = run(['train', 'data.path=b.bin', 'model.load_path=runs/pre', 'stop.num_tokens_train=1280', 'opt.batch_size=8', 'data.num_tokens_valid=640', 'log.every_tokens=640', `run.id=${id}`, ...extra]);
    assert.equal(r.code, 0, `${id}: ${r.stderr}`);
    const summary = JSON.parse(fs.readFileSync(path.join(dir, 'runs', id, 'summary.json'), 'utf8'));
    assert.ok(Number.isFinite(summary.forgetting) && Number.isFinite(summary.prev_ntp_start), id);
    assert.ok(Number.isFinite(summary.valid_kl), id);
  }
});
