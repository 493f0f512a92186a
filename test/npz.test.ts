/**
 * NumPy .npz checkpoints (the study's reference layout: weights.npz + config.yaml).
 *
 * Independent references: the files under test/fixtures/npz were written by real NumPy 1.24
 * (np.savez / np.savez_compressed, see make_fixtures.py there) from weights given by a closed formula
 * that this file recomputes; the acceptance test compares `unforget eval` against the float64 model of
 * test/helpers/gpt64.ts, and against a safetensors file written by the test helper's own writer.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { DataError } from '../src/errors.js';
import { crc32, readNpz, writeNpz } from '../src/io/npz.js';
import { main, reportError } from '../src/cli/main.js';
import { cli, cliOk, type Result } from './helpers/cli.js';
import { gpt64Forward, gptShapes, weightsTo64, type Gpt64Weights } from './helpers/gpt64.js';
import { readSafetensors as readStIndependent, writeSafetensors as writeStIndependent } from './helpers/safetensors.js';

const FIXTURES = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../test/fixtures/npz');
const fixture = (name: string) => path.join(FIXTURES, name);

/** The fixture model (make_fixtures.py): D=8, L=2, H=4, T=8, V=9. */
const FIX = { D: 8, L: 2, H: 4, T: 8, V: 9 };
const NAMES = ['embed_in', 'embed_out', 'qkv', 'out', 'up', 'down'] as const;

/** The fixture weights, recomputed from make_fixtures.py's formula: ((37 i + 11 k) mod 97 − 48) / 64. */
function fixtureWeights(): Record<(typeof NAMES)[number], { shape: number[]; data: Float32Array }> {
  const shapes = gptShapes(FIX);
  const out = {} as Record<(typeof NAMES)[number], { shape: number[]; data: Float32Array }>;
  NAMES.forEach((name, k) => {
    const shape = shapes[name];
    const data = new Float32Array(shape.reduce((a, b) => a * b, 1));
    for (let i = 0; i < data.length; i++) data[i] = (((37 * i + 11 * k) % 97) - 48) / 64;
    out[name] = { shape, data };
  });
  return out;
}

const tmpDirs: string[] = [];
function tmpDir(tag = 'npz'): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), `unforget-${tag}-`));
  tmpDirs.push(d);
  return d;
}
after(() => {
  if (process.env.UNFORGET_KEEP_TMP) return;
  for (const d of tmpDirs) fs.rmSync(d, { recursive: true, force: true });
});

// ---------------------------------------------------------------------------------------------
// The reader and writer against NumPy's own files
// ---------------------------------------------------------------------------------------------

test('reads np.savez, np.savez_compressed and float64 files written by NumPy', () => {
  const want = fixtureWeights();
  for (const [dir, descr] of [['ref-stored', '<f4'], ['ref-compressed', '<f4'], ['ref-f8', '<f8']] as const) {
    const got = readNpz(path.join(fixture(dir), 'weights.npz'));
    assert.deepEqual([...got.keys()], [...NAMES], dir);
    for (const name of NAMES) {
      const t = got.get(name)!;
      assert.equal(t.descr, descr, `${dir} ${name}`);
      assert.deepEqual(t.shape, want[name].shape, `${dir} ${name}`);
      assert.ok(t.data instanceof Float32Array);
      assert.deepEqual(t.data, want[name].data, `${dir} ${name} values`);
    }
  }
});

test('writeNpz output is byte-identical to np.savez', () => {
  const f = path.join(tmpDir(), 'w.npz');
  writeNpz(f, fixtureWeights());
  assert.ok(fs.readFileSync(f).equals(fs.readFileSync(path.join(fixture('ref-stored'), 'weights.npz'))));
});

test('crc32 matches the standard check value, and continues across empty chunks', () => {
  assert.equal(crc32(Buffer.from('123456789')), 0xcbf43926);
  const a = crc32(Buffer.from('12345'));
  assert.equal(crc32(Buffer.from('6789'), crc32(new Uint8Array(new ArrayBuffer(0)), a)), 0xcbf43926);
});

