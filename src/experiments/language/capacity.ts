/**
 * `unforget experiment capacity`: forgetting against model capacity, with the study's protocol.
 *   1. Pretrain a grid of widths × tokens per parameter on the old language (English prose);
 *      parameters are counted as the study counts them: non-embedding (12·L·D²) plus one embedding (D·V).
 *   2. Finetune every model on the new language until its new-data loss reaches one target for all
 *      (stop.target_loss, with a token cap; a run that misses it is reported as such), once without
 *      replay and once with KL replay on self-generated text (reg.method=kl_pre, reg.synth=true).
 *   3. Forgetting = old-data loss where the new-data loss first crosses the target (interpolated between
 *      the evaluations around it) − old-data loss before finetuning.
 * The study's finding: a model pretrained near saturation (many tokens per parameter, or small)
 * forgets more, even with replay. Fixing the new-data loss instead of the finetuning budget keeps
 * larger models, which learn faster, from being compared at a different point of learning.
 */
import path from 'node:path';
import { int, intOrNull, num, numList, numOrNull, section, type ConfigWith } from '../../config/schema.js';
import { ConfigError } from '../../errors.js';
import { writeFileAtomic, writeJsonAtomic } from '../../io/atomic.js';
import { writeFigure } from '../../report/plot.js';
import { silentReporter, type Reporter } from '../../train/train.js';
import { ENGLISH_CORPORA } from '../../data/corpora.js';
import { spearman } from '../../util/stats.js';
import { checkDataConfig, languageDataSection, prepareLanguageData } from './data.js';
import { FINETUNE_METHODS, heatmapPanels, linePanels, type FinetuneMethod } from './gridplot.js';
import { checkEpochs, crossingAt, numLabel, openExperimentDir, runStage, stagePoint, studyParams, type StageExecutor, type TargetCrossing } from './stage.js';

export const capacitySections = {
  lang: languageDataSection,
  capacity: section({
    /** Model widths D (each a multiple of model.H). */
    widths: numList({ gt: 0, int: true }).default([16, 24, 32, 40]),
    /** Pretraining lengths, in tokens per parameter. */
    tokens_per_param: numList({ gt: 0 }).default([20, 40, 80, 160, 320]),
    /** Target new-data loss of every finetuning run; null: a probe run's loss after auto_tokens, plus auto_margin. */
    target_loss: numOrNull().default(null),
    auto_tokens: int({ gt: 0 }).default(200_000),
    auto_margin: num({ min: 0 }).default(0.05),
    /** Token cap of every finetuning run. */
    max_tokens: int({ gt: 0 }).default(2_000_000),
    finetune_lr: num({ gt: 0 }).default(1e-3),
    finetune_warmup_tokens: int({ min: 0 }).default(0),
    /** Evaluation interval of the finetuning runs (how finely the target crossing is located). */
    every_tokens: int({ gt: 0 }).default(16_384),
    /** reg.coeff of the KL replay runs. */
    kl_coeff: num({ min: 0 }).default(10),
    /** How many times the longest pretraining run may read the old data (null: no limit, only reported). */
    max_epochs: numOrNull({ gt: 0 }).default(1),
    threads: intOrNull({ gt: 0 }).default(null),
  }),
};
export type CapacityConfig = ConfigWith<typeof capacitySections>;

export const CAPACITY_PRESETS: Record<string, Record<string, unknown>> = {
  /**
   * Two cores' scale: 4 widths × 5 lengths (20 pretraining runs, a probe, 40 finetuning runs), a 1024-token
   * BPE; the longest pretraining run (D=40 at 320 tokens/parameter) reads 25.4M tokens. One thread: models this
   * small gain nothing from a second, and lose most of their speed when other jobs share the cores.
   */
  small: {
    model: { L: 2, H: 8, T: 64 },
    opt: { batch_size: 32, lr: 3e-3, b2: 0.99, warmup_tokens: 100_000, lr_decay: 'cosine' },
    data: { num_tokens_valid: 16_384 },
    reg: { buffer: 8, batch_size: 16 },
    log: { every_tokens: 100_000_000 },
    lang: { vocab_size: 1024, old: [...ENGLISH_CORPORA] },
    capacity: { widths: [16, 24, 32, 40], tokens_per_param: [20, 40, 80, 160, 320], max_tokens: 1_000_000, finetune_lr: 1e-3, finetune_warmup_tokens: 16_384, every_tokens: 8_192, kl_coeff: 10, auto_tokens: 200_000, auto_margin: 0.05, threads: 1 },
  },
  /** The study's 2-D grid (its widths and tokens per parameter, L=6, head size 64, T=256, batch 256); for a cluster. */
  paper: {
    model: { L: 6, H: 64, T: 256 },
    opt: { batch_size: 256, lr: 1e-3, b2: 0.999, warmup_tokens: 10_000_000, lr_decay: 'cosine' },
    data: { num_tokens_valid: 10_000_000 },
    reg: { buffer: 1, batch_size: null },
    log: { every_tokens: 100_000_000 },
    lang: { vocab_size: 4096, old: [...ENGLISH_CORPORA] },
    capacity: {
      widths: [256, 288, 320, 352, 384, 416, 448, 480, 512, 544, 576, 608, 640],
      tokens_per_param: [20, 28, 40, 57, 80, 113, 160, 226, 320, 453, 640, 905, 1280],
      max_tokens: 200_000_000, finetune_lr: 1e-4, finetune_warmup_tokens: 10_000_000, every_tokens: 1_000_000, kl_coeff: 10, auto_tokens: 20_000_000,
    },
  },
};

