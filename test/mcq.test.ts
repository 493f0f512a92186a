/**
 * Multiple-choice evaluation (src/eval/mcq.ts), `unforget eval --mcq` and `log.mcq` in training.
 *
 * The reference scores each choice with the independent float64 forward of test/helpers/gpt64.ts on one unpadded
 * sequence, a float64 log-softmax, and the context/continuation split written out here; acc and acc_norm follow from
 * those scores as lm-evaluation-harness defines them. A model trained on "Question: …\nAnswer: yes|no" text must
 * prefer the answer it saw over a word it never saw.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { Template } from '@huggingface/jinja';
import { Tokenizer } from 'tokenizers';
import { cli, cliOk } from './helpers/cli.js';
import { gpt64Forward, weightsTo64, type Gpt64Config, type Gpt64Weights } from './helpers/gpt64.js';
import { loadConfig } from '../src/config/load.js';
import { tokenizerJson, trainBpe, WordCounter } from '../src/data/bpe.js';
import { writeTokenFile } from '../src/data/tokens.js';
import { bpeMcqTokenizer, loadRunMcqSets } from '../src/eval/load.js';
import { chatQuestion, encodePair, evaluateMcq, mcqAccuracy, prepareMcq, readMcqFile, scoreMcq, type McqItem, type McqTokenizer } from '../src/eval/mcq.js';
import { DataError, UnforgetError } from '../src/errors.js';
import { loadCheckpoint } from '../src/model/checkpoint.js';
import { GPT, gptToSpec } from '../src/model/gpt.js';
import { train } from '../src/train/train.js';
import { Rng } from '../src/util/rng.js';

const START = 3; // the dataset token id: a reserved id of the tokenizer
const V = 290;
const WORDS = ['sun', 'moon', 'star', 'tree', 'river', 'stone', 'cloud', 'rain', 'wind', 'field', 'bird', 'snow'];

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'uf-mcq-'));
after(() => {
  if (!process.env.UNFORGET_KEEP_TMP) fs.rmSync(dir, { recursive: true, force: true });
});

/** Documents "Question: w w w\nAnswer: yes" (70%) or "… no" (30%). */
function corpus(docs: number, seed: number): string {
  const rng = new Rng(seed);
  const out: string[] = [];
  for (let i = 0; i < docs; i++) {
    const q = Array.from({ length: 2 + rng.int(3) }, () => WORDS[rng.int(WORDS.length)]!).join(' ');
    out.push(`Question: ${q}\nAnswer: ${rng.uniform() < 0.7 ? 'yes' : 'no'}\n`);
  }
  return out.join('');
}

let tokFile = '';
let hf: Tokenizer;
const enc = async (text: string): Promise<number[]> => (await hf.encode(text, null, { addSpecialTokens: false })).getIds();

before(() => {
  const counter = new WordCounter();
  counter.add(corpus(400, 1));
  counter.add(WORDS.join(' ') + ' elephant giraffe Which comes first');
  tokFile = path.join(dir, 'tokenizer.json');
  fs.writeFileSync(tokFile, JSON.stringify(tokenizerJson(trainBpe(counter.counts, { vocabSize: V, reserved: 4 }))));
  hf = Tokenizer.fromFile(tokFile);
  assert.equal(hf.getVocabSize(true), V);
});

// ---- the reference --------------------------------------------------------------------------

function weights64(model: GPT): { cfg: Gpt64Config; w: Gpt64Weights } {
  const spec = gptToSpec(model);
  const w = weightsTo64({ embed_in: spec.embed_in!.data, embed_out: spec.embed_out!.data, qkv: spec.qkv!.data, out: spec.out!.data, up: spec.up!.data, down: spec.down!.data });
  const { D, L, H } = model.cfg;
  return { cfg: { D, L, H, V: model.cfg.V }, w };
}

