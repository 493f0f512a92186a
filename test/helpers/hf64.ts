/**
 * An independent float64 forward of transformers' LlamaForCausalLM, Qwen2ForCausalLM and Qwen3ForCausalLM, written
 * from the modeling_llama / modeling_qwen2 / modeling_qwen3 formulas with plain loops over the tensors exactly as
 * stored ([out, in], row-major). It shares no code with src/: it is the second implementation the product's Hugging
 * Face models are checked against, so it reads transformers' config keys itself, with transformers' defaults.
 */
import type { HFConfigJson, Tensor64 } from './hf_folder.js';

export interface Hf64Model {
  config: HFConfigJson;
  tensors: Map<string, { shape: number[]; data: Float64Array } | Tensor64>;
}

/** The options transformers derives from config.json, with its defaults. */
export interface Hf64Dims {
  family: 'llama' | 'qwen2' | 'qwen3';
  D: number;
  L: number;
  N: number;
  Nkv: number;
  H: number;
  F: number;
  V: number;
  eps: number;
  tied: boolean;
}

export function hfDims64(c: HFConfigJson): Hf64Dims {
  const family = c.model_type;
  if (family !== 'llama' && family !== 'qwen2' && family !== 'qwen3') throw new Error(`hf64: model_type ${family} is not llama, qwen2 or qwen3`);
  if ((c.hidden_act ?? 'silu') !== 'silu') throw new Error(`hf64: hidden_act ${c.hidden_act} is not silu`);
  if (c.attention_bias || c.mlp_bias) throw new Error('hf64: attention_bias / mlp_bias are not modelled');
  if (c.use_sliding_window) throw new Error('hf64: use_sliding_window is not modelled');
  const N = c.num_attention_heads;
  const Nkv = c.num_key_value_heads ?? N;
  if (N % Nkv !== 0) throw new Error(`hf64: num_attention_heads ${N} is not a multiple of num_key_value_heads ${Nkv}`);
  const H = c.head_dim ?? Math.floor(c.hidden_size / N);
  return {
    family, D: c.hidden_size, L: c.num_hidden_layers, N, Nkv, H, F: c.intermediate_size, V: c.vocab_size,
    eps: c.rms_norm_eps ?? 1e-6, tied: c.tie_word_embeddings ?? false,
  };
}

/**
 * RoPE inverse frequencies for i < head_dim/2: rope_theta^(−2i/head_dim); with rope_scaling of type llama3, as in
 * transformers' _compute_llama3_parameters, wavelengths 2π/f longer than original_max/low_freq_factor are slowed by
 * `factor`, those shorter than original_max/high_freq_factor kept, and those between blended linearly in
 * original_max/wavelength.
 */
