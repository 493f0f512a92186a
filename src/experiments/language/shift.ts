/**
 * `unforget experiment language-shift`: the study's method comparison on natural language.
 * Pretrain on the old language (English), then finetune on the new one (Spanish) once per method —
 * standard finetuning, LoRA, and NTP / KL replay with real or self-generated old-language data —
 * and compare the methods' old-data loss at a matched new-data loss.
 *
 * Matching: each method is compared with standard finetuning at the new-data loss both reach (the
 * higher of their two best losses); a run's old-data loss there is interpolated linearly between
 * the two evaluations around its first crossing. Forgetting = old-data loss there − old-data loss
 * before finetuning; removed = 1 − forgetting / standard's forgetting at the same loss.
 */
import fs from 'node:fs';
import path from 'node:path';
import { int, intOrNull, num, numOrNull, oneOf, section, strList, strOrNull, type ConfigWith } from '../../config/schema.js';
import { ConfigError, UnforgetError } from '../../errors.js';
import { writeFileAtomic, writeJsonAtomic } from '../../io/atomic.js';
import { FONT_STACK, writeFigure } from '../../report/plot.js';
import { silentReporter, train, type Reporter } from '../../train/train.js';
import { atFirstCrossing, checkMethods, childConfig, experimentDir, replayPatch, stopIfInterrupted } from './common.js';
import { checkDataConfig, languageDataSection, prepareLanguageData, readMetrics } from './data.js';

export const SHIFT_METHODS = ['standard', 'lora', 'ntp_pre_real', 'ntp_pre_synth', 'kl_pre_real', 'kl_pre_synth'] as const;
export type ShiftMethod = (typeof SHIFT_METHODS)[number];

export const shiftSections = {
  lang: languageDataSection,
  shift: section({
    /** Pretraining length (tokens of the old language). */
    pretrain_tokens: int({ gt: 0 }).default(4_000_000),
    /** Finetuning length of every method (tokens of the new language). */
    finetune_tokens: int({ gt: 0 }).default(1_000_000),
    finetune_lr: num({ gt: 0 }).default(1e-3),
    /** LoRA's learning rate (null: finetune_lr). */
    lora_lr: numOrNull({ gt: 0 }).default(null),
    lora_rank: int({ gt: 0 }).default(16),
    /** reg.coeff of the NTP-replay and KL-replay methods (null: reg.coeff). */
    ntp_coeff: numOrNull({ min: 0 }).default(null),
    kl_coeff: numOrNull({ min: 0 }).default(null),
    /** Evaluation interval of the finetuning runs (tokens). */
    finetune_every_tokens: int({ gt: 0 }).default(50_000),
    methods: strList(SHIFT_METHODS).default([...SHIFT_METHODS]),
    /** Reuse this pretraining run folder instead of pretraining. */
    pretrained: strOrNull().default(null),
    /** The matched-loss criterion of the report (nats). */
    match_tol: num({ gt: 0 }).default(0.05),
    /** Native threads of every run (null: the backend's default). */
    threads: intOrNull({ gt: 0 }).default(null),
    /** The architecture: the study's gpt, or a Llama of about its size (GQA with half as many key/value heads,
     *  SwiGLU of hidden size 3·D, RMSNorm weights, untied output) built from model.D, model.L and model.H. */
    arch: oneOf(['gpt', 'llama'] as const).default('gpt'),
  }),
};
export type ShiftConfig = ConfigWith<typeof shiftSections>;

export const SHIFT_PRESETS: Record<string, Record<string, unknown>> = {
  /** Laptop scale: a pretraining and six finetuning runs, minutes on two cores (the README's table). */
  small: {
    model: { D: 128, L: 4, H: 32, T: 128 },
    opt: { batch_size: 32, lr: 3e-3, b2: 0.99, warmup_tokens: 100_000, lr_decay: 'cosine' },
    data: { num_tokens_valid: 32_768 },
    reg: { coeff: 1, temperature: 1, buffer: 8 },
    log: { every_tokens: 500_000 },
    shift: { pretrain_tokens: 3_000_000, finetune_tokens: 600_000, finetune_lr: 1e-3, lora_lr: 3e-3, kl_coeff: 3, finetune_every_tokens: 60_000 },
  },
  /**
   * The study's layout at a larger scale (a 12-layer, 768-wide model, longer sequences, more
   * tokens): the same experiment, for a bigger machine. Not run here.
   */
  paper: {
    model: { D: 768, L: 12, H: 64, T: 512 },
    opt: { batch_size: 64, lr: 6e-4, b2: 0.95, warmup_tokens: 2_000_000, lr_decay: 'cosine' },
    data: { num_tokens_valid: 1_048_576 },
    reg: { coeff: 1, temperature: 1, buffer: 8 },
    log: { every_tokens: 5_000_000 },
    shift: { pretrain_tokens: 200_000_000, finetune_tokens: 20_000_000, finetune_lr: 3e-4, finetune_every_tokens: 1_000_000 },
  },
};