test('zip64 records, scalars, empty arrays and UTF-8 names round trip', () => {
  const dir = tmpDir();
  const t = {
    a: { shape: [2, 3], data: new Float32Array([1, -2, 3.5, 4, 5, 6e-30]) },
    'bé': { shape: [], data: new Float32Array([7]) },
    c: { shape: [0, 4], data: new Float32Array(0) },
  };
  for (const forceZip64 of [false, true]) {
    const f = path.join(dir, `z${forceZip64}.npz`);
    writeNpz(f, t, { forceZip64 });
    const got = readNpz(f);
    assert.deepEqual([...got.keys()], ['a', 'bé', 'c']);
    for (const [k, v] of Object.entries(t)) {
      assert.deepEqual(got.get(k)!.shape, v.shape);
      assert.deepEqual(got.get(k)!.data, v.data);
    }
    // zip64: the end record carries 0xFFFF/0xFFFFFFFF and a zip64 end record + locator precede it.
    const buf = fs.readFileSync(f);
    assert.equal(buf.readUInt32LE(buf.length - 22 - 20) === 0x07064b50, forceZip64);
  }
});

test('corrupt archives: CRC mismatch, truncation, bad deflate data, not a zip', () => {
  const dir = tmpDir();
  const stored = fs.readFileSync(path.join(fixture('ref-stored'), 'weights.npz'));
  const check = (bytes: Buffer, re: RegExp) => {
    const f = path.join(dir, 'x.npz');
    fs.writeFileSync(f, bytes);
    assert.throws(() => readNpz(f), (e: unknown) => e instanceof DataError && e.message.startsWith(f) && re.test(e.message) && !e.message.includes('\n'));
  };
  // flip a byte in the data of the first member (embed_in.npy: local header 30+12+20 bytes, npy header 128)
  const flipped = Buffer.from(stored);
  flipped[62 + 128 + 5]! ^= 0x40;
  check(flipped, /member 'embed_in\.npy': CRC-32 mismatch/);
  check(stored.subarray(0, stored.length >> 1), /truncated/);
  check(stored.subarray(0, stored.length - 1), /truncated/);
  const comp = Buffer.from(fs.readFileSync(path.join(fixture('ref-compressed'), 'weights.npz')));
  comp.fill(0xff, 62 + 3, 62 + 40);
  check(comp, /member 'embed_in\.npy': (deflate data is corrupt|CRC-32 mismatch|holds \d+ bytes)/);
  check(Buffer.from('definitely not a zip archive, just some text that is long enough'), /not a valid \.npz/);
  assert.throws(() => readNpz(path.join(dir, 'missing.npz')), /missing\.npz: no such file/);
});

// ---------------------------------------------------------------------------------------------
// Through the command line
// ---------------------------------------------------------------------------------------------

const TRAIN = ['train', 'data.path=d.bin', 'model.D=16', 'model.L=1', 'model.H=8', 'model.T=8', 'opt.batch_size=8', 'log.progress=false'];
let work = '';

before(async () => {
  work = tmpDir('npz-cli');
  await runOk(['data', 'markov', '--out', 'd.bin', '--symbols', '8', '--tokens', '20000', '--seed', '3']);
  await runOk(['data', 'markov', '--out', 'small.bin', '--symbols', '8', '--tokens', '96', '--seed', '5']);
  await runOk([...TRAIN, 'stop.num_tokens_train=640', 'data.num_tokens_valid=640', 'log.every_tokens=320', 'run.id=base']);
  cliOk(work, ['export', '--model', 'runs/base', '--format', 'npz', '--out', 'base-npz']); // a real process, once
});

/**
 * The CLI in this process (main() and the error reporter that the bin runs), with stdout/stderr
 * captured: spawning a fresh Node per command would make this file too slow. A few commands below
 * still run as real processes (`cli`), to check the exit status end to end.
 */
