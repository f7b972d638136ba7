/**
 * The coordinator's metrics, read from its stats() at each scrape (one stats() call per scrape),
 * plus the one histogram stats() cannot give:
 *
 *   const metrics = coordinatorMetrics(registry, () => coord.stats());
 *   metrics.observeBroadcast(seconds);   // one worker received one weights version (Begin..End)
 *
 * CoordinatorStatsSample picks the fields read here from CoordinatorStats (router.ts) and its parts.
 */
import type { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { COORDINATOR_METRICS, type CoordinatorMetricKey } from '../shared/metrics/definitions.js';
import { createMetric, perScrape, setCounter, setOrClear, type AnyMetric } from '../shared/metrics/registry.js';
import type { LedgerCounters, LedgerGauges } from './ledger.js';
import type { CoordinatorStats } from './router.js';
import type { WeightsStats } from './weights.js';

/** The part of the coordinator's CoordinatorStats (router.ts) read here. */
export interface CoordinatorStatsSample {
  workers: readonly Pick<CoordinatorStats['workers'][number], 'ready' | 'capacity'>[];
  learner: CoordinatorStats['learner'];
  policyVersion: CoordinatorStats['policyVersion'];
  epoch?: CoordinatorStats['epoch'];
  ledger: Pick<
    LedgerCounters & LedgerGauges,
    | 'queued' | 'leasedGroups' | 'activeLeases' | 'awaiting' | 'leases' | 'expiredLeases' | 'enqueued' | 'completed' | 'redispatched'
    | 'exhausted' | 'groupFailures' | 'admitted' | 'droppedStale' | 'droppedDuplicate' | 'failed' | 'duplicates' | 'invalidResults'
  >;
  weights: Omit<WeightsStats, 'transfersStarted' | 'framesSent'>;
}

export interface CoordinatorMetrics {
  /** One weights version fully sent to one worker, seconds from its Begin frame to its End frame. */
  observeBroadcast(seconds: number): void;
}

type Reader = (s: CoordinatorStatsSample) => number | null;

const GAUGES: Partial<Record<CoordinatorMetricKey, Reader>> = {
  workersConnected: (s) => s.workers.length,
  workersReady: (s) => s.workers.filter((w) => w.ready).length,
  workerCapacity: (s) => s.workers.reduce((a, w) => a + w.capacity, 0),
  learnerConnected: (s) => (s.learner === null ? 0 : 1),
  policyVersion: (s) => s.policyVersion,
  resumeEpoch: (s) => s.epoch ?? null,
  queuedGroups: (s) => s.ledger.queued,
  leasedGroups: (s) => s.ledger.leasedGroups,
  outboxGroups: (s) => s.ledger.awaiting,
  leasesInFlight: (s) => s.ledger.activeLeases,
  weightsVersionBytes: (s) => (s.weights.version === null ? null : s.weights.bytes),
};

const COUNTERS: Partial<Record<CoordinatorMetricKey, (s: CoordinatorStatsSample) => number>> = {
  leases: (s) => s.ledger.leases,
  leasesExpired: (s) => s.ledger.expiredLeases,
  groupsEnqueued: (s) => s.ledger.enqueued,
  groupsCompleted: (s) => s.ledger.completed,
  groupsRedispatched: (s) => s.ledger.redispatched,
  groupsExhausted: (s) => s.ledger.exhausted,
  groupFailures: (s) => s.ledger.groupFailures,
  duplicateResults: (s) => s.ledger.duplicates,
  invalidResults: (s) => s.ledger.invalidResults,
  weightsVersions: (s) => s.weights.versionsReceived,
  weightsUploadErrors: (s) => s.weights.uploadErrors,
  broadcastBytes: (s) => s.weights.bytesSent,
};

/** Counters with a fixed label: label value -> reader. */
const LABELLED: Partial<Record<CoordinatorMetricKey, Record<string, (s: CoordinatorStatsSample) => number>>> = {
  verdicts: {
    admitted: (s) => s.ledger.admitted,
    dropped_stale: (s) => s.ledger.droppedStale,
    dropped_duplicate: (s) => s.ledger.droppedDuplicate,
    failed: (s) => s.ledger.failed,
  },
  broadcasts: {
    completed: (s) => s.weights.transfersCompleted,
    abandoned: (s) => s.weights.transfersAbandoned,
  },
};

export function coordinatorMetrics(registry: Registry, stats: () => CoordinatorStatsSample): CoordinatorMetrics {
  const snap = perScrape(stats);
  const m = {} as Record<CoordinatorMetricKey, AnyMetric>;
  for (const [key, spec] of Object.entries(COORDINATOR_METRICS) as [CoordinatorMetricKey, (typeof COORDINATOR_METRICS)[CoordinatorMetricKey]][]) {
    const g = GAUGES[key];
    const c = COUNTERS[key];
    const labelled = LABELLED[key];
    let collect: ((metric: AnyMetric) => void) | undefined;
    if (g) collect = (metric) => setOrClear(metric as Gauge<string>, g(snap()));
    else if (c) collect = (metric) => setCounter(metric as Counter<string>, c(snap()));
    else if (labelled) {
      const label = spec.labelNames![0];
      collect = (metric) => {
        const s = snap();
        for (const [value, read] of Object.entries(labelled)) setCounter(metric as Counter<string>, read(s), { [label]: value });
      };
    }
    m[key] = createMetric(registry, spec, collect);
  }
  return {
    observeBroadcast(seconds) {
      (m.broadcastSeconds as Histogram<string>).observe(Math.max(0, seconds));
    },
  };
}
