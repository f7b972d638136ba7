/**
 * The naming rules of docs/metrics.md, asserted over the specs and over a live registry holding
 * every role's metrics: prefix, counters and only counters end in _total, base units, ratios,
 * histograms (never summaries) with sorted buckets, bounded labels, and docs/metrics.md in sync.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import {
  ALL_METRICS,
  COORDINATOR_METRICS,
  LEARNER_METRICS,
  seriesNames,
  WORKER_METRICS,
  type MetricSpec,
} from '../../../src/shared/metrics/definitions.js';
import { allRolesRegistries } from './fixtures.js';

const ROOT = fileURLToPath(new URL('../../..', import.meta.url));

/** Units Prometheus asks to avoid in favour of base units. */
const NON_BASE_UNITS = /_(milliseconds|microseconds|nanoseconds|minutes|hours|days|ms|us|ns|sec|kb|mb|gb|kilobytes|megabytes|gigabytes|bits|percent)(_|$)/;
/** The only label names of our own metrics (role and instance come from the registry). */
const ALLOWED_LABELS = new Set(['reward', 'result', 'verdict', 'reason']);

describe('metric specs', () => {
  it('are unique, snake_case, prefixed grpo_<role>_ and documented with help text', () => {
    const names = ALL_METRICS.map((m) => m.name);
    expect(new Set(names).size).toBe(names.length);
    const byRole: [string, Record<string, MetricSpec>][] = [
      ['learner', LEARNER_METRICS],
      ['worker', WORKER_METRICS],
      ['coordinator', COORDINATOR_METRICS],
    ];
    for (const [role, specs] of byRole) {
      for (const spec of Object.values(specs)) {
        expect(spec.name, spec.name).toMatch(new RegExp(`^grpo_${role}_[a-z][a-z0-9_]*[a-z0-9]$`));
        expect(spec.name, spec.name).not.toMatch(/__/);
        expect(spec.help.length, `${spec.name} help`).toBeGreaterThan(10);
      }
    }
  });

  it('end in _total exactly when they are counters', () => {
    for (const spec of ALL_METRICS) {
      if (spec.type === 'counter') expect(spec.name, spec.name).toMatch(/_total$/);
      else expect(spec.name, spec.name).not.toMatch(/_total$/);
    }
  });

  it('use base units and name them as a suffix', () => {
    for (const spec of ALL_METRICS) {
      expect(spec.name, spec.name).not.toMatch(NON_BASE_UNITS);
      // a time is in seconds and says so; sizes are in bytes
      if (/\b(time|seconds)\b/i.test(spec.help) && spec.type !== 'counter') expect(spec.name, spec.name).toMatch(/_seconds$/);
      if (/\bbytes\b/i.test(spec.help)) expect(spec.name, spec.name).toMatch(/_bytes(_total)?$/);
    }
  });

  it('keep ratios in 0-1 under a _ratio name', () => {
    const ratios = ALL_METRICS.filter((m) => m.name.endsWith('_ratio'));
    expect(ratios.length).toBeGreaterThanOrEqual(8);
    for (const spec of ratios) {
      expect(spec.type, spec.name).toBe('gauge');
      expect(spec.help, spec.name).toMatch(/0-1/);
    }
    for (const spec of ALL_METRICS.filter((m) => /0-1/.test(m.help))) expect(spec.name, spec.name).toMatch(/_ratio$/);
  });

  it('are histograms, never summaries, for latencies, with increasing buckets', () => {
    const histograms = ALL_METRICS.filter((m) => m.type === 'histogram');
    expect(histograms.map((h) => h.name)).toEqual(
      expect.arrayContaining([
        'grpo_learner_step_seconds',
        'grpo_learner_data_wait_seconds',
        'grpo_learner_group_staleness',
        'grpo_learner_weights_publish_seconds',
        'grpo_worker_group_rollout_seconds',
        'grpo_worker_group_reward_seconds',
        'grpo_coordinator_weights_broadcast_seconds',
      ]),
    );
    for (const h of histograms) {
      const b = h.buckets ?? [];
      expect(b.length, h.name).toBeGreaterThanOrEqual(6);
      for (let i = 1; i < b.length; i++) expect(b[i], h.name).toBeGreaterThan(b[i - 1]);
    }
    for (const spec of ALL_METRICS.filter((m) => m.name.endsWith('_seconds'))) expect(spec.type, spec.name).toBe('histogram');
  });

  it('have only bounded labels, with their fixed values listed', () => {
    for (const spec of ALL_METRICS) {
      for (const label of spec.labelNames ?? []) {
        expect(ALLOWED_LABELS.has(label), `${spec.name}{${label}}`).toBe(true);
        if (label !== 'reward') expect(spec.labelValues?.[label]?.length, `${spec.name}{${label}} values`).toBeGreaterThan(0);
      }
    }
  });

  it('cover every signal the issue lists', () => {
    const names = new Set(ALL_METRICS.map((m) => m.name));
    const required = [
      'grpo_learner_reward_mean', 'grpo_learner_reward_std', 'grpo_learner_reward_function_mean', 'grpo_learner_reward_function_std',
      'grpo_learner_reward_zero_std_ratio', 'grpo_learner_kl', 'grpo_learner_entropy', 'grpo_learner_clip_low_ratio',
      'grpo_learner_clip_high_ratio', 'grpo_learner_clip_region_ratio', 'grpo_learner_completion_mean_length_tokens',
      'grpo_learner_completion_min_length_tokens', 'grpo_learner_completion_max_length_tokens', 'grpo_learner_completion_truncated_ratio',
      'grpo_learner_loss', 'grpo_learner_grad_norm', 'grpo_learner_learning_rate', 'grpo_learner_eval_accuracy_ratio',
      'grpo_learner_eval_pass_at_k_ratio', 'grpo_learner_policy_version', 'grpo_learner_step_seconds', 'grpo_learner_data_wait_seconds',
      'grpo_worker_group_rollout_seconds', 'grpo_worker_group_reward_seconds', 'grpo_learner_weights_publish_seconds',
      'grpo_learner_weights_published_bytes_total', 'grpo_coordinator_weights_broadcast_seconds', 'grpo_coordinator_weights_broadcast_bytes_total',
      'grpo_learner_group_staleness', 'grpo_coordinator_group_verdicts_total', 'grpo_coordinator_groups_redispatched_total',
      'grpo_coordinator_leases_in_flight', 'grpo_coordinator_leases_expired_total', 'grpo_coordinator_workers_connected',
      'grpo_worker_tokens_generated_total', 'grpo_coordinator_queued_groups',
    ];
    for (const name of required) expect(names.has(name), name).toBe(true);
  });
});

