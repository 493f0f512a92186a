/**
 * `unforget experiment instruct`: the study's Llama experiment at laptop scale. An instruction-following model (a
 * Hugging Face folder given by instruct.model, or by default a small Llama-architecture model unforget pretrains
 * once on the old language and caches) is finetuned on chat data once per method, and each method is judged by
 * what the model keeps of the old language: the loss on held-out old-language text (prev_ntp) and the accuracy on
 * a multiple-choice set built from other held-out text, against the loss on held-out instruction rows
 * (valid_ntp, assistant tokens only).
 *
 * Both kinds of model go through the same path: the held-out text is tokenised with the model folder's own
 * tokenizer, instructions are rendered with its chat template, and self-generated replay is prompted with its BOS.
 * Forgetting is also compared at a matched new-data loss, as language-shift does (see shift.ts).
 */
import fs from 'node:fs';
import path from 'node:path';
import { int, intOrNull, num, numOrNull, section, strList, strOrNull, type ConfigWith } from '../../config/schema.js';
import { requireModelTokenizer } from '../../data/hf_tokenizer.js';
import { tokenizeCorpus } from '../../data/tokenize.js';
import { ConfigError, UnforgetError } from '../../errors.js';
import { writeFileAtomic, writeJsonAtomic } from '../../io/atomic.js';
import { archParamCounts } from '../../model/arch.js';
import { readHFConfig } from '../../model/hf_config.js';
import { isHFModelFolder, loadModelFolder, saveHFModel } from '../../model/load.js';
import { FONT_STACK, writeFigure } from '../../report/plot.js';
import { silentReporter, train, type Reporter } from '../../train/train.js';
import { atFirstCrossing, checkMethods, childConfig, experimentDir, replayPatch, stopIfInterrupted } from './common.js';
import { checkDataConfig, fetchCorpora, languageDataSection, prepareLanguageData, readCorpusDocs, readMetrics } from './data.js';
import {
  MCQ_METRIC, buildContinueChat, freshCacheDir, preparedRoot, shortHash, splitEnglish, tokenizeDocs, tokenizerHash,
  writeChatTokenizer, type EnglishSplit,
} from './instruct_data.js';

export const INSTRUCT_METHODS = ['standard', 'lora', 'ntp_pre_real', 'ntp_pre_synth', 'kl_pre_real', 'kl_pre_synth', 'lora_kl_pre_synth'] as const;
export type InstructMethod = (typeof INSTRUCT_METHODS)[number];

export const instructSections = {
  lang: languageDataSection,
  instruct: section({
    /** The model to finetune: a Hugging Face folder with tokenizer.json and a chat template; null: unforget's own
     *  small Llama, pretrained on lang.old (model.D, model.L, model.H, model.T) and cached. */
    model: strOrNull().default(null),
    /** Chat JSONL ({"messages": [...]}) to finetune on; null: "Continue this text" instructions from lang.new. */
    data: strOrNull().default(null),
    methods: strList(INSTRUCT_METHODS).default(INSTRUCT_METHODS.slice(0, 6)),
    /** The default model's pretraining: tokens of the old language, peak learning rate (cosine), warm-up. */
    pretrain_tokens: int({ gt: 0 }).default(2_000_000),
    pretrain_lr: num({ gt: 0 }).default(3e-3),
    pretrain_warmup_tokens: int({ min: 0 }).default(100_000),
    /** Finetuning length of every method: tokens, or epochs of the instruction data (exactly one of the two). */
    finetune_tokens: intOrNull({ gt: 0 }).default(400_000),
    finetune_epochs: numOrNull({ gt: 0 }).default(null),
    /** Evaluation interval of the finetuning runs (tokens); each evaluation scores the multiple-choice set. */
    every_tokens: int({ gt: 0 }).default(50_000),
    lora_rank: int({ gt: 0 }).default(16),
    lora_alpha: numOrNull({ gt: 0 }).default(null),
    /** LoRA's learning rate (null: opt.lr). */
    lora_lr: numOrNull({ gt: 0 }).default(null),
    /** reg.coeff of the NTP-replay and KL-replay methods (null: reg.coeff). */
    ntp_coeff: numOrNull({ min: 0 }).default(null),
    kl_coeff: numOrNull({ min: 0 }).default(null),
    /** The built instruction data: examples, and words of the prompted passage and of its continuation. */
    examples: int({ gt: 0 }).default(2000),
    prompt_words: int({ gt: 0 }).default(24),
    answer_words: int({ gt: 0 }).default(24),
    /** The old-knowledge multiple-choice set: items, words of each context and of each choice. */
    mcq_items: int({ min: 4 }).default(200),
    mcq_context_words: int({ gt: 0 }).default(40),
    mcq_answer_words: int({ gt: 0 }).default(12),
    /** Held-out old-language text (characters) for prev.path and for real replay (reg.path). */
    prev_chars: int({ gt: 0 }).default(150_000),
    replay_chars: int({ gt: 0 }).default(300_000),
    /** Native threads of every run (null: run.threads). */
    threads: intOrNull({ gt: 0 }).default(null),
  }),
};
export type InstructConfig = ConfigWith<typeof instructSections>;