/** Σ log p(ids[t] | ids[<t]) over t ≥ from, in float64 from a float64 forward of the unpadded sequence. */
function refLogLik(m: { cfg: Gpt64Config; w: Gpt64Weights }, ids: number[], from: number): number {
  const Vv = m.cfg.V;
  const logits = gpt64Forward(m.cfg, m.w, ids, 1, ids.length);
  let s = 0;
  for (let t = from; t < ids.length; t++) {
    const row = logits.subarray((t - 1) * Vv, t * Vv);
    let mx = -Infinity;
    for (const x of row) mx = Math.max(mx, x);
    let z = 0;
    for (const x of row) z += Math.exp(x - mx);
    s += row[ids[t]!]! - mx - Math.log(z);
  }
  return s;
}

/** The sequence of one choice and where its scored tokens start, written out from the harness's rules. */
async function refHarnessSeq(q: string, choice: string, T: number, start: number | null): Promise<{ ids: number[]; from: number }> {
  const context = `Question: ${q}\nAnswer:`; // no trailing whitespace, so nothing moves to the continuation
  const ctx = await enc(context);
  const whole = await enc(`${context} ${choice}`);
  const cont = whole.slice(ctx.length);
  const head = start === null ? [] : [start];
  const keep = Math.min(ctx.length, T + 1 - head.length - cont.length); // inputs are the first T tokens of T+1
  const ids = [...head, ...ctx.slice(ctx.length - keep), ...cont];
  return { ids, from: ids.length - cont.length };
}

function argmax(xs: number[]): number {
  let b = 0;
  for (let i = 1; i < xs.length; i++) if (xs[i]! > xs[b]!) b = i;
  return b;
}

/** Reference acc and acc_norm (score over the choice's length in code points, as Python's len counts). */
async function refHarness(model: GPT, items: McqItem[], start: number | null): Promise<{ acc: number; acc_norm: number; scores: number[][] }> {
  const m = weights64(model);
  let acc = 0, accNorm = 0;
  const scores: number[][] = [];
  for (const it of items) {
    const s: number[] = [];
    for (const c of it.choices) {
      const { ids, from } = await refHarnessSeq(it.question, c, model.cfg.T, start);
      s.push(refLogLik(m, ids, from));
    }
    scores.push(s);
    if (argmax(s) === it.answer) acc++;
    if (argmax(s.map((x, k) => x / Array.from(it.choices[k]!).length)) === it.answer) accNorm++;
  }
  return { acc: acc / items.length, acc_norm: accNorm / items.length, scores };
}

function assertScoresClose(got: number[][], want: number[][], what: string): void {
  want.forEach((row, i) => row.forEach((x, k) => {
    const g = got[i]![k]!;
    assert.ok(Math.abs(g - x) <= 1e-3 * Math.max(1, Math.abs(x)), `${what}: question ${i} choice ${k}: ${g} vs reference ${x}`);
  }));
}

const LONG_Q = Array.from({ length: 30 }, (_, i) => WORDS[(i * 7) % WORDS.length]).join(' '); // longer than T
const ITEMS: McqItem[] = [
  { question: 'sun moon tree', choices: ['yes', 'no'], answer: 0 },
  { question: 'river stone', choices: ['no', 'yes', 'elephant'], answer: 1 },
  { question: 'Which comes first', choices: ['a cloud of rain', 'snow', 'bird field', '👍🏽 ok'], answer: 2 },
  { question: 'wind', choices: ['giraffe', 'stone stone'], answer: 1 },
  { question: LONG_Q, choices: ['yes', 'no', 'sun'], answer: 2 },
  { question: 'star', choices: ['rain', 'moon', 'snow snow snow'], answer: 0 },
];

// ---- scoring against the reference ---------------------------------------------------------

