import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ConfigError, DataError } from '../src/errors.js';
import {
  configFromYamlText,
  dumpConfig,
  generateRunId,
  loadConfig,
  parseOverride,
  validateConfig,
} from '../src/config/load.js';
import { buildSchema, int, section, strList } from '../src/config/schema.js';

function tmpDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'unforget-cfg-'));
}

function yamlFile(text: string, name = 'c.yaml'): string {
  const f = path.join(tmpDir(), name);
  fs.writeFileSync(f, text);
  return f;
}

/** A training run needs a stop criterion; most tests add one so they exercise just their key. */
const STOP = 'stop.num_epochs=1';

/** Asserts a ConfigError with exactly this one-line message. */
function assertConfigError(fn: () => unknown, message: string | RegExp, key?: string): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof ConfigError, `expected ConfigError, got ${e}`);
    if (typeof message === 'string') assert.equal(e.message, message);
    else assert.match(e.message, message);
    assert.ok(!e.message.includes('\n'), 'one line');
    if (key !== undefined) assert.equal(e.key, key);
    return true;
  });
}

test('defaults', () => {
  const c = loadConfig([], [STOP]);
  assert.deepEqual(c.run, { seed: 0, id: null, threads: null });
  assert.deepEqual(c.model, { D: 128, L: 2, H: 32, T: null, config: null, V: null, load_path: null, save_dir: null, lora_rank: null, lora_alpha: null, lora_targets: ['all-linear'] });
  assert.deepEqual(c.prev, { path: null });
  assert.deepEqual(c.data, { path: null, format: 'tokens', train_on: 'assistant', tokenizer: null, token_id: null, split_seed: 0, num_tokens_valid: 0 });
  assert.deepEqual(c.opt, {
    optimizer: 'adamw', lr: 1e-3, b1: 0.9, b2: 0.999, eps: 1e-8, weight_decay: 0.02, batch_size: 32, warmup_tokens: 0, lr_decay: null,
  });
  assert.deepEqual(c.stop, {
    num_tokens_train: null, tokens_per_param: null, num_epochs: 1, target_loss: null, train_time: null, early_stop_steps: null,
  });
  assert.deepEqual(c.log, { every_tokens: 65536, dir: 'runs', progress: true, mcq: null, mcq_style: 'harness' });
  assert.deepEqual(c.reg, { method: null, coeff: 1, synth: false, temperature: 1, top_k: null, top_p: null, prompt: null, buffer: 8, batch_size: null, path: null });
  assert.deepEqual(c.mix, { path: null, coeff: 0 });
  assert.deepEqual(Object.keys(c), ['run', 'model', 'prev', 'data', 'opt', 'stop', 'log', 'reg', 'mix']);
});

test('precedence: defaults < base < files in order < overrides in order', () => {
  const f1 = yamlFile('opt:\n  lr: 1e-2\n  batch_size: 8\nmodel:\n  D: 64\n');
  const f2 = yamlFile('opt:\n  lr: 3e-4\nstop:\n  num_epochs: 2\n');
  const c = loadConfig([f1, f2], ['model.L=4', 'model.L=6', 'run.seed=7'], {
    model: { D: 256, L: 3, H: 16 },
    opt: { batch_size: 4, b2: 0.99 },
  });
  assert.equal(c.opt.lr, 3e-4); // f2 over f1
  assert.equal(c.opt.batch_size, 8); // f1 over base
  assert.equal(c.opt.b2, 0.99); // base over default
  assert.equal(c.model.D, 64); // file over base
  assert.equal(c.model.H, 16); // base, untouched by files
  assert.equal(c.model.L, 6); // last override wins
  assert.equal(c.run.seed, 7);
  assert.equal(c.stop.num_epochs, 2);
  assert.equal(c.opt.eps, 1e-8); // default untouched
});

