/**
 * One prom-client Registry per role in a process, with its identity on every series:
 *
 *   const registry = createMetricsRegistry({ role: 'worker', instance: handle.name });
 *
 * `role` and `instance` are default labels, so series from many workers stay apart after
 * scraping. Prometheus also sets its own `instance` (host:port of the target); the scrape
 * configs in deploy/prometheus keep ours with `honor_labels: true`, so a worker keeps its name
 * when its pod moves. The default instance is `<hostname>:<pid>`: unique per process on a host,
 * and the pod name in Kubernetes (a pod's hostname).
 *
 * The default process metrics (CPU, memory, event loop, GC) are registered unless turned off:
 * `grpo train` runs the coordinator and the learner in one process and serves both registries
 * on one port, with the process metrics in one of them only. The three prom-client gauges named
 * `nodejs_active_*_total` are dropped: gauges must not end in `_total` (promtool flags them);
 * the same values remain in `nodejs_active_handles`, `_requests` and `_resources`.
 */
import { hostname } from 'node:os';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import { GrpoError } from '../errors.js';
import type { MetricSpec } from './definitions.js';

export const METRIC_ROLES = ['coordinator', 'learner', 'worker'] as const;
export type MetricRole = (typeof METRIC_ROLES)[number];

/** prom-client default metrics that break the naming rules (gauges ending in `_total`). */
export const DROPPED_DEFAULT_METRICS = ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total'] as const;

export interface MetricsRegistryOptions {
  role: MetricRole;
  instance?: string; // default `<hostname>:<pid>`
  processMetrics?: boolean; // default true: CPU, memory, event loop lag, GC
}

/** `<hostname>:<pid>`: unique per process on a machine (the pod name in Kubernetes). */
export function defaultInstance(): string {
  return `${hostname()}:${process.pid}`;
}

export function createMetricsRegistry(opts: MetricsRegistryOptions): Registry {
  if (!METRIC_ROLES.includes(opts.role)) {
    throw new GrpoError('GRPO_ERR_CONFIG', `metrics role ${JSON.stringify(opts.role)} is not one of ${METRIC_ROLES.join(', ')}`);
  }
  const instance = opts.instance ?? defaultInstance();
  if (instance.length === 0) throw new GrpoError('GRPO_ERR_CONFIG', 'metrics instance label is empty; give a name or leave it unset for <hostname>:<pid>');
  const registry = new Registry();
  registry.setDefaultLabels({ role: opts.role, instance });
  if (opts.processMetrics ?? true) {
    collectDefaultMetrics({ register: registry });
    for (const name of DROPPED_DEFAULT_METRICS) registry.removeSingleMetric(name);
  }
  return registry;
}

export type AnyMetric = Counter<string> | Gauge<string> | Histogram<string>;

/**
 * Builds the prom-client object of a spec in `registry`. Fixed label values start at 0; a
 * label-less gauge starts absent (no sample) until it is first set, so a training signal is never
 * exported as a made-up 0 before the first step.
 */
export function createMetric(registry: Registry, spec: MetricSpec, collect?: (metric: AnyMetric) => void): AnyMetric {
  const base = {
    name: spec.name,
    help: spec.help,
    labelNames: [...(spec.labelNames ?? [])],
    registers: [registry],
    // prom-client calls it with the metric as `this` at every scrape
    ...(collect ? { collect(this: AnyMetric) { collect(this); } } : {}),
  };
  switch (spec.type) {
    case 'counter': {
      const c = new Counter(base);
      for (const labels of labelCombinations(spec)) c.inc(labels, 0);
      return c;
    }
    case 'gauge': {
      const g = new Gauge(base);
      if (base.labelNames.length === 0) g.remove(); // absent until set
      return g;
    }
    case 'histogram':
      return new Histogram({ ...base, buckets: [...(spec.buckets ?? [])] });
  }
}

/** Every combination of a spec's fixed label values ([{}] when it has none). */
function labelCombinations(spec: MetricSpec): Record<string, string>[] {
  let out: Record<string, string>[] = [{}];
  for (const [label, values] of Object.entries(spec.labelValues ?? {})) {
    out = out.flatMap((partial) => values.map((v) => ({ ...partial, [label]: v })));
  }
  return out;
}

/** Sets a gauge, or removes its sample when the value is unknown (null/undefined). */
export function setOrClear(g: Gauge<string>, value: number | null | undefined, labels?: Record<string, string>): void {
  if (value === null || value === undefined) {
    if (labels) g.remove(labels);
    else g.remove();
  } else if (labels) g.set(labels, value);
  else g.set(value);
}

/** Makes a counter read `value` (a cumulative count kept elsewhere, e.g. in stats()). */
export function setCounter(c: Counter<string>, value: number, labels?: Record<string, string>): void {
  const v = Number.isFinite(value) && value > 0 ? value : 0;
  if (labels) {
    c.remove(labels);
    c.inc(labels, v);
  } else {
    c.reset();
    c.inc(v);
  }
}

/**
 * Wraps `read` so that the collect callbacks of one scrape share one snapshot: prom-client runs
 * every callback synchronously at the start of a scrape, and the cache is dropped right after
 * (the next microtask). Worst case, a callback reads again: still correct, only slower.
 */
export function perScrape<T>(read: () => T): () => T {
  let cached: { value: T } | null = null;
  return () => {
    if (cached === null) {
      cached = { value: read() };
      queueMicrotask(() => {
        cached = null;
      });
    }
    return cached.value;
  };
}
