/**
 * The toy continual-learning experiment end to end at a tiny size: run folder contents, the
 * accuracy matrix, per-evaluation metrics, the figure, and config errors.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { loadConfig } from '../src/config/load.js';
import { TOY_PRESETS, runToyContinual, toySections, toyAccuracy } from '../src/experiments/toy/continual.js';
import { makeTaskData, seqLength } from '../src/experiments/toy/tasks.js';
import { GPT } from '../src/model/gpt.js';
import { loadModel } from '../src/index.js';

const tiny = ['model.D=32', 'model.L=1', 'model.H=8', 'opt.batch_size=32', 'toy.num_train=256', 'toy.num_valid=64',
  'toy.steps_per_task=6', 'toy.eval_every=3', 'toy.n_digits=2', 'reg.batch_size=16', 'reg.buffer=2'];

test('toy-continual writes metrics, summary with final_accuracy and accuracy_matrix, and the figure', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'uf-toy-'));
  const cfg = loadConfig([], [...tiny, 'toy.tasks=[sort,add,reversal]', `log.dir=${dir}`, 'run.id=r'], TOY_PRESETS.demo as never, { sections: toySections, requireStop: false });
  const r = await runToyContinual(cfg);
  const s = JSON.parse(fs.readFileSync(path.join(dir, 'r/summary.json'), 'utf8'));
  assert.deepEqual(s.tasks, ['sort', 'add', 'reversal']);
  assert.deepEqual(Object.keys(s.final_accuracy), ['sort', 'add', 'reversal']);
  assert.equal(s.accuracy_matrix.length, 3);
  for (const row of s.accuracy_matrix) {
    assert.equal(row.length, 3);
    for (const a of row) assert.ok(a >= 0 && a <= 1);
  }
  assert.deepEqual(s.accuracy_matrix[2], ['sort', 'add', 'reversal'].map((t) => s.final_accuracy[t]));
  assert.equal(s.steps, 18);
  assert.ok(s.replay_sample_time > 0, 'self-generated replay was sampled for tasks 2 and 3');
  const lines = fs.readFileSync(path.join(dir, 'r/metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  assert.deepEqual(lines.map((l) => l.step), [0, 3, 6, 9, 12, 15, 18]);
  for (const l of lines) for (const t of ['sort', 'add', 'reversal']) {
    assert.ok(Number.isFinite(l[`acc_${t}`]) && Number.isFinite(l[`ntp_${t}`]), `acc/ntp of ${t} at step ${l.step}`);
  }
  assert.deepEqual(r.boundaries, [6, 12]);
  for (const f of ['config.yaml', 'model.safetensors', 'plot.svg', 'plot.png']) assert.ok(fs.existsSync(path.join(dir, 'r', f)), f);
  assert.match(fs.readFileSync(path.join(dir, 'r/plot.svg'), 'utf8'), /self-generated replay/);
  fs.rmSync(dir, { recursive: true, force: true });
});

test('toy accuracy is exact-match greedy decoding: a model that cannot count scores 0, the data itself 1', async () => {
  const n = 2;
  const T = seqLength(n);
  const data = makeTaskData('add', n, 1000, 50, 1);
  const model = GPT.init({ D: 16, L: 1, H: 8, T, V: 20 }, 3);
  const acc = toyAccuracy(model, data, 50, n, 16);
  assert.ok(acc >= 0 && acc < 0.1, `an untrained model is (almost) never exactly right: ${acc}`);

  // One-digit addition has 100 examples; 1024 training draws hold all of them, so a model trained
  // until it has memorised its training set reproduces any one-digit addition data exactly.
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'uf-toyacc-'));
  const cfg = loadConfig([], ['model.D=32', 'model.L=1', 'model.H=8', 'opt.batch_size=64', 'opt.lr=1e-2', 'toy.tasks=[add]', 'toy.n_digits=1', 'toy.modulus=10',
    'toy.num_train=1024', 'toy.num_valid=64', 'toy.steps_per_task=400', 'toy.warmup_steps=20', 'toy.eval_every=400', 'run.threads=1', `log.dir=${dir}`, 'run.id=m'], TOY_PRESETS.demo as never, { sections: toySections, requireStop: false });
  const r = await runToyContinual(cfg);
  const trained = loadModel(r.runDir);
  const fresh = makeTaskData('add', 1, 10, 300, 99);
  const accTrained = toyAccuracy(trained, fresh, 300, 1, 300);
  console.log(`# untrained (2 digits): ${acc}; trained on one-digit addition: ${accTrained}`);
  assert.equal(accTrained, 1, 'a model that has memorised one-digit addition gets every answer exactly right');
  fs.rmSync(dir, { recursive: true, force: true });
});

test('toy-continual: self-generated ntp_pre replay keeps the first task, training without replay forgets it', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'uf-toyreplay-'));
  // The demo's replay settings (reg.method=ntp_pre, reg.synth=true, coeff 1) at a size where both one-digit tasks are learned.
  const small = ['model.D=32', 'model.L=1', 'model.H=8', 'opt.batch_size=64', 'opt.lr=1e-2', 'toy.tasks=[add,reversal]', 'toy.n_digits=1', 'toy.modulus=10',
    'toy.num_train=1024', 'toy.num_valid=256', 'toy.steps_per_task=300', 'toy.warmup_steps=20', 'toy.eval_every=300', 'reg.batch_size=64', 'reg.buffer=4', 'run.threads=1', `log.dir=${dir}`];
  const run = async (id: string, extra: string[]) =>
    (await runToyContinual(loadConfig([], [...small, `run.id=${id}`, ...extra], TOY_PRESETS.demo as never, { sections: toySections, requireStop: false }))).summary;
  const plain = await run('no-replay', ['reg.method=null']);
  const replay = await run('self-replay', []);
  assert.equal(replay.reg_method, 'ntp_pre');
  assert.equal(replay.reg_synth, true);
  const m0 = plain.accuracy_matrix as number[][], m1 = replay.accuracy_matrix as number[][];
  console.log(`# accuracy matrix (rows: after add, after reversal; columns: add, reversal): no replay ${JSON.stringify(m0)}, self-generated replay ${JSON.stringify(m1)}`);
  for (const [name, m] of [['no replay', m0], ['replay', m1]] as const) {
    assert.ok(m[0]![0]! >= 0.9, `${name}: add is learned first (${m[0]![0]})`);
    assert.ok(m[1]![1]! >= 0.9, `${name}: reversal is learned second (${m[1]![1]})`);
  }
  assert.ok(m0[1]![0]! <= 0.5, `without replay, training on reversal forgets add (final add accuracy ${m0[1]![0]})`);
  assert.ok(m1[1]![0]! >= 0.9, `with self-generated replay, add is kept (final add accuracy ${m1[1]![0]})`);
  assert.ok((replay.replay_sample_time as number) > 0, 'π sampled the replay');
  fs.rmSync(dir, { recursive: true, force: true });
});

test('toy config errors name the key', async () => {
  const bad = async (o: string[], re: RegExp) => {
    await assert.rejects(async () => runToyContinual(loadConfig([], [...tiny, ...o], TOY_PRESETS.demo as never, { sections: toySections, requireStop: false })), re);
  };
  await assert.rejects(async () => loadConfig([], ['toy.tasks=[add,mul]'], undefined, { sections: toySections, requireStop: false }), /toy\.tasks/);
  await bad(['toy.tasks=[add,add]'], /toy\.tasks/);
  await bad(['toy.modulus=100000'], /toy\.modulus/);
  await bad(['opt.batch_size=512'], /opt\.batch_size/);
});
