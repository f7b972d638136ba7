/**
 * The `math-answer` task, for pretrained models: word problems whose completion ends in a final
 * answer, scored on that answer and on the DeepSeek-R1 output format (seeds 003/004).
 *
 *   prompt      the question (the chat template and `system_prompt` wrap it, see ../prompts.ts)
 *   completion  "<think>reasoning</think>\n<answer>42</answer>" (\boxed{42} and "#### 42" also
 *               count as answers, see ./extract.ts)
 *
 * Its problems come from a dataset file (`dataset`, see ../dataset/) whose answer field is read
 * with answerMeta(), or, without one, from the template generator in ./word-problems.ts
 * (deterministic under `seed`, disjoint train/test by prompt text as every generated task).
 *
 * Rewards (weights are defaults; reward_weights overrides them by name):
 *   correct  1    1 when the extracted answer equals the reference exactly as a rational
 *                 ("0.5" = "1/2"), else 0
 *   format   0.2  1 for exactly <think>...</think><answer>...</answer>, else 0. Smaller than
 *                 correct: the format is learnt in a few dozen steps and must not outweigh
 *                 being right (open-r1 weighs them equally, which rewards well-formed wrong answers
 *                 as much as malformed right ones)
 */
import { z } from 'zod';
import { GrpoError } from '../../shared/errors.js';
import type { Rng } from '../../shared/rng.js';
import { parseTaskOptions } from '../options.js';
import { Rational } from '../rational.js';
import { drawExample } from '../split.js';
import type { Split, Task, TaskExample, TaskFactory, TaskReward, TaskSpec } from '../types.js';
import { answersEqual, extractAnswer, formatScore, parseAnswerNumber } from './extract.js';
import { wordProblem } from './word-problems.js';

const OptionsSchema = z.strictObject({
  test_fraction: z.number().gt(0).lt(1).default(0.1), // share of generated prompt texts held out
  max_completion_tokens: z.number().int().positive().default(256), // reasoning + answer, a max_gen_len hint
  max_prompt_chars: z.number().int().positive().default(4096), // longer dataset prompts are dropped (counted, logged)
});

export type MathAnswerOptions = z.infer<typeof OptionsSchema>;
export const MATH_ANSWER_OPTION_KEYS = Object.keys(OptionsSchema.shape) as (keyof MathAnswerOptions)[];

/** What travels with each prompt: the reference answer as a canonical rational ("42", "-3/4"). */
export interface MathAnswerMeta {
  answer: string;
}

function referenceOf(meta: unknown): Rational {
  const answer = (meta as Partial<MathAnswerMeta> | null)?.answer;
  const value = typeof answer === 'string' ? Rational.parse(answer) : null;
  if (value === null) {
    throw new GrpoError('GRPO_ERR_TASK_META', `math-answer: meta must be { answer: "<integer or a/b>" }, got ${JSON.stringify(meta)}`);
  }
  return value;
}

/**
 * The meta of a reference answer text: GSM8K's "...#### 42", "\boxed{42}", "<answer>42</answer>"
 * or a bare number ("1,234", "3.5", "-3/4"). Throws GRPO_ERR_TASK_META when it holds no number.
 */
export function mathAnswerMeta(text: string): MathAnswerMeta {
  const value = extractAnswer(text)?.value ?? parseAnswerNumber(text);
  if (value === null) {
    throw new GrpoError('GRPO_ERR_TASK_META', `math-answer: the reference answer ${JSON.stringify(text.slice(0, 80))} holds no number`);
  }
  return { answer: value.toString() };
}

export function isCorrectMath(completion: string, meta: unknown): boolean {
  return answersEqual(extractAnswer(completion)?.value ?? null, referenceOf(meta));
}

const REWARDS: readonly TaskReward[] = Object.freeze([
  { name: 'correct', weight: 1, fn: (_p: string, c: string, meta: unknown) => (isCorrectMath(c, meta) ? 1 : 0) },
  { name: 'format', weight: 0.2, fn: (_p: string, c: string) => formatScore(c) },
]);

/** The R1-format SFT target of a worked GSM8K-style solution "steps\n#### 42". */
export function r1Target(solution: string, answer: string): string {
  const steps = solution.replace(/####[^\n]*$/, '').trim();
  return `<think>\n${steps}\n</think>\n<answer>${answer}</answer>`;
}

export function createMathAnswer(spec: TaskSpec): Task {
  if (!Number.isInteger(spec.seed)) {
    throw new GrpoError('GRPO_ERR_TASK_OPTIONS', `math-answer: seed is ${spec.seed}; it must be an integer`);
  }
  const o = parseTaskOptions('math-answer', OptionsSchema, spec.options, MATH_ANSWER_OPTION_KEYS);
  const draw = { seed: spec.seed, testFraction: o.test_fraction, maxAttempts: 1_000, taskName: 'math-answer' };
  const generate = (rng: Rng): TaskExample => {
    const p = wordProblem(rng);
    const meta = mathAnswerMeta(p.answer);
    return { prompt: p.question, target: r1Target(p.answer, meta.answer), meta };
  };
  return Object.freeze({
    name: 'math-answer',
    seed: spec.seed,
    options: o,
    alphabet: null, // a pretrained model's own tokenizer
    maxCompletionTokens: o.max_completion_tokens,
    maxPromptChars: o.max_prompt_chars,
    example: (split: Split, index: number) => drawExample(split, index, draw, generate),
    rewards: REWARDS,
    isCorrect: (_prompt: string, completion: string, meta: unknown) => isCorrectMath(completion, meta),
    answerOf: (completion: string) => extractAnswer(completion)?.value?.toString() ?? '',
    answerMeta: (text: string) => mathAnswerMeta(text),
  });
}

export const mathAnswerTask: TaskFactory = Object.freeze({
  name: 'math-answer',
  description: 'word problems with a final answer (<answer>, \\boxed{}, ####) for pretrained models (knobs: ' + MATH_ANSWER_OPTION_KEYS.join(', ') + ')',
  create: createMathAnswer,
});
