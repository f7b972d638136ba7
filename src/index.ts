/**
 * The package entry, `import { ... } from 'grpo-cluster'`: the GRPO objective (advantages,
 * losses, shaping), the policy model with its sampler, checkpoints and tokenizers, the tensor
 * engine, the config schema and coded errors, for use in your own training loop.
 */
export * from './grpo/index.js';
export { GrpoError, isGrpoError, type ErrorCode } from './shared/errors.js';
export { ConfigSchema, parseConfig, resolveConfig, DEFAULT_CONFIG, type Config } from './shared/config.js';
export { Rng, type RngState } from './shared/rng.js';
export { tf } from './engine/tf.js';
export { LlamaModel } from './model/llama.js';
export { sample } from './model/sampling.js';
export { presetConfig, REFERENCE_CONFIG, type ModelSize } from './model/presets.js';
export {
  saveCheckpoint,
  loadCheckpoint,
  isCompleteCheckpoint,
  parseModelConfig,
  type Checkpoint,
  type SaveOptions,
  type TrainerState,
  type WeightsDtype,
} from './model/checkpoint.js';
export { SUPPORTED_MODEL_TYPES } from './model/architecture.js';
export { CharTokenizer } from './model/char-tokenizer.js';
export { loadTokenizer } from './model/tokenizer.js';
export { encodeSafetensors, decodeSafetensors } from './model/safetensors.js';
export type { LlamaConfig, ModelConfig, ModelType, RopeScaling, Tokenizer, SampleOptions, SampleResult, HostTensor, NamedHostTensors } from './model/types.js';
export {
  grammarHook,
  rowGrammarHook,
  dfaMachine,
  fixedLengthMachine,
  machineAccepts,
  runMachine,
  type CharMachine,
  type TokenMachine,
  type GrammarMachine,
  type DfaSpec,
} from './tasks/grammar.js';
export { batchGrammar, grammarViolation } from './tasks/grammar-batch.js';
export type { Task, TaskFactory, TaskSpec, TaskExample, TaskReward, GrammarHook } from './tasks/types.js';
export { groupReward } from './tasks/reward-module.js';
export type { RewardExport, RewardScope } from './tasks/reward-module.js';
export type { RewardFunction, GroupRewardFunction } from './tasks/types.js';
export { keywordScore, lengthScore, repetitionScore, formatScore, groupDiversity, words } from './tasks/heuristic.js';
export { evaluate, passAtK, sampleMetrics, type EvalOptions, type EvalResult, type SampleOutcome } from './eval/eval.js';
export { Judge } from './tasks/fill-in/judge.js';
