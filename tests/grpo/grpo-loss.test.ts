import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { tf } from '../../src/engine/tf.js';
import type { Tensor, Tensor2D } from '../../src/engine/tf.js';
import {
  LOSS_METRIC_NAMES,
  LOSS_TYPES,
  grpoLoss,
  readLossMetrics,
  type GrpoLossInputs,
  type GrpoLossOptions,
  type LossType,
} from '../../src/grpo/index.js';
import { expectClose, expectCode, loadFixture } from './helpers.js';

interface LossCase {
  name: string;
  opts: GrpoLossOptions & { lossType: LossType };
  inputs: {
    logp: number[][];
    oldLogp: number[][];
    refLogp?: number[][];
    entropy?: number[][];
    mask: number[][];
    advantages: number[];
  };
  expected: Record<(typeof LOSS_METRIC_NAMES)[number], number | null> & { gradLogp: number[][] };
}

const golden = loadFixture<{ cases: LossCase[] }>('loss.json');

beforeAll(async () => {
  await tf.setBackend('cpu');
});

function tensors(c: LossCase): GrpoLossInputs {
  const i = c.inputs;
  return {
    logp: tf.tensor2d(i.logp),
    oldLogp: tf.tensor2d(i.oldLogp),
    refLogp: i.refLogp ? tf.tensor2d(i.refLogp) : undefined,
    entropy: i.entropy ? tf.tensor2d(i.entropy) : undefined,
    mask: tf.tensor2d(i.mask),
    advantages: tf.tensor1d(i.advantages),
  };
}

function disposeInputs(x: GrpoLossInputs): void {
  const all: unknown[] = [x.logp, x.oldLogp, x.refLogp, x.entropy, x.mask, x.advantages];
  tf.dispose(all.filter((t): t is Tensor => t instanceof tf.Tensor));
}

/** d loss / d logp by tf.grad. */
function gradLogp(inputs: GrpoLossInputs, opts: GrpoLossOptions): Tensor {
  return tf.grad((lp: Tensor) => grpoLoss({ ...inputs, logp: lp as Tensor2D }, opts).loss)(inputs.logp);
}

describe('grpoLoss golden cases (tools/golden/grpo_golden.py)', () => {
  it('covers every loss type at both importance levels, with clipping on both sides', () => {
    for (const lossType of LOSS_TYPES) {
      for (const level of ['token', 'sequence']) {
        const cases = golden.cases.filter((c) => c.opts.lossType === lossType && c.opts.importanceLevel === level);
        expect(cases.some((c) => (c.opts.beta ?? 0) === 0) && cases.some((c) => (c.opts.beta ?? 0) > 0)).toBe(true);
        const clipsBoth = (x: LossCase): boolean => x.expected.clipLow! > 0 && x.expected.clipHigh! > 0;
        expect(cases.every((x) => x.name.includes('on_policy') || clipsBoth(x))).toBe(true);
      }
    }
  });

  for (const c of golden.cases) {
    it(`${c.name}: loss, metrics and d loss / d logp match`, async () => {
      const inputs = tensors(c);
      try {
        const metrics = await readLossMetrics(grpoLoss(inputs, c.opts));
        for (const name of LOSS_METRIC_NAMES) {
          expectClose([metrics[name]], [c.expected[name]], 2e-6, 2e-5, name);
        }
        const grad = gradLogp(inputs, c.opts);
        const g = grad.arraySync() as number[][];
        grad.dispose();
        // float32 autodiff vs float64 central differences
        c.expected.gradLogp.forEach((row, b) => expectClose(g[b], row, 1e-6, 1e-4, `grad row ${b}`));
        // padding gets no gradient
        c.inputs.mask.forEach((row, b) => row.forEach((m, t) => m === 0 && expect(Math.abs(g[b][t])).toBe(0)));
      } finally {
        disposeInputs(inputs);
      }
    });
  }
});

