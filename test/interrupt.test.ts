/**
 * Ctrl-C stops a training run cleanly at the next step: exit 0, stop_reason=interrupted, and a
 * complete, loadable checkpoint of the step it stopped at.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';

const CLI = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../src/cli/main.js');

test('SIGINT during training stops with stop_reason=interrupted and a loadable checkpoint', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'uf-int-'));
  const mk = spawnSync(process.execPath, [CLI, 'data', 'markov', '--out', 'd.bin', '--symbols', '16', '--tokens', '50000'], { cwd: dir });
  assert.equal(mk.status, 0, mk.stderr.toString());
  const child = spawn(process.execPath, [CLI, 'train', 'data.path=d.bin', 'model.D=32', 'model.L=1', 'model.H=8', 'model.T=16',
    'opt.batch_size=8', 'stop.num_tokens_train=100000000', 'log.every_tokens=1280', 'data.num_tokens_valid=640', 'run.id=r'], { cwd: dir });
  let stderr = '', stdout = '';
  child.stdout.on('data', (d) => (stdout += d));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  // wait until a few evaluations have happened, then interrupt
  await new Promise<void>((resolve) => {
    child.stderr.on('data', (d) => {
      stderr += d;
      if ((stderr.match(/^step /gm) ?? []).length >= 3) resolve();
    });
  });
  child.kill('SIGINT');
  const code = await exited;
  assert.equal(code, 0, stderr);
  const summary = JSON.parse(fs.readFileSync(path.join(dir, 'runs/r/summary.json'), 'utf8'));
  assert.equal(summary.stop_reason, 'interrupted');
  assert.ok(summary.steps > 0 && summary.steps < 100000000 / 128);
  assert.equal(JSON.parse(stdout.trim()).stop_reason, 'interrupted');
  const ev = spawnSync(process.execPath, [CLI, 'eval', '--model', 'runs/r', '--data', 'd.bin'], { cwd: dir });
  assert.equal(ev.status, 0, ev.stderr.toString());
  assert.ok(Number.isFinite(JSON.parse(ev.stdout.toString()).ntp));
  fs.rmSync(dir, { recursive: true, force: true });
});
