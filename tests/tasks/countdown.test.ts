import { beforeAll, describe, expect, it } from 'vitest';
import { tf } from '../../src/engine/tf.js';
import { CharTokenizer } from '../../src/model/char-tokenizer.js';
import { LlamaModel } from '../../src/model/llama.js';
import { presetConfig } from '../../src/model/presets.js';
import {
  COUNTDOWN_ALPHABET,
  countdownMachine,
  countdownTask,
  createCountdown,
  distanceReward,
  evaluateCountdown,
  parseCountdownPrompt,
  reachedReward,
  solveCountdown,
  type CountdownMeta,
} from '../../src/tasks/countdown.js';
import { completionIds } from '../../src/tasks/encoding.js';
import { machineAccepts } from '../../src/tasks/grammar.js';
import { checkSftTargets, grammarViolation } from '../../src/tasks/grammar-batch.js';
import { createTask, taskNames } from '../../src/tasks/index.js';
import type { Task } from '../../src/tasks/types.js';
import { peakedModelConfig, sampleTask } from './helpers.js';

/**
 * An independent checker: tokens by regex, recursive descent that requires an operator at the
 * top level of every parenthesised group, the numbers used, and the value as [num, den] BigInts
 * (null on division by zero).
 */
type Q = [bigint, bigint];
const gcd = (a: bigint, b: bigint): bigint => (b === 0n ? (a < 0n ? -a : a) : gcd(b, a % b));
const q = (n: bigint, d: bigint): Q => {
  if (d < 0n) [n, d] = [-n, -d];
  const g = gcd(n, d) || 1n;
  return [n / g, d / g];
};

function check(text: string): { numbers: number[]; value: Q | null } | null {
  const tokens = text.match(/\d+|[-+*/()]/g) ?? [];
  if (tokens.join('') !== text || text === '') return null;
  let i = 0;
  let zeroDiv = false;
  const numbers: number[] = [];
  const atom = (): Q | null => {
    if (tokens[i] === '(') {
      i++;
      const r = sum();
      if (r === null || r.ops === 0 || tokens[i] !== ')') return null;
      i++;
      return r.v;
    }
    if (!/^\d+$/.test(tokens[i] ?? '') || /^0\d/.test(tokens[i])) return null;
    numbers.push(Number(tokens[i]));
    return [BigInt(tokens[i++]), 1n];
  };
  const product = (): { v: Q; ops: number } | null => {
    let v = atom();
    let ops = 0;
    if (v === null) return null;
    while (tokens[i] === '*' || tokens[i] === '/') {
      const op = tokens[i++];
      const r = atom();
      if (r === null) return null;
      ops++;
      if (op === '/' && r[0] === 0n) zeroDiv = true;
      v = op === '*' ? q(v[0] * r[0], v[1] * r[1]) : r[0] === 0n ? [0n, 1n] : q(v[0] * r[1], v[1] * r[0]);
    }
    return { v, ops };
  };
  const sum = (): { v: Q; ops: number } | null => {
    const first = product();
    if (first === null) return null;
    let { v, ops } = first;
    while (tokens[i] === '+' || tokens[i] === '-') {
      const op = tokens[i++];
      const r = product();
      if (r === null) return null;
      ops += 1 + r.ops;
      v = op === '+' ? q(v[0] * r.v[1] + r.v[0] * v[1], v[1] * r.v[1]) : q(v[0] * r.v[1] - r.v[0] * v[1], v[1] * r.v[1]);
    }
    return { v, ops };
  };
  const r = sum();
  if (r === null || i !== tokens.length) return null;
  return { numbers, value: zeroDiv ? null : r.v };
}

/** Multiset inclusion (or equality when `exact`). */
function usesNumbers(used: number[], given: number[], exact: boolean): boolean {
  const left = [...given];
  for (const n of used) {
    const k = left.indexOf(n);
    if (k < 0) return false;
    left.splice(k, 1);
  }
  return !exact || left.length === 0;
}

const meta = (numbers: number[], target: number, useAll = true): CountdownMeta => ({ numbers, target, useAll });

beforeAll(async () => {
  await tf.setBackend('cpu');
});

