import { describe, expect, it } from 'vitest';
import { MAX_REWARD_LABELS } from '../../src/shared/metrics/definitions.js';
import { learnerMetrics } from '../../src/learner/prometheus.js';
import { createMetricsRegistry } from '../../src/shared/metrics/registry.js';
import { stepContext, stepSample } from '../shared/metrics/fixtures.js';
import { parseExposition, type Sample } from '../shared/metrics/helpers.js';

async function scrape(registry: ReturnType<typeof createMetricsRegistry>): Promise<Sample[]> {
  return parseExposition(await registry.metrics()).samples;
}

function value(samples: Sample[], name: string, labels: Record<string, string> = {}): number | undefined {
  return samples.find((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))?.value;
}

function fresh() {
  const registry = createMetricsRegistry({ role: 'learner', instance: 'l', processMetrics: false });
  return { registry, metrics: learnerMetrics(registry, { maxStaleness: 2 }) };
}

describe('learnerMetrics', () => {
  it('exports no training signal before the first step, only the configured staleness limit', async () => {
    const { registry } = fresh();
    const samples = await scrape(registry);
    expect(value(samples, 'grpo_learner_staleness_limit')).toBe(2);
    expect(value(samples, 'grpo_learner_reward_mean')).toBeUndefined();
    expect(value(samples, 'grpo_learner_kl')).toBeUndefined();
    expect(value(samples, 'grpo_learner_steps_total')).toBe(0);
  });

  it('sets the training gauges to the newest step and counts steps, tokens and groups', async () => {
    const { registry, metrics } = fresh();
    metrics.observeStep(stepSample(), stepContext({ step: 1 }));
    metrics.observeStep(
      stepSample({ policyVersion: 4, kl: 0.02, tokens: 50 }, { lengthMax: 9, groups: 2, advantageMean: 0.05, advantageStd: 0.8, logprobMean: -0.6 }),
      stepContext({ step: 2, accuracy: 0.75 }),
    );
    const s = await scrape(registry);
    const expected: Record<string, number> = {
      grpo_learner_step: 2,
      grpo_learner_policy_version: 4,
      grpo_learner_reward_mean: 0.55,
      grpo_learner_reward_std: 0.4,
      grpo_learner_reward_zero_std_ratio: 0.25,
      grpo_learner_train_accuracy_ratio: 0.75,
      grpo_learner_kl: 0.02,
      grpo_learner_entropy: 1.7,
      grpo_learner_clip_low_ratio: 0.01,
      grpo_learner_clip_high_ratio: 0.02,
      grpo_learner_clip_region_ratio: 0.03,
      grpo_learner_completion_mean_length_tokens: 5.5,
      grpo_learner_completion_min_length_tokens: 2,
      grpo_learner_completion_max_length_tokens: 9,
      grpo_learner_completion_truncated_ratio: 0.125,
      grpo_learner_advantage_mean: 0.05,
      grpo_learner_advantage_std: 0.8,
      grpo_learner_sampled_logprob_mean: -0.6,
      grpo_learner_loss: 0.25,
      grpo_learner_grad_norm: 0.8,
      grpo_learner_learning_rate: 1e-3,
      grpo_learner_staleness_max: 1,
      grpo_learner_steps_total: 2,
      grpo_learner_trained_tokens_total: 146,
      grpo_learner_trained_groups_total: 6,
      grpo_learner_step_seconds_count: 2,
      grpo_learner_data_wait_seconds_count: 2,
    };
    for (const [name, v] of Object.entries(expected)) expect(value(s, name), name).toBeCloseTo(v, 9);
    expect(value(s, 'grpo_learner_reward_function_mean', { reward: 'correct' })).toBe(0.5);
    expect(value(s, 'grpo_learner_reward_function_std', { reward: 'format' })).toBe(0.3);
  });

  it('observes one staleness per trained group in the histogram', async () => {
    const { registry, metrics } = fresh();
    metrics.observeStep(stepSample(), stepContext({ groupStaleness: [0, 0, 1, 2] }));
    const s = await scrape(registry);
    expect(value(s, 'grpo_learner_group_staleness_count')).toBe(4);
    expect(value(s, 'grpo_learner_group_staleness_sum')).toBe(3);
    expect(value(s, 'grpo_learner_group_staleness_bucket', { le: '0' })).toBe(2);
    expect(value(s, 'grpo_learner_group_staleness_bucket', { le: '1' })).toBe(3);
  });

  it('exports NaN for a signal the step did not measure (KL with kl_coef 0)', async () => {
    const { registry, metrics } = fresh();
    metrics.observeStep(stepSample({ kl: NaN }), stepContext());
    expect(value(await scrape(registry), 'grpo_learner_kl')).toBeNaN();
  });

  it('removes a reward function that a step no longer reports', async () => {
    const { registry, metrics } = fresh();
    metrics.observeStep(stepSample(), stepContext());
    metrics.observeStep(stepSample({}, { rewardFunctions: { correct: { mean: 1, std: 0 } } }), stepContext());
    const names = (await scrape(registry)).filter((x) => x.name === 'grpo_learner_reward_function_mean').map((x) => x.labels.reward);
    expect(names).toEqual(['correct']);
  });

  it(`exports at most ${MAX_REWARD_LABELS} reward names and warns once`, async () => {
    const registry = createMetricsRegistry({ role: 'learner', processMetrics: false });
    const warnings: unknown[] = [];
    const metrics = learnerMetrics(registry, { maxStaleness: 1, log: (level, event, fields) => warnings.push([level, event, fields]) });
    const many = Object.fromEntries(Array.from({ length: MAX_REWARD_LABELS + 5 }, (_, i) => [`r${i}`, { mean: i, std: 0 }]));
    metrics.observeStep(stepSample({}, { rewardFunctions: many }), stepContext());
    metrics.observeStep(stepSample({}, { rewardFunctions: many }), stepContext());
    const exported = (await scrape(registry)).filter((x) => x.name === 'grpo_learner_reward_function_mean');
    expect(exported).toHaveLength(MAX_REWARD_LABELS);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toEqual(['warn', 'metrics_reward_labels_capped', { limit: MAX_REWARD_LABELS, dropped: `r${MAX_REWARD_LABELS}` }]);
  });

  it('records evaluations and weights uploads', async () => {
    const { registry, metrics } = fresh();
    metrics.observeEval({ accuracy: 0.4, passAtK: 0.7, k: 4 });
    metrics.observePublish(0.3, 1000);
    metrics.observePublish(0.1, 500);
    let s = await scrape(registry);
    expect(value(s, 'grpo_learner_eval_accuracy_ratio')).toBe(0.4);
    expect(value(s, 'grpo_learner_eval_pass_at_k_ratio')).toBe(0.7);
    expect(value(s, 'grpo_learner_eval_k')).toBe(4);
    expect(value(s, 'grpo_learner_weights_publish_seconds_count')).toBe(2);
    expect(value(s, 'grpo_learner_weights_published_bytes_total')).toBe(1500);
    metrics.observeEval({ accuracy: 0.5, passAtK: null, k: 1 });
    s = await scrape(registry);
    expect(value(s, 'grpo_learner_eval_pass_at_k_ratio')).toBeUndefined();
  });

  it('reads the inbox gauges at each scrape', async () => {
    const registry = createMetricsRegistry({ role: 'learner', processMetrics: false });
    const inbox = { buffered: 1, pending: 5 };
    learnerMetrics(registry, { maxStaleness: 1, inbox: () => inbox });
    inbox.buffered = 3;
    const s = await scrape(registry);
    expect(value(s, 'grpo_learner_buffered_groups')).toBe(3);
    expect(value(s, 'grpo_learner_pending_groups')).toBe(5);
  });
});