export interface MethodResult {
  run_dir: string;
  /** At the matched new-data loss. */
  valid_ntp: number | null;
  prev_ntp: number | null;
  forgetting: number | null;
  /** Forgetting of standard finetuning at the same new-data loss. */
  standard_forgetting: number | null;
  /** 1 − forgetting / standard_forgetting. */
  forgetting_removed: number | null;
  valid_ntp_end: number;
  prev_ntp_end: number;
  forgetting_end: number;
  tokens_per_s: number | null;
  replay_sample_share: number | null;
  train_time_s: number;
}

function methodPatch(m: ShiftMethod, cfg: ShiftConfig): Record<string, unknown> {
  const s = cfg.shift;
  const replay = (method: 'ntp_pre' | 'kl_pre', synth: boolean) => replayPatch(method, synth, { ntp: s.ntp_coeff, kl: s.kl_coeff }, cfg.reg.coeff);
  switch (m) {
    case 'standard':
      return { 'reg.method': null };
    case 'lora':
      return { 'reg.method': null, 'model.lora_rank': s.lora_rank, 'opt.lr': s.lora_lr ?? s.finetune_lr };
    case 'ntp_pre_real':
      return replay('ntp_pre', false);
    case 'ntp_pre_synth':
      return replay('ntp_pre', true);
    case 'kl_pre_real':
      return replay('kl_pre', false);
    case 'kl_pre_synth':
      return replay('kl_pre', true);
  }
}

/** (new-data loss, old-data loss) along a finetuning run, from its first evaluation on. */
export function trajectory(runDir: string): Array<{ x: number; y: number; tokens: number }> {
  return readMetrics(runDir)
    .filter((r) => r.valid_ntp !== undefined && r.prev_ntp !== undefined)
    .map((r) => ({ x: r.valid_ntp!, y: r.prev_ntp!, tokens: r.train_tokens_seen ?? 0 }));
}

export interface ShiftOutcome {
  runDir: string;
  summary: Record<string, unknown>;
  table: string;
}