export function hfInvFreq64(c: HFConfigJson): Float64Array {
  const { H } = hfDims64(c);
  const theta = c.rope_theta ?? 10000;
  const out = new Float64Array(H / 2);
  for (let i = 0; i < H / 2; i++) out[i] = 1 / Math.pow(theta, (2 * i) / H);
  const s = c.rope_scaling;
  const kind = s ? (s.rope_type ?? s.type) : undefined;
  if (!s || kind === 'default') return out;
  if (kind !== 'llama3') throw new Error(`hf64: rope_scaling type ${kind} is not modelled`);
  const o = s.original_max_position_embeddings;
  for (let i = 0; i < out.length; i++) {
    const f = out[i]!;
    const wavelength = (2 * Math.PI) / f;
    if (wavelength > o / s.low_freq_factor) out[i] = f / s.factor;
    else if (wavelength < o / s.high_freq_factor) out[i] = f;
    else {
      const smooth = (o / wavelength - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
      out[i] = (1 - smooth) * (f / s.factor) + smooth * f;
    }
  }
  return out;
}

export function softmax64(row: ArrayLike<number>): Float64Array {
  let m = -Infinity;
  for (let i = 0; i < row.length; i++) m = Math.max(m, row[i]!);
  const out = new Float64Array(row.length);
  let z = 0;
  for (let i = 0; i < row.length; i++) z += out[i] = Math.exp(row[i]! - m);
  for (let i = 0; i < row.length; i++) out[i]! /= z;
  return out;
}

export function logSoftmax64(row: ArrayLike<number>): Float64Array {
  let m = -Infinity;
  for (let i = 0; i < row.length; i++) m = Math.max(m, row[i]!);
  let z = 0;
  for (let i = 0; i < row.length; i++) z += Math.exp(row[i]! - m);
  const lse = m + Math.log(z);
  return Float64Array.from(row, (v) => v - lse);
}

function rmsNorm(x: Float64Array, weight: Float64Array, eps: number): Float64Array {
  let ms = 0;
  for (let i = 0; i < x.length; i++) ms += x[i]! * x[i]!;
  const r = 1 / Math.sqrt(ms / x.length + eps);
  return Float64Array.from(x, (v, i) => weight[i]! * (v * r));
}

/** x·Wᵀ (+ b) for W stored [out, in]. */
function linear(x: Float64Array, w: Float64Array, out: number, bias?: Float64Array): Float64Array {
  const inDim = x.length;
  const y = new Float64Array(out);
  for (let o = 0; o < out; o++) {
    let s = bias ? bias[o]! : 0;
    for (let i = 0; i < inDim; i++) s += w[o * inDim + i]! * x[i]!;
    y[o] = s;
  }
  return y;
}

const silu = (x: number) => x / (1 + Math.exp(-x));

/** Rotate-half RoPE of one head (head_dim values starting at `at`) at position pos, in place. */
function rope(x: Float64Array, at: number, H: number, invFreq: Float64Array, pos: number): void {
  const half = H / 2;
  for (let i = 0; i < half; i++) {
    const c = Math.cos(pos * invFreq[i]!);
    const s = Math.sin(pos * invFreq[i]!);
    const x1 = x[at + i]!;
    const x2 = x[at + half + i]!;
    x[at + i] = x1 * c - x2 * s;
    x[at + half + i] = x2 * c + x1 * s;
  }
}

/** Logits [ids.length, V] row-major of one sequence at positions 0..T−1, in float64. */
export function hfLogits64(model: Hf64Model, ids: number[]): Float64Array {
  const d = hfDims64(model.config);
  const { D, L, N, Nkv, H, F, V, eps } = d;
  const T = ids.length;
  const get = (name: string, shape: number[]): Float64Array => {
    const t = model.tensors.get(name);
    if (!t) throw new Error(`hf64: tensor ${name} is missing`);
    if (t.shape.length !== shape.length || t.shape.some((v, i) => v !== shape[i])) {
      throw new Error(`hf64: tensor ${name} has shape [${t.shape}], expected [${shape}]`);
    }
    return t.data;
  };
  const invFreq = hfInvFreq64(model.config);
  const group = N / Nkv;
  const embed = get('model.embed_tokens.weight', [V, D]);
  let x: Float64Array[] = ids.map((id, t) => {
    if (!Number.isInteger(id) || id < 0 || id >= V) throw new Error(`hf64: token ${id} at position ${t} is outside [0, ${V})`);
    return embed.slice(id * D, (id + 1) * D);
  });
  for (let l = 0; l < L; l++) {
    const p = `model.layers.${l}.`;
    const wq = get(p + 'self_attn.q_proj.weight', [N * H, D]);
    const wk = get(p + 'self_attn.k_proj.weight', [Nkv * H, D]);
    const wv = get(p + 'self_attn.v_proj.weight', [Nkv * H, D]);
    const wo = get(p + 'self_attn.o_proj.weight', [D, N * H]);
    const hasBias = d.family === 'qwen2';
    const bq = hasBias ? get(p + 'self_attn.q_proj.bias', [N * H]) : undefined;
    const bk = hasBias ? get(p + 'self_attn.k_proj.bias', [Nkv * H]) : undefined;
    const bv = hasBias ? get(p + 'self_attn.v_proj.bias', [Nkv * H]) : undefined;
    const qNorm = d.family === 'qwen3' ? get(p + 'self_attn.q_norm.weight', [H]) : undefined;
    const kNorm = d.family === 'qwen3' ? get(p + 'self_attn.k_norm.weight', [H]) : undefined;
    const attnNorm = get(p + 'input_layernorm.weight', [D]);
    const mlpNorm = get(p + 'post_attention_layernorm.weight', [D]);
    const wGate = get(p + 'mlp.gate_proj.weight', [F, D]);
    const wUp = get(p + 'mlp.up_proj.weight', [F, D]);
    const wDown = get(p + 'mlp.down_proj.weight', [D, F]);

    const q: Float64Array[] = [];
    const k: Float64Array[] = [];
    const v: Float64Array[] = [];
    for (let t = 0; t < T; t++) {
      const h = rmsNorm(x[t]!, attnNorm, eps);
      const qt = linear(h, wq, N * H, bq);
      const kt = linear(h, wk, Nkv * H, bk);
      if (qNorm && kNorm) {
        for (let n = 0; n < N; n++) qt.set(rmsNorm(qt.subarray(n * H, (n + 1) * H), qNorm, eps), n * H);
        for (let j = 0; j < Nkv; j++) kt.set(rmsNorm(kt.subarray(j * H, (j + 1) * H), kNorm, eps), j * H);
      }
      for (let n = 0; n < N; n++) rope(qt, n * H, H, invFreq, t);
      for (let j = 0; j < Nkv; j++) rope(kt, j * H, H, invFreq, t);
      q.push(qt);
      k.push(kt);
      v.push(linear(h, wv, Nkv * H, bv));
    }
    const next: Float64Array[] = [];
    for (let t = 0; t < T; t++) {
      const heads = new Float64Array(N * H);
      for (let n = 0; n < N; n++) {
        const j = Math.floor(n / group);
        const scores = new Float64Array(t + 1);
        for (let u = 0; u <= t; u++) {
          let s = 0;
          for (let i = 0; i < H; i++) s += q[t]![n * H + i]! * k[u]![j * H + i]!;
          scores[u] = s / Math.sqrt(H);
        }
        const probs = softmax64(scores);
        for (let u = 0; u <= t; u++) {
          for (let i = 0; i < H; i++) heads[n * H + i]! += probs[u]! * v[u]![j * H + i]!;
        }
      }
      const attnOut = linear(heads, wo, D);
      const r = Float64Array.from(x[t]!, (val, i) => val + attnOut[i]!);
      const h = rmsNorm(r, mlpNorm, eps);
      const gate = linear(h, wGate, F);
      const up = linear(h, wUp, F);
      const act = Float64Array.from(gate, (g, i) => silu(g) * up[i]!);
      const mlpOut = linear(act, wDown, D);
      next.push(Float64Array.from(r, (val, i) => val + mlpOut[i]!));
    }
    x = next;
  }
  const finalNorm = get('model.norm.weight', [D]);
  const head = d.tied ? embed : get('lm_head.weight', [V, D]);
  const logits = new Float64Array(T * V);
  for (let t = 0; t < T; t++) logits.set(linear(rmsNorm(x[t]!, finalNorm, eps), head, V), t * V);
  return logits;
}
