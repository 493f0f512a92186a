import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ConfigError, DataError } from '../src/errors.js';
import { hfTensorPlaces, type ArchConfig, type Family } from '../src/model/arch.js';
import { hfConfigJson, isHFFolder, readHFConfig } from '../src/model/hf_config.js';
import {
  initHFTensors, loraModuleShapes, peftTensorName, readHFWeights, readPeftAdapter, writeHFFolder, writePeftAdapter,
  type F32Tensor,
} from '../src/model/hf_folder.js';
import { decodeSafetensors } from './helpers/safetensors.js';

function tmpDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'unforget-hf-'));
}

function writeJson(file: string, obj: unknown): void {
  fs.writeFileSync(file, typeof obj === 'string' ? obj : JSON.stringify(obj));
}

/** Small architectures of each family, each with something that distinguishes it. */
function tinyArch(family: Exclude<Family, 'gpt'>): ArchConfig {
  const base: ArchConfig = {
    family, D: 8, L: 2, N: 4, Nkv: 2, H: 2, F: 12, V: 10, T: 16, mlp: 'swiglu', normGain: true, normEps: 1e-5,
    qkNorm: 'none', qkvBias: false, ropeTheta: 10000, ropeScaling: null, tiedEmbeddings: false, maxPositions: 64,
  };
  if (family === 'llama') {
    return { ...base, H: 4, ropeTheta: 500000, ropeScaling: { type: 'llama3', factor: 32, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositions: 8192 } };
  }
  if (family === 'qwen2') return { ...base, qkvBias: true, tiedEmbeddings: true, normEps: 1e-6, ropeTheta: 1e6 };
  // Qwen3's head size differs from D / N, as in Qwen3-0.6B.
  return { ...base, H: 6, qkNorm: 'rms_gain', tiedEmbeddings: true, normEps: 1e-6 };
}

// ---------------------------------------------------------------------------------------------------------------
// An independent safetensors writer for any dtype, built from the format's description.

interface RawEntry { name: string; dtype: string; shape: number[]; bytes: Uint8Array }

function stBytes(entries: RawEntry[], metadata?: Record<string, string>): Buffer {
  const header: Record<string, unknown> = {};
  if (metadata) header.__metadata__ = metadata;
  let at = 0;
  for (const e of entries) {
    header[e.name] = { dtype: e.dtype, shape: e.shape, data_offsets: [at, at + e.bytes.length] };
    at += e.bytes.length;
  }
  let json = JSON.stringify(header);
  while (json.length % 8 !== 0) json += ' ';
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  return Buffer.concat([len, Buffer.from(json), ...entries.map((e) => Buffer.from(e.bytes))]);
}

function f32Bytes(values: ArrayLike<number>): Uint8Array {
  const dv = new DataView(new ArrayBuffer(values.length * 4));
  for (let i = 0; i < values.length; i++) dv.setFloat32(4 * i, values[i]!, true);
  return new Uint8Array(dv.buffer);
}

function u16Bytes(bits: number[]): Uint8Array {
  const dv = new DataView(new ArrayBuffer(bits.length * 2));
  bits.forEach((b, i) => dv.setUint16(2 * i, b, true));
  return new Uint8Array(dv.buffer);
}

/** Distinct values per tensor, so a tensor read in the wrong place shows. */
function patterned(arch: ArchConfig): Map<string, F32Tensor> {
  const out = new Map<string, F32Tensor>();
  hfTensorPlaces(arch).forEach((p, k) => {
    const n = p.shape.reduce((a, b) => a * b, 1);
    const data = new Float32Array(n);
    for (let i = 0; i < n; i++) data[i] = (k + 1) * 1000 + i + 0.25 - Math.PI * (i % 3);
    out.set(p.name, { shape: p.shape, data });
  });
  return out;
}

function f32Entries(tensors: Map<string, F32Tensor>): RawEntry[] {
  return [...tensors].map(([name, t]) => ({ name, dtype: 'F32', shape: t.shape, bytes: f32Bytes(t.data) }));
}

function assertSameBits(a: Float32Array, b: Float32Array, what: string): void {
  assert.equal(a.length, b.length, what);
  assert.deepEqual(new Uint32Array(a.buffer, a.byteOffset, a.length), new Uint32Array(b.buffer, b.byteOffset, b.length), what);
}

function throwsData(fn: () => unknown, ...parts: Array<string | RegExp>): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof DataError, `expected a DataError, got ${String(err)}`);
    assert.ok(!err.message.includes('\n'), `one line: ${err.message}`);
    for (const p of parts) {
      if (typeof p === 'string') assert.ok(err.message.includes(p), `'${err.message}' should mention '${p}'`);
      else assert.match(err.message, p);
    }
    return true;
  });
}

// ---------------------------------------------------------------------------------------------------------------
// config.json

// The keys each transformers config class takes (LlamaConfig, Qwen2Config, Qwen3Config of transformers 4.4x/5.x;
// rope_theta and rope_scaling being transformers 4's spelling that 5 still reads).
const COMMON_KEYS = [
  'vocab_size', 'hidden_size', 'intermediate_size', 'num_hidden_layers', 'num_attention_heads', 'num_key_value_heads',
  'hidden_act', 'max_position_embeddings', 'initializer_range', 'rms_norm_eps', 'use_cache', 'tie_word_embeddings',
  'rope_theta', 'rope_scaling', 'attention_dropout', 'pad_token_id', 'bos_token_id', 'eos_token_id',
];
const CONSTRUCTOR_KEYS: Record<'llama' | 'qwen2' | 'qwen3', string[]> = {
  llama: [...COMMON_KEYS, 'pretraining_tp', 'attention_bias', 'mlp_bias', 'head_dim'],
  qwen2: [...COMMON_KEYS, 'use_sliding_window', 'sliding_window', 'max_window_layers'],
  qwen3: [...COMMON_KEYS, 'head_dim', 'use_sliding_window', 'sliding_window', 'max_window_layers', 'attention_bias'],
};