export async function runLanguageShift(cfgIn: ShiftConfig, opts: { reporter?: Reporter; shouldStop?: () => boolean } = {}): Promise<ShiftOutcome> {
  const cfg: ShiftConfig = structuredClone(cfgIn);
  const reporter = opts.reporter ?? silentReporter;
  const t0 = performance.now();
  const methods = cfg.shift.methods as ShiftMethod[];
  checkMethods('shift.methods', methods);
  if (cfg.model.load_path) throw new ConfigError('model.load_path', 'language-shift pretrains its own model (use shift.pretrained to reuse a pretraining run)');
  if (cfg.shift.pretrained && !fs.existsSync(path.join(cfg.shift.pretrained, 'config.yaml'))) {
    throw new ConfigError('shift.pretrained', `${cfg.shift.pretrained} is not a run folder (no config.yaml)`);
  }
  checkDataConfig(cfg.lang, 'lang');
  const dir = experimentDir(cfg);
  const data = await prepareLanguageData(cfg.lang, 'lang', (l) => reporter.log(l));
  const common: Record<string, unknown> = { 'log.dir': dir, 'model.save_dir': null, 'run.threads': cfg.shift.threads ?? cfg.run.threads };
  const check = stopIfInterrupted(dir);

  // ---- pretraining on the old language ----
  let pretrainDir = cfg.shift.pretrained;
  let pretrainSummary: Record<string, unknown>;
  if (pretrainDir === null) {
    reporter.log(`pretraining on ${cfg.lang.old.join(' + ')} (${cfg.shift.pretrain_tokens} tokens)`);
    const pc = childConfig(cfg, {
      ...common,
      'run.id': 'pretrain',
      'data.path': data.oldBin,
      'model.V': data.vocabSize,
      'model.config': cfg.shift.arch === 'llama' ? writeLlamaConfig(dir, cfg, data.vocabSize) : cfg.model.config,
      'stop.num_tokens_train': cfg.shift.pretrain_tokens,
      'reg.method': null,
    });
    const r = await train(pc, opts);
    check(r.summary, 'pretraining');
    pretrainDir = r.runDir;
    pretrainSummary = r.summary;
  } else {
    pretrainSummary = JSON.parse(fs.readFileSync(path.join(pretrainDir, 'summary.json'), 'utf8')) as Record<string, unknown>;
  }

  // ---- one finetuning run per method ----
  const runs: Partial<Record<ShiftMethod, { dir: string; summary: Record<string, unknown> }>> = {};
  for (const m of methods) {
    reporter.log(`finetuning on ${cfg.lang.new.join(' + ')}: ${m}`);
    const fc = childConfig(cfg, {
      ...common,
      'run.id': m,
      'model.load_path': pretrainDir,
      'data.path': data.newBin,
      'stop.num_tokens_train': cfg.shift.finetune_tokens,
      'opt.lr': cfg.shift.finetune_lr,
      'log.every_tokens': cfg.shift.finetune_every_tokens,
      ...methodPatch(m, cfg),
    });
    const r = await train(fc, opts);
    check(r.summary, `finetuning (${m})`);
    runs[m] = { dir: r.runDir, summary: r.summary };
  }

  // ---- matched new-data loss: each method against standard finetuning, at the loss both reach ----
  const paths = Object.fromEntries(methods.map((m) => [m, trajectory(runs[m]!.dir)])) as Record<ShiftMethod, ReturnType<typeof trajectory>>;
  const bestOf = (m: ShiftMethod) => Math.min(...paths[m].map((p) => p.x));
  const prevStart = runs.standard!.summary.prev_ntp_start as number;
  const results: Partial<Record<ShiftMethod, MethodResult>> = {};
  for (const m of methods) {
    const s = runs[m]!.summary;
    const target = Math.max(bestOf(m), bestOf('standard'));
    const hit = atFirstCrossing(paths[m], target);
    const ref = atFirstCrossing(paths.standard, target);
    const forgetting = hit ? hit.y - prevStart : null;
    const fStd = ref ? ref.y - prevStart : null;
    results[m] = {
      run_dir: path.relative(dir, runs[m]!.dir),
      valid_ntp: hit ? hit.x : null,
      prev_ntp: hit ? hit.y : null,
      forgetting,
      standard_forgetting: fStd,
      forgetting_removed: forgetting !== null && fStd !== null && fStd > 0 ? 1 - forgetting / fStd : null,
      valid_ntp_end: s.valid_ntp as number,
      prev_ntp_end: s.prev_ntp as number,
      forgetting_end: s.forgetting as number,
      tokens_per_s: (s.tokens_per_s as number | null) ?? null,
      replay_sample_share: (s.replay_sample_share as number | undefined) ?? null,
      train_time_s: s.train_time_elapsed as number,
    };
  }

  // ---- figure, table, summary ----
  await writeFigure(dir, 'plot', shiftFigureSpec(methods, paths, results as Record<ShiftMethod, MethodResult>));
  const table = shiftTable(methods, results as Record<ShiftMethod, MethodResult>, prevStart);
  writeFileAtomic(path.join(dir, 'table.md'), table + '\n');
  const summary: Record<string, unknown> = {
    experiment: 'language-shift',
    old: cfg.lang.old,
    new: cfg.lang.new,
    data: data,
    pretrain: { run_dir: path.relative(dir, pretrainDir) || pretrainDir, valid_ntp: pretrainSummary.valid_ntp, tokens: cfg.shift.pretrain_tokens },
    prev_ntp_start: prevStart,
    match_tol: cfg.shift.match_tol,
    methods: results,
    wall_time_s: (performance.now() - t0) / 1000,
  };
  writeJsonAtomic(path.join(dir, 'summary.json'), summary);
  return { runDir: dir, summary, table };
}

const LABELS: Record<ShiftMethod, string> = {
  standard: 'standard finetuning',
  lora: 'LoRA',
  ntp_pre_real: 'NTP replay (real)',
  ntp_pre_synth: 'NTP replay (self-generated)',
  kl_pre_real: 'KL replay (real)',
  kl_pre_synth: 'KL replay (self-generated)',
};

