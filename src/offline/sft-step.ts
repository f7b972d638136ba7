/**
 * One supervised optimizer step, shared by `grpo sft` (offline/sft.ts) and `grpo judge-train`
 * (offline/judge-train.ts): loss on the masked tokens, gradients, global-norm clip, AdamW.
 *
 * Everything up to the update runs synchronously inside one tf.tidy, so an exception anywhere
 * (a bad learning rate refused by AdamW, a gradient of the wrong shape) leaves no tensor behind;
 * only the [loss, pre-clip grad norm] pair leaves the tidy, for the step's one host read.
 *
 * AdamW updates the weights before the loss is read (the read is the step's only sync point), so
 * a non-finite loss means the weights are already corrupted: the step throws GRPO_ERR_NAN_LOSS
 * (the learner's code for the same failure) and the caller must not save them.
 */
import { tf } from '../engine/tf.js';
import { GrpoError } from '../shared/errors.js';
import type { LlamaModel } from '../model/llama.js';
import type { AdamW } from '../optim/adamw.js';
import { clipByGlobalNorm } from '../optim/clip.js';
import { sftLoss, type SftBatch } from './sft-batch.js';

/** The host arrays of a batch: ids [B, T] and mask [B, T - 1], row-major. */
export type SftStepBatch = Pick<SftBatch, 'ids' | 'mask' | 'batchSize' | 'length'>;

export interface SftStepOptions {
  lr: number; // this step's learning rate
  gradClip: number; // max global L2 norm; 0 = no clipping
  /** Names the step in the non-finite-loss error, e.g. "SFT step 12". */
  label: string;
  /** What the user should lower, e.g. "--lr (now 0.001)". */
  lrHint: string;
}

export interface SftStepResult {
  loss: number; // mean NLL per masked token, nats
  gradNorm: number; // global L2 norm before clipping
}

export async function sftStep(model: LlamaModel, optimizer: AdamW, batch: SftStepBatch, o: SftStepOptions): Promise<SftStepResult> {
  const stats = tf.tidy(() => {
    const vars = model.variables(); // HF name -> variable
    const nameOf = new Map([...vars].map(([name, v]) => [v.name, name]));
    const ids = tf.tensor2d(batch.ids, [batch.batchSize, batch.length], 'int32');
    const mask = tf.tensor2d(batch.mask, [batch.batchSize, batch.length - 1], 'float32');
    const { value, grads } = tf.variableGrads(() => sftLoss(model, ids, mask), [...vars.values()]);
    const named = new Map(Object.entries(grads).map(([id, g]) => [nameOf.get(id)!, g]));
    const clipped = clipByGlobalNorm(named, o.gradClip);
    optimizer.apply(clipped.grads, o.lr);
    return tf.stack([value, clipped.norm]); // [2]
  });
  let loss: number;
  let gradNorm: number;
  try {
    [loss, gradNorm] = await stats.data(); // the step's one device-to-host read
  } finally {
    stats.dispose();
  }
  if (!Number.isFinite(loss)) {
    throw new GrpoError('GRPO_ERR_NAN_LOSS', `${o.label}: loss is ${loss}; the weights are not saved. Lower ${o.lrHint} or grad_clip and resume from the last checkpoint`);
  }
  return { loss, gradNorm };
}
