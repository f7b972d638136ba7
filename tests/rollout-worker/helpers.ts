/** Test helpers shared by the reward pool and remote reward tests. */
import { expect } from 'vitest';
import { isGrpoError, type GrpoError } from '../../src/shared/errors.js';
import { RewardPool, type RewardPoolOptions } from '../../src/rollout-worker/reward-pool.js';

/** The GrpoError a promise rejects with (fails the test if it resolves or rejects with anything else). */
export async function rejection(p: Promise<unknown>): Promise<GrpoError> {
  const err = await p.then(
    () => null,
    (e: unknown) => e,
  );
  expect(isGrpoError(err), `expected a GrpoError, got ${String(err)}`).toBe(true);
  return err as GrpoError;
}

export interface LogLine {
  level: string;
  event: string;
  [field: string]: unknown;
}

const open: RewardPool[] = [];

/** A RewardPool whose log lines are collected in `logs`; closePools() closes it. */
export function loggedPool(options: RewardPoolOptions): { pool: RewardPool; logs: LogLine[] } {
  const logs: LogLine[] = [];
  const pool = new RewardPool({ log: (level, event, fields) => logs.push({ level, event, ...fields }), ...options });
  open.push(pool);
  return { pool, logs };
}

/** Closes every pool loggedPool made; call it in afterEach. */
export async function closePools(): Promise<void> {
  await Promise.all(open.splice(0).map((p) => p.close()));
}

/** Misbehaving rewards picked by the completion text: see the file. */
export const CHAOS = 'tests/fixtures/rewards/chaos-task.js';

/** A pool on the chaos task: one thread, 300 ms timeout, 100 ms grace, one retry. */
export function chaosPool(opts: Partial<RewardPoolOptions> = {}): { pool: RewardPool; logs: LogLine[] } {
  return loggedPool({ task: CHAOS, taskSeed: 1, threads: 1, timeoutMs: 300, graceMs: 100, retries: 1, ...opts });
}
