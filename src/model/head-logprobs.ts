/**
 * Per-token log-probabilities (and entropies) of target tokens through the lm_head, without ever
 * holding a [N, V] block whole: rows go through the head in chunks, and each chunk is one custom
 * gradient op that saves only its inputs and two [n] statistics, so its [n, V] logits exist only
 * while the chunk runs, forward and again in backward (recomputed). No one-hot either: the target
 * logit is a row dot product with the target's head row, z[i, t_i] = hn[i] . head[t_i].
 *
 * With z = hn head^T / temperature [n, V], lse = logSumExp(z), p = softmax(z):
 *   logp = z[t] - lse;  entropy H = lse - sum(p z)
 *   d logp / dz = onehot(t) - p;  d H / dz = -p (z - lse + H)
 * so for upstream gradients gl (of logp) and ge (of H), dz = onehot(t) gl - p (gl + ge (z - lse + H)),
 * and dhn = dz head / temperature, dhead = dz^T hn / temperature, the one-hot part as a row
 * gather (into dhn) and a segment sum over target ids (into dhead).
 */
import { tf } from '../engine/tf.js';

/** Rows per chunk so a chunk's [n, V] float32 logits take about this many bytes. */
export const HEAD_CHUNK_BYTES = 64 * 2 ** 20;

export interface HeadLogProbs {
  logp: tf.Tensor1D; // [N]
  entropy?: tf.Tensor1D; // [N], when asked for
}

/**
 * hn [N, d] (after the final norm), head [V, d], targets int32 [N]. Differentiable in hn and head;
 * synchronous, call inside tf.tidy / a gradient function. `chunkRows` overrides the chunk size.
 */
export function headLogProbs(
  hn: tf.Tensor2D,
  head: tf.Tensor2D,
  targets: tf.Tensor1D,
  opts: { temperature?: number; withEntropy?: boolean; chunkRows?: number } = {},
): HeadLogProbs {
  const [N] = hn.shape;
  const V = head.shape[0];
  const t = opts.temperature ?? 1;
  const invT = t === 0 ? 1 : 1 / t;
  const withEntropy = opts.withEntropy === true;
  const rows = Math.max(1, Math.floor(opts.chunkRows ?? HEAD_CHUNK_BYTES / (4 * V)));
  const parts: tf.Tensor[] = [];
  for (let r0 = 0; r0 < N; r0 += rows) {
    const n = Math.min(rows, N - r0);
    const h = n === N ? hn : hn.slice([r0, 0], [n, -1]);
    const tg = n === N ? targets : targets.slice([r0], [n]);
    parts.push(chunkOp(tg, invT, withEntropy)(h, head)); // [n] or [n, 2]
  }
  const all = parts.length === 1 ? parts[0] : tf.concat(parts, 0);
  if (!withEntropy) return { logp: all as tf.Tensor1D };
  const [logp, entropy] = tf.split(all, 2, 1);
  return { logp: logp.reshape([N]) as tf.Tensor1D, entropy: entropy.reshape([N]) as tf.Tensor1D };
}

/** One chunk as a custom-gradient op of (h [n, d], head [V, d]) -> logp [n] or [logp, H] [n, 2]. */
function chunkOp(tg: tf.Tensor1D, invT: number, withEntropy: boolean): (h: tf.Tensor, head: tf.Tensor) => tf.Tensor {
  return tf.customGrad((...args) => {
    const [h, head, save] = args as [tf.Tensor2D, tf.Tensor2D, tf.GradSaveFunc];
    const z = scaled(tf.matMul(h, head, false, true), invT); // [n, V], freed when the op returns
    const lse = tf.logSumExp(z, 1); // [n]
    const zt = scaled(h.mul(tf.gather(head, tg)).sum(1), invT); // [n]: z[i, t_i]
    const logp = zt.sub(lse);
    // targets are saved too: the caller's tidy may dispose tg before the backward pass runs
    if (!withEntropy) {
      save([h, head, tg, lse]);
      return { value: logp, gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => chunkGrad(saved, invT, dy as tf.Tensor1D) };
    }
    const H = lse.sub(tf.exp(z.sub(lse.expandDims(1))).mul(z).sum(1)); // [n]
    save([h, head, tg, lse, H]);
    return {
      value: tf.stack([logp, H], 1), // [n, 2]
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [gl, ge] = tf.split(dy, 2, 1);
        return chunkGrad(saved, invT, gl.reshape([-1]) as tf.Tensor1D, ge.reshape([-1]) as tf.Tensor1D);
      },
    };
  }) as (h: tf.Tensor, head: tf.Tensor) => tf.Tensor;
}

/** [dh, dhead] of one chunk for upstream gl (logp) and optional ge (entropy), recomputing z. */
function chunkGrad(saved: tf.Tensor[], invT: number, gl: tf.Tensor1D, ge?: tf.Tensor1D): tf.Tensor[] {
  const [h, head, tg, lse, H] = saved as [tf.Tensor2D, tf.Tensor2D, tf.Tensor1D, tf.Tensor1D, tf.Tensor1D | undefined];
  const V = head.shape[0];
  const z = scaled(tf.matMul(h, head, false, true), invT); // [n, V], recomputed
  const p = tf.exp(z.sub(lse.expandDims(1))); // softmax(z)
  let coef: tf.Tensor = gl.expandDims(1); // [n, 1]
  if (ge && H) coef = coef.add(ge.expandDims(1).mul(z.sub(lse.sub(H).expandDims(1)))); // [n, V]
  const dzSoft = scaled(p.mul(coef).neg(), invT); // [n, V], times 1/temperature for the matMuls
  const glh = gl.expandDims(1).mul(invT); // [n, 1]: the one-hot part's weights
  const dh = tf.matMul(dzSoft, head).add(tf.gather(head, tg).mul(glh)); // [n, d]
  const dhead = tf.matMul(dzSoft, h, true, false).add(tf.unsortedSegmentSum(h.mul(glh), tg, V)); // [V, d]
  return [dh, dhead];
}

function scaled<T extends tf.Tensor>(x: T, s: number): T {
  return s === 1 ? x : x.mul<T>(s);
}
