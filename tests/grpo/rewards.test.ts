import { describe, expect, it } from 'vitest';
import { combineRewards } from '../../src/grpo/index.js';
import { expectClose, expectCode } from './helpers.js';

describe('combineRewards', () => {
  it('takes totals as arrays or typed arrays, NaN/null/undefined = unscored', () => {
    const forms = [[1, NaN, 3], new Float32Array([1, NaN, 3]), new Float64Array([1, NaN, 3]), [1, null, 3], [1, undefined, 3]];
    for (const totals of forms) {
      const r = combineRewards(totals);
      expectClose(r.totals, [1, NaN, 3], 0);
      expect(Array.from(r.scored)).toEqual([1, 0, 1]);
      expect(r.functionMeans).toEqual({});
    }
  });

  it('sums weighted scores over the functions that scored; reports each function mean unweighted', () => {
    const r = combineRewards([[1, null, 0, NaN], [0.5, 0.25, null, undefined]], [2, -4]);
    expectClose(r.totals, [0, -1, 0, NaN], 1e-12);
    expect(Array.from(r.scored)).toEqual([1, 1, 1, 0]);
    expect(r.functionMeans).toEqual({ '0': 0.5, '1': 0.375 });
    const named = combineRewards({ ok: [1, 0], len: [null, null] });
    expect(named.functionMeans.len).toBeNaN();
    expectClose(named.totals, [1, 0], 0);
  });

  it('rejects non-numbers, infinities, ragged functions and stray weights', () => {
    expectCode(() => combineRewards([1, -Infinity]), 'GRPO_ERR_BAD_REWARD', /reward 1 of function total is -Infinity/);
    expectCode(() => combineRewards([{}] as never), 'GRPO_ERR_BAD_REWARD', /object/);
    expectCode(() => combineRewards(5 as never), 'GRPO_ERR_BAD_REWARD', /must be an array/);
    expectCode(() => combineRewards({ a: 3 } as never), 'GRPO_ERR_BAD_REWARD', /rewards of a must be an array/);
    expectCode(() => combineRewards({ a: [1], b: [1, 2] }), 'GRPO_ERR_BAD_SHAPE', /function b has 2 values/);
    expectCode(() => combineRewards({ a: [1] }, [1]), 'GRPO_ERR_BAD_OPTION', /record of name/);
    expectCode(() => combineRewards({}), 'GRPO_ERR_BAD_SHAPE', /no rewards/);
  });
});
