/**
 * The learner's Prometheus side: a registry with role `learner`, the learnerMetrics helpers the
 * loop calls once per step, evaluation and weights upload, and GET /metrics + /healthz on
 * `metrics_port` (bound to `metrics_host`; off at 0).
 *
 *   const t = await startLearnerTelemetry({ config, inbox: () => inbox, connected: () => client.connected, log });
 *   t.metrics.observeStep(stepMetrics, stepContext(...));
 *   await t.close();
 *
 * `grpo train` runs the coordinator in the learner's process and passes its registry in
 * `alsoServe`: one port then serves both roles, with the process metrics once (in the learner's).
 * /healthz answers 200 while the learner is connected to the coordinator (the Kubernetes
 * readiness probe of the learner StatefulSet), 503 otherwise.
 */
import type { Registry } from 'prom-client';
import type { Config } from '../shared/config.js';
import { createMetricsRegistry, serveMetricsIfEnabled, type MetricsServer } from '../shared/metrics/index.js';
import { learnerMetrics, type LearnerMetrics, type LearnerStepContext } from './prometheus.js';
import type { ProtocolLogger } from '../shared/protocol.js';

export interface LearnerTelemetryOptions {
  config: Config; // metrics_port, metrics_host, max_staleness
  registry?: Registry; // default: a new learner registry, with process metrics when served
  alsoServe?: readonly Registry[]; // served on the same port after the learner's
  inbox: () => { buffered: number; pending: number }; // read at each scrape
  connected: () => boolean; // to the coordinator: /healthz
  log: ProtocolLogger;
}

export interface LearnerTelemetry {
  readonly registry: Registry;
  readonly metrics: LearnerMetrics;
  readonly server: MetricsServer | null; // null with metrics_port 0
  close(): Promise<void>;
}

export async function startLearnerTelemetry(o: LearnerTelemetryOptions): Promise<LearnerTelemetry> {
  const port = o.config.metrics_port;
  const registry = o.registry ?? createMetricsRegistry({ role: 'learner', processMetrics: port > 0 });
  const metrics = learnerMetrics(registry, { maxStaleness: o.config.max_staleness, inbox: o.inbox, log: o.log });
  const server = await serveMetricsIfEnabled([registry, ...(o.alsoServe ?? [])], {
    port,
    host: o.config.metrics_host,
    health: () => {
      const connected = o.connected();
      return { ok: connected, role: 'learner', connected, ...o.inbox() };
    },
  });
  if (server !== null) o.log('info', 'metrics_listening', { url: server.url });
  return {
    registry,
    metrics,
    server,
    close: async () => {
      await server?.close();
    },
  };
}

/**
 * What the loop knows about a step beside the trainer's metrics. `versionBefore` is the policy
 * version the step started from; `trained` are the groups the step trained on (replayed ones
 * included). A group's staleness is versionBefore minus the version that sampled it (the
 * definition of StepMetrics.stalenessMax).
 */
export function stepContext(
  x: { step: number; waitSeconds: number; accuracy: number; versionBefore: number },
  trained: readonly { policyVersion: number }[],
): LearnerStepContext {
  return {
    step: x.step,
    waitSeconds: x.waitSeconds,
    accuracy: x.accuracy,
    groupStaleness: trained.map((g) => x.versionBefore - g.policyVersion),
  };
}