export const INSTRUCT_PRESETS: Record<string, Record<string, unknown>> = {
  /** Laptop scale: a ~1.3M-parameter Llama pretrained once (cached), then six finetuning runs. */
  small: {
    model: { D: 128, L: 4, H: 32, T: 128 },
    opt: { batch_size: 32, lr: 1e-3, b2: 0.99, weight_decay: 0.02, warmup_tokens: 20_000, lr_decay: null },
    data: { num_tokens_valid: 16_384 },
    reg: { coeff: 1, temperature: 1, buffer: 8, prompt: 'bos' },
    log: { every_tokens: 500_000 },
    instruct: { pretrain_tokens: 2_000_000, pretrain_lr: 3e-3, pretrain_warmup_tokens: 100_000, finetune_tokens: 300_000, every_tokens: 50_000, lora_lr: 3e-3 },
  },
  /**
   * The study's run (/work/shared/HF.md): Llama-3.2-1B-Instruct, batch 128×512, lr 1e-5, AdamW b2 0.997, wd 0.02,
   * 10M warm-up tokens, 5 epochs; replay batches of 32×512 sampled 32 at a time, reg.coeff 1. Not run here.
   */
  paper: {
    model: { T: 512 },
    opt: { batch_size: 128, lr: 1e-5, b2: 0.997, weight_decay: 0.02, warmup_tokens: 10_000_000, lr_decay: null },
    data: { num_tokens_valid: 32_768 },
    reg: { coeff: 1, temperature: 1, buffer: 32, batch_size: 32, prompt: 'bos' },
    // The default instructions are what the Spanish corpora hold in passages of 240 words; the study's own data
    // (instruct.data) is larger.
    instruct: {
      model: 'models/Llama-3.2-1B-Instruct', finetune_tokens: null, finetune_epochs: 5, every_tokens: 500_000,
      examples: 1200, prompt_words: 120, answer_words: 120, mcq_items: 500, mcq_context_words: 100, mcq_answer_words: 20,
      prev_chars: 600_000, replay_chars: 1_500_000,
    },
  },
};

export interface InstructMethodResult {
  run_dir: string;
  valid_ntp_start: number;
  valid_ntp_end: number;
  prev_ntp_start: number;
  prev_ntp_end: number;
  /** prev_ntp end − start. */
  forgetting_end: number;
  /** At the new-data loss both this method and standard finetuning reach (the higher of their best losses). */
  valid_ntp: number | null;
  prev_ntp: number | null;
  forgetting: number | null;
  standard_forgetting: number | null;
  forgetting_removed: number | null;
  mcq_acc: number | null;
  mcq_acc_start: number;
  mcq_acc_end: number;
  mcq_acc_norm_start: number | null;
  mcq_acc_norm_end: number | null;
  tokens_per_s: number | null;
  train_time_s: number;
}

export interface InstructOutcome {
  runDir: string;
  summary: Record<string, unknown>;
  table: string;
}

interface PretrainedModel {
  model_dir: string;
  pretrain_run: string;
  valid_ntp: number;
  tokens: number;
  n_params: number;
  cached: boolean;
}

