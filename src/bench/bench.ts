/**
 * `unforget bench`: synthetic-data throughput of the configured model and regulariser, measured
 * with the same Stepper as `unforget train`, plus KV-cache sampling and a cblas_sgemm reference.
 */
import { gemm } from '../backend/gemm.js';
import { native } from '../backend/native.js';
import type { Config } from '../config/schema.js';
import { GPT, type GPTConfig } from '../model/gpt.js';
import { sample } from '../model/sample.js';
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
}

/** Useful FLOPs of one forward pass over B sequences of length T (causal attention counted as is). */
export function forwardFlops(c: GPTConfig, B: number, T: number): number {
  const { D, L, V } = c;
  const matmuls = 2 * B * T * (12 * L * D * D + D * V);
  const attention = L * 2 * 2 * B * D * ((T * (T + 1)) / 2); // QKᵀ and PV over the causal triangle
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
  const mcfg: GPTConfig = { D: cfg.model.D, L: cfg.model.L, H: cfg.model.H, T: cfg.model.T ?? 128, V: cfg.model.V ?? 4096 };
  const { T, V } = mcfg;
  const B = cfg.opt.batch_size;
  const rng = new Rng(cfg.run.seed);
  const model = GPT.init(mcfg, cfg.run.seed);
  const method = cfg.reg.method;
  const needsPi = method === 'kl_pre' || method === 'kl_dwn' || cfg.reg.synth;
  const pi = needsPi ? model.clone() : null;
  pi?.setTrainable(false);
  const tokenId = cfg.data.token_id ?? 1 % V;
  let replay: ReplaySource | null = null;
  if (method !== null && method !== 'kl_dwn') {
    const rows = method === 'replace' ? Math.floor(cfg.reg.coeff * B) : cfg.reg.batch_size ?? B;
    replay = cfg.reg.synth
      ? new SynthReplay(pi!, rows, cfg.reg.buffer, [tokenId], cfg.reg.temperature, rng.fork('replay'))
      : new RandomReplay(rows, T, V, tokenId, rng.fork('replay'));
  }
  const stepper = new Stepper(model, model.params, makeOptimizer(cfg.opt), method, cfg.reg.coeff, pi, replay);
  const batch = () => {
    const ids = new Int32Array(B * T);
    for (let i = 0; i < ids.length; i++) ids[i] = i % T === 0 ? tokenId : rng.int(V);
    return ids;
  };
  // Small learning rate: the benchmark must not diverge into NaNs over many random steps.
  const lr = 1e-4;
  for (let i = 0; i < o.warmup; i++) stepper.step(batch(), B, T, lr);
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
  let flopsPerStep = 3 * forwardFlops(mcfg, B, T);
  if (method === 'ntp_pre') flopsPerStep += 3 * forwardFlops(mcfg, rows, T);
  if (method === 'kl_pre') flopsPerStep += 4 * forwardFlops(mcfg, rows, T);
  if (method === 'kl_dwn') flopsPerStep += forwardFlops(mcfg, B, T);
  const trainGflops = (flopsPerStep * o.steps) / elapsed / 1e9;

  const out: Record<string, unknown> = {
    D: mcfg.D, L: mcfg.L, H: mcfg.H, T, V, batch: B,
    reg_method: method, reg_synth: cfg.reg.synth,
    tokens_per_s: (B * T * o.steps) / elapsed,
    step_ms: (elapsed / o.steps) * 1000,
    gflops: trainGflops,
  };
  if (replay instanceof SynthReplay) {
    out.replay_sample_share = replaySeconds / elapsed;
    out.replay_sample_tokens_per_s = replay.seconds > 0 ? (replay.sampled * T) / replay.seconds : null;
  }
  if (o.sample) {
    const n = o.sampleBatch;
    const prompts = new Int32Array(n).fill(tokenId);
    // Warm-up: full-length calls, at least 3 (as the PyTorch peer) and at least 0.5 s, so that V8 has compiled
    // the decoding loop (its optimising compiler runs on a background thread that takes a core from the
    // kernels while it works) and the cache storage exists before the timed calls.
    const warmUntil = performance.now() + 500;
    let warm = 0;
    while (warm < 3 || performance.now() < warmUntil) {
      sample(model, { prompts, promptLength: 1, length: T, temperature: 1, rng, batchSize: n });
      warm++;
    }
    const reps = o.sampleReps ?? 1;
    const t0 = performance.now();
    for (let i = 0; i < reps; i++) sample(model, { prompts, promptLength: 1, length: T, temperature: 1, rng, batchSize: n });
    const s = (performance.now() - t0) / 1000;
    out.sample_tokens_per_s = (reps * n * (T - 1)) / s;
    out.sample_batch = n;
    out.sample_reps = reps;
    out.sample_warmup_calls = warm;
  }
  const sg = sgemmReference();
  out.sgemm_1024_gflops = sg;
  out.gflops_share_of_sgemm = trainGflops / sg;
  out.peak_rss_mb = process.resourceUsage().maxRSS / 1024;
  out.threads = k.getNumThreads();
  out.backend = k.info();
  return out;
}
