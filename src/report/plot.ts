/**
 * Figures: Vega-Lite specs rendered headless to SVG (vega, renderer 'none') and rasterised to PNG
 * (resvg). No browser, no canvas, no network: a figure is a pure function of its spec and the fonts
 * on the machine.
 *
 * Fonts. Vega lays text out with a width estimate, so the SVG is the same everywhere; only the PNG
 * needs a real font. We name a font stack in the SVG (DejaVu Sans first, which Debian/Ubuntu ship in
 * `fonts-dejavu-core`), hand resvg the first of a few well-known font files that exists, and also let
 * it load the system fonts. When no font exists at all the PNG is still written, without text.
 */
import fs from 'node:fs';
import path from 'node:path';
import { renderAsync, type ResvgRenderOptions } from '@resvg/resvg-js';
import { parse as parseVega, View } from 'vega';
import { compile, type TopLevelSpec } from 'vega-lite';
import { writeFileAtomic } from '../io/atomic.js';
import { UnforgetError } from '../errors.js';

/** The font-family list written into every SVG; viewers and resvg take the first one they have. */
export const FONT_STACK = 'DejaVu Sans, Liberation Sans, Arial, Helvetica, sans-serif';

/** PNG pixels per SVG pixel: figures are laid out at ~420 px per panel, which is small on a screen. */
const PNG_SCALE = 2;

const FONT_CANDIDATES: ReadonlyArray<{ family: string; file: string }> = [
  { family: 'DejaVu Sans', file: '/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf' }, // Debian, Ubuntu
  { family: 'DejaVu Sans', file: '/usr/share/fonts/dejavu-sans-fonts/DejaVuSans.ttf' }, // Fedora
  { family: 'DejaVu Sans', file: '/usr/share/fonts/TTF/DejaVuSans.ttf' }, // Arch
  { family: 'DejaVu Sans', file: '/usr/share/fonts/dejavu/DejaVuSans.ttf' }, // Alpine, older Red Hat
  { family: 'Liberation Sans', file: '/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf' },
  { family: 'Liberation Sans', file: '/usr/share/fonts/liberation-sans/LiberationSans-Regular.ttf' },
  { family: 'Arial', file: '/System/Library/Fonts/Supplemental/Arial.ttf' }, // macOS
  { family: 'Arial', file: '/Library/Fonts/Arial.ttf' },
  { family: 'Arial', file: 'C:\\Windows\\Fonts\\arial.ttf' },
];

let fontOptions: ResvgRenderOptions['font'] | undefined;

/** resvg font options, found once per process. */
function resvgFontOptions(): NonNullable<ResvgRenderOptions['font']> {
  if (fontOptions === undefined) {
    const found = FONT_CANDIDATES.find((c) => fs.existsSync(c.file));
    // Without a known file, resvg falls back to the first system font it finds (or draws no text).
    fontOptions = found
      ? { loadSystemFonts: true, fontFiles: [found.file], defaultFontFamily: found.family, sansSerifFamily: found.family }
      : { loadSystemFonts: true };
  }
  return fontOptions;
}

/** Readable sizes for a figure that ends up in a paper or a README at PNG_SCALE. */
const BASE_CONFIG = {
  font: FONT_STACK,
  view: { stroke: '#888' },
  title: { fontSize: 15, fontWeight: 'bold', anchor: 'middle' },
  axis: { labelFontSize: 12, titleFontSize: 13, titleFontWeight: 'normal', gridColor: '#e6e6e6' },
  // labelLimit 0: vega's width estimate is generous and would truncate names like 'self-generated replay'.
  legend: { labelFontSize: 12, titleFontSize: 13, titleFontWeight: 'normal', symbolStrokeWidth: 3, labelLimit: 0 },
  line: { strokeWidth: 2 },
} as const;

/**
 * Compiles a Vega-Lite spec and renders it: SVG from vega's headless view, PNG from resvg on a white
 * background at twice the SVG's size. The spec's own `config` wins over the defaults above.
 */
