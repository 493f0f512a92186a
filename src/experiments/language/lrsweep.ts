/**
 * `unforget experiment lr`: the study's learning-rate sweep.
 *   1. Pretrain one model per peak learning rate on the old language, each until its held-out loss
 *      reaches the same target (stop.target_loss; constant rate after warm-up, as the study trains them),
 *      so the models differ in how they were trained, not in how well they model the old data.
 *   2. Finetune each model at several learning rates until the new-data loss reaches one target,
 *      without replay and with KL replay on self-generated text (kl_pre, reg.synth=true).
 *   3. Forgetting = old-data loss at the first crossing of the target − before finetuning.
 * The study's findings: a higher pretraining rate lowers later forgetting, and so does a lower
 * finetuning rate. `lr-tradeoff` is a different experiment (time against forgetting, one model).
 */
import path from 'node:path';
import { int, intOrNull, num, numList, numOrNull, section, type ConfigWith } from '../../config/schema.js';
import { ConfigError } from '../../errors.js';
import { writeFileAtomic, writeJsonAtomic } from '../../io/atomic.js';
import { writeFigure } from '../../report/plot.js';
import { silentReporter, type Reporter } from '../../train/train.js';
import { ENGLISH_CORPORA } from '../../data/corpora.js';
import { spearman } from '../../util/stats.js';
import { checkDataConfig, languageDataSection, prepareLanguageData, readMetrics } from './data.js';
import { FINETUNE_METHODS, linePanels, type FinetuneMethod } from './gridplot.js';
import { checkEpochs, crossingAt, numLabel, openExperimentDir, runStage, stagePoint, type StageExecutor, type TargetCrossing } from './stage.js';
import type { RankCorrelation } from './capacity.js';

export const lrSweepSections = {
  lang: languageDataSection,
  lr: section({
    /** Peak learning rates of the pretraining runs. */
    pretrain_lrs: numList({ gt: 0 }).default([1e-2, 4.64e-3, 2.15e-3, 1e-3]),
    /** Target held-out old-data loss of every pretraining run; null: a probe at the lowest rate after
     *  pretrain_auto_tokens, plus pretrain_auto_margin. */
    pretrain_target_loss: numOrNull().default(null),
    pretrain_auto_tokens: int({ gt: 0 }).default(4_000_000),
    pretrain_auto_margin: num({ min: 0 }).default(0.05),
    /** Token cap of every pretraining run (a rate that misses the target is reported and not finetuned). */
    pretrain_max_tokens: int({ gt: 0 }).default(6_000_000),
    pretrain_every_tokens: int({ gt: 0 }).default(65_536),
    /** Peak learning rates of the finetuning runs. */
    finetune_lrs: numList({ gt: 0 }).default([4e-3, 2e-3, 1e-3, 5e-4]),
    /** Target new-data loss; null: a probe (first pretrained model, highest finetuning rate, no replay)
     *  after auto_tokens, plus auto_margin. */
    target_loss: numOrNull().default(null),
    auto_tokens: int({ gt: 0 }).default(100_000),
    auto_margin: num({ min: 0 }).default(0.05),
    /** Token cap of every finetuning run (a run that misses the target is reported as such). */
    max_tokens: int({ gt: 0 }).default(1_500_000),
    every_tokens: int({ gt: 0 }).default(16_384),
    finetune_warmup_tokens: int({ min: 0 }).default(0),
    /** reg.coeff of the KL replay runs. */
    kl_coeff: num({ min: 0 }).default(10),
    /** How many times the longest pretraining run may read the old data (null: no limit, only reported). */
    max_epochs: numOrNull({ gt: 0 }).default(1),
    threads: intOrNull({ gt: 0 }).default(null),
  }),
};
export type LrSweepConfig = ConfigWith<typeof lrSweepSections>;