test('hfConfigJson → readHFConfig gives back the architecture, with every key transformers reads', () => {
  for (const family of ['llama', 'qwen2', 'qwen3'] as const) {
    const arch = tinyArch(family);
    const dir = tmpDir();
    const json = hfConfigJson(arch, { bosId: 1, eosIds: [2, 3], initializerRange: 0.03, padId: 0 });
    for (const key of [...CONSTRUCTOR_KEYS[family], 'architectures', 'model_type', 'torch_dtype']) {
      assert.ok(Object.hasOwn(json, key), `${family}: config.json lacks '${key}'`);
    }
    assert.equal(json.torch_dtype, 'float32');
    assert.deepEqual(json.architectures, [{ llama: 'LlamaForCausalLM', qwen2: 'Qwen2ForCausalLM', qwen3: 'Qwen3ForCausalLM' }[family]]);
    writeJson(path.join(dir, 'config.json'), json);
    const info = readHFConfig(dir, { T: arch.T });
    assert.deepEqual(info.arch, arch, family);
    assert.equal(info.bosId, 1);
    assert.deepEqual(info.eosIds, [2, 3]);
    assert.equal(info.padId, 0);
    assert.equal(info.initializerRange, 0.03);
    assert.equal(info.torchDtype, 'float32');
    assert.equal(info.generation, null);
    assert.ok(isHFFolder(dir));
  }
});

// Shaped after the published config.json files (values as in shared/HF.md).
const LLAMA_32_1B = {
  architectures: ['LlamaForCausalLM'], attention_bias: false, attention_dropout: 0.0, bos_token_id: 128000,
  eos_token_id: [128001, 128008, 128009], head_dim: 64, hidden_act: 'silu', hidden_size: 2048, initializer_range: 0.02,
  intermediate_size: 8192, max_position_embeddings: 131072, mlp_bias: false, model_type: 'llama', num_attention_heads: 32,
  num_hidden_layers: 16, num_key_value_heads: 8, pretraining_tp: 1, rms_norm_eps: 1e-5,
  rope_scaling: { factor: 32.0, high_freq_factor: 4.0, low_freq_factor: 1.0, original_max_position_embeddings: 8192, rope_type: 'llama3' },
  rope_theta: 500000.0, tie_word_embeddings: true, torch_dtype: 'bfloat16', transformers_version: '4.45.0.dev0', use_cache: true,
  vocab_size: 128256,
};
const QWEN3_06B = {
  architectures: ['Qwen3ForCausalLM'], attention_bias: false, attention_dropout: 0.0, bos_token_id: 151643, eos_token_id: 151645,
  head_dim: 128, hidden_act: 'silu', hidden_size: 1024, initializer_range: 0.02, intermediate_size: 3072,
  max_position_embeddings: 40960, max_window_layers: 28, model_type: 'qwen3', num_attention_heads: 16, num_hidden_layers: 28,
  num_key_value_heads: 8, rms_norm_eps: 1e-6, rope_scaling: null, rope_theta: 1000000, sliding_window: null,
  tie_word_embeddings: true, torch_dtype: 'bfloat16', use_cache: true, use_sliding_window: false, vocab_size: 151936,
};
const QWEN25_05B = {
  architectures: ['Qwen2ForCausalLM'], attention_dropout: 0.0, bos_token_id: 151643, eos_token_id: 151643, hidden_act: 'silu',
  hidden_size: 896, initializer_range: 0.02, intermediate_size: 4864, max_position_embeddings: 32768, max_window_layers: 24,
  model_type: 'qwen2', num_attention_heads: 14, num_hidden_layers: 24, num_key_value_heads: 2, rms_norm_eps: 1e-6,
  rope_theta: 1000000.0, sliding_window: 32768, tie_word_embeddings: true, torch_dtype: 'bfloat16', use_cache: true,
  use_sliding_window: false, vocab_size: 151936,
};
const SMOLLM2_135M = {
  architectures: ['LlamaForCausalLM'], bos_token_id: 0, eos_token_id: 0, hidden_act: 'silu', hidden_size: 576,
  initializer_range: 0.041666666666666664, intermediate_size: 1536, max_position_embeddings: 8192, model_type: 'llama',
  num_attention_heads: 9, num_hidden_layers: 30, num_key_value_heads: 3, rms_norm_eps: 1e-5, rope_scaling: null,
  rope_theta: 100000, tie_word_embeddings: true, torch_dtype: 'bfloat16', use_cache: true, vocab_size: 49152,
};

test('published configs: the architectures shared/HF.md lists, and hfConfigJson agrees on every shared key', () => {
  const cases: Array<[Record<string, unknown>, Partial<ArchConfig>]> = [
    [LLAMA_32_1B, { family: 'llama', D: 2048, L: 16, N: 32, Nkv: 8, H: 64, F: 8192, V: 128256, T: 1024, normEps: 1e-5, ropeTheta: 500000, tiedEmbeddings: true, maxPositions: 131072, qkvBias: false, qkNorm: 'none', ropeScaling: { type: 'llama3', factor: 32, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositions: 8192 } }],
    [QWEN3_06B, { family: 'qwen3', D: 1024, L: 28, N: 16, Nkv: 8, H: 128, F: 3072, V: 151936, normEps: 1e-6, ropeTheta: 1e6, tiedEmbeddings: true, qkNorm: 'rms_gain', qkvBias: false, ropeScaling: null }],
    [QWEN25_05B, { family: 'qwen2', D: 896, L: 24, N: 14, Nkv: 2, H: 64, F: 4864, V: 151936, normEps: 1e-6, ropeTheta: 1e6, tiedEmbeddings: true, qkvBias: true, qkNorm: 'none' }],
    [SMOLLM2_135M, { family: 'llama', D: 576, L: 30, N: 9, Nkv: 3, H: 64, F: 1536, V: 49152, normEps: 1e-5, ropeTheta: 100000, tiedEmbeddings: true, maxPositions: 8192 }],
  ];
  for (const [config, want] of cases) {
    const dir = tmpDir();
    writeJson(path.join(dir, 'config.json'), config);
    const info = readHFConfig(dir);
    for (const [k, v] of Object.entries(want)) assert.deepEqual(info.arch[k as keyof ArchConfig], v, `${config.model_type} ${k}`);
    assert.equal(info.arch.mlp, 'swiglu');
    assert.equal(info.arch.normGain, true);
    assert.equal(info.torchDtype, 'bfloat16');
    const eos = config.eos_token_id;
    const back = hfConfigJson(info.arch, { bosId: info.bosId, eosIds: info.eosIds, initializerRange: info.initializerRange, torchDtype: 'bfloat16' });
    for (const key of ['model_type', 'architectures', 'hidden_size', 'intermediate_size', 'num_hidden_layers', 'num_attention_heads',
      'num_key_value_heads', 'hidden_act', 'max_position_embeddings', 'rms_norm_eps', 'rope_theta', 'tie_word_embeddings',
      'vocab_size', 'bos_token_id', 'initializer_range', 'torch_dtype', 'head_dim', 'attention_bias', 'mlp_bias', 'use_sliding_window']) {
      if (key in config) assert.deepEqual(back[key], config[key], `${config.model_type}: ${key}`);
    }
    assert.deepEqual(back.eos_token_id, eos);
    assert.deepEqual(back.rope_scaling, config.rope_scaling ?? null);
  }
  // T: min(1024, max_position_embeddings) unless given.
  const dir = tmpDir();
  writeJson(path.join(dir, 'config.json'), { ...QWEN3_06B, max_position_embeddings: 512 });
  assert.equal(readHFConfig(dir).arch.T, 512);
  assert.equal(readHFConfig(dir, { T: 100 }).arch.T, 100);
  assert.throws(() => readHFConfig(dir, { T: 513 }), (e: unknown) => e instanceof ConfigError && /model\.T.*513.*512/.test(e.message));
});

