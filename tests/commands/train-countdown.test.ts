/**
 * `grpo train --task countdown` end to end at tiny scale through the compiled CLI (dist/cli.js:
 * build first, `npx tsc -p .`): SFT warm start, one worker child process sampling under the
 * Countdown grammar, the learner with a curriculum and the replay buffer, summary and checkpoint.
 *
 * Every sampled completion must be a whole grammar word: the `format` reward (1 for a valid
 * expression over the prompt's numbers) is given weight 1, which as a constant under the grammar
 * changes no advantage, and its per-step mean must be exactly 1 with nothing truncated.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const CLI = resolve('dist/cli.js');

describe.skipIf(!existsSync(CLI))('grpo train --task countdown (compiled CLI)', () => {
  let root: string;
  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'grpo-countdown-'));
  });
  afterAll(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it('trains under the grammar with a curriculum: every sample valid, the level logged and checkpointed', async () => {
    const out = join(root, 'run');
    const curriculum = { levels: [{ max_count: 2 }, { max_count: 3 }], threshold: 0.05, window: 8 };
    // prettier-ignore
    const args = [
      CLI, 'train', '--task', 'countdown', '--task-options', 'min_count=2,max_count=3,max_number=9,max_target=30',
      '--out', out, '--backend', 'cpu', '--steps', '3', '--sft-steps', '4', '--sft-batch-size', '8', '--workers', '1',
      '--eval-samples', '4', '--prompts-per-step', '2', '--group-size', '4', '--max-gen-len', '10',
      '--reward-weights', 'format=1', '--curriculum', JSON.stringify(curriculum), '--replay-buffer-size', '4',
    ];
    const r = spawnSync(process.execPath, args, { encoding: 'utf8', timeout: 150_000, env: { ...process.env, GRPO_TOKEN: '' } });
    expect(r.stderr).not.toMatch(/^error GRPO_ERR/m);
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/held-out accuracy on 4 countdown problems: \d+\.\d% -> \d+\.\d%/);
    expect(r.stderr).not.toMatch(/"event":"max_gen_len_short"/); // 3 one-digit numbers: 9 characters + EOS

    const records = (await readFile(join(out, 'metrics.jsonl'), 'utf8')).trim().split('\n').map((l) => JSON.parse(l));
    expect(records).toHaveLength(3);
    for (const rec of records) {
      expect(rec.rewards.format, `step ${rec.step}`).toBe(1); // every trained completion is a valid expression
      expect(rec.truncated).toBe(0); // and complete: each ended with EOS where the grammar allowed it
      expect([0, 1]).toContain(rec.curriculumLevel);
      expect(typeof rec.replayed).toBe('number');
    }
    const state = JSON.parse(await readFile(join(out, 'checkpoint', 'trainer_state.json'), 'utf8'));
    expect(state.curriculum).toMatchObject({ version: 1, level: records[2].curriculumLevel });
    expect(state.config.curriculum).toEqual(curriculum);
    const summary = JSON.parse(await readFile(join(out, 'summary.json'), 'utf8'));
    expect(summary.task).toBe('countdown');
    expect(summary.steps).toBe(3);
  });
});
