/** `grpo worker`: flags and config file into worker options, and a run against a real coordinator. */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import { afterAll, describe, expect, it } from 'vitest';
import { registerWorkerCommand, WORKER_CONFIG_KEYS, workerCommand, workerOptionsFrom } from '../../src/commands/worker.js';
import { resolveConfig } from '../../src/shared/config.js';
import { flagsToRawConfig } from '../../src/shared/config-flags.js';
import { startTestCoordinator, until } from '../coordinator/helpers.js';
import { captureIO } from './helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'grpo-worker-cmd-'));

afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('grpo worker', () => {
  it('registers the worker flags', () => {
    const program = new Command('grpo');
    registerWorkerCommand(program);
    const cmd = program.commands.find((c) => c.name() === 'worker');
    const flags = cmd?.options.map((o) => o.long) ?? [];
    for (const f of ['--coordinator', '--token', '--name', '--worker-capacity', '--reward-threads', '--backend', '--config']) expect(flags).toContain(f);
    expect(flags).not.toContain('--group-size'); // the learner decides sampling; it reaches workers in the RunSpec
  });

  it('reads the config file, lets flags override it, and takes the token from GRPO_TOKEN', () => {
    const file = join(dir, 'worker.yaml');
    writeFileSync(file, 'coordinator: ws://10.0.0.5:7070\nworker_capacity: 2\nreward_threads: 3\ngroup_size: 4\n');
    const flags = flagsToRawConfig({ workerCapacity: '6', backend: 'cpu' }, WORKER_CONFIG_KEYS);
    const options = workerOptionsFrom(resolveConfig({ file, flags, env: { GRPO_TOKEN: 'from-env' } }), 'w9');
    expect(options).toEqual({ coordinator: 'ws://10.0.0.5:7070', token: 'from-env', name: 'w9', capacity: 6, rewardThreads: 3, backend: 'cpu' });
  });

  it('needs a coordinator address', async () => {
    const { io } = captureIO();
    await expect(workerCommand({}, io, new AbortController().signal)).rejects.toMatchObject({ code: 'GRPO_ERR_CONFIG', message: expect.stringContaining('--coordinator') });
  });

  it('joins the coordinator with its name and capacity and stops cleanly when aborted', async () => {
    const coord = await startTestCoordinator();
    try {
      const ac = new AbortController();
      const { io, events } = captureIO();
      const opts = { coordinator: coord.url, token: 'none', workerCapacity: '3', rewardThreads: '1', backend: 'cpu', name: 'cmd-w' };
      const running = workerCommand(opts, io, ac.signal);
      await until(() => coord.stats().workers.some((w) => w.name === 'cmd-w' && w.capacity === 3), 10_000, 'worker joined');
      expect(events.find((e) => e.event === 'config')?.fields).toMatchObject({ role: 'worker', capacity: 3, backend: 'cpu' });
      ac.abort();
      await expect(running).resolves.toBeUndefined();
      expect(events.at(-1)?.event).toBe('stopped');
      await until(() => coord.stats().workers.length === 0, 5_000, 'worker gone');
    } finally {
      await coord.close();
    }
  });
});