test('harness style: scores, acc and acc_norm equal the float64 reference, whatever the batch size; long questions lose their start', async () => {
  const model = GPT.init({ D: 16, L: 2, H: 8, T: 32, V }, 5);
  const tok = bpeMcqTokenizer(tokFile);
  const ctxLen = (await enc(`Question: ${LONG_Q}\nAnswer:`)).length;
  assert.ok(ctxLen + 2 > 33, `the long question (${ctxLen} tokens) must not fit T=32, so that truncation is tested`);
  const ref = await refHarness(model, ITEMS, START);
  const p = await prepareMcq(tok, ITEMS, { style: 'harness', startToken: START });
  for (const B of [1, 4, 64]) assertScoresClose(scoreMcq(model, p, B), ref.scores, `batch ${B}`);
  const r = await evaluateMcq(model, tok, ITEMS, { style: 'harness', startToken: START, batchSize: 5 });
  assert.deepEqual(r, { acc: ref.acc, acc_norm: ref.acc_norm, n: ITEMS.length });
  // Without a start token (a model with no BOS) the context's own first token starts the sequence.
  const refNone = await refHarness(model, ITEMS, null);
  const pNone = await prepareMcq(tok, ITEMS, { style: 'harness', startToken: null });
  assertScoresClose(scoreMcq(model, pNone, 3), refNone.scores, 'no start token');
});

test("harness split: the context's trailing whitespace moves to the continuation (lm-eval's _encode_pair)", async () => {
  const chars: McqTokenizer = { bosId: null, encode: async (t) => Array.from(t, (c) => c.codePointAt(0)!) };
  const pair = await encodePair(chars, 'Answer:  ', 'yes');
  assert.deepEqual(pair.context, Array.from('Answer:', (c) => c.codePointAt(0)));
  assert.deepEqual(pair.continuation, Array.from('  yes', (c) => c.codePointAt(0)));
  // With BPE: " yes" is its own token after "Answer:", so the split is exactly the continuation's encoding.
  const tok = bpeMcqTokenizer(tokFile);
  const bpe = await encodePair(tok, 'Question: sun\nAnswer:', ' yes');
  assert.deepEqual([...bpe.context, ...bpe.continuation], await enc('Question: sun\nAnswer: yes'));
  assert.deepEqual(bpe.continuation, await enc(' yes'));
});

test("acc_norm divides by the choice's length in code points, without the continuation's leading space", () => {
  const p = {
    style: 'harness' as const,
    requests: [],
    items: [
      // −2/2 < −2.7/3 picks "abc"; over len+1 (−2/3 > −2.7/4) it would pick "ab".
      { question: 'q', choices: ['ab', 'abc'], answer: 1 },
      // "👍🏽" is 2 code points (−0.95 < −0.5 picks "ab"), but 4 UTF-16 units (−0.475 would pick it).
      { question: 'q', choices: ['👍🏽', 'ab'], answer: 1 },
    ],
  };
  assert.deepEqual(mcqAccuracy(p, [[-2, -2.7], [-1.9, -1]]), { acc: 0.5, acc_norm: 1, n: 2 });
  // Ties go to the first choice, as numpy's argmax does.
  assert.deepEqual(mcqAccuracy({ ...p, items: [{ question: 'q', choices: ['ab', 'cd'], answer: 1 }] }, [[-1, -1]]), { acc: 0, acc_norm: 0, n: 1 });
});

const CHAT_TEMPLATE = "{{ bos_token }}{% for m in messages %}<|reserved_1|>{{ m.role }}\n{{ m.content }}<|endoftext|>\n{% endfor %}{% if add_generation_prompt %}<|reserved_1|>assistant\n{% endif %}";

function chatTokenizer(bosToken: string): McqTokenizer {
  const t = new Template(CHAT_TEMPLATE);
  return { ...bpeMcqTokenizer(tokFile), renderChat: (messages, o) => t.render({ messages, add_generation_prompt: o.addGenerationPrompt, bos_token: bosToken }) };
}