export interface CapacityPoint {
  D: number;
  tokens_per_param: number;
  n_params: number;
  pretrain_tokens: number;
  /** The pretraining run's final held-out loss on the old data. */
  pretrain_valid_ntp: number | null;
  pretrain_stop_reason: string;
  pretrain_dir: string;
  /** Per method (none, kl_pre); null where the pretraining diverged. */
  finetune: Record<FinetuneMethod, (TargetCrossing & { run_dir: string }) | null>;
}

export interface RankCorrelation {
  rho: number | null;
  /** Grid points in it (finetuning runs that reached the target). */
  n: number;
}

/** Every pretraining and finetuning run clears the stop criteria of the base config first. */
const CLEAR_STOP = { 'stop.num_tokens_train': null, 'stop.tokens_per_param': null, 'stop.num_epochs': null, 'stop.target_loss': null, 'stop.train_time': null, 'stop.early_stop_steps': null };

function checkGrid(cfg: CapacityConfig): void {
  const c = cfg.capacity;
  for (const D of c.widths) {
    if (D % cfg.model.H !== 0) throw new ConfigError('capacity.widths', `width ${D} is not a multiple of the head size model.H=${cfg.model.H}`);
  }
  for (const [key, list] of [['capacity.widths', c.widths], ['capacity.tokens_per_param', c.tokens_per_param]] as const) {
    if (list.length < 2) throw new ConfigError(key, `needs at least two values for a grid, got ${JSON.stringify(list)}`);
    if (new Set(list).size !== list.length) throw new ConfigError(key, `names a value twice: ${JSON.stringify(list)}`);
  }
  if (cfg.model.load_path) throw new ConfigError('model.load_path', 'capacity pretrains its own models');
  if (cfg.model.config) throw new ConfigError('model.config', 'capacity builds gpt models of each width (model.D from capacity.widths)');
  if (cfg.data.num_tokens_valid <= 0) throw new ConfigError('data.num_tokens_valid', 'finetuning to a target loss needs a validation split (> 0)');
}

