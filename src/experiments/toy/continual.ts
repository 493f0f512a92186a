/**
 * `unforget experiment toy-continual` (docs/contract.md §7): one model trains on the tasks one after another,
 * each with a fresh optimizer and warm-up. With replay, training on task k adds reg.coeff · R on
 * sequences that π — the model as it was when task k started — samples itself, prompted with the
 * BOS ids of tasks < k in equal shares (or, with reg.synth=false, real rows of those tasks).
 * The accuracy of every task is recorded at every evaluation, and the final accuracy matrix.
 */
import fs from 'node:fs';
import path from 'node:path';
import { native } from '../../backend/native.js';
import { dumpConfig } from '../../config/load.js';
import { int, intOrNull, section, strList, type ConfigWith } from '../../config/schema.js';
import { ConfigError, UnforgetError } from '../../errors.js';
import { appendJsonLine, writeFileAtomic, writeJsonAtomic } from '../../io/atomic.js';
import { saveWeights } from '../../model/checkpoint.js';
import { GPT, type GPTConfig } from '../../model/gpt.js';
import { sample } from '../../model/sample.js';
import { RealReplay, SynthReplay, type ReplaySource } from '../../replay/replay.js';
import { continualFigureSpec, writeFigure } from '../../report/plot.js';
import { evaluate } from '../../train/losses.js';
import { learningRate, makeOptimizer } from '../../train/optim.js';
import { Stepper } from '../../train/step.js';
import { makeRunDir, silentReporter, type Reporter } from '../../train/train.js';
import { Rng } from '../../util/rng.js';
import { TASKS, TOY_VOCAB, bosId, eqPos, isTask, makeTaskData, seqLength, type TaskName } from './tasks.js';

export const toySections = {
  toy: section({
    tasks: strList(TASKS).default([...TASKS]),
    n_digits: int({ min: 1, max: 6 }).default(3),
    modulus: int({ gt: 0 }).default(1000),
    num_train: int({ gt: 0 }).default(65536),
    num_valid: int({ gt: 0 }).default(4096),
    steps_per_task: int({ gt: 0 }).default(2000),
    eval_every: int({ gt: 0 }).default(200),
    /** Validation examples per task used by intermediate evaluations (null: all); the final
     *  evaluation after each task always uses all of them. */
    eval_examples: intOrNull({ gt: 0 }).default(null),
    /** Warm-up steps of each task (overrides opt.warmup_tokens). */
    warmup_steps: intOrNull({ min: 0 }).default(null),
    /** Rows decoded together when measuring accuracy. */
    eval_batch: int({ gt: 0 }).default(1024),
  }),
};
export type ToyConfig = ConfigWith<typeof toySections>;

/** Named configs that key=value overrides refine. */
export const TOY_PRESETS: Record<string, Record<string, unknown>> = {
  /** The study's 2M-parameter figure. */
  reference: {
    model: { D: 256, L: 2, H: 16 },
    opt: { batch_size: 2048, lr: 1e-4, b2: 0.99 },
    toy: { steps_per_task: 2000, warmup_steps: 200, eval_every: 200 },
    reg: { method: 'ntp_pre', coeff: 10, synth: true },
  },
  /** Small enough for a 2-core laptop: `unforget demo` runs it with and without replay. */
  demo: {
    model: { D: 128, L: 2, H: 8 },
    opt: { batch_size: 128, lr: 2e-3, b2: 0.95, weight_decay: 0, lr_decay: 'cosine' },
    toy: { steps_per_task: 800, warmup_steps: 100, eval_every: 50, num_train: 32768, num_valid: 1024, eval_examples: 256 },
    reg: { method: 'ntp_pre', coeff: 1, synth: true, batch_size: 128, buffer: 8 },
  },
};

export interface AccuracyRecord {
  step: number;
  task: string;
  accuracy: number;
}

export interface ToyResult {
  runDir: string;
  summary: Record<string, unknown>;
  points: AccuracyRecord[];
  boundaries: number[];
}

/** Share of examples whose greedily decoded answer and EOS, given the prompt up to EQ, are exact. */
export function toyAccuracy(model: GPT, data: Int32Array, count: number, n: number, batch: number): number {
  const T = seqLength(n);
  const P = eqPos(n) + 1;
  const prompts = new Int32Array(count * P);
  for (let i = 0; i < count; i++) prompts.set(data.subarray(i * T, i * T + P), i * P);
  const out = sample(model, { prompts, promptLength: P, length: T, temperature: 0, rng: new Rng(0), batchSize: batch });
  let correct = 0;
  for (let i = 0; i < count; i++) {
    let ok = true;
    for (let t = P; t < T; t++) if (out[i * T + t] !== data[i * T + t]) { ok = false; break; }
    if (ok) correct++;
  }
  return correct / count;
}

