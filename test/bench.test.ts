/**
 * `unforget bench` on a tiny model: the JSON it prints, repeated sampling, the sgemm reference, and a
 * bad option value.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import os from 'node:os';
import { cli, cliOk } from './helpers/cli.js';

const MODEL = ['model.D=32', 'model.L=1', 'model.H=8', 'model.T=16', 'model.V=50', 'opt.batch_size=8'];

test('bench prints training, KL and sampling throughput as one JSON object', () => {
  const r = cliOk(os.tmpdir(), ['bench', ...MODEL, '--steps', '2', '--warmup', '1', '--sample-batch', '4', '--sample-reps', '3']);
  const out = JSON.parse(r.stdout);
  for (const key of ['tokens_per_s', 'step_ms', 'gflops', 'sample_tokens_per_s', 'sgemm_1024_gflops', 'peak_rss_mb']) {
    assert.ok(Number.isFinite(out[key]) && out[key] > 0, `${key} = ${out[key]}`);
  }
  assert.equal(out.sample_reps, 3);
  assert.equal(out.sample_batch, 4);
  assert.match(out.backend, /OpenBLAS/);
  // the sgemm reference is OpenBLAS itself; the engine setting printed afterwards is still the default
  assert.match(out.backend, /gemm auto/);

  const kl = JSON.parse(cliOk(os.tmpdir(), ['bench', ...MODEL, 'reg.method=kl_pre', '--steps', '2', '--warmup', '1', '--no-sample']).stdout);
  assert.equal(kl.reg_method, 'kl_pre');
  assert.equal(kl.sample_tokens_per_s, undefined);
});

test('bench rejects a bad --sample-reps, naming it', () => {
  const r = cli(os.tmpdir(), ['bench', ...MODEL, '--sample-reps', '0']);
  assert.notEqual(r.status, 0);
  assert.match(r.stderr, /sample-reps/);
  assert.equal(r.stderr.trim().split('\n').length, 1, `expected a one-line error, got:\n${r.stderr}`);
});