describe('countdown problems', () => {
  it('is deterministic, keeps splits disjoint and gives solvable problems with a checked SFT target', () => {
    for (const options of [{}, { use_all: false, min_count: 2, max_count: 5, max_number: 50, max_target: 500 }]) {
      const a = createCountdown({ seed: 5, options });
      const b = createCountdown({ seed: 5, options });
      const train = Array.from({ length: 150 }, (_, i) => a.example('train', i));
      expect(Array.from({ length: 150 }, (_, i) => b.example('train', 149 - i)).reverse()).toEqual(train);
      const test = new Set(Array.from({ length: 60 }, (_, i) => a.example('test', i).prompt));
      const o = a.options as { min_target: number; max_target: number; use_all: boolean; max_number: number };
      for (const ex of train) {
        expect(test.has(ex.prompt)).toBe(false);
        const m = ex.meta as CountdownMeta;
        expect(parseCountdownPrompt(ex.prompt)).toEqual({ numbers: m.numbers, target: m.target });
        expect(m.target).toBeGreaterThanOrEqual(o.min_target);
        expect(m.target).toBeLessThanOrEqual(o.max_target);
        for (const n of m.numbers) expect(n).toBeLessThanOrEqual(o.max_number);
        const c = check(ex.target!);
        expect(c, ex.target).not.toBeNull();
        expect(usesNumbers(c!.numbers, m.numbers, o.use_all), `${ex.prompt}${ex.target}`).toBe(true);
        expect(c!.value).toEqual([BigInt(m.target), 1n]);
        expect(reachedReward(ex.target!, ex.meta)).toBe(1);
        expect(a.isCorrect(ex.prompt, ex.target!, ex.meta)).toBe(true);
        expect(ex.prompt.length).toBeLessThanOrEqual(a.maxPromptChars);
        expect(ex.target!.length + 1).toBeLessThanOrEqual(a.maxCompletionTokens);
        for (const ch of ex.prompt + ex.target) expect(COUNTDOWN_ALPHABET).toContain(ch);
        expect(JSON.parse(JSON.stringify(ex.meta))).toEqual(ex.meta);
      }
    }
  });

  it('solves by exhaustive search and reports unsolvable problems', () => {
    for (const [numbers, target] of [
      [[3, 7, 25, 4], 47],
      [[2, 3, 5], 1],
      [[6, 4], 24],
      [[9, 3, 2, 8], 30],
      [[5], 5],
    ] as [number[], number][]) {
      const text = solveCountdown(numbers, target, { useAll: true })!;
      const c = check(text)!;
      expect(c.value, text).toEqual([BigInt(target), 1n]);
      expect(usesNumbers(c.numbers, numbers, true), text).toBe(true);
    }
    expect(solveCountdown([1, 1], 100, { useAll: true })).toBeNull();
    // 3*7+25 = 46 leaves the 4 over, and no expression over all four numbers makes 46
    expect(solveCountdown([3, 7, 25, 4], 46, { useAll: true })).toBeNull();
    expect(check(solveCountdown([3, 7, 25, 4], 46, { useAll: false })!)!.value).toEqual([46n, 1n]);
    expect(solveCountdown([2, 3, 50], 5, { useAll: false })).toBe('2+3');
    expect(solveCountdown([2, 3, 50], 5, { useAll: true })).toBeNull(); // 2+3 leaves 50 over
    expect(solveCountdown([7, 7, 7], 7, { useAll: false })).toBe('7');
  });
});