export const LR_SWEEP_PRESETS: Record<string, Record<string, unknown>> = {
  /**
   * Two cores' scale: the study's four highest pretraining rates and four finetuning rates a factor 2
   * apart (so the slowest still reaches the target within the cap), × 2 methods, a 1024-token BPE;
   * the longest pretraining run is capped at 6M tokens. One thread, as capacity's small preset.
   */
  small: {
    model: { D: 48, L: 2, H: 8, T: 64 },
    opt: { batch_size: 32, b2: 0.99, warmup_tokens: 100_000, lr_decay: null },
    data: { num_tokens_valid: 16_384 },
    reg: { buffer: 8, batch_size: 16 },
    log: { every_tokens: 100_000_000 },
    lang: { vocab_size: 1024, old: [...ENGLISH_CORPORA] },
    lr: {
      pretrain_lrs: [1e-2, 4.64e-3, 2.15e-3, 1e-3], pretrain_auto_tokens: 4_000_000, pretrain_max_tokens: 6_000_000, pretrain_every_tokens: 65_536,
      finetune_lrs: [4e-3, 2e-3, 1e-3, 5e-4], auto_tokens: 100_000, max_tokens: 1_500_000, every_tokens: 16_384, finetune_warmup_tokens: 16_384, kl_coeff: 10, threads: 1,
    },
  },
  /** The study's sweep: its six pretraining and seven finetuning rates, D=256, L=6, head size 64, T=256, batch 256; for a cluster. */
  paper: {
    model: { D: 256, L: 6, H: 64, T: 256 },
    opt: { batch_size: 256, b2: 0.999, warmup_tokens: 10_000_000, lr_decay: null },
    data: { num_tokens_valid: 10_000_000 },
    reg: { buffer: 1, batch_size: null },
    log: { every_tokens: 100_000_000 },
    lang: { vocab_size: 4096, old: [...ENGLISH_CORPORA] },
    lr: {
      pretrain_lrs: [1e-2, 4.64e-3, 2.15e-3, 1e-3, 4.64e-4, 2.15e-4], pretrain_auto_tokens: 500_000_000, pretrain_max_tokens: 2_000_000_000, pretrain_every_tokens: 10_000_000,
      finetune_lrs: [1e-3, 3.16e-4, 1e-4, 3.16e-5, 1e-5, 3.16e-6, 1e-6], auto_tokens: 20_000_000, max_tokens: 500_000_000, every_tokens: 1_000_000, finetune_warmup_tokens: 10_000_000, kl_coeff: 10,
    },
  },
};

export interface LrPretrain {
  lr: number;
  reached: boolean;
  stop_reason: string;
  /** Tokens to the target (the evaluation where it stopped), or to the cap. */
  tokens: number;
  valid_ntp: number | null;
  run_dir: string;
}

export interface LrFinetune extends TargetCrossing {
  pretrain_lr: number;
  finetune_lr: number;
  method: FinetuneMethod;
  run_dir: string;
}

const CLEAR_STOP = { 'stop.num_tokens_train': null, 'stop.tokens_per_param': null, 'stop.num_epochs': null, 'stop.target_loss': null, 'stop.train_time': null, 'stop.early_stop_steps': null };

function checkLists(cfg: LrSweepConfig): void {
  for (const key of ['pretrain_lrs', 'finetune_lrs'] as const) {
    const list = cfg.lr[key];
    if (list.length < 2) throw new ConfigError(`lr.${key}`, `needs at least two learning rates, got ${JSON.stringify(list)}`);
    if (new Set(list).size !== list.length) throw new ConfigError(`lr.${key}`, `names a rate twice: ${JSON.stringify(list)}`);
  }
  if (cfg.model.load_path) throw new ConfigError('model.load_path', 'lr pretrains its own models');
  if (cfg.data.num_tokens_valid <= 0) throw new ConfigError('data.num_tokens_valid', 'training to a target loss needs a validation split (> 0)');
}