test('override values are YAML flow values', () => {
  assert.deepEqual(parseOverride('opt.lr=3e-4'), { key: 'opt.lr', value: 3e-4 });
  assert.deepEqual(parseOverride('toy.tasks=[sort,add]'), { key: 'toy.tasks', value: ['sort', 'add'] });
  assert.deepEqual(parseOverride('reg.method=null'), { key: 'reg.method', value: null });
  assert.deepEqual(parseOverride('reg.method=~'), { key: 'reg.method', value: null });
  assert.deepEqual(parseOverride('log.progress=false'), { key: 'log.progress', value: false });
  assert.deepEqual(parseOverride('model={D: 64}'), { key: 'model', value: { D: 64 } });
  assert.deepEqual(parseOverride('a.b=x=y'), { key: 'a.b', value: 'x=y' }); // split at the first '='
  // Things YAML would read as block structure or a comment stay literal strings.
  assert.deepEqual(parseOverride('data.path=a: b'), { key: 'data.path', value: 'a: b' });
  assert.deepEqual(parseOverride('data.path=- x'), { key: 'data.path', value: '- x' });
  assert.deepEqual(parseOverride('data.path=#x.bin'), { key: 'data.path', value: '#x.bin' });
  assert.deepEqual(parseOverride('data.path=C:\\d\\x.bin'), { key: 'data.path', value: 'C:\\d\\x.bin' });
  assert.deepEqual(parseOverride('run.id='), { key: 'run.id', value: '' });
  assertConfigError(() => parseOverride('opt.lr=[1,'), /^config key 'opt\.lr': cannot parse value '\[1,'/, 'opt.lr');
});

test('numbers: 3e-4, quoted numbers, digit separators, YAML floats for int keys', () => {
  const c = loadConfig([], [
    'opt.lr=3e-4', "opt.eps='1e-6'", 'stop.num_tokens_train=1_000_000', 'model.D=64.0', 'opt.weight_decay=0', 'data.split_seed=-3',
  ]);
  assert.equal(c.opt.lr, 0.0003);
  assert.equal(c.opt.eps, 1e-6);
  assert.equal(c.stop.num_tokens_train, 1_000_000);
  assert.equal(c.model.D, 64);
  assert.equal(c.opt.weight_decay, 0);
  assert.equal(c.data.split_seed, -3);
  assert.equal(loadConfig([yamlFile('opt:\n  lr: 3e-4\n  b1: .5\n')], [STOP]).opt.lr, 0.0003);
});

test('NaN, infinite and negative learning rates name opt.lr', () => {
  for (const v of ['NaN', '.nan', 'nan', "'NaN'"]) {
    assertConfigError(() => loadConfig([], [STOP, `opt.lr=${v}`]), "config key 'opt.lr': expected a finite number ≥ 0, got NaN", 'opt.lr');
  }
  assertConfigError(() => loadConfig([], [STOP, 'opt.lr=.inf']), "config key 'opt.lr': expected a finite number ≥ 0, got Infinity");
  assertConfigError(() => loadConfig([], [STOP, 'opt.lr=-1e-3']), "config key 'opt.lr': expected a finite number ≥ 0, got -0.001");
  assertConfigError(() => loadConfig([yamlFile('opt:\n  lr: .nan\n')], [STOP]), /^config key 'opt\.lr': .* got NaN$/);
});

