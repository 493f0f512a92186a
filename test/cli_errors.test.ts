/**
 * The command line on bad input (every bad input exits non-zero with a one-line reason).
 *
 * Every case runs the real CLI in a fresh temporary folder that already holds a valid token file
 * (`d.bin`, from `unforget data markov`) and a valid run folder (`runs/base`, from a tiny
 * `unforget train`). For each bad input we check that
 *   (a) the exit status is non-zero,
 *   (b) stderr is exactly one line `error: …` that names the culprit (file, key or value),
 *   (c) nothing that existed before was modified (bytes and mtime of every file), and — for input
 *       rejected before training starts — nothing new was created either.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { cli, cliOk, MAIN, type Result } from './helpers/cli.js';
import { readSafetensors, writeSafetensors } from '../src/io/safetensors.js';


/** A tiny model: the whole file must run in seconds on two cores. */
const MODEL = ['model.D=16', 'model.L=1', 'model.H=8', 'model.T=8'];
const T = 8;
const V = 9; // markov --symbols 8 → vocab 9 (id 0 is the dataset token)
const TRAIN = ['train', 'data.path=d.bin', ...MODEL, 'opt.batch_size=8', 'log.progress=false'];


// ---------------------------------------------------------------------------------------------
// Fixture: a folder with d.bin and runs/base, copied fresh for every test
// ---------------------------------------------------------------------------------------------

let template = '';
/** Temporary folders made by this file; removed at the end (set UNFORGET_KEEP_TMP=1 to keep them). */
const tmpDirs: string[] = [];

after(() => {
  if (process.env.UNFORGET_KEEP_TMP) return;
  for (const d of tmpDirs) fs.rmSync(d, { recursive: true, force: true });
});

before(() => {
  template = fs.mkdtempSync(path.join(os.tmpdir(), 'unforget-cli-tpl-'));
  tmpDirs.push(template);
  cliOk(template, ['data', 'markov', '--out', 'd.bin', '--symbols', '8', '--tokens', '20000', '--seed', '3']);
  cliOk(template, [...TRAIN, 'stop.num_tokens_train=640', 'data.num_tokens_valid=640', 'log.every_tokens=320', 'run.id=base']);
  for (const f of ['config.yaml', 'metrics.jsonl', 'summary.json', 'model.safetensors']) {
    assert.ok(fs.existsSync(path.join(template, 'runs', 'base', f)), `fixture run folder lacks ${f}`);
  }
});

/** A fresh copy of the fixture folder. */
function freshDir(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'unforget-cli-err-'));
  tmpDirs.push(dir);
  fs.cpSync(template, dir, { recursive: true });
  return dir;
}

interface FileState {
  bytes: Buffer;
  mtimeMs: number;
  size: number;
}

/** Every file under `root` (relative path → bytes, size, mtime). */
function snapshot(root: string): Map<string, FileState> {
  const out = new Map<string, FileState>();
  const walk = (rel: string) => {
    for (const e of fs.readdirSync(path.join(root, rel), { withFileTypes: true })) {
      const r = path.join(rel, e.name);
      if (e.isDirectory()) walk(r);
      else {
        const full = path.join(root, r);
        const st = fs.statSync(full);
        out.set(r, { bytes: fs.readFileSync(full), mtimeMs: st.mtimeMs, size: st.size });
      }
    }
  };
  walk('');
  return out;
}

/** Every file of `before` is still there, byte for byte, with the same mtime. */
function assertUnchanged(root: string, before: Map<string, FileState>, opts: { allowNew?: boolean } = {}): void {
  const after = snapshot(root);
  for (const [rel, s] of before) {
    const a = after.get(rel);
    assert.ok(a, `${rel} was deleted`);
    assert.equal(a.size, s.size, `${rel} changed size`);
    assert.ok(a.bytes.equals(s.bytes), `${rel} changed content`);
    assert.equal(a.mtimeMs, s.mtimeMs, `${rel} was rewritten (mtime changed)`);
  }
  if (!opts.allowNew) {
    const added = [...after.keys()].filter((k) => !before.has(k));
    assert.deepEqual(added, [], `files were created by a command that failed on bad input: ${added.join(', ')}`);
  }
}

