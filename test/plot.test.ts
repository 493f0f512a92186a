import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  continualFigureSpec,
  linesFigureSpec,
  renderVegaLite,
  writeFigure,
  type AccuracyPoint,
  type ContinualFigureInput,
} from '../src/report/plot.js';

const TASKS = ['add', 'reversal', 'sort', 'modadd'];
const STEPS_PER_TASK = 400;
const EVAL_EVERY = 50;

/** Synthetic curves shaped like the study's: each task learned in its block, then kept or forgotten. */
function syntheticPoints(forgets: boolean): AccuracyPoint[] {
  const points: AccuracyPoint[] = [];
  for (let step = 0; step <= TASKS.length * STEPS_PER_TASK; step += EVAL_EVERY) {
    TASKS.forEach((task, k) => {
      const start = k * STEPS_PER_TASK;
      let accuracy = 0;
      if (step > start) {
        const learned = 1 - Math.exp(-(Math.min(step, start + STEPS_PER_TASK) - start) / 80);
        const since = Math.max(0, step - start - STEPS_PER_TASK);
        accuracy = forgets ? learned * Math.exp(-since / 150) : learned * (1 - 0.02 * (since / STEPS_PER_TASK));
      }
      points.push({ step, task, accuracy });
    });
  }
  return points;
}

function demoContinualInput(): ContinualFigureInput {
  const boundaries = TASKS.slice(1).map((_, k) => (k + 1) * STEPS_PER_TASK);
  return {
    tasks: TASKS,
    panels: [
      { title: 'without replay', points: syntheticPoints(true), boundaries },
      { title: 'with self-generated replay', points: syntheticPoints(false), boundaries },
    ],
  };
}

/** Width and height from the IHDR chunk, which the PNG format requires to come first. */
function pngSize(png: Uint8Array): { width: number; height: number } {
  const signature = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];
  assert.deepEqual([...png.subarray(0, 8)], signature, 'PNG signature');
  const view = new DataView(png.buffer, png.byteOffset, png.byteLength);
  assert.equal(Buffer.from(png.subarray(12, 16)).toString('ascii'), 'IHDR');
  return { width: view.getUint32(16), height: view.getUint32(20) };
}

test('continual figure: two panels, four tasks, SVG text and a PNG of plausible size', async () => {
  const { svg, png } = await renderVegaLite(continualFigureSpec(demoContinualInput()));
  for (const text of ['without replay', 'with self-generated replay', ...TASKS, 'accuracy', 'training step', '100%']) {
    assert.ok(svg.includes(text), `SVG lacks '${text}'`);
  }
  // Three dashed boundary rules per panel.
  assert.equal(svg.match(/stroke-dasharray="6,4"/g)?.length, 6);
  const { width, height } = pngSize(png);
  assert.ok(width > 400 && height > 400, `PNG is ${width}x${height}`);
  // Two ~420 px panels side by side, rendered at 2x.
  assert.ok(width > 2 * 2 * 420, `PNG width ${width} is not about 2x two panels`);
});

test('continual figure rejects a task missing from the task list', () => {
  const input = demoContinualInput();
  input.panels[0]!.points.push({ step: 0, task: 'copy', accuracy: 0 });
  assert.throws(() => continualFigureSpec(input), /task 'copy'/);
});

test('lines figure on log axes drops points a log scale cannot show', async () => {
  const spec = linesFigureSpec({
    title: 'loss',
    xTitle: 'step',
    yTitle: 'validation loss',
    logX: true,
    logY: true,
    series: [
      { name: 'no replay', points: [0, 1, 10, 100, 1000].map((x) => ({ x, y: 3 / Math.sqrt(x + 1) })) },
      { name: 'replay', points: [1, 10, 100, 1000].map((x) => ({ x, y: x === 100 ? Number.NaN : 2 / Math.sqrt(x) })) },
    ],
  }) as { data: { values: unknown[] } };
  assert.equal(spec.data.values.length, 4 + 3);
  const { svg, png } = await renderVegaLite(spec);
  for (const text of ['loss', 'step', 'validation loss', 'no replay', 'replay']) assert.ok(svg.includes(text), text);
  assert.ok(!svg.includes('NaN'), 'SVG has NaN coordinates');
  assert.ok(pngSize(png).width > 400);
});

test('writeFigure writes the SVG and PNG and leaves no temporary files', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'unforget-plot-'));
  try {
    const out = path.join(dir, 'figures');
    const { svgPath, pngPath } = await writeFigure(out, 'continual', continualFigureSpec(demoContinualInput()));
    assert.equal(svgPath, path.join(out, 'continual.svg'));
    assert.equal(pngPath, path.join(out, 'continual.png'));
    assert.ok(fs.readFileSync(svgPath, 'utf8').startsWith('<svg'));
    pngSize(fs.readFileSync(pngPath));
    assert.deepEqual(fs.readdirSync(out).sort(), ['continual.png', 'continual.svg']);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