describe('countdown grammar', () => {
  it('accepts exactly the well-formed expressions over the unused numbers', () => {
    const all = countdownMachine([2, 25, 4], { useAll: true });
    for (const ok of ['2*25-4', '(25-4)*2', '25/(2+4)', '4-(2-25)', '((2+25)*4)', '2+25+4']) expect(machineAccepts(all, ok), ok).toBe(true);
    for (const bad of ['2*25', '(2)+25+4', '((2+25))*4', '2+25+4+2', '2+2+4', '25-4*', '-2+25+4', '2+(25+4', '2+25)+4', '', '24+5+2', '02+25+4', '2 +25+4']) {
      expect(machineAccepts(all, bad), bad).toBe(false);
    }
    const some = countdownMachine([2, 25, 4], { useAll: false });
    for (const ok of ['2', '25', '2*25', '4-2']) expect(machineAccepts(some, ok), ok).toBe(true);
    for (const bad of ['2*2', '5', '(4)', '4-2-']) expect(machineAccepts(some, bad), bad).toBe(false);
    const twice = countdownMachine([3, 3], { useAll: true });
    expect(machineAccepts(twice, '3*3')).toBe(true);
    expect(machineAccepts(twice, '33')).toBe(false);
  });

  it('never lets a group open unless enough numbers remain to close it', () => {
    const m = countdownMachine([1, 2, 3], { useAll: false });
    const after = (text: string): Set<string> => new Set(m.allowed(textState(m, text)) as Set<string>);
    expect(after('')).toContain('(');
    expect(after('(')).toContain('(');
    expect(after('((')).not.toContain('('); // "((" needs 3 numbers: one left for the inner group, none to spare
    expect(after('((1')).toEqual(new Set(['+', '-', '*', '/']));
    expect(after('((1+2)')).toEqual(new Set(['+', '-', '*', '/']));
    expect(after('((1+2)+3')).toEqual(new Set([')']));
  });

  it('makes every sample of a random model a valid expression over the prompt numbers', async () => {
    const task = createCountdown({ seed: 2, options: { min_count: 2, max_count: 4 } });
    const tokenizer = CharTokenizer.fromAlphabet(COUNTDOWN_ALPHABET);
    const config = peakedModelConfig(tokenizer, 64);
    let total = 0;
    let reached = 0;
    const texts = new Set<string>();
    for (const seed of [1, 2, 3]) {
      const model = LlamaModel.create(config, seed);
      try {
        const problems = Array.from({ length: 24 }, (_, i) => task.example('train', seed * 100 + i));
        const samples = await sampleTask(model, tokenizer, task, problems.map((p) => p.prompt), { seed, temperature: 1.5 });
        problems.forEach((p, i) => {
          const { text, finishReason } = samples[i];
          const m = p.meta as CountdownMeta;
          expect(finishReason, `${p.prompt}${text}`).toBe('stop');
          const c = check(text);
          expect(c, `${p.prompt}${text}`).not.toBeNull();
          expect(usesNumbers(c!.numbers, m.numbers, true), `${p.prompt}${text}`).toBe(true);
          expect(evaluateCountdown(text, p.meta).valid).toBe(true);
          const hit = c!.value !== null && c!.value[0] === BigInt(m.target) && c!.value[1] === 1n;
          expect(reachedReward(text, p.meta)).toBe(hit ? 1 : 0);
          reached += hit ? 1 : 0;
          total++;
          texts.add(text);
        });
      } finally {
        model.dispose();
      }
    }
    expect(total).toBe(72);
    expect(texts.size).toBeGreaterThan(50); // real sampling, not one forced path
    expect(reached).toBeLessThan(total);
  });

  it('gives SFT targets that are words of the token-level grammar, and rejects other text', () => {
    const tokenizer = CharTokenizer.fromAlphabet(COUNTDOWN_ALPHABET);
    for (const options of [{}, { use_all: false, min_count: 2, max_count: 5, max_number: 50, max_target: 500 }]) {
      const task = createCountdown({ seed: 8, options });
      expect(() => checkSftTargets(task, tokenizer, 200)).not.toThrow();
    }
    const task = createCountdown({ seed: 8 });
    const ex = task.example('train', 0);
    const m = ex.meta as CountdownMeta;
    expect(grammarViolation(task, tokenizer, ex.prompt, completionIds(tokenizer, ex.target!))).toBeNull();
    // a prefix without EOS is fine; EOS before every number is used is not
    expect(grammarViolation(task, tokenizer, ex.prompt, completionIds(tokenizer, String(m.numbers[0]), { eos: false }))).toBeNull();
    expect(grammarViolation(task, tokenizer, ex.prompt, completionIds(tokenizer, String(m.numbers[0])))).toMatch(/EOS/);
    expect(grammarViolation(task, tokenizer, ex.prompt, completionIds(tokenizer, '(('))).toMatch(/not allowed/);
    // a task whose targets break its grammar is caught before SFT teaches them
    const liar: Task = { ...task, example: (split, i) => ({ ...task.example(split, i), target: '1+' }) };
    expect(() => checkSftTargets(liar, tokenizer, 5)).toThrow(expect.objectContaining({ code: 'GRPO_ERR_GRAMMAR_TARGET' }));
  });

  it('is registered as a built-in task', () => {
    expect(taskNames()).toContain('countdown');
    expect(createTask('countdown', { seed: 3 }).example('train', 4)).toEqual(createCountdown({ seed: 3 }).example('train', 4));
  });

  it('rejects a batch whose prompts are not Countdown prompts', () => {
    const task = createCountdown({ seed: 1 });
    const hook = task.grammar!(CharTokenizer.fromAlphabet(COUNTDOWN_ALPHABET), ['1+2=']);
    expect(() => hook([[]], [0])).toThrow(expect.objectContaining({ code: 'GRPO_ERR_GRAMMAR_INPUT' }));
  });
});

