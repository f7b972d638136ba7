import { describe, expect, it } from 'vitest';
import * as pkg from '../src/index.js';

describe('package entry', () => {
  it('exports the GRPO objective and the model API by name', () => {
    for (const name of [
      'groupAdvantages',
      'grpoLoss',
      'readLossMetrics',
      'maskTruncated',
      'filterZeroStdGroups',
      'overlongPenalty',
      'LlamaModel',
      'sample',
      'saveCheckpoint',
      'loadCheckpoint',
      'parseConfig',
      'GrpoError',
    ]) {
      expect(typeof (pkg as Record<string, unknown>)[name], name).not.toBe('undefined');
    }
  });

  it('computes group advantages through the entry point', () => {
    const { advantages } = pkg.groupAdvantages([1, 0, 1, 0], 4);
    expect(Array.from(advantages).map((a) => Number(a.toFixed(3)))).toEqual([0.866, -0.866, 0.866, -0.866]);
  });
});