/** stderr is exactly one line `error: …` naming every culprit. */
function assertOneLineError(r: Result, culprits: Array<string | RegExp>): string {
  assert.notEqual(r.status, 0, `expected a non-zero exit; stdout:\n${r.stdout}`);
  assert.equal(r.status, 1, `expected exit status 1 (user error), got ${r.status}; stderr:\n${r.stderr}`);
  assert.ok(r.stderr.endsWith('\n'), `stderr should end with a newline: ${JSON.stringify(r.stderr)}`);
  const lines = r.stderr.slice(0, -1).split('\n');
  assert.equal(lines.length, 1, `stderr should be one line, got ${lines.length}:\n${r.stderr}`);
  const line = lines[0]!;
  assert.ok(line.startsWith('error: '), `stderr should start with 'error: ', got: ${line}`);
  assert.doesNotMatch(line, /[\x00-\x08\x0b-\x1f\x7f]/, 'the error line holds control characters');
  for (const c of culprits) {
    if (typeof c === 'string') assert.ok(line.includes(c), `the error should name '${c}': ${line}`);
    else assert.match(line, c);
  }
  return line;
}

/**
 * Runs `setup` in a fresh fixture folder, snapshots it, runs the bad command, and checks (a)–(c).
 */
function expectError(args: string[] | ((dir: string) => string[]), culprits: Array<string | RegExp>, setup?: (dir: string) => void): string {
  const dir = freshDir();
  setup?.(dir);
  const before = snapshot(dir);
  const r = cli(dir, typeof args === 'function' ? args(dir) : args);
  const line = assertOneLineError(r, culprits);
  assert.equal(r.stdout, '', 'a failed command should print nothing on stdout');
  assertUnchanged(dir, before);
  return line;
}

/** A copy of the base run folder as `name`, optionally without some files. */
function copyRun(dir: string, name: string, without: string[] = []): string {
  const dst = path.join(dir, name);
  fs.cpSync(path.join(dir, 'runs', 'base'), dst, { recursive: true });
  for (const f of without) fs.rmSync(path.join(dst, f));
  return dst;
}

/** Writes a raw uint16 token file with a sidecar (bypassing writeTokenFile's own id check). */
function writeRawTokens(file: string, tokens: number[], sidecar: unknown | string): void {
  fs.writeFileSync(file, Buffer.from(new Uint16Array(tokens).buffer));
  const side = file.replace(/\.bin$/, '.json');
  fs.writeFileSync(side, typeof sidecar === 'string' ? sidecar : JSON.stringify(sidecar));
}

const markovLike = (n: number): number[] => Array.from({ length: n }, (_, i) => 1 + (i % 8));

// ---------------------------------------------------------------------------------------------
// eval --model: broken checkpoints
// ---------------------------------------------------------------------------------------------

test('eval --model: a folder that does not exist', () => {
  expectError(['eval', '--model', 'no-such-run', '--data', 'd.bin'], ['no-such-run']);
});

test('eval --model: a folder without model.safetensors', () => {
  expectError(['eval', '--model', 'ck', '--data', 'd.bin'], ['ck/model.safetensors'], (dir) => copyRun(dir, 'ck', ['model.safetensors']));
});

test('eval --model: a truncated model.safetensors (cut in half)', () => {
  expectError(['eval', '--model', 'ck', '--data', 'd.bin'], ['ck/model.safetensors', /truncated/], (dir) => {
    const f = path.join(copyRun(dir, 'ck'), 'model.safetensors');
    const b = fs.readFileSync(f);
    fs.writeFileSync(f, b.subarray(0, Math.floor(b.length / 2)));
  });
});

test('eval --model: a model.safetensors with a corrupt header (bytes 8..20 overwritten)', () => {
  expectError(['eval', '--model', 'ck', '--data', 'd.bin'], ['ck/model.safetensors', /header/], (dir) => {
    const f = path.join(copyRun(dir, 'ck'), 'model.safetensors');
    const b = fs.readFileSync(f);
    b.write('#garbage!@#$', 8, 'latin1');
    fs.writeFileSync(f, b);
  });
});