export async function runLrSweep(
  cfgIn: LrSweepConfig,
  opts: { reporter?: Reporter; shouldStop?: () => boolean; execute?: StageExecutor } = {},
): Promise<{ runDir: string; summary: Record<string, unknown>; table: string }> {
  const cfg: LrSweepConfig = structuredClone(cfgIn);
  const reporter = opts.reporter ?? silentReporter;
  const log = (l: string) => reporter.log(l);
  const t0 = performance.now();
  const c = cfg.lr;
  checkLists(cfg);
  checkDataConfig(cfg.lang, 'lang');
  const data = await prepareLanguageData(cfg.lang, 'lang', log);
  const T = cfg.model.T ?? 128;
  const probeLonger = c.pretrain_target_loss === null && c.pretrain_auto_tokens > c.pretrain_max_tokens;
  const epochs = checkEpochs({
    runTokens: probeLonger ? c.pretrain_auto_tokens : c.pretrain_max_tokens, what: probeLonger ? 'the probe, lr.pretrain_auto_tokens' : 'the cap lr.pretrain_max_tokens',
    dataTokens: data.oldTokens, T, B: cfg.opt.batch_size, numTokensValid: cfg.data.num_tokens_valid, maxEpochs: c.max_epochs, key: 'lr.max_epochs', log,
  });
  const { dir } = openExperimentDir(cfg, log);
  const stage = { dir, reporter, shouldStop: opts.shouldStop, execute: opts.execute };
  const threads = { 'run.threads': c.threads ?? cfg.run.threads };
  const preLrs = [...c.pretrain_lrs].sort((a, b) => b - a);
  const ftLrs = [...c.finetune_lrs].sort((a, b) => b - a);
  const pretrainPatch = (lr: number) => ({
    ...CLEAR_STOP, ...threads, 'model.V': data.vocabSize, 'data.path': data.oldBin, 'opt.lr': lr, 'opt.lr_decay': null, 'reg.method': null, 'log.every_tokens': c.pretrain_every_tokens,
  });

  // ---- the pretraining target: given, or from a probe at the lowest (slowest) rate ----
  let preTarget = c.pretrain_target_loss;
  let preProbe: { run_dir: string; valid_ntp: number } | null = null;
  if (preTarget === null) {
    const lr = preLrs.at(-1)!;
    const id = `probe/pretrain-lr${numLabel(lr)}`;
    const r = (await runStage([stagePoint(cfg, dir, id, { ...pretrainPatch(lr), 'stop.num_tokens_train': c.pretrain_auto_tokens })], { ...stage, what: 'pretraining target probe' })).get(id)!;
    if (r.summary.stop_reason === 'nonfinite_loss') throw new ConfigError('lr.pretrain_lrs', `the probe at the lowest rate ${lr} diverged; set lr.pretrain_target_loss or lower the rates`);
    preProbe = { run_dir: path.relative(dir, r.runDir), valid_ntp: r.summary.valid_ntp as number };
    preTarget = preProbe.valid_ntp + c.pretrain_auto_margin;
    log(`target old-data loss of the pretraining: ${preTarget.toFixed(4)} (the probe's ${preProbe.valid_ntp.toFixed(4)} after ${c.pretrain_auto_tokens} tokens + ${c.pretrain_auto_margin})`);
  }

  // ---- stage 1: pretraining at each rate to the target ----
  const preId = (lr: number) => `pretrain/lr${numLabel(lr)}`;
  const pre = await runStage(
    preLrs.map((lr) => stagePoint(cfg, dir, preId(lr), { ...pretrainPatch(lr), 'stop.num_tokens_train': c.pretrain_max_tokens, 'stop.target_loss': preTarget })),
    { ...stage, what: 'pretraining' },
  );
  const pretrains: LrPretrain[] = preLrs.map((lr) => {
    const r = pre.get(preId(lr))!;
    const rows = readMetrics(r.runDir).filter((m) => m.valid_ntp !== undefined);
    const last = rows.at(-1);
    return {
      lr,
      reached: r.summary.stop_reason !== 'nonfinite_loss' && last !== undefined && last.valid_ntp! <= preTarget!,
      stop_reason: r.summary.stop_reason as string,
      tokens: (last?.train_tokens_seen as number | undefined) ?? 0,
      valid_ntp: last?.valid_ntp ?? null,
      run_dir: path.relative(dir, r.runDir),
    };
  });
  const ready = pretrains.filter((p) => p.reached);
  for (const p of pretrains.filter((x) => !x.reached)) log(`pretraining at lr ${p.lr} missed the target (${p.stop_reason}, loss ${p.valid_ntp?.toFixed(4)}); its model is not finetuned`);
  if (ready.length === 0) throw new ConfigError('lr.pretrain_target_loss', `no pretraining rate reached ${preTarget.toFixed(4)} within lr.pretrain_max_tokens=${c.pretrain_max_tokens}`);

  const finetunePatch = (preLr: number, lr: number): Record<string, unknown> => ({
    ...CLEAR_STOP, ...threads,
    'model.load_path': pre.get(preId(preLr))!.runDir,
    'data.path': data.newBin,
    'opt.lr': lr,
    'opt.warmup_tokens': c.finetune_warmup_tokens,
    'opt.lr_decay': null,
    'log.every_tokens': c.every_tokens,
    'stop.num_tokens_train': c.max_tokens,
  });

  // ---- the finetuning target: given, or from a probe (first pretrained model, highest rate, no replay) ----
  let target = c.target_loss;
  let probe: { run_dir: string; valid_ntp: number } | null = null;
  if (target === null) {
    const id = `probe/finetune-pre${numLabel(ready[0]!.lr)}-ft${numLabel(ftLrs[0]!)}`;
    const r = (await runStage([stagePoint(cfg, dir, id, { ...finetunePatch(ready[0]!.lr, ftLrs[0]!), 'stop.num_tokens_train': c.auto_tokens, 'reg.method': null })], { ...stage, what: 'finetuning target probe' })).get(id)!;
    probe = { run_dir: path.relative(dir, r.runDir), valid_ntp: r.summary.valid_ntp as number };
    target = probe.valid_ntp + c.auto_margin;
    log(`target new-data loss: ${target.toFixed(4)} (the probe's ${probe.valid_ntp.toFixed(4)} after ${c.auto_tokens} tokens + ${c.auto_margin})`);
  }

  // ---- stage 2: finetuning grid ----
  const ftId = (preLr: number, lr: number, m: FinetuneMethod) => `finetune/pre${numLabel(preLr)}-ft${numLabel(lr)}-${m}`;
  const methodPatch = (m: FinetuneMethod) => (m === 'none' ? { 'reg.method': null } : { 'reg.method': 'kl_pre', 'reg.synth': true, 'reg.coeff': c.kl_coeff });
  const combos = ready.flatMap((p) => ftLrs.flatMap((lr) => FINETUNE_METHODS.map((m) => ({ preLr: p.lr, lr, m }))));
  const ft = await runStage(
    combos.map(({ preLr, lr, m }) => stagePoint(cfg, dir, ftId(preLr, lr, m), { ...finetunePatch(preLr, lr), 'stop.target_loss': target, ...methodPatch(m) })),
    { ...stage, what: 'finetuning' },
  );
  const runs: LrFinetune[] = combos.map(({ preLr, lr, m }) => {
    const r = ft.get(ftId(preLr, lr, m))!;
    return { pretrain_lr: preLr, finetune_lr: lr, method: m, ...crossingAt(r.runDir, target!, r.summary.stop_reason as string), run_dir: path.relative(dir, r.runDir) };
  });

  const correlations = lrCorrelations(runs);
  await writeFigure(dir, 'forgetting_vs_finetune_lr', linePanels({
    title: 'Forgetting against the finetuning learning rate',
    subtitle: `pretrained to old-data loss ${preTarget.toFixed(3)}, finetuned to new-data loss ${target.toFixed(3)}` +
      (runs.some((r) => !r.reached) ? `; ${runs.filter((r) => !r.reached).length} run(s) missed the target and are not drawn` : ''),
    rows: runs.filter((r) => r.reached).map((r) => ({ method: r.method, x: r.finetune_lr, y: r.forgetting!, series: `pretrained at ${numLabel(r.pretrain_lr)}`, order: -r.pretrain_lr })),
    xTitle: 'finetuning learning rate (log)',
    xLog: true,
    seriesTitle: 'pretraining rate',
  }));
  const table = lrSweepTable(pretrains, runs, preTarget, target, correlations);
  writeFileAtomic(path.join(dir, 'table.md'), table + '\n');
  const summary = {
    experiment: 'lr',
    data,
    data_epochs: epochs,
    pretrain_target_loss: preTarget,
    pretrain_probe: preProbe,
    target_loss: target,
    probe,
    pretrain: pretrains,
    runs,
    spearman: correlations,
    wall_time_s: (performance.now() - t0) / 1000,
  };
  writeJsonAtomic(path.join(dir, 'summary.json'), summary);
  return { runDir: dir, summary, table };
}

