/**
 * Sample inputs of the role helpers (shaped like the roles' real stats and step metrics) and
 * registries holding every role's metrics, fed with them.
 */
import type { Registry } from 'prom-client';
import { coordinatorMetrics, type CoordinatorStatsSample } from '../../../src/coordinator/prometheus.js';
import { learnerMetrics, type LearnerStepContext, type LearnerStepSample } from '../../../src/learner/prometheus.js';
import { createMetricsRegistry } from '../../../src/shared/metrics/registry.js';
import { workerMetrics, type WorkerStatsSample } from '../../../src/rollout-worker/prometheus.js';

export function stepSample(over: Partial<LearnerStepSample> = {}, batch: Partial<LearnerStepSample['batch']> = {}): LearnerStepSample {
  return {
    policyVersion: 3,
    lr: 1e-3,
    loss: 0.25,
    kl: 0.012,
    entropy: 1.7,
    clipLow: 0.01,
    clipHigh: 0.02,
    clipRegion: 0.03,
    gradNorm: 0.8,
    tokens: 96,
    seconds: 0.42,
    stalenessMax: 1,
    ...over,
    batch: {
      groups: 4,
      rewardMean: 0.55,
      rewardStd: 0.4,
      rewardFunctions: { correct: { mean: 0.5, std: 0.5 }, format: { mean: 0.9, std: 0.3 } },
      fracRewardZeroStd: 0.25,
      lengthMean: 5.5,
      lengthMin: 2,
      lengthMax: 8,
      truncatedShare: 0.125,
      advantageMean: 0,
      advantageStd: 0.9,
      logprobMean: -0.7,
      ...batch,
    },
  };
}

export function stepContext(over: Partial<LearnerStepContext> = {}): LearnerStepContext {
  return { step: 3, waitSeconds: 0.05, accuracy: 0.5, groupStaleness: [0, 1, 1, 0], ...over };
}

export function workerStats(over: Partial<WorkerStatsSample> = {}): WorkerStatsSample {
  return {
    connected: true,
    policyVersion: 2,
    waitingGroups: 1,
    groupsPerCall: 4,
    leases: 5,
    leasesRevoked: 1,
    groupsDone: 12,
    groupsFailed: 1,
    groupsDropped: 2,
    batches: 4,
    completions: 96,
    tokensGenerated: 700,
    ...over,
  };
}

export function coordinatorStats(): CoordinatorStatsSample {
  return {
    workers: [
      { ready: true, capacity: 4 },
      { ready: false, capacity: 2 },
    ],
    learner: { sessionId: 'l1', name: 'learner@host' },
    policyVersion: 3,
    epoch: 2,
    ledger: {
      queued: 7, leasedGroups: 4, activeLeases: 2, awaiting: 1, leases: 10, expiredLeases: 1, enqueued: 30, completed: 20,
      redispatched: 3, exhausted: 0, groupFailures: 2, admitted: 18, droppedStale: 1, droppedDuplicate: 0, failed: 1,
      duplicates: 2, invalidResults: 0,
    },
    weights: { version: 3, bytes: 4096, versionsReceived: 4, uploadErrors: 0, transfersCompleted: 7, transfersAbandoned: 1, bytesSent: 30000 },
  };
}

/** One registry per role (no process metrics), each holding its role's metrics with a step/batch/eval observed. */
export function allRolesRegistries(): Registry[] {
  const learner = createMetricsRegistry({ role: 'learner', instance: 'learner-0', processMetrics: false });
  const lm = learnerMetrics(learner, { maxStaleness: 1, inbox: () => ({ buffered: 2, pending: 6 }) });
  lm.observeStep(stepSample(), stepContext());
  lm.observeEval({ accuracy: 0.4, passAtK: 0.6, k: 4 });
  lm.observePublish(0.2, 4096);

  const worker = createMetricsRegistry({ role: 'worker', instance: 'worker-0', processMetrics: false });
  workerMetrics(worker, () => workerStats()).observeBatch({ groups: 4, sampleSeconds: 1.2, rewardSeconds: 0.01 });

  const coordinator = createMetricsRegistry({ role: 'coordinator', instance: 'coordinator-0', processMetrics: false });
  coordinatorMetrics(coordinator, coordinatorStats).observeBroadcast(0.3);
  return [learner, worker, coordinator];
}