test('defaults: the family defaults of transformers, generation_config.json overriding bos/eos, transformers 5 rope_parameters', () => {
  const minimal = { hidden_size: 64, num_hidden_layers: 1, num_attention_heads: 4, intermediate_size: 96, vocab_size: 50, max_position_embeddings: 128, rms_norm_eps: 1e-6 };
  const dir = tmpDir();
  writeJson(path.join(dir, 'config.json'), { ...minimal, model_type: 'llama' });
  let a = readHFConfig(dir).arch;
  assert.deepEqual([a.Nkv, a.H, a.ropeTheta, a.tiedEmbeddings, a.ropeScaling], [4, 16, 10000, false, null]);
  // Qwen2Config and Qwen3Config default num_key_value_heads to 32 and Qwen3Config head_dim to 128.
  writeJson(path.join(dir, 'config.json'), { ...minimal, hidden_size: 128, num_attention_heads: 64, model_type: 'qwen2' });
  a = readHFConfig(dir).arch;
  assert.deepEqual([a.Nkv, a.H, a.tiedEmbeddings, a.qkvBias], [32, 2, false, true]);
  writeJson(path.join(dir, 'config.json'), { ...minimal, hidden_size: 128, num_attention_heads: 64, model_type: 'qwen3' });
  a = readHFConfig(dir).arch;
  assert.deepEqual([a.Nkv, a.H, a.qkNorm], [32, 128, 'rms_gain']);

  writeJson(path.join(dir, 'config.json'), { ...minimal, model_type: 'llama', bos_token_id: 1, eos_token_id: 2, pad_token_id: null });
  writeJson(path.join(dir, 'generation_config.json'), { bos_token_id: 7, eos_token_id: [8, 9], temperature: 0.6 });
  const info = readHFConfig(dir);
  assert.equal(info.bosId, 7);
  assert.deepEqual(info.eosIds, [8, 9]);
  assert.equal(info.padId, null);
  assert.equal(info.generation?.temperature, 0.6);
  writeJson(path.join(dir, 'generation_config.json'), { do_sample: true });
  assert.deepEqual([readHFConfig(dir).bosId, readHFConfig(dir).eosIds], [1, [2]]);
  fs.rmSync(path.join(dir, 'generation_config.json'));

  writeJson(path.join(dir, 'config.json'), {
    ...minimal, model_type: 'llama',
    rope_parameters: { rope_type: 'llama3', rope_theta: 500000, factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 8192 },
  });
  a = readHFConfig(dir).arch;
  assert.equal(a.ropeTheta, 500000);
  assert.deepEqual(a.ropeScaling, { type: 'llama3', factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositions: 8192 });
  writeJson(path.join(dir, 'config.json'), { ...minimal, model_type: 'llama', rope_scaling: { type: 'default' }, rope_theta: 1234 });
  a = readHFConfig(dir).arch;
  assert.deepEqual([a.ropeTheta, a.ropeScaling], [1234, null]);
});

test('config errors: one line each, naming config.json and the key', () => {
  const dir = tmpDir();
  const file = path.join(dir, 'config.json');
  throwsData(() => readHFConfig(dir), file, 'not found');
  assert.equal(isHFFolder(dir), false);
  writeJson(file, '{"model_type": "llama",');
  throwsData(() => readHFConfig(dir), file, 'not valid JSON');
  assert.equal(isHFFolder(dir), false);
  writeJson(file, '[1]');
  throwsData(() => readHFConfig(dir), file, 'JSON object');
  writeJson(file, { hidden_size: 8 });
  assert.equal(isHFFolder(dir), false);

  const good = { ...LLAMA_32_1B };
  const bad = (patch: Record<string, unknown>, ...parts: string[]) => {
    writeJson(file, { ...good, ...patch });
    throwsData(() => readHFConfig(dir), file, ...parts);
  };
  bad({ model_type: 'gpt2' }, "'model_type'", 'gpt2', 'llama, qwen2, qwen3');
  bad({ model_type: undefined }, "'model_type'", 'llama, qwen2, qwen3');
  bad({ hidden_size: undefined }, "'hidden_size'", 'missing');
  bad({ num_hidden_layers: '16' }, "'num_hidden_layers'", 'integer', '"16"');
  bad({ vocab_size: 0 }, "'vocab_size'", 'at least 1');
  bad({ rms_norm_eps: -1 }, "'rms_norm_eps'", 'positive');
  bad({ num_key_value_heads: 5 }, "'num_key_value_heads'", '5', '32');
  bad({ head_dim: 63 }, "'head_dim'", 'odd', '63');
  bad({ head_dim: undefined, hidden_size: 32 * 63 }, "'hidden_size'", 'odd', '63');
  bad({ hidden_act: 'gelu' }, "'hidden_act'", 'gelu', 'silu');
  bad({ attention_bias: true }, "'attention_bias'", 'not supported');
  bad({ mlp_bias: true }, "'mlp_bias'", 'not supported');
  bad({ tie_word_embeddings: 'yes' }, "'tie_word_embeddings'", 'true or false');
  bad({ eos_token_id: [1, 'x'] }, "'eos_token_id'", 'token id');
  bad({ rope_scaling: { rope_type: 'yarn', factor: 4 } }, "'rope_scaling.rope_type'", 'yarn', 'default, llama3');
  bad({ rope_scaling: { type: 'linear', factor: 4 } }, "'rope_scaling.type'", 'linear');
  bad({ rope_scaling: { rope_type: 'llama3', factor: 32, low_freq_factor: 1, high_freq_factor: 4 } }, "'rope_scaling.original_max_position_embeddings'", 'missing');
  bad({ rope_scaling: { rope_type: 'llama3', factor: 32, low_freq_factor: 4, high_freq_factor: 1, original_max_position_embeddings: 8192 } }, "'rope_scaling.high_freq_factor'");
  bad({ rope_scaling: 'llama3' }, "'rope_scaling'", 'object');
  bad({ rope_theta: 0 }, "'rope_theta'", 'positive');
  writeJson(file, { ...QWEN3_06B, use_sliding_window: true });
  throwsData(() => readHFConfig(dir), file, "'use_sliding_window'");
  writeJson(file, { ...QWEN3_06B, attention_bias: true });
  throwsData(() => readHFConfig(dir), file, "'attention_bias'");
  writeJson(file, { ...QWEN25_05B, num_hidden_layers: 2, layer_types: ['full_attention', 'sliding_attention'] });
  throwsData(() => readHFConfig(dir), file, "'layer_types'", 'layer 1');
  writeJson(file, LLAMA_32_1B);
  writeJson(path.join(dir, 'generation_config.json'), 'nope');
  throwsData(() => readHFConfig(dir), path.join(dir, 'generation_config.json'), 'not valid JSON');
});