async function run(args: string[]): Promise<Result> {
  const out: string[] = [], err: string[] = [];
  const { write: outWrite } = process.stdout, { write: errWrite } = process.stderr;
  const capture = (sink: string[]) => ((chunk: string | Uint8Array) => {
    sink.push(typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8'));
    return true;
  }) as typeof process.stdout.write;
  const cwd = process.cwd();
  let status: number;
  // Let the test runner's pending report output (written to this process's stdout) drain first, so
  // that the capture below swallows only the command's own output.
  await new Promise((resolve) => setImmediate(resolve));
  process.chdir(work);
  process.stdout.write = capture(out);
  process.stderr.write = capture(err);
  try {
    status = await main(args);
  } catch (e) {
    status = reportError(e);
  } finally {
    process.stdout.write = outWrite;
    process.stderr.write = errWrite;
    process.chdir(cwd);
  }
  return { status, stdout: out.join(''), stderr: err.join('') };
}

async function runOk(args: string[]): Promise<Result> {
  const r = await run(args);
  assert.equal(r.status, 0, `unforget ${args.join(' ')} failed (${r.status}):\n${r.stderr}`);
  return r;
}

const evalNtp = async (model: string, data = 'd.bin'): Promise<number> => JSON.parse((await runOk(['eval', '--model', model, '--data', data])).stdout).ntp as number;

test('export: safetensors → npz → safetensors is bit-identical; config.yaml is copied', async () => {
  assert.deepEqual(fs.readdirSync(path.join(work, 'base-npz')).sort(), ['config.yaml', 'weights.npz']);
  const r = await runOk(['export', '--model', 'base-npz', '--format', 'safetensors', '--out', 'back']);
  assert.equal(JSON.parse(r.stdout).weights, path.join('back', 'model.safetensors'));
  const orig = fs.readFileSync(path.join(work, 'runs/base/model.safetensors'));
  assert.ok(fs.readFileSync(path.join(work, 'back/model.safetensors')).equals(orig), 'model.safetensors differs after the round trip');
  assert.ok(fs.readFileSync(path.join(work, 'back/config.yaml')).equals(fs.readFileSync(path.join(work, 'runs/base/config.yaml'))));
  // the npz holds the same float32 values as the safetensors (read by the test's own reader)
  const st = readStIndependent(path.join(work, 'runs/base/model.safetensors')).tensors;
  const npz = readNpz(path.join(work, 'base-npz/weights.npz'));
  assert.deepEqual([...npz.keys()], [...NAMES]);
  for (const name of NAMES) {
    assert.deepEqual(npz.get(name)!.shape, st.get(name)!.shape, name);
    assert.deepEqual(npz.get(name)!.data, st.get(name)!.data, name);
  }
  // default output folder: DIR-FORMAT beside the source
  const d = await runOk(['export', '--model', 'back/', '--format', 'npz']);
  assert.equal(JSON.parse(d.stdout).out, path.join(work, 'back-npz'));
  assert.ok(fs.readFileSync(path.join(work, 'back-npz/weights.npz')).equals(fs.readFileSync(path.join(work, 'base-npz/weights.npz'))));
});

test('acceptance: a NumPy-written reference checkpoint evaluates like the same weights in safetensors and in float64', async () => {
  // the same weights as a safetensors checkpoint, written by the test helper (not the product)
  const stDir = path.join(work, 'fix-st');
  fs.mkdirSync(stDir);
  writeStIndependent(path.join(stDir, 'model.safetensors'), fixtureWeights());
  fs.copyFileSync(path.join(fixture('ref-stored'), 'config.yaml'), path.join(stDir, 'config.yaml'));

  const st = await evalNtp(stDir, 'small.bin');
  for (const dir of ['ref-stored', 'ref-compressed', 'ref-f8']) {
    const ntp = await evalNtp(fixture(dir), 'small.bin');
    assert.ok(Math.abs(ntp - st) <= 1e-5 * Math.abs(st), `${dir}: ntp ${ntp} vs safetensors ${st}`);
  }

  // a flat config.yaml (D, L, H, T, V at the top level, no `model:` section) is read too
  const flat = path.join(work, 'fix-flat');
  fs.mkdirSync(flat);
  fs.copyFileSync(path.join(fixture('ref-stored'), 'weights.npz'), path.join(flat, 'weights.npz'));
  fs.writeFileSync(path.join(flat, 'config.yaml'), Object.entries(FIX).map(([k, v]) => `${k}: ${v}\n`).join(''));
  assert.equal(await evalNtp(flat, 'small.bin'), await evalNtp(fixture('ref-stored'), 'small.bin'));

  // float64 reference: all full T-sequences of small.bin, position 0 = dataset token id 0 (its sidecar)
  const tokens = new Uint16Array(new Uint8Array(fs.readFileSync(path.join(work, 'small.bin'))).buffer);
  const { T, V } = FIX;
  const B = Math.floor(tokens.length / T);
  const ids = Array.from(tokens.subarray(0, B * T));
  for (let b = 0; b < B; b++) ids[b * T] = 0;
  const w = fixtureWeights();
  const logits = gpt64Forward(FIX, weightsTo64(Object.fromEntries(NAMES.map((n) => [n, w[n].data])) as Record<keyof Gpt64Weights, Float32Array>), ids, B, T);
  let sum = 0;
  for (let b = 0; b < B; b++) {
    for (let t = 0; t < T - 1; t++) {
      const off = (b * T + t) * V;
      let mx = -Infinity;
      for (let v = 0; v < V; v++) mx = Math.max(mx, logits[off + v]!);
      let z = 0;
      for (let v = 0; v < V; v++) z += Math.exp(logits[off + v]! - mx);
      sum += mx + Math.log(z) - logits[off + ids[b * T + t + 1]!]!;
    }
  }
  const ref = sum / (B * (T - 1));
  const ntp = await evalNtp(fixture('ref-stored'), 'small.bin');
  assert.ok(Math.abs(ntp - ref) <= 1e-5 * ref, `npz ntp ${ntp} vs float64 reference ${ref}`);
});

test('finetuning and sampling from an npz folder match the safetensors checkpoint exactly', async () => {
  const ft = ['stop.num_tokens_train=320', 'data.num_tokens_valid=640', 'log.every_tokens=320', 'opt.lr=0.003'];
  await runOk([...TRAIN, ...ft, 'model.load_path=runs/base', 'run.id=ft-st']);
  await runOk([...TRAIN, ...ft, 'model.load_path=base-npz', 'run.id=ft-npz']);
  const sum = (id: string) => JSON.parse(fs.readFileSync(path.join(work, 'runs', id, 'summary.json'), 'utf8')) as Record<string, unknown>;
  const a = sum('ft-st'), b = sum('ft-npz');
  assert.equal(typeof a.prev_ntp_start, 'number', 'the npz folder config gives the prev eval set');
  for (const k of ['prev_ntp_start', 'forgetting', 'valid_ntp', 'prev_ntp']) assert.equal(b[k], a[k], k);
  assert.ok(fs.readFileSync(path.join(work, 'runs/ft-npz/model.safetensors')).equals(fs.readFileSync(path.join(work, 'runs/ft-st/model.safetensors'))));
  // the study's own checkpoint (config without data): finetunes too
  await runOk([...TRAIN, ...ft, `model.load_path=${fixture('ref-compressed')}`, 'run.id=ft-ref']);
  assert.ok(fs.existsSync(path.join(work, 'runs/ft-ref/model.safetensors')));
  const sample = async (m: string) => (await runOk(['sample', '--model', m, '--n', '3', '--token-id', '0', '--seed', '4'])).stdout;
  const want = await sample('runs/base');
  assert.equal(await sample('base-npz'), want);
  assert.equal(await sample('base-npz/weights.npz'), want);
});

// ---------------------------------------------------------------------------------------------
// Errors: exit 1, one `error:` line naming the culprit, nothing written
// ---------------------------------------------------------------------------------------------

function listAll(root: string): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (rel: string) => {
    for (const e of fs.readdirSync(path.join(root, rel), { withFileTypes: true })) {
      const r = path.join(rel, e.name);
      if (e.isDirectory()) walk(r);
      else {
        const st = fs.statSync(path.join(root, r));
        out.set(r, `${st.size}:${st.mtimeMs}`);
      }
    }
  };
  walk('');
  return out;
}

