import { describe, expect, it } from 'vitest';
import { drawExample, exampleRng, hashText, isTestPrompt } from '../../src/tasks/split.js';

const opts = { seed: 1, testFraction: 0.25, maxAttempts: 100, taskName: 'toy' };

describe('train/test split', () => {
  it('hash partition is stable, seed-dependent, and roughly matches the test fraction', () => {
    expect(hashText(1, 'abc')).toBe(hashText(1, 'abc'));
    expect(hashText(1, 'abc')).not.toBe(hashText(2, 'abc'));
    let inTest = 0;
    for (let i = 0; i < 10_000; i++) if (isTestPrompt(9, `${i}+${i}=`, 0.1)) inTest++;
    expect(inTest).toBeGreaterThan(850);
    expect(inTest).toBeLessThan(1150);
  });

  it('gives every (split, index, attempt) its own reproducible stream', () => {
    const a = exampleRng(1, 'train', 5, 0).nextU32();
    expect(exampleRng(1, 'train', 5, 0).nextU32()).toBe(a);
    const others = [exampleRng(1, 'test', 5, 0), exampleRng(1, 'train', 6, 0), exampleRng(1, 'train', 5, 1), exampleRng(2, 'train', 5, 0)];
    for (const r of others) expect(r.nextU32()).not.toBe(a);
    expect(exampleRng(1, 'train', 2 ** 32 + 5, 0).nextU32()).not.toBe(a); // high index bits count
  });

  it('draws only prompts of the requested split, retrying rejected draws', () => {
    const gen = (rng: { int(lo: number, hi: number): number }) => ({ prompt: `${rng.int(0, 999)}=`, meta: null });
    for (let i = 0; i < 50; i++) {
      expect(isTestPrompt(1, drawExample('test', i, opts, gen).prompt, 0.25)).toBe(true);
      expect(isTestPrompt(1, drawExample('train', i, opts, gen).prompt, 0.25)).toBe(false);
    }
    let calls = 0;
    const rejectTwice = (rng: { int(lo: number, hi: number): number }) => (++calls <= 2 ? null : gen(rng));
    expect(drawExample('train', 0, opts, rejectTwice).prompt).toMatch(/=$/);
    expect(calls).toBeGreaterThanOrEqual(3);
  });

  it('fails with coded errors on bad splits, bad indices and exhausted draws', () => {
    const gen = () => ({ prompt: 'x', meta: null });
    expect(() => drawExample('dev' as 'train', 0, opts, gen)).toThrow(expect.objectContaining({ code: 'GRPO_ERR_TASK_SPLIT' }));
    expect(() => drawExample('train', -1, opts, gen)).toThrow(expect.objectContaining({ code: 'GRPO_ERR_TASK_INDEX' }));
    expect(() => drawExample('train', 0.5, opts, gen)).toThrow(expect.objectContaining({ code: 'GRPO_ERR_TASK_INDEX' }));
    const split = isTestPrompt(1, 'x', 0.25) ? 'train' : 'test'; // the split "x" does not belong to
    expect(() => drawExample(split, 0, opts, gen)).toThrow(expect.objectContaining({ code: 'GRPO_ERR_TASK_EXHAUSTED' }));
  });
});