describe('a registry holding every role', () => {
  it('exports each spec with its type and help, and no summaries at all', async () => {
    const families = new Map<string, { type: string; help: string }>();
    for (const r of allRolesRegistries()) {
      for (const m of await r.getMetricsAsJSON()) families.set(m.name, { type: String(m.type), help: m.help });
    }
    for (const spec of ALL_METRICS) {
      expect(families.get(spec.name), spec.name).toEqual({ type: spec.type, help: spec.help });
    }
    for (const [name, f] of families) {
      expect(f.type, name).not.toBe('summary');
      if (f.type === 'counter') expect(name, name).toMatch(/_total$/);
      else expect(name, name).not.toMatch(/_total$/);
    }
  });

  it('has no metric of its own outside the specs', async () => {
    const known = new Set(ALL_METRICS.map((m) => m.name));
    for (const r of allRolesRegistries()) {
      for (const m of await r.getMetricsAsJSON()) {
        if (m.name.startsWith('grpo_')) expect(known.has(m.name), m.name).toBe(true);
        else expect(m.name, m.name).toMatch(/^(process|nodejs)_/);
      }
    }
  });
});

describe('docs/metrics.md', () => {
  const doc = readFileSync(join(ROOT, 'docs', 'metrics.md'), 'utf8');
  const documented = new Set([...doc.matchAll(/`(grpo_[a-z0-9_]+)`/g)].map((m) => m[1]));

  it('describes every metric', () => {
    for (const spec of ALL_METRICS) expect(documented.has(spec.name), spec.name).toBe(true);
  });

  it('names only metrics that exist', () => {
    const known = new Set(ALL_METRICS.flatMap((m) => [m.name, ...seriesNames(m)]));
    for (const name of documented) expect(known.has(name), `${name} in docs/metrics.md`).toBe(true);
  });
});
