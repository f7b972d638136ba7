import { beforeAll, describe, expect, it } from 'vitest';
import { initEngine } from '../../src/engine/backend.js';
import { tf } from '../../src/engine/tf.js';
import { AdamW } from '../../src/optim/adamw.js';

beforeAll(async () => {
  await initEngine({ backend: 'auto', log: () => {} }); // the engine training runs on
});

const values = async (t: tf.Tensor) => Array.from(await t.data());

function params(entries: [string, number[], number[]][]): Map<string, tf.Variable> {
  return new Map(entries.map(([name, data, shape]) => [name, tf.variable(tf.tensor(data, shape))]));
}

describe('AdamW', () => {
  it('matches two steps worked out by hand (decoupled decay, bias correction)', async () => {
    // p = [1, -2] (a [1, 2] matrix, so it decays), lr 0.1, betas (0.9, 0.999), eps 1e-8, wd 0.01
    // step 1, g = [0.5, -1]: p*(1 - 0.001) = [0.999, -1.998]; m = [0.05, -0.1], v = [2.5e-4, 1e-3];
    //   m/0.1 = [0.5, -1], sqrt(v/0.001) = [0.5, 1]  ->  p = [0.999 - 0.1, -1.998 + 0.1] = [0.899, -1.898]
    // step 2, g = [0.1, 0.2]: p*(0.999) = [0.898101, -1.896102]; m = [0.055, -0.07];
    //   v = [2.5975e-4, 1.039e-3]; bias corrections 0.19 and 0.001999
    //   -> p = [0.898101 - 0.0803042, -1.896102 + 0.0511026] = [0.8177969, -1.8449994]
    const ps = params([['w', [1, -2], [1, 2]]]);
    const opt = new AdamW(ps, { beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01 });
    const g1 = tf.tensor([[0.5, -1]]);
    opt.apply(new Map([['w', g1]]), 0.1);
    const w = ps.get('w')!;
    (await values(w)).forEach((x, i) => expect(x).toBeCloseTo([0.899, -1.898][i], 6));
    const g2 = tf.tensor([[0.1, 0.2]]);
    opt.apply(new Map([['w', g2]]), 0.1);
    (await values(w)).forEach((x, i) => expect(x).toBeCloseTo([0.8177969, -1.8449994][i], 5));
    expect(opt.step).toBe(2);
    const state = await opt.exportState();
    state.get('w.exp_avg')!.data.forEach((x, i) => expect(x).toBeCloseTo([0.055, -0.07][i], 7));
    state.get('w.exp_avg_sq')!.data.forEach((x, i) => expect(x).toBeCloseTo([2.5975e-4, 1.039e-3][i], 9));
    expect(state.get('w.step')).toEqual({ shape: [], data: new Float32Array([2]) });
    tf.dispose([g1, g2, w]);
    opt.dispose();
  });

  it('does not decay 1-D parameters (RMSNorm gains) by default, or anything with weightDecay 0', async () => {
    const ps = params([
      ['norm.weight', [1, 1], [2]],
      ['proj.weight', [1, 1], [1, 2]],
    ]);
    const opt = new AdamW(ps, { weightDecay: 0.5 });
    const zero = new Map([...ps].map(([n, v]) => [n, tf.zerosLike(v)]));
    opt.apply(zero, 0.1); // zero gradient: only the decay moves anything
    expect(await values(ps.get('norm.weight')!)).toEqual([1, 1]);
    expect(await values(ps.get('proj.weight')!)).toEqual([0.95, 0.95].map(Math.fround));
    tf.dispose([...zero.values(), ...ps.values()]);
    opt.dispose();
  });

  it('leaves parameters without a gradient untouched and rejects unknown or misshapen gradients', async () => {
    const ps = params([
      ['a', [1, 2], [2]],
      ['b', [3], [1]],
    ]);
    const opt = new AdamW(ps);
    const g = tf.tensor([1, 1]);
    opt.apply(new Map([['a', g]]), 0.01);
    expect(await values(ps.get('b')!)).toEqual([3]);
    expect(() => opt.apply(new Map([['c', g]]), 0.01)).toThrow(expect.objectContaining({ code: 'GRPO_ERR_OPTIMIZER' }));
    expect(() => opt.apply(new Map([['b', g]]), 0.01)).toThrow(/shape/);
    expect(() => opt.apply(new Map([['a', g]]), NaN)).toThrow(expect.objectContaining({ code: 'GRPO_ERR_OPTIMIZER' }));
    expect(opt.step).toBe(1);
    tf.dispose([g, ...ps.values()]);
    opt.dispose();
  });

  it('resumes exactly from exported state', async () => {
    const init: [string, number[], number[]][] = [
      ['x', [0.3, -0.7, 1.1, 0.2], [2, 2]],
      ['y', [0.5], [1]],
    ];
    const grads = [0, 1, 2].map((k) => new Map([
      ['x', tf.tensor([0.1 * k, -0.2, 0.3, 1 - k], [2, 2])],
      ['y', tf.tensor([0.4 - k])],
    ]));
    const a = params(init);
    const optA = new AdamW(a, { weightDecay: 0.1 });
    for (const g of grads) optA.apply(g, 0.05);

    const b = params(init);
    const optB = new AdamW(b, { weightDecay: 0.1 });
    for (const g of grads.slice(0, 2)) optB.apply(g, 0.05);
    const saved = await optB.exportState();
    const bWeights = new Map(await Promise.all([...b].map(async ([n, v]) => [n, await values(v)] as const)));
    optB.dispose();

    const c = params(init.map(([n, , shape]) => [n, bWeights.get(n)!, shape]));
    const optC = new AdamW(c, { weightDecay: 0.1 });
    optC.importState(saved);
    expect(optC.step).toBe(2);
    optC.apply(grads[2], 0.05);
    for (const n of ['x', 'y']) expect(await values(c.get(n)!)).toEqual(await values(a.get(n)!));

    const bad = new Map(saved);
    bad.delete('y.exp_avg');
    expect(() => optC.importState(bad)).toThrow(expect.objectContaining({ code: 'GRPO_ERR_OPTIMIZER_STATE' }));
    const wrongShape = new Map(saved).set('y.exp_avg', { shape: [2], data: new Float32Array(2) });
    expect(() => optC.importState(wrongShape)).toThrow(/shape/);
    const extra = new Map(saved).set('z.exp_avg', { shape: [1], data: new Float32Array(1) });
    expect(() => optC.importState(extra)).toThrow(/z.exp_avg/);
    const mixedSteps = new Map(saved).set('y.step', { shape: [], data: new Float32Array([5]) });
    expect(() => optC.importState(mixedSteps)).toThrow(/step/);
    expect(optC.step).toBe(3); // failed imports changed nothing

    tf.dispose([...grads.flatMap((g) => [...g.values()]), ...a.values(), ...b.values(), ...c.values()]);
    optA.dispose();
    optC.dispose();
  });

  it('allocates no tensors per step after warm-up', () => {
    const ps = params([['w', [1, 2, 3, 4], [2, 2]]]);
    const opt = new AdamW(ps, { weightDecay: 0.01 });
    const g = new Map([['w', tf.ones([2, 2])]]);
    opt.apply(g, 0.01);
    const before = tf.memory().numTensors;
    for (let i = 0; i < 5; i++) opt.apply(g, 0.01);
    expect(tf.memory().numTensors).toBe(before);
    opt.dispose();
    expect(tf.memory().numTensors).toBe(before - 2); // the two moment variables
    tf.dispose([...g.values(), ...ps.values()]);
  });
});
