import { beforeAll, describe, expect, it } from 'vitest';
import { tf } from '../../src/engine/tf.js';
import type { Tensor2D } from '../../src/engine/tf.js';
import { filterZeroStdGroups, isTruncated, maskTruncated, overlongPenalty } from '../../src/grpo/index.js';
import { expectClose, expectCode, loadFixture } from './helpers.js';

interface ShapingFixture {
  overlong: { maxLen: number; cacheLen: number; lengths: number[]; penalty: number[] }[];
  filter: {
    name: string;
    inputs: { rewards: (number | null)[]; groupSize: number; tolerance: number };
    expected: { keptGroups: number[]; dropped: number };
  }[];
}

const golden = loadFixture<ShapingFixture>('shaping.json');

beforeAll(async () => {
  await tf.setBackend('cpu');
});

describe('overlongPenalty', () => {
  for (const c of golden.overlong) {
    it(`matches the golden ramp for maxLen ${c.maxLen}, cacheLen ${c.cacheLen}`, () => {
      expectClose(
        c.lengths.map((n) => overlongPenalty(n, c.maxLen, c.cacheLen)),
        c.penalty,
        1e-12,
      );
    });
  }

  it('is 0 up to maxLen - cacheLen, -1 at maxLen and beyond', () => {
    expect(overlongPenalty(16, 20, 4)).toBe(0);
    expect(overlongPenalty(18, 20, 4)).toBe(-0.5);
    expect(overlongPenalty(20, 20, 4)).toBe(-1);
    expect(overlongPenalty(25, 20, 4)).toBe(-1);
  });

  it('rejects bad lengths and windows', () => {
    expectCode(() => overlongPenalty(-1, 20, 4), 'GRPO_ERR_BAD_SHAPE', /length/);
    expectCode(() => overlongPenalty(3, 0, 0), 'GRPO_ERR_BAD_OPTION', /maxLen/);
    expectCode(() => overlongPenalty(3, 20, 21), 'GRPO_ERR_BAD_OPTION', /cacheLen 21 exceeds maxLen 20/);
    expectCode(() => overlongPenalty(3, 20, 2.5), 'GRPO_ERR_BAD_OPTION', /cacheLen/);
  });
});

describe('maskTruncated and isTruncated', () => {
  it('zeroes the rows of completions cut at the limit, from flags or finish reasons', () => {
    const mask = tf.tensor2d([
      [1, 1, 1],
      [1, 1, 0],
      [1, 1, 1],
    ]) as Tensor2D;
    const before = tf.memory().numTensors;
    const a = maskTruncated(mask, [false, true, 0]);
    const b = maskTruncated(mask, ['length', 'stop', 'grammar']);
    expect(a.arraySync()).toEqual([
      [1, 1, 1],
      [0, 0, 0],
      [1, 1, 1],
    ]);
    expect(b.arraySync()).toEqual([
      [0, 0, 0],
      [1, 1, 0],
      [1, 1, 1],
    ]);
    expect(mask.arraySync()[1]).toEqual([1, 1, 0]); // input untouched
    tf.dispose([a, b]);
    expect(tf.memory().numTensors).toBe(before);
    expectCode(() => maskTruncated(mask, [true]), 'GRPO_ERR_BAD_SHAPE', /one truncation flag per row/);
    expectCode(() => maskTruncated(mask, ['stop', 'eos', 'stop'] as never), 'GRPO_ERR_BAD_OPTION', /"eos"/);
    mask.dispose();
  });

  it('a completion is truncated when it has maxLen tokens and does not end in a stop token', () => {
    expect(isTruncated([5, 6, 7, 8], 4, [2])).toBe(true);
    expect(isTruncated([5, 6, 7, 2], 4, [2])).toBe(false);
    expect(isTruncated([5, 6], 4, [2])).toBe(false);
    expectCode(() => isTruncated([1], 0, [2]), 'GRPO_ERR_BAD_OPTION', /maxLen/);
  });
});

describe('filterZeroStdGroups', () => {
  for (const c of golden.filter) {
    it(`matches the golden case ${c.name}`, () => {
      const r = filterZeroStdGroups(c.inputs.rewards, c.inputs.groupSize, { tolerance: c.inputs.tolerance });
      expect(r.keptGroups).toEqual(c.expected.keptGroups);
      expect(r.dropped).toBe(c.expected.dropped);
      expect(r.keptIndices).toEqual(
        c.expected.keptGroups.flatMap((g) => Array.from({ length: c.inputs.groupSize }, (_, k) => g * c.inputs.groupSize + k)),
      );
    });
  }

  it('uses weighted per-function totals and a default tolerance of 1e-8', () => {
    const r = filterZeroStdGroups({ a: [1, 0, 1, 1], b: [0, 1, 0, 0] }, 2, { weights: { b: 1 } });
    expect(r.keptGroups).toEqual([]); // 1+0 == 0+1 and 1+0 == 1+0
    expect(r.dropped).toBe(2);
    expect(filterZeroStdGroups([0.1 + 0.2, 0.3, 0, 1], 2).keptGroups).toEqual([1]);
  });

  it('rejects bad input', () => {
    expectCode(() => filterZeroStdGroups([1, 2, 3], 2), 'GRPO_ERR_BAD_SHAPE', /do not split/);
    expectCode(() => filterZeroStdGroups([1, 2], 2, { tolerance: -1 }), 'GRPO_ERR_BAD_OPTION', /tolerance/);
    expectCode(() => filterZeroStdGroups([1, 2], 2, { tol: 1 } as never), 'GRPO_ERR_BAD_OPTION', /unknown option/);
  });
});
