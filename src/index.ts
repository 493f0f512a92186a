/**
 * unforget — library entry point. The CLI (`unforget`) is a thin layer over these exports.
 */
export { native, type NativeKernels } from './backend/native.js';
export { Tensor, noGrad } from './tensor/tensor.js';
export * as ops from './tensor/ops.js';
export { GPT, paramCounts, specShapes, gptToSpec, type GPTConfig } from './model/gpt.js';
export { Transformer, type KVCache } from './model/transformer.js';
export { type ArchConfig, gptArch } from './model/arch.js';
export { loadModel, saveWeights, readCheckpointConfig, readCheckpointTensors, exportCheckpoint } from './model/checkpoint.js';
export { sample, type SampleOptions } from './model/sample.js';
export { loadConfig, dumpConfig, configFromYamlText } from './config/load.js';
export type { Config } from './config/schema.js';
export { readTokenFile, writeTokenFile, TokenDataset, BatchStream, allSequences } from './data/tokens.js';
export { makeMarkovChain, sampleMarkov, bestMarkovLoss } from './data/markov.js';
export { readSafetensors, writeSafetensors } from './io/safetensors.js';
export { readNpz, writeNpz } from './io/npz.js';
export { train, type TrainOutcome, type Reporter } from './train/train.js';
export { evaluate, ntpTargets } from './train/losses.js';
export { evaluateMcq, readMcqFile, prepareMcq, scoreMcq, mcqAccuracy, type McqItem, type McqResult, type McqStyle, type McqTokenizer, type ScoringModel } from './eval/mcq.js';
export { measureDrift, compareMcq, type DriftResult, type McqChange } from './eval/forgetting.js';
export { loadScoringModel, type LoadedModel } from './eval/load.js';
export { Stepper } from './train/step.js';
export { RandomReplay, RealReplay, SynthReplay, type ReplaySource } from './replay/replay.js';
export { Rng } from './util/rng.js';
export { UnforgetError, ConfigError, DataError, NonFiniteLossError } from './errors.js';
export { trainTokenizerFromFiles, tokenizeCorpus } from './data/tokenize.js';
export { fetchCorpus, CORPORA } from './data/corpora.js';
export { runToyContinual, TOY_PRESETS } from './experiments/toy/continual.js';
export { runDemo } from './experiments/toy/demo.js';
export { runLanguageShift, SHIFT_PRESETS } from './experiments/language/shift.js';
export { runCapacity, CAPACITY_PRESETS } from './experiments/language/capacity.js';
export { runLrTradeoff, LR_PRESETS } from './experiments/language/lrtradeoff.js';
export { runLrSweep, LR_SWEEP_PRESETS } from './experiments/language/lrsweep.js';
export { runStage, stagePoint, type StagePoint, type StageTask, type StageExecutor } from './experiments/language/stage.js';
export { spearman } from './util/stats.js';
export { runSweep } from './sweep/sweep.js';
export { buildReport } from './report/report.js';
