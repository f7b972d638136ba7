/**
 * A reward that always throws: every group fails after its retries, and the learner, instead of
 * skipping prompts forever, checkpoints and stops with GRPO_ERR_GROUPS_FAILING once
 * max_failed_groups_in_row groups in a row have failed. Real processes: the compiled CLI's
 * `grpo train` with one worker child (build first: `npx tsc -p .`).
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const CLI = resolve('dist/cli.js');

describe.skipIf(!existsSync(CLI))('a run whose groups all fail', () => {
  let root: string;
  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'grpo-failing-'));
  });
  afterAll(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it('stops with GRPO_ERR_GROUPS_FAILING, exit 1, after checkpointing what it has', async () => {
    const out = join(root, 'run');
    // prettier-ignore
    const args = [
      CLI, 'train', '--out', out, '--backend', 'auto', '--steps', '50', '--sft-steps', '2', '--sft-batch-size', '4',
      '--workers', '1', '--eval-samples', '4', '--prompts-per-step', '2', '--group-size', '2', '--max-gen-len', '6',
      '--reward-module', resolve('tests/fixtures/rewards/always-throws.mjs'), '--reward-retries', '0',
      '--max-failed-groups-in-row', '4',
    ];
    const r = spawnSync(process.execPath, args, { encoding: 'utf8', timeout: 150_000, env: { ...process.env, GRPO_TOKEN: '' } });
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/^error GRPO_ERR_GROUPS_FAILING: the last 4 groups all failed .*this reward is broken on purpose/m);
    const state = JSON.parse(await readFile(join(out, 'checkpoint', 'trainer_state.json'), 'utf8'));
    expect(state.step).toBe(0);
    expect(state.groups.failed).toBeGreaterThanOrEqual(4);
    expect(state.groups.admitted).toBe(0);
  }, 180_000);
});
