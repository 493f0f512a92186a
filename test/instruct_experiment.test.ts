/**
 * `unforget experiment instruct` end to end at a tiny size, on two made-up "languages" written as corpora under the
 * names the experiment expects (nothing is fetched): the default model is pretrained once and cached as a Hugging
 * Face folder with a ChatML tokenizer, every method finetunes it on "Continue this text" instructions, and the
 * report's numbers are recomputed here from the runs' metrics. The built data are checked against the corpus text
 * itself: multiple-choice answers are the true continuations, held-out documents never reach pretraining, and the
 * held-out token files decode back to their documents.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { writeCorpus } from '../src/data/corpora.js';
import { loadModelTokenizer } from '../src/data/hf_tokenizer.js';
import { readTokenFile } from '../src/data/tokens.js';
import { readSafetensors } from '../src/io/safetensors.js';
import { Rng } from '../src/util/rng.js';
import { cli, cliOk } from './helpers/cli.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'uf-instruct-'));
after(() => fs.rmSync(dir, { recursive: true, force: true }));

/** Two made-up languages with different letter statistics, so finetuning on the second forgets the first. */
function fakeCorpora(out: string): Record<'en' | 'es', Array<{ id: string; text: string }>> {
  const rng = new Rng(4242);
  const rand = () => rng.uniform();
  const words = (alphabet: string, n: number) =>
    Array.from({ length: n }, () => Array.from({ length: 2 + Math.floor(rand() * 5) }, () => alphabet[Math.floor(rand() * alphabet.length)]).join('')).join(' ');
  const docs = (alphabet: string, count: number) => Array.from({ length: count }, (_, i) => ({ id: `d${i}`, text: `${words(alphabet, 50)}.\n\n${words(alphabet, 50)}.` }));
  const meta = (language: string) => ({ language, description: 'test corpus', source: 'test', url_or_origin: 'test', license: 'CC0', license_from: 'test', cleaning: 'none' });
  const en = docs('etaoinshrdlu', 160), es = docs('aeosnrlidñúé¿¡', 160);
  assert.equal(new Set(en.map((d) => d.text)).size, en.length, 'distinct documents');
  writeCorpus(out, 'brown', en, meta('en'));
  writeCorpus(out, 'debian-reference-es', es, meta('es'));
  return { en, es };
}

const corpora = fakeCorpora(path.join(dir, 'corpora'));
const TINY = [
  'model.D=32', 'model.L=1', 'model.H=16', 'model.T=128', 'opt.batch_size=8', 'opt.lr=0.01', 'data.num_tokens_valid=2048',
  'lang.corpora_dir=corpora', 'lang.vocab_size=300', 'lang.old=brown', 'lang.new=debian-reference-es', 'log.progress=false', 'run.threads=1',
  'instruct.pretrain_tokens=60000', 'instruct.pretrain_lr=0.01', 'instruct.pretrain_warmup_tokens=2000', 'instruct.finetune_tokens=32000',
  'instruct.every_tokens=4096', 'instruct.examples=200', 'instruct.prompt_words=8', 'instruct.answer_words=8', 'instruct.mcq_items=40',
  'instruct.mcq_context_words=16', 'instruct.mcq_answer_words=4', 'instruct.prev_chars=6000', 'instruct.replay_chars=6000',
  'instruct.lora_rank=4', 'instruct.lora_lr=0.03', 'reg.buffer=2',
];
const METHODS = ['standard', 'lora', 'ntp_pre_real', 'ntp_pre_synth', 'kl_pre_real', 'kl_pre_synth'];

type Row = Record<string, number>;
const readJsonl = <T>(file: string): T[] => fs.readFileSync(file, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as T);
const words = (s: string) => s.split(/\s+/).filter(Boolean);

let first: Promise<{ out: string; s: Record<string, any>; stdout: string }> | null = null;
function firstRun(): Promise<{ out: string; s: Record<string, any>; stdout: string }> {
  first ??= (async () => {
    const r = cliOk(dir, ['experiment', 'instruct', '--out', 'runs/instruct', ...TINY]);
    const out = path.join(dir, 'runs/instruct');
    return { out, s: JSON.parse(fs.readFileSync(path.join(out, 'summary.json'), 'utf8')), stdout: r.stdout };
  })();
  return first;
}