test('unknown keys name the dotted key, with a suggestion for typos', () => {
  assertConfigError(() => loadConfig([], [STOP, 'model.Dx=3']), "config key 'model.Dx': unknown key (did you mean 'model.D'?)", 'model.Dx');
  assertConfigError(() => loadConfig([], [STOP, 'model.width=3']), "config key 'model.width': unknown key", 'model.width');
  // Numbers are not silently turned into strings: a numeric path must be quoted.
  assertConfigError(() => loadConfig([], [STOP, 'data.path=123']), "config key 'data.path': expected a non-empty string or null, got 123");
  assertConfigError(() => loadConfig([], [STOP, 'opt.learning_rate=3']), "config key 'opt.learning_rate': unknown key");
  assertConfigError(() => loadConfig([], [STOP, 'otp.lr=3']), "config key 'otp': unknown key (did you mean 'opt'?)", 'otp');
  assertConfigError(() => loadConfig([], [STOP, 'toy.tasks=[a]']), "config key 'toy': unknown key");
  assertConfigError(() => loadConfig([yamlFile('reg:\n  methd: kl_pre\n')], [STOP]), "config key 'reg.methd': unknown key (did you mean 'reg.method'?)");
  assertConfigError(() => loadConfig([], [STOP, 'model.a=1', 'model.b=2']), "config key 'model.a': unknown key (also unknown: model.b)");
  // An unknown key is reported even when another key is also wrong (it is usually the cause).
  assertConfigError(() => loadConfig([], [STOP, 'opt.lr=-1', 'opt.lrr=1']), /^config key 'opt\.lrr': unknown key/);
  // A value below a leaf is not a section.
  assertConfigError(() => loadConfig([], [STOP, 'opt.lr.x=1']), "config key 'opt.lr': expected a finite number ≥ 0, got a mapping");
});

test('wrong types name the key and show the value', () => {
  const cases: Array<[string, string]> = [
    ['model.D=abc', "config key 'model.D': expected an integer > 0, got 'abc'"],
    ['model.D=1.5', "config key 'model.D': expected an integer > 0, got 1.5"],
    ['model.D=0', "config key 'model.D': expected an integer > 0, got 0"],
    ['model.D=null', "config key 'model.D': expected an integer > 0, got null"],
    ['model.D=[1,2]', "config key 'model.D': expected an integer > 0, got [1,2]"],
    ['model.V=0', "config key 'model.V': expected an integer > 0 or null, got 0"],
    ['model.lora_rank=-1', "config key 'model.lora_rank': expected an integer > 0 or null, got -1"],
    ['opt.optimizer=adam', "config key 'opt.optimizer': expected one of adamw, sgd, got 'adam'"],
    ['opt.b2=1', "config key 'opt.b2': expected a finite number ≥ 0 and < 1, got 1"],
    ['opt.eps=0', "config key 'opt.eps': expected a finite number > 0, got 0"],
    ['opt.lr_decay=linear', "config key 'opt.lr_decay': expected null or one of cosine, got 'linear'"],
    ['log.progress=maybe', "config key 'log.progress': expected true or false, got 'maybe'"],
    ['log.dir=', "config key 'log.dir': expected a non-empty string, got ''"],
    ['log.every_tokens=1e-3', "config key 'log.every_tokens': expected an integer > 0, got 0.001"],
    ['data.path=5', "config key 'data.path': expected a non-empty string or null, got 5"],
    ['data.token_id=4294967296', "config key 'data.token_id': expected an integer ≥ 0 and ≤ 4294967295 or null, got 4294967296"],
    ['run.id=a/b', "config key 'run.id': expected a folder name (no / or \\) or null, got 'a/b'"],
    ['run.id=', "config key 'run.id': expected a folder name (no / or \\) or null, got ''"],
    ['run.threads=0', "config key 'run.threads': expected an integer > 0 or null, got 0"],
    ['reg.method=bogus', "config key 'reg.method': expected null or one of ntp_pre, kl_pre, kl_dwn, replace, got 'bogus'"],
    ['reg.temperature=0', "config key 'reg.temperature': expected a finite number > 0, got 0"],
    ['mix.coeff=1.5', "config key 'mix.coeff': expected a finite number ≥ 0 and ≤ 1, got 1.5"],
    ['stop.num_epochs=0', "config key 'stop.num_epochs': expected a finite number > 0 or null, got 0"],
    ['model=5', "config key 'model': expected a mapping of keys, got 5"],
    ['model=[1]', "config key 'model': expected a mapping of keys, got [1]"],
  ];
  for (const [ov, msg] of cases) assertConfigError(() => loadConfig([], [STOP, ov]), msg);
});

