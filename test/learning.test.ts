/**
 * Learning works: on a token file drawn from a random first-order Markov chain with a known entropy
 * rate, a small model's valid_ntp comes within 0.05 nats of the best achievable loss.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { loadConfig } from '../src/config/load.js';
import { bestMarkovLoss, makeMarkovChain, sampleMarkov } from '../src/data/markov.js';
import { writeTokenFile } from '../src/data/tokens.js';
import { train } from '../src/train/train.js';

test('a small gpt learns a 64-symbol Markov chain to within 0.05 nats of its entropy rate', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'uf-learn-'));
  const chain = makeMarkovChain(64, 2, 11);
  const T = 32;
  const best = bestMarkovLoss(chain, T);
  writeTokenFile(path.join(dir, 'markov.bin'), sampleMarkov(chain, 600_000, 12), { vocab_size: 65, dataset_token_id: 0, tokenizer: null });
  const cfg = loadConfig([], [
    `data.path=${path.join(dir, 'markov.bin')}`,
    'data.num_tokens_valid=65536',
    'model.D=64', 'model.L=1', 'model.H=16', `model.T=${T}`,
    'opt.batch_size=32', 'opt.lr=1e-2', 'opt.warmup_tokens=20000', 'opt.lr_decay=cosine',
    'stop.num_tokens_train=1500000', 'log.every_tokens=500000',
    `log.dir=${dir}`, 'run.id=markov',
  ]);
  const { summary } = await train(cfg);
  const valid = summary.valid_ntp as number;
  const gap = valid - best;
  console.log(`# markov: best achievable ${best.toFixed(4)}, valid_ntp ${valid.toFixed(4)}, gap ${gap.toFixed(4)} nats`);
  assert.ok(gap < 0.05, `valid_ntp ${valid} is ${gap} nats above the best achievable ${best}`);
  // and it cannot beat the information-theoretic bound by more than sampling noise
  assert.ok(gap > -0.02, `valid_ntp ${valid} is below the entropy bound ${best}: the metric is wrong`);
  fs.rmSync(dir, { recursive: true, force: true });
});
