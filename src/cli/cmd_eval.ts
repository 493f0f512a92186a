/**
 * `unforget eval --model DIR --data FILE.bin [--split all|valid] [--token-id ID] [--seq-len T]`: the loss of a
 * model (an unforget checkpoint or a Hugging Face folder) on a token file, over every sequence or over the
 * validation split its run used.
 */
import { parseArgs } from 'node:util';
import { allSequences, readTokenFile, TokenDataset } from '../data/tokens.js';
import { DataError, UnforgetError } from '../errors.js';
import { loadModelFolder } from '../model/load.js';
import { evaluate } from '../train/losses.js';
import { intOpt } from './args.js';

export function cmdEval(args: string[]): void {
  const { values } = parseArgs({
    args,
    options: { model: { type: 'string' }, data: { type: 'string' }, split: { type: 'string', default: 'all' }, 'token-id': { type: 'string' }, batch: { type: 'string' }, 'seq-len': { type: 'string' } },
    strict: true,
  });
  if (!values.model) throw new UnforgetError('eval: --model DIR is required');
  if (!values.data) throw new UnforgetError('eval: --data FILE.bin is required');
  if (values.split !== 'all' && values.split !== 'valid') throw new UnforgetError(`eval: --split must be 'all' or 'valid', got '${values.split}'`);
  const seqLen = values['seq-len'] !== undefined ? intOpt(values['seq-len'], 'seq-len', 0, 2) : null;
  const { model, checkpoint: config, hf } = loadModelFolder(values.model, { T: seqLen });
  const { T, V } = model.cfg;
  const tf = readTokenFile(values.data, { V });
  // Windows start with the given id, else the data's dataset id, else the run's, else the model's BOS.
  const tokenId = values['token-id'] !== undefined ? intOpt(values['token-id'], 'token-id', 0)
    : tf.sidecar.dataset_token_id ?? config?.tokenId ?? hf?.bosId ?? null;
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
    if (!config) throw new UnforgetError(`eval: --split valid needs the run's split, but ${values.model} is not an unforget run folder (no config.yaml)`);
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