export async function runCapacity(
  cfgIn: CapacityConfig,
  opts: { reporter?: Reporter; shouldStop?: () => boolean; execute?: StageExecutor } = {},
): Promise<{ runDir: string; summary: Record<string, unknown>; table: string }> {
  const cfg: CapacityConfig = structuredClone(cfgIn);
  const reporter = opts.reporter ?? silentReporter;
  const log = (l: string) => reporter.log(l);
  const t0 = performance.now();
  const c = cfg.capacity;
  checkGrid(cfg);
  checkDataConfig(cfg.lang, 'lang');
  const data = await prepareLanguageData(cfg.lang, 'lang', log);
  const { L, H } = cfg.model;
  const T = cfg.model.T ?? 128;
  const V = data.vocabSize;
  const widths = [...c.widths].sort((a, b) => a - b);
  const tpps = [...c.tokens_per_param].sort((a, b) => a - b);
  const nParams = (D: number) => studyParams(D, L, H, V);
  const epochs = checkEpochs({
    runTokens: tpps.at(-1)! * nParams(widths.at(-1)!), what: `D=${widths.at(-1)} at ${tpps.at(-1)} tokens/parameter`,
    dataTokens: data.oldTokens, T, B: cfg.opt.batch_size, numTokensValid: cfg.data.num_tokens_valid, maxEpochs: c.max_epochs, key: 'capacity.max_epochs', log,
  });
  const { dir } = openExperimentDir(cfg, log);
  const stage = { dir, reporter, shouldStop: opts.shouldStop, execute: opts.execute };
  const threads = { 'run.threads': c.threads ?? cfg.run.threads };

  // ---- stage 1: pretraining grid ----
  const key = (D: number, tpp: number) => `D${D}-tpp${numLabel(tpp)}`;
  const grid = widths.flatMap((D) => tpps.map((tpp) => ({ D, tpp })));
  const pre = await runStage(
    grid.map(({ D, tpp }) =>
      stagePoint(cfg, dir, `pretrain/${key(D, tpp)}`, { ...CLEAR_STOP, ...threads, 'model.D': D, 'model.V': V, 'data.path': data.oldBin, 'stop.tokens_per_param': tpp, 'reg.method': null }),
    ),
    { ...stage, what: 'pretraining' },
  );
  const preOf = (D: number, tpp: number) => pre.get(`pretrain/${key(D, tpp)}`)!;
  const usable = grid.filter(({ D, tpp }) => preOf(D, tpp).summary.stop_reason !== 'nonfinite_loss');

  const finetunePatch = (D: number, tpp: number): Record<string, unknown> => ({
    ...CLEAR_STOP,
    ...threads,
    'model.load_path': preOf(D, tpp).runDir,
    'data.path': data.newBin,
    'opt.lr': c.finetune_lr,
    'opt.warmup_tokens': c.finetune_warmup_tokens,
    'opt.lr_decay': null,
    'log.every_tokens': c.every_tokens,
    'stop.num_tokens_train': c.max_tokens,
  });

  // ---- the target: given, or from a probe of the least spare model (smallest width, longest pretraining) ----
  let target = c.target_loss;
  let probe: { run_dir: string; valid_ntp: number } | null = null;
  if (target === null) {
    const weakest = usable.find(({ D }) => D === widths[0]) ? { D: widths[0]!, tpp: Math.max(...usable.filter(({ D }) => D === widths[0]).map((g) => g.tpp)) } : usable[0];
    if (!weakest) throw new ConfigError('capacity.target_loss', 'every pretraining run diverged, so no probe can set the target; lower opt.lr');
    const id = `probe/${key(weakest.D, weakest.tpp)}`;
    const r = (await runStage([stagePoint(cfg, dir, id, { ...finetunePatch(weakest.D, weakest.tpp), 'stop.num_tokens_train': c.auto_tokens, 'reg.method': null })], { ...stage, what: 'target probe' })).get(id)!;
    probe = { run_dir: path.relative(dir, r.runDir), valid_ntp: r.summary.valid_ntp as number };
    target = probe.valid_ntp + c.auto_margin;
    log(`target new-data loss: ${target.toFixed(4)} (the probe's ${probe.valid_ntp.toFixed(4)} after ${c.auto_tokens} tokens + ${c.auto_margin})`);
  }

  // ---- stage 2: finetuning grid, to the target, without and with replay ----
  const ftId = (D: number, tpp: number, m: FinetuneMethod) => `finetune/${key(D, tpp)}-${m}`;
  const methodPatch = (m: FinetuneMethod) => (m === 'none' ? { 'reg.method': null } : { 'reg.method': 'kl_pre', 'reg.synth': true, 'reg.coeff': c.kl_coeff });
  const ft = await runStage(
    usable.flatMap(({ D, tpp }) => FINETUNE_METHODS.map((m) => stagePoint(cfg, dir, ftId(D, tpp, m), { ...finetunePatch(D, tpp), 'stop.target_loss': target, ...methodPatch(m) }))),
    { ...stage, what: 'finetuning' },
  );

  const points: CapacityPoint[] = grid.map(({ D, tpp }) => {
    const p = preOf(D, tpp);
    const finetune = Object.fromEntries(
      FINETUNE_METHODS.map((m) => {
        const r = ft.get(ftId(D, tpp, m));
        return [m, r ? { ...crossingAt(r.runDir, target!, r.summary.stop_reason as string), run_dir: path.relative(dir, r.runDir) } : null];
      }),
    ) as CapacityPoint['finetune'];
    return {
      D,
      tokens_per_param: tpp,
      n_params: nParams(D),
      pretrain_tokens: p.summary.train_tokens_seen as number,
      pretrain_valid_ntp: (p.summary.valid_ntp as number | undefined) ?? null,
      pretrain_stop_reason: p.summary.stop_reason as string,
      pretrain_dir: path.relative(dir, p.runDir),
      finetune,
    };
  });

  const correlations = capacityCorrelations(points);
  await writeCapacityFigures(dir, points, target);
  const table = capacityTable(points, target, correlations);
  writeFileAtomic(path.join(dir, 'table.md'), table + '\n');
  const summary = {
    experiment: 'capacity',
    data,
    data_epochs: epochs,
    target_loss: target,
    probe,
    widths,
    tokens_per_param: tpps,
    points,
    spearman: correlations,
    wall_time_s: (performance.now() - t0) / 1000,
  };
  writeJsonAtomic(path.join(dir, 'summary.json'), summary);
  return { runDir: dir, summary, table };
}

