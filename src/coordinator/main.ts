/**
 * The coordinator role: one HTTP + WebSocket port where workers and the learner meet.
 *
 *   const coord = await startCoordinator({ port: 0, token: 's3cret' });
 *   coord.url;      // ws://127.0.0.1:<port>
 *   coord.stats();  // ledger counters, workers, weights (also at GET /healthz)
 *   coord.metrics;  // its prom-client Registry, served at GET /metrics on the same port
 *   await coord.close();
 *
 * Options default to PROTOCOL_DEFAULTS; the global config maps onto them (see docs/protocol.md).
 * The grpo_coordinator_* metrics are read from stats() at each scrape, so they cost nothing
 * between scrapes. Process metrics (CPU, memory, event loop) are added with `processMetrics`:
 * the `grpo coordinator` command turns them on; `grpo train` leaves them to the learner's
 * registry in the same process, and tests leave them off (each set starts event-loop monitors).
 */
import type { Registry } from 'prom-client';
import { GrpoError } from '../shared/errors.js';
import { PROTOCOL_DEFAULTS, stderrLogger } from '../shared/protocol.js';
import type { ProtocolLogger } from '../shared/protocol.js';
import { CHUNK_HEADER_BYTES } from '../shared/codec.js';
import { createMetricsRegistry } from '../shared/metrics/index.js';
import { coordinatorMetrics } from './prometheus.js';
import { resolveTokens } from './auth.js';
import { Router } from './router.js';
import type { CoordinatorStats } from './router.js';
import { CoordinatorServer } from './server.js';

export type { CoordinatorStats } from './router.js';

export interface CoordinatorOptions {
  host: string; // bind address; loopback unless told otherwise
  port: number; // 0 = any free port
  token: string | null | undefined; // shared token of both roles; null/undefined = env GRPO_TOKEN; if unset too, no auth (loopback only)
  workerToken: string | undefined; // the workers' own token; undefined = env GRPO_WORKER_TOKEN, else the shared token
  learnerToken: string | undefined; // the learner's own token; undefined = env GRPO_LEARNER_TOKEN, else the shared token
  heartbeatMs: number;
  peerTimeoutMs: number;
  helloTimeoutMs: number;
  leaseMs: number;
  sweepMs: number;
  maxPayloadBytes: number;
  maxWeightsBytes: number;
  weightsChunkBytes: number; // checked against maxPayloadBytes; the learner picks the real size
  highWaterMarkBytes: number;
  maxGroupAttempts: number;
  maxRedispatches: number;
  maxHeldResults: number;
  maxBadFrames: number;
  maxBufferedBytes: number;
  log: ProtocolLogger;
  processMetrics: boolean; // add the process metrics to GET /metrics
  metricsInstance: string | undefined; // `instance` label; default <hostname>:<pid>
}

export const COORDINATOR_DEFAULTS: Readonly<CoordinatorOptions> = Object.freeze({
  ...PROTOCOL_DEFAULTS,
  host: '127.0.0.1',
  port: 7070,
  token: undefined,
  workerToken: undefined,
  learnerToken: undefined,
  log: stderrLogger,
  processMetrics: false,
  metricsInstance: undefined,
});

export interface CoordinatorHandle {
  readonly port: number;
  readonly url: string; // ws://host:port
  stats(): CoordinatorStats;
  readonly metrics: Registry; // what GET /metrics serves
  close(): Promise<void>;
}

function checkOptions(o: CoordinatorOptions): void {
  const positive = ['heartbeatMs', 'peerTimeoutMs', 'helloTimeoutMs', 'leaseMs', 'sweepMs', 'maxPayloadBytes', 'maxWeightsBytes',
    'weightsChunkBytes', 'highWaterMarkBytes', 'maxGroupAttempts', 'maxHeldResults', 'maxBadFrames', 'maxBufferedBytes'] as const;
  for (const k of positive) {
    if (!(Number.isFinite(o[k]) && o[k] > 0)) throw new GrpoError('GRPO_ERR_CONFIG', `coordinator option ${k} = ${o[k]} must be a positive number`);
  }
  if (o.weightsChunkBytes + CHUNK_HEADER_BYTES > o.maxPayloadBytes) {
    throw new GrpoError('GRPO_ERR_CONFIG', `weightsChunkBytes ${o.weightsChunkBytes} + ${CHUNK_HEADER_BYTES} exceeds maxPayloadBytes ${o.maxPayloadBytes}; lower the chunk size`);
  }
  if (o.peerTimeoutMs <= o.heartbeatMs) {
    throw new GrpoError('GRPO_ERR_CONFIG', `peerTimeoutMs ${o.peerTimeoutMs} must exceed heartbeatMs ${o.heartbeatMs} (3x or more is sensible)`);
  }
}

export async function startCoordinator(options: Partial<CoordinatorOptions> = {}): Promise<CoordinatorHandle> {
  const defined = Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined));
  const o: CoordinatorOptions = { ...COORDINATOR_DEFAULTS, ...defined, token: options.token };
  checkOptions(o);
  const env = { ...process.env };
  if (o.workerToken !== undefined) env.GRPO_WORKER_TOKEN = o.workerToken;
  if (o.learnerToken !== undefined) env.GRPO_LEARNER_TOKEN = o.learnerToken;
  const tokens = resolveTokens(o.token, o.host, env);
  const registry = createMetricsRegistry({ role: 'coordinator', instance: o.metricsInstance, processMetrics: o.processMetrics });
  // the router calls onWeightsSent only once workers are connected, long after `metrics` exists
  const router = new Router({ ...o, onWeightsSent: (seconds) => metrics.observeBroadcast(seconds) });
  const metrics = coordinatorMetrics(registry, () => router.stats());
  const server = new CoordinatorServer({ ...o, tokens, metrics: registry }, router);
  const port = await server.listen();
  const hostInUrl = o.host.includes(':') ? `[${o.host}]` : o.host;
  const url = `ws://${hostInUrl === '0.0.0.0' ? '127.0.0.1' : hostInUrl}:${port}`;
  o.log('info', 'coordinator_listening', { url, auth: { worker: tokens.worker !== null, learner: tokens.learner !== null, separate: tokens.learner !== tokens.worker }, leaseMs: o.leaseMs, heartbeatMs: o.heartbeatMs });
  let closing: Promise<void> | null = null;
  return {
    port,
    url,
    stats: () => router.stats(),
    metrics: registry,
    close: () => (closing ??= server.close()),
  };
}
