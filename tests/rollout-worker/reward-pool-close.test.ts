/**
 * A RewardPool closed while its threads are still starting. piscina loads its task file with
 * require(); on Node 20.19+ that loads an ES module synchronously, and a thread terminated inside
 * that load aborted the whole process (a V8 fatal error, no exception to catch). The pool now
 * hands piscina a CommonJS entry (src/rollout-worker/reward-thread-entry.cts). A regression kills
 * the test process, which vitest reports as a failed run.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { RewardPool, rewardThreadFile } from '../../src/rollout-worker/reward-pool.js';
import { closePools, loggedPool } from './helpers.js';

afterEach(closePools);

describe('RewardPool: close during start', () => {
  it('hands piscina a CommonJS file', () => {
    expect(rewardThreadFile()).toMatch(/\.cjs$/);
  });

  it('closes at any moment of its threads’ start without taking the process down, and a new pool then scores', async () => {
    // threads take about 0.1-0.4 s to load the task; the closes sweep that window in 15 ms steps
    for (let i = 0; i < 30; i++) {
      const pool = new RewardPool({ task: 'arithmetic', taskSeed: 1, threads: 2, log: () => undefined });
      await sleep(i * 15);
      await pool.close();
    }
    const { pool } = loggedPool({ task: 'arithmetic', taskSeed: 1, threads: 2 });
    const out = await pool.score([{ prompt: '1+1=', completion: '2', meta: { answer: '2' } }]);
    expect(out).toEqual({ rewards: [{ correct: 1 }], errors: [] });
  }, 60_000);
});