test('null spellings for reg.method and opt.lr_decay; booleans from strings', () => {
  for (const v of ['null', 'none', 'None', '~', "'null'"]) {
    assert.equal(loadConfig([], [STOP, 'reg.method=kl_pre', `reg.method=${v}`]).reg.method, null, v);
  }
  assert.equal(loadConfig([yamlFile('reg:\n  method: null\n')], [STOP]).reg.method, null);
  assert.equal(loadConfig([yamlFile('reg:\n  method: none\n')], [STOP]).reg.method, null);
  assert.equal(loadConfig([], [STOP, 'reg.method=kl_pre']).reg.method, 'kl_pre');
  assert.equal(loadConfig([], [STOP, 'opt.lr_decay=none']).opt.lr_decay, null);
  assert.equal(loadConfig([], [STOP, 'log.progress=no']).log.progress, false);
  assert.equal(loadConfig([], [STOP, 'log.progress=On']).log.progress, true);
  // A path really called 'none' is a path.
  assert.equal(loadConfig([], [STOP, 'data.path=none']).data.path, 'none');
  assert.equal(loadConfig([], [STOP, 'data.path=x.bin', 'data.path=null']).data.path, null);
});

test('stop criteria: at most one length criterion, at least one criterion, cosine needs a length', () => {
  assertConfigError(
    () => loadConfig([], ['stop.num_tokens_train=1000', 'stop.num_epochs=2']),
    "config key 'stop.num_epochs': conflicts with stop.num_tokens_train; set at most one of stop.num_tokens_train, stop.tokens_per_param, stop.num_epochs",
    'stop.num_epochs',
  );
  assertConfigError(() => loadConfig([], ['stop.tokens_per_param=20', 'stop.num_epochs=2']), /'stop\.num_epochs': conflicts with stop\.tokens_per_param/);
  assertConfigError(
    () => loadConfig([], []),
    "config key 'stop': no stopping criterion; set at least one of stop.num_tokens_train, stop.tokens_per_param, stop.num_epochs, stop.target_loss, stop.train_time, stop.early_stop_steps",
    'stop',
  );
  assertConfigError(() => loadConfig([], ['stop.train_time=60', 'opt.lr_decay=cosine']), /^config key 'opt\.lr_decay': cosine decay needs a fixed run length/);
  // Each non-length criterion alone is enough; a length criterion allows cosine.
  for (const ov of ['stop.target_loss=2.5', 'stop.train_time=60', 'stop.early_stop_steps=3', 'stop.tokens_per_param=20']) {
    assert.doesNotThrow(() => loadConfig([], [ov]), ov);
  }
  assert.equal(loadConfig([], ['stop.num_tokens_train=1000', 'opt.lr_decay=cosine']).opt.lr_decay, 'cosine');
  // Commands that do not train can skip the requirement.
  assert.equal(loadConfig([], [], undefined, { requireStop: false }).stop.num_epochs, null);
  // ...but not the conflict check.
  assertConfigError(() => loadConfig([], ['stop.num_tokens_train=1', 'stop.num_epochs=1'], undefined, { requireStop: false }), /conflicts/);
});

test('model shape rules', () => {
  assertConfigError(() => loadConfig([], [STOP, 'model.D=100', 'model.H=16']), "config key 'model.H': model.D=100 is not divisible by the head size model.H=16", 'model.H');
  assertConfigError(() => loadConfig([], [STOP, 'model.D=99', 'model.H=33']), /^config key 'model\.H': expected an even head size .* got 33$/);
  assert.equal(loadConfig([], [STOP, 'model.D=96', 'model.H=16']).model.D, 96);
});

test('replay and mix rules', () => {
  assertConfigError(() => loadConfig([], [STOP, 'reg.method=replace', 'reg.coeff=2']), /^config key 'reg\.coeff': with reg\.method=replace .* ≤ 1, got 2$/);
  assert.equal(loadConfig([], [STOP, 'reg.method=replace', 'reg.coeff=0.25']).reg.coeff, 0.25);
  assert.equal(loadConfig([], [STOP, 'reg.method=kl_pre', 'reg.coeff=10']).reg.coeff, 10);
  assertConfigError(() => loadConfig([], [STOP, 'mix.coeff=0.5']), "config key 'mix.path': mix.coeff=0.5 needs a second dataset in mix.path");
  assert.equal(loadConfig([], [STOP, 'mix.coeff=0.5', 'mix.path=x.bin']).mix.coeff, 0.5);
});

