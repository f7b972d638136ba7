/** `grpo learner` configuration: plain runs resolve like every command; resumed runs start from the saved config. */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { learnerCommand, learnerConfig } from '../../src/commands/learner.js';
import { captureIO } from './helpers.js';

let root: string;
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'grpo-learner-cmd-'));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

describe('grpo learner config', () => {
  it('resolves defaults < file < flags < GRPO_TOKEN without --resume', async () => {
    const file = join(root, 'run.yaml');
    await writeFile(file, 'lr: 0.01\nsteps: 7\n');
    const c = await learnerConfig({ config: file, steps: '9', coordinator: 'ws://h:1' }, { GRPO_TOKEN: 'env-token' });
    expect(c).toMatchObject({ lr: 0.01, steps: 9, coordinator: 'ws://h:1', token: 'env-token' });
  });

  it('on --resume, starts from the saved config: file and flags override it, the token never comes from it', async () => {
    const dir = join(root, 'checkpoint');
    await mkdir(dir);
    const saved = { steps: 10, lr: 0.5, group_size: 4, checkpoint: 'runs/sft', out: 'runs/grpo', token: 'leaked' };
    await writeFile(join(dir, 'trainer_state.json'), JSON.stringify({ step: 10, policyVersion: 10, config: saved }));
    const file = join(root, 'more.yaml');
    await writeFile(file, 'lr: 0.25\n');
    const c = await learnerConfig({ resume: dir, config: file, steps: '20' }, {});
    expect(c).toMatchObject({ steps: 20, lr: 0.25, group_size: 4, checkpoint: 'runs/sft', out: 'runs/grpo', token: null });
  });

  it('fails with a coded error naming what is missing', async () => {
    const c = captureIO();
    await expect(learnerCommand({ coordinator: 'ws://127.0.0.1:1' }, c.io)).rejects.toMatchObject({ code: 'GRPO_ERR_CONFIG', message: expect.stringMatching(/--checkpoint/) });
    await expect(learnerConfig({ resume: join(root, 'nope') }, {})).rejects.toMatchObject({ code: 'GRPO_ERR_RESUME' });
  });
});
