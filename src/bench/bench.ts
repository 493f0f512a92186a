/**
 * `unforget bench`: synthetic-data throughput of the configured model and regulariser, measured
 * with the same Stepper as `unforget train`, plus KV-cache sampling and a cblas_sgemm reference.
 */
import { gemm } from '../backend/gemm.js';
import { native } from '../backend/native.js';
import type { Config } from '../config/schema.js';
import { archParamCounts, gptArch, type ArchConfig } from '../model/arch.js';
import { GPT } from '../model/gpt.js';
import { readHFConfigFile } from '../model/hf_config.js';
import { halfCopy, initHFModel } from '../model/load.js';
import { LoRA } from '../model/lora.js';
import { sample } from '../model/sample.js';
import type { Transformer } from '../model/transformer.js';
import { RandomReplay, SynthReplay, type ReplaySource } from '../replay/replay.js';
import { makeOptimizer } from '../train/optim.js';
import { Stepper } from '../train/step.js';
import { Rng } from '../util/rng.js';

export interface BenchOptions {
  steps: number;
  warmup: number;
  sampleBatch: number;
  /** Sampling runs measured back to back (short models finish one in milliseconds). */
  sampleReps?: number;
  /** Skip the sampling measurement (0 rows). */
  sample: boolean;
  /** New tokens per sampled row (null: to the full length T). */
  sampleTokens?: number | null;
  /** Keep the frozen weights (π, the LoRA base, the model of a sampling-only run) in bf16, as a bf16 checkpoint
   *  would be loaded. */
  bf16Base?: boolean;
  /** Skip the training measurement (a sampling-only run, so that its peak memory is sampling's). */
  train?: boolean;
  /** Untimed sampling calls first (null: at least 3 and at least 0.5 s, so V8 has compiled the decoding loop). */
  sampleWarmup?: number | null;
}

/**
 * FLOPs of one forward pass over B sequences of length T: 2 per parameter (non-embedding plus one embedding table,
 * the output product) and token, plus causal attention (QKᵀ and PV over the triangle). Training counts 3 passes.
 */
export function forwardFlops(c: ArchConfig, B: number, T: number): number {
  const { n_param_nonembed, n_param_embed } = archParamCounts(c);
  const matmuls = 2 * B * T * (n_param_nonembed + n_param_embed);
  const attention = c.L * 2 * 2 * B * c.N * c.H * ((T * (T + 1)) / 2);
  return matmuls + attention;
}

/** GFLOP/s of cblas_sgemm on 1024³, the machine's reference speed (OpenBLAS itself, whatever engine gemm() uses). */
export function sgemmReference(n = 1024, reps = 10): number {
  const k = native();
  const mode = k.getGemmMode();
  k.setGemmMode('blas');
  try {
    return timeGemm(n, reps);
  } finally {
    k.setGemmMode(mode);
  }
}

function timeGemm(n: number, reps: number): number {
  const rng = new Rng(1);
  const A = rng.fillNormal(new Float32Array(n * n), 1) as Float32Array;
  const B = rng.fillNormal(new Float32Array(n * n), 1) as Float32Array;
  const C = new Float32Array(n * n);
  for (let i = 0; i < 2; i++) gemm(C, A, B, n, n, n);
  const t0 = performance.now();
  for (let i = 0; i < reps; i++) gemm(C, A, B, n, n, n);
  return (2 * n * n * n * reps) / ((performance.now() - t0) / 1000) / 1e9;
}

