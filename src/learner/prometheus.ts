/**
 * The learner's metrics: one call per step, per evaluation and per weights upload.
 *
 *   const metrics = learnerMetrics(registry, { maxStaleness: config.max_staleness, inbox: () => inbox });
 *   metrics.observeStep(stepMetrics, { step, waitSeconds, accuracy, groupStaleness });
 *   metrics.observeEval(evalRecord);
 *   metrics.observePublish(seconds, bytes);
 *
 * observeStep takes the learner's StepMetrics (src/learner/step-metrics.ts) as it is; the sample
 * type below picks the fields read here from it, so tests may build a small one.
 */
import type { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { ProtocolLogger } from '../shared/protocol.js';
import { LEARNER_METRICS, MAX_REWARD_LABELS, type LearnerMetricKey } from '../shared/metrics/definitions.js';
import { refusalReason } from './group-check.js';
import { createMetric, perScrape, setOrClear, type AnyMetric } from '../shared/metrics/registry.js';
import type { BatchStats, StepMetrics } from './step-metrics.js';

/** The part of the learner's StepMetrics read here (the role's own type; NaN = not measured). */
export type LearnerStepSample = Pick<
  StepMetrics,
  'policyVersion' | 'lr' | 'loss' | 'kl' | 'entropy' | 'clipLow' | 'clipHigh' | 'clipRegion' | 'gradNorm' | 'tokens' | 'seconds' | 'stalenessMax'
> & {
  batch: Pick<
    BatchStats,
    | 'groups' | 'rewardMean' | 'rewardStd' | 'rewardFunctions' | 'fracRewardZeroStd' | 'lengthMean' | 'lengthMin' | 'lengthMax' | 'truncatedShare'
    | 'advantageMean' | 'advantageStd' | 'logprobMean'
  >;
};

/** What the loop knows about the step besides the trainer's metrics. */
export interface LearnerStepContext {
  step: number; // steps done in the run, this one included
  waitSeconds: number; // waited for the step's groups
  accuracy: number; // share of the step's completions the task accepts, 0-1
  groupStaleness: readonly number[]; // per trained group: version before the step minus its sampling version
}

export interface LearnerEvalSample {
  accuracy: number; // 0-1
  passAtK: number | null; // 0-1; null when k is 1
  k: number;
}

export interface LearnerMetricsOptions {
  maxStaleness: number; // config max_staleness
  /** The groups inbox (read at each scrape): admitted groups buffered, enqueued ones pending. */
  inbox?: () => { buffered: number; pending: number };
  log?: ProtocolLogger; // one warning when reward names exceed MAX_REWARD_LABELS
}

export interface LearnerMetrics {
  observeStep(m: LearnerStepSample, ctx: LearnerStepContext): void;
  observeEval(e: LearnerEvalSample): void;
  /** One weights version uploaded: wall seconds from the first frame to the last, payload bytes. */
  observePublish(seconds: number, bytes: number): void;
  /** One worker result refused with `code` (group-check.ts, batch.ts). */
  observeRefused(code: string): void;
}

const nonNegative = (x: number): number => (Number.isFinite(x) && x > 0 ? x : 0);

export function learnerMetrics(registry: Registry, opts: LearnerMetricsOptions): LearnerMetrics {
  const m = {} as Record<LearnerMetricKey, AnyMetric>;
  const inbox = opts.inbox ? perScrape(opts.inbox) : null;
  for (const [key, spec] of Object.entries(LEARNER_METRICS) as [LearnerMetricKey, (typeof LEARNER_METRICS)[LearnerMetricKey]][]) {
    let collect: ((g: AnyMetric) => void) | undefined;
    if (key === 'bufferedGroups' && inbox) collect = (g) => (g as Gauge<string>).set(inbox().buffered);
    if (key === 'pendingGroups' && inbox) collect = (g) => (g as Gauge<string>).set(inbox().pending);
    m[key] = createMetric(registry, spec, collect);
  }
  const gauge = (k: LearnerMetricKey) => m[k] as Gauge<string>;
  const counter = (k: LearnerMetricKey) => m[k] as Counter<string>;
  const histogram = (k: LearnerMetricKey) => m[k] as Histogram<string>;
  gauge('stalenessLimit').set(opts.maxStaleness);

  const rewardNames = new Set<string>(); // exported label values
  let capWarned = false;

  function observeRewards(functions: Readonly<Record<string, { mean: number; std: number }>>): void {
    for (const name of rewardNames) {
      if (!(name in functions)) {
        gauge('rewardFunctionMean').remove({ reward: name });
        gauge('rewardFunctionStd').remove({ reward: name });
      }
    }
    for (const [name, s] of Object.entries(functions)) {
      if (!rewardNames.has(name)) {
        if (rewardNames.size >= MAX_REWARD_LABELS) {
          if (!capWarned) opts.log?.('warn', 'metrics_reward_labels_capped', { limit: MAX_REWARD_LABELS, dropped: name });
          capWarned = true;
          continue;
        }
        rewardNames.add(name);
      }
      gauge('rewardFunctionMean').set({ reward: name }, s.mean);
      gauge('rewardFunctionStd').set({ reward: name }, s.std);
    }
  }

  return {
    observeStep(s, ctx) {
      const b = s.batch;
      const values: [LearnerMetricKey, number][] = [
        ['step', ctx.step],
        ['policyVersion', s.policyVersion],
        ['rewardMean', b.rewardMean],
        ['rewardStd', b.rewardStd],
        ['rewardZeroStd', b.fracRewardZeroStd],
        ['trainAccuracy', ctx.accuracy],
        ['kl', s.kl],
        ['entropy', s.entropy],
        ['clipLow', s.clipLow],
        ['clipHigh', s.clipHigh],
        ['clipRegion', s.clipRegion],
        ['lengthMean', b.lengthMean],
        ['lengthMin', b.lengthMin],
        ['lengthMax', b.lengthMax],
        ['truncated', b.truncatedShare],
        ['advantageMean', b.advantageMean],
        ['advantageStd', b.advantageStd],
        ['sampledLogprob', b.logprobMean],
        ['loss', s.loss],
        ['gradNorm', s.gradNorm],
        ['learningRate', s.lr],
        ['stalenessMax', s.stalenessMax],
      ];
      for (const [k, v] of values) gauge(k).set(v);
      observeRewards(b.rewardFunctions);
      counter('steps').inc();
      counter('trainedTokens').inc(nonNegative(s.tokens));
      counter('trainedGroups').inc(nonNegative(b.groups));
      histogram('stepSeconds').observe(nonNegative(s.seconds));
      histogram('waitSeconds').observe(nonNegative(ctx.waitSeconds));
      for (const v of ctx.groupStaleness) histogram('staleness').observe(nonNegative(v));
    },
    observeEval(e) {
      gauge('evalAccuracy').set(e.accuracy);
      gauge('evalK').set(e.k);
      setOrClear(gauge('evalPassAtK'), e.passAtK);
    },
    observePublish(seconds, bytes) {
      histogram('publishSeconds').observe(nonNegative(seconds));
      counter('publishedBytes').inc(nonNegative(bytes));
    },
    observeRefused(code) {
      counter('refusedGroups').inc({ reason: refusalReason(code) });
    },
  };
}
