/**
 * What a task is: a deterministic source of (prompt, target) problems split into train and
 * held-out test sets, the reward functions GRPO optimises, and the correctness check evaluation
 * reports. Every built-in task (arithmetic here; grammar-constrained, judge-scored or heuristic
 * tasks later) implements this one interface, so SFT, rollout workers, the learner and `grpo eval`
 * never branch on a task's name.
 *
 * Text conventions: a prompt and a completion are plain strings. The model sees
 * [BOS] + encode(prompt) and generates encode(completion) followed by the tokenizer's EOS token
 * (see ./encoding.ts); reward functions and isCorrect receive the completion decoded without
 * special tokens.
 */
import type { Tokenizer } from '../model/types.js';

export type Split = 'train' | 'test';

export interface TaskExample {
  prompt: string;
  /** The reference completion for supervised warm start (absent for tasks with no single answer). */
  target?: string;
  /** JSON-serialisable facts the rewards need (e.g. the exact answer); travels with the prompt. */
  meta: unknown;
}

/** Scores one completion; may be async (e.g. a remote judge). NaN means "could not score". */
export type RewardFunction = (prompt: string, completion: string, meta: unknown) => number | Promise<number>;

/**
 * Scores all completions of one group at once (they share the prompt and its meta): one score per
 * completion, in order; may be async. For rewards that compare completions with each other, e.g.
 * diversity within the group. null means "not applicable", NaN "could not score".
 */
export type GroupRewardFunction = (
  prompt: string,
  completions: readonly string[],
  meta: unknown,
) => readonly (number | null)[] | Promise<readonly (number | null)[]>;

export interface TaskReward {
  /** Stable name, the key of `reward_weights` in the config and of per-reward metrics. */
  name: string;
  /** Default weight in the weighted sum; 0 = computed only when a config gives it a weight. */
  weight: number;
  /** Per completion. For a group reward, the score of a completion alone (a group of one). */
  fn: RewardFunction;
  /**
   * Group form: when present, the worker's reward pool calls it once per group instead of `fn`
   * once per completion. groupReward() (./reward-module.ts) builds both from a group function.
   */
  group?: GroupRewardFunction;
}

/**
 * Per-step allowed tokens for grammar-constrained generation: given the tokens generated so far
 * in each live row (`rows` are the sampler's row indices), the allowed next token ids (null =
 * any). Same contract as SampleOptions.allowedTokens. Build one with grammarHook (./grammar.ts)
 * from a state machine rather than by hand.
 */
export type GrammarHook = (generated: number[][], rows: number[]) => (Int32Array | number[] | null)[];

export interface Task {
  readonly name: string;
  /** The seed that fixes every generated problem; the same seed gives the same data everywhere. */
  readonly seed: number;
  /** Resolved difficulty knobs (defaults filled in), frozen; saved with checkpoints. */
  readonly options: Readonly<Record<string, unknown>>;
  /**
   * Every character prompts and completions can contain, for a character-level tokenizer.
   * Tasks that need a Hugging Face tokenizer set this to null.
   */
  readonly alphabet: string | null;
  /** Upper bound on completion tokens for a correct answer, EOS included (a max_gen_len hint). */
  readonly maxCompletionTokens: number;
  /** Upper bound on prompt characters. */
  readonly maxPromptChars: number;
  /**
   * The problem at `index` of `split`: deterministic in (seed, options, split, index), and no
   * prompt of one split ever appears in the other. Cheap enough to call per batch row.
   */
  example(split: Split, index: number): TaskExample;
  /**
   * Optional: the number of distinct examples per split, for tasks read from a file (generated
   * tasks are unbounded). Train positions past it wrap around (epochs); evaluation reads each
   * test example once.
   */
  readonly size?: { readonly train: number; readonly test: number };
  readonly rewards: readonly TaskReward[];
  /** Exact correctness for evaluation (accuracy, pass@k). */
  isCorrect(prompt: string, completion: string, meta: unknown): boolean;
  /**
   * Optional: the answer a completion gives, for majority@k in evaluation (the most common answer
   * among k samples). Completions with the same answer must be equally correct. Default: the
   * completion text itself.
   */
  answerOf?(completion: string): string;
  /**
   * Optional: the meta of a problem read from a dataset file, from the text of its answer field
   * (e.g. GSM8K's "... #### 42"). Throws a GrpoError for an answer the task cannot use; the
   * dataset reader reports it with the file, line and field. Tasks without it take no answer field.
   */
  answerMeta?(answer: string): unknown;
  /**
   * Optional grammar constraint: the sampler hook for one batch, whose row r continues the prompt
   * text `prompts[r]` (so a grammar may depend on the problem, e.g. Countdown's numbers). Workers,
   * `grpo eval` and the learner's evals sample under it; SFT checks its targets against it. See
   * ./grammar.ts for building one from a state machine.
   */
  grammar?(tokenizer: Tokenizer, prompts: readonly string[]): GrammarHook;
}

export interface TaskSpec {
  seed: number;
  /** Difficulty knobs by name; unknown names fail with GRPO_ERR_TASK_OPTIONS. */
  options?: Record<string, unknown>;
}

export interface TaskFactory {
  readonly name: string;
  /** One line for `--help` and error messages. */
  readonly description: string;
  create(spec: TaskSpec): Task;
}
