/**
 * coordinatorMetrics over fixed stats (the mapping) and over a real coordinator on port 0 with a
 * real worker connected (the stats the helpers read exist, with the names they read).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startCoordinator, type CoordinatorHandle } from '../../src/coordinator/main.js';
import { startWorker, type WorkerHandle } from '../../src/rollout-worker/main.js';
import { silentLogger } from '../../src/shared/protocol.js';
import { coordinatorMetrics } from '../../src/coordinator/prometheus.js';
import { createMetricsRegistry } from '../../src/shared/metrics/registry.js';
import { workerMetrics } from '../../src/rollout-worker/prometheus.js';
import { coordinatorStats, workerStats } from '../shared/metrics/fixtures.js';
import { parseExposition, type Sample } from '../shared/metrics/helpers.js';

function value(samples: Sample[], name: string, labels: Record<string, string> = {}): number | undefined {
  return samples.find((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))?.value;
}

/** Key paths of plain objects (arrays and their items are not descended into). */
function keyPaths(o: object, prefix = ''): string[] {
  return Object.entries(o).flatMap(([k, v]) =>
    v !== null && typeof v === 'object' && !Array.isArray(v) ? keyPaths(v, `${prefix}${k}.`) : [`${prefix}${k}`],
  );
}

describe('coordinatorMetrics', () => {
  it('maps the stats onto gauges and counters', async () => {
    const registry = createMetricsRegistry({ role: 'coordinator', instance: 'c', processMetrics: false });
    const m = coordinatorMetrics(registry, coordinatorStats);
    m.observeBroadcast(0.2);
    m.observeBroadcast(0.4);
    const s = parseExposition(await registry.metrics()).samples;
    const expected: [string, Record<string, string>, number][] = [
      ['grpo_coordinator_workers_connected', {}, 2],
      ['grpo_coordinator_workers_ready', {}, 1],
      ['grpo_coordinator_worker_capacity_groups', {}, 6],
      ['grpo_coordinator_learner_connected', {}, 1],
      ['grpo_coordinator_policy_version', {}, 3],
      ['grpo_coordinator_resume_epoch', {}, 2],
      ['grpo_coordinator_queued_groups', {}, 7],
      ['grpo_coordinator_leased_groups', {}, 4],
      ['grpo_coordinator_outbox_groups', {}, 1],
      ['grpo_coordinator_leases_in_flight', {}, 2],
      ['grpo_coordinator_leases_total', {}, 10],
      ['grpo_coordinator_leases_expired_total', {}, 1],
      ['grpo_coordinator_groups_enqueued_total', {}, 30],
      ['grpo_coordinator_groups_completed_total', {}, 20],
      ['grpo_coordinator_groups_redispatched_total', {}, 3],
      ['grpo_coordinator_groups_exhausted_total', {}, 0],
      ['grpo_coordinator_group_failures_total', {}, 2],
      ['grpo_coordinator_group_verdicts_total', { verdict: 'admitted' }, 18],
      ['grpo_coordinator_group_verdicts_total', { verdict: 'dropped_stale' }, 1],
      ['grpo_coordinator_group_verdicts_total', { verdict: 'dropped_duplicate' }, 0],
      ['grpo_coordinator_group_verdicts_total', { verdict: 'failed' }, 1],
      ['grpo_coordinator_duplicate_results_total', {}, 2],
      ['grpo_coordinator_invalid_results_total', {}, 0],
      ['grpo_coordinator_weights_version_bytes', {}, 4096],
      ['grpo_coordinator_weights_versions_total', {}, 4],
      ['grpo_coordinator_weights_upload_errors_total', {}, 0],
      ['grpo_coordinator_weights_broadcasts_total', { result: 'completed' }, 7],
      ['grpo_coordinator_weights_broadcasts_total', { result: 'abandoned' }, 1],
      ['grpo_coordinator_weights_broadcast_bytes_total', {}, 30000],
      ['grpo_coordinator_weights_broadcast_seconds_count', {}, 2],
    ];
    for (const [name, labels, v] of expected) expect(value(s, name, labels), `${name}${JSON.stringify(labels)}`).toBeCloseTo(v, 12);
  });

  describe('on a real coordinator with a real worker', () => {
    let coord: CoordinatorHandle;
    let worker: WorkerHandle;
    beforeAll(async () => {
      coord = await startCoordinator({ host: '127.0.0.1', port: 0, token: 'metrics-test', log: silentLogger });
      worker = await startWorker({ coordinator: coord.url, token: 'metrics-test', capacity: 2, rewardThreads: 1, backend: 'cpu', log: silentLogger });
      const deadline = Date.now() + 20_000;
      while ((coord.stats().workers.length === 0 || !worker.stats().connected) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    });
    afterAll(async () => {
      await worker?.stop();
      await coord?.close();
    });

    it('reads only stats fields that the roles really report', () => {
      const real = keyPaths(coord.stats());
      for (const path of keyPaths({ ...coordinatorStats(), learner: null })) expect(real, `CoordinatorStats.${path}`).toContain(path);
      expect(Object.keys(coord.stats().workers[0])).toEqual(expect.arrayContaining(['ready', 'capacity']));
      const realWorker = keyPaths(worker.stats());
      for (const path of keyPaths(workerStats())) expect(realWorker, `WorkerStats.${path}`).toContain(path);
    });

    it('exports the live state: one worker connected, no learner, nothing leased', async () => {
      const registry = createMetricsRegistry({ role: 'coordinator', processMetrics: false });
      coordinatorMetrics(registry, () => coord.stats());
      const workerRegistry = createMetricsRegistry({ role: 'worker', processMetrics: false });
      workerMetrics(workerRegistry, () => worker.stats());
      const s = parseExposition(await registry.metrics()).samples;
      expect(value(s, 'grpo_coordinator_workers_connected')).toBe(1);
      expect(value(s, 'grpo_coordinator_learner_connected')).toBe(0);
      expect(value(s, 'grpo_coordinator_policy_version')).toBeUndefined();
      expect(value(s, 'grpo_coordinator_leases_in_flight')).toBe(0);
      for (const sample of s) expect(Number.isFinite(sample.value), sample.name).toBe(true);
      const w = parseExposition(await workerRegistry.metrics()).samples;
      expect(value(w, 'grpo_worker_connected')).toBe(1);
      expect(value(w, 'grpo_worker_leases_total')).toBe(0);
    });
  });
});