// ---------------------------------------------------------------------------------------------------------------
// Weights

test('readHFWeights: a single file read bit for bit, in transformers order, extras ignored', () => {
  for (const family of ['llama', 'qwen2', 'qwen3'] as const) {
    const arch = tinyArch(family);
    const tensors = patterned(arch);
    const entries = f32Entries(tensors).reverse();
    // A redundant lm_head beside tied embeddings and a rotary buffer: both to be skipped.
    if (arch.tiedEmbeddings) entries.splice(1, 0, { name: 'lm_head.weight', dtype: 'F32', shape: [arch.V + 1, arch.D], bytes: f32Bytes(new Float32Array((arch.V + 1) * arch.D).fill(NaN)) });
    entries.push({ name: 'model.layers.0.self_attn.rotary_emb.inv_freq', dtype: 'I64', shape: [2], bytes: new Uint8Array(16) });
    const dir = tmpDir();
    fs.writeFileSync(path.join(dir, 'model.safetensors'), stBytes(entries, { format: 'pt' }));
    for (const keepHalf of [false, true]) {
      const got = readHFWeights(dir, arch, { keepHalf });
      assert.deepEqual([...got.keys()], hfTensorPlaces(arch).map((p) => p.name));
      for (const [name, t] of tensors) {
        const g = got.get(name)!;
        assert.equal(g.dtype, 'F32');
        assert.deepEqual(g.shape, t.shape);
        assert.ok(g.data instanceof Float32Array);
        assertSameBits(g.data as Float32Array, t.data, name);
      }
    }
  }
});

// bf16 bits → value, by hand: sign·2^(e−127)·(1 + m/128).
const BF16_CASES: Array<[number, number]> = [
  [0x3f80, 1], [0xc040, -3], [0x3eab, 0.333984375], [0x4049, 3.140625], [0x0000, 0], [0x8000, -0],
  [0x0001, 2 ** -133], [0x7f7f, (1 + 127 / 128) * 2 ** 127], [0x3c00, 2 ** -7],
];
// f16 bits → value: sign·2^(e−15)·(1 + m/1024), subnormals m·2^−24.
const F16_CASES: Array<[number, number]> = [
  [0x3c00, 1], [0xc000, -2], [0x3555, 0.333251953125], [0x4248, 3.140625], [0x0001, 2 ** -24], [0x03ff, 1023 * 2 ** -24],
  [0x0400, 2 ** -14], [0x7bff, 65504], [0x8000, -0], [0xb800, -0.5],
];

test('readHFWeights: BF16 and F16 widened exactly, or kept as bits', () => {
  const arch = { ...tinyArch('llama'), D: BF16_CASES.length, N: 1, Nkv: 1, H: 4, F: 2, V: 3, L: 1 };
  const tensors = patterned(arch);
  const entries = f32Entries(tensors).map((e) => {
    if (e.name === 'model.norm.weight') return { ...e, dtype: 'BF16', bytes: u16Bytes(BF16_CASES.map(([b]) => b)) };
    if (e.name === 'model.layers.0.input_layernorm.weight') {
      const bits = F16_CASES.slice(0, arch.D).map(([b]) => b);
      return { ...e, dtype: 'F16', bytes: u16Bytes(bits) };
    }
    return e;
  });
  const dir = tmpDir();
  fs.writeFileSync(path.join(dir, 'model.safetensors'), stBytes(entries));
  const wide = readHFWeights(dir, arch, { keepHalf: false });
  const bf = wide.get('model.norm.weight')!;
  assert.equal(bf.dtype, 'BF16');
  assert.ok(bf.data instanceof Float32Array);
  BF16_CASES.forEach(([bits, v], i) => assert.ok(Object.is(bf.data[i], v), `bf16 ${bits.toString(16)}: ${bf.data[i]} vs ${v}`));
  const h = wide.get('model.layers.0.input_layernorm.weight')!;
  assert.equal(h.dtype, 'F16');
  F16_CASES.slice(0, arch.D).forEach(([bits, v], i) => assert.ok(Object.is(h.data[i], v), `f16 ${bits.toString(16)}: ${h.data[i]} vs ${v}`));

  const kept = readHFWeights(dir, arch, { keepHalf: true });
  const kb = kept.get('model.norm.weight')!;
  assert.ok(kb.data instanceof Uint16Array);
  assert.deepEqual([...kb.data], BF16_CASES.map(([b]) => b));
  const kh = kept.get('model.layers.0.input_layernorm.weight')!;
  assert.ok(kh.data instanceof Uint16Array);
  assert.deepEqual([...kh.data], F16_CASES.slice(0, arch.D).map(([b]) => b));
  assert.ok(kept.get('model.embed_tokens.weight')!.data instanceof Float32Array);
});