test('chat style: the prompt through the chat template, scored by "ANSWER: X"; a template that writes the start token gets no second one', async () => {
  const model = GPT.init({ D: 16, L: 1, H: 8, T: 256, V }, 9);
  const m = weights64(model);
  const items: McqItem[] = [
    { question: 'sun moon?', choices: ['yes', 'no', 'rain'], answer: 1 },
    { question: 'Which comes first', choices: ['tree', 'stone'], answer: 0 },
    { question: 'wind', choices: ['bird', 'field', 'snow', 'cloud'], answer: 3 },
  ];
  const user = "Answer the multiple-choice question below. Reply with a single line 'ANSWER: $LETTER', where LETTER is one of A, B, C.\n\nsun moon?\n\nA. yes\nB. no\nC. rain";
  assert.equal(chatQuestion(items[0]!.question, items[0]!.choices), user);
  for (const [bos, head] of [['<|reserved_3|>', []], ['', [START]]] as const) {
    let acc = 0;
    const want: number[][] = [];
    for (const it of items) {
      const prompt = `${bos}<|reserved_1|>user\n${chatQuestion(it.question, it.choices)}<|endoftext|>\n<|reserved_1|>assistant\n`;
      const ctx = [...head, ...(await enc(prompt))];
      assert.equal(ctx[0], START);
      assert.notEqual(ctx[1], START, 'one start token');
      const s: number[] = [];
      for (let k = 0; k < it.choices.length; k++) {
        const cont = await enc(`ANSWER: ${'ABCD'[k]}`);
        s.push(refLogLik(m, [...ctx, ...cont], ctx.length));
      }
      want.push(s);
      if (argmax(s) === it.answer) acc++;
    }
    const tok = chatTokenizer(bos);
    const p = await prepareMcq(tok, items, { style: 'chat', startToken: START });
    assertScoresClose(scoreMcq(model, p, 2), want, `chat, template bos '${bos}'`);
    assert.deepEqual(await evaluateMcq(model, tok, items, { style: 'chat', startToken: START }), { acc: acc / items.length, n: items.length });
  }
  await assert.rejects(prepareMcq(bpeMcqTokenizer(tokFile), items, { style: 'chat', startToken: START }), (e: unknown) => e instanceof UnforgetError && /chat template/.test(e.message));
});

