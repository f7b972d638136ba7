import { describe, expect, it } from 'vitest';
import { learningRate, validateSchedule, type LrSchedule } from '../../src/optim/schedule.js';

const base: LrSchedule = { lr: 1e-3, schedule: 'cosine', warmupSteps: 10, totalSteps: 110, minLrRatio: 0.1 };

describe('learning-rate schedule', () => {
  it('warms up linearly from lr / warmup to lr', () => {
    expect(learningRate(base, 0)).toBeCloseTo(1e-4, 12);
    expect(learningRate(base, 4)).toBeCloseTo(5e-4, 12);
    expect(learningRate(base, 9)).toBeCloseTo(1e-3, 12);
  });

  it('decays by a cosine to lr * minLrRatio and stays there', () => {
    expect(learningRate(base, 10)).toBeCloseTo(1e-3, 12); // p = 0
    expect(learningRate(base, 60)).toBeCloseTo(1e-3 * (0.1 + 0.9 * 0.5), 12); // p = 1/2: halfway
    expect(learningRate(base, 35)).toBeCloseTo(1e-3 * (0.1 + (0.9 * (1 + Math.cos(Math.PI / 4))) / 2), 12);
    expect(learningRate(base, 110)).toBeCloseTo(1e-4, 12);
    expect(learningRate(base, 500)).toBeCloseTo(1e-4, 12);
    for (let s = 11; s < 110; s++) expect(learningRate(base, s)).toBeLessThan(learningRate(base, s - 1));
  });

  it('constant after warm-up; no warm-up starts at lr', () => {
    const c: LrSchedule = { ...base, schedule: 'constant', warmupSteps: 0 };
    expect(learningRate(c, 0)).toBe(1e-3);
    expect(learningRate(c, 1000)).toBe(1e-3);
    expect(learningRate({ ...base, warmupSteps: 0 }, 0)).toBe(1e-3);
  });

  it('rejects bad settings and steps with coded errors', () => {
    const code = expect.objectContaining({ code: 'GRPO_ERR_LR_SCHEDULE' });
    expect(() => validateSchedule({ ...base, minLrRatio: 2 })).toThrow(code);
    expect(() => validateSchedule({ ...base, totalSteps: 0 })).toThrow(code);
    expect(() => validateSchedule({ ...base, warmupSteps: 1.5 })).toThrow(code);
    expect(() => validateSchedule({ ...base, lr: -1 })).toThrow(code);
    expect(() => learningRate(base, -1)).toThrow(code);
    expect(() => validateSchedule(base)).not.toThrow();
  });
});
