/**
 * `unforget forgetting` and src/eval/forgetting.ts: pretrain on Markov chain A, finetune on chain B once as standard
 * finetuning and once with self-generated KL replay (kl_pre); on the base's own samples the standard finetune has
 * drifted further (larger KL, higher NTP), and a model against itself has drifted not at all. The KL and NTPs are
 * checked against a float64 computation from the independent forward of test/helpers/gpt64.ts.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { cli, cliOk } from './helpers/cli.js';
import { gpt64Forward, weightsTo64, type Gpt64Weights } from './helpers/gpt64.js';
import { loadConfig } from '../src/config/load.js';
import { makeMarkovChain, sampleMarkov } from '../src/data/markov.js';
import { writeTokenFile } from '../src/data/tokens.js';
import { measureDrift } from '../src/eval/forgetting.js';
import { loadCheckpoint } from '../src/model/checkpoint.js';
import { gptToSpec, type GPT } from '../src/model/gpt.js';
import { sample } from '../src/model/sample.js';
import { train } from '../src/train/train.js';
import { Rng } from '../src/util/rng.js';

const S = 16; // symbols per chain; A uses ids 2..17, B ids 18..33; dataset token ids 0 (A) and 1 (B)
const V = 2 + 2 * S;

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'uf-forgetting-'));
after(() => {
  if (!process.env.UNFORGET_KEEP_TMP) fs.rmSync(dir, { recursive: true, force: true });
});

function chainFile(name: string, offset: number, tokenId: number, seed: number): string {
  const chain = makeMarkovChain(S, 1.5, seed);
  const raw = sampleMarkov(chain, 100_000, seed + 1);
  const file = path.join(dir, `${name}.bin`);
  writeTokenFile(file, Uint16Array.from(raw.map((x) => x - 1 + offset)), { vocab_size: V, dataset_token_id: tokenId, tokenizer: null });
  return file;
}

const common = ['model.D=32', 'model.L=1', 'model.H=16', 'model.T=32', 'opt.batch_size=16', 'data.num_tokens_valid=4096', 'run.threads=1', 'log.progress=false', `log.dir=${dir}`];

let runs: Promise<{ pre: string; standard: string; replay: string }> | null = null;
function models() {
  runs ??= (async () => {
    const a = chainFile('a', 2, 0, 21);
    const b = chainFile('b', 2 + S, 1, 31);
    await train(loadConfig([], [...common, `data.path=${a}`, 'opt.lr=1e-2', 'opt.warmup_tokens=10000', 'stop.num_tokens_train=150000', 'log.every_tokens=150000', 'run.id=pre']));
    const pre = path.join(dir, 'pre');
    const finetune = async (id: string, extra: string[]) => {
      await train(loadConfig([], [...common, `data.path=${b}`, `model.load_path=${pre}`, 'opt.lr=3e-3', 'stop.num_tokens_train=50000', 'log.every_tokens=50000', `run.id=${id}`, ...extra]));
      return path.join(dir, id);
    };
    return { pre, standard: await finetune('standard', []), replay: await finetune('replay', ['reg.method=kl_pre', 'reg.synth=true', 'reg.coeff=1']) };
  })();
  return runs;
}

interface Out { kl: number; ntp_base: number; ntp_model: number; n: number; T: number; mcq: Record<string, unknown> }
const forgetting = (args: string[]): Out => JSON.parse(cliOk(dir, ['forgetting', ...args]).stdout) as Out;

test('forgetting ranks the finetunes: standard finetuning drifts further from the base than KL replay; a model against itself not at all', async () => {
  const { pre, standard, replay } = await models();
  const s = forgetting(['--base', pre, '--model', standard, '--n', '32', '--seed', '3']);
  const r = forgetting(['--base', pre, '--model', replay, '--n', '32', '--seed', '3']);
  console.log(`# standard: kl ${s.kl.toFixed(4)}, ntp ${s.ntp_base.toFixed(4)} → ${s.ntp_model.toFixed(4)}; replay: kl ${r.kl.toFixed(4)}, ntp → ${r.ntp_model.toFixed(4)}`);
  assert.ok(s.kl > 0.1, `standard finetuning moved the model (kl ${s.kl})`);
  assert.ok(r.kl < 0.5 * s.kl, `KL replay keeps the model nearer its base: kl ${r.kl} vs standard's ${s.kl}`);
  assert.ok(s.ntp_model - s.ntp_base > r.ntp_model - r.ntp_base, 'and the standard finetune predicts the base samples worse');
  assert.equal(s.ntp_base, r.ntp_base, 'one seed, one set of samples');
  assert.deepEqual([s.n, s.T, s.mcq], [32, 32, {}]);
  const self = forgetting(['--base', pre, '--model', pre, '--n', '8']);
  assert.ok(Math.abs(self.kl) < 1e-6, `kl of a model against itself ${self.kl}`);
  assert.equal(self.ntp_model, self.ntp_base);
});

function w64(m: GPT): Gpt64Weights {
  const t = gptToSpec(m);
  return weightsTo64({ embed_in: t.embed_in!.data, embed_out: t.embed_out!.data, qkv: t.qkv!.data, out: t.out!.data, up: t.up!.data, down: t.down!.data });
}

function logSoftmax(row: Float64Array): Float64Array {
  let mx = -Infinity;
  for (const x of row) mx = Math.max(mx, x);
  let z = 0;
  for (const x of row) z += Math.exp(x - mx);
  const lz = mx + Math.log(z);
  return row.map((x) => x - lz);
}

test("KL and NTPs equal a float64 computation on the base's samples; the CLI reports the same", async () => {
  const { pre, standard } = await models();
  const base = loadCheckpoint(pre).model, model = loadCheckpoint(standard).model;
  const n = 5, T = 20, seed = 11;
  const got = measureDrift(base, model, { n, T, seed, temperature: 1, startToken: 0, batchSize: 2 });
  // The same samples: the base's sampler, prompted with A's dataset token id, seeded alike.
  const ids = sample(base, { prompts: new Int32Array(n), promptLength: 1, length: T, temperature: 1, rng: new Rng(seed), batchSize: 64 });
  for (let i = 0; i < n; i++) assert.equal(ids[i * T], 0, 'every sample starts with the start token');
  const cfg = { D: 32, L: 1, H: 16, V };
  const lp = gpt64Forward(cfg, w64(base), ids, n, T), lq = gpt64Forward(cfg, w64(model), ids, n, T);
  let kl = 0, ntpP = 0, ntpQ = 0;
  for (let b = 0; b < n; b++) {
    for (let t = 0; t < T - 1; t++) {
      const r = (b * T + t) * V;
      const p = logSoftmax(lp.subarray(r, r + V)), q = logSoftmax(lq.subarray(r, r + V));
      for (let v = 0; v < V; v++) kl += Math.exp(p[v]!) * (p[v]! - q[v]!);
      const next = ids[b * T + t + 1]!;
      ntpP -= p[next]!;
      ntpQ -= q[next]!;
    }
  }
  const count = n * (T - 1);
  const want = { kl: kl / count, ntp_base: ntpP / count, ntp_model: ntpQ / count };
  for (const k of ['kl', 'ntp_base', 'ntp_model'] as const) assert.ok(Math.abs(got[k] - want[k]) <= 1e-4 * Math.max(1, want[k]), `${k}: ${got[k]} vs float64 ${want[k]}`);
  assert.deepEqual([got.n, got.T], [n, T]);
  const viaCli = forgetting(['--base', pre, '--model', standard, '--n', String(n), '--seq-len', String(T), '--seed', String(seed), '--batch', '2']);
  assert.deepEqual(viaCli, { ...got, mcq: {} });
});

test('forgetting errors: one line naming the culprit, exit 1', async () => {
  const { pre, standard } = await models();
  const cases: Array<[string[], RegExp]> = [
    [['--model', standard], /--base DIR/],
    [['--base', pre], /--model DIR/],
    [['--base', pre, '--model', standard, '--seq-len', '33'], /--seq-len 33 exceeds the base's T=32/],
    [['--base', pre, '--model', standard, '--n', '0'], /--n: expected an integer ≥ 1, got '0'/],
    [['--base', pre, '--model', path.join(dir, 'nope')], /nope: model folder does not exist/],
    [['--base', pre, '--model', standard, '--mcq', path.join(dir, 'q.jsonl')], /q\.jsonl: multiple-choice file not found/],
  ];
  for (const [args, re] of cases) {
    const r = cli(dir, ['forgetting', ...args]);
    assert.equal(r.status, 1, `${args.join(' ')}: ${r.stderr}`);
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    assert.match(r.stderr, /^error: forgetting: |^error: /);
    assert.match(r.stderr, re);
  }
  fs.writeFileSync(path.join(dir, 'q.jsonl'), '{"question": "q", "choices": ["a", "b"], "answer": 0}\n');
  const r = cli(dir, ['forgetting', '--base', pre, '--model', standard, '--n', '2', '--mcq', path.join(dir, 'q.jsonl')]);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /^error: forgetting: --mcq needs a tokenizer/);
});