test('eval --model: a tensor of the wrong shape (qkv with D and H swapped, same size)', () => {
  expectError(['eval', '--model', 'ck', '--data', 'd.bin'], ['ck/model.safetensors', 'qkv', '[1,3,2,8,16]'], (dir) => {
    const f = path.join(copyRun(dir, 'ck'), 'model.safetensors');
    const st = readSafetensors(f);
    const tensors: Record<string, { shape: number[]; data: Float32Array }> = {};
    for (const [name, t] of st.tensors) tensors[name] = { shape: t.shape, data: t.data };
    assert.deepEqual(tensors.qkv!.shape, [1, 3, 2, 16, 8]);
    tensors.qkv = { shape: [1, 3, 2, 8, 16], data: tensors.qkv!.data };
    writeSafetensors(f, tensors, st.metadata);
  });
});

test('eval --model: a tensor of the wrong size (embed_in with one row too many)', () => {
  expectError(['eval', '--model', 'ck', '--data', 'd.bin'], ['ck/model.safetensors', 'embed_in'], (dir) => {
    const f = path.join(copyRun(dir, 'ck'), 'model.safetensors');
    const st = readSafetensors(f);
    const tensors: Record<string, { shape: number[]; data: Float32Array }> = {};
    for (const [name, t] of st.tensors) tensors[name] = { shape: t.shape, data: t.data };
    tensors.embed_in = { shape: [V + 1, 16], data: new Float32Array((V + 1) * 16) };
    writeSafetensors(f, tensors, st.metadata);
  });
});

test('eval --model: a checkpoint with a non-finite weight', () => {
  expectError(['eval', '--model', 'ck', '--data', 'd.bin'], ['ck/model.safetensors', 'up'], (dir) => {
    const f = path.join(copyRun(dir, 'ck'), 'model.safetensors');
    const st = readSafetensors(f);
    const tensors: Record<string, { shape: number[]; data: Float32Array }> = {};
    for (const [name, t] of st.tensors) tensors[name] = { shape: t.shape, data: t.data };
    tensors.up!.data[5] = NaN;
    writeSafetensors(f, tensors, st.metadata);
  });
});

test('eval --model: config.yaml missing', () => {
  expectError(['eval', '--model', 'ck', '--data', 'd.bin'], ['ck/config.yaml'], (dir) => copyRun(dir, 'ck', ['config.yaml']));
});

test('train model.load_path: finetuning from a truncated checkpoint', () => {
  expectError([...TRAIN, 'model.load_path=ck', 'stop.num_tokens_train=640', 'run.id=ft'], ['ck/model.safetensors'], (dir) => {
    const f = path.join(copyRun(dir, 'ck'), 'model.safetensors');
    fs.truncateSync(f, 100);
  });
});

test('train model.load_path: a checkpoint folder that does not exist is reported before a missing stop criterion', () => {
  const line = expectError(['train', 'model.load_path=missing'], ['model.load_path', 'missing']);
  assert.equal(line, "error: config key 'model.load_path': missing: checkpoint folder does not exist");
  expectError([...TRAIN, 'model.load_path=runs/base/gone.safetensors', 'stop.num_tokens_train=640'], [
    "config key 'model.load_path': runs/base/gone.safetensors: checkpoint file does not exist",
  ]);
});

test('train model.load_path: a folder without config.yaml, and an existing checkpoint without a stop criterion, keep their messages', () => {
  expectError([...TRAIN, 'model.load_path=ck', 'stop.num_tokens_train=640', 'run.id=ft'], ['ck/config.yaml: checkpoint config is missing'], (dir) => copyRun(dir, 'ck', ['config.yaml']));
  expectError([...TRAIN, 'model.load_path=runs/base'], ["config key 'stop': no stopping criterion"]);
});

// ---------------------------------------------------------------------------------------------
// Token files
// ---------------------------------------------------------------------------------------------

test('eval --data: a token id ≥ V is rejected with its position', () => {
  const toks = markovLike(4000);
  toks[1234] = V;
  const line = expectError(['eval', '--model', 'runs/base', '--data', 'big.bin'], ['big.bin', /position 1234\b/, /\b9\b/], (dir) =>
    writeRawTokens(path.join(dir, 'big.bin'), toks, { vocab_size: V, dataset_token_id: 0, tokenizer: null }),
  );
  assert.doesNotMatch(line, /position 1233\b/);
});

