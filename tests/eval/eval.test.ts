import { beforeAll, describe, expect, it } from 'vitest';
import { initEngine } from '../../src/engine/backend.js';
import { tf } from '../../src/engine/tf.js';
import { evaluate, passAtK } from '../../src/eval/eval.js';
import { LlamaModel } from '../../src/model/llama.js';
import { sample } from '../../src/model/sampling.js';
import { createTask, decodeCompletion, promptIds, tokenizerForTask } from '../../src/tasks/index.js';
import type { Task } from '../../src/tasks/types.js';
import { tinyLlamaConfig } from '../helpers.js';

beforeAll(async () => {
  await initEngine({ backend: 'auto', log: () => {} });
});

describe('passAtK', () => {
  it('matches 1 - C(n-c, k) / C(n, k) worked out by hand', () => {
    expect(passAtK(5, 2, 2)).toBeCloseTo(1 - 3 / 10, 12); // C(3,2)=3, C(5,2)=10
    expect(passAtK(10, 3, 4)).toBeCloseTo(1 - 35 / 210, 12); // C(7,4)=35, C(10,4)=210
    expect(passAtK(8, 3, 1)).toBeCloseTo(3 / 8, 12); // pass@1 = c / n
    expect(passAtK(4, 0, 2)).toBe(0);
    expect(passAtK(4, 3, 2)).toBe(1); // one wrong sample: every pair holds a correct one
  });

  it('rejects impossible counts', () => {
    const code = expect.objectContaining({ code: 'GRPO_ERR_EVAL_OPTIONS' });
    expect(() => passAtK(2, 1, 3)).toThrow(code);
    expect(() => passAtK(4, 5, 1)).toThrow(code);
    expect(() => passAtK(4, 1, 0)).toThrow(code);
  });
});

describe('evaluate', () => {
  const arithmetic = createTask('arithmetic', { seed: 5 });
  const tok = tokenizerForTask(arithmetic);
  // a task whose "correct" is a property of the completion, so a random model scores in between
  const evenLength: Task = { ...arithmetic, isCorrect: (_p, c) => c.length % 2 === 0 };
  const config = tinyLlamaConfig(tok, { initializer_range: 0.3 });

  it('scores the test split greedily, consistent with the sampler and the task', async () => {
    const model = LlamaModel.create(config, 4);
    const r = await evaluate(model, tok, evenLength, { samples: 24, k: 1, batchSize: 10 });
    const problems = Array.from({ length: 24 }, (_, i) => arithmetic.example('test', i));
    const greedy = await sample(model, problems.map((p) => promptIds(tok, p.prompt)), {
      maxNewTokens: arithmetic.maxCompletionTokens,
      temperature: 0,
      topK: 0,
      topP: 1,
      stopTokens: [tok.eosId],
      seed: 0,
    });
    const correct = greedy.tokens.filter((ids) => decodeCompletion(tok, ids).length % 2 === 0).length;
    expect(r.correct).toBe(correct);
    expect(r.accuracy).toBe(correct / 24);
    expect(r.passAtK).toBeNull(); // n = 1: no sampling
    expect(r.examples).toHaveLength(5);
    expect(r.examples[0].prompt).toBe(problems[0].prompt);
    expect(r.examples[0].completion).toBe(decodeCompletion(tok, greedy.tokens[0]));
    expect(r.meanCompletionTokens).toBeCloseTo(greedy.tokens.reduce((a, t) => a + t.length, 0) / 24, 10);
    expect(r).toMatchObject({ task: 'arithmetic', samples: 24, k: 1, n: 1 });
    model.dispose();
  });

  it('pass@k at temperature 0 equals greedy accuracy; at temperature 1 it is at least as high as pass@1', async () => {
    const model = LlamaModel.create(config, 6);
    const cold = await evaluate(model, tok, evenLength, { samples: 16, k: 2, n: 3, temperature: 0 });
    expect(cold.passAtK).toBeCloseTo(cold.accuracy, 12);
    const hot1 = await evaluate(model, tok, evenLength, { samples: 16, k: 1, n: 4, seed: 3 });
    const hot4 = await evaluate(model, tok, evenLength, { samples: 16, k: 4, n: 4, seed: 3 });
    expect(hot4.passAtK!).toBeGreaterThanOrEqual(hot1.passAtK!);
    expect(hot4.passAtK!).toBeGreaterThan(0);
    model.dispose();
  });

  it('validates options and leaks no tensors', async () => {
    const model = LlamaModel.create(config, 7);
    const code = expect.objectContaining({ code: 'GRPO_ERR_EVAL_OPTIONS' });
    await expect(evaluate(model, tok, arithmetic, { samples: 0, k: 1 })).rejects.toMatchObject({ code: 'GRPO_ERR_EVAL_OPTIONS' });
    await expect(evaluate(model, tok, arithmetic, { samples: 4, k: 3, n: 2 })).rejects.toEqual(code);
    await evaluate(model, tok, arithmetic, { samples: 4, k: 2 });
    const before = tf.memory().numTensors;
    await evaluate(model, tok, arithmetic, { samples: 4, k: 2 });
    expect(tf.memory().numTensors).toBe(before);
    model.dispose();
  });
});