function methodPatch(m: InstructMethod, cfg: InstructConfig): Record<string, unknown> {
  const s = cfg.instruct;
  const lora = { 'model.lora_rank': s.lora_rank, 'model.lora_alpha': s.lora_alpha, 'opt.lr': s.lora_lr ?? cfg.opt.lr };
  const replay = (method: 'ntp_pre' | 'kl_pre', synth: boolean) => replayPatch(method, synth, { ntp: s.ntp_coeff, kl: s.kl_coeff }, cfg.reg.coeff);
  switch (m) {
    case 'standard':
      return { 'reg.method': null };
    case 'lora':
      return { 'reg.method': null, ...lora };
    case 'ntp_pre_real':
      return replay('ntp_pre', false);
    case 'ntp_pre_synth':
      return replay('ntp_pre', true);
    case 'kl_pre_real':
      return replay('kl_pre', false);
    case 'kl_pre_synth':
      return replay('kl_pre', true);
    case 'lora_kl_pre_synth':
      return { ...replay('kl_pre', true), ...lora };
  }
}

/** Length criteria a child run must not inherit besides the one it sets. */
const NO_LENGTH = { 'stop.num_tokens_train': null, 'stop.tokens_per_param': null, 'stop.num_epochs': null };

function checkInstructConfig(cfg: InstructConfig): void {
  const s = cfg.instruct;
  const methods = s.methods as InstructMethod[];
  checkMethods('instruct.methods', methods);
  if (cfg.model.load_path) throw new ConfigError('model.load_path', 'the instruct experiment finetunes instruct.model (or, when it is null, a model it pretrains itself)');
  if ((s.finetune_tokens === null) === (s.finetune_epochs === null)) {
    throw new ConfigError('instruct.finetune_tokens', 'set exactly one of instruct.finetune_tokens and instruct.finetune_epochs (the other null)');
  }
  if (s.model !== null) {
    if (!fs.existsSync(s.model)) throw new ConfigError('instruct.model', `${s.model} does not exist (a Hugging Face model folder with tokenizer.json and a chat template)`);
    if (!isHFModelFolder(s.model)) throw new ConfigError('instruct.model', `${s.model} is not a Hugging Face model folder (config.json and model.safetensors)`);
  }
  if (s.data !== null && !fs.existsSync(s.data)) throw new ConfigError('instruct.data', `${s.data} does not exist (chat JSONL)`);
  if (s.data !== null && !s.data.endsWith('.jsonl')) throw new ConfigError('instruct.data', `${s.data} is not a .jsonl file`);
  checkDataConfig(cfg.lang, 'lang');
}