function fmt(v: number | null, digits = 3): string {
  return v === null || !Number.isFinite(v) ? '-' : v.toFixed(digits);
}

export function shiftTable(methods: ShiftMethod[], r: Record<ShiftMethod, MethodResult>, prevStart: number): string {
  const rows = methods.map((m) => {
    const x = r[m];
    const removed = x.forgetting_removed === null ? '-' : `${(100 * x.forgetting_removed).toFixed(1)}%`;
    return `| ${m} | ${fmt(x.valid_ntp)} | ${fmt(x.prev_ntp)} | ${fmt(x.forgetting)} | ${fmt(x.standard_forgetting)} | ${removed} | ${fmt(x.valid_ntp_end)} | ${fmt(x.forgetting_end)} |`;
  });
  return [
    `old-data loss before finetuning: ${prevStart.toFixed(3)} nats. Each method is compared with standard finetuning at the`,
    'new-data loss both reach (the higher of their best losses); forgetting = old-data loss there − before.',
    '',
    '| method | matched new-data loss | old-data loss there | forgetting | standard\'s forgetting there | forgetting removed | new-data loss (end) | forgetting (end) |',
    '|---|---:|---:|---:|---:|---:|---:|---:|',
    ...rows,
  ].join('\n');
}

/** Old-data log-likelihood against new-data log-likelihood, one trajectory per method. */
export function shiftFigureSpec(methods: ShiftMethod[], paths: Record<ShiftMethod, Array<{ x: number; y: number }>>, r: Record<ShiftMethod, MethodResult>): object {
  const lines = methods.flatMap((m) => paths[m].map((p, i) => ({ method: LABELS[m], i, x: -p.x, y: -p.y })));
  const marks = methods.filter((m) => r[m].prev_ntp !== null).map((m) => ({ method: LABELS[m], x: -r[m].valid_ntp!, y: -r[m].prev_ntp! }));
  const domain = methods.map((m) => LABELS[m]);
  const color = { field: 'method', type: 'nominal', title: null, scale: { domain }, legend: { orient: 'right', labelLimit: 260 } };
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: {
      text: 'Forgetting along finetuning: old-data vs new-data log-likelihood',
      subtitle: 'one point per evaluation; diamond: where the method is compared with standard finetuning (matched new-data loss)',
      font: FONT_STACK,
      subtitleFont: FONT_STACK,
    },
    width: 520,
    height: 360,
    config: { font: FONT_STACK },
    layer: [
      {
        data: { values: lines },
        mark: { type: 'line', point: { size: 18 } },
        encoding: {
          x: { field: 'x', type: 'quantitative', title: 'new-data log-likelihood (−valid_ntp, nats/token) →', scale: { zero: false } },
          y: { field: 'y', type: 'quantitative', title: 'old-data log-likelihood (−prev_ntp, nats/token)', scale: { zero: false } },
          color,
          order: { field: 'i', type: 'quantitative' },
        },
      },
      {
        data: { values: marks },
        mark: { type: 'point', shape: 'diamond', size: 90, filled: true, stroke: 'black', strokeWidth: 0.7 },
        encoding: { x: { field: 'x', type: 'quantitative' }, y: { field: 'y', type: 'quantitative' }, color },
      },
    ],
  };
}

/**
 * A transformers config.json for a Llama of about the gpt's size (model.D, model.L, model.H): D/H query heads and
 * half as many key/value heads, a SwiGLU MLP of 3·D (9·D² weights against the gpt's 8·D²), untied output.
 */
function writeLlamaConfig(dir: string, cfg: ShiftConfig, V: number): string {
  const { D, L, H } = cfg.model;
  const N = D / H;
  const file = path.join(dir, 'llama-config.json');
  writeJsonAtomic(file, {
    architectures: ['LlamaForCausalLM'], model_type: 'llama', hidden_size: D, num_hidden_layers: L,
    num_attention_heads: N, num_key_value_heads: N % 2 === 0 ? N / 2 : N, head_dim: H, intermediate_size: 3 * D,
    vocab_size: V, max_position_embeddings: Math.max(cfg.model.T ?? 128, 128), rms_norm_eps: 1e-6, rope_theta: 10000,
    tie_word_embeddings: false, hidden_act: 'silu', initializer_range: 0.02,
  });
  return file;
}
