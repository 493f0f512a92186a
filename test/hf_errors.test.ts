/**
 * Bad inputs around Hugging Face models, through the real CLI: every one gives exit status 1, exactly one line
 * `error: …` naming the culprit (file, tensor, both shapes, key, line), nothing on stdout, and leaves the folder as it
 * was: no run folder or token file created, no existing file rewritten.
 *
 * Each case copies a fixture folder that holds a tiny Llama folder with a tokenizer and a chat template (`hf`), a
 * Qwen3-like folder with no BOS anywhere (`qwen`), a Llama folder whose tokenizer has no chat template (`notpl`), one
 * with no tokenizer at all (`notok`), a token file `d.bin`, valid chat data and a text file.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { cli, type Result } from './helpers/cli.js';
import { writeTinyHFFolder, type TinySpec } from './helpers/hf_folder.js';
import { readSafetensors, writeSafetensors, type StInput } from './helpers/safetensors.js';
import { TINY_VOCAB, writeTinyTokenizer } from './helpers/tiny_tokenizer.js';

const V = TINY_VOCAB;
const LLAMA: TinySpec = { family: 'llama', D: 16, L: 1, N: 2, Nkv: 1, H: 8, F: 32, V, tied: true, dtype: 'bf16', seed: 3, maxPositions: 64 };
const TRAIN = ['train', 'data.path=d.bin', 'model.T=16', 'opt.batch_size=2', 'stop.num_tokens_train=64', 'log.progress=false', 'run.threads=1'];

let template = '';
const tmpDirs: string[] = [];
after(() => {
  for (const d of tmpDirs) fs.rmSync(d, { recursive: true, force: true });
});

function writeJson(file: string, obj: unknown): void {
  fs.writeFileSync(file, JSON.stringify(obj, null, 2));
}

function editJson(file: string, edit: (obj: Record<string, unknown>) => void): void {
  const obj = JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, unknown>;
  edit(obj);
  writeJson(file, obj);
}

before(() => {
  template = fs.mkdtempSync(path.join(os.tmpdir(), 'unforget-hferr-tpl-'));
  tmpDirs.push(template);
  const hf = path.join(template, 'hf');
  writeTinyHFFolder(hf, LLAMA);
  writeTinyTokenizer(hf);
  // Qwen-like: no BOS in config.json, generation_config.json or the tokenizer.
  const qwen = path.join(template, 'qwen');
  writeTinyHFFolder(qwen, { ...LLAMA, family: 'qwen3', seed: 4 });
  writeTinyTokenizer(qwen, { bos: false });
  editJson(path.join(qwen, 'config.json'), (c) => (c.bos_token_id = null));
  editJson(path.join(qwen, 'generation_config.json'), (c) => (c.bos_token_id = null));
  const notpl = path.join(template, 'notpl');
  writeTinyHFFolder(notpl, LLAMA);
  writeTinyTokenizer(notpl, { chatTemplate: null });
  writeTinyHFFolder(path.join(template, 'notok'), LLAMA);
  const tokens = Uint16Array.from({ length: 4096 }, (_, i) => 5 + ((i * 37) % 256));
  fs.writeFileSync(path.join(template, 'd.bin'), Buffer.from(tokens.buffer));
  writeJson(path.join(template, 'd.json'), { vocab_size: V, dataset_token_id: null, tokenizer: null });
  const conv = (i: number) => ({ messages: [{ role: 'user', content: `q${i}` }, { role: 'assistant', content: `a${i}` }] });
  fs.writeFileSync(path.join(template, 'chat.jsonl'), [0, 1, 2, 3].map((i) => JSON.stringify(conv(i))).join('\n') + '\n');
  fs.writeFileSync(path.join(template, 'old.txt'), 'some old text that the model once knew. '.repeat(20));
});

function freshDir(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'unforget-hferr-'));
  tmpDirs.push(dir);
  fs.cpSync(template, dir, { recursive: true });
  return dir;
}

type Snapshot = Map<string, { bytes: Buffer; mtimeMs: number }>;

function snapshot(root: string): Snapshot {
  const out: Snapshot = new Map();
  const walk = (rel: string) => {
    for (const e of fs.readdirSync(path.join(root, rel), { withFileTypes: true })) {
      const r = path.join(rel, e.name);
      if (e.isDirectory()) {
        out.set(r + '/', { bytes: Buffer.alloc(0), mtimeMs: 0 });
        walk(r);
      } else {
        const full = path.join(root, r);
        out.set(r, { bytes: fs.readFileSync(full), mtimeMs: fs.statSync(full).mtimeMs });
      }
    }
  };
  walk('');
  return out;
}

function assertUnchanged(root: string, before: Snapshot): void {
  const now = snapshot(root);
  for (const [rel, s] of before) {
    const a = now.get(rel);
    assert.ok(a, `${rel} was deleted`);
    assert.ok(a.bytes.equals(s.bytes), `${rel} changed content`);
    assert.equal(a.mtimeMs, s.mtimeMs, `${rel} was rewritten`);
  }
  const added = [...now.keys()].filter((k) => !before.has(k));
  assert.deepEqual(added, [], `a failed command created ${added.join(', ')}`);
}

function assertOneLineError(r: Result, culprits: Array<string | RegExp>): string {
  assert.equal(r.status, 1, `expected exit status 1, got ${r.status}; stderr:\n${r.stderr}`);
  assert.equal(r.stdout, '', 'a failed command prints nothing on stdout');
  const lines = r.stderr.replace(/\n$/, '').split('\n');
  assert.equal(lines.length, 1, `stderr should be one line:\n${r.stderr}`);
  const line = lines[0]!;
  assert.ok(line.startsWith('error: '), line);
  for (const c of culprits) {
    if (typeof c === 'string') assert.ok(line.includes(c), `the error should name '${c}': ${line}`);
    else assert.match(line, c);
  }
  return line;
}

/** Runs each command in a fresh copy of the fixture after `setup`, and checks the error and the untouched folder. */
function expectError(commands: string[][], culprits: Array<string | RegExp>, setup?: (dir: string) => void): void {
  for (const args of commands) {
    const dir = freshDir();
    setup?.(dir);
    const before = snapshot(dir);
    const r = cli(dir, args);
    assertOneLineError(r, culprits);
    assertUnchanged(dir, before);
  }
}

