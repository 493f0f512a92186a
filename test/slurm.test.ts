/**
 * `unforget sweep --executor slurm`: the refusals that come before anything is submitted, and — on a
 * real one-node Slurm started here (helpers/slurm.ts) — a 4-point sweep with one failing point, its
 * re-submission, and a submitter killed while its array runs.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import YAML from 'yaml';
import { cliOk, MAIN } from './helpers/cli.js';
import { CAP, fakeCorpora } from './helpers/grid.js';
import { startLocalSlurm, type LocalSlurm } from './helpers/slurm.js';

let dir = '';

before(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'unforget-slurm-sweep-'));
  for (const seed of [1, 2, 3]) cliOk(dir, ['data', 'markov', '--out', `d${seed}.bin`, '--symbols', '8', '--tokens', '20000', '--seed', String(seed)]);
});

after(() => {
  if (!process.env.UNFORGET_KEEP_TMP) fs.rmSync(dir, { recursive: true, force: true });
});

function unforget(args: string[], env: NodeJS.ProcessEnv) {
  const r = spawnSync(process.execPath, [MAIN, ...args], { cwd: dir, env, encoding: 'utf8', timeout: 120_000 });
  if (r.error) throw r.error;
  return r;
}

function writeSweep(name: string, doc: unknown): string {
  fs.writeFileSync(path.join(dir, name), YAML.stringify(doc));
  return name;
}

function readJsonl(file: string): Array<Record<string, unknown>> {
  return fs.readFileSync(file, 'utf8').split('\n').filter((l) => l !== '').map((l) => JSON.parse(l));
}

/** Tiny runs: D=16, L=1, T=8, one native thread, 20 steps. */
const TINY = ['model.L=1', 'model.T=8', 'model.D=16', 'model.H=8', 'opt.batch_size=8', 'data.num_tokens_valid=600', 'stop.num_tokens_train=1280', 'log.every_tokens=320', 'run.threads=1'];

/**
 * A bin folder of stand-ins that write their command line to `called`: squeue answers "no jobs",
 * sbatch refuses the way a cluster refuses an unknown account, scancel fails.
 */
function fakeSlurmBin(): { env: NodeJS.ProcessEnv; called: string } {
  const bin = fs.mkdtempSync(path.join(dir, 'fake-slurm-bin-'));
  const called = path.join(bin, 'called');
  const body: Record<string, string> = {
    squeue: 'exit 0',
    sbatch: 'echo "sbatch: error: Batch job submission failed: Invalid account or account/partition combination specified" >&2\nexit 1',
    scancel: 'exit 1',
  };
  for (const [cmd, rest] of Object.entries(body)) {
    fs.writeFileSync(path.join(bin, cmd), `#!/bin/sh\nprintf '%s\\n' "${cmd} $*" >> '${called}'\n${rest}\n`, { mode: 0o755 });
  }
  return { env: { ...process.env, PATH: `${bin}:${process.env.PATH}` }, called };
}

