/**
 * `unforget forgetting --base DIR --model DIR2 [--n N] [--seq-len T] [--seed S] [--temperature X] [--mcq FILE ...]`:
 * how far a finetuned model drifted from its base, on the base's own samples (KL and both NTPs), and both models'
 * multiple-choice accuracy. One JSON line on stdout, a small table on stderr.
 */
import { parseArgs } from 'node:util';
import { UnforgetError } from '../errors.js';
import { compareMcq, measureDrift, type McqChange } from '../eval/forgetting.js';
import { loadScoringModel } from '../eval/load.js';
import { readMcqFile } from '../eval/mcq.js';
import { intOpt, mcqKeys, mcqStyleOpt, numOpt } from './args.js';

export async function cmdForgetting(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: {
      base: { type: 'string' }, model: { type: 'string' }, n: { type: 'string' }, 'seq-len': { type: 'string' }, seed: { type: 'string' },
      temperature: { type: 'string' }, 'token-id': { type: 'string' }, batch: { type: 'string' },
      mcq: { type: 'string', multiple: true }, 'mcq-style': { type: 'string' }, tokenizer: { type: 'string' },
    },
    strict: true,
  });
  if (!values.base) throw new UnforgetError('forgetting: --base DIR (the model before finetuning) is required');
  if (!values.model) throw new UnforgetError('forgetting: --model DIR (the finetuned model) is required');
  const n = intOpt(values.n, 'n', 64, 1);
  const seed = intOpt(values.seed, 'seed', 0, 0);
  const temperature = numOpt(values.temperature, 'temperature', 1);
  const batchSize = intOpt(values.batch, 'batch', 16, 1);
  const style = mcqStyleOpt(values['mcq-style'], 'forgetting');
  const files = values.mcq ?? [];
  const keys = mcqKeys(files, 'forgetting');
  const sets = files.map((f) => readMcqFile(f));

  const base = await loadScoringModel(values.base, { tokenizer: values.tokenizer ?? null });
  const model = await loadScoringModel(values.model, { tokenizer: values.tokenizer ?? null });
  const T = intOpt(values['seq-len'], 'seq-len', Math.min(base.model.cfg.T, model.model.cfg.T), 2);
  // Both models are asked as the base was trained: its start token prompts the samples and every question.
  const startToken = values['token-id'] !== undefined ? intOpt(values['token-id'], 'token-id', 0) : base.startToken;
  if (startToken === null) throw new UnforgetError("forgetting: the base has no start token (its data's dataset token id is unknown); pass --token-id ID");
  const drift = measureDrift(base.model, model.model, { n, T, seed, temperature, startToken, batchSize });

  const mcq: Record<string, McqChange> = {};
  if (files.length > 0) {
    const tok = base.tokenizer ?? model.tokenizer;
    if (!tok) throw new UnforgetError('forgetting: --mcq needs a tokenizer: none found beside either checkpoint or in their data sidecars; pass --tokenizer FILE');
    for (let i = 0; i < files.length; i++) mcq[keys[i]!] = await compareMcq(base.model, model.model, tok, sets[i]!, { style, startToken, batchSize });
  }
  process.stdout.write(JSON.stringify({ ...drift, mcq }) + '\n');
  process.stderr.write(table(drift, mcq));
}

/** The result as aligned rows: base, model, change. */
function table(d: { kl: number; ntp_base: number; ntp_model: number; n: number; T: number }, mcq: Record<string, McqChange>): string {
  const num = (x: number | undefined, sign = false) => (x === undefined ? '' : (sign && x >= 0 ? '+' : '') + x.toFixed(4));
  const rows: string[][] = [
    ['', 'base', 'model', 'change'],
    [`ntp (${d.n} samples of the base, T=${d.T})`, num(d.ntp_base), num(d.ntp_model), num(d.ntp_model - d.ntp_base, true)],
    ['kl(base ‖ model)', '', '', num(d.kl)],
  ];
  for (const [name, c] of Object.entries(mcq)) {
    rows.push([`${name} acc (${c.n} questions)`, num(c.acc_base), num(c.acc_model), num(c.acc_change, true)]);
    if (c.acc_norm_base !== undefined) rows.push([`${name} acc_norm`, num(c.acc_norm_base), num(c.acc_norm_model), num(c.acc_norm_change, true)]);
  }
  const width = rows[0]!.map((_, j) => Math.max(...rows.map((r) => [...r[j]!].length)));
  return rows.map((r) => r.map((cell, j) => (j === 0 ? cell.padEnd(width[j]!) : cell.padStart(width[j]!))).join('  ').trimEnd()).join('\n') + '\n';
}