function textState<S>(m: { start(): S; step(s: S, c: string): S }, text: string): S {
  let s = m.start();
  for (const c of text) s = m.step(s, c);
  return s;
}

describe('countdown rewards', () => {
  it('scores reached, shaped distance and format', () => {
    const m = meta([3, 7, 25, 4], 46);
    expect(reachedReward('(25-4)*3-7-...', m)).toBe(0);
    expect(reachedReward('25+7*3', meta([25, 7, 3], 46))).toBe(1);
    expect(reachedReward('25+3*7', meta([25, 7, 3], 46))).toBe(1);
    expect(reachedReward('25+3*7', meta([25, 7, 3, 4], 46))).toBe(0); // 4 unused under use_all
    expect(reachedReward('25+3*7', meta([25, 7, 3, 4], 46, false))).toBe(1);
    expect(distanceReward('25+7', meta([25, 7], 40))).toBeCloseTo(1 - 8 / 40, 12);
    expect(distanceReward('7/2', meta([7, 2], 4))).toBeCloseTo(1 - 0.5 / 4, 12);
    expect(distanceReward('25*7', meta([25, 7], 40))).toBe(0); // off by more than the target
    expect(distanceReward('7/(2-2)', meta([7, 2, 2], 4))).toBe(0); // no value
    expect(reachedReward('7/(2-2)', meta([7, 2, 2], 4))).toBe(0);
    expect(distanceReward('25+8', meta([25, 7], 33))).toBe(0); // 8 is not given
    const task = createCountdown({ seed: 1 });
    const byName = Object.fromEntries(task.rewards.map((r) => [r.name, r]));
    expect(Object.keys(byName)).toEqual(['reached', 'distance', 'format']);
    expect(byName.format.fn('', '25+7', meta([25, 7], 32))).toBe(1);
    expect(byName.format.fn('', '25+', meta([25, 7], 32))).toBe(0);
    expect(() => reachedReward('1', { numbers: [1], target: 0, useAll: true })).toThrow(expect.objectContaining({ code: 'GRPO_ERR_TASK_META' }));
    expect(() => reachedReward('1', null)).toThrow(expect.objectContaining({ code: 'GRPO_ERR_TASK_META' }));
  });

  it('validates options', () => {
    expect(countdownTask.name).toBe('countdown');
    const bad: Record<string, unknown>[] = [{ max_count: 6 }, { min_count: 4, max_count: 3 }, { max_target: 0 }, { min_number: 30, max_number: 20 }, { use_all: 'yes' }, { numbers: 3 }];
    for (const options of bad) {
      expect(() => createCountdown({ seed: 1, options }), JSON.stringify(options)).toThrow(expect.objectContaining({ code: 'GRPO_ERR_TASK_OPTIONS' }));
    }
    expect(() => createCountdown({ seed: 1.5 })).toThrow(expect.objectContaining({ code: 'GRPO_ERR_TASK_OPTIONS' }));
    const t: Task = createCountdown({ seed: 1, options: { max_count: 5, max_number: 100, max_target: 1000 } });
    expect(t.maxCompletionTokens).toBe(5 * 3 + 3 * 4 + 1);
    expect(Object.isFrozen(t.options)).toBe(true);
  });

  it('keeps the tensor count flat across grammar-constrained sampling calls', async () => {
    const task = createCountdown({ seed: 3 });
    const tokenizer = CharTokenizer.fromAlphabet(COUNTDOWN_ALPHABET);
    const model = LlamaModel.create(presetConfig('tiny', tokenizer, { hidden_size: 32, intermediate_size: 48 }), 1);
    try {
      const prompts = [task.example('train', 0).prompt, task.example('train', 1).prompt];
      const run = () => sampleTask(model, tokenizer, task, prompts, { seed: 1, temperature: 1 });
      await run();
      const before = tf.memory().numTensors;
      await run();
      await run();
      expect(tf.memory().numTensors).toBe(before);
    } finally {
      model.dispose();
    }
  });
});