describe('refused before anything is submitted', () => {
  test('--executor slurm where sbatch is not on PATH', () => {
    const file = writeSweep('nosbatch.yaml', { command: 'train', base: ['data.path=d1.bin', ...TINY], parameters: { 'opt.lr': { values: [0.003, 0.01] } } });
    const emptyBin = fs.mkdtempSync(path.join(dir, 'empty-bin-'));
    const r = unforget(['sweep', file, '--executor', 'slurm', '--out', 'sw-nosbatch'], { ...process.env, PATH: emptyBin });
    assert.equal(r.status, 1);
    assert.equal(r.stderr, "error: --executor slurm: 'sbatch' is not on PATH; run the sweep on a Slurm login node (or load its Slurm module), or use --executor local\n");
    assert.ok(!fs.existsSync(path.join(dir, 'sw-nosbatch')), 'a refused sweep should create nothing');
  });

  test('experiment capacity|lr --executor slurm: sbatch missing, an unknown slurm key, an experiment that is not a grid', () => {
    const noBin = fs.mkdtempSync(path.join(dir, 'empty-bin-'));
    const env = { ...process.env, PATH: noBin };
    const cases: Array<[string[], NodeJS.ProcessEnv, RegExp]> = [
      [['experiment', 'capacity', '--executor', 'slurm', '--out', 'exp-nosbatch'], env, /^error: .*sbatch.*\n$/],
      [['experiment', 'lr', '--executor', 'slurm', 'slurm.cpus=2', '--out', 'exp-badkey'], process.env, /^error: slurm: unknown key 'cpus' \(known: partition, /],
      [['experiment', 'capacity', 'slurm.time=10', '--out', 'exp-noexec'], process.env, /^error: slurm\.time=10: slurm\.\* settings need --executor slurm\n$/],
      [['experiment', 'language-shift', '--executor', 'slurm', '--out', 'exp-shift'], process.env, /^error: experiment language-shift: --executor, --workers and slurm\.\* apply to the grid experiments \(capacity, lr\)\n$/],
    ];
    for (const [args, e, re] of cases) {
      const r = unforget(args, e);
      assert.equal(r.status, 1, args.join(' '));
      assert.match(r.stderr, re);
      assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
      assert.ok(!fs.existsSync(path.join(dir, args[args.indexOf('--out') + 1]!)), 'nothing may be written');
    }
  });

  test('an unknown slurm: key, or one of the wrong type, is one line naming the key', () => {
    const fake = fakeSlurmBin();
    const cases: Array<[Record<string, unknown>, string]> = [
      [{ partiton: 'gpu' }, "error: badkey.yaml: slurm: unknown key 'partiton' (known: partition, account, qos, cpus_per_task, gpus, mem, time, max_concurrent, setup, sbatch_args, poll_seconds)\n"],
      [{ cpus_per_task: 'four' }, 'error: badkey.yaml: slurm.cpus_per_task: expected an integer ≥ 1, got "four"\n'],
      [{ time: '2 hours' }, 'error: badkey.yaml: slurm.time: expected a time limit such as 2:00:00 or 1-12:00 (or a number of minutes), got "2 hours"\n'],
      [{ sbatch_args: ['--array=0-9'] }, "error: badkey.yaml: slurm.sbatch_args: '--array=0-9' is set by the sweep itself (array, job name, output and folder); remove it\n"],
    ];
    for (const [block, expected] of cases) {
      const file = writeSweep('badkey.yaml', { command: 'train', base: ['data.path=d1.bin', ...TINY], parameters: { 'opt.lr': { values: [0.003, 0.01] } }, slurm: block });
      const r = unforget(['sweep', file, '--executor', 'slurm', '--out', 'sw-badkey'], fake.env);
      assert.equal(r.status, 1, JSON.stringify(block));
      assert.equal(r.stderr, expected);
    }
    assert.ok(!fs.existsSync(fake.called), 'no Slurm command may run');
    assert.ok(!fs.existsSync(path.join(dir, 'sw-badkey')));
  });

  test('a grid point whose train config is invalid: the point and the key, as `unforget train` words it', () => {
    const fake = fakeSlurmBin();
    // D=24 with head size 16 does not divide: only that combination is invalid.
    const file = writeSweep('badpoint.yaml', { command: 'train', base: ['data.path=d1.bin', ...TINY.filter((a) => !/^model\.[DH]=/.test(a))], parameters: { 'model.D': { values: [16, 24] }, 'model.H': { values: [8, 16] } } });
    const r = unforget(['sweep', file, '--executor', 'slurm', '--out', 'sw-badpoint'], fake.env);
    assert.equal(r.status, 1);
    // The reference: what train itself says about that config.
    const train = unforget(['train', 'data.path=d1.bin', ...TINY.filter((a) => !/^model\.[DH]=/.test(a)), 'model.D=24', 'model.H=16', `log.dir=${os.tmpdir()}`], process.env);
    assert.equal(train.status, 1);
    assert.match(train.stderr, /^error: config key 'model\.H'/);
    assert.equal(r.stderr, `error: badpoint.yaml: grid point 'model.D=24,model.H=16': ${train.stderr.slice('error: '.length)}`);
    assert.ok(!fs.existsSync(fake.called), 'no Slurm command may run');
    assert.ok(!fs.existsSync(path.join(dir, 'sw-badpoint')));
  });
});

test('the slurm: block becomes sbatch options; a submission sbatch refuses is one line and leaves no manifest', () => {
  const fake = fakeSlurmBin();
  const file = writeSweep('args.yaml', {
    command: 'train',
    base: ['data.path=d1.bin', ...TINY],
    parameters: { 'opt.lr': { values: [0.003, 0.01] } },
    slurm: { partition: 'gpu', account: 'proj1', qos: 'high', cpus_per_task: 4, gpus: 'a100:1', mem: '8G', time: '1-00:00', max_concurrent: 3, sbatch_args: ['--constraint=v100', '--exclusive'] },
  });
  const r = unforget(['sweep', file, '--executor', 'slurm', '--out', 'sw-args'], fake.env);
  assert.equal(r.status, 1);
  assert.equal(r.stderr, 'error: sbatch refused the array: sbatch: error: Batch job submission failed: Invalid account or account/partition combination specified\n');
  const sbatch = fs.readFileSync(fake.called, 'utf8').split('\n').find((l) => l.startsWith('sbatch '))!.split(' ');
  const out = fs.realpathSync(path.join(dir, 'sw-args'));
  for (const arg of [
    '--parsable', '--array=0-1%3', `--output=${out}/slurm/submit-1/%a.out`, `--chdir=${dir}`,
    '--partition=gpu', '--account=proj1', '--qos=high', '--cpus-per-task=4', '--gpus=a100:1', '--mem=8G', '--time=1-00:00', '--constraint=v100', '--exclusive',
  ]) assert.ok(sbatch.includes(arg), `sbatch lacks ${arg}: ${sbatch.join(' ')}`);
  assert.match(sbatch.find((a) => a.startsWith('--job-name='))!, /^--job-name=unforget-sw-args-[0-9a-f]{10}$/);
  assert.equal(sbatch[sbatch.length - 1], `${out}/slurm/submit-1/job.sh`);
  assert.ok(!fs.existsSync(path.join(out, 'slurm', 'submit-1')), 'a refused submission leaves no manifest behind');
  assert.ok(!fs.existsSync(path.join(out, 'slurm', 'job.json')));
});

async function waitFor(what: string, cond: () => boolean, timeoutMs = 30_000): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Every `<id>: started on` line the array tasks wrote into Slurm's own output files, over all submissions. */
function taskStarts(out: string): string[] {
  const slurmDir = path.join(out, 'slurm');
  const lines: string[] = [];
  for (const sub of fs.readdirSync(slurmDir).filter((d) => d.startsWith('submit-'))) {
    for (const f of fs.readdirSync(path.join(slurmDir, sub)).filter((x) => x.endsWith('.out'))) {
      for (const line of fs.readFileSync(path.join(slurmDir, sub, f), 'utf8').split('\n')) {
        const m = / (\S+): started on /.exec(line);
        if (m) lines.push(m[1]!);
      }
    }
  }
  return lines.sort();
}

const pidAlive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

describe('Slurm, real: a one-node cluster on localhost', () => {
  let slurm: LocalSlurm | undefined;
  before(async () => {
    slurm = await startLocalSlurm();
  });
  after(async () => {
    if (!slurm) return;
    await slurm.stop();
    for (const pid of slurm.pids) assert.ok(!pidAlive(pid), `daemon ${pid} still running after stop`);
  });

  test('a 4-point sweep as one job array: rows, statuses and folders; the failed point is recorded, then retried alone', () => {
    const env = slurm!.env;
    const file = writeSweep('four.yaml', {
      command: 'train',
      base: TINY,
      // The last point passes validation but fails when it runs: its data file does not exist.
      parameters: { 'data.path': { values: ['d1.bin', 'd2.bin', 'd3.bin', 'missing.bin'] } },
      slurm: { cpus_per_task: 1, time: 5, poll_seconds: 0.2 },
    });
    const r = unforget(['sweep', file, '--executor', 'slurm', '--out', 'sw-four'], env);
    assert.equal(r.status, 1, r.stderr);
    assert.match(r.stdout, /4 runs: 3 ok, 1 failed; results: /);
    assert.match(r.stderr, /submitted 4 runs as Slurm array job \d+/);
    const out = path.join(dir, 'sw-four');
    const ids = ['data.path=d1.bin', 'data.path=d2.bin', 'data.path=d3.bin', 'data.path=missing.bin'];
    const rows = readJsonl(path.join(out, 'results.jsonl'));
    assert.deepEqual(rows.map((x) => x.run_id), ids);
    // The failing point's error is the one train prints for that config.
    const direct = unforget(['train', 'data.path=missing.bin', ...TINY, `log.dir=${os.tmpdir()}`], process.env);
    assert.equal(direct.status, 1);
    for (const row of rows) {
      assert.equal(row.run_dir, path.join('runs', String(row.run_id)));
      assert.ok(typeof row.wall_s === 'number' && row.wall_s > 0);
      if (row['data.path'] === 'missing.bin') {
        assert.equal(row.status, 'failed');
        assert.equal(row.exit_code, 1);
        assert.equal(row.error, direct.stderr.trim());
        assert.ok(!fs.existsSync(path.join(out, 'runs', String(row.run_id), 'summary.json')));
        continue;
      }
      assert.equal(row.status, 'ok', JSON.stringify(row));
      assert.equal(row.exit_code, 0);
      assert.equal(row.error, null);
      const runDir = path.join(out, String(row.run_dir));
      const cfg = YAML.parse(fs.readFileSync(path.join(runDir, 'config.yaml'), 'utf8'));
      assert.equal(cfg.data.path, row['data.path']);
      const summary = JSON.parse(fs.readFileSync(path.join(runDir, 'summary.json'), 'utf8'));
      assert.equal(summary.steps, 20);
      for (const k of ['valid_ntp', 'train_loss', 'steps', 'stop_reason']) assert.equal(row[k], summary[k], k);
      assert.match(fs.readFileSync(path.join(out, 'logs', `${row.run_id}.log`), 'utf8'), /^\$ unforget train /);
    }
    // Each point ran as a task of one array, on this cluster's node.
    const job = JSON.parse(fs.readFileSync(path.join(out, 'slurm', 'job.json'), 'utf8'));
    assert.match(job.job_id, /^\d+$/);
    assert.deepEqual(job.run_ids, ids);
    assert.deepEqual(taskStarts(out), ids);
    assert.match(fs.readFileSync(path.join(out, 'slurm', 'submit-1', '0.out'), 'utf8'), new RegExp(`started on ${slurm!.nodeName} \\(array task ${job.job_id}_0\\)`));
    const csvLines = fs.readFileSync(path.join(out, 'results.csv'), 'utf8').trim().split('\n');
    assert.equal(csvLines.length, 5);

    // Submitted again: the three finished runs are skipped, the failed one alone is submitted again.
    const okSummary = path.join(out, 'runs', ids[0]!, 'summary.json');
    const mtime = fs.statSync(okSummary).mtimeMs;
    const again = unforget(['sweep', file, '--executor', 'slurm', '--out', 'sw-four'], env);
    assert.equal(again.status, 1, again.stderr);
    assert.match(again.stdout, /4 runs: 3 ok, 1 failed, 3 skipped as already finished/);
    assert.match(again.stderr, /submitted 1 run as Slurm array job \d+/);
    const manifest = JSON.parse(fs.readFileSync(path.join(out, 'slurm', 'submit-2', 'manifest.json'), 'utf8'));
    assert.deepEqual(manifest.tasks.map((t: { id: string }) => t.id), [ids[3]]);
    assert.equal(fs.statSync(okSummary).mtimeMs, mtime);
    assert.deepEqual(taskStarts(out), [...ids, ids[3]!].sort());
    const rows2 = readJsonl(path.join(out, 'results.jsonl'));
    assert.deepEqual(rows2.map((x) => x.run_id), ids);
    assert.deepEqual(rows2.slice(0, 3), rows.slice(0, 3));
    assert.equal(rows2[3]!.status, 'failed');
  });

  test('the submitter killed while its array runs: re-submitting waits for that array, repeats no finished run, duplicates no row', async () => {
    const env = slurm!.env;
    const file = writeSweep('kill.yaml', {
      command: 'train',
      // 800 steps, one task at a time: the kill lands while the array is half done.
      base: ['data.path=d1.bin', ...TINY.filter((a) => !a.startsWith('stop.') && !a.startsWith('log.')), 'stop.num_tokens_train=51200', 'log.every_tokens=6400'],
      parameters: { 'opt.lr': { values: [0.003, 0.01] }, 'run.seed': { values: [0, 1] } },
      slurm: { cpus_per_task: 1, max_concurrent: 1, poll_seconds: 0.2 },
    });
    const out = path.join(dir, 'sw-kill');
    const ids = ['opt.lr=0.003,run.seed=0', 'opt.lr=0.003,run.seed=1', 'opt.lr=0.01,run.seed=0', 'opt.lr=0.01,run.seed=1'];
    const parent = spawn(process.execPath, [MAIN, 'sweep', file, '--executor', 'slurm', '--out', out], { cwd: dir, env, stdio: 'ignore' });
    const exited = new Promise<NodeJS.Signals | null>((resolve) => parent.on('exit', (_code, sig) => resolve(sig)));
    const resultsFile = path.join(out, 'results.jsonl');
    try {
      await waitFor('the first run to be recorded', () => fs.existsSync(resultsFile) && readJsonl(resultsFile).length === 1);
      await waitFor('the second run to start', () => fs.existsSync(path.join(out, 'runs', ids[1]!, 'metrics.jsonl')));
    } finally {
      parent.kill('SIGKILL');
    }
    assert.equal(await exited, 'SIGKILL');
    // The array goes on in Slurm without its submitter.
    const jobId = JSON.parse(fs.readFileSync(path.join(out, 'slurm', 'job.json'), 'utf8')).job_id;
    const queued = spawnSync('squeue', ['-h', '-r', '-j', jobId, '-o', '%K %T'], { env, encoding: 'utf8' }).stdout;
    assert.match(queued, /RUNNING|PENDING/, `the array should still be in Slurm:\n${queued}`);
    const first = path.join(out, 'runs', ids[0]!, 'summary.json');
    const firstMtime = fs.statSync(first).mtimeMs;

    const r = unforget(['sweep', file, '--executor', 'slurm', '--out', out], env);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /4 runs: 4 ok, 0 failed, 1 skipped as already finished/);
    assert.match(r.stderr, new RegExp(`Slurm job ${jobId} of this sweep folder, submitted earlier, is still queued or running; waiting`));
    const rows = readJsonl(resultsFile);
    assert.deepEqual(rows.map((x) => x.run_id), ids);
    assert.ok(rows.every((x) => x.status === 'ok'), JSON.stringify(rows));
    assert.equal(fs.readFileSync(path.join(out, 'results.csv'), 'utf8').trim().split('\n').length, 5);
    // Every run started once, all in the first array: nothing was submitted twice.
    assert.deepEqual(taskStarts(out), [...ids].sort());
    assert.deepEqual(fs.readdirSync(path.join(out, 'slurm')).filter((d) => d.startsWith('submit-')), ['submit-1']);
    assert.equal(fs.statSync(first).mtimeMs, firstMtime);
    for (const id of ids) {
      const metrics = readJsonl(path.join(out, 'runs', id, 'metrics.jsonl'));
      assert.equal(metrics.filter((m) => m.step === 0).length, 1, id);
      assert.equal(metrics[metrics.length - 1]!.step, 800, id);
    }
    assert.ok(!fs.existsSync(path.join(out, '.lock')));
  });
  test('experiment capacity --executor slurm: its stages run as job arrays, with the results of the same grid run in one process', { timeout: 300_000 }, () => {
    const exp = fs.mkdtempSync(path.join(dir, 'exp-'));
    fakeCorpora(path.join(exp, 'corpora'));
    const run = (args: string[], env: NodeJS.ProcessEnv) => {
      const r = spawnSync(process.execPath, [MAIN, 'experiment', 'capacity', ...args, ...CAP], { cwd: exp, env, encoding: 'utf8', timeout: 240_000 });
      assert.equal(r.status, 0, r.stderr);
      return r;
    };
    run(['--out', 'runs/here'], process.env);
    const r = run(['--out', 'runs/slurm', '--executor', 'slurm', 'slurm.cpus_per_task=1', 'slurm.poll_seconds=0.2'], slurm!.env);
    // Three stages (pretraining, the target probe, finetuning), one array each.
    assert.equal((r.stderr.match(/submitted \d+ runs? as Slurm array job \d+/g) ?? []).length, 3, r.stderr);
    const out = path.join(exp, 'runs/slurm');
    assert.deepEqual(fs.readdirSync(path.join(out, 'slurm')).filter((f) => f.startsWith('submit-')).sort(), ['submit-1', 'submit-2', 'submit-3']);
    assert.ok(fs.existsSync(path.join(out, 'logs', 'pretrain.D16-tpp1.log')));
    assert.ok(!fs.existsSync(path.join(out, 'runs')), 'the runs stay in the experiment folder');
    const here = JSON.parse(fs.readFileSync(path.join(exp, 'runs/here/summary.json'), 'utf8'));
    const there = JSON.parse(fs.readFileSync(path.join(out, 'summary.json'), 'utf8'));
    assert.equal(there.target_loss, here.target_loss);
    assert.equal(there.points.length, 4);
    for (let i = 0; i < here.points.length; i++) {
      for (const m of ['none', 'kl_pre']) {
        assert.equal(there.points[i].finetune[m].forgetting, here.points[i].finetune[m].forgetting, `point ${i} ${m}`);
        assert.equal(there.points[i].finetune[m].reached, here.points[i].finetune[m].reached);
      }
    }
  });
});
