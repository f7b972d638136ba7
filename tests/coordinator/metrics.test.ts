/**
 * The coordinator's GET /metrics on its own port (the one its WebSocket and /healthz use): role
 * and instance labels, the ledger and worker gauges read live at each scrape, the broadcast
 * histogram fed by the weights fan-out, and process metrics only when asked for.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { CoordinatorHandle } from '../../src/coordinator/main.js';
import { METRICS_CONTENT_TYPE } from '../../src/shared/metrics/server.js';
import type { NamedHostTensors } from '../../src/model/types.js';
import { Kind } from '../../src/shared/protocol.js';
import { ProtocolClient } from '../../src/shared/ws-client.js';
import { sampleValue, scrape } from '../shared/metrics/helpers.js';
import { SAMPLES } from '../shared/protocol-samples.js';
import { startTestCoordinator, until } from './helpers.js';

const opened: { close(): Promise<void> }[] = [];
afterEach(async () => {
  for (const c of opened.splice(0).reverse()) await c.close();
});

async function coordinator(opts: Parameters<typeof startTestCoordinator>[0] = {}): Promise<{ coord: CoordinatorHandle; url: string }> {
  const coord = await startTestCoordinator(opts);
  opened.push(coord);
  return { coord, url: `http://127.0.0.1:${coord.port}/metrics` };
}

function client(url: string, role: 'learner' | 'worker', name: string): ProtocolClient {
  const c = new ProtocolClient({ url, role, name, capacity: 2, token: null });
  opened.push(c);
  return c;
}

const weights = (): NamedHostTensors => new Map([['w', { shape: [4, 8], data: Float32Array.from({ length: 32 }, (_, i) => i / 32) }]]);

describe('coordinator GET /metrics', () => {
  it('serves its metrics on its own port with role and instance labels, and no process metrics by default', async () => {
    const { url } = await coordinator({ metricsInstance: 'coord-a' });
    const res = await fetch(url);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe(METRICS_CONTENT_TYPE);
    const { samples, families } = await scrape(url);
    const ours = samples.filter((s) => s.name.startsWith('grpo_'));
    expect(ours.length).toBeGreaterThan(20);
    for (const s of ours) {
      expect(s.name, s.name).toMatch(/^grpo_coordinator_/);
      expect(s.labels, s.name).toMatchObject({ role: 'coordinator', instance: 'coord-a' });
    }
    expect(sampleValue(samples, 'grpo_coordinator_workers_connected')).toBe(0);
    expect(families.has('process_cpu_user_seconds_total')).toBe(false);
  });

  it('adds the process metrics when asked (the grpo coordinator command)', async () => {
    const { url } = await coordinator({ processMetrics: true });
    const { samples } = await scrape(url);
    const cpu = samples.find((s) => s.name === 'process_cpu_user_seconds_total');
    expect(cpu?.labels.role).toBe('coordinator');
    expect(cpu?.labels.instance).toMatch(/:\d+$/); // <hostname>:<pid>
  });

  it('reads workers, the ledger and the weights fan-out live, and times each broadcast', async () => {
    const { coord, url } = await coordinator();
    const learner = client(coord.url, 'learner', 'l');
    await learner.start();
    const worker = client(coord.url, 'worker', 'w');
    let received = 0;
    worker.onEvent('weights', () => (received += 1));
    await worker.start();
    await until(() => coord.stats().workers.length === 1, 5_000, 'worker joined');

    learner.send(SAMPLES[Kind.RunSpec]); // workers get weights only after a RunSpec
    learner.send({ kind: Kind.Enqueue, groups: [{ groupId: 'g1', promptIndex: 0, prompt: '1+1=', meta: null, groupSize: 2 }] });
    const sent = await learner.publishWeights(weights(), 1, 'f32', 64);
    expect(sent).toMatchObject({ version: 1, sent: true });
    await until(() => received === 1, 5_000, 'weights at the worker');
    await until(() => coord.stats().weights.transfersCompleted === 1, 5_000, 'transfer counted');

    const { samples } = await scrape(url);
    expect(sampleValue(samples, 'grpo_coordinator_workers_connected')).toBe(1);
    expect(sampleValue(samples, 'grpo_coordinator_worker_capacity_groups')).toBe(2);
    expect(sampleValue(samples, 'grpo_coordinator_learner_connected')).toBe(1);
    expect(sampleValue(samples, 'grpo_coordinator_policy_version')).toBe(1);
    expect(sampleValue(samples, 'grpo_coordinator_groups_enqueued_total')).toBe(1);
    expect(sampleValue(samples, 'grpo_coordinator_queued_groups')).toBe(1); // the worker never sent Ready
    expect(sampleValue(samples, 'grpo_coordinator_weights_versions_total')).toBe(1);
    expect(sampleValue(samples, 'grpo_coordinator_weights_version_bytes')).toBe(sent.bytes);
    expect(sampleValue(samples, 'grpo_coordinator_weights_broadcasts_total', { result: 'completed' })).toBe(1);
    expect(sampleValue(samples, 'grpo_coordinator_weights_broadcast_bytes_total')).toBeGreaterThan(sent.bytes);
    expect(sampleValue(samples, 'grpo_coordinator_weights_broadcast_seconds_count')).toBe(1);
    expect(sampleValue(samples, 'grpo_coordinator_weights_broadcast_seconds_bucket', { le: '+Inf' })).toBe(1);
  });

  it('still answers /healthz and refuses other paths', async () => {
    const { coord } = await coordinator();
    expect((await fetch(`http://127.0.0.1:${coord.port}/healthz`)).status).toBe(200);
    const res = await fetch(`http://127.0.0.1:${coord.port}/metricz`);
    expect(res.status).toBe(404);
    expect(await res.text()).toContain('GET /metrics');
  });
});