export async function runInstruct(cfgIn: InstructConfig, opts: { reporter?: Reporter; shouldStop?: () => boolean } = {}): Promise<InstructOutcome> {
  const cfg: InstructConfig = structuredClone(cfgIn);
  const reporter = opts.reporter ?? silentReporter;
  const log = (l: string) => reporter.log(l);
  const t0 = performance.now();
  checkInstructConfig(cfg);
  const s = cfg.instruct;
  const methods = s.methods as InstructMethod[];
  const dir = experimentDir(cfg);
  const root = preparedRoot(cfg.lang.corpora_dir);
  const threads = s.threads ?? cfg.run.threads;
  const check = stopIfInterrupted(dir);

  // ---- the old language, split into pretraining text and held-out parts ----
  const corpora = fetchCorpora([...cfg.lang.old, ...(s.data === null ? cfg.lang.new : [])], cfg.lang.corpora_dir, log);
  const manifests = Object.fromEntries(Object.entries(corpora).map(([n, c]) => [n, c.manifest]));
  const split = splitEnglish(cfg.lang.old.flatMap((n) => readCorpusDocs(corpora[n]!.dir)), { old: cfg.lang.old, manifests: cfg.lang.old.map((n) => manifests[n]) }, root, {
    mcqItems: s.mcq_items, mcqContextWords: s.mcq_context_words, mcqAnswerWords: s.mcq_answer_words,
    prevChars: s.prev_chars, replayChars: s.replay_chars, seed: cfg.lang.seed,
  });
  log(`old language: ${split.counts.pretrain_docs} documents for pretraining, held out ${split.counts.mcq_items} multiple-choice items, ${split.counts.prev_chars} characters for forgetting, ${split.counts.replay_chars} for real replay (${split.dir})`);

  // ---- the model ----
  const pretrained = s.model === null ? await pretrainedModel(cfg, split, root, threads, opts) : null;
  const modelDir = s.model ?? pretrained!.model_dir;
  const tok = requireModelTokenizer(modelDir, "the instruct experiment (held-out text and instructions are tokenised with the model's tokenizer)");
  const T = cfg.model.T ?? readHFConfig(modelDir).arch.T;

  // ---- held-out old-language token files, with the model's tokenizer ----
  const tokDir = path.join(split.dir, `tok-${tokenizerHash(tok)}`);
  const prevBin = path.join(tokDir, 'prev.bin'), replayBin = path.join(tokDir, 'replay.bin');
  if (freshCacheDir(tokDir, 'tokens.json')) {
    const prev = await tokenizeDocs(tok, split.prev, prevBin);
    const replay = await tokenizeDocs(tok, split.replay, replayBin);
    writeJsonAtomic(path.join(tokDir, 'tokens.json'), { tokenizer: tok.file, prev: prev.tokens, replay: replay.tokens });
  }
  const heldTokens = JSON.parse(fs.readFileSync(path.join(tokDir, 'tokens.json'), 'utf8')) as { prev: number; replay: number };
  log(`held-out old-language tokens (${tok.file}): ${heldTokens.prev} for forgetting, ${heldTokens.replay} for real replay`);

  // ---- instruction data ----
  let chatFile = s.data;
  let chatInfo: Record<string, unknown> = { file: s.data, built: false };
  if (chatFile === null) {
    const key = { v: 1, new: cfg.lang.new, manifests: cfg.lang.new.map((n) => manifests[n]), tok: tokenizerHash(tok), T, examples: s.examples, words: [s.prompt_words, s.answer_words], seed: cfg.lang.seed };
    const chatDir = path.join(root, `instruct-chat-${shortHash(key)}`);
    chatFile = path.join(chatDir, 'continue.jsonl');
    if (freshCacheDir(chatDir, 'chat.json')) {
      log(`building ${s.examples} "Continue this text" instructions from ${cfg.lang.new.join(' + ')}`);
      const r = await buildContinueChat(cfg.lang.new.flatMap((n) => readCorpusDocs(corpora[n]!.dir)), tok, chatFile, {
        examples: s.examples, promptWords: s.prompt_words, answerWords: s.answer_words, T, seed: cfg.lang.seed,
      });
      writeJsonAtomic(path.join(chatDir, 'chat.json'), r);
    } else log(`instruction data: ${chatFile} (cached)`);
    chatInfo = { file: chatFile, built: true, ...(JSON.parse(fs.readFileSync(path.join(chatDir, 'chat.json'), 'utf8')) as Record<string, unknown>) };
  }

  // ---- one finetuning run per method ----
  const common: Record<string, unknown> = {
    ...NO_LENGTH,
    ...(s.finetune_tokens !== null ? { 'stop.num_tokens_train': s.finetune_tokens } : { 'stop.num_epochs': s.finetune_epochs }),
    'log.dir': dir, 'model.save_dir': null, 'run.threads': threads,
    'model.load_path': modelDir, 'model.config': null, 'model.V': null, 'model.T': T,
    'data.path': chatFile, 'data.format': cfg.data.format === 'tokens' ? 'chat' : cfg.data.format, 'data.tokenizer': null,
    'prev.path': prevBin, 'reg.path': replayBin, 'mix.path': null,
    'log.every_tokens': s.every_tokens, 'log.mcq': [split.mcq, ...(cfg.log.mcq ?? [])],
  };
  const runs: Partial<Record<InstructMethod, { dir: string; summary: Record<string, unknown> }>> = {};
  for (const m of methods) {
    log(`finetuning on ${path.basename(chatFile)}: ${m}`);
    const r = await train(childConfig(cfg, { ...common, 'run.id': m, ...methodPatch(m, cfg) }), opts);
    check(r.summary, `finetuning (${m})`);
    runs[m] = { dir: r.runDir, summary: r.summary };
  }

  // ---- analysis: start and end, and forgetting at a matched new-data loss ----
  const paths = Object.fromEntries(methods.map((m) => [m, instructTrajectory(runs[m]!.dir)])) as Record<InstructMethod, TrajectoryPoint[]>;
  const bestOf = (m: InstructMethod) => Math.min(...paths[m].map((p) => p.x));
  const prevStart = runs.standard!.summary.prev_ntp_start as number;
  const results = {} as Record<InstructMethod, InstructMethodResult>;
  for (const m of methods) {
    const sm = runs[m]!.summary, p = paths[m];
    const target = Math.max(bestOf(m), bestOf('standard'));
    const hit = atFirstCrossing(p.map((q) => ({ x: q.x, y: q.prev })), target);
    const hitMcq = atFirstCrossing(p.map((q) => ({ x: q.x, y: q.acc })), target);
    const ref = atFirstCrossing(paths.standard.map((q) => ({ x: q.x, y: q.prev })), target);
    const forgetting = hit ? hit.y - prevStart : null;
    const fStd = ref ? ref.y - prevStart : null;
    results[m] = {
      run_dir: path.relative(dir, runs[m]!.dir),
      valid_ntp_start: p[0]!.x,
      valid_ntp_end: sm.valid_ntp as number,
      prev_ntp_start: sm.prev_ntp_start as number,
      prev_ntp_end: sm.prev_ntp as number,
      forgetting_end: sm.forgetting as number,
      valid_ntp: hit ? hit.x : null,
      prev_ntp: hit ? hit.y : null,
      forgetting,
      standard_forgetting: fStd,
      forgetting_removed: forgetting !== null && fStd !== null && fStd > 0 ? 1 - forgetting / fStd : null,
      mcq_acc: hitMcq ? hitMcq.y : null,
      mcq_acc_start: sm[`${MCQ_METRIC}_start`] as number,
      mcq_acc_end: sm[`${MCQ_METRIC}_end`] as number,
      mcq_acc_norm_start: p[0]!.accNorm,
      mcq_acc_norm_end: p.at(-1)!.accNorm,
      tokens_per_s: (sm.tokens_per_s as number | null) ?? null,
      train_time_s: sm.train_time_elapsed as number,
    };
  }

  await writeFigure(dir, 'plot', instructFigureSpec(methods, paths));
  const table = instructTable(methods, results, prevStart, s.mcq_items);
  writeFileAtomic(path.join(dir, 'table.md'), table + '\n');
  const summary: Record<string, unknown> = {
    experiment: 'instruct',
    model: pretrained ? { ...pretrained, built: true } : { model_dir: modelDir, built: false },
    tokenizer: tok.file,
    T,
    instruction_data: chatInfo,
    old_language: { corpora: cfg.lang.old, split_dir: split.dir, ...split.counts, prev_path: prevBin, prev_tokens: heldTokens.prev, replay_path: replayBin, replay_tokens: heldTokens.replay, mcq_path: split.mcq },
    prev_ntp_start: prevStart,
    mcq_metric: MCQ_METRIC,
    methods: results,
    wall_time_s: (performance.now() - t0) / 1000,
  };
  writeJsonAtomic(path.join(dir, 'summary.json'), summary);
  return { runDir: dir, summary, table };
}