/** Writes `tensors` as shards (round-robin over `n` files) with an index. */
function writeShards(dir: string, tensors: Map<string, F32Tensor>, n: number, extraMap: Record<string, string> = {}): Record<string, string> {
  const shards: RawEntry[][] = Array.from({ length: n }, () => []);
  const weightMap: Record<string, string> = {};
  f32Entries(tensors).forEach((e, i) => {
    shards[i % n]!.push(e);
    weightMap[e.name] = `model-${String(i % n + 1).padStart(5, '0')}-of-${String(n).padStart(5, '0')}.safetensors`;
  });
  shards.forEach((s, i) => fs.writeFileSync(path.join(dir, `model-${String(i + 1).padStart(5, '0')}-of-${String(n).padStart(5, '0')}.safetensors`), stBytes(s)));
  writeJson(path.join(dir, 'model.safetensors.index.json'), { metadata: { total_size: 0 }, weight_map: { ...weightMap, ...extraMap } });
  return weightMap;
}

test('readHFWeights: sharded folders (2 and 3 shards) and their errors', () => {
  const arch = tinyArch('qwen3');
  const tensors = patterned(arch);
  for (const n of [2, 3]) {
    const dir = tmpDir();
    writeShards(dir, tensors, n);
    const got = readHFWeights(dir, arch, { keepHalf: false });
    for (const [name, t] of tensors) assertSameBits(got.get(name)!.data as Float32Array, t.data, `${n} shards: ${name}`);
  }
  const dir = tmpDir();
  const index = path.join(dir, 'model.safetensors.index.json');
  const map = writeShards(dir, tensors, 3);
  const shard2 = path.join(dir, 'model-00002-of-00003.safetensors');
  const saved = fs.readFileSync(shard2);
  fs.rmSync(shard2);
  throwsData(() => readHFWeights(dir, arch, { keepHalf: false }), shard2, 'shard named by model.safetensors.index.json', 'not found');
  fs.writeFileSync(shard2, saved);

  const victim = 'model.layers.1.self_attn.k_norm.weight';
  const partial = { ...map };
  delete partial[victim];
  writeJson(index, { weight_map: partial });
  throwsData(() => readHFWeights(dir, arch, { keepHalf: false }), index, victim, 'weight_map', `[${arch.H}]`);
  // The index places a tensor in a shard that does not hold it.
  const wrongShard = map[victim] === 'model-00001-of-00003.safetensors' ? 'model-00002-of-00003.safetensors' : 'model-00001-of-00003.safetensors';
  writeJson(index, { weight_map: { ...map, [victim]: wrongShard } });
  throwsData(() => readHFWeights(dir, arch, { keepHalf: false }), path.join(dir, wrongShard), victim, 'missing');
  writeJson(index, '{"weight_map": {');
  throwsData(() => readHFWeights(dir, arch, { keepHalf: false }), index, 'not valid JSON');
  writeJson(index, { weight_map: [] });
  throwsData(() => readHFWeights(dir, arch, { keepHalf: false }), index, 'weight_map');
  writeJson(index, { weight_map: { ...map, [victim]: '../model-00001-of-00003.safetensors' } });
  throwsData(() => readHFWeights(dir, arch, { keepHalf: false }), index, victim, 'same folder');
});

test('readHFWeights errors: missing file, missing tensor, shape, truncation, dtype, non-finite values', () => {
  const arch = tinyArch('llama');
  const tensors = patterned(arch);
  const dir = tmpDir();
  const file = path.join(dir, 'model.safetensors');
  throwsData(() => readHFWeights(dir, arch, { keepHalf: false }), file, 'not found', 'model.safetensors.index.json');

  const write = (entries: RawEntry[]) => fs.writeFileSync(file, stBytes(entries));
  const victim = 'model.layers.1.mlp.up_proj.weight';
  write(f32Entries(tensors).filter((e) => e.name !== victim));
  throwsData(() => readHFWeights(dir, arch, { keepHalf: false }), file, victim, 'missing', `[${arch.F},${arch.D}]`);
  write(f32Entries(tensors).filter((e) => e.name !== 'lm_head.weight'));
  throwsData(() => readHFWeights(dir, arch, { keepHalf: false }), file, 'lm_head.weight', 'missing');

  write(f32Entries(tensors).map((e) => (e.name === victim ? { ...e, shape: [arch.D, arch.F] } : e)));
  throwsData(() => readHFWeights(dir, arch, { keepHalf: false }), file, victim, `[${arch.D},${arch.F}]`, `expected [${arch.F},${arch.D}]`);

  const whole = stBytes(f32Entries(tensors));
  fs.writeFileSync(file, whole.subarray(0, whole.length - 5));
  throwsData(() => readHFWeights(dir, arch, { keepHalf: false }), file, 'truncated');
  fs.writeFileSync(file, whole.subarray(0, 20));
  throwsData(() => readHFWeights(dir, arch, { keepHalf: false }), file, 'truncated');

  write(f32Entries(tensors).map((e) => (e.name === victim ? { ...e, dtype: 'F64', bytes: new Uint8Array(e.bytes.length * 2) } : e)));
  throwsData(() => readHFWeights(dir, arch, { keepHalf: false }), file, victim, 'F64', 'unsupported');

  // Non-finite values, named by tensor and index, in F32, BF16 and F16.
  const poisoned = (dtype: string, at: number, bits: number | null, value: number): RawEntry[] =>
    f32Entries(tensors).map((e) => {
      if (e.name !== victim) return e;
      const vals = Array.from(tensors.get(victim)!.data);
      if (dtype === 'F32') {
        vals[at] = value;
        return { ...e, bytes: f32Bytes(vals) };
      }
      const u = vals.map(() => 0x3f80);
      u[at] = bits!;
      return { ...e, dtype, bytes: u16Bytes(u) };
    });
  const at = 2 * arch.D + 5;
  for (const [dtype, bits, value, shown] of [
    ['F32', null, NaN, 'NaN'], ['F32', null, -Infinity, '-Infinity'], ['BF16', 0x7fc0, NaN, 'NaN'], ['BF16', 0xff80, -Infinity, '-Infinity'],
    ['F16', 0x7c00, Infinity, 'Infinity'], ['F16', 0x7e00, NaN, 'NaN'],
  ] as const) {
    write(poisoned(dtype, at, bits, value));
    for (const keepHalf of [false, true]) {
      throwsData(() => readHFWeights(dir, arch, { keepHalf }), file, victim, shown, '[2,5]', `flat ${at}`);
    }
  }
});