function assertOneLineError(r: Result, culprits: Array<string | RegExp>): void {
  assert.equal(r.status, 1, `expected exit 1, got ${r.status}; stderr:\n${r.stderr}`);
  assert.equal(r.stdout, '');
  const lines = r.stderr.replace(/\n$/, '').split('\n');
  assert.equal(lines.length, 1, `stderr should be one line:\n${r.stderr}`);
  assert.match(lines[0]!, /^error: /);
  for (const c of culprits) {
    if (typeof c === 'string') assert.ok(lines[0]!.includes(c), `the error should name '${c}': ${lines[0]}`);
    else assert.match(lines[0]!, c);
  }
}

/** A copy of base-npz as `name`, changed by `edit`. */
function badCopy(name: string, edit: (dir: string) => void): string {
  const dir = path.join(work, 'bad', name);
  fs.cpSync(path.join(work, 'base-npz'), dir, { recursive: true });
  edit(dir);
  return dir;
}

test('bad npz checkpoints: each exits 1 with one line naming the file and tensor, writing nothing', async () => {
  const base = readNpz(path.join(work, 'base-npz/weights.npz'));
  const tensors = () => Object.fromEntries([...base].map(([k, v]) => [k, { shape: v.shape, data: v.data }]));
  const cases: Array<[string, Array<string | RegExp>]> = [];
  const add = (name: string, edit: (dir: string) => void, culprits: Array<string | RegExp>) => {
    badCopy(name, edit);
    cases.push([name, culprits]);
  };
  add('no-weights', (d) => fs.rmSync(path.join(d, 'weights.npz')), ['no-weights', 'weights.npz']);
  add('no-config', (d) => fs.rmSync(path.join(d, 'config.yaml')), [path.join('no-config', 'config.yaml'), 'missing']);
  add('truncated', (d) => {
    const f = path.join(d, 'weights.npz');
    fs.writeFileSync(f, fs.readFileSync(f).subarray(0, 3000));
  }, [path.join('truncated', 'weights.npz'), 'truncated']);
  add('crc', (d) => {
    const f = path.join(d, 'weights.npz');
    const b = fs.readFileSync(f);
    b[b.readUInt32LE(b.length - 22 + 16) - 10]! ^= 1; // just before the central directory: the last member's data (down)
    fs.writeFileSync(f, b);
  }, [path.join('crc', 'weights.npz'), "'down.npy'", 'CRC-32 mismatch']);
  add('wrong-shape', (d) => {
    const t = tensors();
    t.qkv = { shape: [1, 3, 2, 8, 16], data: t.qkv!.data }; // D and H swapped
    writeNpz(path.join(d, 'weights.npz'), t);
  }, [path.join('wrong-shape', 'weights.npz'), "'qkv'", 'has shape [1,3,2,8,16], expected [1,3,2,16,8]']);
  add('missing-tensor', (d) => {
    const t = tensors();
    delete t.up;
    writeNpz(path.join(d, 'weights.npz'), t);
  }, [path.join('missing-tensor', 'weights.npz'), "'up'", 'missing']);
  add('big-endian', (d) => fs.copyFileSync(path.join(fixture('bad-bigendian'), 'weights.npz'), path.join(d, 'weights.npz')), [path.join('big-endian', 'weights.npz'), "'qkv'", "'>f4'", 'big-endian']);
  add('fortran', (d) => fs.copyFileSync(path.join(fixture('bad-fortran'), 'weights.npz'), path.join(d, 'weights.npz')), [path.join('fortran', 'weights.npz'), "'up'", 'Fortran']);
  // the fixtures' tensors are D=8 ones; give those two folders the fixture's config so that only the dtype/order is wrong
  for (const n of ['big-endian', 'fortran']) fs.copyFileSync(path.join(fixture('ref-stored'), 'config.yaml'), path.join(work, 'bad', n, 'config.yaml'));

  const before = listAll(work);
  for (const [name, culprits] of cases) {
    const dir = path.join('bad', name);
    assertOneLineError(await run(['eval', '--model', dir, '--data', 'd.bin']), culprits);
    assertOneLineError(await run(['export', '--model', dir, '--format', 'safetensors', '--out', `out-${name}`]), culprits);
  }
  // the same through real processes: the exit status itself is 1
  assertOneLineError(cli(work, ['eval', '--model', 'bad/truncated', '--data', 'd.bin']), ['truncated']);
  assertOneLineError(cli(work, ['export', '--model', 'bad/big-endian', '--format', 'safetensors', '--out', 'out-x']), ["'>f4'"]);
  // finetuning from a bad folder fails before creating a run folder
  assertOneLineError(await run([...TRAIN, 'stop.num_tokens_train=320', 'model.load_path=bad/wrong-shape', 'run.id=ft-bad']), ["'qkv'"]);
  assert.deepEqual(listAll(work), before, 'a failed command wrote or changed files');
});

test('export refuses an existing non-empty output folder and a bad --format', async () => {
  fs.mkdirSync(path.join(work, 'taken'));
  fs.writeFileSync(path.join(work, 'taken', 'keep.txt'), 'mine');
  const before = listAll(work);
  assertOneLineError(await run(['export', '--model', 'runs/base', '--format', 'npz', '--out', 'taken']), ['taken', 'not empty']);
  assertOneLineError(await run(['export', '--model', 'runs/base', '--format', 'pt', '--out', 'x']), ['--format', "'pt'"]);
  assertOneLineError(await run(['export', '--format', 'npz']), ['--model']);
  assert.deepEqual(listAll(work), before);
  // an existing empty folder is fine
  fs.mkdirSync(path.join(work, 'empty'));
  await runOk(['export', '--model', 'runs/base', '--format', 'npz', '--out', 'empty']);
  assert.deepEqual(fs.readdirSync(path.join(work, 'empty')).sort(), ['config.yaml', 'weights.npz']);
});