test('train data.path: a token id ≥ V is rejected with its position', () => {
  const toks = markovLike(4000);
  toks[3001] = 60000;
  expectError([...TRAIN.filter((a) => !a.startsWith('data.path')), 'data.path=big.bin', 'model.V=9', 'stop.num_tokens_train=640'], ['big.bin', /position 3001\b/, '60000'], (dir) =>
    writeRawTokens(path.join(dir, 'big.bin'), toks, { vocab_size: 65535, dataset_token_id: 0, tokenizer: null }),
  );
});

test('eval --data: an odd-length (truncated) .bin', () => {
  expectError(['eval', '--model', 'runs/base', '--data', 'odd.bin'], ['odd.bin', /odd|truncated/], (dir) => {
    const b = fs.readFileSync(path.join(dir, 'd.bin'));
    fs.writeFileSync(path.join(dir, 'odd.bin'), b.subarray(0, 4001));
    fs.copyFileSync(path.join(dir, 'd.json'), path.join(dir, 'odd.json'));
  });
});

test('train data.path: an odd-length (truncated) .bin', () => {
  expectError([...TRAIN.filter((a) => !a.startsWith('data.path')), 'data.path=odd.bin', 'stop.num_tokens_train=640'], ['odd.bin'], (dir) => {
    const b = fs.readFileSync(path.join(dir, 'd.bin'));
    fs.writeFileSync(path.join(dir, 'odd.bin'), b.subarray(0, 4001));
    fs.copyFileSync(path.join(dir, 'd.json'), path.join(dir, 'odd.json'));
  });
});

test('eval --data: a missing .bin', () => {
  expectError(['eval', '--model', 'runs/base', '--data', 'missing.bin'], ['missing.bin']);
});

test('train data.path: a missing .bin', () => {
  expectError([...TRAIN.filter((a) => !a.startsWith('data.path')), 'data.path=missing.bin', 'stop.num_tokens_train=640'], ['missing.bin']);
});

test('eval --data: a sidecar that is not JSON', () => {
  expectError(['eval', '--model', 'runs/base', '--data', 'x.bin'], ['x.json', /JSON/], (dir) =>
    writeRawTokens(path.join(dir, 'x.bin'), markovLike(4000), '{vocab_size: 9, oops'),
  );
});

test('train data.path: a sidecar that is not JSON', () => {
  expectError([...TRAIN.filter((a) => !a.startsWith('data.path')), 'data.path=x.bin', 'stop.num_tokens_train=640'], ['x.json', /JSON/], (dir) =>
    writeRawTokens(path.join(dir, 'x.bin'), markovLike(4000), 'not json at all'),
  );
});

// ---------------------------------------------------------------------------------------------
// Dataset size vs batch size (docs/contract.md §3)
// ---------------------------------------------------------------------------------------------

test('train: a dataset smaller than one batch names the numbers', () => {
  // 20000 tokens / T=8 = 2500 sequences < 100000
  expectError([...TRAIN, 'opt.batch_size=100000', 'stop.num_tokens_train=640'], ['d.bin', '2500', '100000']);
});

test('train: a validation split that is non-empty but smaller than one batch names the numbers', () => {
  // 24 tokens / T=8 = 3 validation sequences < batch 8
  expectError([...TRAIN, 'data.num_tokens_valid=24', 'stop.num_tokens_train=640'], ['d.bin', /\b3\b/, /\b8\b/, 'num_tokens_valid']);
});

// ---------------------------------------------------------------------------------------------
// Config
// ---------------------------------------------------------------------------------------------

test('train: an unknown config key', () => {
  expectError([...TRAIN, 'stop.num_tokens_train=640', 'model.Dx=3'], ['model.Dx']);
});

test('train: an ill-typed value', () => {
  expectError([...TRAIN, 'stop.num_tokens_train=640', 'opt.batch_size=abc'], ['opt.batch_size', 'abc']);
});

test('train: two length criteria', () => {
  expectError([...TRAIN, 'stop.num_tokens_train=1000', 'stop.num_epochs=1'], ['stop.num_tokens_train', 'stop.num_epochs']);
});

test('train: NaN learning rate', () => {
  expectError([...TRAIN, 'stop.num_tokens_train=640', 'opt.lr=NaN'], ['opt.lr', 'NaN']);
});

test('train: negative learning rate', () => {
  expectError([...TRAIN, 'stop.num_tokens_train=640', 'opt.lr=-0.001'], ['opt.lr', '-0.001']);
});

