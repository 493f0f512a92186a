/**
 * Progress for data commands, whose unit is bytes or items rather than training steps. Same
 * convention as progress.ts: a cli-progress bar on a terminal, plain log lines when stderr is not a
 * TTY (one every ~10 s, so CI logs stay short).
 */
import cliProgress from 'cli-progress';

export interface Meter {
  /** Switches to a new phase (a new bar); `unit` 'MB' shows bytes as megabytes. */
  phase(label: string, total: number, unit: 'MB' | 'items'): void;
  update(done: number): void;
  stop(): void;
}

const fmt = (v: number, unit: 'MB' | 'items') => (unit === 'MB' ? (v / 1e6).toFixed(1) : String(v));

export function makeMeter(enabled: boolean): Meter {
  const tty = enabled && process.stderr.isTTY === true;
  let bar: cliProgress.SingleBar | null = null;
  let label = '', unit: 'MB' | 'items' = 'items', total = 0, lastLine = 0;
  return {
    phase(l, t, u) {
      bar?.stop();
      bar = null;
      [label, total, unit, lastLine] = [l, t, u, Date.now()];
      if (tty) {
        bar = new cliProgress.SingleBar(
          {
            format: `${label} |{bar}| {percentage}% | {done}/{all} ${unit} | eta {eta_formatted}`,
            stream: process.stderr,
            hideCursor: true,
            etaBuffer: 50,
          },
          cliProgress.Presets.shades_classic,
        );
        bar.start(Math.max(1, total), 0, { done: fmt(0, unit), all: fmt(total, unit) });
      } else if (enabled) {
        process.stderr.write(`${label}: 0/${fmt(total, unit)} ${unit}\n`);
      }
    },
    update(done) {
      if (bar) bar.update(Math.min(done, Math.max(1, total)), { done: fmt(done, unit), all: fmt(total, unit) });
      else if (enabled) {
        const now = Date.now();
        if (now - lastLine < 10_000) return;
        lastLine = now;
        process.stderr.write(`${label}: ${fmt(done, unit)}/${fmt(total, unit)} ${unit}\n`);
      }
    },
    stop() {
      bar?.stop();
      bar = null;
    },
  };
}
