/**
 * Learning-rate schedules by optimizer step (0-based: the rate used for the update that turns
 * step s into step s + 1).
 *
 *   warmup   s < warmupSteps:   lr * (s + 1) / warmupSteps   (the first update is not wasted at 0)
 *   constant afterwards:        lr
 *   cosine   afterwards:        lr * (m + (1 - m) * (1 + cos(pi * p)) / 2), m = minLrRatio,
 *                               p = (s - warmupSteps) / (totalSteps - warmupSteps), clamped to
 *                               [0, 1], so the last step ends near lr * m and steps past
 *                               totalSteps (a run extended on resume) stay at lr * m
 */
import { GrpoError } from '../shared/errors.js';

export interface LrSchedule {
  lr: number; // peak learning rate
  schedule: 'cosine' | 'constant';
  warmupSteps: number;
  totalSteps: number; // length of the run, for the cosine
  minLrRatio: number; // cosine floor as a fraction of lr, in [0, 1]
}

export function validateSchedule(s: LrSchedule): void {
  const bad = (msg: string): never => {
    throw new GrpoError('GRPO_ERR_LR_SCHEDULE', msg);
  };
  if (!(Number.isFinite(s.lr) && s.lr >= 0)) bad(`lr is ${s.lr}; it must be finite and >= 0`);
  if (s.schedule !== 'cosine' && s.schedule !== 'constant') bad(`schedule is ${JSON.stringify(s.schedule)}; use cosine or constant`);
  if (!Number.isInteger(s.warmupSteps) || s.warmupSteps < 0) bad(`warmup steps is ${s.warmupSteps}; it must be an integer >= 0`);
  if (!Number.isInteger(s.totalSteps) || s.totalSteps < 1) bad(`total steps is ${s.totalSteps}; it must be an integer >= 1`);
  if (!(s.minLrRatio >= 0 && s.minLrRatio <= 1)) bad(`min lr ratio is ${s.minLrRatio}; it must be in [0, 1]`);
}

/** The learning rate for the update at `step` (0-based). */
export function learningRate(s: LrSchedule, step: number): number {
  if (!Number.isInteger(step) || step < 0) throw new GrpoError('GRPO_ERR_LR_SCHEDULE', `step is ${step}; it must be an integer >= 0`);
  if (step < s.warmupSteps) return (s.lr * (step + 1)) / s.warmupSteps;
  if (s.schedule === 'constant') return s.lr;
  const span = Math.max(1, s.totalSteps - s.warmupSteps);
  const p = Math.min(1, (step - s.warmupSteps) / span);
  return s.lr * (s.minLrRatio + ((1 - s.minLrRatio) * (1 + Math.cos(Math.PI * p))) / 2);
}
