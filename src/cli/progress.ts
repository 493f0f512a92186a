/**
 * Progress display: a cli-progress bar on a terminal, plain log lines when stderr is not a TTY
 * (CI logs, pipes), so output stays readable in both.
 */
import cliProgress from 'cli-progress';
import type { Reporter } from '../train/train.js';

export function makeReporter(enabled: boolean): Reporter {
  const tty = enabled && process.stderr.isTTY === true;
  if (!tty) {
    return {
      start() {},
      update() {},
      log: (line) => process.stderr.write(`${line}\n`),
      stop() {},
    };
  }
  let bar: cliProgress.SingleBar | null = null;
  let unbounded = false;
  return {
    start(total, label) {
      unbounded = total === null;
      bar = new cliProgress.SingleBar(
        {
          format: unbounded
            ? `${label} | step {value} | loss {loss} | lr {lr} | {duration_formatted}`
            : `${label} |{bar}| {percentage}% | step {value}/{total} | loss {loss} | lr {lr} | eta {eta_formatted}`,
          stream: process.stderr,
          hideCursor: true,
          etaBuffer: 50,
        },
        cliProgress.Presets.shades_classic,
      );
      bar.start(total ?? 0, 0, { loss: '-', lr: '-' });
    },
    update(step, info) {
      bar?.update(step, info);
    },
    log(line) {
      // Clear the bar's line, print, and let the next update redraw the bar below.
      process.stderr.write(bar ? `\r\x1b[K${line}\n` : `${line}\n`);
    },
    stop() {
      bar?.stop();
      bar = null;
    },
  };
}
