/**
 * Every Prometheus metric the roles export, defined once. The role helpers (learner.ts,
 * worker.ts, coordinator.ts) build their prom-client objects from these specs; the tests, the
 * Grafana dashboard, the alert rules and docs/metrics.md are all checked against them.
 *
 * Conventions (https://prometheus.io/docs/practices/naming/):
 *   - prefix `grpo_<role>_`, snake_case, base units as suffixes (`_seconds`, `_bytes`, `_tokens`);
 *   - counters end in `_total`; ratios are 0-1 and end in `_ratio`;
 *   - latencies are histograms (never summaries), so they aggregate across workers;
 *   - label values come from small fixed sets (a `reward` label holds the task's reward function
 *     names: a handful per run, capped by MAX_REWARD_LABELS).
 * Gauges of training signals hold the value of the newest step (NaN where the step did not
 * measure it, e.g. KL with kl_coef 0) and are absent until the first step.
 * The `role` and `instance` labels are added to every series by the registry (registry.ts).
 */

export type MetricType = 'counter' | 'gauge' | 'histogram';

export interface MetricSpec {
  readonly name: string;
  readonly type: MetricType;
  readonly help: string;
  readonly labelNames?: readonly string[];
  /** Fixed label values exported at 0 from the start (Prometheus best practice). */
  readonly labelValues?: Readonly<Record<string, readonly string[]>>;
  readonly buckets?: readonly number[];
}

/** Reward functions beyond this many names are not exported (a guard against unbounded labels). */
export const MAX_REWARD_LABELS = 32;

// --- histogram buckets, upper bounds in the metric's unit ---
/** Learner steps: tens of milliseconds (tiny models) to minutes (large ones). */
export const STEP_SECONDS_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 60, 120, 300, 600] as const;
/** Waiting for data: 0 when workers keep up, up to minutes when none are connected. */
export const WAIT_SECONDS_BUCKETS = [0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300] as const;
/** Sampling one group (its share of a batched sampling call). */
export const ROLLOUT_SECONDS_BUCKETS = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120] as const;
/** Scoring one group: microseconds for string checks, seconds for code execution. */
export const REWARD_SECONDS_BUCKETS = [0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30] as const;
/** Moving one weights version: one upload, one worker's fan-out, one load. */
export const WEIGHTS_SECONDS_BUCKETS = [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120] as const;
/** Policy versions between sampling a group and training on it (le="0" counts on-policy groups). */
export const STALENESS_BUCKETS = [0, 1, 2, 3, 4, 6, 8, 16, 32] as const;

const counter = (name: string, help: string, labels?: Record<string, readonly string[]>): MetricSpec =>
  labels ? { name, type: 'counter', help, labelNames: Object.keys(labels), labelValues: labels } : { name, type: 'counter', help };
const gauge = (name: string, help: string, labelNames?: readonly string[]): MetricSpec =>
  labelNames ? { name, type: 'gauge', help, labelNames } : { name, type: 'gauge', help };
const histogram = (name: string, help: string, buckets: readonly number[]): MetricSpec => ({ name, type: 'histogram', help, buckets });