function checkToyConfig(cfg: ToyConfig): TaskName[] {
  const tasks = cfg.toy.tasks;
  const seen = new Set<string>();
  for (const t of tasks) {
    if (!isTask(t)) throw new ConfigError('toy.tasks', `unknown task '${t}' (tasks: ${TASKS.join(', ')})`);
    if (seen.has(t)) throw new ConfigError('toy.tasks', `task '${t}' appears twice`);
    seen.add(t);
  }
  if (cfg.toy.modulus > 10 ** (cfg.toy.n_digits + 1)) {
    throw new ConfigError('toy.modulus', `${cfg.toy.modulus} has more than n_digits+1 = ${cfg.toy.n_digits + 1} digits`);
  }
  if (cfg.model.load_path) throw new ConfigError('model.load_path', 'toy-continual trains its own model from scratch');
  return tasks as TaskName[];
}

export async function runToyContinual(cfgIn: ToyConfig, opts: { reporter?: Reporter; shouldStop?: () => boolean; label?: string } = {}): Promise<ToyResult> {
  const cfg: ToyConfig = structuredClone(cfgIn);
  const reporter = opts.reporter ?? silentReporter;
  if (cfg.run.threads !== null) native().setNumThreads(cfg.run.threads);
  const tasks = checkToyConfig(cfg);
  const n = cfg.toy.n_digits;
  const T = seqLength(n);
  const mcfg: GPTConfig = { D: cfg.model.D, L: cfg.model.L, H: cfg.model.H, T, V: TOY_VOCAB };
  Object.assign(cfg.model, { T, V: TOY_VOCAB });
  const B = cfg.opt.batch_size;
  const seed = cfg.run.seed;

  // ---- data (seeded per task; train and validation from different streams) ----
  const train = new Map<TaskName, Int32Array>();
  const valid = new Map<TaskName, Int32Array>();
  for (const t of tasks) {
    train.set(t, makeTaskData(t, n, cfg.toy.modulus, cfg.toy.num_train, seed * 2 + 1));
    valid.set(t, makeTaskData(t, n, cfg.toy.modulus, cfg.toy.num_valid, seed * 2 + 2));
  }
  if (cfg.toy.num_train < B) throw new ConfigError('opt.batch_size', `${B} is larger than toy.num_train=${cfg.toy.num_train}`);

  // ---- run folder ----
  const runDir = makeRunDir(cfg, 'choose another run.id or --out');
  fs.mkdirSync(runDir, { recursive: true });
  cfg.run.id = path.basename(runDir);
  writeFileAtomic(path.join(runDir, 'config.yaml'), dumpConfig(cfg));
  const metricsFile = path.join(runDir, 'metrics.jsonl');

  const model = GPT.init(mcfg, seed);
  model.setTrainable(true);
  const rng = new Rng(seed);
  const warmup = cfg.toy.warmup_steps ?? Math.ceil(cfg.opt.warmup_tokens / (B * T));
  const total = tasks.length * cfg.toy.steps_per_task;

  const points: AccuracyRecord[] = [];
  const boundaries: number[] = [];
  const matrix: number[][] = [];
  let globalStep = 0;
  let replaySeconds = 0, replaySequences = 0, stepSeconds = 0;

  const evalAll = (full: boolean, taskIndex: number, extra: Record<string, number>): Record<string, number> => {
    const rec: Record<string, number> = { step: globalStep, task_index: taskIndex, ...extra };
    for (const t of tasks) {
      const count = full || cfg.toy.eval_examples === null ? cfg.toy.num_valid : Math.min(cfg.toy.eval_examples, cfg.toy.num_valid);
      const data = valid.get(t)!;
      rec[`acc_${t}`] = toyAccuracy(model, data, count, n, cfg.toy.eval_batch);
      const rows = Math.min(count, 512);
      rec[`ntp_${t}`] = evaluate(model, [data.subarray(0, rows * T)], T).ntp;
      points.push({ step: globalStep, task: t, accuracy: rec[`acc_${t}`]! });
    }
    rec.train_time_elapsed = stepSeconds;
    rec.replay_sample_time = replaySeconds;
    rec.replay_sequences = replaySequences;
    appendJsonLine(metricsFile, rec);
    const accs = tasks.map((t) => `${t}=${(100 * rec[`acc_${t}`]!).toFixed(1)}%`).join(' ');
    reporter.log(`${opts.label ? opts.label + ' ' : ''}step ${globalStep} (task ${tasks[taskIndex]}): ${accs}`);
    return rec;
  };

  reporter.start(total, opts.label ?? path.basename(runDir));
  let interrupted = false;
  try {
    evalAll(false, 0, {});
    for (let k = 0; k < tasks.length && !interrupted; k++) {
      const task = tasks[k]!;
      boundaries.push(globalStep);
      // π: the model as it was when this task started (frozen), for replay and KL.
      const needsPi = k > 0 && cfg.reg.method !== null;
      const pi = needsPi ? model.clone() : null;
      pi?.setTrainable(false);
      let replay: ReplaySource | null = null;
      if (pi && cfg.reg.method !== 'kl_dwn') {
        const rows = cfg.reg.method === 'replace' ? Math.floor(cfg.reg.coeff * B) : cfg.reg.batch_size ?? B;
        const prev = tasks.slice(0, k);
        if (rows > 0) {
          replay = cfg.reg.synth
            ? new SynthReplay(pi, rows, cfg.reg.buffer, prev.map(bosId), cfg.reg.temperature, rng.fork(`replay-${k}`))
            : realToyReplay(prev.map((t) => train.get(t)!), rows, T, rng.fork(`real-${k}`));
        }
      }
      const stepper = new Stepper(model, model.params, makeOptimizer(cfg.opt), pi ? cfg.reg.method : null, cfg.reg.coeff, pi, replay);
      const data = train.get(task)!;
      const order = new Rng(seed).fork(`order-${task}`);
      let perm = order.permutation(cfg.toy.num_train);
      let cursor = 0;
      let sumLoss = 0, sumNtp = 0, sumReg = 0, nSince = 0;
      const ids = new Int32Array(B * T);
      for (let s = 0; s < cfg.toy.steps_per_task; s++) {
        if (opts.shouldStop?.()) { interrupted = true; break; }
        for (let r = 0; r < B; r++) {
          if (cursor >= perm.length) { perm = order.permutation(cfg.toy.num_train); cursor = 0; }
          const i = perm[cursor++]!;
          ids.set(data.subarray(i * T, (i + 1) * T), r * T);
        }
        const lr = learningRate(s, cfg.opt.lr, warmup, cfg.opt.lr_decay, cfg.toy.steps_per_task);
        const before = replay?.seconds ?? 0;
        const t0 = performance.now();
        const res = stepper.step(ids, B, T, lr);
        stepSeconds += (performance.now() - t0) / 1000;
        replaySeconds += (replay?.seconds ?? 0) - before;
        if (!Number.isFinite(res.loss)) throw new UnforgetError(`training loss became ${res.loss} at step ${globalStep} (task ${task}, lr=${lr.toPrecision(3)})`);
        globalStep++;
        sumLoss += res.loss; sumNtp += res.ntp; sumReg += res.reg; nSince++;
        reporter.update(globalStep, { loss: res.loss.toFixed(4), lr: lr.toPrecision(3) });
        const last = s === cfg.toy.steps_per_task - 1;
        if ((s + 1) % cfg.toy.eval_every === 0 || last) {
          const rec = evalAll(last, k, { train_loss: sumLoss / nSince, train_loss_ntp: sumNtp / nSince, train_loss_reg: sumReg / nSince, lr });
          sumLoss = sumNtp = sumReg = nSince = 0;
          if (last) matrix.push(tasks.map((t) => rec[`acc_${t}`]!));
        }
        await new Promise<void>((resolve) => setImmediate(resolve));
      }
      replaySequences += replay?.sampled ?? 0;
    }
  } finally {
    reporter.stop();
  }

  saveWeights(runDir, model);
  const finalRow = matrix[matrix.length - 1] ?? [];
  const summary: Record<string, unknown> = {
    tasks,
    final_accuracy: Object.fromEntries(tasks.map((t, i) => [t, finalRow[i] ?? null])),
    accuracy_matrix: matrix,
    stop_reason: interrupted ? 'interrupted' : 'train_length',
    steps: globalStep,
    reg_method: cfg.reg.method,
    reg_synth: cfg.reg.synth,
    train_time_elapsed: stepSeconds,
    replay_sample_time: replaySeconds,
    replay_sample_share: stepSeconds > 0 ? replaySeconds / stepSeconds : 0,
    run_dir: runDir,
  };
  writeJsonAtomic(path.join(runDir, 'summary.json'), summary);
  const title = cfg.reg.method === null ? 'without replay' : `${cfg.reg.synth ? 'self-generated' : 'real'} replay (${cfg.reg.method}, coeff ${cfg.reg.coeff})`;
  await writeFigure(runDir, 'plot', continualFigureSpec({ tasks, panels: [{ title, points, boundaries: boundaries.slice(1) }] }));
  return { runDir, summary, points, boundaries: boundaries.slice(1) };
}

/** Real replay for the toy: rows drawn uniformly from the previous tasks' training sets in equal shares. */
function realToyReplay(sets: Int32Array[], rows: number, T: number, rng: Rng): ReplaySource {
  const counts = sets.map((s) => s.length / T);
  return new RealReplay(rows, () => {
    const out = new Int32Array(rows * T);
    for (let r = 0; r < rows; r++) {
      const s = r % sets.length;
      const i = rng.int(counts[s]!);
      out.set(sets[s]!.subarray(i * T, (i + 1) * T), r * T);
    }
    return out;
  });
}
