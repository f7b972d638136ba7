/**
 * Supervised batches and their loss: next-token cross-entropy on the completion tokens only.
 *
 * Row layout (see tasks/encoding.ts), right-padded with <pad> to the longest row of the batch:
 *
 *   ids   [BOS] p p p p = | c c c [EOS] <pad> <pad>
 *   mask        0 0 0 0 1   1 1 1   0     0            (mask[t] = 1 when ids[t + 1] is a completion token)
 *
 * Causal attention means padding on the right never changes the positions before it, so no
 * attention mask is needed.
 */
import { tf } from '../engine/tf.js';
import { GrpoError } from '../shared/errors.js';
import type { LlamaModel } from '../model/llama.js';
import type { Tokenizer } from '../model/types.js';
import { completionIds, promptIds } from '../tasks/encoding.js';
import type { Split, Task } from '../tasks/types.js';

export interface SftBatch {
  ids: Int32Array; // [B, T] row-major
  mask: Float32Array; // [B, T - 1], 1 where the next token is a completion token
  batchSize: number; // B
  length: number; // T
  completionTokens: number; // sum of mask
}

/** Examples `start .. start + batchSize - 1` of `split` as one batch. */
export function sftBatch(task: Task, tokenizer: Tokenizer, split: Split, start: number, batchSize: number): SftBatch {
  const rows: { ids: number[]; promptLen: number }[] = [];
  for (let i = 0; i < batchSize; i++) {
    const ex = task.example(split, start + i);
    if (ex.target === undefined) {
      throw new GrpoError('GRPO_ERR_SFT_NO_TARGET', `task ${task.name} gives no target for ${split} example ${start + i}; SFT needs one`);
    }
    const p = promptIds(tokenizer, ex.prompt);
    rows.push({ ids: [...p, ...completionIds(tokenizer, ex.target)], promptLen: p.length });
  }
  const T = Math.max(...rows.map((r) => r.ids.length));
  const ids = new Int32Array(batchSize * T).fill(tokenizer.padId);
  const mask = new Float32Array(batchSize * (T - 1));
  let completionTokens = 0;
  rows.forEach((r, b) => {
    ids.set(r.ids, b * T);
    for (let t = r.promptLen - 1; t < r.ids.length - 1; t++) {
      mask[b * (T - 1) + t] = 1;
      completionTokens++;
    }
  });
  return { ids, mask, batchSize, length: T, completionTokens };
}

/**
 * Mean negative log-likelihood per completion token: -sum(logp * mask) / sum(mask), a scalar.
 * Synchronous and differentiable; call inside tf.variableGrads / tf.tidy.
 */
export function sftLoss(model: LlamaModel, ids: tf.Tensor2D, mask: tf.Tensor2D): tf.Scalar {
  return tf.tidy(() => {
    const { logp } = model.tokenLogProbs(ids); // [B, T-1]
    return logp.mul(mask).sum().neg().div(mask.sum().maximum(1)) as tf.Scalar;
  });
}
