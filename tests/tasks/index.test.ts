import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { createTask, loadTask, resolveRewards, taskNames } from '../../src/tasks/index.js';

describe('task registry', () => {
  it('creates built-in tasks by name and rejects unknown names', () => {
    expect(taskNames()).toContain('arithmetic');
    expect(createTask('arithmetic', { seed: 1 }).name).toBe('arithmetic');
    expect(() => createTask('arithmetik', { seed: 1 })).toThrow(expect.objectContaining({ code: 'GRPO_ERR_UNKNOWN_TASK' }));
  });

  it('loads a user task from a module path', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'grpo-task-'));
    try {
      const file = join(dir, 'echo.mjs');
      await writeFile(
        file,
        `export default { name: 'echo', description: 'repeat', create: (spec) => ({ name: 'echo', seed: spec.seed, options: {},
          alphabet: 'ab', maxCompletionTokens: 3, maxPromptChars: 2, rewards: [],
          example: (split, i) => ({ prompt: split === 'train' ? 'a' : 'b', target: 'a', meta: i }),
          isCorrect: (p, c) => p === c }) };\n`,
      );
      const task = await loadTask(file, { seed: 4 });
      expect(task.name).toBe('echo');
      expect(task.seed).toBe(4);
      expect(task.example('test', 2)).toEqual({ prompt: 'b', target: 'a', meta: 2 });
      await writeFile(join(dir, 'none.mjs'), 'export const x = 1;\n');
      await expect(loadTask(join(dir, 'none.mjs'), { seed: 1 })).rejects.toMatchObject({ code: 'GRPO_ERR_UNKNOWN_TASK' });
      await expect(loadTask(join(dir, 'missing.mjs'), { seed: 1 })).rejects.toMatchObject({ code: 'GRPO_ERR_UNKNOWN_TASK' });
      expect((await loadTask('arithmetic', { seed: 1 })).name).toBe('arithmetic');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('applies reward weights by name, drops zero weights, rejects unknown names', () => {
    const task = createTask('arithmetic', { seed: 1 });
    expect(resolveRewards(task).map((r) => [r.name, r.weight])).toEqual([['correct', 1]]);
    expect(resolveRewards(task, { format: 0.1, correct: 2 }).map((r) => [r.name, r.weight])).toEqual([
      ['correct', 2],
      ['format', 0.1],
    ]);
    expect(() => resolveRewards(task, { corect: 1 })).toThrow(expect.objectContaining({ code: 'GRPO_ERR_UNKNOWN_REWARD' }));
    expect(task.rewards[0].weight).toBe(1); // the task's own list is untouched
  });
});
