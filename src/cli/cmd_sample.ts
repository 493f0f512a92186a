/**
 * `unforget sample --model DIR [--n N] [--prompt TEXT [--chat] | --token-id ID] ...`: continuations from a
 * checkpoint, one JSON line each (ids, and text when a tokenizer is known). A Hugging Face model's text goes
 * through its own tokenizer (after the BOS; special tokens left out of the decoded text), and `--chat` asks as a
 * user turn of its chat template.
 */
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { loadModelTokenizer, type ModelTokenizer } from '../data/hf_tokenizer.js';
import { loadTokenizer, type TextCodec } from '../data/tokenizer.js';
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
      chat: { type: 'boolean' },
    },
    strict: true,
  });
  if (!values.model) throw new UnforgetError('sample: --model DIR is required');
  if (values.prompt !== undefined && values['token-id'] !== undefined) throw new UnforgetError('sample: give either --prompt or --token-id, not both');
  if (values.chat && values.prompt === undefined) throw new UnforgetError('sample: --chat needs --prompt TEXT (the user turn)');
  const folder = checkpointPaths(values.model).dir;
  const { model, checkpoint: config, hf } = loadModelFolder(folder, { frozen: true });
  const { T, V } = model.cfg;
  const n = intOpt(values.n, 'n', 1, 1);
  // Hugging Face models (and runs of their architectures) carry their own tokenizer with special tokens.
  const hfTok = hf ? loadModelTokenizer(values.tokenizer ?? (fs.existsSync(path.join(folder, 'tokenizer.json')) ? folder : hf.dir)) : null;
  const tokenizer: TextCodec | null = hfTok ? null : await loadTokenizer(values.tokenizer ?? null, folder, config?.dataPath ?? null);
  // Every training sequence started with the dataset token id (unforget runs) or the BOS (Hugging Face models).
  const startToken = (config ? checkpointTokenId(config) : null) ?? hfTok?.bosId ?? hf?.bosId ?? null;
  let prompt: number[];
  if (values.prompt !== undefined) {
    if (hfTok) prompt = await hfPrompt(hfTok, values.prompt, values.chat === true, startToken);
    else {
      if (values.chat) throw new UnforgetError(`sample: --chat needs a Hugging Face tokenizer with a chat template, and ${folder} has none`);
      if (!tokenizer) throw new UnforgetError('sample: --prompt TEXT needs a tokenizer: none found beside the checkpoint or in its data sidecar; pass --tokenizer FILE or use --token-id');
      prompt = await tokenizer.encode(values.prompt);
      if (startToken !== null) prompt = [startToken, ...prompt];
    }
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
    if (hfTok) rec.text = await hfTok.decode(ids.slice(P), { skipSpecialTokens: true });
    else if (tokenizer) rec.text = await tokenizer.decode(ids.slice(P));
    process.stdout.write(JSON.stringify(rec) + '\n');
  }
}

/**
 * A text prompt for a Hugging Face model: its tokens (no special tokens added) after the start token, or with
 * `chat` the text as a user turn of the chat template with the generation prompt, which starts with the BOS once
 * whether or not the template writes it.
 */
async function hfPrompt(tok: ModelTokenizer, text: string, chat: boolean, startToken: number | null): Promise<number[]> {
  if (!chat) return [...(startToken !== null ? [startToken] : []), ...(await tok.encode(text, { addSpecialTokens: false }))];
  if (tok.chatTemplate === null) throw new UnforgetError(`sample: --chat needs a chat template, and ${tok.configFile} has no chat_template`);
  const ids = await tok.encode(tok.renderChat([{ role: 'user', content: text }], { addGenerationPrompt: true }), { addSpecialTokens: false });
  return tok.bosId !== null && ids[0] !== tok.bosId ? [tok.bosId, ...ids] : ids;
}

function topP(v: string | undefined): number {
  const p = numOpt(v, 'top-p', 1);
  if (!(p > 0 && p <= 1)) throw new UnforgetError(`sample: --top-p must be in (0, 1], got ${v}`);
  return p;
}