test('train: no stop criterion', () => {
  expectError([...TRAIN], ['stop']);
});

test('train: a config file that does not exist', () => {
  expectError(['train', 'nope.yaml', 'data.path=d.bin', ...MODEL, 'stop.num_tokens_train=640'], ['nope.yaml']);
});

test('train: an unknown key inside a YAML config file', () => {
  expectError(['train', 'c.yaml', 'data.path=d.bin', 'stop.num_tokens_train=640'], ['opt.lrr'], (dir) =>
    fs.writeFileSync(path.join(dir, 'c.yaml'), 'model:\n  D: 16\n  L: 1\n  H: 8\n  T: 8\nopt:\n  lrr: 0.1\n'),
  );
});

test('train: a token file passed where a config file belongs (a short, printable error line)', () => {
  // `unforget train d.bin` instead of `data.path=d.bin`: the binary file is read as YAML.
  const line = expectError(['train', 'd.bin', 'stop.num_tokens_train=640'], ['d.bin']);
  assert.ok(line.length < 300, `the error line is ${line.length} characters long: ${JSON.stringify(line.slice(0, 200))}…`);
});

// ---------------------------------------------------------------------------------------------
// Run folders
// ---------------------------------------------------------------------------------------------

test('train: an existing non-empty run.id is refused and left untouched', () => {
  expectError([...TRAIN, 'stop.num_tokens_train=640', 'run.id=base'], ['runs/base']);
});

/**
 * Finds settings that make the loss non-finite on this tiny model, runs them, and returns the result.
 * AdamW with lr 1e30 moves every weight by ~1e30 in the first step, so logits overflow within a few steps.
 */
function divergingRun(dir: string, extra: string[]): Result {
  return cli(dir, [...TRAIN, 'opt.lr=1e30', 'stop.num_tokens_train=6400', 'data.num_tokens_valid=640', 'run.id=nan', ...extra]);
}

function checkDivergedRun(dir: string, r: Result): void {
  assert.equal(r.status, 1, `expected exit 1, got ${r.status}; stderr:\n${r.stderr}`);
  const lines = r.stderr.trimEnd().split('\n');
  const errors = lines.filter((l) => l.startsWith('error:'));
  assert.equal(errors.length, 1, `expected exactly one error line:\n${r.stderr}`);
  assert.equal(lines[lines.length - 1], errors[0], 'the error line should be the last line of stderr');
  assert.match(errors[0]!, /loss/);
  assert.match(errors[0]!, /NaN|Infinity|non-?finite/i);
  assert.match(errors[0]!, /step \d+/);
  assert.ok(!r.stderr.includes('    at '), `no stack trace expected:\n${r.stderr}`);

  const runDir = path.join(dir, 'runs', 'nan');
  const summary = JSON.parse(fs.readFileSync(path.join(runDir, 'summary.json'), 'utf8'));
  assert.equal(summary.stop_reason, 'nonfinite_loss');

  // The checkpoint in the run folder is the last good one: it loads, its weights are finite, and it evaluates.
  const st = readSafetensors(path.join(runDir, 'model.safetensors'));
  for (const [name, t] of st.tensors) {
    for (let i = 0; i < t.data.length; i++) {
      assert.ok(Number.isFinite(t.data[i]!), `model.safetensors of the diverged run: ${name}[${i}] = ${t.data[i]}`);
    }
  }
  const ev = cli(dir, ['eval', '--model', 'runs/nan', '--data', 'd.bin']);
  assert.equal(ev.status, 0, `eval of the diverged run's checkpoint failed:\n${ev.stderr}`);
  const res = JSON.parse(ev.stdout);
  assert.ok(Number.isFinite(res.ntp) && Number.isFinite(res.ntp_h2), `eval gave ${ev.stdout}`);
}

test('train: a loss that becomes NaN stops with one error line, stop_reason nonfinite_loss and a loadable checkpoint', () => {
  const dir = freshDir();
  const before = snapshot(dir);
  const r = divergingRun(dir, ['log.every_tokens=100000']);
  checkDivergedRun(dir, r);
  assertUnchanged(dir, before, { allowNew: true });
});