/**
 * The default model: a Llama of model.D, model.L, model.H (D/H query heads, half as many key/value heads, SwiGLU
 * of 3·D, tied embeddings like Llama-3.2-1B) pretrained on the old language's pretraining text, saved as a
 * Hugging Face folder with the chat tokenizer. Cached under the prepared folder, keyed by everything that
 * determines its weights; a folder without its model.json (an interrupted build) is built again.
 */
async function pretrainedModel(cfg: InstructConfig, split: EnglishSplit, root: string, threads: number | null, opts: { reporter?: Reporter; shouldStop?: () => boolean }): Promise<PretrainedModel> {
  const reporter = opts.reporter ?? silentReporter;
  const data = await prepareLanguageData(cfg.lang, 'lang', (l) => reporter.log(l));
  const { D, L, H } = cfg.model;
  const T = cfg.model.T ?? 128;
  const N = D / H;
  const s = cfg.instruct;
  const bosId = cfg.lang.old_token_id;
  const arch = {
    architectures: ['LlamaForCausalLM'], model_type: 'llama', hidden_size: D, num_hidden_layers: L,
    num_attention_heads: N, num_key_value_heads: N % 2 === 0 ? N / 2 : N, head_dim: H, intermediate_size: 3 * D,
    vocab_size: data.vocabSize, max_position_embeddings: T, rms_norm_eps: 1e-5, rope_theta: 10000,
    tie_word_embeddings: true, hidden_act: 'silu', initializer_range: 0.02,
  };
  const { lr: _lr, warmup_tokens: _w, lr_decay: _d, ...opt } = cfg.opt;
  const key = {
    v: 1, data: path.basename(data.dir), split: path.basename(split.dir), reserved: cfg.lang.reserved, bos: bosId, arch,
    tokens: s.pretrain_tokens, lr: s.pretrain_lr, warmup: s.pretrain_warmup_tokens, opt,
    valid: cfg.data.num_tokens_valid, split_seed: cfg.data.split_seed, seed: cfg.run.seed,
  };
  const cacheDir = path.join(root, `instruct-model-${shortHash(key)}`);
  const done = path.join(cacheDir, 'model.json');
  if (!freshCacheDir(cacheDir, 'model.json')) {
    reporter.log(`pretrained model: ${cacheDir} (cached)`);
    return { ...(JSON.parse(fs.readFileSync(done, 'utf8')) as PretrainedModel), cached: true };
  }
  writeJsonAtomic(path.join(cacheDir, 'key.json'), key);
  const tokDir = path.join(cacheDir, 'tokenizer');
  const ids = writeChatTokenizer(data.tokenizer, tokDir, { reserved: cfg.lang.reserved, bosId, T });
  // The prepared tokenizer gives the ids the chat tokenizer gives (only two names differ).
  const bin = path.join(cacheDir, 'pretrain.bin');
  const tokens = await tokenizeCorpus({ tokenizerFile: data.tokenizer, out: bin, inputs: [split.pretrain], datasetTokenId: bosId, seed: cfg.lang.seed });
  const configFile = path.join(cacheDir, 'llama-config.json');
  writeJsonAtomic(configFile, { ...arch, bos_token_id: bosId, eos_token_id: [ids.imEndId, ids.endOfTextId] });
  reporter.log(`pretraining a Llama (D=${D}, L=${L}, head size ${H}, T=${T}) on ${cfg.lang.old.join(' + ')}: ${s.pretrain_tokens} of its ${tokens.tokens} tokens`);
  const pc = childConfig(cfg, {
    ...NO_LENGTH,
    'stop.num_tokens_train': s.pretrain_tokens,
    'log.dir': cacheDir, 'run.id': 'pretrain', 'model.save_dir': null, 'run.threads': threads,
    'data.path': bin, 'data.format': 'tokens', 'data.tokenizer': null, 'data.token_id': null,
    'model.config': configFile, 'model.V': null, 'model.T': T, 'model.load_path': null, 'model.lora_rank': null,
    'prev.path': null, 'mix.path': null, 'reg.method': null, 'log.mcq': null,
    'opt.lr': s.pretrain_lr, 'opt.warmup_tokens': s.pretrain_warmup_tokens, 'opt.lr_decay': 'cosine',
    'log.every_tokens': Math.max(1, Math.floor(s.pretrain_tokens / 4)),
  });
  const r = await train(pc, opts);
  if (r.summary.stop_reason === 'interrupted') throw new UnforgetError(`interrupted during pretraining; ${cacheDir} is rebuilt next time`);
  const modelDir = path.join(cacheDir, 'model');
  const loaded = loadModelFolder(r.runDir);
  saveHFModel(modelDir, loaded.model, { bosId, eosIds: [ids.imEndId, ids.endOfTextId], tokenizerFrom: tokDir });
  const counts = archParamCounts(loaded.model.cfg);
  const info: PretrainedModel = {
    model_dir: modelDir, pretrain_run: r.runDir, valid_ntp: r.summary.valid_ntp as number, tokens: s.pretrain_tokens,
    n_params: counts.n_param_nonembed + counts.n_param_embed, cached: false,
  };
  writeJsonAtomic(done, info);
  reporter.log(`pretrained model: ${modelDir} (${info.n_params} parameters, valid_ntp ${info.valid_ntp.toFixed(3)})`);
  return info;
}

