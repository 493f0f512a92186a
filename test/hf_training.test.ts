/**
 * A Hugging Face architecture through the whole tool, at test size: a Llama-architecture model built from a
 * config.json (model.config) pretrains on Markov chain A and its run folder is a transformers folder; finetuning on
 * chain B forgets A, and kl_pre with self-generated replay prompted by the dataset token removes ≥ 80% of it at a
 * matched new-data loss. LoRA finetuning saves PEFT adapters, which load as base + adapter and merge with
 * `export --merge` to the same logits. Saved folders hold transformers' tensor names and shapes, and load back to
 * identical logits.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { loadConfig } from '../src/config/load.js';
import { makeMarkovChain, sampleMarkov } from '../src/data/markov.js';
import { writeTokenFile } from '../src/data/tokens.js';
import { readSafetensors } from '../src/io/safetensors.js';
import { loadModelFolder, saveHFModel } from '../src/model/load.js';
import { train } from '../src/train/train.js';
import { cli } from './helpers/cli.js';
import { tinyTensorList } from './helpers/hf_folder.js';

const S = 16; // symbols per chain; A uses ids 2..17, B ids 18..33; dataset token ids 0 (A) and 1 (B)
const V = 2 + 2 * S;
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'uf-hftrain-'));
after(() => fs.rmSync(dir, { recursive: true, force: true }));

function chainFile(name: string, offset: number, tokenId: number, seed: number): string {
  const chain = makeMarkovChain(S, 1.5, seed);
  const raw = sampleMarkov(chain, 200_000, seed + 1);
  const file = path.join(dir, `${name}.bin`);
  writeTokenFile(file, Uint16Array.from(raw.map((x) => x - 1 + offset)), { vocab_size: V, dataset_token_id: tokenId, tokenizer: null });
  return file;
}

// A small Llama (GQA 2:1, SwiGLU, tied embeddings), written as a transformers config.json.
const spec = { D: 48, L: 1, N: 4, Nkv: 2, H: 12, F: 128 };
const configFile = path.join(dir, 'tiny-llama.json');
fs.writeFileSync(configFile, JSON.stringify({
  architectures: ['LlamaForCausalLM'], model_type: 'llama', hidden_size: spec.D, num_hidden_layers: spec.L,
  num_attention_heads: spec.N, num_key_value_heads: spec.Nkv, head_dim: spec.H, intermediate_size: spec.F,
  vocab_size: V, max_position_embeddings: 64, rms_norm_eps: 1e-5, rope_theta: 10000, tie_word_embeddings: true,
  hidden_act: 'silu', bos_token_id: 0, eos_token_id: 1, initializer_range: 0.02,
}));
const common = ['model.T=32', 'opt.batch_size=32', 'data.num_tokens_valid=16384', 'run.threads=1', 'log.progress=false', `log.dir=${dir}`];

let pretrained: Promise<{ a: string; b: string; pre: string }> | null = null;
function pretrain(): Promise<{ a: string; b: string; pre: string }> {
  pretrained ??= (async () => {
    const a = chainFile('a', 2, 0, 21);
    const b = chainFile('b', 2 + S, 1, 31);
    await train(loadConfig([], [...common, `data.path=${a}`, `model.config=${configFile}`, 'opt.lr=1e-2', 'opt.warmup_tokens=10000', 'stop.num_tokens_train=600000', 'log.every_tokens=300000', 'run.id=pre']));
    return { a, b, pre: path.join(dir, 'pre') };
  })();
  return pretrained;
}

async function finetune(id: string, extra: string[]): Promise<Record<string, unknown>> {
  const { b, pre } = await pretrain();
  const r = await train(loadConfig([], [...common, `data.path=${b}`, `model.load_path=${pre}`, 'opt.lr=3e-3', 'stop.num_tokens_train=300000', 'log.every_tokens=100000', `run.id=${id}`, ...extra]));
  return r.summary;
}

test('a fresh Llama-architecture run folder is a transformers folder, and it loads back to the same logits', async () => {
  const { pre } = await pretrain();
  const cfg = JSON.parse(fs.readFileSync(path.join(pre, 'config.json'), 'utf8')) as Record<string, unknown>;
  assert.equal(cfg.model_type, 'llama');
  assert.deepEqual(cfg.architectures, ['LlamaForCausalLM']);
  for (const [k, v] of Object.entries({ hidden_size: 48, num_hidden_layers: 1, num_attention_heads: 4, num_key_value_heads: 2, head_dim: 12, intermediate_size: 128, vocab_size: V, tie_word_embeddings: true, hidden_act: 'silu' })) {
    assert.equal(cfg[k], v, `config.json ${k}`);
  }
  // transformers' names and [out, in] shapes, from the test's own list (no lm_head: tied)
  const expected = tinyTensorList({ family: 'llama', ...spec, V, tied: true, dtype: 'f32', seed: 0 });
  const file = readSafetensors(path.join(pre, 'model.safetensors'));
  assert.deepEqual([...file.tensors.keys()].sort(), expected.map((t) => t.name).sort());
  for (const t of expected) assert.deepEqual(file.tensors.get(t.name)!.shape, t.shape, t.name);
  assert.ok(fs.existsSync(path.join(pre, 'config.yaml')) && fs.existsSync(path.join(pre, 'summary.json')), 'the run files sit beside it');
  // load, save elsewhere, load again: identical logits
  const ids = Int32Array.from({ length: 64 }, (_, i) => (i * 7) % V);
  const first = loadModelFolder(pre);
  assert.equal(first.model.cfg.T, 32, "the run's own T");
  const again = path.join(dir, 'resaved');
  saveHFModel(again, first.model, { bosId: 0, eosIds: [1] });
  assert.deepEqual(loadModelFolder(again, { T: 32 }).model.logits(ids, 2, 32), first.model.logits(ids, 2, 32));
});

test('kl_pre with self-generated replay removes ≥ 80% of a Llama-architecture model\'s forgetting', async () => {
  const standard = await finetune('standard', []);
  const replay = await finetune('kl_synth', ['reg.method=kl_pre', 'reg.synth=true', 'reg.coeff=1', 'reg.batch_size=32']);
  const f0 = standard.forgetting as number, f1 = replay.forgetting as number;
  const v0 = standard.valid_ntp as number, v1 = replay.valid_ntp as number;
  console.log(`# llama standard: forgetting ${f0.toFixed(4)}, valid_ntp ${v0.toFixed(4)}; kl_pre synth: forgetting ${f1.toFixed(4)}, valid_ntp ${v1.toFixed(4)}`);
  assert.ok(f0 > 0.5, `standard finetuning forgets (forgetting ${f0})`);
  assert.ok(f1 <= 0.2 * f0, `kl_pre + self-generated replay forgets ${f1} vs ${f0}: less than 80% removed`);
  assert.ok(Math.abs(v1 - v0) <= 0.05, `valid_ntp on B: ${v1} vs ${v0} (must be within 0.05 nats)`);
  assert.ok((replay.replay_sequences as number) > 0, 'replay was sampled');
});

test('LoRA on a Llama-architecture model saves PEFT adapters that load as base + adapter and merge with export --merge', async () => {
  const { pre } = await pretrain();
  const s = await finetune('lora', ['model.lora_rank=4', 'model.lora_alpha=8', 'reg.method=kl_pre', 'reg.synth=true', 'reg.batch_size=16', 'stop.num_tokens_train=60000', 'log.every_tokens=60000']);
  const run = s.run_dir as string;
  assert.ok(!fs.existsSync(path.join(run, 'model.safetensors')), 'a LoRA run keeps the adapters, not a second model');
  const ac = JSON.parse(fs.readFileSync(path.join(run, 'adapter_config.json'), 'utf8')) as Record<string, unknown>;
  assert.equal(ac.peft_type, 'LORA');
  assert.equal(ac.r, 4);
  assert.equal(ac.lora_alpha, 8);
  assert.equal(ac.base_model_name_or_path, path.resolve(pre));
  assert.deepEqual([...(ac.target_modules as string[])].sort(), ['down_proj', 'gate_proj', 'k_proj', 'o_proj', 'q_proj', 'up_proj', 'v_proj']);
  const st = readSafetensors(path.join(run, 'adapter_model.safetensors'));
  assert.deepEqual(st.tensors.get('base_model.model.model.layers.0.self_attn.k_proj.lora_A.weight')!.shape, [4, spec.D]);
  assert.deepEqual(st.tensors.get('base_model.model.model.layers.0.self_attn.k_proj.lora_B.weight')!.shape, [spec.Nkv * spec.H, 4]);
  assert.deepEqual(st.tensors.get('base_model.model.model.layers.0.mlp.down_proj.lora_A.weight')!.shape, [4, spec.F]);
  assert.equal(st.tensors.size, 2 * 7 * spec.L);
  const adapted = loadModelFolder(run).model;
  const base = loadModelFolder(pre).model;
  const ids = Int32Array.from({ length: 32 }, (_, i) => (i * 5) % V);
  const la = adapted.logits(ids, 1, 32), lb = base.logits(ids, 1, 32);
  assert.ok(la.some((x, i) => Math.abs(x - lb[i]!) > 1e-4), 'the adapter changed the model');
  const out = path.join(dir, 'merged');
  const r = cli(dir, ['export', '--model', run, '--merge', '--out', out]);
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(loadModelFolder(out, { T: 32 }).model.logits(ids, 1, 32), la, 'the merged folder gives the adapted logits');
  const again = cli(dir, ['export', '--model', run, '--merge', '--out', out]);
  assert.equal(again.status, 1);
  assert.match(again.stderr, /exists and is not an empty folder/);
});
