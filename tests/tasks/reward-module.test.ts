/**
 * Reward modules (config reward_module) in every export form, TypeScript modules, and the errors
 * a malformed module gets; runRewardDefaults, the learner's list of a run's rewards.
 */
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTask, groupReward, loadRewardModule, loadTask, resolveRewards, runRewardDefaults } from '../../src/tasks/index.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'grpo-reward-module-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function module(name: string, source: string): Promise<string> {
  const file = join(dir, name);
  await writeFile(file, source);
  return file;
}

const summary = (rs: { name: string; weight: number; group?: unknown }[]) => rs.map((r) => [r.name, r.weight, r.group ? 'group' : 'completion']);

describe('loadRewardModule', () => {
  it('takes a default array in its order, with names, weights and scopes', async () => {
    const file = await module(
      'array.mjs',
      `export const helper = () => 0;
       export default [
         { name: 'short', fn: (p, c) => (c.length < 5 ? 1 : 0) },
         { name: 'spread', weight: 0.5, scope: 'group', fn: (p, cs) => cs.map((c, i) => i) },
       ];\n`,
    );
    const rewards = await loadRewardModule(file);
    expect(summary(rewards)).toEqual([
      ['short', 1, 'completion'],
      ['spread', 0.5, 'group'],
    ]);
    expect(await rewards[0].fn('p', 'abc', null)).toBe(1);
    expect(await rewards[1].group!('p', ['a', 'b', 'c'], null)).toEqual([0, 1, 2]);
    expect(await rewards[1].fn('p', 'a', null)).toBe(0); // a completion alone is a group of one
  });

  it('takes named functions and { fn } objects when there is no array, alphabetically', async () => {
    const file = await module(
      'named.mjs',
      `export function zeta(p, c) { return c.length; }
       export const alpha = { weight: 2, fn: async (p, c) => c.length * 2 };
       export const notAReward = 42;\n`,
    );
    const rewards = await loadRewardModule(file);
    expect(summary(rewards)).toEqual([
      ['alpha', 2, 'completion'],
      ['zeta', 1, 'completion'],
    ]);
    expect(await rewards[0].fn('p', 'abc', null)).toBe(6);
  });

  it('strips the types of a TypeScript module and leaves no temporary file behind', async () => {
    const file = await module(
      'typed.ts',
      `interface Meta { answer: string }
       export function exact(_p: string, c: string, meta: unknown): number {
         return c === (meta as Meta).answer ? 1 : 0;
       }\n`,
    );
    const [exact] = await loadRewardModule(file);
    expect(exact.name).toBe('exact');
    expect(await exact.fn('p', '4', { answer: '4' })).toBe(1);
    expect((await readdir(dir)).filter((f) => f.includes('.grpo.'))).toEqual([]);
  });

  it('loads a TypeScript task module the same way', async () => {
    const file = await module(
      'task.ts',
      `export const task = { name: 'typed', description: 'd', create: (spec: { seed: number }) => ({ name: 'typed', seed: spec.seed,
         options: {}, alphabet: 'ab', maxCompletionTokens: 2, maxPromptChars: 1, rewards: [],
         example: (split: string, i: number) => ({ prompt: 'a', target: 'b', meta: i }), isCorrect: () => true }) };\n`,
    );
    expect((await loadTask(file, { seed: 5 })).seed).toBe(5);
  });

  it('rejects malformed modules with GRPO_ERR_REWARD_MODULE naming the problem', async () => {
    const cases: [string, string, RegExp][] = [
      ['empty.mjs', 'export const x = 1;\n', /exports no reward/],
      ['noname.mjs', 'export default [{ fn: () => 1 }];\n', /reward name undefined|rewards\[0\]/],
      ['badname.mjs', 'export default [{ name: "has space", fn: () => 1 }];\n', /has space/],
      ['weight.mjs', 'export const r = { weight: "1", fn: () => 1 };\n', /weight 1 must be a finite number/],
      ['scope.mjs', 'export const r = { scope: "batch", fn: () => 1 };\n', /scope "batch"/],
      ['twice.mjs', 'export default [{ name: "a", fn: () => 1 }, { name: "a", fn: () => 2 }];\n', /two rewards are named a/],
      ['syntax.ts', 'export const = ;\n', /does not parse/],
    ];
    for (const [name, source, message] of cases) {
      const file = await module(name, source);
      await expect(loadRewardModule(file), name).rejects.toMatchObject({ code: 'GRPO_ERR_REWARD_MODULE', message: expect.stringMatching(message) });
    }
    await expect(loadRewardModule(join(dir, 'missing.mjs'))).rejects.toMatchObject({ code: 'GRPO_ERR_REWARD_MODULE' });
  });
});

describe('module rewards beside the task', () => {
  const extra = [{ name: 'short', weight: 0, fn: () => 1 }, groupReward({ name: 'spread', weight: 1, fn: (_p, cs) => cs.map(() => 1) })];

  it('resolveRewards appends them, applies reward_weights to them, and refuses a name the task has', () => {
    const task = createTask('arithmetic', { seed: 1 });
    expect(resolveRewards(task, { short: 3 }, extra).map((r) => [r.name, r.weight])).toEqual([
      ['correct', 1],
      ['short', 3],
      ['spread', 1],
    ]);
    expect(() => resolveRewards(task, {}, [{ name: 'format', weight: 1, fn: () => 1 }])).toThrow(
      expect.objectContaining({ code: 'GRPO_ERR_REWARD_MODULE' }),
    );
  });

  it('runRewardDefaults lists task, module and remote rewards with default weights', () => {
    const task = createTask('arithmetic', { seed: 1 });
    expect(runRewardDefaults(task, extra, { name: 'judge', weight: 0.5 })).toEqual([
      { name: 'correct', weight: 1 },
      { name: 'format', weight: 0 },
      { name: 'partial', weight: 0 },
      { name: 'short', weight: 0 },
      { name: 'spread', weight: 1 },
      { name: 'judge', weight: 0.5 },
    ]);
    expect(() => runRewardDefaults(task, extra, { name: 'spread', weight: 1 })).toThrow(
      expect.objectContaining({ code: 'GRPO_ERR_REMOTE_REWARD_CONFIG' }),
    );
  });
});