/** The learner: training signals (gauges of the newest step) and its own timings. */
export const LEARNER_METRICS = {
  // --- training signals ---
  step: gauge('grpo_learner_step', 'Steps done in the run, resumed ones included (the step the training gauges describe).'),
  policyVersion: gauge('grpo_learner_policy_version', 'Policy version after the newest step.'),
  rewardMean: gauge('grpo_learner_reward_mean', 'Mean weighted reward over the completions of the newest step.'),
  rewardStd: gauge('grpo_learner_reward_std', 'Standard deviation of the weighted reward over the completions of the newest step.'),
  rewardFunctionMean: gauge('grpo_learner_reward_function_mean', 'Mean raw score of one reward function over the newest step.', ['reward']),
  rewardFunctionStd: gauge('grpo_learner_reward_function_std', 'Standard deviation of one reward function over the newest step.', ['reward']),
  rewardZeroStd: gauge('grpo_learner_reward_zero_std_ratio', 'Share of the newest step\'s groups whose rewards are all equal (no learning signal), 0-1.'),
  trainAccuracy: gauge('grpo_learner_train_accuracy_ratio', 'Share of the newest step\'s completions the task accepts as correct, 0-1.'),
  kl: gauge('grpo_learner_kl', 'Mean per-token KL divergence to the reference policy, nats (NaN with kl_coef 0).'),
  entropy: gauge('grpo_learner_entropy', 'Mean per-token entropy of the policy on the completions, nats.'),
  clipLow: gauge('grpo_learner_clip_low_ratio', 'Share of tokens whose ratio was clipped at 1 - epsilon (negative advantage), 0-1.'),
  clipHigh: gauge('grpo_learner_clip_high_ratio', 'Share of tokens whose ratio was clipped at 1 + epsilon_high (positive advantage), 0-1.'),
  clipRegion: gauge('grpo_learner_clip_region_ratio', 'Share of tokens clipped at either bound, 0-1.'),
  lengthMean: gauge('grpo_learner_completion_mean_length_tokens', 'Mean completion length of the newest step, tokens.'),
  lengthMin: gauge('grpo_learner_completion_min_length_tokens', 'Shortest completion of the newest step, tokens.'),
  lengthMax: gauge('grpo_learner_completion_max_length_tokens', 'Longest completion of the newest step, tokens.'),
  truncated: gauge('grpo_learner_completion_truncated_ratio', 'Share of the newest step\'s completions cut at max_gen_len, 0-1.'),
  advantageMean: gauge('grpo_learner_advantage_mean', 'Mean advantage of the completions trained in the newest step.'),
  advantageStd: gauge('grpo_learner_advantage_std', 'Standard deviation of the advantages of the completions trained in the newest step.'),
  sampledLogprob: gauge('grpo_learner_sampled_logprob_mean', 'Mean log-probability of the sampled tokens under the policy that sampled them, newest step, nats.'),
  loss: gauge('grpo_learner_loss', 'Loss of the newest step (the one whose gradient was applied).'),
  gradNorm: gauge('grpo_learner_grad_norm', 'Global L2 norm of the gradient before clipping, newest step.'),
  learningRate: gauge('grpo_learner_learning_rate', 'Learning rate of the newest step.'),
  evalAccuracy: gauge('grpo_learner_eval_accuracy_ratio', 'Held-out greedy accuracy of the newest evaluation, 0-1.'),
  evalPassAtK: gauge('grpo_learner_eval_pass_at_k_ratio', 'Held-out pass@k of the newest evaluation, 0-1 (k is grpo_learner_eval_k).'),
  evalK: gauge('grpo_learner_eval_k', 'Samples per problem of the pass@k evaluation (config eval_k).'),
  // --- system ---
  steps: counter('grpo_learner_steps_total', 'Optimizer steps done by this process.'),
  stepSeconds: histogram('grpo_learner_step_seconds', 'Wall time of one learner step (batch building, forward, backward, optimizer).', STEP_SECONDS_BUCKETS),
  waitSeconds: histogram('grpo_learner_data_wait_seconds', 'Time one step waited for enough admitted groups.', WAIT_SECONDS_BUCKETS),
  trainedTokens: counter('grpo_learner_trained_tokens_total', 'Completion tokens trained on (mask 1), summed over steps.'),
  trainedGroups: counter('grpo_learner_trained_groups_total', 'Admitted groups the learner trained on.'),
  refusedGroups: counter('grpo_learner_groups_refused_total', 'Worker results the learner refused (the worker gets the coded reason), by reason.', {
    reason: ['reward_names', 'prompt_tokens', 'bad_rollout'],
  }),
  staleness: histogram('grpo_learner_group_staleness', 'Policy versions between sampling a group and the step that trained on it.', STALENESS_BUCKETS),
  stalenessMax: gauge('grpo_learner_staleness_max', 'Largest staleness among the newest step\'s groups, policy versions.'),
  stalenessLimit: gauge('grpo_learner_staleness_limit', 'Largest staleness admitted (config max_staleness), policy versions.'),
  publishSeconds: histogram('grpo_learner_weights_publish_seconds', 'Time to upload one weights version to the coordinator.', WEIGHTS_SECONDS_BUCKETS),
  publishedBytes: counter('grpo_learner_weights_published_bytes_total', 'Weights payload bytes uploaded to the coordinator.'),
  bufferedGroups: gauge('grpo_learner_buffered_groups', 'Admitted groups waiting for a step.'),
  pendingGroups: gauge('grpo_learner_pending_groups', 'Groups enqueued at the coordinator with no result yet.'),
} as const satisfies Record<string, MetricSpec>;

/** A rollout worker: what it sampled and scored, and how long that took. */
export const WORKER_METRICS = {
  connected: gauge('grpo_worker_connected', '1 while the worker is connected to the coordinator, else 0.'),
  policyVersion: gauge('grpo_worker_policy_version', 'Weights version loaded by the worker (absent before the first).'),
  waitingGroups: gauge('grpo_worker_waiting_groups', 'Leased groups waiting to be sampled.'),
  groupsPerCall: gauge('grpo_worker_groups_per_call', 'Groups sampled per sampling call (capacity, lowered on a slow machine).'),
  leases: counter('grpo_worker_leases_total', 'Leases received.'),
  leasesRevoked: counter('grpo_worker_leases_revoked_total', 'Leases the coordinator took back before they were finished.'),
  groups: counter('grpo_worker_groups_total', 'Groups finished, by result: done (sent), failed (reported), dropped (lease no longer current).', {
    result: ['done', 'failed', 'dropped'],
  }),
  samplingCalls: counter('grpo_worker_sampling_calls_total', 'Batched sampling calls.'),
  completions: counter('grpo_worker_completions_total', 'Completions sampled.'),
  tokensGenerated: counter('grpo_worker_tokens_generated_total', 'Completion tokens generated, stop tokens included.'),
  rolloutSeconds: histogram('grpo_worker_group_rollout_seconds', 'Sampling time per group (a batched call\'s time shared evenly among its groups).', ROLLOUT_SECONDS_BUCKETS),
  rewardSeconds: histogram('grpo_worker_group_reward_seconds', 'Reward scoring time per group (a batch\'s time shared evenly among its groups).', REWARD_SECONDS_BUCKETS),
  weightsLoadSeconds: histogram('grpo_worker_weights_load_seconds', 'Time to load one received weights version into the worker\'s model.', WEIGHTS_SECONDS_BUCKETS),
} as const satisfies Record<string, MetricSpec>;

