/**
 * Prometheus metrics of every role and the learner's training_stats.json (see docs/metrics.md):
 *
 *   definitions.ts  every metric once: name, type, help, labels, buckets
 *   registry.ts     createMetricsRegistry({ role, instance }): default labels and process metrics
 *   learner.ts      learnerMetrics(registry, ...).observeStep / observeEval / observePublish
 *   worker.ts       workerMetrics(registry, stats).observeBatch / observeWeightsLoad
 *   coordinator.ts  coordinatorMetrics(registry, stats).observeBroadcast
 *   server.ts       serveMetrics / serveMetricsIfEnabled (metrics_port 0 = off): GET /metrics and GET /healthz
 *   files.ts        TrainingStatsWriter: training_stats.json
 */
export * from './definitions.js';
export * from './registry.js';
export * from './learner.js';
export * from './worker.js';
export * from './coordinator.js';
export * from './server.js';
export * from './files.js';
