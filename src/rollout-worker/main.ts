/**
 * The rollout worker role: connects to the coordinator, builds its model, tokenizer, task and
 * reward pool from the learner's RunSpec, loads each weights version between sampling calls, and
 * turns leases into scored groups (the loop itself is worker-loop.ts).
 *
 *   const w = await startWorker({ coordinator: 'ws://127.0.0.1:7070', token: null, capacity: 4, rewardThreads: 1, backend: 'auto' });
 *   w.stats();        // counters: groups done/failed, tokens, seconds sampling and scoring, ...
 *   w.metrics;        // prom-client Registry (role worker, instance = the worker's name)
 *   await w.stop();   // finishes the batch in progress, closes the pool and the connection
 *
 * With `metricsPort` > 0 the worker serves GET /metrics and GET /healthz there (200 while
 * connected to the coordinator: the Kubernetes readiness probe). Counters and gauges are read
 * from stats() at each scrape; the loop reports the latency histograms (worker-loop.ts).
 *
 * Every event is one structured log line: joined, run_spec, weights_loaded, batch,
 * group_failed, lease_revoked, disconnected, stopped, and errors with their codes.
 */
import { hostname } from 'node:os';
import type { Registry } from 'prom-client';
import { initEngine } from '../engine/backend.js';
import type { BackendChoice } from '../engine/backend.js';
import { GrpoError, toGrpoError } from '../shared/errors.js';
import { createMetricsRegistry, serveMetricsIfEnabled, type MetricsServer } from '../shared/metrics/index.js';
import { workerMetrics } from './prometheus.js';
import { Kind, stderrLogger } from '../shared/protocol.js';
import type { ProtocolLogger } from '../shared/protocol.js';
import { ProtocolClient } from '../shared/ws-client.js';
import type { AdapterPath } from '../model/llama.js';
import { WorkerLoop } from './worker-loop.js';
import { workerTrust } from './trust.js';
import type { WorkerCounters } from './worker-loop.js';

export interface WorkerOptions {
  coordinator: string; // ws://host:port
  token: string | null; // shared secret; null sends none (the command resolves GRPO_TOKEN into this)
  name?: string; // shown in the coordinator's logs; default `worker-<pid>@<host>`
  capacity: number; // groups sampled at once (config worker_capacity)
  rewardThreads: number; // reward pool threads (config reward_threads)
  backend: BackendChoice;
  /** `--device N`: the Nth GPU in PCI order, else the WebGPU adapter index (engine/vulkan-devices.ts); null or absent = the first GPU. */
  device?: number | null;
  /** Module files/folders and remote reward URL prefixes a RunSpec may use (trust.ts); default: none. */
  allowedModules?: string | readonly string[];
  allowedRewardUrls?: string | readonly string[];
  log?: ProtocolLogger; // default: JSON lines on stderr
  signal?: AbortSignal; // aborting it stops the worker like stop()
  /** Client reconnect backoff, ms (protocol defaults when unset). */
  reconnectInitialMs?: number;
  reconnectMaxMs?: number;
  metricsPort?: number; // GET /metrics and /healthz on this port (config metrics_port); 0 or unset = off
  metricsHost?: string; // its bind address (config metrics_host); default 0.0.0.0
  loraSampling?: AdapterPath; // LoRA runs: adapters merged into the weights (default) or beside them (config lora_sampling)
}

export interface WorkerStats extends WorkerCounters {
  name: string;
  connected: boolean;
  session: string | null; // coordinator session id of the current connection
  runId: string | null;
  policyVersion: number | null; // weights version loaded
  waitingGroups: number; // leased, not yet taken for sampling
  groupsPerCall: number; // current groups per sampling call (capacity, or less on a slow machine)
}

export interface WorkerHandle {
  readonly name: string;
  /** Resolves when the worker has stopped; rejects with the coded error of a fatal failure (refused token, ...). */
  readonly done: Promise<void>;
  readonly metrics: Registry;
  readonly metricsUrl: string | null; // http://host:port/metrics when served
  stats(): WorkerStats;
  /** Finishes the batch in progress (its results are sent), then closes the pool and the connection. */
  stop(): Promise<void>;
}

function checkOptions(o: WorkerOptions): void {
  const fail = (msg: string): never => {
    throw new GrpoError('GRPO_ERR_CONFIG', msg);
  };
  if (!/^wss?:\/\/./.test(o.coordinator)) fail(`coordinator is ${JSON.stringify(o.coordinator)}; give a WebSocket URL such as ws://host:7070`);
  if (!Number.isInteger(o.capacity) || o.capacity < 1) fail(`worker capacity is ${o.capacity}; it must be an integer >= 1 (--worker-capacity)`);
  if (!Number.isInteger(o.rewardThreads) || o.rewardThreads < 1) fail(`reward threads is ${o.rewardThreads}; it must be an integer >= 1 (--reward-threads)`);
}