/** Spearman ρ of forgetting against the pretraining and the finetuning rate, per method, over the runs that reached the target. */
export function lrCorrelations(runs: LrFinetune[]): Record<FinetuneMethod, { pretrain_lr: RankCorrelation; finetune_lr: RankCorrelation }> {
  const out = {} as Record<FinetuneMethod, { pretrain_lr: RankCorrelation; finetune_lr: RankCorrelation }>;
  for (const m of FINETUNE_METHODS) {
    const ok = runs.filter((r) => r.method === m && r.reached);
    const f = ok.map((r) => r.forgetting!);
    out[m] = {
      pretrain_lr: { rho: spearman(ok.map((r) => r.pretrain_lr), f), n: ok.length },
      finetune_lr: { rho: spearman(ok.map((r) => r.finetune_lr), f), n: ok.length },
    };
  }
  return out;
}

const fmt = (v: number | null | undefined, d = 3) => (v === null || v === undefined || !Number.isFinite(v) ? '-' : v.toFixed(d));
const rhoText = (r: RankCorrelation) => `${r.rho === null ? '-' : r.rho.toFixed(3)} (n=${r.n})`;

export function lrSweepTable(pretrains: LrPretrain[], runs: LrFinetune[], preTarget: number, target: number, r: ReturnType<typeof lrCorrelations>): string {
  const cellOf = (x: LrFinetune | undefined) => (!x ? '- | -' : x.reached ? `${fmt(x.forgetting)} | ${x.tokens_to_target}` : `missed (end ${fmt(x.valid_ntp_end)}) | > ${x.tokens_end}`);
  const pairs = new Map<string, Partial<Record<FinetuneMethod, LrFinetune>>>();
  for (const x of runs) {
    const k = `${x.pretrain_lr}|${x.finetune_lr}`;
    pairs.set(k, { ...(pairs.get(k) ?? {}), [x.method]: x });
  }
  return [
    `pretraining to old-data loss ${preTarget.toFixed(4)}; finetuning to new-data loss ${target.toFixed(4)}; forgetting = old-data loss at the target − before`,
    '',
    '| pretraining lr | reached target | tokens | old-data loss |',
    '|---:|---|---:|---:|',
    ...pretrains.map((p) => `| ${numLabel(p.lr)} | ${p.reached ? 'yes' : `no (${p.stop_reason})`} | ${p.tokens} | ${fmt(p.valid_ntp)} |`),
    '',
    '| pretraining lr | finetuning lr | old-data loss before | forgetting, no replay | tokens to target | forgetting, kl_pre replay | tokens to target |',
    '|---:|---:|---:|---:|---:|---:|---:|',
    ...[...pairs.values()].map((p) => {
      const any = (p.none ?? p.kl_pre)!;
      return `| ${numLabel(any.pretrain_lr)} | ${numLabel(any.finetune_lr)} | ${fmt(any.prev_ntp_before)} | ${cellOf(p.none)} | ${cellOf(p.kl_pre)} |`;
    }),
    '',
    '| Spearman ρ of forgetting | no replay | kl_pre replay |',
    '|---|---:|---:|',
    `| vs pretraining lr | ${rhoText(r.none.pretrain_lr)} | ${rhoText(r.kl_pre.pretrain_lr)} |`,
    `| vs finetuning lr | ${rhoText(r.none.finetune_lr)} | ${rhoText(r.kl_pre.finetune_lr)} |`,
  ].join('\n');
}