/** Spearman ρ of forgetting against tokens per parameter and against width, per method, over the runs that reached the target. */
export function capacityCorrelations(points: CapacityPoint[]): Record<FinetuneMethod, { tokens_per_param: RankCorrelation; width: RankCorrelation }> {
  const out = {} as Record<FinetuneMethod, { tokens_per_param: RankCorrelation; width: RankCorrelation }>;
  for (const m of FINETUNE_METHODS) {
    const ok = points.filter((p) => p.finetune[m]?.reached);
    const f = ok.map((p) => p.finetune[m]!.forgetting!);
    out[m] = {
      tokens_per_param: { rho: spearman(ok.map((p) => p.tokens_per_param), f), n: ok.length },
      width: { rho: spearman(ok.map((p) => p.D), f), n: ok.length },
    };
  }
  return out;
}

const fmt = (v: number | null | undefined, d = 3) => (v === null || v === undefined || !Number.isFinite(v) ? '-' : v.toFixed(d));
const rhoText = (r: RankCorrelation) => `${r.rho === null ? '-' : r.rho.toFixed(3)} (n=${r.n})`;

function cell(x: TargetCrossing | null): string {
  if (x === null) return '- | -';
  return x.reached ? `${fmt(x.forgetting)} | ${x.tokens_to_target}` : `missed (end ${fmt(x.valid_ntp_end)}) | > ${x.tokens_end}`;
}

export function capacityTable(points: CapacityPoint[], target: number, r: ReturnType<typeof capacityCorrelations>): string {
  const rows = points.map(
    (p) => `| ${p.D} | ${p.n_params} | ${numLabel(p.tokens_per_param)} | ${p.pretrain_tokens} | ${fmt(p.finetune.none?.prev_ntp_before ?? p.pretrain_valid_ntp)} | ${cell(p.finetune.none)} | ${cell(p.finetune.kl_pre)} |`,
  );
  return [
    `target new-data loss: ${target.toFixed(4)} nats; forgetting = old-data loss at the target − before finetuning`,
    '',
    '| D | params | tokens/param | pretraining tokens | old-data loss before | forgetting, no replay | tokens to target | forgetting, kl_pre replay | tokens to target |',
    '|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
    ...rows,
    '',
    '| Spearman ρ of forgetting | no replay | kl_pre replay |',
    '|---|---:|---:|',
    `| vs tokens/param | ${rhoText(r.none.tokens_per_param)} | ${rhoText(r.kl_pre.tokens_per_param)} |`,
    `| vs width | ${rhoText(r.none.width)} | ${rhoText(r.kl_pre.width)} |`,
  ].join('\n');
}

async function writeCapacityFigures(dir: string, points: CapacityPoint[], target: number): Promise<void> {
  const reached = points.flatMap((p) => FINETUNE_METHODS.filter((m) => p.finetune[m]?.reached).map((m) => ({ p, m, f: p.finetune[m]!.forgetting! })));
  const missed = points.reduce((n, p) => n + FINETUNE_METHODS.filter((m) => p.finetune[m] && !p.finetune[m]!.reached).length, 0);
  const sub = `finetuned to new-data loss ${target.toFixed(3)}${missed ? `; ${missed} run(s) missed the target and are not drawn` : ''}`;
  await writeFigure(dir, 'forgetting_vs_tokens_per_param', linePanels({
    title: 'Forgetting against pretraining length',
    subtitle: sub,
    rows: reached.map(({ p, m, f }) => ({ method: m, x: p.tokens_per_param, y: f, series: `D=${p.D}`, order: p.D })),
    xTitle: 'pretraining tokens per parameter (log)',
    xLog: true,
    seriesTitle: 'width',
  }));
  await writeFigure(dir, 'forgetting_vs_width', linePanels({
    title: 'Forgetting against model width',
    subtitle: sub,
    rows: reached.map(({ p, m, f }) => ({ method: m, x: p.D, y: f, series: `${numLabel(p.tokens_per_param)} tok/param`, order: p.tokens_per_param })),
    xTitle: 'width D',
    xLog: false,
    seriesTitle: 'pretraining',
  }));
  await writeFigure(dir, 'forgetting_grid', heatmapPanels({
    title: 'Forgetting over the grid',
    subtitle: `finetuned to new-data loss ${target.toFixed(3)}; grey: missed the target`,
    cells: points.flatMap((p) =>
      FINETUNE_METHODS.filter((m) => p.finetune[m] !== null).map((m) => ({
        method: m,
        col: numLabel(p.tokens_per_param),
        colOrder: p.tokens_per_param,
        row: String(p.D),
        rowOrder: p.D,
        value: p.finetune[m]!.reached ? p.finetune[m]!.forgetting : null,
      })),
    ),
    colTitle: 'pretraining tokens per parameter',
    rowTitle: 'width D',
  }));
}
