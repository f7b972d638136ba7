/**
 * The fill-in task (seed 002): restore the masked letters of a sentence, rewarded by a frozen judge.
 *
 *   prompt      "the s_y fox chases the o_d h_n.="   the masked text (see ./fill-in-corpus.ts), "="
 *   completion  "the shy fox chases the old hen."   the whole text with the masks filled in; the
 *                                                    model ends it with EOS
 *
 * The completion is the whole text, not just the masked letters: a small causal model then fills
 * each mask with the letters before it already written and the prompt's letters after it one
 * attention hop away, and copying the rest is easy. (Generating only the masked letters makes the
 * model count masks to know which one it is filling; the tiny model reached 11% held-out after
 * 1000 SFT steps that way, against 37% after 300 steps with whole texts.) A completion counts as
 * a filling of the prompt when it has the same length, the same characters at every unmasked
 * position and a letter at every mask; anything else (a changed word, a dropped period) is not
 * judged.
 *
 * Rewards (weights are defaults; the config's reward_weights override them by name):
 *   judge   1   the frozen judge's score of the completion when it is a filling of the prompt, in
 *               (0, 1] (src/tasks/fill-in/judge.ts); else 0
 *   exact   0   1 when the completion is exactly the original text, else 0
 *   format  0   1 when the completion is a filling of the prompt, else 0
 *   faithful 0  how close the completion is to being a filling: 1 - edit distance / prompt length
 *               (masks match any letter; see faithfulness in ./fill-in-corpus.ts). A dense signal
 *               for copying the prompt faithfully, which the judge, a model of plausible text,
 *               cannot give: "the owl hears the dark seal." reads well for "the owl h_lps ...".
 * With task option `constrained` (the default) the task has a grammar (fillingMachine in
 * ./fill-in-corpus.ts): every unmasked character is forced and each mask admits any letter, so
 * every sample is a filling and the policy's only choices, the gradient's only targets, are the
 * masked letters. Unconstrained, half the samples of a 72%-accurate SFT model were not fillings
 * (a plausible word of another length, "wolf" for "_wl"): zero reward, and their negative
 * advantage fell on every copied character after the slip.
 * Correctness (accuracy, pass@k in `grpo eval`) is the exact text. Completions run up to 47
 * tokens: set max_gen_len to at least 48 (examples/fill-in.yaml does). Some masked texts have more
 * than one sensible fill ("the b__ naps." may be the bee or the bug), which the judge accepts and
 * exact match does not: held-out exact accuracy stays below 100%.
 *
 * The judge is the checkpoint at task option `judge_checkpoint`, written by `grpo judge-train`.
 * It is checked when the task is created (so a run with a wrong path fails at start) and loaded on
 * the judge reward's first call, once per thread: each reward thread of a rollout worker holds
 * one copy, so with reward_threads 1 (the default) it is loaded once per worker. Without a
 * judge_checkpoint the task still serves SFT and evaluation, and the judge reward fails with
 * GRPO_ERR_JUDGE_MISSING; set reward_weights { judge: 0, exact: 1 } to train on exact match alone.
 */
import { z } from 'zod';
import { GrpoError } from '../../shared/errors.js';
import { checkJudgeCheckpoint } from './judge-check.js';
import type { Tokenizer } from '../../model/types.js';
import type { Rng } from '../../shared/rng.js';
import {
  FILL_IN_ALPHABET,
  MAX_SENTENCE_CHARS,
  PROMPT_END,
  corpusSentence,
  faithfulness,
  fillingMachine,
  isFillingOf,
  maskText,
  maskedOfPrompt,
} from './corpus.js';
import { rowGrammarHook } from '../grammar.js';
import { parseTaskOptions } from '../options.js';
import { drawExample } from '../split.js';
import type { GrammarHook, Split, Task, TaskExample, TaskFactory, TaskReward, TaskSpec } from '../types.js';

const OptionsSchema = z.strictObject({
  // ~30 letters per sentence: 0.15 masks 4-5 of them, capped at max_masks.
  mask_rate: z.number().gt(0).max(1).default(0.15), // share of letters masked (at least 1)
  max_masks: z.number().int().min(1).max(40).default(4), // most masks per sentence
  test_fraction: z.number().gt(0).lt(1).default(0.1), // share of prompt texts held out
  judge_checkpoint: z.string().min(1).nullable().default(null), // written by `grpo judge-train`
  constrained: z.boolean().default(true), // sample under the grammar of the prompt's fillings
});

export type FillInOptions = z.infer<typeof OptionsSchema>;
export const FILL_IN_OPTION_KEYS = Object.keys(OptionsSchema.shape) as (keyof FillInOptions)[];