/** The same three commands on a model folder `m`: evaluation, finetuning, sampling. */
const onModel = (m: string): string[][] => [
  ['eval', '--model', m, '--data', 'd.bin', '--seq-len', '16'],
  [...TRAIN, `model.load_path=${m}`],
  ['sample', '--model', m, '--max-tokens', '4'],
];

/** Rewrites `dir/model.safetensors` with `edit` applied to its tensors (bf16 values are exact in float32). */
function editWeights(dir: string, edit: (t: StInput) => void): void {
  const file = path.join(dir, 'model.safetensors');
  const t: StInput = {};
  for (const [name, x] of readSafetensors(file).tensors) t[name] = { shape: x.shape, data: Float32Array.from(x.data), dtype: x.dtype };
  edit(t);
  writeSafetensors(file, t, { format: 'pt' });
}

test('the fixture itself works: eval, sample and a finetuning step succeed on the tiny folders', () => {
  const dir = freshDir();
  for (const m of ['hf', 'qwen']) {
    const e = cli(dir, ['eval', '--model', m, '--data', 'd.bin', '--seq-len', '16']);
    assert.equal(e.status, 0, e.stderr);
    const s = cli(dir, ['sample', '--model', m, '--max-tokens', '4', '--token-id', '5']);
    assert.equal(s.status, 0, s.stderr);
  }
  const t = cli(dir, [...TRAIN, 'model.load_path=hf', 'run.id=ok']);
  assert.equal(t.status, 0, t.stderr);
});

test('an unsupported model_type names it and the supported ones', () => {
  expectError(onModel('bad'), ['bad/config.json', "'mistral'", 'llama, qwen2, qwen3'], (dir) => {
    fs.cpSync(path.join(dir, 'hf'), path.join(dir, 'bad'), { recursive: true });
    editJson(path.join(dir, 'bad', 'config.json'), (c) => (c.model_type = 'mistral'));
  });
});

test('a shard named by the index but missing names the shard', () => {
  expectError(onModel('sharded'), ['model-00002-of-00002.safetensors', 'not found'], (dir) => {
    writeTinyHFFolder(path.join(dir, 'sharded'), { ...LLAMA, shards: 2 });
    writeTinyTokenizer(path.join(dir, 'sharded'));
    fs.rmSync(path.join(dir, 'sharded', 'model-00002-of-00002.safetensors'));
  });
});

test('a missing tensor names the file and the tensor', () => {
  expectError(onModel('hf'), ['hf/model.safetensors', "'model.layers.0.mlp.up_proj.weight'", 'missing'], (dir) => {
    editWeights(path.join(dir, 'hf'), (t) => delete t['model.layers.0.mlp.up_proj.weight']);
  });
});

test('a shape mismatch names the tensor and both shapes', () => {
  expectError(onModel('hf'), ["'model.layers.0.self_attn.k_proj.weight'", '[8,15]', '[8,16]'], (dir) => {
    editWeights(path.join(dir, 'hf'), (t) => {
      t['model.layers.0.self_attn.k_proj.weight'] = { shape: [8, 15], data: new Float32Array(8 * 15), dtype: 'BF16' };
    });
  });
});

test('a truncated safetensors file names the file', () => {
  expectError(onModel('hf'), ['hf/model.safetensors', /truncated/], (dir) => {
    const file = path.join(dir, 'hf', 'model.safetensors');
    fs.truncateSync(file, fs.statSync(file).size - 10);
  });
});

test('a NaN in a weight names the tensor and where', () => {
  expectError(onModel('hf'), ["'model.layers.0.mlp.down_proj.weight'", 'NaN', '[3,5]'], (dir) => {
    editWeights(path.join(dir, 'hf'), (t) => {
      const w = t['model.layers.0.mlp.down_proj.weight']!;
      const data = Float32Array.from(w.data);
      data[3 * 32 + 5] = NaN;
      t['model.layers.0.mlp.down_proj.weight'] = { ...w, data };
    });
  });
});

