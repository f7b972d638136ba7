/**
 * Serving the registries over HTTP:
 *
 *   const server = await serveMetrics([registry], { port: config.metrics_port, host: '0.0.0.0', health });
 *   server.url;            // http://host:port/metrics
 *   await server.close();
 *
 * Routes: `GET /metrics` (Prometheus text format 0.0.4; several registries are concatenated,
 * which is valid as long as no metric name repeats: `grpo train` serves the learner's and the
 * coordinator's together), `GET /healthz` (200 with `{"ok":true,...}`, or 503 when `health`
 * says not ok: the Kubernetes readiness probe of learners and workers), anything else 404.
 *
 * Port 0 here means "any free port" (tests); the config's `metrics_port: 0` means "no metrics
 * server", so a role calls serveMetricsIfEnabled (serveMetrics when metrics_port > 0). The coordinator serves
 * /metrics on its own port: its HTTP server calls handleMetricsRequest for that path.
 */
import { createServer } from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Registry } from 'prom-client';
import { GrpoError } from '../errors.js';

/** Ports used by the deployment files (deploy/): the coordinator serves /metrics on its own port. */
export const DEFAULT_METRICS_PORTS = Object.freeze({ coordinator: 7070, learner: 9400, worker: 9401 });

/** Content type of the Prometheus text exposition format. */
export const METRICS_CONTENT_TYPE = Registry.PROMETHEUS_CONTENT_TYPE;

export interface HealthReport {
  ok: boolean;
  [detail: string]: unknown;
}

export interface MetricsServerOptions {
  port: number; // 0 = any free port
  host: string; // '0.0.0.0' in containers; '127.0.0.1' to keep it on the machine
  health?: () => HealthReport; // default: always ok
}

export interface MetricsServer {
  readonly port: number;
  readonly url: string; // http://host:port/metrics
  close(): Promise<void>;
}

type Registries = Registry | readonly Registry[];

/** The exposition text of one or more registries, in order. */
export async function renderMetrics(registries: Registries): Promise<string> {
  const list = Array.isArray(registries) ? registries : [registries as Registry];
  const texts = await Promise.all(list.map((r) => r.metrics()));
  const seen = new Set<string>();
  for (const text of texts) {
    for (const m of text.matchAll(/^# TYPE (\S+)/gm)) {
      if (seen.has(m[1])) {
        throw new GrpoError('GRPO_ERR_CONFIG', `metric ${m[1]} is in two of the registries served together; create all but one with processMetrics: false`);
      }
      seen.add(m[1]);
    }
  }
  return texts.map((t) => t.trimEnd()).filter((t) => t.length > 0).join('\n\n') + '\n';
}

/** Answers `GET /metrics` on `res`; for embedding in another HTTP server (the coordinator's). */
export async function handleMetricsRequest(registries: Registries, res: ServerResponse): Promise<void> {
  try {
    const body = await renderMetrics(registries);
    res.writeHead(200, { 'content-type': METRICS_CONTENT_TYPE });
    res.end(body);
  } catch (err) {
    // a collect callback threw: the scrape fails visibly (Prometheus marks the target down)
    res.writeHead(500, { 'content-type': 'text/plain' });
    res.end(`metrics collection failed: ${(err as Error).message}\n`);
  }
}

function route(registries: Registries, health: () => HealthReport, req: IncomingMessage, res: ServerResponse): void {
  const path = (req.url ?? '/').split('?')[0];
  if (req.method === 'GET' && path === '/metrics') {
    void handleMetricsRequest(registries, res);
  } else if (req.method === 'GET' && path === '/healthz') {
    let report: HealthReport;
    try {
      report = health();
    } catch (err) {
      report = { ok: false, error: (err as Error).message };
    }
    res.writeHead(report.ok ? 200 : 503, { 'content-type': 'application/json' });
    res.end(JSON.stringify(report));
  } else {
    res.writeHead(404, { 'content-type': 'text/plain' });
    res.end(`no route ${req.method} ${path}; try GET /metrics or GET /healthz\n`);
  }
}

export async function serveMetrics(registries: Registries, opts: MetricsServerOptions): Promise<MetricsServer> {
  if (!Number.isInteger(opts.port) || opts.port < 0 || opts.port > 65535) {
    throw new GrpoError('GRPO_ERR_CONFIG', `metrics port ${opts.port} must be an integer in 0-65535 (0 = any free port)`);
  }
  const health = opts.health ?? (() => ({ ok: true }));
  const server: Server = createServer((req, res) => route(registries, health, req, res));
  const port = await new Promise<number>((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException): void => {
      const why = err.code ?? err.message;
      reject(new GrpoError('GRPO_ERR_CONFIG', `cannot serve /metrics on ${opts.host}:${opts.port}: ${why}; choose another --metrics-port (0 turns the metrics server off)`, { cause: err }));
    };
    server.once('error', onError);
    server.listen(opts.port, opts.host, () => {
      server.off('error', onError);
      resolve((server.address() as AddressInfo).port);
    });
  });
  const shown = opts.host.includes(':') ? `[${opts.host}]` : opts.host;
  let closing: Promise<void> | null = null;
  return {
    port,
    url: `http://${shown === '0.0.0.0' ? '127.0.0.1' : shown}:${port}/metrics`,
    close: () =>
      (closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      })),
  };
}

/**
 * A role's metrics endpoint as the config asks for it: `serveMetrics` when `port` > 0, null for
 * `metrics_port: 0` (off).
 */
export async function serveMetricsIfEnabled(registries: Registries, opts: MetricsServerOptions): Promise<MetricsServer | null> {
  return opts.port > 0 ? serveMetrics(registries, opts) : null;
}

/**
 * The metrics ports of `grpo train --metrics-port base` on one machine: the learner (with the
 * in-process coordinator) on `base`, local worker i on `base + 1 + i`.
 */
export function localMetricsPorts(base: number, workers: number): { learner: number; workers: number[] } {
  if (!Number.isInteger(base) || base < 1 || base + workers > 65535) {
    throw new GrpoError('GRPO_ERR_CONFIG', `metrics port ${base} with ${workers} workers needs ports ${base}-${base + workers} within 1-65535`);
  }
  return { learner: base, workers: Array.from({ length: workers }, (_, i) => base + 1 + i) };
}
