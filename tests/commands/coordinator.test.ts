/** `grpo coordinator` in-process: config keys -> coordinator options, the URL on stdout, /healthz, /metrics, clean stop. */
import { describe, expect, it } from 'vitest';
import { coordinatorCommand, coordinatorOptions, startCoordinatorCommand } from '../../src/commands/coordinator.js';
import { parseConfig } from '../../src/shared/config.js';
import { silentLogger } from '../../src/shared/protocol.js';
import { sampleValue, scrape } from '../shared/metrics/helpers.js';
import { captureIO } from './helpers.js';

describe('grpo coordinator', () => {
  it('maps the config keys onto coordinator options', () => {
    const o = coordinatorOptions(parseConfig({ heartbeat_ms: 5_000, lease_ms: 9_000, max_payload_bytes: 2_000_000, weights_chunk_bytes: 65_536 }), silentLogger);
    expect(o).toMatchObject({ host: '127.0.0.1', heartbeatMs: 5_000, leaseMs: 9_000, maxPayloadBytes: 2_000_000, weightsChunkBytes: 65_536 });
    expect(o.peerTimeoutMs).toBe(50_000); // ten heartbeats
  });

  it('prints its URL, answers /healthz and stops when the signal aborts', async () => {
    const c = captureIO();
    const abort = new AbortController();
    const running = coordinatorCommand({ port: '0', token: 'secret', leaseMs: '5000' }, c.io, abort.signal);
    await expect.poll(() => c.out.length).toBe(1);
    const url = /coordinator listening on (ws:\/\/127\.0\.0\.1:\d+)/.exec(c.out[0])![1];
    const health = await fetch(`${url.replace('ws:', 'http:')}/healthz`);
    expect(health.status).toBe(200);
    expect((await health.json()).ok).toBe(true);
    const { samples } = await scrape(`${url.replace('ws:', 'http:')}/metrics`); // same port, with the process metrics
    expect(sampleValue(samples, 'grpo_coordinator_workers_connected', { role: 'coordinator' })).toBe(0);
    expect(sampleValue(samples, 'process_start_time_seconds', { role: 'coordinator' })).toBeGreaterThan(0);
    abort.abort();
    await running;
    expect(c.out[1]).toMatch(/^coordinator stopped: 0 groups enqueued/);
    await expect(fetch(`${url.replace('ws:', 'http:')}/healthz`)).rejects.toThrow();
  });

  it('refuses a non-loopback host without a token', async () => {
    const c = captureIO();
    const env = process.env.GRPO_TOKEN;
    delete process.env.GRPO_TOKEN;
    try {
      await expect(startCoordinatorCommand({ host: '0.0.0.0', port: '0' }, c.io)).rejects.toMatchObject({ code: 'GRPO_ERR_CONFIG' });
    } finally {
      if (env !== undefined) process.env.GRPO_TOKEN = env;
    }
  });
});