test('a continuation that cannot fit T is a DataError naming the question', async () => {
  const model = GPT.init({ D: 16, L: 1, H: 8, T: 8, V }, 1);
  const items: McqItem[] = [{ question: 'sun', choices: ['yes', 'sun moon star tree river stone cloud rain wind'], answer: 0, where: 'x.jsonl:3' }];
  const p = await prepareMcq(bpeMcqTokenizer(tokFile), items, { style: 'harness', startToken: START });
  assert.throws(() => scoreMcq(model, p), (e: unknown) => e instanceof DataError && /^x\.jsonl:3: choice 1 has \d+ tokens, too many to score with the model's T=8$/.test(e.message));
});

// ---- reading --------------------------------------------------------------------------------

test('readMcqFile: index or letter answers, blank lines skipped; each bad line is a DataError naming file:line', () => {
  const f = path.join(dir, 'read.jsonl');
  fs.writeFileSync(f, '{"question": "q1", "choices": ["a", "b"], "answer": 1}\n\n{"question": "q2", "choices": ["a", "b", "c"], "answer": "C"}\n');
  assert.deepEqual(readMcqFile(f).map((it) => [it.question, it.answer, it.where]), [['q1', 1, `${f}:1`], ['q2', 2, `${f}:3`]]);
  const bad: Array<[string, RegExp]> = [
    ['{"question": "q", "choices": ["a", "b"], "answer": 0}\n{oops', /:2: not valid JSON/],
    ['{"choices": ["a", "b"], "answer": 0}', /:1: 'question' must be a string, got nothing \(missing\)/],
    ['{"question": "q", "answer": 0}', /:1: 'choices' must be a list of strings/],
    ['{"question": "q", "choices": ["a"], "answer": 0}', /:1: 'choices' has 1 entry; at least 2 are needed/],
    ['{"question": "q", "choices": ["a", 3], "answer": 0}', /:1: choice 1 must be a non-empty string, got 3/],
    ['{"question": "q", "choices": ["a", "b"], "answer": 2}', /:1: 'answer' 2 is out of range for 2 choices/],
    ['{"question": "q", "choices": ["a", "b"], "answer": "C"}', /:1: 'answer' "C" is out of range for 2 choices/],
    ['{"question": "q", "choices": ["a", "b"], "answer": "b"}', /:1: 'answer' must be a 0-based index or a letter A\.\.Z, got "b"/],
    ['{"question": "q", "choices": ["a", "b"]}', /:1: 'answer' must be a 0-based index or a letter A\.\.Z, got nothing/],
    ['[1, 2]', /:1: expected a JSON object/],
    ['\n\n', /holds no questions/],
  ];
  for (const [text, re] of bad) {
    fs.writeFileSync(f, text);
    assert.throws(() => readMcqFile(f), (e: unknown) => e instanceof DataError && e.message.startsWith(f) && re.test(e.message) && !e.message.includes('\n'), text);
  }
  assert.throws(() => readMcqFile(path.join(dir, 'nope.jsonl')), (e: unknown) => e instanceof DataError && /nope\.jsonl: multiple-choice file not found/.test(e.message));
});

// ---- a trained model, log.mcq, the CLI ------------------------------------------------------

/** Questions whose answer the training text makes likely, against words it never had after "Answer:". */
const KNOWN = [
  { question: 'sun moon tree', choices: ['yes', 'elephant'], answer: 0 },
  { question: 'river stone', choices: ['giraffe', 'no'], answer: 1 },
  { question: 'cloud rain wind', choices: ['yes', 'no'], answer: 0 },
  { question: 'bird', choices: ['snow', 'Which', 'yes'], answer: 2 },
  { question: 'field star', choices: ['no', 'elephant giraffe'], answer: 0 },
  // " no" is two tokens of this tokenizer, so the untrained model prefers the one-token wrong answers here.
  { question: 'snow', choices: ['s', 'no'], answer: 1 },
  { question: 'moon moon', choices: ['no', 'd'], answer: 0 },
];

function writeJsonl(file: string, items: object[]): string {
  fs.writeFileSync(file, items.map((x) => JSON.stringify(x)).join('\n') + '\n');
  return file;
}

let trained: Promise<{ runDir: string; summary: Record<string, unknown>; known: string; mixed: string }> | null = null;
/** A model trained on the QA text, with log.mcq scoring the known set at each evaluation. */
function trainedRun() {
  trained ??= (async () => {
    const data = path.join(dir, 'qa.bin');
    const ids = await enc(corpus(6000, 2));
    writeTokenFile(data, Uint16Array.from(ids), { vocab_size: V, dataset_token_id: START, tokenizer: tokFile });
    const known = writeJsonl(path.join(dir, 'known.jsonl'), KNOWN);
    const mixed = writeJsonl(path.join(dir, 'mixed.jsonl'), ITEMS);
    const { runDir, summary } = await train(loadConfig([], [
      `data.path=${data}`, 'model.D=32', 'model.L=1', 'model.H=8', 'model.T=32', 'opt.batch_size=16', 'opt.lr=1e-2', 'opt.warmup_tokens=2000',
      'stop.num_tokens_train=60000', 'log.every_tokens=30000', 'run.threads=1', 'log.progress=false', `log.dir=${dir}`, 'run.id=qa', `log.mcq=[${known},${mixed}]`,
    ]));
    return { runDir, summary, known, mixed };
  })();
  return trained;
}

function metricsOf(runDir: string): Array<Record<string, number>> {
  return fs.readFileSync(path.join(runDir, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
}

test('log.mcq: mcq_<name>_acc and _acc_norm at every evaluation, start and end in summary.json; the trained model knows the answers', async () => {
  const { runDir, summary, known, mixed } = await trainedRun();
  const metrics = metricsOf(runDir);
  assert.equal(metrics.length, 3);
  for (const m of metrics) assert.ok(Number.isFinite(m.mcq_known_acc) && Number.isFinite(m.mcq_known_acc_norm), JSON.stringify(m));
  // Step 0 scores the initial weights (run.seed 0), which know nothing yet.
  const start = await refHarness(GPT.init({ D: 32, L: 1, H: 8, T: 32, V }, 0), readMcqFile(known), START);
  assert.deepEqual([metrics[0]!.mcq_known_acc, metrics[0]!.mcq_known_acc_norm], [start.acc, start.acc_norm]);
  assert.ok(start.acc < 1, `the initial model gets some wrong (acc ${start.acc})`);
  assert.equal(summary.mcq_known_acc_start, start.acc);
  assert.equal(summary.mcq_known_acc_end, metrics[2]!.mcq_known_acc);
  assert.equal(summary.mcq_known_acc_end, 1, 'the trained model prefers the answers it saw');
  assert.equal(metrics[2]!.mcq_known_acc_norm, 1);
  // The recorded end accuracy is the reference's on the saved checkpoint.
  const { model } = loadCheckpoint(runDir);
  const ref = await refHarness(model, readMcqFile(known), START);
  assert.deepEqual([ref.acc, ref.acc_norm], [1, 1]);
  const refMixed = await refHarness(model, readMcqFile(mixed), START);
  assert.deepEqual([metrics[2]!.mcq_mixed_acc, metrics[2]!.mcq_mixed_acc_norm], [refMixed.acc, refMixed.acc_norm]);
  assert.equal(summary.mcq_mixed_acc_end, refMixed.acc);
  // The sets the run scored, choice by choice: sequences start with the data's dataset token id.
  const sets = await loadRunMcqSets(loadConfig([path.join(runDir, 'config.yaml')], []));
  assert.deepEqual(sets.map((x) => x.name), ['known', 'mixed']);
  assertScoresClose(scoreMcq(model, sets[1]!.prepared), refMixed.scores, 'log.mcq set');
});

test('eval --mcq prints {acc, acc_norm, n}, several files keyed by file name; equal to the reference on the checkpoint', async () => {
  const { runDir, known, mixed } = await trainedRun();
  const r1 = JSON.parse(cliOk(dir, ['eval', '--model', runDir, '--mcq', known]).stdout) as Record<string, unknown>;
  assert.deepEqual(r1, { acc: 1, acc_norm: 1, n: KNOWN.length });
  const { model } = loadCheckpoint(runDir);
  const ref = await refHarness(model, ITEMS, START);
  const r2 = JSON.parse(cliOk(dir, ['eval', '--model', runDir, '--mcq', known, '--mcq', mixed, '--batch', '3']).stdout) as Record<string, unknown>;
  assert.deepEqual(r2, { 'known.jsonl': r1, 'mixed.jsonl': { acc: ref.acc, acc_norm: ref.acc_norm, n: ITEMS.length } });
  // --token-id changes the start token.
  const ref0 = await refHarness(model, ITEMS, 0);
  assert.deepEqual(JSON.parse(cliOk(dir, ['eval', '--model', runDir, '--mcq', mixed, '--token-id', '0']).stdout), { acc: ref0.acc, acc_norm: ref0.acc_norm, n: ITEMS.length });
});

test('forgetting --mcq of a model against itself: KL 0, equal NTPs, no change in accuracy', async () => {
  const { runDir, known } = await trainedRun();
  const r = cliOk(dir, ['forgetting', '--base', runDir, '--model', runDir, '--n', '4', '--mcq', known]);
  const out = JSON.parse(r.stdout) as { kl: number; ntp_base: number; ntp_model: number; n: number; T: number; mcq: Record<string, Record<string, number>> };
  assert.ok(Math.abs(out.kl) < 1e-6, `kl ${out.kl}`);
  assert.equal(out.ntp_base, out.ntp_model);
  assert.deepEqual([out.n, out.T], [4, 32]);
  assert.deepEqual(out.mcq['known.jsonl'], { acc_base: 1, acc_model: 1, acc_change: 0, acc_norm_base: 1, acc_norm_model: 1, acc_norm_change: 0, n: KNOWN.length });
  assert.match(r.stderr, /known\.jsonl acc \(7 questions\)\s+1\.0000\s+1\.0000\s+\+0\.0000/);
});

test('eval --mcq errors: one line naming the culprit, exit 1', async () => {
  const { runDir, known } = await trainedRun();
  const badLine = path.join(dir, 'bad.jsonl');
  fs.writeFileSync(badLine, '{"question": "q", "choices": ["a", "b"], "answer": 0}\n{"question": "q", "choices": ["a", "b"], "answer": 5}\n');
  const bare = path.join(dir, 'bare');
  fs.mkdirSync(bare);
  fs.copyFileSync(path.join(runDir, 'model.safetensors'), path.join(bare, 'model.safetensors'));
  fs.writeFileSync(path.join(bare, 'config.yaml'), 'model: {D: 32, L: 1, H: 8, T: 32, V: 290}\n');
  const cases: Array<[string[], RegExp]> = [
    [['eval', '--model', runDir, '--mcq', path.join(dir, 'missing.jsonl')], /missing\.jsonl: multiple-choice file not found/],
    [['eval', '--model', runDir, '--mcq', badLine], /bad\.jsonl:2: 'answer' 5 is out of range for 2 choices/],
    [['eval', '--model', bare, '--mcq', known], /--mcq needs a tokenizer/],
    [['eval', '--model', runDir, '--mcq', known, '--mcq-style', 'chat'], /chat template/],
    [['eval', '--model', runDir, '--mcq', known, '--mcq-style', 'lm'], /--mcq-style must be one of harness, chat, got 'lm'/],
    [['eval', '--model', runDir, '--mcq', known, '--data', 'x.bin'], /either --data FILE\.bin or --mcq FILE\.jsonl/],
    [['eval', '--model', runDir, '--mcq', known, '--mcq', path.join(bare, 'known.jsonl')], /same name 'known\.jsonl'/],
  ];
  for (const [args, re] of cases) {
    const r = cli(dir, args);
    assert.equal(r.status, 1, `${args.join(' ')}: ${r.stderr}`);
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    assert.match(r.stderr, /^error: /);
    assert.match(r.stderr, re);
  }
});

test('log.mcq errors before the run folder exists: a bad line, two sets with one name, chat without a template', async () => {
  const { known } = await trainedRun();
  const data = path.join(dir, 'qa.bin');
  const badLine = path.join(dir, 'bad2.jsonl');
  fs.writeFileSync(badLine, '{"question": "q", "choices": ["a"], "answer": 0}\n');
  const sub = path.join(dir, 'sub');
  fs.mkdirSync(sub, { recursive: true });
  fs.copyFileSync(known, path.join(sub, 'known.jsonl'));
  const base = [`data.path=${data}`, 'model.D=16', 'model.L=1', 'model.H=8', 'model.T=16', 'opt.batch_size=4', 'stop.num_tokens_train=64', 'log.progress=false', `log.dir=${dir}`];
  const cases: Array<[string[], (e: unknown) => boolean]> = [
    [[`log.mcq=${badLine}`, 'run.id=e1'], (e) => e instanceof DataError && /bad2\.jsonl:1: 'choices' has 1 entry/.test(e.message)],
    [[`log.mcq=[${known},${path.join(sub, 'known.jsonl')}]`, 'run.id=e2'], (e) => e instanceof UnforgetError && /log\.mcq.*both report as mcq_known_\*/.test(e.message)],
    [[`log.mcq=${known}`, 'log.mcq_style=chat', 'run.id=e3'], (e) => e instanceof UnforgetError && /log\.mcq_style.*chat template/.test(e.message)],
  ];
  for (const [extra, check] of cases) {
    await assert.rejects(train(loadConfig([], [...base, ...extra])), check, extra.join(' '));
    assert.ok(!fs.existsSync(path.join(dir, extra.at(-1)!.slice('run.id='.length))), 'no run folder');
  }
});