test('every method finetunes the pretrained model; the report is recomputed from the runs, and KL replay of self-generated text forgets less', { timeout: 120_000 }, async () => {
  const { out, s, stdout } = await firstRun();
  assert.equal(s.experiment, 'instruct');
  for (const k of ['model', 'tokenizer', 'T', 'instruction_data', 'old_language', 'prev_ntp_start', 'mcq_metric', 'methods', 'wall_time_s']) assert.ok(k in s, `summary.${k}`);
  assert.equal(s.mcq_metric, 'mcq_old_knowledge_acc');
  assert.deepEqual(Object.keys(s.methods), METHODS);
  for (const f of ['plot.png', 'plot.svg', 'table.md', 'config.yaml']) assert.ok(fs.statSync(path.join(out, f)).size > 0, f);
  assert.deepEqual([...fs.readFileSync(path.join(out, 'plot.png')).subarray(1, 4)], [...Buffer.from('PNG')]);
  assert.match(stdout, /\| kl_pre_synth \|/);

  const rowsOf = (m: string) => readJsonl<Row>(path.join(out, s.methods[m].run_dir, 'metrics.jsonl')).filter((r) => r.valid_ntp !== undefined);
  const best = (m: string) => Math.min(...rowsOf(m).map((r) => r.valid_ntp!));
  for (const m of METHODS) {
    const x = s.methods[m];
    const run = path.join(out, x.run_dir);
    assert.ok(fs.existsSync(path.join(run, 'summary.json')), `${m}: run summary`);
    const rows = rowsOf(m);
    assert.ok(rows.length >= 3, `${m}: evaluations`);
    for (const r of rows) {
      assert.ok(Number.isFinite(r.prev_ntp) && Number.isFinite(r.mcq_old_knowledge_acc), `${m}: prev_ntp and MCQ accuracy at every evaluation`);
      assert.equal(Math.round(r.mcq_old_knowledge_acc! * 40), r.mcq_old_knowledge_acc! * 40, 'accuracy is a count out of 40 items');
    }
    assert.equal(x.prev_ntp_start, s.prev_ntp_start, `${m}: every method starts from the same model`);
    assert.equal(x.mcq_acc_start, rowsOf('standard')[0]!.mcq_old_knowledge_acc, `${m}: and the same start accuracy`);
    assert.equal(x.mcq_acc_start, rows[0]!.mcq_old_knowledge_acc);
    assert.equal(x.mcq_acc_end, rows.at(-1)!.mcq_old_knowledge_acc);
    assert.ok(Math.abs(x.forgetting_end - (rows.at(-1)!.prev_ntp! - rows[0]!.prev_ntp!)) < 1e-9, `${m}: forgetting at the end`);
    // matched at the higher of the two best new-data losses, interpolated between the evaluations around it
    const target = Math.max(best(m), best('standard'));
    assert.ok(Math.abs(x.valid_ntp - target) < 1e-9, `${m}: matched loss`);
    const k = rows.findIndex((r) => r.valid_ntp! <= target);
    const y = k === 0 ? rows[0]!.prev_ntp! : rows[k - 1]!.prev_ntp! + ((rows[k - 1]!.valid_ntp! - target) / (rows[k - 1]!.valid_ntp! - rows[k]!.valid_ntp!)) * (rows[k]!.prev_ntp! - rows[k - 1]!.prev_ntp!);
    assert.ok(Math.abs(x.forgetting - (y - s.prev_ntp_start)) < 1e-9, `${m}: forgetting at the matched loss`);
    if (x.forgetting_removed !== null) assert.ok(Math.abs(x.forgetting_removed - (1 - x.forgetting / x.standard_forgetting)) < 1e-12);
  }
  // The run folders are what the methods say: LoRA saves a PEFT adapter, replay runs sampled or read old data.
  assert.ok(fs.existsSync(path.join(out, 'lora', 'adapter_config.json')), 'lora: PEFT adapter');
  assert.ok((JSON.parse(fs.readFileSync(path.join(out, 'kl_pre_synth', 'summary.json'), 'utf8')).replay_sequences as number) > 0, 'kl_pre_synth sampled replay');
  assert.match(fs.readFileSync(path.join(out, 'kl_pre_synth', 'config.yaml'), 'utf8'), /prompt: bos/);

  const std = s.methods.standard, kl = s.methods.kl_pre_synth;
  console.log(`# standard forgets ${std.forgetting_end.toFixed(4)} (new-data loss ${std.valid_ntp_end.toFixed(4)}); kl_pre_synth ${kl.forgetting_end.toFixed(4)} (${kl.valid_ntp_end.toFixed(4)}); removed at the matched loss ${kl.forgetting_removed.toFixed(3)}`);
  assert.ok(std.forgetting_end > 0.3, `standard finetuning on the other language forgets (${std.forgetting_end})`);
  assert.ok(kl.forgetting_end < 0.5 * std.forgetting_end, `kl_pre_synth forgets ${kl.forgetting_end}, standard ${std.forgetting_end}`);
  assert.ok(kl.forgetting_removed >= 0.5, `kl_pre_synth removes ${kl.forgetting_removed} of standard's forgetting at the matched loss`);
});