describe('grpoLoss properties', () => {
  const arbBatch = fc
    .record({ B: fc.integer({ min: 1, max: 5 }), T: fc.integer({ min: 1, max: 6 }) })
    .chain(({ B, T }) =>
      fc.record({
        logp: fc.array(fc.array(fc.double({ min: -4, max: -0.01, noNaN: true }), { minLength: T, maxLength: T }), {
          minLength: B,
          maxLength: B,
        }),
        lengths: fc.array(fc.integer({ min: 0, max: T }), { minLength: B, maxLength: B }),
        advantages: fc.array(fc.double({ min: -3, max: 3, noNaN: true }), { minLength: B, maxLength: B }),
        level: fc.constantFrom('token' as const, 'sequence' as const),
        lossType: fc.constantFrom(...LOSS_TYPES),
        passOld: fc.boolean(),
      }),
    );

  it('with oldLogp = logp and beta 0 the gradient is the REINFORCE gradient -A * mask / normaliser', () => {
    fc.assert(
      fc.property(arbBatch, (s) => {
        const B = s.logp.length;
        const T = s.logp[0].length;
        const mask = s.lengths.map((n) => Array.from({ length: T }, (_, t) => (t < n ? 1 : 0)));
        const numTokens = s.lengths.reduce((a, n) => a + n, 0);
        const maxLen = T + 3;
        const numItems = numTokens + 7;
        const opts: GrpoLossOptions = {
          lossType: s.lossType,
          importanceLevel: s.level,
          beta: 0,
          maxCompletionLength: maxLen,
          numItemsInBatch: numItems,
        };
        const logp = tf.tensor2d(s.logp);
        const maskT = tf.tensor2d(mask);
        // the very same tensor as oldLogp (its gradient must be stopped), or oldLogp omitted
        const oldLogp = s.passOld ? logp : undefined;
        const inputs: GrpoLossInputs = { logp, oldLogp, mask: maskT, advantages: s.advantages };
        const grad = gradLogp(inputs, opts);
        const g = grad.arraySync() as number[][];
        tf.dispose([grad, logp, maskT]);
        const norm = (b: number): number => {
          const byType = { grpo: B * Math.max(s.lengths[b], 1), bnpo: Math.max(numTokens, 1), dr_grpo: B * maxLen, dapo: numItems };
          return byType[s.lossType];
        };
        for (let b = 0; b < B; b++) {
          const want = mask[b].map((m) => (-Math.fround(s.advantages[b]) * m) / norm(b));
          expectClose(g[b], want, 1e-6, 1e-5, `row ${b}`);
        }
      }),
      { numRuns: 40, seed: 20240611 },
    );
  });

  it('on-policy, the ratio is 1, nothing is clipped and the loss is -mean advantage (grpo)', async () => {
    const logp = tf.tensor2d([[-1, -2, -0.5], [-0.3, -0.7, -4]]);
    const mask = tf.tensor2d([[1, 1, 0], [1, 1, 1]]);
    const m = await readLossMetrics(grpoLoss({ logp, mask, advantages: [0.5, -1.5] }, { lossType: 'grpo' }));
    tf.dispose([logp, mask]);
    expect(m.ratioMean).toBeCloseTo(1, 6);
    expect(m.clipRegion).toBe(0);
    expect(m.loss).toBeCloseTo(-(0.5 - 1.5) / 2, 6);
    expect(m.kl).toBeNaN(); // no reference given
    expect(m.entropy).toBeNaN();
    expect(m.numTokens).toBe(5);
  });

  it('the entropy bonus has gradient -entropyCoef * mask / normaliser wrt the entropy input', () => {
    const logp = tf.tensor2d([[-1, -2, -0.5], [-0.3, -0.7, -4]]);
    const entropy = tf.tensor2d([[1, 2, 3], [0.5, 0.25, 1]]);
    const mask = tf.tensor2d([[1, 1, 0], [1, 1, 1]]);
    const opts: GrpoLossOptions = { lossType: 'bnpo', entropyCoef: 0.1 };
    const [gLogp, gEnt] = tf.grads((lp: Tensor, ent: Tensor) =>
      grpoLoss({ logp: lp as Tensor2D, entropy: ent as Tensor2D, mask, advantages: [1, -1] }, opts).loss,
    )([logp, entropy]);
    expectClose(gEnt.dataSync(), [-0.02, -0.02, 0, -0.02, -0.02, -0.02], 1e-7);
    expectClose(gLogp.dataSync(), [-0.2, -0.2, 0, 0.2, 0.2, 0.2], 1e-7);
    tf.dispose([logp, entropy, mask, gLogp, gEnt]);
  });

  it('dapo over micro-batches (gradients summed) equals one pass over the whole batch', () => {
    const c = golden.cases.find((x) => x.name === 'bnpo_token_kl_entropy_cliphigher')!;
    const all = tensors(c);
    const B = c.inputs.logp.length;
    const total = c.inputs.mask.flat().reduce((a, m) => a + m, 0);
    const opts: GrpoLossOptions = { ...c.opts, lossType: 'dapo', numItemsInBatch: total };
    const full = gradLogp(all, opts);
    const parts: Tensor[] = [];
    for (const [start, end] of [
      [0, 2],
      [2, B],
    ]) {
      const rows = (t: number[][]): Tensor2D => tf.tensor2d(t.slice(start, end));
      const micro: GrpoLossInputs = {
        logp: rows(c.inputs.logp),
        oldLogp: rows(c.inputs.oldLogp),
        refLogp: rows(c.inputs.refLogp!),
        entropy: rows(c.inputs.entropy!),
        mask: rows(c.inputs.mask),
        advantages: c.inputs.advantages.slice(start, end),
      };
      parts.push(gradLogp(micro, opts));
      disposeInputs(micro);
    }
    const joined = tf.concat(parts, 0);
    expectClose(joined.dataSync(), full.dataSync(), 1e-7, 1e-5, 'accumulated grad');
    // and with numItemsInBatch = all tokens, dapo on the whole batch is bnpo
    const bnpo = gradLogp(all, { ...c.opts, lossType: 'bnpo' });
    expectClose(bnpo.dataSync(), full.dataSync(), 1e-7, 1e-5, 'bnpo grad');
    tf.dispose([full, joined, bnpo, ...parts]);
    disposeInputs(all);
  });

  it('a custom reducer can stand in for the table', async () => {
    const c = golden.cases.find((x) => x.name === 'dapo_token_beta0')!;
    const inputs = tensors(c);
    const own = await readLossMetrics(
      grpoLoss(inputs, { ...c.opts, lossType: (L, M) => tf.div(tf.sum(tf.mul(L, M)), c.opts.numItemsInBatch!) }),
    );
    expect(own.loss).toBeCloseTo(c.expected.loss!, 5);
    const perRow = (L: Tensor2D): tf.Scalar => tf.sum(L, 1) as unknown as tf.Scalar;
    expectCode(() => grpoLoss(inputs, { lossType: perRow }), 'GRPO_ERR_BAD_SHAPE', /scalar/);
    disposeInputs(inputs);
  });
});