export interface TrajectoryPoint {
  /** New-data loss (valid_ntp). */
  x: number;
  prev: number;
  acc: number;
  accNorm: number | null;
  tokens: number;
}

/** (new-data loss, old-data loss, multiple-choice accuracy) at each evaluation of a finetuning run. */
export function instructTrajectory(runDir: string): TrajectoryPoint[] {
  return readMetrics(runDir)
    .filter((r) => r.valid_ntp !== undefined && r.prev_ntp !== undefined && r[MCQ_METRIC] !== undefined)
    .map((r) => ({ x: r.valid_ntp!, prev: r.prev_ntp!, acc: r[MCQ_METRIC]!, accNorm: r[`${MCQ_METRIC}_norm`] ?? null, tokens: r.train_tokens_seen ?? 0 }));
}

const LABELS: Record<InstructMethod, string> = {
  standard: 'standard finetuning',
  lora: 'LoRA',
  ntp_pre_real: 'NTP replay (real)',
  ntp_pre_synth: 'NTP replay (self-generated)',
  kl_pre_real: 'KL replay (real)',
  kl_pre_synth: 'KL replay (self-generated)',
  lora_kl_pre_synth: 'LoRA + KL replay (self-generated)',
};

function fmt(v: number | null | undefined, digits = 3): string {
  return v === null || v === undefined || !Number.isFinite(v) ? '-' : v.toFixed(digits);
}