/** The coordinator: connections, the work ledger and the weights fan-out (read from stats()). */
export const COORDINATOR_METRICS = {
  workersConnected: gauge('grpo_coordinator_workers_connected', 'Rollout workers connected.'),
  workersReady: gauge('grpo_coordinator_workers_ready', 'Connected workers holding weights (able to take leases).'),
  workerCapacity: gauge('grpo_coordinator_worker_capacity_groups', 'Groups the connected workers can sample at once, summed.'),
  learnerConnected: gauge('grpo_coordinator_learner_connected', '1 while a learner is connected, else 0.'),
  policyVersion: gauge('grpo_coordinator_policy_version', 'Newest policy version announced by the learner (absent before the first).'),
  resumeEpoch: gauge('grpo_coordinator_resume_epoch', 'Resume epoch of the current learner process (absent before the first learner).'),
  queuedGroups: gauge('grpo_coordinator_queued_groups', 'Groups waiting for a worker (queue depth).'),
  leasedGroups: gauge('grpo_coordinator_leased_groups', 'Groups out on leases.'),
  outboxGroups: gauge('grpo_coordinator_outbox_groups', 'Finished groups waiting for delivery to the learner or its verdict.'),
  leasesInFlight: gauge('grpo_coordinator_leases_in_flight', 'Leases issued and not yet finished, expired or released.'),
  leases: counter('grpo_coordinator_leases_total', 'Leases issued.'),
  leasesExpired: counter('grpo_coordinator_leases_expired_total', 'Leases that ran past lease_ms without a heartbeat (their groups re-dispatched).'),
  groupsEnqueued: counter('grpo_coordinator_groups_enqueued_total', 'Group ids accepted from the learner.'),
  groupsCompleted: counter('grpo_coordinator_groups_completed_total', 'Groups with a first valid result from a worker.'),
  groupsRedispatched: counter('grpo_coordinator_groups_redispatched_total', 'Groups put back in the queue (lease expiry, worker disconnect, failure).'),
  groupsExhausted: counter('grpo_coordinator_groups_exhausted_total', 'Groups given up after too many attempts.'),
  groupFailures: counter('grpo_coordinator_group_failures_total', 'GroupFailed reports from workers.'),
  verdicts: counter('grpo_coordinator_group_verdicts_total', 'Learner verdicts on delivered groups: admitted, dropped_stale, dropped_duplicate, failed.', {
    verdict: ['admitted', 'dropped_stale', 'dropped_duplicate', 'failed'],
  }),
  duplicateResults: counter('grpo_coordinator_duplicate_results_total', 'Results for groups already finished (never forwarded twice).'),
  invalidResults: counter('grpo_coordinator_invalid_results_total', 'Partial or inconsistent group results (counted as a failure of the group).'),
  weightsVersionBytes: gauge('grpo_coordinator_weights_version_bytes', 'Payload size of the newest complete weights version.'),
  weightsVersions: counter('grpo_coordinator_weights_versions_total', 'Weights versions received from the learner.'),
  weightsUploadErrors: counter('grpo_coordinator_weights_upload_errors_total', 'Learner uploads rejected (layout, sequence or checksum).'),
  broadcasts: counter('grpo_coordinator_weights_broadcasts_total', 'Weights transfers to workers, by result: completed, abandoned (superseded by a newer version).', {
    result: ['completed', 'abandoned'],
  }),
  broadcastBytes: counter('grpo_coordinator_weights_broadcast_bytes_total', 'Weights bytes sent to workers.'),
  broadcastSeconds: histogram('grpo_coordinator_weights_broadcast_seconds', 'Time to send one weights version to one worker (Begin to End).', WEIGHTS_SECONDS_BUCKETS),
} as const satisfies Record<string, MetricSpec>;

export type LearnerMetricKey = keyof typeof LEARNER_METRICS;
export type WorkerMetricKey = keyof typeof WORKER_METRICS;
export type CoordinatorMetricKey = keyof typeof COORDINATOR_METRICS;

/** Every metric of every role, in a stable order. */
export const ALL_METRICS: readonly MetricSpec[] = [
  ...Object.values(LEARNER_METRICS),
  ...Object.values(WORKER_METRICS),
  ...Object.values(COORDINATOR_METRICS),
];

/** The sample names a metric produces in the exposition format (histograms: _bucket, _sum, _count). */
export function seriesNames(spec: MetricSpec): string[] {
  return spec.type === 'histogram' ? [`${spec.name}_bucket`, `${spec.name}_sum`, `${spec.name}_count`] : [spec.name];
}
