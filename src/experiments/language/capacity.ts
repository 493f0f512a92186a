/**
 * `unforget experiment capacity`: forgetting against model capacity. Two sweeps, each pretraining
 * on the old language and then finetuning on the new one with standard finetuning (no replay):
 *   - model size: several widths D, each pretrained for the same number of tokens per parameter;
 *   - pretraining length: one width, several tokens-per-parameter values.
 * The study's finding: models with spare capacity (large, or little pretrained) forget less; a
 * model whose capacity is used up forgets more. The figure shows the old-data loss before and
 * after finetuning for both sweeps.
 */
import path from 'node:path';
import { int, intOrNull, num, numList, section, type ConfigWith } from '../../config/schema.js';
import { ConfigError, UnforgetError } from '../../errors.js';
import { writeFileAtomic, writeJsonAtomic } from '../../io/atomic.js';
import { FONT_STACK, writeFigure } from '../../report/plot.js';
import { silentReporter, train, type Reporter } from '../../train/train.js';
import { childConfig, experimentDir } from './common.js';
import { checkDataConfig, languageDataSection, prepareLanguageData } from './data.js';

export const capacitySections = {
  lang: languageDataSection,
  capacity: section({
    /** Widths of the model-size sweep (each must be a multiple of model.H). */
    widths: numList({ gt: 0, int: true }).default([32, 64, 96, 128]),
    /** Tokens per parameter of the model-size sweep. */
    tokens_per_param: num({ gt: 0 }).default(4),
    /** Width of the pretraining-length sweep. */
    length_width: int({ gt: 0 }).default(64),
    /** Tokens-per-parameter values of the pretraining-length sweep. */
    lengths: numList({ gt: 0 }).default([1, 2, 4, 8]),
    finetune_tokens: int({ gt: 0 }).default(300_000),
    finetune_lr: num({ gt: 0 }).default(1e-3),
    threads: intOrNull({ gt: 0 }).default(null),
  }),
};
export type CapacityConfig = ConfigWith<typeof capacitySections>;

export const CAPACITY_PRESETS: Record<string, Record<string, unknown>> = {
  /** Laptop scale: 7 pretraining and 7 finetuning runs (D=64 at 4 tokens/parameter is in both sweeps; the README's table). */
  small: {
    model: { L: 2, H: 16, T: 128 },
    opt: { batch_size: 32, lr: 3e-3, b2: 0.99, warmup_tokens: 50_000, lr_decay: 'cosine' },
    data: { num_tokens_valid: 65_536 },
    log: { every_tokens: 1_000_000 },
    capacity: { widths: [32, 64, 96, 128], tokens_per_param: 4, length_width: 64, lengths: [1, 2, 4, 8], finetune_tokens: 300_000, finetune_lr: 1e-3 },
  },
  /** The study's sweep shape at a larger scale; for a bigger machine. */
  paper: {
    model: { L: 8, H: 64, T: 512 },
    opt: { batch_size: 64, lr: 1e-3, b2: 0.95, warmup_tokens: 1_000_000, lr_decay: 'cosine' },
    data: { num_tokens_valid: 1_048_576 },
    log: { every_tokens: 10_000_000 },
    capacity: { widths: [256, 384, 512, 768, 1024], tokens_per_param: 20, length_width: 512, lengths: [5, 10, 20, 40, 80], finetune_tokens: 20_000_000, finetune_lr: 3e-4 },
  },
};

export interface CapacityPoint {
  sweep: 'size' | 'length';
  D: number;
  tokens_per_param: number;
  n_params: number;
  pretrain_tokens: number;
  /** Old-data loss after pretraining (before finetuning) and after finetuning. */
  prev_ntp_before: number;
  prev_ntp_after: number;
  forgetting: number;
  valid_ntp_after: number;
  run_dirs: { pretrain: string; finetune: string };
}

