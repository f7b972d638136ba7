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
  const chunks: [number, number][] = [];
  for (let r0 = 0; r0 < N; r0 += rows) chunks.push([r0, Math.min(rows, N - r0)]);
  const op = tf.customGrad((...args) => {
    const [h, w, tg, save] = args as [tf.Tensor2D, tf.Tensor2D, tf.Tensor1D, tf.GradSaveFunc];
    const lse: tf.Tensor[] = [];
    const logp: tf.Tensor[] = [];
    const ent: tf.Tensor[] = [];
    for (const [r0, n] of chunks) {
      // one chunk's [n, V] logits live only inside this loop body (the forward runs tape-off)
      const [l, p, e] = tf.tidy(() => {
        const hc = rowsOf(h, r0, n, N);
        const tc = rowsOf(tg, r0, n, N);
        const z = scaled(tf.matMul(hc, w, false, true), invT); // [n, V]
        const s = tf.logSumExp(z, 1); // [n]
        const zt = scaled(hc.mul(tf.gather(w, tc)).sum(1), invT); // [n]: z[i, t_i], no one-hot
        if (!withEntropy) return [s, zt.sub(s)];
        return [s, zt.sub(s), s.sub(tf.exp(z.sub(s.expandDims(1))).mul(z).sum(1))]; // H [n]
      });
      lse.push(l);
      logp.push(p);
      if (e) ent.push(e);
    }
    const lseAll = concat1(lse);
    const Hall = withEntropy ? concat1(ent) : null;
    // targets are saved too: the caller's tidy may dispose them before the backward pass runs
    save(Hall ? [h, w, tg, lseAll, Hall] : [h, w, tg, lseAll]);
    const lp = concat1(logp);
    return {
      value: Hall ? tf.stack([lp, Hall], 1) : lp, // [N, 2] or [N]
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [gl, ge] = withEntropy ? tf.split(dy, 2, 1).map((x) => x.reshape([-1])) : [dy, undefined];
        return [...headGrad(saved, chunks, invT, gl as tf.Tensor1D, ge as tf.Tensor1D | undefined), tf.zerosLike(saved[2])];
      },
    };
  });
  const all = op(hn, head, targets);
  if (!withEntropy) return { logp: all as tf.Tensor1D };
  const [logp, entropy] = tf.split(all, 2, 1);
  return { logp: logp.reshape([N]) as tf.Tensor1D, entropy: entropy.reshape([N]) as tf.Tensor1D };
}

/**
 * [dhn, dhead, (targets: none)] for upstream gl (logp) and optional ge (entropy), chunk by chunk,
 * recomputing each chunk's logits. dhead is accumulated as the chunks go (one [V, d] sum alive at
 * a time, not one per chunk), and the one-hot part goes in once, as a segment sum over targets.
 */
function headGrad(saved: tf.Tensor[], chunks: [number, number][], invT: number, gl: tf.Tensor1D, ge?: tf.Tensor1D): tf.Tensor[] {
  const [h, head, tg, lse, H] = saved as [tf.Tensor2D, tf.Tensor2D, tf.Tensor1D, tf.Tensor1D, tf.Tensor1D | undefined];
  const [N] = h.shape;
  const V = head.shape[0];
  const glh = gl.expandDims(1).mul(invT); // [N, 1]: the one-hot part's weights
  let dhead = tf.unsortedSegmentSum(h.mul(glh), tg, V); // [V, d]
  const dh: tf.Tensor[] = [];
  for (const [r0, n] of chunks) {
    // [n, V] temporaries are freed as soon as the next op has read them (free()), not at the end
    // of the tidy: at most two live at once instead of five (each ~HEAD_CHUNK_BYTES), and the
    // chunk's [V, d] contribution is freed as soon as it is summed in. Same ops, same bits.
    const [dhc, next] = tf.tidy(() => {
      const hc = rowsOf(h, r0, n, N);
      const lc = rowsOf(lse, r0, n, N);
      const glc = rowsOf(gl, r0, n, N);
      const z = free(tf.matMul(hc, head, false, true), (x) => scaled(x, invT), invT !== 1); // [n, V], recomputed
      const p = free(z.sub(lc.expandDims(1)), (x) => tf.exp(x)); // softmax(z)
      let coef: tf.Tensor = glc.expandDims(1); // [n, 1]
      if (ge && H) {
        const spread = free(z.sub(lc.sub(rowsOf(H, r0, n, N)).expandDims(1)), (x) => rowsOf(ge, r0, n, N).expandDims(1).mul(x));
        coef = free(spread, (x) => coef.add(x)); // [n, V]
      }
      z.dispose();
      const negated = free(free(p, (x) => x.mul(coef)), (x) => x.neg());
      const dzSoft = free(negated, (x) => scaled(x, invT), invT !== 1); // [n, V], times 1/temperature for the matMuls
      if (coef.rank === 2 && coef.shape[1] === V) coef.dispose();
      const onehot = tf.gather(head, rowsOf(tg, r0, n, N)).mul(rowsOf(glh, r0, n, N)); // [n, d]
      const contribution = tf.matMul(dzSoft, hc, true, false); // [V, d]
      const dhcOut = free(tf.matMul(dzSoft, head), (x) => x.add(onehot));
      dzSoft.dispose();
      return [dhcOut, free(contribution, (x) => dhead.add(x))];
    });
    dhead.dispose();
    dhead = next;
    dh.push(dhc);
  }
  return [dh.length === 1 ? dh[0] : tf.concat(dh, 0), dhead];
}

function rowsOf<T extends tf.Tensor>(x: T, r0: number, n: number, N: number): T {
  if (n === N) return x;
  return (x.rank === 1 ? x.slice([r0], [n]) : x.slice([r0, 0], [n, -1])) as T;
}

function concat1(xs: tf.Tensor[]): tf.Tensor1D {
  return (xs.length === 1 ? xs[0] : tf.concat(xs, 0)) as tf.Tensor1D;
}

/** f(x), then x is freed (when `really`; else x itself is passed through untouched by the free). */
function free<T extends tf.Tensor>(x: tf.Tensor, f: (x: tf.Tensor) => T, really = true): T {
  const out = f(x);
  if (really && out !== x) x.dispose();
  return out;
}

function scaled<T extends tf.Tensor>(x: T, s: number): T {
  return s === 1 ? x : x.mul<T>(s);
}
