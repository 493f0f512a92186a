/**
 * `unforget sample --model DIR [--n N] [--prompt TEXT | --token-id ID] ...`: continuations from a
 * checkpoint, one JSON line each (ids, and text when a tokenizer is known).
 */
import fs from 'node:fs';
import { parseArgs } from 'node:util';
import { loadTokenizer } from '../data/tokenizer.js';
import { readTokenFile } from '../data/tokens.js';
import { UnforgetError } from '../errors.js';
import { loadModel, readCheckpointConfig } from '../model/checkpoint.js';
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
      'max-tokens': { type: 'string' },
      seed: { type: 'string' },
      tokenizer: { type: 'string' },
    },
    strict: true,
  });
  if (!values.model) throw new UnforgetError('sample: --model DIR is required');
  if (values.prompt !== undefined && values['token-id'] !== undefined) throw new UnforgetError('sample: give either --prompt or --token-id, not both');
  const model = loadModel(values.model);
  const { T, V } = model.cfg;
  const n = intOpt(values.n, 'n', 1, 1);
  const tokenizer = await loadTokenizer(values.tokenizer ?? null, values.model);
  const savedData = (readCheckpointConfig(values.model).data ?? {}) as Record<string, unknown>;
  let prompt: number[];
  if (values.prompt !== undefined) {
    if (!tokenizer) throw new UnforgetError('sample: --prompt TEXT needs a tokenizer: none found beside the checkpoint or in its data sidecar; pass --tokenizer FILE or use --token-id');
    prompt = await tokenizer.encode(values.prompt);
    const tid = savedData.token_id;
    if (typeof tid === 'number') prompt = [tid, ...prompt];
    if (prompt.length === 0) throw new UnforgetError('sample: the prompt encodes to no tokens');
  } else {
    let tid: number | null = values['token-id'] !== undefined ? intOpt(values['token-id'], 'token-id', 0) : null;
    if (tid === null) {
      const d = savedData;
      if (typeof d.token_id === 'number') tid = d.token_id;
      else if (typeof d.path === 'string' && fs.existsSync(d.path)) tid = readTokenFile(d.path).sidecar.dataset_token_id;
    }
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
