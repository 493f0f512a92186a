/**
 * One transformer, many architectures: the options that cover both the study's `gpt` (docs/contract.md §1) and
 * the Hugging Face Llama / Qwen2 / Qwen3 family (shared/HF.md). The model code reads only these options, never the
 * family name, so a new family is a new way of filling them in.
 *
 * The Hugging Face family keeps transformers' tensors in memory as they are stored ([out, in], row-major), with two
 * stacks so that each is one product: q, k and v projections one above the other (`qkv`
 * [(N + 2·Nkv)·H, D], each token's row of the product is [q heads | k heads | v heads]), and gate above up
 * (`up` [2F, D], each row of the product is [gate | up]).
 */

export type Family = 'gpt' | 'llama' | 'qwen2' | 'qwen3';
export const HF_FAMILIES = ['llama', 'qwen2', 'qwen3'] as const;
export type HFFamily = (typeof HF_FAMILIES)[number];

/** transformers' `rope_scaling` of type llama3 (Llama 3.1 / 3.2). */
export interface Llama3Scaling {
  type: 'llama3';
  factor: number;
  lowFreqFactor: number;
  highFreqFactor: number;
  originalMaxPositions: number;
}

export interface ArchConfig {
  family: Family;
  /** Hidden size. */
  D: number;
  /** Layers. */
  L: number;
  /** Query heads. */
  N: number;
  /** Key/value heads (grouped-query attention: query head n uses kv head ⌊n / (N/Nkv)⌋). */
  Nkv: number;
  /** Head size (transformers' head_dim; may differ from D / N). */
  H: number;
  /** MLP hidden size (intermediate_size; 4·D for gpt). */
  F: number;
  V: number;
  /** Sequence length used for training and evaluation windows. */
  T: number;
  /** `gelu`: down(gelu_tanh(x·up)); `swiglu`: down(silu(gate(x)) · up(x)). */
  mlp: 'gelu' | 'swiglu';
  /** Whether RMSNorm has a learned weight (HF) or none (gpt). */
  normGain: boolean;
  normEps: number;
  /** RMSNorm of each q and k head before RoPE: none (Llama, Qwen2), without weight (gpt), with weight (Qwen3). */
  qkNorm: 'none' | 'rms' | 'rms_gain';
  /** Biases on the q, k and v projections (Qwen2). */
  qkvBias: boolean;
  ropeTheta: number;
  ropeScaling: Llama3Scaling | null;
  /** Output projection = the input embedding. */
  tiedEmbeddings: boolean;
  /** max_position_embeddings (null: unbounded, gpt). */
  maxPositions: number | null;
}

/** gpt's options from its D, L, H (head size), T, V. */
export function gptArch(c: { D: number; L: number; H: number; T: number; V: number }): ArchConfig {
  const N = c.D / c.H;
  return {
    family: 'gpt', D: c.D, L: c.L, N, Nkv: N, H: c.H, F: 4 * c.D, V: c.V, T: c.T,
    mlp: 'gelu', normGain: false, normEps: 1e-6, qkNorm: 'rms', qkvBias: false,
    ropeTheta: 10000, ropeScaling: null, tiedEmbeddings: false, maxPositions: null,
  };
}

/**
 * RoPE inverse frequencies for i < H/2: theta^(−2i/H), then, with llama3 scaling, divided by `factor` for long
 * wavelengths, kept for short ones and blended in between (transformers' _compute_llama3_parameters). Float64.
 */
export function ropeInvFreq(c: Pick<ArchConfig, 'H' | 'ropeTheta' | 'ropeScaling'>): Float64Array {
  const half = c.H / 2;
  const inv = new Float64Array(half);
  for (let i = 0; i < half; i++) inv[i] = Math.pow(c.ropeTheta, -(2 * i) / c.H);
  const s = c.ropeScaling;
  if (s) {
    const lowWavelen = s.originalMaxPositions / s.lowFreqFactor;
    const highWavelen = s.originalMaxPositions / s.highFreqFactor;
    for (let i = 0; i < half; i++) {
      const wavelen = (2 * Math.PI) / inv[i]!;
      if (wavelen > lowWavelen) inv[i] = inv[i]! / s.factor;
      else if (wavelen >= highWavelen) {
        const smooth = (s.originalMaxPositions / wavelen - s.lowFreqFactor) / (s.highFreqFactor - s.lowFreqFactor);
        inv[i] = (1 - smooth) * (inv[i]! / s.factor) + smooth * inv[i]!;
      }
    }
  }
  return inv;
}

