/** pass@k, mean@k and majority@k: hand-worked cases for sampleMetrics, and identities of evaluate(). */
import { beforeAll, describe, expect, it } from 'vitest';
import { initEngine } from '../../src/engine/backend.js';
import { evaluate, sampleMetrics, type SampleOutcome } from '../../src/eval/eval.js';
import { LlamaModel } from '../../src/model/llama.js';
import { sample } from '../../src/model/sampling.js';
import { createTask, decodeCompletion, promptIds, tokenizerForTask } from '../../src/tasks/index.js';
import type { Task } from '../../src/tasks/types.js';
import { tinyLlamaConfig } from '../helpers.js';

/** "A+" is answer A, correct; "B-" answer B, wrong. */
const outcomes = (spec: string): SampleOutcome[] => spec.split(' ').map((s) => ({ answer: s[0], correct: s[1] === '+' }));

describe('sampleMetrics', () => {
  it('matches values worked out by hand', () => {
    const six = outcomes('A+ A+ B- C- B- A+'); // n = 6, c = 3
    // k = 2: pass = 1 - C(3,2)/C(6,2) = 1 - 3/15; blocks [A A] -> A ok, [B C] tie -> B (seen first) wrong,
    // [B A] tie -> B wrong: majority 1/3
    expect(sampleMetrics(six, 2)).toEqual({ pass: expect.closeTo(0.8, 12), mean: 0.5, majority: 1 / 3 });
    // k = 3: pass = 1 - C(3,3)/C(6,3) = 1 - 1/20; blocks [A A B] -> A ok, [C B A] all tied -> C wrong
    expect(sampleMetrics(six, 3)).toEqual({ pass: expect.closeTo(0.95, 12), mean: 0.5, majority: 0.5 });
    // k = 1: every block is one sample, so majority@1 = mean@1 = pass@1 = c / n
    expect(sampleMetrics(six, 1)).toEqual({ pass: expect.closeTo(0.5, 12), mean: 0.5, majority: 0.5 });
  });

  it('drops the samples left over after the last full block of k, for majority only', () => {
    const five = outcomes('A+ B- B- A+ C-'); // blocks [A B] -> A ok, [B A] -> B wrong; C- left over
    expect(sampleMetrics(five, 2)).toEqual({ pass: expect.closeTo(1 - 3 / 10, 12), mean: 0.4, majority: 0.5 });
  });

  it('votes on answers, so two different wrong answers lose to one repeated right one', () => {
    expect(sampleMetrics(outcomes('X- A+ Y- A+'), 4).majority).toBe(1);
    expect(sampleMetrics(outcomes('X- A+ X- A+'), 4).majority).toBe(0); // tie: X was seen first
  });

  it('rejects k > n with GRPO_ERR_EVAL_OPTIONS', () => {
    expect(() => sampleMetrics(outcomes('A+'), 2)).toThrow(expect.objectContaining({ code: 'GRPO_ERR_EVAL_OPTIONS' }));
  });
});

describe('evaluate: mean@k and majority@k', () => {
  const arithmetic = createTask('arithmetic', { seed: 5 });
  const tok = tokenizerForTask(arithmetic);
  // correctness that a random model hits about half the time
  const evenLength: Task = { ...arithmetic, isCorrect: (_p, c) => c.length % 2 === 0 };
  const config = tinyLlamaConfig(tok, { initializer_range: 0.3 });
  let model: LlamaModel;
  beforeAll(async () => {
    await initEngine({ backend: 'auto', log: () => {} });
    model = LlamaModel.create(config, 6);
  });

  it('equal greedy accuracy at temperature 0, where all samples are the greedy one', async () => {
    const r = await evaluate(model, tok, evenLength, { samples: 12, k: 3, n: 3, temperature: 0 });
    expect(r.meanAtK).toBeCloseTo(r.accuracy, 12);
    expect(r.majAtK).toBeCloseTo(r.accuracy, 12);
    expect(r.passAtK).toBeCloseTo(r.accuracy, 12);
  });

  it('at k = 1 all three are c / n', async () => {
    const r = await evaluate(model, tok, evenLength, { samples: 12, k: 1, n: 4, seed: 2 });
    expect(r.meanAtK).toBeCloseTo(r.passAtK!, 12);
    expect(r.majAtK).toBeCloseTo(r.passAtK!, 12);
    expect(r.meanAtK! > 0 && r.meanAtK! < 1).toBe(true); // a case where the identities are not trivial
  });

  it('majority votes on task.answerOf, over the same samples pass@k sees', async () => {
    // the answer is the correctness itself: a block of 4 is won by the side with more votes,
    // a 2-2 tie by the side of its first sample
    const byParity: Task = { ...evenLength, answerOf: (c) => String(c.length % 2 === 0) };
    const r = await evaluate(model, tok, byParity, { samples: 12, k: 4, n: 4, seed: 2 });
    const problems = Array.from({ length: 12 }, (_, i) => arithmetic.example('test', i));
    const rows = problems.flatMap((p) => Array.from({ length: 4 }, () => promptIds(tok, p.prompt)));
    // the sampled pass of evaluate: one batch (48 rows <= 64) seeded with seed + 0
    const s = await sample(model, rows, { maxNewTokens: arithmetic.maxCompletionTokens, temperature: 1, topK: 0, topP: 1, stopTokens: [tok.eosId], seed: 2 });
    let wins = 0;
    for (let i = 0; i < 12; i++) {
      const ok = s.tokens.slice(4 * i, 4 * i + 4).map((ids) => decodeCompletion(tok, ids).length % 2 === 0);
      const c = ok.filter(Boolean).length;
      wins += c > 2 ? 1 : c < 2 ? 0 : ok[0] ? 1 : 0;
    }
    expect(r.majAtK).toBeCloseTo(wins / 12, 12);
  });

  it('are null without sampling (n = 1)', async () => {
    const r = await evaluate(model, tok, evenLength, { samples: 4, k: 1 });
    expect(r).toMatchObject({ passAtK: null, meanAtK: null, majAtK: null });
  });
});
