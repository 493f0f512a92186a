/** Running the compiled `unforget` CLI from tests. */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const MAIN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../src/cli/main.js');

export interface Result {
  status: number | null;
  stdout: string;
  stderr: string;
}

export function cli(cwd: string, args: string[]): Result {
  const r = spawnSync(process.execPath, [MAIN, ...args], { cwd, encoding: 'utf8', timeout: 60_000 });
  if (r.error) throw r.error;
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

export function cliOk(cwd: string, args: string[]): Result {
  const r = cli(cwd, args);
  assert.equal(r.status, 0, `unforget ${args.join(' ')} failed (${r.status}):\n${r.stderr}`);
  return r;
}