// ---------------------------------------------------------------------------------------------------------------
// Writing folders and initialisation

test('writeHFFolder: transformers-loadable float32 folder, read back bit for bit; other files kept', () => {
  for (const family of ['llama', 'qwen2', 'qwen3'] as const) {
    const arch = tinyArch(family);
    const tensors = patterned(arch);
    const dir = tmpDir();
    fs.writeFileSync(path.join(dir, 'config.yaml'), 'run: {}\n');
    fs.writeFileSync(path.join(dir, 'metrics.jsonl'), '{"step":0}\n');
    writeHFFolder(dir, arch, tensors, { extras: { bosId: 5, eosIds: [6] } });
    assert.equal(fs.readFileSync(path.join(dir, 'config.yaml'), 'utf8'), 'run: {}\n');
    assert.equal(fs.readFileSync(path.join(dir, 'metrics.jsonl'), 'utf8'), '{"step":0}\n');
    assert.deepEqual(fs.readdirSync(dir).sort(), ['config.json', 'config.yaml', 'generation_config.json', 'metrics.jsonl', 'model.safetensors']);
    assert.ok(isHFFolder(dir));
    const info = readHFConfig(dir, { T: arch.T });
    assert.deepEqual(info.arch, arch);
    assert.deepEqual([info.bosId, info.eosIds], [5, [6]]);
    assert.deepEqual(JSON.parse(fs.readFileSync(path.join(dir, 'generation_config.json'), 'utf8')), { bos_token_id: 5, eos_token_id: 6 });
    // An independent reader: float32, transformers' names, format "pt".
    const st = decodeSafetensors(fs.readFileSync(path.join(dir, 'model.safetensors')));
    assert.deepEqual(st.metadata, { format: 'pt' });
    assert.deepEqual([...st.tensors.keys()].sort(), hfTensorPlaces(arch).map((p) => p.name).sort());
    const back = readHFWeights(dir, arch, { keepHalf: true });
    for (const [name, t] of tensors) {
      assertSameBits(st.tensors.get(name)!.data, t.data, name);
      assertSameBits(back.get(name)!.data as Float32Array, t.data, name);
    }
  }
});

test('writeHFFolder: tokenizer files and generation config copied; bad tensors write nothing', () => {
  const arch = tinyArch('llama');
  const tensors = patterned(arch);
  const src = tmpDir();
  fs.writeFileSync(path.join(src, 'tokenizer.json'), '{"model": {}}');
  fs.writeFileSync(path.join(src, 'tokenizer_config.json'), '{"bos_token": "<s>"}');
  fs.writeFileSync(path.join(src, 'generation_config.json'), '{"bos_token_id": 1, "eos_token_id": [2, 3], "temperature": 0.6}');
  const dir = tmpDir();
  writeHFFolder(dir, arch, tensors, { tokenizerFrom: src, extras: { bosId: 1, eosIds: [2] } });
  assert.equal(fs.readFileSync(path.join(dir, 'tokenizer.json'), 'utf8'), '{"model": {}}');
  assert.equal(fs.readFileSync(path.join(dir, 'tokenizer_config.json'), 'utf8'), '{"bos_token": "<s>"}');
  assert.ok(!fs.existsSync(path.join(dir, 'special_tokens_map.json')));
  assert.deepEqual(readHFConfig(dir).generation, { bos_token_id: 1, eos_token_id: [2, 3], temperature: 0.6 });
  assert.deepEqual(readHFConfig(dir).eosIds, [2, 3]);
  // An explicit generation config wins.
  writeHFFolder(dir, arch, tensors, { tokenizerFrom: src, generation: { eos_token_id: 9 } });
  assert.deepEqual(readHFConfig(dir).generation, { eos_token_id: 9 });
  // Writing a folder's tokenizer back onto itself.
  writeHFFolder(dir, arch, tensors, { tokenizerFrom: dir });
  assert.equal(fs.readFileSync(path.join(dir, 'tokenizer.json'), 'utf8'), '{"model": {}}');

  const empty = tmpDir();
  throwsData(() => writeHFFolder(empty, arch, tensors, { tokenizerFrom: path.join(empty, 'nowhere') }), 'tokenizer.json', 'not found');
  const fewer = new Map(tensors);
  fewer.delete('model.norm.weight');
  throwsData(() => writeHFFolder(empty, arch, fewer), 'model.norm.weight', 'missing');
  const wrong = new Map(tensors);
  wrong.set('model.norm.weight', { shape: [arch.D + 1], data: new Float32Array(arch.D + 1) });
  throwsData(() => writeHFFolder(empty, arch, wrong), 'model.norm.weight', `[${arch.D + 1}]`, `[${arch.D}]`);
  const extra = new Map(tensors);
  extra.set('model.layers.9.mlp.up_proj.weight', { shape: [1], data: new Float32Array(1) });
  throwsData(() => writeHFFolder(empty, arch, extra), 'model.layers.9.mlp.up_proj.weight', 'does not belong');
  assert.deepEqual(fs.readdirSync(empty), []);
});