test('malformed overrides are errors naming them', () => {
  assertConfigError(() => loadConfig([], [STOP, 'opt.lr']), "config key 'opt.lr': malformed override 'opt.lr': expected key=value, e.g. opt.lr=3e-4", 'opt.lr');
  assertConfigError(() => loadConfig([], [STOP, '=5']), /^config key '': malformed override '=5'/);
  assertConfigError(() => loadConfig([], [STOP, 'opt..lr=5']), /^config key 'opt\.\.lr': malformed override 'opt\.\.lr=5'/);
  assertConfigError(() => loadConfig([], [STOP, '.lr=5']), /malformed override '\.lr=5'/);
});

test('config file problems are DataErrors naming the file', () => {
  const missing = path.join(tmpDir(), 'nope.yaml');
  assert.throws(() => loadConfig([missing], [STOP]), { name: 'DataError', message: `${missing}: config file not found` });
  const bad = yamlFile('opt:\n  lr: [1,\n');
  assert.throws(() => loadConfig([bad], [STOP]), (e: unknown) => e instanceof DataError && e.message.startsWith(`${bad}: invalid YAML: `) && !e.message.includes('\n'));
  const dup = yamlFile('opt:\n  lr: 1\n  lr: 2\n');
  assert.throws(() => loadConfig([dup], [STOP]), (e: unknown) => e instanceof DataError && e.message.startsWith(`${dup}: invalid YAML`));
  const list = yamlFile('- a\n- b\n');
  assert.throws(() => loadConfig([list], [STOP]), { name: 'DataError', message: `${list}: expected a mapping of config sections at the top level, got ["a","b"]` });
  const dir = tmpDir();
  assert.throws(() => loadConfig([dir], [STOP]), (e: unknown) => e instanceof DataError && e.message.startsWith(`${dir}: cannot read config file`));
});

test('empty files and empty sections keep the defaults', () => {
  assert.equal(loadConfig([yamlFile('')], [STOP]).opt.lr, 1e-3);
  assert.equal(loadConfig([yamlFile('# only a comment\n')], [STOP]).opt.lr, 1e-3);
  const c = loadConfig([yamlFile('reg:\nopt:\n  lr: 0.5\n')], [STOP]);
  assert.equal(c.opt.lr, 0.5);
  assert.deepEqual(c.reg, loadConfig([], [STOP]).reg);
});

test('dotted keys in files nest where they appear', () => {
  assertConfigError(() => loadConfig([yamlFile('model:\n  mix.coeff: 1\n')], [STOP]), "config key 'model.mix': unknown key");
  assert.equal(loadConfig([yamlFile('stop.num_epochs: 3\n')], []).stop.num_epochs, 3);
});

test('extra sections extend the schema', () => {
  const TASKS = ['add', 'reversal', 'sort', 'modadd'] as const;
  const toy = section({
    tasks: strList(TASKS).default([...TASKS]),
    n_digits: int({ gt: 0 }).default(3),
  });
  const c = loadConfig([], ['toy.tasks=[sort,add]', 'toy.n_digits=4'], undefined, { sections: { toy }, requireStop: false });
  assert.deepEqual(c.toy.tasks, ['sort', 'add']);
  assert.equal(c.toy.n_digits, 4);
  assert.equal(c.opt.lr, 1e-3);
  assert.deepEqual(loadConfig([], [], undefined, { sections: { toy }, requireStop: false }).toy.tasks, [...TASKS]);
  assert.deepEqual(loadConfig([], ['toy.tasks=sort'], undefined, { sections: { toy }, requireStop: false }).toy.tasks, ['sort']);
  const opts = { sections: { toy }, requireStop: false };
  assertConfigError(() => loadConfig([], ['toy.tasks=[sort,mul]'], undefined, opts), "config key 'toy.tasks': expected a non-empty list of add, reversal, sort, modadd, got [\"sort\",\"mul\"]");
  assertConfigError(() => loadConfig([], ['toy.tasks=[]'], undefined, opts), /^config key 'toy\.tasks': expected a non-empty list/);
  assertConfigError(() => loadConfig([], ['toy.digits=3'], undefined, opts), "config key 'toy.digits': unknown key (did you mean 'toy.n_digits'?)");
  assert.throws(() => buildSchema({ opt: toy }), /config section 'opt' is already defined/);
});