describe('grpoLoss memory and bad input', () => {
  const c = golden.cases.find((x) => x.name === 'grpo_sequence_kl_entropy_cliphigher')!;

  it('does not leak tensors across calls, gradients and failed calls', async () => {
    const inputs = tensors(c);
    const step = async (): Promise<void> => {
      await readLossMetrics(grpoLoss(inputs, c.opts));
      // the training-step pattern of docs/objective.md: keep the metrics out of variableGrads' tidy
      let metrics: tf.Tensor1D | null = null;
      const { value, grads } = tf.variableGrads(() => {
        const out = grpoLoss({ ...inputs, logp: tf.mul(lp, 1) as Tensor2D }, c.opts);
        metrics = tf.keep(out.metrics);
        return out.loss;
      }, [lp]);
      const m = await readLossMetrics(metrics!);
      expect(m.loss).toBeCloseTo(value.dataSync()[0], 6);
      expect(m.loss).toBeCloseTo(c.expected.loss!, 5);
      tf.dispose([value, grads]);
    };
    const lp = tf.variable(inputs.logp);
    await step(); // warm-up: first calls may allocate backend constants
    const before = tf.memory().numTensors;
    for (let i = 0; i < 3; i++) await step();
    expectCode(() => grpoLoss(inputs, { ...c.opts, lossType: 'dapo' }), 'GRPO_ERR_BAD_OPTION'); // fails inside tidy
    expect(tf.memory().numTensors).toBe(before);
    lp.dispose();
    disposeInputs(inputs);
  });

  it('rejects bad shapes, NaN advantages and bad options with coded errors', () => {
    const x = tensors(c);
    const wide = tf.zeros([6, 7]) as Tensor2D;
    const v3 = tf.ones([3]);
    const nanAdv = tf.tensor1d([0, NaN, 0, 0, 0, 0]);
    const o = { ...c.opts };
    expectCode(() => grpoLoss({ ...x, oldLogp: wide }, o), 'GRPO_ERR_BAD_SHAPE', /oldLogp has shape \[6, 7\], expected \[6, 5\]/);
    expectCode(() => grpoLoss({ ...x, mask: wide }, o), 'GRPO_ERR_BAD_SHAPE', /mask/);
    expectCode(() => grpoLoss({ ...x, logp: v3 as unknown as Tensor2D }, o), 'GRPO_ERR_BAD_SHAPE', /logp/);
    expectCode(() => grpoLoss({ ...x, advantages: v3 as tf.Tensor1D }, o), 'GRPO_ERR_BAD_SHAPE', /advantages/);
    expectCode(() => grpoLoss({ ...x, advantages: [1, 2] }, o), 'GRPO_ERR_BAD_SHAPE', /2 advantages for 6 rows/);
    expectCode(() => grpoLoss({ ...x, advantages: [0, 0, NaN, 0, 0, 0] }, o), 'GRPO_ERR_BAD_ADVANTAGE', /advantage 2 is NaN/);
    expectCode(() => grpoLoss({ ...x, advantages: nanAdv as tf.Tensor1D }, o), 'GRPO_ERR_BAD_ADVANTAGE', /advantage 1/);
    expectCode(() => grpoLoss({ ...x, refLogp: undefined }, o), 'GRPO_ERR_BAD_OPTION', /needs refLogp/);
    expectCode(() => grpoLoss({ ...x, entropy: undefined }, o), 'GRPO_ERR_BAD_OPTION', /needs the entropy/);
    const stray = { ...o, clipRatio: 0.2 } as GrpoLossOptions;
    expectCode(() => grpoLoss(x, stray), 'GRPO_ERR_BAD_OPTION', /unknown option\(s\) clipRatio/);
    expectCode(() => grpoLoss(x, { ...o, lossType: 'ppo' as LossType }), 'GRPO_ERR_BAD_OPTION', /lossType/);
    expectCode(() => grpoLoss(x, { ...o, epsilonLow: -0.1 }), 'GRPO_ERR_BAD_OPTION', /epsilonLow/);
    expectCode(() => grpoLoss(x, { ...o, beta: NaN }), 'GRPO_ERR_BAD_OPTION', /beta/);
    expectCode(() => grpoLoss(x, { ...o, importanceLevel: 'seq' as 'token' }), 'GRPO_ERR_BAD_OPTION', /importanceLevel/);
    expectCode(() => grpoLoss(x, { ...o, lossType: 'dr_grpo' }), 'GRPO_ERR_BAD_OPTION', /maxCompletionLength/);
    expectCode(() => grpoLoss(x, { ...o, lossType: 'dapo', numItemsInBatch: 0 }), 'GRPO_ERR_BAD_OPTION', /numItemsInBatch/);
    tf.dispose([wide, v3, nanAdv]);
    disposeInputs(x);
  });
});
