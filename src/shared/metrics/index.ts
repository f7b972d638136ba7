/**
 * Prometheus metrics shared by every role, and the learner's training_stats.json (see docs/metrics.md);
 * each role's own metrics live in its folder (learner/, rollout-worker/, coordinator/ prometheus.ts):
 *
 *   definitions.ts  every metric once: name, type, help, labels, buckets
 *   registry.ts     createMetricsRegistry({ role, instance }): default labels and process metrics
 *   server.ts       serveMetrics / serveMetricsIfEnabled (metrics_port 0 = off): GET /metrics and GET /healthz
 *   files.ts        TrainingStatsWriter: training_stats.json
 */
export * from './definitions.js';
export * from './registry.js';
export * from './server.js';
export * from './files.js';
