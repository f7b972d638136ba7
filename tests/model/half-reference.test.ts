/**
 * The 16-bit KL reference: log-probabilities within bf16/f16 rounding of the float32 model's,
 * half the bytes held, no tensors left behind.
 */
import { describe, expect, it } from 'vitest';
import { tf } from '../../src/engine/tf.js';
import { HalfReference } from '../../src/model/half-reference.js';
import { LlamaModel } from '../../src/model/llama.js';
import { REFERENCE_CONFIG } from '../../src/model/presets.js';
import { Rng } from '../../src/shared/rng.js';

/** Largest |a - b| over two equally long arrays. */
function maxDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

describe('HalfReference', () => {
  const model = LlamaModel.create(REFERENCE_CONFIG, 7);
  const rng = new Rng(3);
  const ids = tf.tensor2d(Int32Array.from({ length: 4 * 32 }, () => rng.int(0, REFERENCE_CONFIG.vocab_size - 1)), [4, 32], 'int32');
  const exact = tf.tidy(() => model.tokenLogProbs(ids).logp).arraySync().flat();

  // Tolerance: bf16 rounds each weight by at most 2^-9 relative, f16 by 2^-12; through 4 layers
  // and a 64-way softmax that moved per-token log-probs by at most 0.0020 and 0.0003 nats here.
  for (const [dtype, tol] of [['bfloat16', 0.01], ['float16', 0.002]] as const) {
    it(`gives ${dtype} log-probabilities within ${tol} nats of float32, holding 2 bytes per parameter`, () => {
      const ref = HalfReference.from(model, dtype);
      const before = tf.memory().numTensors;
      const logp = tf.tidy(() => ref.tokenLogProbs(ids).logp);
      const got = logp.arraySync().flat();
      logp.dispose();
      expect(tf.memory().numTensors).toBe(before); // the widened float32 copy is freed
      const d = maxDiff(got, exact);
      expect(d).toBeLessThan(tol);
      expect(d).toBeGreaterThan(0); // it really is rounded
      expect(ref.bytes).toBe(2 * model.numParams()); // half the float32 model's 4 bytes per parameter
      ref.dispose();
      expect(() => ref.tokenLogProbs(ids)).toThrow(/disposed/);
    });
  }
});