test('initHFTensors: N(0, range²) weights, unit norms, zero biases, zeroed padding row, seeded', () => {
  const range = 0.05;
  for (const family of ['llama', 'qwen2', 'qwen3'] as const) {
    const arch = { ...tinyArch(family), V: 4000, D: 32 };
    const init = initHFTensors(arch, 7, range, { padId: 3 });
    assert.deepEqual([...init.keys()], hfTensorPlaces(arch).map((p) => p.name));
    for (const [name, t] of init) {
      assert.deepEqual(t.shape, hfTensorPlaces(arch).find((p) => p.name === name)!.shape);
      if (name.endsWith('norm.weight')) assert.ok(t.data.every((v) => v === 1), name);
      else if (name.endsWith('.bias')) assert.ok(t.data.every((v) => Object.is(v, 0)), name);
    }
    if (family === 'qwen2') assert.ok(init.has('model.layers.0.self_attn.q_proj.bias'));
    if (family === 'qwen3') assert.ok(init.has('model.layers.1.self_attn.k_norm.weight'));
    const embed = init.get('model.embed_tokens.weight')!.data;
    assert.ok(embed.subarray(3 * arch.D, 4 * arch.D).every((v) => Object.is(v, 0)), 'padding row zeroed');
    const rest = Float64Array.from([...embed.subarray(0, 3 * arch.D), ...embed.subarray(4 * arch.D)]);
    const n = rest.length;
    const mean = rest.reduce((a, b) => a + b, 0) / n;
    const std = Math.sqrt(rest.reduce((a, b) => a + (b - mean) ** 2, 0) / (n - 1));
    // The mean's standard error is range/√n; the std's relative error about 1/√(2n) (0.6% here).
    assert.ok(Math.abs(mean) < 5 * range / Math.sqrt(n), `mean ${mean}`);
    assert.ok(Math.abs(std / range - 1) < 0.03, `std ${std}`);
    // Kurtosis near 3 tells a normal from a uniform of the same std (1.8).
    const kurt = rest.reduce((a, b) => a + ((b - mean) / std) ** 4, 0) / n;
    assert.ok(Math.abs(kurt - 3) < 0.15, `kurtosis ${kurt}`);
    const q = init.get('model.layers.1.self_attn.q_proj.weight')!.data;
    const qStd = Math.sqrt(q.reduce((a, b) => a + b * b, 0) / q.length);
    assert.ok(Math.abs(qStd / range - 1) < 0.5, `q_proj std ${qStd}`);
    assert.equal(init.has('lm_head.weight'), !arch.tiedEmbeddings);
  }
  const arch = tinyArch('llama');
  const a = initHFTensors(arch, 1);
  const b = initHFTensors(arch, 1);
  const c = initHFTensors(arch, 2);
  for (const [name, t] of a) assertSameBits(t.data, b.get(name)!.data, name);
  assert.notDeepEqual(a.get('model.embed_tokens.weight')!.data, c.get('model.embed_tokens.weight')!.data);
  assert.notDeepEqual(a.get('model.embed_tokens.weight')!.data, a.get('lm_head.weight')!.data);
  assert.ok(!a.get('model.embed_tokens.weight')!.data.subarray(0, arch.D).every((v) => v === 0), 'no padding row without padId');
});

// ---------------------------------------------------------------------------------------------------------------
// PEFT adapters

function loraTensors(arch: ArchConfig, r: number, modules: string[]): Map<string, F32Tensor> {
  const out = new Map<string, F32Tensor>();
  const shapes = new Map(loraModuleShapes(arch).map((m) => [m.module as string, m]));
  let k = 0;
  for (let l = 0; l < arch.L; l++) {
    for (const m of modules) {
      const { in: fanIn, out: fanOut } = shapes.get(m)!;
      for (const [which, shape] of [['A', [r, fanIn]], ['B', [fanOut, r]]] as const) {
        const data = new Float32Array(shape[0] * shape[1]);
        for (let i = 0; i < data.length; i++) data[i] = Math.sin(++k) / 3;
        out.set(peftTensorName(l, m, which), { shape: [...shape], data });
      }
    }
  }
  return out;
}

