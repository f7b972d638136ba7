/**
 * A rollout worker's metrics. Counters and gauges are read from the worker's stats() at each
 * scrape (nothing to call for them); the latency histograms need one call per event:
 *
 *   const metrics = workerMetrics(registry, () => handle.stats());
 *   metrics.observeBatch({ groups, sampleSeconds, rewardSeconds });   // after each sampling call
 *   metrics.observeWeightsLoad(seconds);                              // after each weights swap
 *
 * WorkerStatsSample picks the fields read here from the worker's own WorkerStats.
 */
import type { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { WORKER_METRICS, type WorkerMetricKey } from '../shared/metrics/definitions.js';
import { createMetric, perScrape, setCounter, setOrClear, type AnyMetric } from '../shared/metrics/registry.js';
import type { WorkerStats } from './main.js';

/** The part of the worker's WorkerStats (main.ts) read here. */
export type WorkerStatsSample = Pick<
  WorkerStats,
  | 'connected' | 'policyVersion' | 'waitingGroups' | 'groupsPerCall' | 'leases' | 'leasesRevoked' | 'groupsDone' | 'groupsFailed'
  | 'groupsDropped' | 'batches' | 'completions' | 'tokensGenerated'
>;

/** One batched sampling call: how many groups it held and its wall times. */
export interface WorkerBatchSample {
  groups: number;
  sampleSeconds: number;
  rewardSeconds: number;
}

export interface WorkerMetrics {
  observeBatch(b: WorkerBatchSample): void;
  observeWeightsLoad(seconds: number): void;
}

type Reader = (s: WorkerStatsSample) => number | null;

const GAUGES: Partial<Record<WorkerMetricKey, Reader>> = {
  connected: (s) => (s.connected ? 1 : 0),
  policyVersion: (s) => s.policyVersion,
  waitingGroups: (s) => s.waitingGroups,
  groupsPerCall: (s) => s.groupsPerCall,
};

const COUNTERS: Partial<Record<WorkerMetricKey, Reader>> = {
  leases: (s) => s.leases,
  leasesRevoked: (s) => s.leasesRevoked,
  samplingCalls: (s) => s.batches,
  completions: (s) => s.completions,
  tokensGenerated: (s) => s.tokensGenerated,
};

export function workerMetrics(registry: Registry, stats: () => WorkerStatsSample): WorkerMetrics {
  const snap = perScrape(stats);
  const m = {} as Record<WorkerMetricKey, AnyMetric>;
  for (const [key, spec] of Object.entries(WORKER_METRICS) as [WorkerMetricKey, (typeof WORKER_METRICS)[WorkerMetricKey]][]) {
    const g = GAUGES[key];
    const c = COUNTERS[key];
    let collect: ((metric: AnyMetric) => void) | undefined;
    if (g) collect = (metric) => setOrClear(metric as Gauge<string>, g(snap()));
    else if (c) collect = (metric) => setCounter(metric as Counter<string>, c(snap()) ?? 0);
    else if (key === 'groups') {
      collect = (metric) => {
        const s = snap();
        setCounter(metric as Counter<string>, s.groupsDone, { result: 'done' });
        setCounter(metric as Counter<string>, s.groupsFailed, { result: 'failed' });
        setCounter(metric as Counter<string>, s.groupsDropped, { result: 'dropped' });
      };
    }
    m[key] = createMetric(registry, spec, collect);
  }
  const histogram = (k: WorkerMetricKey) => m[k] as Histogram<string>;

  return {
    observeBatch(b) {
      if (!(b.groups > 0)) return;
      // one observation per group: a call's time shared evenly among the groups it sampled
      const sample = Math.max(0, b.sampleSeconds) / b.groups;
      const reward = Math.max(0, b.rewardSeconds) / b.groups;
      for (let i = 0; i < b.groups; i++) {
        histogram('rolloutSeconds').observe(sample);
        histogram('rewardSeconds').observe(reward);
      }
    },
    observeWeightsLoad(seconds) {
      histogram('weightsLoadSeconds').observe(Math.max(0, seconds));
    },
  };
}
