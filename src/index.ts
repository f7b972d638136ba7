/**
 * The package entry, `import { ... } from 'grpo-cluster'`: the GRPO objective (advantages,
 * losses, shaping), the policy model with its sampler, checkpoints and tokenizers, the tensor
 * engine, the config schema and coded errors, for use in your own training loop.
 */
export * from './shared/grpo/index.js';
export { GrpoError, isGrpoError, type ErrorCode } from './shared/errors.js';
export { ConfigSchema, parseConfig, resolveConfig, DEFAULT_CONFIG, type Config } from './shared/config.js';
export { Rng, type RngState } from './shared/rng.js';
export { tf } from './shared/engine/tf.js';
export { LlamaModel } from './shared/model/llama.js';
export { sample } from './shared/model/sampling.js';
export { presetConfig, REFERENCE_CONFIG, type ModelSize } from './shared/model/presets.js';
export { saveCheckpoint, loadCheckpoint, isCompleteCheckpoint, type Checkpoint, type TrainerState } from './shared/model/checkpoint.js';
export { CharTokenizer } from './shared/model/char-tokenizer.js';
export { loadTokenizer } from './shared/model/tokenizer.js';
export { encodeSafetensors, decodeSafetensors } from './shared/model/safetensors.js';
export type { LlamaConfig, Tokenizer, SampleOptions, SampleResult, HostTensor, NamedHostTensors } from './shared/model/types.js';
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
} from './shared/tasks/grammar.js';
export { batchGrammar, grammarViolation } from './shared/tasks/grammar-batch.js';
export type { Task, TaskFactory, TaskSpec, TaskExample, TaskReward, GrammarHook } from './shared/tasks/types.js';
export { groupReward } from './shared/tasks/reward-module.js';
export type { RewardExport, RewardScope } from './shared/tasks/reward-module.js';
export type { RewardFunction, GroupRewardFunction } from './shared/tasks/types.js';
export { keywordScore, lengthScore, repetitionScore, formatScore, groupDiversity, words } from './shared/tasks/heuristic.js';
export { evaluate, passAtK, sampleMetrics, type EvalOptions, type EvalResult, type SampleOutcome } from './shared/eval.js';
export { Judge } from './shared/judge/judge.js';
