import { describe, expect, it } from 'vitest';
import { createMetricsRegistry } from '../../src/shared/metrics/registry.js';
import { workerMetrics } from '../../src/rollout-worker/prometheus.js';
import { workerStats } from '../shared/metrics/fixtures.js';
import { parseExposition, type Sample } from '../shared/metrics/helpers.js';

function value(samples: Sample[], name: string, labels: Record<string, string> = {}): number | undefined {
  return samples.find((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))?.value;
}

describe('workerMetrics', () => {
  it('reads counters and gauges from the worker stats at each scrape', async () => {
    const registry = createMetricsRegistry({ role: 'worker', instance: 'w', processMetrics: false });
    let stats = workerStats();
    let reads = 0;
    workerMetrics(registry, () => {
      reads += 1;
      return stats;
    });
    let s = parseExposition(await registry.metrics()).samples;
    expect(reads).toBe(1);
    expect(value(s, 'grpo_worker_connected')).toBe(1);
    expect(value(s, 'grpo_worker_policy_version')).toBe(2);
    expect(value(s, 'grpo_worker_leases_total')).toBe(5);
    expect(value(s, 'grpo_worker_leases_revoked_total')).toBe(1);
    expect(value(s, 'grpo_worker_groups_total', { result: 'done' })).toBe(12);
    expect(value(s, 'grpo_worker_groups_total', { result: 'failed' })).toBe(1);
    expect(value(s, 'grpo_worker_groups_total', { result: 'dropped' })).toBe(2);
    expect(value(s, 'grpo_worker_sampling_calls_total')).toBe(4);
    expect(value(s, 'grpo_worker_completions_total')).toBe(96);
    expect(value(s, 'grpo_worker_tokens_generated_total')).toBe(700);

    stats = workerStats({ connected: false, policyVersion: null, tokensGenerated: 900 });
    s = parseExposition(await registry.metrics()).samples;
    expect(value(s, 'grpo_worker_connected')).toBe(0);
    expect(value(s, 'grpo_worker_policy_version')).toBeUndefined(); // no weights loaded: no sample
    expect(value(s, 'grpo_worker_tokens_generated_total')).toBe(900);
  });

  it('shares a batched call among its groups in the per-group histograms', async () => {
    const registry = createMetricsRegistry({ role: 'worker', processMetrics: false });
    const m = workerMetrics(registry, () => workerStats());
    m.observeBatch({ groups: 4, sampleSeconds: 2, rewardSeconds: 0.04 });
    m.observeBatch({ groups: 0, sampleSeconds: 1, rewardSeconds: 1 }); // nothing sampled: nothing observed
    m.observeWeightsLoad(0.5);
    const s = parseExposition(await registry.metrics()).samples;
    expect(value(s, 'grpo_worker_group_rollout_seconds_count')).toBe(4);
    expect(value(s, 'grpo_worker_group_rollout_seconds_sum')).toBeCloseTo(2, 12);
    expect(value(s, 'grpo_worker_group_rollout_seconds_bucket', { le: '0.5' })).toBe(4);
    expect(value(s, 'grpo_worker_group_reward_seconds_sum')).toBeCloseTo(0.04, 12);
    expect(value(s, 'grpo_worker_weights_load_seconds_count')).toBe(1);
  });
});
