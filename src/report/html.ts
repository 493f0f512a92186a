/**
 * Pieces of a self-contained HTML page: escaping, tables, and figures inlined as SVG with a PNG
 * download (data: URI) and their Vega-Lite spec. Nothing on the page refers to a file or a network
 * address, so it can be mailed or opened offline.
 */
import { renderVegaLite, renderVegaLiteSvg } from './plot.js';

/** Escapes text for HTML element content and quoted attribute values. */
export function esc(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}

/** A number as a table shows it: integers in full, others to 6 significant digits. */
export function formatNumber(v: number): string {
  if (!Number.isFinite(v)) return String(v);
  if (Number.isInteger(v)) return String(v);
  return String(Number(v.toPrecision(6)));
}

export function formatCell(v: unknown): string {
  if (v === null || v === undefined) return '';
  if (typeof v === 'number') return formatNumber(v);
  if (typeof v === 'string') return v;
  return JSON.stringify(v);
}

export interface TableOptions {
  /** Row indices drawn bold (e.g. the best run). */
  highlight?: ReadonlySet<number>;
  className?: string;
}

/** A table of escaped cells; numbers are right-aligned. */
export function table(headers: readonly string[], rows: ReadonlyArray<readonly unknown[]>, opts: TableOptions = {}): string {
  const head = `<tr>${headers.map((h) => `<th>${esc(h)}</th>`).join('')}</tr>`;
  const body = rows
    .map((r, i) => {
      const cells = r.map((v) => `<td${typeof v === 'number' ? ' class="num"' : ''}>${esc(formatCell(v))}</td>`).join('');
      return `<tr${opts.highlight?.has(i) ? ' class="best"' : ''}>${cells}</tr>`;
    })
    .join('\n');
  return `<div class="scroll"><table${opts.className ? ` class="${esc(opts.className)}"` : ''}>\n<thead>${head}</thead>\n<tbody>\n${body}\n</tbody></table></div>`;
}

export function details(summary: string, bodyHtml: string, open = false): string {
  return `<details${open ? ' open' : ''}><summary>${esc(summary)}</summary>${bodyHtml}</details>`;
}

export function pre(text: string): string {
  return `<pre>${esc(text)}</pre>`;
}

let figureCounter = 0;

/**
 * Gives every id in an SVG (clip paths, gradients) a per-figure prefix: several SVGs inlined in one
 * page share one id space, and vega numbers its clip paths from 1 in every process.
 */
export function scopeSvgIds(svg: string, prefix: string): string {
  return svg
    .replace(/\bid="([^"]+)"/g, (_, id: string) => `id="${prefix}${id}"`)
    .replace(/url\(#([^)]+)\)/g, (_, id: string) => `url(#${prefix}${id})`)
    .replace(/\bhref="#([^"]+)"/g, (_, id: string) => `href="#${prefix}${id}"`);
}

/** An SVG file's markup fit to inline, or null when it holds script or event handlers (never inlined). */
export function inlineableSvg(text: string): string | null {
  const start = text.indexOf('<svg');
  if (start < 0) return null;
  const svg = text.slice(start);
  if (/<script|<foreignObject|<[^>]*\son[a-z]+\s*=|javascript:|(?:href|src)\s*=\s*["']?\s*(?:[a-z][a-z0-9+.-]*:|\/\/)/i.test(svg)) return null;
  return svg;
}

function slug(s: string): string {
  return s.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '').slice(0, 60) || 'figure';
}

export function pngLink(png: Uint8Array, fileName: string): string {
  return `<a class="dl" download="${esc(fileName)}" href="data:image/png;base64,${Buffer.from(png).toString('base64')}">PNG</a>`;
}

/** A figure from a Vega-Lite spec: inline SVG, PNG download (unless `withPng` is false), and the spec itself. */
export async function figure(title: string, spec: object, withPng = true): Promise<string> {
  const { svg, png } = withPng ? await renderVegaLite(spec) : { svg: await renderVegaLiteSvg(spec), png: null };
  const safe = inlineableSvg(svg);
  // vega escapes text it draws; anything else reaching here is a bug, not user content to show.
  if (safe === null) throw new Error(`figure '${title}': vega produced SVG with active content`);
  const id = `f${++figureCounter}-`;
  return [
    '<figure>',
    `<div class="svg">${scopeSvgIds(safe, id)}</div>`,
    `<figcaption>${esc(title)}${png ? ` · ${pngLink(png, `${slug(title)}.png`)}` : ''}</figcaption>`,
    details('Vega-Lite spec', pre(JSON.stringify(spec, null, 1))),
    '</figure>',
  ].join('\n');
}

/**
 * A figure file an experiment already wrote: its SVG inlined (with the PNG as a download unless
 * `withPng` is false), or the PNG shown.
 */
export function existingFigure(title: string, svgText: string | null, png: Uint8Array | null, name: string, withPng = true): string {
  const parts = ['<figure>'];
  const svg = svgText === null ? null : inlineableSvg(svgText);
  if (svg !== null) parts.push(`<div class="svg">${scopeSvgIds(svg, `f${++figureCounter}-`)}</div>`);
  else if (png) parts.push(`<img alt="${esc(title)}" src="data:image/png;base64,${Buffer.from(png).toString('base64')}">`);
  else parts.push(`<p class="note">${esc(name)}.svg was not inlined: it holds script or external references.</p>`);
  // The PNG shown as the image needs no second copy as a link.
  const link = png && withPng && svg !== null;
  parts.push(`<figcaption>${esc(title)}${link ? ` · ${pngLink(png, `${name}.png`)}` : ''}</figcaption>`, '</figure>');
  return parts.join('\n');
}

const CSS = `
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;margin:2em auto;max-width:1100px;padding:0 1em;color:#222;line-height:1.4}
h1{font-size:1.6em}h2{font-size:1.3em;border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:2em}h3{font-size:1.1em;margin-top:1.5em}
table{border-collapse:collapse;font-size:.9em;margin:.5em 0}th,td{border:1px solid #ddd;padding:.25em .6em;text-align:left;vertical-align:top}
th{background:#f4f4f4}td.num{text-align:right;font-variant-numeric:tabular-nums}tr.best td{font-weight:bold;background:#eef7ee}
.scroll{overflow-x:auto}pre{background:#f7f7f7;padding:.8em;overflow-x:auto;font-size:.85em}
figure{margin:1em 0}figure .svg svg{max-width:100%;height:auto}figure img{max-width:100%}figcaption{font-size:.9em;color:#555}
details{margin:.4em 0}summary{cursor:pointer;color:#555}.note{color:#a33}.meta{color:#666;font-size:.9em}nav ul{padding-left:1.2em}
a.dl{font-size:.85em}
`;

export function page(title: string, bodyHtml: string): string {
  return [
    '<!DOCTYPE html>',
    '<html lang="en">',
    '<head>',
    '<meta charset="utf-8">',
    '<meta name="viewport" content="width=device-width, initial-scale=1">',
    `<title>${esc(title)}</title>`,
    `<style>${CSS}</style>`,
    '</head>',
    '<body>',
    bodyHtml,
    '</body>',
    '</html>',
    '',
  ].join('\n');
}
