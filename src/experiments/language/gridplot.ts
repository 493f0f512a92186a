/**
 * Figures of the grid experiments (capacity, lr): the same plot twice, side by side, once for
 * finetuning without replay and once with self-generated KL replay. Each panel has its own forgetting
 * scale: replay forgets an order of magnitude less, and on a shared scale its trend would be a flat
 * line at zero; the values themselves are in the table and summary.json.
 */
import { FONT_STACK } from '../../report/plot.js';

export const FINETUNE_METHODS = ['none', 'kl_pre'] as const;
export type FinetuneMethod = (typeof FINETUNE_METHODS)[number];

export const METHOD_TITLE: Record<FinetuneMethod, string> = {
  none: 'without replay',
  kl_pre: 'with self-generated replay (kl_pre)',
};

export interface LineRow {
  method: FinetuneMethod;
  x: number;
  y: number;
  /** The line this point belongs to (its label). */
  series: string;
  /** Sort key of the series in the legend. */
  order: number;
}

/** Forgetting against x, one line per series, a panel per method. */
export function linePanels(o: { title: string; subtitle: string; rows: LineRow[]; xTitle: string; xLog: boolean; seriesTitle: string }): object {
  const domain = [...new Map([...o.rows].sort((a, b) => a.order - b.order).map((r) => [r.series, r.order])).keys()];
  const panel = (m: FinetuneMethod) => ({
    title: METHOD_TITLE[m],
    width: 320,
    height: 260,
    data: { values: o.rows.filter((r) => r.method === m) },
    mark: { type: 'line', point: { size: 50, filled: true } },
    encoding: {
      x: { field: 'x', type: 'quantitative', title: o.xTitle, scale: o.xLog ? { type: 'log', nice: false, padding: 12 } : { zero: false, nice: false, padding: 12 } },
      y: { field: 'y', type: 'quantitative', title: 'forgetting (nats/token)', scale: { zero: true } },
      color: { field: 'series', type: 'ordinal', title: o.seriesTitle, scale: { domain, scheme: 'viridis' } },
      order: { field: 'x', type: 'quantitative' },
    },
  });
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: { text: o.title, subtitle: o.subtitle, font: FONT_STACK, subtitleFont: FONT_STACK },
    config: { font: FONT_STACK },
    hconcat: FINETUNE_METHODS.map(panel),
    resolve: { scale: { x: 'shared', y: 'independent', color: 'shared' } },
  };
}

export interface CellRow {
  method: FinetuneMethod;
  col: string;
  colOrder: number;
  row: string;
  rowOrder: number;
  /** Null: the run missed the target. */
  value: number | null;
}

/** The 2-D grid as a heatmap of forgetting, a panel per method; cells that missed the target say so. */
export function heatmapPanels(o: { title: string; subtitle: string; cells: CellRow[]; colTitle: string; rowTitle: string }): object {
  const cols = [...new Map([...o.cells].sort((a, b) => a.colOrder - b.colOrder).map((c) => [c.col, 0])).keys()];
  const rows = [...new Map([...o.cells].sort((a, b) => b.rowOrder - a.rowOrder).map((c) => [c.row, 0])).keys()];
  const values = o.cells.map((c) => ({ ...c, label: c.value === null ? 'missed' : c.value.toFixed(3) }));
  const enc = {
    x: { field: 'col', type: 'ordinal', title: o.colTitle, sort: cols },
    y: { field: 'row', type: 'ordinal', title: o.rowTitle, sort: rows },
  };
  const panel = (m: FinetuneMethod) => ({
    title: METHOD_TITLE[m],
    width: { step: 54 },
    height: { step: 36 },
    data: { values: values.filter((v) => v.method === m) },
    layer: [
      { mark: { type: 'rect', color: '#dddddd' }, encoding: enc },
      { transform: [{ filter: 'datum.value !== null' }], mark: 'rect', encoding: { ...enc, color: { field: 'value', type: 'quantitative', title: 'forgetting', scale: { scheme: { name: 'orangered', extent: [0, 0.7] } } } } },
      { mark: { type: 'text', fontSize: 10 }, encoding: { ...enc, text: { field: 'label' } } },
    ],
  });
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: { text: o.title, subtitle: o.subtitle, font: FONT_STACK, subtitleFont: FONT_STACK },
    config: { font: FONT_STACK },
    hconcat: FINETUNE_METHODS.map(panel),
    resolve: { scale: { color: 'independent' } },
  };
}
