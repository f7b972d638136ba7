import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { RunState } from '../../src/rollout-worker/run-state.js';
import { checkSpecTrust, listOf, workerTrust } from '../../src/rollout-worker/trust.js';
import { isGrpoError } from '../../src/shared/errors.js';
import type { RunSpec } from '../../src/shared/protocol.js';
import { Kind, silentLogger } from '../../src/shared/protocol.js';
import { SAMPLES } from '../shared/protocol-samples.js';

function spec(task: string, rewards: Partial<RunSpec['rewards']> = {}): RunSpec {
  const sample = SAMPLES[Kind.RunSpec].spec;
  return { ...sample, runId: 'r1', task: { ...sample.task, name: task }, rewards: { ...sample.rewards, module: null, remote: null, ...rewards } };
}

const remote = (url: string): Partial<RunSpec['rewards']> => ({
  remote: { url, name: 'judge', weight: 1, timeoutMs: 1_000, retries: 0, backoffMs: 0, maxInFlight: 1 },
});

const notAllowed = (f: () => void): string => {
  try {
    f();
  } catch (err) {
    if (isGrpoError(err, 'GRPO_ERR_NOT_ALLOWED')) return err.message;
    throw err;
  }
  throw new Error('no GRPO_ERR_NOT_ALLOWED');
};

describe('worker trust: nothing imported or called only because a RunSpec says so', () => {
  const dir = mkdtempSync(join(tmpdir(), 'grpo-trust-'));
  const allowedDir = join(dir, 'tasks');
  const trust = workerTrust([allowedDir], ['https://judge.internal/score'], {});

  it('built-in tasks are always fine; module paths only under allowed_modules', () => {
    expect(() => checkSpecTrust(spec('arithmetic'), trust)).not.toThrow();
    expect(() => checkSpecTrust(spec(join(allowedDir, 'mine.mjs')), trust)).not.toThrow();
    expect(notAllowed(() => checkSpecTrust(spec('/tmp/evil.mjs'), trust))).toMatch(/task module "\/tmp\/evil\.mjs".*--allowed-modules/);
    expect(notAllowed(() => checkSpecTrust(spec(join(allowedDir, '..', 'evil.mjs')), trust))).toMatch(/not under its allowed_modules/);
    expect(notAllowed(() => checkSpecTrust(spec('arithmetic', { module: './r.mjs' }), trust))).toMatch(/reward module/);
  });

  it('a remote reward URL only under allowed_reward_urls or the worker\'s GRPO_REMOTE_REWARD_URL', () => {
    expect(() => checkSpecTrust(spec('arithmetic', remote('https://judge.internal/score')), trust)).not.toThrow();
    expect(() => checkSpecTrust(spec('arithmetic', remote('https://judge.internal/score/v2')), trust)).not.toThrow();
    expect(notAllowed(() => checkSpecTrust(spec('arithmetic', remote('https://judge.internal/scoreboard')), trust))).toMatch(/--allowed-reward-urls/);
    expect(notAllowed(() => checkSpecTrust(spec('arithmetic', remote('http://attacker:9/collect')), trust))).toMatch(/remote reward/);
    const own = workerTrust([], [], { GRPO_REMOTE_REWARD_URL: 'http://127.0.0.1:8000/r' });
    expect(() => checkSpecTrust(spec('arithmetic', remote('http://127.0.0.1:8000/r')), own)).not.toThrow();
    expect(listOf(' a, b ,,c')).toEqual(['a', 'b', 'c']);
  });

  it('RunState refuses the spec before importing the module (GRPO_ERR_NOT_ALLOWED), and never imports it', async () => {
    const evil = join(dir, 'evil.mjs');
    writeFileSync(evil, 'globalThis.__grpoEvilImported = true; export default {};\n');
    const run = new RunState({ rewardThreads: 1, log: silentLogger, trust });
    await run.applySpec(spec(evil));
    expect(run.error?.code).toBe('GRPO_ERR_NOT_ALLOWED');
    expect((globalThis as Record<string, unknown>).__grpoEvilImported).toBeUndefined();
    expect(run.canLoadWeights).toBe(false);
    await run.close();
  });
});
