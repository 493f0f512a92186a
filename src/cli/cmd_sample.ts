/**
 * `unforget sample --model DIR [--n N] [--prompt TEXT | --token-id ID] ...`: continuations from a
 * checkpoint, one JSON line each (ids, and text when a tokenizer is known).
 */
import { parseArgs } from 'node:util';
import { loadTokenizer } from '../data/tokenizer.js';
import { UnforgetError } from '../errors.js';
import { checkpointPaths, checkpointTokenId } from '../model/checkpoint.js';
import { loadModelFolder } from '../model/load.js';
import { sample } from '../model/sample.js';
import { Rng } from '../util/rng.js';
import { intOpt, numOpt } from './args.js';

export async function cmdSample(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: {
      model: { type: 'string' },
      n: { type: 'string' },
      prompt: { type: 'string' },
      'token-id': { type: 'string' },
      temperature: { type: 'string' },
      'top-k': { type: 'string' },
      'top-p': { type: 'string' },
      'max-tokens': { type: 'string' },
      seed: { type: 'string' },
      tokenizer: { type: 'string' },
    },
    strict: true,
  });
  if (!values.model) throw new UnforgetError('sample: --model DIR is required');
  if (values.prompt !== undefined && values['token-id'] !== undefined) throw new UnforgetError('sample: give either --prompt or --token-id, not both');
  const { model, checkpoint: config, hf } = loadModelFolder(checkpointPaths(values.model).dir, { frozen: true });
  const { T, V } = model.cfg;
  const n = intOpt(values.n, 'n', 1, 1);
  const tokenizer = await loadTokenizer(values.tokenizer ?? null, checkpointPaths(values.model).dir, config?.dataPath ?? null);
  // Every training sequence started with the dataset token id (unforget runs) or the BOS (Hugging Face models).
  const startToken = (config ? checkpointTokenId(config) : null) ?? hf?.bosId ?? null;
  let prompt: number[];
  if (values.prompt !== undefined) {
    if (!tokenizer) throw new UnforgetError('sample: --prompt TEXT needs a tokenizer: none found beside the checkpoint or in its data sidecar; pass --tokenizer FILE or use --token-id');
    prompt = await tokenizer.encode(values.prompt);
    if (startToken !== null) prompt = [startToken, ...prompt];
    if (prompt.length === 0) throw new UnforgetError('sample: the prompt encodes to no tokens');
  } else {
    const tid = values['token-id'] !== undefined ? intOpt(values['token-id'], 'token-id', 0) : startToken;
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
    topP: topP(values['top-p']),
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

function topP(v: string | undefined): number {
  const p = numOpt(v, 'top-p', 1);
  if (!(p > 0 && p <= 1)) throw new UnforgetError(`sample: --top-p must be in (0, 1], got ${v}`);
  return p;
}