export function runBench(cfg: Config, o: BenchOptions): Record<string, unknown> {
  const k = native();
  if (cfg.run.threads !== null) k.setNumThreads(cfg.run.threads);
  // gpt from D, L, H, or any Hugging Face architecture from model.config (random weights as transformers initialises)
  const hf = cfg.model.config !== null ? readHFConfigFile(cfg.model.config, { T: cfg.model.T ?? 512 }) : null;
  const mcfg: ArchConfig = hf ? (cfg.model.V !== null ? { ...hf.arch, V: cfg.model.V } : hf.arch)
    : gptArch({ D: cfg.model.D, L: cfg.model.L, H: cfg.model.H, T: cfg.model.T ?? 128, V: cfg.model.V ?? 4096 });
  const { T, V } = mcfg;
  const B = cfg.opt.batch_size;
  const rng = new Rng(cfg.run.seed);
  const method = cfg.reg.method;
  const needsPi = method === 'kl_pre' || method === 'kl_dwn' || cfg.reg.synth;
  // Under LoRA the frozen base is itself π (shared, no copy), as in `unforget train`.
  const lora = cfg.model.lora_rank !== null;
  // A sampling-only run trains nothing: its model is frozen, as π is when replay samples from it.
  const frozen = lora || o.train === false;
  const model: Transformer = hf
    ? initHFModel(mcfg, cfg.run.seed, hf.initializerRange, { half: frozen && o.bf16Base ? 0 : null })
    : GPT.init(mcfg, cfg.run.seed);
  const pi = needsPi ? (lora ? model.sharing() : o.bf16Base ? halfCopy(model, 0) : model.clone()) : null;
  pi?.setTrainable(false);
  const adapters = lora ? new LoRA(model, cfg.model.lora_rank!, cfg.run.seed + 7, { alpha: cfg.model.lora_alpha, targets: cfg.model.lora_targets }) : null;
  adapters?.attach();
  const tokenId = cfg.data.token_id ?? hf?.bosId ?? 1 % V;
  let replay: ReplaySource | null = null;
  if (method !== null && method !== 'kl_dwn') {
    const rows = method === 'replace' ? Math.floor(cfg.reg.coeff * B) : cfg.reg.batch_size ?? B;
    replay = cfg.reg.synth
      ? new SynthReplay(pi!, rows, cfg.reg.buffer, [tokenId], cfg.reg.temperature, rng.fork('replay'))
      : new RandomReplay(rows, T, V, tokenId, rng.fork('replay'));
  }
  const out: Record<string, unknown> = {
    arch: mcfg.family, D: mcfg.D, L: mcfg.L, H: mcfg.H, N: mcfg.N, Nkv: mcfg.Nkv, F: mcfg.F, T, V, batch: B,
    params: archParamCounts(mcfg).n_param_nonembed + archParamCounts(mcfg).n_param_embed,
    lora_rank: cfg.model.lora_rank, bf16_base: Boolean(o.bf16Base && (frozen || needsPi)),
    reg_method: method, reg_synth: cfg.reg.synth,
  };
  const counts = archParamCounts(mcfg);
  let trainGflops: number | null = null;
  if (o.train ?? true) {
  const stepper = new Stepper(model, adapters ? adapters.params : model.params, makeOptimizer(cfg.opt), method, cfg.reg.coeff, pi, replay);
  const batch = () => {
    const ids = new Int32Array(B * T);
    for (let i = 0; i < ids.length; i++) ids[i] = i % T === 0 ? tokenId : rng.int(V);
    return ids;
  };
  // Small learning rate: the benchmark must not diverge into NaNs over many random steps.
  const lr = 1e-4;
  for (let i = 0; i < o.warmup; i++) stepper.step(batch(), B, T, lr);
  // The replay buffer is sampled before the timed steps (reported as replay_sample_s), as the PyTorch peer does.
  if (replay instanceof SynthReplay) replay.prepare();
  const replaySecondsBefore = replay?.seconds ?? 0;
  let elapsed = 0;
  for (let i = 0; i < o.steps; i++) {
    const ids = batch();
    const t0 = performance.now();
    stepper.step(ids, B, T, lr);
    elapsed += (performance.now() - t0) / 1000;
  }
  const replaySeconds = (replay?.seconds ?? 0) - replaySecondsBefore;
  const rows = replay?.rows ?? 0;
  // Counted as 6·params per trained token plus attention (3 forward passes), also under LoRA, which skips the
  // base's weight gradients: `gflops_executed` leaves those 2·(matrix params) per token out.
  let flopsPerStep = 3 * forwardFlops(mcfg, B, T);
  let trainedTokens = B * T;
  if (method === 'ntp_pre' || method === 'kl_pre') trainedTokens += rows * T;
  if (method === 'ntp_pre') flopsPerStep += 3 * forwardFlops(mcfg, rows, T);
  if (method === 'kl_pre') flopsPerStep += 4 * forwardFlops(mcfg, rows, T);
  if (method === 'kl_dwn') flopsPerStep += forwardFlops(mcfg, B, T);
  const executed = lora ? flopsPerStep - 2 * trainedTokens * (counts.n_param_nonembed + counts.n_param_embed) : flopsPerStep;
  trainGflops = (flopsPerStep * o.steps) / elapsed / 1e9;
  Object.assign(out, {
    tokens_per_s: (B * T * o.steps) / elapsed,
    step_ms: (elapsed / o.steps) * 1000,
    gflops: trainGflops,
    gflops_executed: (executed * o.steps) / elapsed / 1e9,
  });
  if (replay instanceof SynthReplay) {
    out.replay_sample_s = replay.seconds;
    out.replay_sample_share = replaySeconds / elapsed;
    out.replay_sample_tokens_per_s = replay.seconds > 0 ? (replay.sampled * T) / replay.seconds : null;
  }
  }
  if (o.sample) {
    const n = o.sampleBatch;
    const prompts = new Int32Array(n).fill(tokenId);
    const length = Math.min(T, 1 + (o.sampleTokens ?? T));
    // π samples (the frozen base: what self-generated replay decodes with)
    const sampler = pi ?? (lora ? model.sharing() : model);
    // Warm-up: full-length calls, at least 3 (as the PyTorch peer) and at least 0.5 s, so that V8 has compiled
    // the decoding loop (its optimising compiler runs on a background thread that takes a core from the
    // kernels while it works) and the cache storage exists before the timed calls.
    const warmUntil = performance.now() + 500;
    let warm = 0;
    const minWarm = o.sampleWarmup ?? 3;
    while (warm < minWarm || (o.sampleWarmup == null && performance.now() < warmUntil)) {
      sample(sampler, { prompts, promptLength: 1, length, temperature: 1, rng, batchSize: n });
      warm++;
    }
    const reps = o.sampleReps ?? 1;
    const t0 = performance.now();
    for (let i = 0; i < reps; i++) sample(sampler, { prompts, promptLength: 1, length, temperature: 1, rng, batchSize: n });
    const s = (performance.now() - t0) / 1000;
    out.sample_tokens_per_s = (reps * n * (length - 1)) / s;
    out.sample_length = length;
    // 2·params per sampled token plus attention to the cached positions (average (length+1)/2 keys)
    out.sample_gflops = (reps * n * (length - 1) * (2 * (counts.n_param_nonembed + counts.n_param_embed) + 4 * mcfg.L * mcfg.N * mcfg.H * (length + 1) / 2)) / s / 1e9;
    out.sample_batch = n;
    out.sample_reps = reps;
    out.sample_warmup_calls = warm;
  }
  const sg = sgemmReference();
  out.sgemm_1024_gflops = sg;
  if (trainGflops !== null) out.gflops_share_of_sgemm = trainGflops / sg;
  if (typeof out.sample_gflops === 'number') out.sample_share_of_sgemm = out.sample_gflops / sg;
  out.peak_rss_mb = process.resourceUsage().maxRSS / 1024;
  out.threads = k.getNumThreads();
  out.backend = k.info();
  return out;
}