export async function renderVegaLiteSvg(spec: object): Promise<string> {
  const vegaSpec = compile(spec as TopLevelSpec, { config: BASE_CONFIG as TopLevelSpec['config'] }).spec;
  const view = new View(parseVega(vegaSpec), { renderer: 'none' });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

export async function renderVegaLite(spec: object): Promise<{ svg: string; png: Uint8Array }> {
  const svg = await renderVegaLiteSvg(spec);
  const image = await renderAsync(svg, {
    background: 'white',
    fitTo: { mode: 'zoom', value: PNG_SCALE },
    font: resvgFontOptions(),
    logLevel: 'off',
  });
  const png = image.asPng();
  return { svg, png: new Uint8Array(png.buffer, png.byteOffset, png.byteLength) };
}

/** Renders `spec` and writes `<dir>/<name>.svg` and `<dir>/<name>.png`, each atomically; creates `dir`. */
export async function writeFigure(
  dir: string,
  name: string,
  spec: object,
): Promise<{ svgPath: string; pngPath: string }> {
  const { svg, png } = await renderVegaLite(spec);
  fs.mkdirSync(dir, { recursive: true });
  const svgPath = path.join(dir, `${name}.svg`);
  const pngPath = path.join(dir, `${name}.png`);
  writeFileAtomic(svgPath, svg);
  writeFileAtomic(pngPath, png);
  return { svgPath, pngPath };
}

export interface AccuracyPoint {
  step: number;
  task: string;
  accuracy: number;
}

export interface ContinualPanel {
  title: string;
  points: AccuracyPoint[];
  /** Training steps at which a new task starts (drawn as dashed vertical rules). */
  boundaries: number[];
}

export interface ContinualFigureInput {
  panels: ContinualPanel[];
  /** Tasks in training order: the colour and legend order. */
  tasks: string[];
}

const PANEL_WIDTH = 420;
const PANEL_HEIGHT = 280;

/**
 * The toy continual-learning figure: one panel per run side by side, validation accuracy of every
 * task against training step, dashed rules where a new task starts. The y scale (0..1) and the task
 * colours are shared, so the panels compare at a glance.
 */
export function continualFigureSpec(input: ContinualFigureInput): object {
  if (input.panels.length === 0) throw new UnforgetError('continual figure: no panels');
  if (input.tasks.length === 0) throw new UnforgetError('continual figure: no tasks');
  const known = new Set(input.tasks);
  for (const panel of input.panels) {
    for (const p of panel.points) {
      if (!known.has(p.task)) {
        throw new UnforgetError(
          `continual figure: panel '${panel.title}' has task '${p.task}', not in tasks [${input.tasks.join(', ')}]`,
        );
      }
    }
  }
  const color = {
    field: 'task',
    type: 'nominal',
    title: 'task',
    scale: { domain: input.tasks },
    legend: { orient: 'right' },
  };
  const panels = input.panels.map((panel) => {
    const layers: object[] = [
      {
        data: { values: panel.points },
        mark: { type: 'line', point: { size: 18, filled: true } },
        encoding: {
          x: { field: 'step', type: 'quantitative', title: 'training step', scale: { zero: true } },
          y: {
            field: 'accuracy',
            type: 'quantitative',
            title: 'accuracy',
            scale: { domain: [0, 1] },
            axis: { format: '%', tickCount: 5 },
          },
          color,
          order: { field: 'step', type: 'quantitative' },
        },
      },
    ];
    if (panel.boundaries.length > 0) {
      layers.push({
        data: { values: panel.boundaries.map((step) => ({ step })) },
        mark: { type: 'rule', strokeDash: [6, 4], color: '#555', strokeWidth: 1.5 },
        encoding: { x: { field: 'step', type: 'quantitative' } },
      });
    }
    return { title: panel.title, width: PANEL_WIDTH, height: PANEL_HEIGHT, layer: layers };
  });
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    hconcat: panels,
    spacing: 30,
    resolve: { scale: { y: 'shared', color: 'shared' } },
  };
}

export interface LinesFigureInput {
  title?: string;
  xTitle: string;
  yTitle: string;
  series: Array<{ name: string; points: Array<{ x: number; y: number }> }>;
  logX?: boolean;
  logY?: boolean;
}

/** A nice log domain rounds out to whole decades, which can leave most of the plot empty. */
const LOG_SCALE = { type: 'log', nice: false } as const;

/**
 * A generic multi-line chart (loss curves and the like); one colour per series, legend in series
 * order. Points a log axis cannot show (≤ 0) and non-finite points (a diverged loss) are left out,
 * since vega would otherwise draw nothing for the whole series.
 */
export function linesFigureSpec(input: LinesFigureInput): object {
  const shown = (v: number, log: boolean | undefined) => Number.isFinite(v) && (!log || v > 0);
  const values = input.series.flatMap((s) =>
    s.points.filter((p) => shown(p.x, input.logX) && shown(p.y, input.logY)).map((p) => ({ series: s.name, x: p.x, y: p.y })),
  );
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    ...(input.title !== undefined ? { title: input.title } : {}),
    width: 480,
    height: 300,
    data: { values },
    mark: { type: 'line' },
    encoding: {
      x: {
        field: 'x',
        type: 'quantitative',
        title: input.xTitle,
        scale: input.logX ? LOG_SCALE : { zero: false },
      },
      y: {
        field: 'y',
        type: 'quantitative',
        title: input.yTitle,
        scale: input.logY ? LOG_SCALE : { zero: false },
      },
      color: {
        field: 'series',
        type: 'nominal',
        title: null,
        scale: { domain: input.series.map((s) => s.name) },
      },
      order: { field: 'x', type: 'quantitative' },
    },
  };
}
