/**
 * Every regulariser reduces forgetting on the Markov A→B pair (pretrain on chain A, finetune on
 * chain B), against standard finetuning from the same pretrained model: ntp_pre and replace with
 * real and self-generated replay, kl_pre with real replay (self-generated kl_pre is
 * forgetting.test.ts's), and kl_dwn, which replays nothing and holds θ to π on the training batch.
 * `forgetting` = prev_ntp(end) − prev_ntp(start).
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { loadConfig } from '../src/config/load.js';
import { makeMarkovChain, sampleMarkov } from '../src/data/markov.js';
import { writeTokenFile } from '../src/data/tokens.js';
import { train } from '../src/train/train.js';

const S = 16; // symbols per chain; A uses ids 2..17, B ids 18..33; dataset token ids 0 (A) and 1 (B)
const V = 2 + 2 * S;

function chainFile(dir: string, name: string, offset: number, tokenId: number, seed: number): string {
  const chain = makeMarkovChain(S, 1.5, seed);
  const raw = sampleMarkov(chain, 100_000, seed + 1);
  const file = path.join(dir, `${name}.bin`);
  writeTokenFile(file, Uint16Array.from(raw.map((x) => x - 1 + offset)), { vocab_size: V, dataset_token_id: tokenId, tokenizer: null });
  return file;
}

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'uf-methods-'));
after(() => fs.rmSync(dir, { recursive: true, force: true }));
// One thread: at this model size the step is too small to share, and a lone thread is not slowed by other processes.
const common = ['model.D=32', 'model.L=1', 'model.H=16', 'model.T=32', 'opt.batch_size=16', 'data.num_tokens_valid=8192', 'run.threads=1', 'log.progress=false', `log.dir=${dir}`];

interface Run {
  forgetting: number;
  valid_ntp: number;
  /** valid_ntp on B before finetuning. */
  valid_ntp_start: number;
  summary: Record<string, unknown>;
}

let pretrained: Promise<{ b: string; pre: string }> | null = null;
function pretrain(): Promise<{ b: string; pre: string }> {
  pretrained ??= (async () => {
    const a = chainFile(dir, 'a', 2, 0, 21);
    const b = chainFile(dir, 'b', 2 + S, 1, 31);
    await train(loadConfig([], [...common, `data.path=${a}`, 'opt.lr=1e-2', 'opt.warmup_tokens=10000', 'stop.num_tokens_train=200000', 'log.every_tokens=200000', 'run.id=pre']));
    return { b, pre: path.join(dir, 'pre') };
  })();
  return pretrained;
}

async function finetune(id: string, extra: string[]): Promise<Run> {
  const { b, pre } = await pretrain();
  const r = await train(loadConfig([], [...common, `data.path=${b}`, `model.load_path=${pre}`, 'opt.lr=3e-3', 'stop.num_tokens_train=60000', 'log.every_tokens=60000', `run.id=${id}`, ...extra]));
  const first = JSON.parse(fs.readFileSync(path.join(r.runDir, 'metrics.jsonl'), 'utf8').split('\n')[0]!) as Record<string, number>;
  const run = { forgetting: r.summary.forgetting as number, valid_ntp: r.summary.valid_ntp as number, valid_ntp_start: first.valid_ntp!, summary: r.summary };
  console.log(`# ${id}: forgetting ${run.forgetting.toFixed(4)}, valid_ntp ${run.valid_ntp.toFixed(4)} (start ${run.valid_ntp_start.toFixed(3)})`);
  return run;
}

let standardRun: Promise<Run> | null = null;
const standard = () => (standardRun ??= finetune('standard', []));

test('standard finetuning on chain B forgets chain A', async () => {
  const s = await standard();
  assert.ok(s.forgetting > 0.2, `standard finetuning forgets (forgetting ${s.forgetting})`);
  assert.ok(s.valid_ntp < 0.5 * s.valid_ntp_start, `and learns B (valid_ntp ${s.valid_ntp} from ${s.valid_ntp_start})`);
});

/** A replay method keeps ≤ 25% of standard finetuning's forgetting at a new-data loss within 0.1 nats of its. */
async function replayRemovesForgetting(id: string, extra: string[], synth: boolean): Promise<void> {
  const s = await standard();
  const r = await finetune(id, [...extra, `reg.synth=${synth}`]);
  assert.ok(r.forgetting <= 0.25 * s.forgetting, `${id} forgets ${r.forgetting} vs standard's ${s.forgetting}: less than 75% removed`);
  assert.ok(r.valid_ntp <= s.valid_ntp + 0.1, `${id} valid_ntp on B ${r.valid_ntp} vs standard's ${s.valid_ntp} (at most 0.1 nats higher)`);
  assert.equal((r.summary.replay_sequences as number) > 0, synth, `${id}: sequences sampled by π: ${r.summary.replay_sequences}`);
}

for (const synth of [false, true]) {
  const kind = synth ? 'self-generated' : 'real';
  test(`ntp_pre with ${kind} replay removes ≥ 75% of standard finetuning's forgetting`, () =>
    replayRemovesForgetting(`ntp_pre_${kind}`, ['reg.method=ntp_pre', 'reg.coeff=1', 'reg.batch_size=16'], synth));
  test(`replace (half of each batch) with ${kind} replay removes ≥ 75% of standard finetuning's forgetting`, () =>
    replayRemovesForgetting(`replace_${kind}`, ['reg.method=replace', 'reg.coeff=0.5'], synth));
}

test('kl_pre with real replay removes ≥ 75% of standard finetuning\'s forgetting', () =>
  replayRemovesForgetting('kl_pre_real', ['reg.method=kl_pre', 'reg.coeff=1', 'reg.batch_size=16'], false));

test('kl_dwn (KL to π on the training batch) removes ≥ 40% of standard finetuning\'s forgetting and still learns B', async () => {
  const s = await standard();
  // Holding θ to π on B's own inputs also holds back learning B, so no matched new-data loss is asked for.
  const r = await finetune('kl_dwn', ['reg.method=kl_dwn', 'reg.coeff=3']);
  assert.ok(r.forgetting <= 0.6 * s.forgetting, `kl_dwn forgets ${r.forgetting} vs standard's ${s.forgetting}: less than 40% removed`);
  assert.ok(r.valid_ntp < 0.5 * r.valid_ntp_start, `kl_dwn learns B (valid_ntp ${r.valid_ntp} from ${r.valid_ntp_start})`);
});
