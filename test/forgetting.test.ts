/**
 * Replay protects old data on language-like data: pretrain on Markov chain A, finetune on chain B.
 * kl_pre with self-generated replay must cut `forgetting` (prev_ntp(end) − prev_ntp(start)) by
 * ≥ 80% against standard finetuning, at a valid_ntp on B within 0.05 nats of standard finetuning's.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { loadConfig } from '../src/config/load.js';
import { makeMarkovChain, sampleMarkov } from '../src/data/markov.js';
import { writeTokenFile } from '../src/data/tokens.js';
import { train } from '../src/train/train.js';

const S = 16; // symbols per chain; A uses ids 2..17, B ids 18..33; dataset token ids 0 (A) and 1 (B)
const V = 2 + 2 * S;

function chainFile(dir: string, name: string, offset: number, tokenId: number, seed: number): string {
  const chain = makeMarkovChain(S, 1.5, seed);
  const raw = sampleMarkov(chain, 200_000, seed + 1);
  const tokens = raw.map((x) => x - 1 + offset);
  const file = path.join(dir, `${name}.bin`);
  writeTokenFile(file, Uint16Array.from(tokens), { vocab_size: V, dataset_token_id: tokenId, tokenizer: null });
  return file;
}

test('kl_pre with self-generated replay removes ≥ 80% of the forgetting of standard finetuning', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'uf-forget-'));
  const a = chainFile(dir, 'a', 2, 0, 21);
  const b = chainFile(dir, 'b', 2 + S, 1, 31);
  const common = ['model.D=48', 'model.L=1', 'model.H=16', 'model.T=32', 'opt.batch_size=32', 'data.num_tokens_valid=16384', `log.dir=${dir}`];
  await train(loadConfig([], [...common, `data.path=${a}`, 'opt.lr=1e-2', 'opt.warmup_tokens=10000', 'stop.num_tokens_train=600000', 'log.every_tokens=300000', 'run.id=pre']));
  const pre = path.join(dir, 'pre');
  const finetune = async (id: string, extra: string[]) =>
    (await train(loadConfig([], [...common, `data.path=${b}`, `model.load_path=${pre}`, 'opt.lr=3e-3', 'stop.num_tokens_train=300000', 'log.every_tokens=100000', `run.id=${id}`, ...extra]))).summary;
  const standard = await finetune('standard', []);
  const replay = await finetune('kl_synth', ['reg.method=kl_pre', 'reg.synth=true', 'reg.coeff=1', 'reg.batch_size=32']);
  const f0 = standard.forgetting as number, f1 = replay.forgetting as number;
  const v0 = standard.valid_ntp as number, v1 = replay.valid_ntp as number;
  console.log(`# standard: forgetting ${f0.toFixed(4)}, valid_ntp ${v0.toFixed(4)}; kl_pre synth: forgetting ${f1.toFixed(4)}, valid_ntp ${v1.toFixed(4)}`);
  assert.ok(f0 > 0.5, `standard finetuning forgets (forgetting ${f0})`);
  assert.ok(f1 <= 0.2 * f0, `kl_pre + self-generated replay forgets ${f1} vs ${f0}: less than 80% removed`);
  assert.ok(Math.abs(v1 - v0) <= 0.05, `valid_ntp on B: ${v1} vs ${v0} (must be within 0.05 nats)`);
  assert.ok((replay.replay_sequences as number) > 0 && (replay.replay_sample_time as number) > 0, 'replay was sampled and its cost reported');
  fs.rmSync(dir, { recursive: true, force: true });
});