/** Starts the engine and the worker; does not wait for the coordinator (the client keeps retrying). */
export async function startWorker(options: WorkerOptions): Promise<WorkerHandle> {
  checkOptions(options);
  const log = options.log ?? stderrLogger;
  const name = options.name ?? `worker-${process.pid}@${hostname()}`;
  const engine = await initEngine({ backend: options.backend, device: options.device ?? null, log: () => {} });
  log('info', 'engine', { requested: engine.requested, backend: engine.backend, provider: engine.provider, native: engine.native, ...(engine.adapter ? { adapter: engine.adapter } : {}) });
  if (engine.notice) log('info', 'engine_fallback', { notice: engine.notice });
  if (engine.warning) log('warn', 'engine_degraded', { warning: engine.warning });

  const client = new ProtocolClient({
    url: options.coordinator,
    role: 'worker',
    name,
    capacity: options.capacity,
    token: options.token,
    reconnectInitialMs: options.reconnectInitialMs,
    reconnectMaxMs: options.reconnectMaxMs,
    log,
  });
  const metricsPort = options.metricsPort ?? 0;
  const registry = createMetricsRegistry({ role: 'worker', instance: name, processMetrics: metricsPort > 0 });
  // read at scrape time only, when `stats` (below) exists
  const metrics = workerMetrics(registry, () => stats());
  const trust = workerTrust(options.allowedModules ?? [], options.allowedRewardUrls ?? []);
  const loop = new WorkerLoop({ name, capacity: options.capacity, rewardThreads: options.rewardThreads, loraSampling: options.loraSampling, trust, send: (m) => client.send(m), log, metrics });
  let fatal: GrpoError | null = null;

  client.onEvent('welcome', (w) => {
    loop.sampleBudgetSeconds = w.peerTimeoutMs / 4 / 1000;
    log('info', 'joined', { name, session: w.sessionId, coordinator: options.coordinator, capacity: options.capacity, policyVersion: w.policyVersion, weightsVersion: w.weightsVersion });
  });
  client.onEvent('disconnect', ({ code, reason }) => {
    const lost = loop.onDisconnect();
    log(loop.stopping ? 'info' : 'warn', 'disconnected', { code, reason, abandonedGroups: lost });
  });
  client.onEvent('error', (e) => log('warn', 'client_error', { code: e.code, error: e.message }));
  client.onEvent('fatal', (e) => {
    fatal = e;
    log('error', 'worker_fatal', { code: e.code, error: e.message });
    loop.stop();
  });
  client.onEvent('weights', (w) => loop.onWeights(w));
  client.on(Kind.RunSpec, (m) => loop.onRunSpec(m.spec));
  client.on(Kind.Lease, (m) => loop.onLease(m));
  client.on(Kind.LeaseRevoked, (m) => loop.onLeaseRevoked(m.leaseId));

  const stats = (): WorkerStats => ({
    ...loop.counters,
    name,
    connected: client.connected,
    session: client.welcome?.sessionId ?? null,
    runId: loop.run.runId,
    policyVersion: loop.run.policyVersion,
    waitingGroups: loop.waitingGroups,
    groupsPerCall: loop.groupsPerCall,
  });

  let server: MetricsServer | null;
  try {
    server = await serveMetricsIfEnabled(registry, {
      port: metricsPort,
      host: options.metricsHost ?? '0.0.0.0',
      health: () => ({ ok: client.connected, connected: client.connected, session: client.welcome?.sessionId ?? null, policyVersion: loop.run.policyVersion }),
    });
  } catch (err) {
    await client.close();
    await loop.run.close();
    throw err;
  }
  if (server !== null) log('info', 'metrics_listening', { url: server.url });

  const onAbort = (): void => loop.stop();
  options.signal?.addEventListener('abort', onAbort, { once: true });
  if (options.signal?.aborted) loop.stop();

  const shutdown = async (): Promise<void> => {
    options.signal?.removeEventListener('abort', onAbort);
    await client.close();
    await loop.run.close();
    await server?.close();
    log('info', 'stopped', { ...stats() });
  };
  void client.start();
  const done = loop.runLoop().then(shutdown, async (err: unknown) => {
    fatal ??= toGrpoError(err, 'GRPO_ERR_INTERNAL');
    log('error', 'worker_fatal', { code: fatal.code, error: fatal.message });
    await shutdown();
  }).then(() => {
    if (fatal !== null) throw fatal;
  });
  done.catch(() => undefined); // a caller that only uses stop() gets no unhandled rejection

  return {
    name,
    done,
    metrics: registry,
    metricsUrl: server?.url ?? null,
    stats,
    stop: async () => {
      loop.stop();
      await done.catch(() => undefined);
    },
  };
}

/** Runs a worker until `signal` aborts (resolves) or a fatal error (rejects with its code). */
export async function runWorker(options: WorkerOptions): Promise<void> {
  const handle = await startWorker(options);
  await handle.done;
}