export async function runCapacity(cfgIn: CapacityConfig, opts: { reporter?: Reporter; shouldStop?: () => boolean } = {}): Promise<{ runDir: string; summary: Record<string, unknown>; table: string }> {
  const cfg: CapacityConfig = structuredClone(cfgIn);
  const reporter = opts.reporter ?? silentReporter;
  const t0 = performance.now();
  const c = cfg.capacity;
  for (const D of [...c.widths, c.length_width]) {
    if (D % cfg.model.H !== 0) throw new ConfigError('capacity.widths', `width ${D} is not a multiple of the head size model.H=${cfg.model.H}`);
  }
  if (c.widths.length < 2) throw new ConfigError('capacity.widths', 'needs at least two widths');
  if (cfg.model.load_path) throw new ConfigError('model.load_path', 'capacity pretrains its own models');
  checkDataConfig(cfg.lang, 'lang');
  const dir = experimentDir(cfg);
  const data = await prepareLanguageData(cfg.lang, 'lang', (l) => reporter.log(l));
  const common = { 'log.dir': dir, 'model.save_dir': null, 'run.threads': c.threads ?? cfg.run.threads, 'reg.method': null };

  const done = new Map<string, CapacityPoint>();
  const points: CapacityPoint[] = [];
  const one = async (sweep: 'size' | 'length', D: number, tpp: number) => {
    const key = `D${D}-tpp${tpp}`;
    // A model in both sweeps (same width and length) is trained once.
    const twin = done.get(key);
    if (twin) {
      points.push({ ...twin, sweep });
      return;
    }
    let pre: string;
    {
      reporter.log(`pretraining D=${D} for ${tpp} tokens/parameter`);
      const r = await train(childConfig(cfg, { ...common, 'run.id': `pretrain-${key}`, 'model.D': D, 'model.V': data.vocabSize, 'data.path': data.oldBin, 'stop.tokens_per_param': tpp }), opts);
      if (r.summary.stop_reason === 'interrupted') throw new UnforgetError(`interrupted; finished runs are kept in ${dir}`);
      pre = r.runDir;
    }
    reporter.log(`finetuning D=${D} (${tpp} tokens/parameter) on the new language`);
    const f = await train(
      childConfig(cfg, {
        ...common,
        'run.id': `finetune-${key}`,
        'model.load_path': pre,
        'data.path': data.newBin,
        'stop.num_tokens_train': c.finetune_tokens,
        'opt.lr': c.finetune_lr,
        'log.every_tokens': Math.max(1, Math.floor(c.finetune_tokens / 4)),
      }),
      opts,
    );
    if (f.summary.stop_reason === 'interrupted') throw new UnforgetError(`interrupted; finished runs are kept in ${dir}`);
    const s = f.summary;
    const nParams = (s.n_param_nonembed as number) + (s.n_param_embed as number);
    const point: CapacityPoint = {
      sweep,
      D,
      tokens_per_param: tpp,
      n_params: nParams,
      pretrain_tokens: Math.round(tpp * nParams),
      prev_ntp_before: s.prev_ntp_start as number,
      prev_ntp_after: s.prev_ntp as number,
      forgetting: s.forgetting as number,
      valid_ntp_after: s.valid_ntp as number,
      run_dirs: { pretrain: path.relative(dir, pre), finetune: path.relative(dir, f.runDir) },
    };
    done.set(key, point);
    points.push(point);
  };
  for (const D of c.widths) await one('size', D, c.tokens_per_param);
  for (const tpp of c.lengths) await one('length', c.length_width, tpp);

  await writeFigure(dir, 'plot', capacityFigureSpec(points));
  const table = capacityTable(points);
  writeFileAtomic(path.join(dir, 'table.md'), table + '\n');
  const summary = { experiment: 'capacity', data, points, wall_time_s: (performance.now() - t0) / 1000 };
  writeJsonAtomic(path.join(dir, 'summary.json'), summary);
  return { runDir: dir, summary, table };
}

export function capacityTable(points: CapacityPoint[]): string {
  const head = '| sweep | D | params | tokens/param | old-data loss before | after | forgetting | new-data loss after |';
  const rows = points.map(
    (p) => `| ${p.sweep} | ${p.D} | ${p.n_params} | ${p.tokens_per_param} | ${p.prev_ntp_before.toFixed(3)} | ${p.prev_ntp_after.toFixed(3)} | ${p.forgetting.toFixed(3)} | ${p.valid_ntp_after.toFixed(3)} |`,
  );
  return [head, '|---|---:|---:|---:|---:|---:|---:|---:|', ...rows].join('\n');
}

/** Two panels: old-data loss before/after finetuning against parameters, and against tokens/parameter. */
export function capacityFigureSpec(points: CapacityPoint[]): object {
  const rows = (sweep: 'size' | 'length', xField: 'n_params' | 'tokens_per_param') =>
    points
      .filter((p) => p.sweep === sweep)
      .flatMap((p) => [
        { x: p[xField], loss: p.prev_ntp_before, when: 'before finetuning' },
        { x: p[xField], loss: p.prev_ntp_after, when: 'after finetuning' },
      ]);
  const panel = (values: object[], title: string, xTitle: string) => ({
    title,
    width: 300,
    height: 260,
    data: { values },
    mark: { type: 'line', point: true },
    encoding: {
      x: { field: 'x', type: 'quantitative', title: xTitle, scale: { type: 'log', nice: false } },
      y: { field: 'loss', type: 'quantitative', title: 'old-data loss (prev_ntp, nats/token)', scale: { zero: false } },
      color: { field: 'when', type: 'nominal', title: null, scale: { domain: ['before finetuning', 'after finetuning'] } },
    },
  });
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    config: { font: FONT_STACK },
    hconcat: [
      panel(rows('size', 'n_params'), 'Model size (fixed tokens/parameter)', 'parameters (log)'),
      panel(rows('length', 'tokens_per_param'), 'Pretraining length (fixed size)', 'pretraining tokens per parameter (log)'),
    ],
  };
}