test('model.load_path must exist when loading a config, and is checked before the stop criterion; saved configs are not checked', () => {
  const gone = path.join(tmpDir(), 'gone');
  assertConfigError(() => loadConfig([], [`model.load_path=${gone}`]), `config key 'model.load_path': ${gone}: checkpoint folder does not exist`, 'model.load_path');
  assertConfigError(() => loadConfig([], [STOP, `model.load_path=${gone}.npz`]), `config key 'model.load_path': ${gone}.npz: checkpoint file does not exist`);
  const here = tmpDir();
  assert.equal(loadConfig([], [STOP, `model.load_path=${here}`]).model.load_path, here);
  assert.equal(validateConfig({ model: { load_path: gone } }, { requireStop: false }).model.load_path, gone);
  assert.equal(configFromYamlText(`model:\n  load_path: ${gone}\n`).model.load_path, gone);
});

test('dumpConfig round-trips through configFromYamlText', () => {
  const c = loadConfig([], [
    'stop.num_tokens_train=123456', 'opt.lr=3e-4', 'opt.eps=1e-10', 'opt.lr_decay=cosine', 'run.id=20240102-030405-abcd',
    "data.path='123'", 'reg.method=kl_pre', 'reg.synth=true', 'model.V=4096', 'mix.path=yes', 'mix.coeff=0.1', 'log.dir=null.d',
  ]);
  const text = dumpConfig(c);
  assert.ok(text.includes('lr: 0.0003'), text);
  const back = configFromYamlText(text, 'runs/x/config.yaml');
  assert.deepEqual(back, c);
  assert.equal(back.data.path, '123');
  assert.equal(back.mix.path, 'yes');
  // And through loadConfig from a file, too.
  assert.deepEqual(loadConfig([yamlFile(text)], []), c);
});

test('configFromYamlText drops unknown sections but reports bad keys as DataErrors naming the source', () => {
  const c = configFromYamlText('toy:\n  tasks: [add]\nopt:\n  lr: 0.5\n', 'ckpt/config.yaml');
  assert.equal(c.opt.lr, 0.5);
  assert.equal((c as Record<string, unknown>).toy, undefined);
  assert.equal(c.stop.num_epochs, null); // no stop criterion needed to read a checkpoint
  assert.throws(() => configFromYamlText('opt:\n  lr: -1\n', 'ckpt/config.yaml'), {
    name: 'DataError',
    message: "ckpt/config.yaml: config key 'opt.lr': expected a finite number ≥ 0, got -1",
  });
  assert.throws(() => configFromYamlText('opt: [\n', 'ckpt/config.yaml'), (e: unknown) => e instanceof DataError && e.message.startsWith('ckpt/config.yaml: invalid YAML'));
  assert.throws(() => configFromYamlText('42', 'c.yaml'), { name: 'DataError', message: 'c.yaml: expected a mapping of config sections at the top level, got 42' });
});

test('validateConfig reports a non-mapping root', () => {
  assertConfigError(() => validateConfig(5), "config key '<root>': expected a mapping of keys, got 5");
});

test('generateRunId', () => {
  const id = generateRunId(new Date(2024, 0, 2, 3, 4, 5));
  assert.match(id, /^20240102-030405-[0-9a-f]{4}$/);
  assert.match(generateRunId(), /^\d{8}-\d{6}-[0-9a-f]{4}$/);
  // It is a valid run.id.
  assert.equal(loadConfig([], [STOP, `run.id=${id}`]).run.id, id);
});