test('train: a loss that becomes NaN keeps a loadable checkpoint even when logging (and saving) every step', () => {
  // With a log event after every step the weights are saved after every update, including the update
  // that made them non-finite (the NaN loss only shows in the next forward pass). The run folder must
  // still hold the last good (finite) checkpoint.
  const dir = freshDir();
  const before = snapshot(dir);
  const r = divergingRun(dir, ['log.every_tokens=64']);
  checkDivergedRun(dir, r);
  assertUnchanged(dir, before, { allowNew: true });
});

test('train: sgd with a huge learning rate also stops with nonfinite_loss', () => {
  const dir = freshDir();
  const before = snapshot(dir);
  const r = divergingRun(dir, ['opt.optimizer=sgd', 'log.every_tokens=100000']);
  checkDivergedRun(dir, r);
  assertUnchanged(dir, before, { allowNew: true });
});

// ---------------------------------------------------------------------------------------------
// Commands
// ---------------------------------------------------------------------------------------------

test('an unknown command', () => {
  expectError(['frobnicate'], ['frobnicate']);
});

test('CMD --help, CMD -h and help CMD print that command\'s usage and exit 0; help for an unknown command fails', () => {
  const cwd = os.tmpdir();
  for (const args of [['report', '--help'], ['report', 'x', '-h'], ['help', 'report']]) {
    const r = cliOk(cwd, args);
    assert.match(r.stdout, /^usage:\n {2}unforget report DIR\.\.\./, args.join(' '));
    assert.doesNotMatch(r.stdout, /unforget train/, args.join(' '));
  }
  assert.match(cliOk(cwd, ['train', '--help']).stdout, /unforget train \[CONFIG\.yaml/);
  assert.match(cliOk(cwd, ['tokenize', '--help']).stdout, /--tokenizer FILE[\s\S]*INPUTS/);
  expectError(['help', 'frobnicate'], ['frobnicate']);
});

test('--version and -V print the package.json version and exit 0, also through a symlinked bin as npx runs it', () => {
  const pkg = JSON.parse(fs.readFileSync(path.resolve(path.dirname(MAIN), '../../../package.json'), 'utf8')) as { version: string };
  const cwd = fs.mkdtempSync(path.join(os.tmpdir(), 'unforget-cli-version-'));
  tmpDirs.push(cwd);
  const bin = path.join(cwd, 'node_modules', '.bin', 'unforget');
  fs.mkdirSync(path.dirname(bin), { recursive: true });
  fs.symlinkSync(MAIN, bin);
  for (const args of [['--version'], ['-V']]) {
    for (const r of [cliOk(cwd, args), spawnSync(process.execPath, [bin, ...args], { cwd, encoding: 'utf8' })]) {
      assert.equal(r.status, 0, `${args.join(' ')}: ${r.stderr}`);
      assert.equal(r.stdout, `unforget ${pkg.version}\n`, args.join(' '));
      assert.equal(r.stderr, '', args.join(' '));
    }
  }
  assert.match(cliOk(cwd, ['--help']).stdout, /unforget --version \| -V/);
});

test('the help text points to documents in the repository only', () => {
  const usage = cliOk(os.tmpdir(), ['--help']).stdout;
  assert.doesNotMatch(usage, /SPEC/);
  assert.match(usage, /^Config keys .* are listed in the README/m);
});

test('an unknown option', () => {
  expectError(['eval', '--model', 'runs/base', '--data', 'd.bin', '--bogus'], ['--bogus']);
});

test('eval --split with a bad value', () => {
  expectError(['eval', '--model', 'runs/base', '--data', 'd.bin', '--split', 'test'], ['--split', 'test']);
});

test('sample --prompt without a tokenizer gives a clear error', () => {
  expectError(['sample', '--model', 'runs/base', '--prompt', 'hi'], ['--prompt', /tokenizer/]);
});

test('an empty number flag is an error, not 0', () => {
  expectError(['sample', '--model', 'runs/base', '--max-tokens', ''], ['--max-tokens', 'integer']);
  expectError(['sample', '--model', 'runs/base', '--temperature', ' '], ['--temperature', 'number']);
});

test('sample --token-id outside the vocabulary', () => {
  expectError(['sample', '--model', 'runs/base', '--token-id', '9'], [/\b9\b/, 'vocabulary']);
});

test('sample --model: a missing folder', () => {
  expectError(['sample', '--model', 'gone', '--token-id', '0'], ['gone']);
});
