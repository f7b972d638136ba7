/**
 * serveMetrics on real loopback ports: what GET /metrics serves parses (every role's registry,
 * concatenated as `grpo train` serves them) and passes `promtool check metrics` without a lint
 * problem when promtool is installed; /healthz; errors.
 */
import { Gauge } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import { isGrpoError } from '../../../src/shared/errors.js';
import { WORKER_METRICS } from '../../../src/shared/metrics/definitions.js';
import { createMetric, createMetricsRegistry } from '../../../src/shared/metrics/registry.js';
import { DEFAULT_METRICS_PORTS, localMetricsPorts, METRICS_CONTENT_TYPE, renderMetrics, serveMetrics, type MetricsServer } from '../../../src/shared/metrics/server.js';
import { allRolesRegistries } from './fixtures.js';
import { parseExposition, promtool, promtoolCheckMetrics, PROMTOOL_MISSING } from './helpers.js';

const hasPromtool = promtool() !== null;
if (!hasPromtool) console.warn(PROMTOOL_MISSING);

const servers: MetricsServer[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

async function serve(...args: Parameters<typeof serveMetrics>): Promise<MetricsServer> {
  const s = await serveMetrics(...args);
  servers.push(s);
  return s;
}

/** Every role's metrics, the learner's with the process metrics (as one process serves them). */
function registries() {
  const [learner, worker, coordinator] = allRolesRegistries();
  const processOnly = createMetricsRegistry({ role: 'learner', instance: 'learner-0' });
  return [processOnly, learner, worker, coordinator];
}

describe('serveMetrics', () => {
  it('serves every role\'s metrics on an ephemeral port in the text format', async () => {
    const server = await serve(registries(), { port: 0, host: '127.0.0.1' });
    expect(server.port).toBeGreaterThan(0);
    expect(server.url).toBe(`http://127.0.0.1:${server.port}/metrics`);
    const res = await fetch(server.url);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe(METRICS_CONTENT_TYPE);
    const { families, samples } = parseExposition(await res.text());
    for (const name of ['process_cpu_seconds_total', 'grpo_learner_reward_mean', 'grpo_worker_tokens_generated_total', 'grpo_coordinator_workers_connected']) {
      expect(families.has(name), name).toBe(true);
    }
    for (const role of ['learner', 'worker', 'coordinator']) expect(samples.some((s) => s.labels.role === role), role).toBe(true);
  });

  it.skipIf(!hasPromtool)('passes promtool check metrics with no lint problem', async () => {
    const server = await serve(registries(), { port: 0, host: '127.0.0.1' });
    const text = await (await fetch(server.url)).text();
    const r = promtoolCheckMetrics(text);
    expect(r.output).toBe('');
    expect(r.status).toBe(0);
  });

  it.skipIf(!hasPromtool)('would fail promtool on a badly named metric (the check is real)', async () => {
    const r = createMetricsRegistry({ role: 'worker', processMetrics: false });
    new Gauge({ name: 'grpo_worker_bad_total', help: 'a gauge named like a counter', registers: [r] }).set(1);
    expect(promtoolCheckMetrics(await renderMetrics(r)).output).toMatch(/grpo_worker_bad_total/);
  });

  it('answers /healthz from the health callback: 200 when ok, 503 when not', async () => {
    let ok = true;
    const server = await serve(createMetricsRegistry({ role: 'worker', processMetrics: false }), {
      port: 0,
      host: '127.0.0.1',
      health: () => ({ ok, connected: ok }),
    });
    const healthz = `http://127.0.0.1:${server.port}/healthz`;
    let res = await fetch(healthz);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ ok: true, connected: true });
    ok = false;
    res = await fetch(healthz);
    expect(res.status).toBe(503);
    expect(await res.json()).toEqual({ ok: false, connected: false });
    res = await fetch(`http://127.0.0.1:${server.port}/nope`);
    expect(res.status).toBe(404);
  });

  it('turns a collect callback that throws into a 500 (a failed scrape)', async () => {
    const r = createMetricsRegistry({ role: 'worker', processMetrics: false });
    createMetric(r, WORKER_METRICS.waitingGroups, () => {
      throw new Error('stats unavailable');
    });
    const server = await serve(r, { port: 0, host: '127.0.0.1' });
    const res = await fetch(server.url);
    expect(res.status).toBe(500);
    expect(await res.text()).toMatch(/stats unavailable/);
  });

  it('fails the scrape when two registries served together both hold a metric (process metrics twice)', async () => {
    const twice = [createMetricsRegistry({ role: 'learner' }), createMetricsRegistry({ role: 'coordinator' })];
    const server = await serve(twice, { port: 0, host: '127.0.0.1' });
    const res = await fetch(server.url);
    expect(res.status).toBe(500);
    expect(await res.text()).toMatch(/process_cpu_user_seconds_total is in two of the registries.*processMetrics: false/);
  });

  it('refuses a port in use or out of range with GRPO_ERR_CONFIG naming the flag', async () => {
    const first = await serve(createMetricsRegistry({ role: 'worker', processMetrics: false }), { port: 0, host: '127.0.0.1' });
    for (const port of [first.port, 70000]) {
      let caught: unknown;
      try {
        await serve(createMetricsRegistry({ role: 'worker', processMetrics: false }), { port, host: '127.0.0.1' });
      } catch (err) {
        caught = err;
      }
      expect(isGrpoError(caught, 'GRPO_ERR_CONFIG'), String(caught)).toBe(true);
      expect((caught as Error).message).toMatch(/metrics/);
    }
  });

  it('stops serving after close()', async () => {
    const server = await serveMetrics(createMetricsRegistry({ role: 'worker', processMetrics: false }), { port: 0, host: '127.0.0.1' });
    await server.close();
    await expect(fetch(server.url)).rejects.toThrow();
  });
});

describe('ports', () => {
  it('put the coordinator on its own port and the other roles on distinct metrics ports', () => {
    const ports = Object.values(DEFAULT_METRICS_PORTS);
    expect(new Set(ports).size).toBe(ports.length);
    expect(DEFAULT_METRICS_PORTS.coordinator).toBe(7070);
  });

  it('give `grpo train` the base port and one more per local worker', () => {
    expect(localMetricsPorts(9400, 3)).toEqual({ learner: 9400, workers: [9401, 9402, 9403] });
    expect(() => localMetricsPorts(65535, 1)).toThrow(/65535/);
  });
});