test('the cached model is a Hugging Face folder with a ChatML tokenizer whose BOS is the old language\'s dataset token', { timeout: 120_000 }, async () => {
  const { s } = await firstRun();
  const model = s.model.model_dir as string;
  assert.equal(s.model.built, true);
  for (const f of ['config.json', 'model.safetensors', 'generation_config.json', 'tokenizer.json', 'tokenizer_config.json']) assert.ok(fs.existsSync(path.join(model, f)), f);
  const config = JSON.parse(fs.readFileSync(path.join(model, 'config.json'), 'utf8'));
  assert.equal(config.model_type, 'llama');
  assert.equal(config.vocab_size, 300);
  assert.equal(config.bos_token_id, 1);
  assert.ok(readSafetensors(path.join(model, 'model.safetensors')).tensors.has('model.embed_tokens.weight'));
  const tok = loadModelTokenizer(model)!;
  assert.equal(tok.bosId, 1, 'lang.old_token_id');
  const imStart = tok.tokenId('<|im_start|>'), imEnd = tok.tokenId('<|im_end|>');
  assert.deepEqual([imStart, imEnd], [8, 9], 'the two highest reserved ids');
  assert.ok(tok.isSpecial(imStart!) && tok.isSpecial(imEnd!));
  assert.equal(tok.eosId, imEnd);
  const text = tok.renderChat([{ role: 'user', content: 'hi' }, { role: 'assistant', content: 'yo' }], { addGenerationPrompt: false });
  assert.equal(text, '<|reserved_1|><|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\nyo<|im_end|>\n');
  const ids = await tok.encode(text);
  assert.equal(ids[0], 1);
  assert.equal(ids.filter((i) => i === imStart).length, 2);
  // The pretraining run and its token file sit beside the model; its windows begin with the BOS.
  assert.equal(readTokenFile(path.join(path.dirname(model), 'pretrain.bin')).sidecar.dataset_token_id, 1);
});

test('held-out old-language parts never reach pretraining; MCQ answers are the true continuations; instructions continue new-language text', { timeout: 120_000 }, async () => {
  const { s } = await firstRun();
  const o = s.old_language;
  const split = o.split_dir as string;
  const idsOf = (f: string) => readJsonl<{ id: string }>(path.join(split, f)).map((d) => d.id);
  const pre = new Set(idsOf('pretrain.jsonl'));
  for (const f of ['prev.jsonl', 'replay.jsonl']) for (const id of idsOf(f)) assert.ok(!pre.has(id), `${f}: document ${id} is also pretraining text`);
  // Every MCQ item: its question and right choice are consecutive words of one old-language document that is not
  // pretraining text, and no wrong choice is what follows the question there.
  const docWords = corpora.en.map((d) => ({ id: d.id, w: words(d.text).join(' ') }));
  const items = readJsonl<{ question: string; choices: string[]; answer: number }>(o.mcq_path);
  assert.equal(items.length, 40);
  const answers = new Set<number>();
  for (const it of items) {
    assert.equal(it.choices.length, 4);
    assert.equal(words(it.question).length, 16);
    answers.add(it.answer);
    const d = docWords.find((x) => x.w.includes(`${it.question} ${it.choices[it.answer]}`));
    assert.ok(d, `the right choice continues "${it.question.slice(0, 30)}..."`);
    assert.ok(!pre.has(d.id), `MCQ document ${d.id} is pretraining text`);
    it.choices.forEach((c, k) => {
      if (k !== it.answer) assert.ok(!d.w.includes(`${it.question} ${c}`), 'a wrong choice is the true continuation');
    });
  }
  assert.ok(answers.size >= 3, 'the right answer is not always in the same place');
  // prev.bin decodes (with the model's tokenizer, split at <|endoftext|>) back to the held-out documents.
  const tok = loadModelTokenizer(s.model.model_dir)!;
  const prev = readTokenFile(o.prev_path);
  const eot = tok.tokenId('<|endoftext|>')!;
  const docs: number[][] = [[]];
  for (const id of prev.tokens) id === eot ? docs.push([]) : docs.at(-1)!.push(id);
  docs.pop();
  const texts = readJsonl<{ text: string }>(path.join(split, 'prev.jsonl')).map((d) => d.text);
  assert.deepEqual(await Promise.all(docs.map((d) => tok.decode(d))), texts);
  // Instructions: "Continue this text:" and a passage of a new-language document, continued by the words after it.
  const esWords = corpora.es.map((d) => words(d.text).join(' '));
  const chat = readJsonl<{ messages: Array<{ role: string; content: string }> }>(s.instruction_data.file);
  assert.equal(chat.length, 200);
  for (const c of chat.slice(0, 50)) {
    const [user, assistant] = c.messages;
    assert.equal(user!.role, 'user');
    assert.equal(assistant!.role, 'assistant');
    assert.ok(user!.content.startsWith('Continue this text:\n'));
    const passage = `${user!.content.slice('Continue this text:\n'.length)} ${assistant!.content}`;
    assert.ok(esWords.some((w) => w.includes(passage)), 'the answer continues the prompted passage');
  }
});

