/**
 * Gradient (activation) checkpointing of one decoder layer: the forward keeps only the layer's
 * input stream and weights; the backward runs the layer again with the tape on and
 * differentiates that. Peak activation memory then holds one layer's intermediates instead of
 * all of them (attention scores [B, nH, T, T] and MLP [N, 2I] blocks dominate), for about one
 * more forward pass of compute. Config key `gradient_checkpointing` (off by default).
 */
import { tf } from '../engine/tf.js';
import type { FusedLayer } from './llama-forward.js';
import type { RopeCoefs } from './rope.js';

/** The layer as a function of its tensors, so the backward can run it on the saved copies. */
export type LayerFn = (h: tf.Tensor2D, L: FusedLayer, rope: RopeCoefs, mask: tf.Tensor4D) => tf.Tensor2D;

interface TapeState {
  activeTape: unknown[] | null;
}

/**
 * `layer(h, L, rope, mask)` with its intermediates recomputed in backward. Rotary tables and the
 * mask are saved too (the caller's tidy may free them before the backward pass runs); they get
 * zero gradients (they are constants).
 */
export function checkpointedLayer(layer: LayerFn, h: tf.Tensor2D, L: FusedLayer, rope: RopeCoefs, mask: tf.Tensor4D): tf.Tensor2D {
  // the layer's tensor fields (weights, biases, norms; absent ones are null) become op inputs,
  // and so do its LoRA side path's A and B (lora-side.ts), so their gradients come back too
  const keys = (Object.keys(L) as (keyof FusedLayer)[]).filter((k) => L[k] instanceof tf.Tensor);
  const parts = L.lora?.parts ?? [];
  const weights = [...keys.map((k) => L[k] as tf.Tensor), ...parts.flatMap((p) => [p.a, p.b])];
  const nW = 1 + weights.length; // h and the weights are differentiable; rope and mask are not
  const run = (xs: tf.Tensor[]): tf.Tensor2D => {
    const Lx = { ...L } as Record<string, unknown>;
    keys.forEach((k, i) => (Lx[k] = xs[1 + i]));
    if (L.lora) {
      // same seed as the forward: the recomputed layer draws the same dropout masks
      const at = 1 + keys.length;
      Lx.lora = { ...L.lora, parts: parts.map((p, j) => ({ ...p, a: xs[at + 2 * j], b: xs[at + 2 * j + 1] })) };
    }
    const [cos, sin, m] = xs.slice(nW);
    return layer(xs[0] as tf.Tensor2D, Lx as unknown as FusedLayer, { cos: cos as tf.Tensor4D, sin: sin as tf.Tensor4D }, m as tf.Tensor4D);
  };
  const op = tf.customGrad((...args) => {
    const save = args.pop() as tf.GradSaveFunc;
    const xs = args as tf.Tensor[];
    save(xs); // inputs only: the customGrad forward runs with the tape off, so its intermediates are freed
    return {
      value: run(xs),
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        // tfjs keeps one active tape per engine: a nested gradient during the outer backward pass
        // would replace (and at its end null) the outer tape, so keep and restore it
        const state = (tf.engine() as unknown as { state: TapeState }).state;
        const outer = state.activeTape;
        try {
          const differentiable = saved.slice(0, nW);
          const constants = saved.slice(nW);
          const grads = tf.grads((...ys: tf.Tensor[]) => run([...ys, ...constants]))(differentiable, dy);
          return [...grads, ...constants.map((c) => tf.zerosLike(c))];
        } finally {
          state.activeTape = outer;
        }
      },
    };
  });
  return op(h, ...weights, rope.cos, rope.sin, mask) as tf.Tensor2D;
}