/** What travels with each prompt: the clean text and the masked letters. */
export interface FillInMeta {
  text: string;
  answer: string;
}

function metaOf(meta: unknown): FillInMeta {
  const m = meta as Partial<FillInMeta> | null;
  if (typeof m?.text !== 'string' || typeof m.answer !== 'string') {
    throw new GrpoError('GRPO_ERR_TASK_META', `fill-in: meta must be { text, answer } strings, got ${JSON.stringify(meta)}`);
  }
  return m as FillInMeta;
}

/** Whether `completion` is a filling of the prompt's masked text (see the file comment). */
export function isFilling(prompt: string, completion: string): boolean {
  return isFillingOf(maskedOfPrompt(prompt), completion);
}

/**
 * The judge reward, per completion and per group: the group form scores a group's well-formed
 * completions in one batched forward pass of the judge.
 */
function judgeReward(judgeDir: string | null): Pick<TaskReward, 'fn' | 'group'> {
  const judgeScores = async (prompt: string, completions: readonly string[]): Promise<number[]> => {
    if (judgeDir === null) {
      throw new GrpoError(
        'GRPO_ERR_JUDGE_MISSING',
        'fill-in: the judge reward needs task_options.judge_checkpoint (train a judge with `grpo judge-train --out runs/judge`), ' +
          'or set reward_weights { judge: 0, exact: 1 }',
      );
    }
    const fillings = completions.filter((c) => isFilling(prompt, c));
    const scores = fillings.length === 0 ? [] : await (await (await import('./judge.js')).sharedJudge(judgeDir)).score(fillings);
    let k = 0;
    return completions.map((c) => (isFilling(prompt, c) ? scores[k++] : 0));
  };
  return {
    fn: async (prompt, completion) => (await judgeScores(prompt, [completion]))[0],
    group: (prompt, completions) => judgeScores(prompt, completions),
  };
}

export function createFillIn(spec: TaskSpec): Task {
  if (!Number.isInteger(spec.seed)) {
    throw new GrpoError('GRPO_ERR_TASK_OPTIONS', `fill-in: seed is ${spec.seed}; it must be an integer`);
  }
  const o = parseTaskOptions('fill-in', OptionsSchema, spec.options, FILL_IN_OPTION_KEYS);
  if (o.judge_checkpoint !== null) checkJudgeCheckpoint(o.judge_checkpoint);
  const draw = { seed: spec.seed, testFraction: o.test_fraction, maxAttempts: 10_000, taskName: 'fill-in' };

  const generate = (rng: Rng): TaskExample => {
    const text = corpusSentence(rng);
    const { masked, answer } = maskText(rng, text, o.mask_rate, o.max_masks);
    const meta: FillInMeta = { text, answer };
    return { prompt: `${masked}${PROMPT_END}`, target: text, meta };
  };

  const rewards: readonly TaskReward[] = Object.freeze([
    { name: 'judge', weight: 1, ...judgeReward(o.judge_checkpoint) },
    { name: 'exact', weight: 0, fn: (_p: string, c: string, meta: unknown) => (c === metaOf(meta).text ? 1 : 0) },
    { name: 'format', weight: 0, fn: (p: string, c: string) => (isFilling(p, c) ? 1 : 0) },
    { name: 'faithful', weight: 0, fn: (p: string, c: string) => faithfulness(maskedOfPrompt(p), c) },
  ]);

  // every sampled completion a filling of its prompt: the policy chooses only the masked letters
  const grammar = (tokenizer: Tokenizer, prompts: readonly string[]): GrammarHook =>
    rowGrammarHook((row) => {
      if (row < 0 || row >= prompts.length) {
        throw new GrpoError('GRPO_ERR_GRAMMAR_INPUT', `fill-in grammar: row ${row} of ${prompts.length} prompts; give one prompt per sampler row`);
      }
      return fillingMachine(maskedOfPrompt(prompts[row]));
    }, tokenizer);

  return Object.freeze({
    name: 'fill-in',
    seed: spec.seed,
    options: o,
    alphabet: FILL_IN_ALPHABET,
    maxCompletionTokens: MAX_SENTENCE_CHARS + 1, // + EOS
    maxPromptChars: MAX_SENTENCE_CHARS + PROMPT_END.length,
    example: (split: Split, index: number) => drawExample(split, index, draw, generate),
    rewards,
    isCorrect: (_prompt: string, completion: string, meta: unknown) => completion === metaOf(meta).text,
    ...(o.constrained ? { grammar } : {}),
  });
}

export const fillInTask: TaskFactory = Object.freeze({
  name: 'fill-in',
  description: 'restore the masked letters of a sentence, scored by a frozen judge (knobs: ' + FILL_IN_OPTION_KEYS.join(', ') + ')',
  create: createFillIn,
});