export function instructTable(methods: InstructMethod[], r: Record<InstructMethod, InstructMethodResult>, prevStart: number, mcqItems: number): string {
  const pct = (v: number | null) => (v === null || !Number.isFinite(v) ? '-' : `${(100 * v).toFixed(1)}%`);
  const rows = methods.map((m) => {
    const x = r[m];
    return `| ${m} | ${fmt(x.valid_ntp_start)} → ${fmt(x.valid_ntp_end)} | ${fmt(x.forgetting_end)} | ${fmt(x.valid_ntp)} | ${fmt(x.forgetting)} | ${fmt(x.standard_forgetting)} | ${pct(x.forgetting_removed)} | ${pct(x.mcq_acc_start)} → ${pct(x.mcq_acc_end)} |`;
  });
  return [
    `old-data loss before finetuning: ${prevStart.toFixed(3)} nats; multiple-choice accuracy on ${mcqItems} old-knowledge items (chance 25%).`,
    "forgetting = old-data loss − before; 'matched': where the method and standard finetuning reach the same new-data loss",
    '(the higher of their best losses).',
    '',
    "| method | new-data loss start → end | forgetting (end) | matched new-data loss | forgetting there | standard's forgetting there | forgetting removed | MCQ accuracy start → end |",
    '|---|---:|---:|---:|---:|---:|---:|---:|',
    ...rows,
  ].join('\n');
}

/**
 * Two panels over the new-data loss of each evaluation (falling to the right as finetuning proceeds): the
 * multiple-choice accuracy on old knowledge, and the old-data loss; one trajectory per method.
 */
export function instructFigureSpec(methods: InstructMethod[], paths: Record<InstructMethod, TrajectoryPoint[]>): object {
  const values = methods.flatMap((m) => paths[m].map((p, i) => ({ method: LABELS[m], i, x: p.x, acc: p.acc, prev: p.prev })));
  const domain = methods.map((m) => LABELS[m]);
  const color = { field: 'method', type: 'nominal', title: null, scale: { domain }, legend: { orient: 'right', labelLimit: 260, symbolStrokeWidth: 3 } };
  const x = { field: 'x', type: 'quantitative', title: 'new-data loss (valid_ntp, nats/token)', scale: { zero: false, reverse: true } };
  const panel = (y: object, title: string, extra: object[] = []) => ({
    width: 380,
    height: 300,
    title: { text: title, font: FONT_STACK, fontSize: 13 },
    layer: [
      ...extra,
      { data: { values }, mark: { type: 'line', point: { size: 22 }, strokeWidth: 2 }, encoding: { x, y, color, order: { field: 'i', type: 'quantitative' } } },
    ],
  });
  const chance = { data: { values: [{ c: 0.25 }] }, mark: { type: 'rule', strokeDash: [4, 4], color: '#888' }, encoding: { y: { field: 'c', type: 'quantitative' } } };
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: {
      text: 'Instruction finetuning: what the model keeps of the old language',
      subtitle: 'one point per evaluation of each finetuning run, from before finetuning (left) to its end (right); dashed: chance',
      font: FONT_STACK,
      subtitleFont: FONT_STACK,
    },
    config: { font: FONT_STACK },
    hconcat: [
      panel({ field: 'acc', type: 'quantitative', title: 'accuracy (4 choices)', axis: { format: '.1%' }, scale: { zero: false } }, 'Multiple-choice accuracy (old knowledge)', [chance]),
      panel({ field: 'prev', type: 'quantitative', title: 'prev_ntp (nats/token)', scale: { zero: false } }, 'Old-data loss (held-out old language)'),
    ],
    resolve: { scale: { color: 'shared' } },
  };
}
