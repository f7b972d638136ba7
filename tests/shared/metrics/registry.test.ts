import { Counter, Gauge } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { LEARNER_METRICS, WORKER_METRICS } from '../../../src/shared/metrics/definitions.js';
import {
  createMetric,
  createMetricsRegistry,
  defaultInstance,
  DROPPED_DEFAULT_METRICS,
  perScrape,
  setCounter,
  setOrClear,
} from '../../../src/shared/metrics/registry.js';
import { isGrpoError } from '../../../src/shared/errors.js';
import { parseExposition } from './helpers.js';

describe('createMetricsRegistry', () => {
  it('puts role and instance on every series, process metrics included', async () => {
    const r = createMetricsRegistry({ role: 'worker', instance: 'worker-7@node3' });
    createMetric(r, WORKER_METRICS.leases);
    const { samples } = parseExposition(await r.metrics());
    expect(samples.some((s) => s.name === 'process_cpu_seconds_total')).toBe(true);
    expect(samples.some((s) => s.name === 'grpo_worker_leases_total')).toBe(true);
    for (const s of samples) expect(s.labels, s.name).toMatchObject({ role: 'worker', instance: 'worker-7@node3' });
  });

  it('defaults the instance to <hostname>:<pid>', async () => {
    expect(defaultInstance()).toMatch(new RegExp(`:${process.pid}$`));
    const r = createMetricsRegistry({ role: 'learner', processMetrics: false });
    createMetric(r, LEARNER_METRICS.steps);
    const { samples } = parseExposition(await r.metrics());
    expect(samples[0].labels.instance).toBe(defaultInstance());
  });

  it('drops the default gauges named *_total and can leave process metrics out', async () => {
    const withProcess = await createMetricsRegistry({ role: 'coordinator' }).getMetricsAsJSON();
    const names = withProcess.map((m) => m.name);
    expect(names).toContain('nodejs_active_handles');
    for (const dropped of DROPPED_DEFAULT_METRICS) expect(names).not.toContain(dropped);
    expect(await createMetricsRegistry({ role: 'coordinator', processMetrics: false }).getMetricsAsJSON()).toEqual([]);
  });

  it('refuses an unknown role or an empty instance with a coded error', () => {
    const bad = [() => createMetricsRegistry({ role: 'trainer' as never }), () => createMetricsRegistry({ role: 'learner', instance: '' })];
    for (const f of bad) {
      let caught: unknown;
      try {
        f();
      } catch (err) {
        caught = err;
      }
      expect(isGrpoError(caught, 'GRPO_ERR_CONFIG')).toBe(true);
    }
  });
});

describe('createMetric', () => {
  it('leaves a label-less gauge without a sample until it is set', async () => {
    const r = createMetricsRegistry({ role: 'learner', processMetrics: false });
    const g = createMetric(r, LEARNER_METRICS.kl) as Gauge<string>;
    expect(parseExposition(await r.metrics()).samples).toEqual([]);
    g.set(0.5);
    expect(parseExposition(await r.metrics()).samples.map((s) => s.value)).toEqual([0.5]);
  });

  it('starts the fixed label values of a counter at 0', async () => {
    const r = createMetricsRegistry({ role: 'worker', processMetrics: false });
    createMetric(r, WORKER_METRICS.groups);
    const { samples } = parseExposition(await r.metrics());
    expect(samples.map((s) => [s.labels.result, s.value])).toEqual([
      ['done', 0],
      ['failed', 0],
      ['dropped', 0],
    ]);
  });

  it('runs the collect callback at every scrape with the metric', async () => {
    const r = createMetricsRegistry({ role: 'worker', processMetrics: false });
    let n = 0;
    createMetric(r, WORKER_METRICS.waitingGroups, (m) => (m as Gauge<string>).set(++n));
    await r.metrics();
    const { samples } = parseExposition(await r.metrics());
    expect(samples[0].value).toBe(2);
  });
});

describe('setCounter and setOrClear', () => {
  it('make a counter read a cumulative value kept elsewhere, negatives and NaN as 0', async () => {
    const r = createMetricsRegistry({ role: 'worker', processMetrics: false });
    const c = createMetric(r, WORKER_METRICS.groups) as Counter<string>;
    setCounter(c, 5, { result: 'done' });
    setCounter(c, 7, { result: 'done' });
    setCounter(c, NaN, { result: 'failed' });
    setCounter(c, -1, { result: 'dropped' });
    const values = Object.fromEntries(parseExposition(await r.metrics()).samples.map((s) => [s.labels.result, s.value]));
    expect(values).toEqual({ done: 7, failed: 0, dropped: 0 });
  });

  it('clear a gauge sample when the value is unknown', async () => {
    const r = createMetricsRegistry({ role: 'worker', processMetrics: false });
    const g = createMetric(r, WORKER_METRICS.policyVersion) as Gauge<string>;
    setOrClear(g, 4);
    expect(parseExposition(await r.metrics()).samples).toHaveLength(1);
    setOrClear(g, null);
    expect(parseExposition(await r.metrics()).samples).toHaveLength(0);
  });
});

describe('perScrape', () => {
  it('reads once per scrape however many callbacks use it', async () => {
    const r = createMetricsRegistry({ role: 'worker', processMetrics: false });
    let reads = 0;
    const snap = perScrape(() => ++reads);
    createMetric(r, WORKER_METRICS.waitingGroups, (m) => (m as Gauge<string>).set(snap()));
    createMetric(r, WORKER_METRICS.groupsPerCall, (m) => (m as Gauge<string>).set(snap()));
    await r.metrics();
    expect(reads).toBe(1);
    const { samples } = parseExposition(await r.metrics());
    expect(reads).toBe(2);
    expect(samples.map((s) => s.value)).toEqual([2, 2]);
  });
});
