/**
 * The metrics of one grpoLoss call travel as ONE small float32 tensor [LOSS_METRIC_NAMES.length],
 * so a training step needs a single device-to-host read for the loss and all its statistics:
 *
 *   const out = grpoLoss(inputs, opts);          // inside the step's tidy / variableGrads
 *   const m = await readLossMetrics(out.metrics); // the one awaited read; disposes the tensor
 */
import type { Tensor } from '../engine/tf.js';
import { GrpoErrorCode, fail, shapeStr } from './check.js';

/** Slot order of the packed metrics tensor. */
export const LOSS_METRIC_NAMES = [
  'loss', // the total loss (surrogate + beta * KL - entropyCoef * entropy), reduced per lossType
  'policyLoss', // the clipped-surrogate part alone, reduced the same way
  'kl', // masked token mean of the k3 KL to the reference; NaN when no refLogp was given
  'entropy', // masked token mean of the entropy input (nats); NaN when none was given
  'clipLow', // share of tokens (sequences for GSPO) with ratio < 1 - epsilonLow and A < 0
  'clipHigh', // share with ratio > 1 + epsilonHigh and A > 0
  'clipRegion', // share clipped on either side
  'ratioMean', // masked mean of the importance ratio (1 on-policy)
  'numTokens', // completion tokens (mask sum) in this call
] as const;

export type LossMetricName = (typeof LOSS_METRIC_NAMES)[number];
export type LossMetrics = Record<LossMetricName, number>;

/** Host values (e.g. from `await metrics.data()`) -> named metrics. */
export function decodeLossMetrics(values: ArrayLike<number>): LossMetrics {
  if (values.length !== LOSS_METRIC_NAMES.length) {
    fail(
      GrpoErrorCode.BadShape,
      `decodeLossMetrics: got ${values.length} values, expected ${LOSS_METRIC_NAMES.length} (${LOSS_METRIC_NAMES.join(', ')})`,
    );
  }
  const out = {} as LossMetrics;
  LOSS_METRIC_NAMES.forEach((name, i) => {
    out[name] = values[i];
  });
  return out;
}

/**
 * The one awaited host read of a step's metrics. Disposes the metrics tensor (and the loss,
 * when given the whole grpoLoss result) whether or not the read succeeds.
 */
export async function readLossMetrics(result: Tensor | { loss?: Tensor; metrics: Tensor }): Promise<LossMetrics> {
  const metrics = 'metrics' in result ? result.metrics : result;
  const loss = 'metrics' in result ? result.loss : undefined;
  try {
    if (metrics.shape.length !== 1 || metrics.shape[0] !== LOSS_METRIC_NAMES.length) {
      fail(
        GrpoErrorCode.BadShape,
        `readLossMetrics: metrics tensor has shape ${shapeStr(metrics.shape)}, expected [${LOSS_METRIC_NAMES.length}] from grpoLoss`,
      );
    }
    return decodeLossMetrics(await metrics.data());
  } finally {
    metrics.dispose();
    loss?.dispose();
  }
}
