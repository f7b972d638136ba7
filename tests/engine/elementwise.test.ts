/**
 * Native unary and broadcasting binary kernels against the cpu backend: values (including
 * NaN/inf edges) and gradients, on odd and broadcast shapes.
 */
import { describe, expect, it } from 'vitest';
import { tf } from '../../src/engine/tf.js';
import { expectSameOnBackends, nativeEngine, rand, runOn } from './compare.js';

const { skipReason } = await nativeEngine();

const BROADCASTS: [number[], number[]][] = [
  [[7, 13], [7, 13]],
  [[7, 13], [13]],
  [[7, 1], [1, 13]],
  [[2, 7, 13], [7, 1]],
  [[13], [3, 7, 13]],
  [[3, 1, 5, 1], [1, 4, 1, 6]],
  [[7, 13], []],
  [[], [7, 13]],
  [[1], [1]],
];

// [name, op, whether tfjs's own gradient supports broadcasting (it does not for the last three)]
const BINARY: [string, (a: tf.Tensor, b: tf.Tensor) => tf.Tensor, boolean][] = [
  ['add', tf.add, true],
  ['sub', tf.sub, true],
  ['mul', tf.mul, true],
  ['div', (a, b) => tf.div(a, b.abs().add(0.5)), true],
  ['maximum', tf.maximum, false],
  ['minimum', tf.minimum, false],
  ['squaredDifference', tf.squaredDifference, false],
];

const UNARY: [string, (x: tf.Tensor) => tf.Tensor][] = [
  ['neg', tf.neg],
  ['exp', (x) => tf.exp(x.mul(10))],
  ['log', (x) => tf.log(x.abs().add(1e-3))],
  ['sqrt', (x) => tf.sqrt(x.abs())],
  ['rsqrt', (x) => tf.rsqrt(x.abs().add(0.1))],
  ['square', tf.square],
  ['sigmoid', (x) => tf.sigmoid(x.mul(20))],
  ['reciprocal', (x) => tf.reciprocal(x.abs().add(0.1))],
  ['abs', tf.abs],
  ['relu', tf.relu],
];

describe.skipIf(skipReason !== null)(`native elementwise kernels${skipReason ? ` (skipped: ${skipReason})` : ''}`, () => {
  for (const [name, op, broadcastGrad] of BINARY) {
    it(`${name} broadcasts like the reference: values and gradients`, async () => {
      for (const [sa, sb] of BROADCASTS) {
        const withGrad = broadcastGrad || sa.join() === sb.join();
        await expectSameOnBackends(() => {
          const a = rand(sa, 1);
          const b = rand(sb, 2);
          if (!withGrad) return op(a, b);
          const [ga, gb] = tf.grads((x: tf.Tensor, y: tf.Tensor) => op(x, y).mul(op(x, y)).sum())([a, b]);
          return [op(a, b), ga, gb];
        });
      }
    });
  }

  for (const [name, op] of UNARY) {
    it(`${name} matches the reference: values and gradient`, async () => {
      await expectSameOnBackends(() => {
        const x = rand([7, 13, 5], 3);
        return [op(x), tf.grad((v: tf.Tensor) => op(v).sum())(x)];
      });
    });
  }

  it('exp saturates at the ends of float32 (subnormal results flush to 0) and keeps NaN', async () => {
    const inputs = [-1e9, -104, -87.5, -87.3, 0, 1, 88.7, 89, 1e9, NaN];
    const [out] = await runOn('wasm', () => tf.exp(tf.tensor1d(inputs)));
    out.values.forEach((v, i) => {
      const e = Math.exp(Math.fround(inputs[i]));
      if (Number.isNaN(e)) expect(v).toBeNaN();
      else if (e > 3.4028234663852886e38) expect(v).toBe(Infinity);
      else if (e < 1.1754943508222875e-38) expect(Math.abs(v - e)).toBeLessThan(1.2e-38);
      else expect(Math.abs(v - e) / e).toBeLessThan(1e-6);
    });
  });

  it('maximum and minimum propagate NaN as Math.max/min do', async () => {
    await expectSameOnBackends(() => {
      const a = tf.tensor1d([1, NaN, 3, NaN]);
      const b = tf.tensor1d([NaN, 2, 1, NaN]);
      return [tf.maximum(a, b), tf.minimum(a, b)];
    });
  });

  it('leaves int32 arithmetic to the stock kernels', async () => {
    await expectSameOnBackends(() => [tf.add(tf.tensor1d([1, 2, 3], 'int32'), tf.scalar(4, 'int32')), tf.mul(tf.tensor1d([2, -3], 'int32'), 5)]);
  });

  it('handles large tensors split across threads', async () => {
    await expectSameOnBackends(() => {
      const a = rand([300, 700], 4);
      return [tf.mul(a, rand([700], 5)), tf.sigmoid(a), tf.add(a, rand([300, 1], 6))];
    });
  });
});
