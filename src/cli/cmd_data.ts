/**
 * `unforget data markov --out FILE.bin ...`: a synthetic token file whose best achievable loss is
 * known, so that a training run can be checked against the optimum.
 */
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { bestMarkovLoss, makeMarkovChain, sampleMarkov } from '../data/markov.js';
import { writeTokenFile } from '../data/tokens.js';
import { UnforgetError } from '../errors.js';
import { intOpt, numOpt } from './args.js';

export function cmdData(args: string[]): void {
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
