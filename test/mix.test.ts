/** Pretraining with a mixed-in second dataset (mix.path, mix.coeff) logs mix_* metrics. */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { loadConfig } from '../src/config/load.js';
import { writeTokenFile } from '../src/data/tokens.js';
import { allSequences } from '../src/data/tokens.js';
import { loadModel } from '../src/model/checkpoint.js';
import { evaluate } from '../src/train/losses.js';
import { train } from '../src/train/train.js';

test('mix.path/mix.coeff: floor(coeff·B) rows from a second dataset, evaluated as mix_*', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'uf-mix-'));
  const a = Uint16Array.from({ length: 6000 }, (_, i) => 2 + (i % 5));
  const b = Uint16Array.from({ length: 6000 }, (_, i) => 7 + ((i * 3) % 5));
  writeTokenFile(path.join(dir, 'a.bin'), a, { vocab_size: 12, dataset_token_id: 0, tokenizer: null });
  writeTokenFile(path.join(dir, 'b.bin'), b, { vocab_size: 12, dataset_token_id: 1, tokenizer: null });
  const base = ['model.D=16', 'model.L=1', 'model.H=8', 'model.T=8', 'opt.batch_size=8', 'opt.lr=1e-2', 'data.num_tokens_valid=640', 'log.every_tokens=2000', 'stop.num_tokens_train=20000', `log.dir=${dir}`];
  const { summary: mixed } = await train(loadConfig([], [...base, `data.path=${path.join(dir, 'a.bin')}`, `mix.path=${path.join(dir, 'b.bin')}`, 'mix.coeff=0.5', 'run.id=mixed']));
  const { summary: plain } = await train(loadConfig([], [...base, `data.path=${path.join(dir, 'a.bin')}`, 'run.id=plain']));
  assert.ok(Number.isFinite(mixed.mix_ntp as number));
  assert.equal(plain.mix_ntp, undefined);
  // with half of every batch from b the model learns b; without, it does not
  const all = allSequences(b, 8, 1);
  const plainOnB = evaluate(loadModel(path.join(dir, 'plain')), [all.batch(0, 64)], 8).ntp;
  assert.ok((mixed.mix_ntp as number) < 1.0, `mix_ntp ${mixed.mix_ntp}`);
  assert.ok(plainOnB > 2.0, `a model never trained on b has a high loss there: ${plainOnB}`);
  fs.rmSync(dir, { recursive: true, force: true });
});
