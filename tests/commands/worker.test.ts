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
import { freePorts, sampleValue, scrape } from '../shared/metrics/helpers.js';
import { captureIO } from './helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'grpo-worker-cmd-'));

afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('grpo worker', () => {
  it('registers the worker flags', () => {
    const program = new Command('grpo');
    registerWorkerCommand(program);
    const cmd = program.commands.find((c) => c.name() === 'worker');
    const flags = cmd?.options.map((o) => o.long) ?? [];
    for (const f of ['--coordinator', '--token', '--name', '--worker-capacity', '--reward-threads', '--backend', '--config', '--metrics-port', '--metrics-host']) {
      expect(flags).toContain(f);
    }
    expect(flags).not.toContain('--group-size'); // the learner decides sampling; it reaches workers in the RunSpec
  });

  it('reads the config file, lets flags override it, and takes the token from GRPO_TOKEN', () => {
    const file = join(dir, 'worker.yaml');
    writeFileSync(file, 'coordinator: ws://10.0.0.5:7070\nworker_capacity: 2\nreward_threads: 3\ngroup_size: 4\n');
    const flags = flagsToRawConfig({ workerCapacity: '6', backend: 'cpu', device: '1', metricsPort: '9411' }, WORKER_CONFIG_KEYS);
    const options = workerOptionsFrom(resolveConfig({ file, flags, env: { GRPO_TOKEN: 'from-env' } }), 'w9');
    expect(options).toEqual({
      coordinator: 'ws://10.0.0.5:7070',
      token: 'from-env',
      allowedModules: [],
      allowedRewardUrls: [],
      loraSampling: 'merged',
      name: 'w9',
      capacity: 6,
      rewardThreads: 3,
      backend: 'cpu',
      device: 1, // --device: the WebGPU adapter index
      metricsPort: 9411,
      metricsHost: '0.0.0.0', // scraped from other machines unless told otherwise
    });
    // the worker's own variable beats the shared token; a learner's is never read
    const roleEnv = { GRPO_TOKEN: 'shared', GRPO_WORKER_TOKEN: 'worker', GRPO_LEARNER_TOKEN: 'learner' };
    expect(workerOptionsFrom(resolveConfig({ file, flags, env: roleEnv, role: 'worker' }), 'w9').token).toBe('worker');
    const allowed = flagsToRawConfig({ allowedModules: 'tasks/, my-reward.mjs', allowedRewardUrls: 'https://judge/score' }, WORKER_CONFIG_KEYS);
    expect(workerOptionsFrom(resolveConfig({ file, flags: allowed }), 'w9')).toMatchObject({ allowedModules: ['tasks/', 'my-reward.mjs'], allowedRewardUrls: ['https://judge/score'] }); // list flags split on commas
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

  it('serves /metrics on --metrics-port, labelled with its --name, until it stops', async () => {
    const coord = await startTestCoordinator();
    const port = await freePorts(1);
    try {
      const ac = new AbortController();
      const { io, events } = captureIO();
      const opts = { coordinator: coord.url, token: 'none', backend: 'cpu', name: 'scraped-w', metricsPort: String(port), metricsHost: '127.0.0.1' };
      const running = workerCommand(opts, io, ac.signal);
      await until(() => coord.stats().workers.some((w) => w.name === 'scraped-w'), 10_000, 'worker joined');
      expect(events.find((e) => e.event === 'metrics_listening')?.fields.url).toBe(`http://127.0.0.1:${port}/metrics`);
      const { samples } = await scrape(`http://127.0.0.1:${port}/metrics`);
      expect(sampleValue(samples, 'grpo_worker_connected', { role: 'worker', instance: 'scraped-w' })).toBe(1);
      ac.abort();
      await expect(running).resolves.toBeUndefined();
      await expect(fetch(`http://127.0.0.1:${port}/metrics`)).rejects.toThrow();
    } finally {
      await coord.close();
    }
  });
});
