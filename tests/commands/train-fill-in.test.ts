/**
 * Tiny end-to-end run of the fill-in task with a frozen judge, through the compiled CLI
 * (dist/cli.js: `npx tsc -p .` first): `grpo judge-train`, then `grpo train --task fill-in`
 * whose worker child scores completions with the judge in its reward thread, then `grpo eval`
 * on the result. Tiny settings; skipped (with a message) when the CLI is missing.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const CLI = resolve('dist/cli.js');

function grpo(args: string[], timeout = 60_000) {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout, env: { ...process.env, GRPO_TOKEN: '' } });
  return { code: r.status, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
}

const built = existsSync(CLI);
if (!built) console.warn(`skipping the fill-in end-to-end test: ${CLI} is missing; build it with \`npx tsc -p .\``);

describe.skipIf(!built)('grpo train --task fill-in (compiled CLI)', () => {
  let root: string;
  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'grpo-fill-in-'));
  });
  afterAll(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it('trains a judge, then GRPO with the judge as the reward, then evaluates', async () => {
    const judge = join(root, 'judge');
    const j = grpo(['judge-train', '--out', judge, '--steps', '6', '--batch-size', '8', '--eval-pairs', '8']);
    expect(j.stderr).not.toMatch(/^error GRPO_ERR/m);
    expect(j.code).toBe(0);
    expect(j.stdout).toMatch(/^judge done: step 6,/);

    const out = join(root, 'run');
    // prettier-ignore
    const r = grpo([
      'train', '--task', 'fill-in', '--task-options', JSON.stringify({ judge_checkpoint: judge, max_masks: 2 }),
      '--out', out, '--steps', '2', '--sft-steps', '3', '--sft-batch-size', '8', '--model-size', 'tiny',
      '--workers', '1', '--worker-capacity', '2', '--eval-samples', '4', '--prompts-per-step', '2', '--group-size', '4',
      '--max-gen-len', '48', '--reward-weights', 'judge=1,faithful=0.5',
    ], 120_000);
    expect(r.stderr).not.toMatch(/^error GRPO_ERR/m);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/held-out accuracy on 4 fill-in problems: \d+\.\d% -> \d+\.\d%/);
    expect(r.stdout).toMatch(/rewards, first -> last fifth of the steps: total .*faithful .*judge /);
    const summary = JSON.parse(await readFile(join(out, 'summary.json'), 'utf8'));
    expect(summary).toMatchObject({ task: 'fill-in', steps: 2, interrupted: false });
    expect(summary.groups.failed).toBe(0); // every group was scored: the judge loaded in the worker's reward thread
    const steps = (await readFile(join(out, 'metrics.jsonl'), 'utf8')).trim().split('\n').map((l) => JSON.parse(l));
    expect(steps).toHaveLength(2);
    for (const s of steps) {
      expect(s.rewards.judge).toBeGreaterThanOrEqual(0);
      expect(s.rewards.judge).toBeLessThanOrEqual(1);
      // the worker samples under the task's grammar (constrained by default): after 3 SFT steps
      // the model alone copies nothing, yet every completion is a filling of its prompt
      expect(s.rewards.faithful).toBe(1);
    }

    const e = grpo(['eval', '--checkpoint', join(out, 'checkpoint'), '--samples', '3', '--k', '2', '--json']);
    expect(e.code).toBe(0);
    const report = JSON.parse(e.stdout);
    expect(report).toMatchObject({ task: 'fill-in', samples: 3, k: 2, taskOptions: { judge_checkpoint: judge, max_masks: 2 } });
    expect(typeof report.majAtK).toBe('number');
  });
});