test('PEFT names, module shapes, adapter round trip and adapter_config.json keys', () => {
  assert.equal(peftTensorName(3, 'q_proj', 'A'), 'base_model.model.model.layers.3.self_attn.q_proj.lora_A.weight');
  assert.equal(peftTensorName(0, 'down_proj', 'B'), 'base_model.model.model.layers.0.mlp.down_proj.lora_B.weight');
  assert.throws(() => peftTensorName(0, 'lm_head', 'A'), RangeError);
  const arch = tinyArch('qwen3');
  const { D, N, Nkv, H, F } = arch;
  assert.deepEqual(loraModuleShapes(arch).map((m) => [m.module, m.in, m.out]), [
    ['q_proj', D, N * H], ['k_proj', D, Nkv * H], ['v_proj', D, Nkv * H], ['o_proj', N * H, D],
    ['gate_proj', D, F], ['up_proj', D, F], ['down_proj', F, D],
  ]);
  // The module sizes agree with the base weights' [out, in].
  const places = new Map(hfTensorPlaces(arch).map((p) => [p.name, p.shape]));
  for (const m of loraModuleShapes(arch)) {
    const parent = m.module.endsWith('_proj') && ['gate_proj', 'up_proj', 'down_proj'].includes(m.module) ? 'mlp' : 'self_attn';
    assert.deepEqual(places.get(`model.layers.0.${parent}.${m.module}.weight`), [m.out, m.in]);
  }

  const modules = ['q_proj', 'v_proj', 'down_proj'];
  const tensors = loraTensors(arch, 4, modules);
  const dir = tmpDir();
  writePeftAdapter(dir, { r: 4, alpha: 16, targetModules: modules, baseModel: 'Qwen/Qwen3-0.6B' }, tensors);
  const raw = JSON.parse(fs.readFileSync(path.join(dir, 'adapter_config.json'), 'utf8')) as Record<string, unknown>;
  // The keys PEFT's LoraConfig (and its PeftConfig base) take.
  for (const key of ['peft_type', 'task_type', 'base_model_name_or_path', 'revision', 'inference_mode', 'r', 'lora_alpha', 'lora_dropout',
    'target_modules', 'bias', 'fan_in_fan_out', 'use_rslora', 'use_dora', 'init_lora_weights', 'modules_to_save', 'layers_to_transform',
    'layers_pattern', 'rank_pattern', 'alpha_pattern']) {
    assert.ok(Object.hasOwn(raw, key), `adapter_config.json lacks '${key}'`);
  }
  assert.deepEqual(
    [raw.peft_type, raw.task_type, raw.r, raw.lora_alpha, raw.target_modules, raw.lora_dropout, raw.bias, raw.fan_in_fan_out, raw.use_rslora, raw.base_model_name_or_path, raw.modules_to_save],
    ['LORA', 'CAUSAL_LM', 4, 16, modules, 0, 'none', false, false, 'Qwen/Qwen3-0.6B', null],
  );
  const st = decodeSafetensors(fs.readFileSync(path.join(dir, 'adapter_model.safetensors')));
  assert.deepEqual(st.metadata, { format: 'pt' });
  for (const arg of [undefined, arch]) {
    const back = readPeftAdapter(dir, arg);
    assert.deepEqual([back.config.r, back.config.alpha, back.config.targetModules, back.config.baseModel, back.config.scale, back.layers], [4, 16, modules, 'Qwen/Qwen3-0.6B', 4, arch.L]);
    assert.equal(back.tensors.size, tensors.size);
    for (const [name, t] of tensors) {
      assert.deepEqual(back.tensors.get(name)!.shape, t.shape);
      assertSameBits(back.tensors.get(name)!.data, t.data, name);
      assertSameBits(st.tensors.get(name)!.data, t.data, name);
    }
  }
  // "all-linear" and rsLoRA as PEFT may write them.
  fs.writeFileSync(path.join(dir, 'adapter_config.json'), JSON.stringify({ ...raw, target_modules: 'all-linear', use_rslora: true }));
  writePeftAdapter(tmpDir(), { r: 4, alpha: 16, targetModules: [...modules], baseModel: null }, tensors);
  const all = tmpDir();
  writePeftAdapter(all, { r: 2, alpha: 4, targetModules: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'], baseModel: null },
    loraTensors(arch, 2, ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj']));
  const allRaw = JSON.parse(fs.readFileSync(path.join(all, 'adapter_config.json'), 'utf8')) as Record<string, unknown>;
  fs.writeFileSync(path.join(all, 'adapter_config.json'), JSON.stringify({ ...allRaw, target_modules: 'all-linear', use_rslora: true }));
  const got = readPeftAdapter(all, arch);
  assert.equal(got.config.targetModules.length, 7);
  assert.equal(got.config.scale, 4 / Math.sqrt(2));
});

test('PEFT adapter errors: one line, naming the file, key or tensor', () => {
  const arch = tinyArch('llama');
  const modules = ['q_proj', 'up_proj'];
  const tensors = loraTensors(arch, 2, modules);
  const cfg = { r: 2, alpha: 4, targetModules: modules, baseModel: null };
  const dir = tmpDir();
  const weights = path.join(dir, 'adapter_model.safetensors');
  const cfgFile = path.join(dir, 'adapter_config.json');
  throwsData(() => readPeftAdapter(dir), cfgFile, 'not found');

  const qA = peftTensorName(1, 'q_proj', 'A');
  const without = new Map(tensors);
  without.delete(qA);
  throwsData(() => writePeftAdapter(dir, cfg, without), weights, qA, 'missing');
  const badShape = new Map(tensors);
  badShape.set(qA, { shape: [3, arch.D], data: new Float32Array(3 * arch.D) });
  throwsData(() => writePeftAdapter(dir, cfg, badShape), weights, qA, '[3,8]', 'r = 2');
  const untargeted = new Map(tensors);
  untargeted.set(peftTensorName(0, 'k_proj', 'A'), { shape: [2, arch.D], data: new Float32Array(2 * arch.D) });
  throwsData(() => writePeftAdapter(dir, cfg, untargeted), weights, 'k_proj', 'target_modules');
  const misnamed = new Map(tensors);
  misnamed.set('base_model.model.lm_head.lora_A.weight', { shape: [2, arch.D], data: new Float32Array(2 * arch.D) });
  throwsData(() => writePeftAdapter(dir, cfg, misnamed), weights, 'base_model.model.lm_head.lora_A.weight', 'not a PEFT LoRA weight');
  throwsData(() => writePeftAdapter(dir, { ...cfg, targetModules: ['q_proj', 'lm_head'] }, tensors), cfgFile, 'target_modules', 'lm_head');
  throwsData(() => writePeftAdapter(dir, { ...cfg, r: 0 }, tensors), cfgFile, "'r'");
  assert.deepEqual(fs.readdirSync(dir), []);

  writePeftAdapter(dir, cfg, tensors);
  const raw = JSON.parse(fs.readFileSync(cfgFile, 'utf8')) as Record<string, unknown>;
  const badCfg = (patch: Record<string, unknown>, ...parts: string[]) => {
    fs.writeFileSync(cfgFile, JSON.stringify({ ...raw, ...patch }));
    throwsData(() => readPeftAdapter(dir, arch), cfgFile, ...parts);
  };
  badCfg({ peft_type: 'IA3' }, "'peft_type'", 'IA3');
  badCfg({ use_dora: true }, "'use_dora'", 'DoRA');
  badCfg({ bias: 'all' }, "'bias'");
  badCfg({ rank_pattern: { q_proj: 8 } }, "'rank_pattern'");
  badCfg({ layers_to_transform: [0] }, "'layers_to_transform'");
  badCfg({ modules_to_save: ['lm_head'] }, "'modules_to_save'");
  fs.writeFileSync(cfgFile, JSON.stringify({ ...raw, r: 3 }));
  throwsData(() => readPeftAdapter(dir, arch), weights, 'r = 3');
  badCfg({ lora_alpha: 'big' }, "'lora_alpha'");
  fs.writeFileSync(cfgFile, JSON.stringify({ ...raw, target_modules: ['q_proj'] }));
  throwsData(() => readPeftAdapter(dir, arch), weights, 'up_proj', 'target_modules');
  fs.writeFileSync(cfgFile, '{');
  throwsData(() => readPeftAdapter(dir), cfgFile, 'not valid JSON');
  fs.writeFileSync(cfgFile, JSON.stringify(raw));
  // Against the model: another model's sizes or fewer layers.
  throwsData(() => readPeftAdapter(dir, { ...arch, F: arch.F + 2 }), weights, 'up_proj', `expected [${arch.F + 2},2]`);
  throwsData(() => readPeftAdapter(dir, { ...arch, L: 1 }), weights, 'layer 1', '1 layers');
  throwsData(() => readPeftAdapter(dir, { ...arch, L: 3 }), weights, peftTensorName(2, 'q_proj', 'A'), 'missing');
  const whole = fs.readFileSync(weights);
  fs.writeFileSync(weights, whole.subarray(0, whole.length - 4));
  throwsData(() => readPeftAdapter(dir, arch), weights, 'truncated');
  fs.rmSync(weights);
  throwsData(() => readPeftAdapter(dir, arch), weights, 'not found');
});