test('a second run reuses the cached model; a given model folder and chat file are finetuned as they are', { timeout: 120_000 }, async () => {
  const { s } = await firstRun();
  const again = cliOk(dir, ['experiment', 'instruct', '--out', 'runs/again', ...TINY, 'instruct.methods=[standard]', 'instruct.finetune_tokens=4096']);
  assert.match(again.stderr, /pretrained model: .* \(cached\)/);
  assert.doesNotMatch(again.stderr, /pretraining a Llama/);
  const s2 = JSON.parse(fs.readFileSync(path.join(dir, 'runs/again/summary.json'), 'utf8'));
  assert.equal(s2.prev_ntp_start, s.prev_ntp_start, 'the same model and held-out data');

  const chat = path.join(dir, 'mine.jsonl');
  fs.writeFileSync(chat, Array.from({ length: 40 }, (_, i) => JSON.stringify({ messages: [{ role: 'user', content: `say ${i}` }, { role: 'assistant', content: `${i} ${i} ${i}` }] })).join('\n') + '\n');
  const given = cliOk(dir, ['experiment', 'instruct', '--out', 'runs/given', ...TINY, `instruct.model=${s.model.model_dir}`, `instruct.data=${chat}`, 'instruct.methods=[standard,kl_pre_real]', 'instruct.finetune_tokens=4096', 'data.num_tokens_valid=1024']);
  assert.doesNotMatch(given.stderr, /pretraining a Llama|pretrained model/);
  const s3 = JSON.parse(fs.readFileSync(path.join(dir, 'runs/given/summary.json'), 'utf8'));
  assert.deepEqual(s3.model, { model_dir: s.model.model_dir, built: false });
  assert.equal(s3.instruction_data.file, chat);
  assert.equal(s3.prev_ntp_start, s.prev_ntp_start);
  const cfg = fs.readFileSync(path.join(dir, 'runs/given/kl_pre_real/config.yaml'), 'utf8');
  assert.match(cfg, new RegExp(`path: ${chat.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`));
  assert.match(cfg, /format: chat/);
});

test('bad instruct settings: one error line naming the key, nothing written', () => {
  const cases: Array<[string[], RegExp]> = [
    [['instruct.methods=[lora]'], /instruct\.methods.*standard/],
    [['instruct.model=nowhere'], /instruct\.model.*nowhere does not exist/],
    [['instruct.data=nothing.jsonl'], /instruct\.data.*nothing\.jsonl does not exist/],
    [['instruct.finetune_epochs=2'], /instruct\.finetune_tokens.*exactly one/],
    [['instruct.methods=[standard,bogus]'], /instruct\.methods/],
    [['model.load_path=x'], /model\.load_path/],
  ];
  for (const [args, re] of cases) {
    const r = cli(dir, ['experiment', 'instruct', '--out', 'runs/bad', ...TINY, ...args]);
    assert.equal(r.status, 1, args.join(' '));
    assert.match(r.stderr, re);
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    assert.ok(!fs.existsSync(path.join(dir, 'runs/bad')), 'no run folder');
  }
});
