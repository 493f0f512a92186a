/**
 * `unforget demo`: the toy continual-learning experiment at the `demo` preset, once without replay
 * and once with self-generated replay, side by side in one figure and one accuracy table.
 */
import fs from 'node:fs';
import path from 'node:path';
import { loadConfig } from '../../config/load.js';
import { UnforgetError } from '../../errors.js';
import { writeJsonAtomic } from '../../io/atomic.js';
import { continualFigureSpec, writeFigure } from '../../report/plot.js';
import type { Reporter } from '../../train/train.js';
import { TOY_PRESETS, runToyContinual, toySections, type ToyResult } from './continual.js';

export interface DemoOutcome {
  dir: string;
  noReplay: ToyResult;
  selfReplay: ToyResult;
  table: string;
  seconds: number;
}

export function accuracyTable(tasks: string[], columns: Array<[string, Record<string, number | null>]>): string {
  const head = `| task | ${columns.map((c) => c[0]).join(' | ')} |`;
  const sep = `|---|${columns.map(() => '---:').join('|')}|`;
  const rows = tasks.map((t) => `| ${t} | ${columns.map(([, acc]) => (acc[t] === null || acc[t] === undefined ? '-' : `${(100 * acc[t]!).toFixed(1)}%`)).join(' | ')} |`);
  return [head, sep, ...rows].join('\n');
}

export async function runDemo(out: string, overrides: string[], opts: { reporter?: Reporter; shouldStop?: () => boolean } = {}): Promise<DemoOutcome> {
  if (fs.existsSync(out) && fs.readdirSync(out).length > 0) throw new UnforgetError(`demo output folder ${out} already exists and is not empty; pass another --out`);
  const t0 = performance.now();
  const base = TOY_PRESETS.demo!;
  const load = (extra: string[]) => loadConfig([], [...overrides, ...extra], base as never, { sections: toySections, requireStop: false });
  const replayCfg = load([`log.dir=${out}`, 'run.id=self-replay']);
  if (replayCfg.reg.method === null) throw new UnforgetError('demo: the replay run needs a reg.method (default ntp_pre); use `unforget experiment toy-continual` for a single run');
  const plainCfg = load([`log.dir=${out}`, 'run.id=no-replay', 'reg.method=null']);
  const noReplay = await runToyContinual(plainCfg, { ...opts, label: 'no-replay' });
  const selfReplay = await runToyContinual(replayCfg, { ...opts, label: 'self-replay' });
  const tasks = noReplay.summary.tasks as string[];
  const replayTitle = `${replayCfg.reg.synth ? 'self-generated' : 'real'} replay (${replayCfg.reg.method}, coeff ${replayCfg.reg.coeff})`;
  await writeFigure(out, 'plot', continualFigureSpec({
    tasks,
    panels: [
      { title: 'without replay', points: noReplay.points, boundaries: noReplay.boundaries },
      { title: `with ${replayTitle}`, points: selfReplay.points, boundaries: selfReplay.boundaries },
    ],
  }));
  const table = accuracyTable(tasks, [
    ['no replay', noReplay.summary.final_accuracy as Record<string, number | null>],
    [replayTitle, selfReplay.summary.final_accuracy as Record<string, number | null>],
  ]);
  const seconds = (performance.now() - t0) / 1000;
  writeJsonAtomic(path.join(out, 'summary.json'), {
    tasks,
    no_replay: noReplay.summary.final_accuracy,
    self_replay: selfReplay.summary.final_accuracy,
    wall_time_s: seconds,
  });
  return { dir: out, noReplay, selfReplay, table, seconds };
}