test('model.T beyond max_position_embeddings names the key and the limit', () => {
  expectError([[...TRAIN.filter((a) => !a.startsWith('model.T=')), 'model.load_path=hf', 'model.T=65']], ["'model.T'", '65', 'max_position_embeddings 64']);
  expectError([['eval', '--model', 'hf', '--data', 'd.bin', '--seq-len', '65']], ['--seq-len', '65', 'max_position_embeddings 64']);
});

test('ids ≥ 65536 bound for a uint16 token file (tokenize) name the output and the id', () => {
  expectError([['tokenize', '--tokenizer', 'big/tokenizer.json', '--out', 'x.bin', '--no-progress', 'old.txt']], ['x.bin', '70000', 'uint16'], (dir) => {
    // A post-processor that adds an id outside the vocabulary: the vocabulary says uint16, the ids do not fit.
    writeTinyTokenizer(path.join(dir, 'big'));
    editJson(path.join(dir, 'big', 'tokenizer.json'), (j) => {
      j.post_processor = {
        type: 'TemplateProcessing',
        single: [{ SpecialToken: { id: '<big>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
        pair: [{ Sequence: { id: 'A', type_id: 0 } }, { Sequence: { id: 'B', type_id: 1 } }],
        special_tokens: { '<big>': { id: '<big>', ids: [70000], tokens: ['<big>'] } },
      };
    });
  });
});

test('a chat line without an assistant turn names the file and line', () => {
  expectError([[...TRAIN, 'model.load_path=hf', 'data.path=bad.jsonl', 'data.format=chat']], ['bad.jsonl:2', 'assistant'], (dir) => {
    const lines = fs.readFileSync(path.join(dir, 'chat.jsonl'), 'utf8').split('\n');
    lines[1] = JSON.stringify({ messages: [{ role: 'user', content: 'hello' }] });
    fs.writeFileSync(path.join(dir, 'bad.jsonl'), lines.join('\n'));
  });
});

test('data.format=chat with a tokenizer that has no chat template names its tokenizer_config.json', () => {
  expectError([[...TRAIN, 'model.load_path=notpl', 'data.path=chat.jsonl', 'data.format=chat']], ['notpl/tokenizer_config.json', 'chat_template']);
  expectError([[...TRAIN, 'model.load_path=hf', 'data.path=chat.jsonl', 'data.format=chat', 'data.tokenizer=notpl']], ['notpl/tokenizer_config.json', 'chat_template']);
});

test('reg.prompt=bos for a model without a BOS names the key', () => {
  expectError([[...TRAIN, 'model.load_path=qwen', 'reg.method=kl_pre', 'reg.synth=true', 'reg.prompt=bos']], ["'reg.prompt'", 'qwen', 'BOS']);
});

test('a missing prev.path names the file', () => {
  expectError([[...TRAIN, 'model.load_path=hf', 'prev.path=gone.bin']], ['prev.path', 'gone.bin']);
  expectError([[...TRAIN, 'model.load_path=hf', 'prev.path=gone.txt']], ['prev.path', 'gone.txt']);
});

test('an unknown model.lora_targets name names the key and the module', () => {
  expectError([[...TRAIN, 'model.load_path=hf', 'model.lora_rank=2', 'model.lora_targets=[q_proj,qkv_proj]']], ["'model.lora_targets'", "'qkv_proj'", 'q_proj, k_proj']);
});

test('text where token ids are expected, without a tokenizer to encode it, names the key', () => {
  expectError([[...TRAIN, 'model.load_path=notok', 'reg.method=kl_pre', 'reg.synth=true', 'reg.prompt=Once upon']], ["'reg.prompt'", 'notok', 'tokenizer.json']);
  expectError([[...TRAIN, 'model.load_path=notok', 'prev.path=old.txt']], ["'prev.path'", 'old.txt', 'notok', 'tokenizer.json']);
  expectError([['sample', '--model', 'notok', '--prompt', 'hi']], ['--prompt', 'tokenizer']);
});

test('a text reg.prompt that leaves nothing to sample within T names the key and the length', () => {
  expectError([[...TRAIN, 'model.load_path=hf', 'reg.method=kl_pre', 'reg.synth=true', 'reg.prompt=fifteen letters']], ["'reg.prompt'", '16 tokens', 'T=16']);
});

test('a prev.path JSONL line without "text" names the file and line', () => {
  expectError([[...TRAIN, 'model.load_path=hf', 'prev.path=old.jsonl']], ['old.jsonl:2', "'text'"], (dir) => {
    fs.writeFileSync(path.join(dir, 'old.jsonl'), JSON.stringify({ text: 'fine' }) + '\n' + JSON.stringify({ body: 'no text key' }) + '\n');
  });
});

test('sample --chat without a chat template, or without --prompt, is refused', () => {
  expectError([['sample', '--model', 'notpl', '--prompt', 'hi', '--chat']], ['--chat', 'notpl/tokenizer_config.json', 'chat_template']);
  expectError([['sample', '--model', 'hf', '--chat']], ['--chat', '--prompt']);
});