/** Parameter counts as the study counts them: everything but the embeddings, and one embedding table. */
export function archParamCounts(c: ArchConfig): { n_param_nonembed: number; n_param_embed: number } {
  const { D, L, N, Nkv, H, F, V } = c;
  const attn = D * (N + 2 * Nkv) * H + N * H * D + (c.qkvBias ? (N + 2 * Nkv) * H : 0) + (c.qkNorm === 'rms_gain' ? 2 * H : 0);
  const mlp = c.mlp === 'swiglu' ? 3 * D * F : 2 * D * F;
  const norms = c.normGain ? 2 * D : 0;
  return { n_param_nonembed: L * (attn + mlp + norms) + (c.normGain ? D : 0), n_param_embed: D * V };
}

/**
 * Where each Hugging Face tensor lives in the model's memory: parameter `param` (per layer when `layer` ≥ 0, whose
 * slice is [L, ...]), starting `offset` elements into that layer's slice, `shape` as transformers stores it.
 */
export interface HFTensorPlace {
  name: string;
  shape: number[];
  param: string;
  layer: number;
  offset: number;
}

/** Memory parameters of a Hugging Face–family model: name → shape (per-layer ones stacked over L). */
export function hfParamShapes(c: ArchConfig): Array<[string, number[]]> {
  const { D, L, N, Nkv, H, F, V } = c;
  const QKV = (N + 2 * Nkv) * H;
  const out: Array<[string, number[]]> = [['embed', [V, D]]];
  out.push(['attn_norm', [L, D]], ['qkv', [L, QKV, D]]);
  if (c.qkvBias) out.push(['qkv_b', [L, QKV]]);
  if (c.qkNorm === 'rms_gain') out.push(['q_norm', [L, H]], ['k_norm', [L, H]]);
  out.push(['o', [L, D, N * H]], ['mlp_norm', [L, D]], ['up', [L, 2 * F, D]], ['down', [L, D, F]]);
  out.push(['norm', [D]]);
  if (!c.tiedEmbeddings) out.push(['head', [V, D]]);
  return out;
}

/** Every tensor of the transformers checkpoint of `c`, in transformers' order, and where it goes in memory. */
export function hfTensorPlaces(c: ArchConfig): HFTensorPlace[] {
  const { D, L, N, Nkv, H, F, V } = c;
  const places: HFTensorPlace[] = [{ name: 'model.embed_tokens.weight', shape: [V, D], param: 'embed', layer: -1, offset: 0 }];
  for (let l = 0; l < L; l++) {
    const p = `model.layers.${l}.`;
    const at = (name: string, shape: number[], param: string, offset = 0) => places.push({ name: p + name, shape, param, layer: l, offset });
    at('input_layernorm.weight', [D], 'attn_norm');
    at('self_attn.q_proj.weight', [N * H, D], 'qkv', 0);
    at('self_attn.k_proj.weight', [Nkv * H, D], 'qkv', N * H * D);
    at('self_attn.v_proj.weight', [Nkv * H, D], 'qkv', (N + Nkv) * H * D);
    if (c.qkvBias) {
      at('self_attn.q_proj.bias', [N * H], 'qkv_b', 0);
      at('self_attn.k_proj.bias', [Nkv * H], 'qkv_b', N * H);
      at('self_attn.v_proj.bias', [Nkv * H], 'qkv_b', (N + Nkv) * H);
    }
    if (c.qkNorm === 'rms_gain') {
      at('self_attn.q_norm.weight', [H], 'q_norm');
      at('self_attn.k_norm.weight', [H], 'k_norm');
    }
    at('self_attn.o_proj.weight', [D, N * H], 'o');
    at('post_attention_layernorm.weight', [D], 'mlp_norm');
    at('mlp.gate_proj.weight', [F, D], 'up', 0);
    at('mlp.up_proj.weight', [F, D], 'up', F * D);
    at('mlp.down_proj.weight', [D, F], 'down');
  }
  places.push({ name: 'model.norm.weight', shape: [D], param: 'norm', layer: -1, offset: 0 });
  if (!c.tiedEmbeddings) places.push({ name: 'lm_head.weight', shape: [V, D], param: 'head', layer: -1, offset: 0 });
  return places;
}

/** transformers' architecture class and model_type of each family. */
export const HF_CLASSES: Record<HFFamily, { architecture: string; modelType: string }> = {
  llama: { architecture: 'LlamaForCausalLM', modelType: 'llama' },
  qwen2: { architecture: 'Qwen2ForCausalLM', modelType: 'qwen2' },
  qwen3: { architecture: 'Qwen3ForCausalLM', modelType: 'qwen3' },
};
