/**
 * `unforget eval --model DIR --data FILE.bin [--split all|valid] [--token-id ID] [--seq-len T]`: the loss of a
 * model (an unforget checkpoint or a Hugging Face folder) on a token file, over every sequence or over the
 * validation split its run used.
 * `unforget eval --model DIR --mcq FILE.jsonl ... [--mcq-style harness|chat]`: its multiple-choice accuracy.
 */
import { parseArgs } from 'node:util';
import { allSequences, readTokenFile, TokenDataset } from '../data/tokens.js';
import { ConfigError, DataError, UnforgetError } from '../errors.js';
import { loadModelFolder } from '../model/load.js';
import { loadScoringModel } from '../eval/load.js';
import { evaluateMcq, readMcqFile, type McqResult } from '../eval/mcq.js';
import { evaluate } from '../train/losses.js';
import { intOpt, mcqKeys, mcqStyleOpt } from './args.js';

export async function cmdEval(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: {
      model: { type: 'string' }, data: { type: 'string' }, split: { type: 'string', default: 'all' }, 'token-id': { type: 'string' }, batch: { type: 'string' }, 'seq-len': { type: 'string' },
      mcq: { type: 'string', multiple: true }, 'mcq-style': { type: 'string' }, tokenizer: { type: 'string' },
    },
    strict: true,
  });
  if (!values.model) throw new UnforgetError('eval: --model DIR is required');
  if (values.mcq) {
    if (values.data) throw new UnforgetError('eval: give either --data FILE.bin or --mcq FILE.jsonl, not both');
    const out = await evalMcq(values.model, values.mcq, { style: values['mcq-style'], tokenId: values['token-id'], batch: values.batch, tokenizer: values.tokenizer });
    process.stdout.write(JSON.stringify(out) + '\n');
    return;
  }
  if (values['mcq-style'] !== undefined) throw new UnforgetError('eval: --mcq-style needs --mcq FILE.jsonl');
  if (!values.data) throw new UnforgetError('eval: --data FILE.bin or --mcq FILE.jsonl is required');
  if (values.split !== 'all' && values.split !== 'valid') throw new UnforgetError(`eval: --split must be 'all' or 'valid', got '${values.split}'`);
  const seqLen = values['seq-len'] !== undefined ? intOpt(values['seq-len'], 'seq-len', 0, 2) : null;
  const { model, checkpoint: config, hf } = loadAtSeqLen(values.model, seqLen);
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

/** The model at --seq-len: the limit a Hugging Face config sets on T is reported against the flag the user gave. */
function loadAtSeqLen(dir: string, seqLen: number | null): ReturnType<typeof loadModelFolder> {
  try {
    return loadModelFolder(dir, { T: seqLen, frozen: true });
  } catch (e) {
    if (seqLen !== null && e instanceof ConfigError && e.key === 'model.T') {
      throw new UnforgetError(`eval: --seq-len ${e.message.slice(e.message.indexOf(': ') + 2)}`);
    }
    throw e;
  }
}

/** One set: `{acc, acc_norm, n}`; several: one such object per file, keyed by the file's base name. */
async function evalMcq(model: string, files: string[], o: { style?: string; tokenId?: string; batch?: string; tokenizer?: string }): Promise<McqResult | Record<string, McqResult>> {
  const style = mcqStyleOpt(o.style, 'eval');
  const keys = mcqKeys(files, 'eval');
  const batchSize = intOpt(o.batch, 'batch', 32, 1);
  const sets = files.map((f) => readMcqFile(f));
  const loaded = await loadScoringModel(model, { tokenizer: o.tokenizer ?? null });
  const { V } = loaded.model.cfg;
  if (!loaded.tokenizer) throw new UnforgetError('eval: --mcq needs a tokenizer: none found beside the checkpoint or in its data sidecar; pass --tokenizer FILE');
  const startToken = o.tokenId !== undefined ? intOpt(o.tokenId, 'token-id', 0) : loaded.startToken;
  if (startToken !== null && startToken >= V) throw new UnforgetError(`eval: start token id ${startToken} is ≥ the model's vocabulary size ${V}`);
  const results: Record<string, McqResult> = {};
  for (let i = 0; i < files.length; i++) {
    results[keys[i]!] = await evaluateMcq(loaded.model, loaded.tokenizer, sets[i]!, { style, startToken, batchSize });
  }
  return files.length === 1 ? results[keys[0]!]! : results;
}
