/**
 * The shared-prefix training forward (src/model/shared-prefix.ts) against the whole-row forward:
 * the same log-probabilities and entropies at the completion positions and the same gradients,
 * on every family (the tiny Hugging Face fixtures: Llama-3, Qwen2, Qwen3, Gemma2 with its sliding
 * windows and soft-capping), under a grammar mask, with LoRA adapters beside the weights, and
 * without tensor growth.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tf } from '../../src/engine/tf.js';
import { buildAllowedMask } from '../../src/model/allowed-mask.js';
import { loadCheckpoint } from '../../src/model/checkpoint.js';
import { LlamaModel, type LogProbOptions } from '../../src/model/llama.js';
import { llamaParamShapes } from '../../src/model/llama-params.js';
import { LoraAdapters } from '../../src/model/lora.js';
import { findSharedPrefix, type SharedPrefix } from '../../src/model/shared-prefix.js';
import { expectCode } from '../helpers.js';

const FIXTURES = join(import.meta.dirname, '../fixtures');
const FAMILIES = ['llama3', 'qwen2', 'qwen3', 'gemma2'] as const;

// 3 groups laid out as the learner does: prompts end at column P = 7 (left-padded), completions
// start there (right-padded). Longer than Gemma2's window of 4; group 1's prompt is padded.
const P = 7;
const PROMPTS = [
  [1, 5, 6, 7, 8, 40, 41],
  [1, 9, 12],
  [1, 3, 4, 11, 12, 13, 14],
];
const COMPLETIONS = [
  [[20, 21, 2], [22], [23, 24, 25, 26, 2], [27, 28]],
  [[30, 31], [32, 33, 34, 2], [35], [36, 37, 38]],
  [[44, 2], [45, 46, 47], [48, 49, 50, 51, 52], [53]],
];
const G = 4;
const C = 5;
const T = P + C;
const B = PROMPTS.length * G;

function layout(): { ids: Int32Array; leftPad: Int32Array; mask: Float32Array } {
  const ids = new Int32Array(B * T);
  const leftPad = new Int32Array(B);
  const mask = new Float32Array(B * (T - 1));
  PROMPTS.forEach((prompt, g) => {
    for (let j = 0; j < G; j++) {
      const b = g * G + j;
      const comp = COMPLETIONS[g][j];
      leftPad[b] = P - prompt.length;
      ids.set(prompt, b * T + leftPad[b]);
      ids.set(comp, b * T + P);
      mask.fill(1, b * (T - 1) + P - 1, b * (T - 1) + P - 1 + comp.length);
    }
  });
  return { ids, leftPad, mask };
}

const { ids: IDS, leftPad: LEFT_PAD, mask: MASK } = layout();

/** A grammar mask on some completion positions (sets holding the token there). */
function grammarMask(): LogProbOptions['allowed'] {
  const sets: (number[] | null)[] = new Array(B * (T - 1)).fill(null);
  for (let b = 0; b < B; b++) {
    for (let t = P - 1; t < T - 1; t += 2) {
      if (MASK[b * (T - 1) + t] !== 1) continue;
      const tok = IDS[b * T + t + 1];
      sets[b * (T - 1) + t] = [...new Set([2, 3, tok, 60])].sort((x, y) => x - y);
    }
  }
  return buildAllowedMask(sets) ?? undefined;
}

interface Outcome {
  logp: Float32Array;
  entropy: Float32Array;
  grads: Map<string, Float32Array>;
}

/** Masked log-probs and entropies, and the gradients of sum(mask * (logp + 0.1 entropy)). */
async function run(model: LlamaModel, opts: LogProbOptions, vars: Map<string, tf.Variable>): Promise<Outcome> {
  const ids = tf.tensor2d(IDS, [B, T], 'int32');
  const mask = tf.tensor2d(MASK, [B, T - 1]);
  const kept: tf.Tensor[] = [];
  const { value, grads } = tf.variableGrads(() => {
    const r = model.tokenLogProbs(ids, { ...opts, leftPad: LEFT_PAD, withEntropy: true });
    kept.push(tf.keep(r.logp.mul(mask)), tf.keep(r.entropy!.mul(mask)));
    return r.logp.add(r.entropy!.mul(0.1)).mul(mask).sum() as tf.Scalar;
  }, [...vars.values()]);
  const byName = new Map<string, Float32Array>();
  const nameOf = new Map([...vars].map(([name, v]) => [v.name, name]));
  for (const [id, g] of Object.entries(grads)) byName.set(nameOf.get(id)!, (await g.data()) as Float32Array);
  const out = { logp: (await kept[0].data()) as Float32Array, entropy: (await kept[1].data()) as Float32Array, grads: byName };
  tf.dispose([ids, mask, value, ...Object.values(grads), ...kept]);
  return out;
}

function maxDiff(a: Float32Array, b: Float32Array): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

/** Largest gradient difference relative to the largest gradient entry of that parameter. */
function gradDiff(a: Map<string, Float32Array>, b: Map<string, Float32Array>): number {
  expect([...a.keys()].sort()).toEqual([...b.keys()].sort());
  let worst = 0;
  for (const [name, x] of a) {
    const y = b.get(name)!;
    let scale = 1e-6;
    for (const v of x) scale = Math.max(scale, Math.abs(v));
    worst = Math.max(worst, maxDiff(x, y) / scale);
  }
  return worst;
}

beforeAll(async () => {
  await tf.setBackend('cpu');
});

describe('findSharedPrefix', () => {
  it('finds one prompt row per group, in order', () => {
    const p = findSharedPrefix(IDS, B, T, P);
    expect(p.length).toBe(P);
    expect(Array.from(p.rows)).toEqual([0, 4, 8]);
    expect(Array.from(p.promptOf)).toEqual([0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2]);
  });
});

describe.each(FAMILIES)('shared-prefix forward on the tiny %s fixture', (family) => {
  let model: LlamaModel;
  let vars: Map<string, tf.Variable>;
  let prefix: SharedPrefix;
  beforeAll(async () => {
    const ckpt = await loadCheckpoint(join(FIXTURES, `hf-tiny-${family}`));
    model = LlamaModel.fromHostTensors(ckpt.config, ckpt.weights);
    vars = model.trainableVariables();
    prefix = findSharedPrefix(IDS, B, T, P);
  });
  afterAll(() => model.dispose());

  it('gives the whole-row forward’s log-probs, entropies and gradients', async () => {
    for (const temperature of [1, 0.7]) {
      const whole = await run(model, { temperature }, vars);
      const shared = await run(model, { temperature, prefix }, vars);
      expect(maxDiff(shared.logp, whole.logp)).toBeLessThan(1e-5);
      expect(maxDiff(shared.entropy, whole.entropy)).toBeLessThan(1e-5);
      expect(gradDiff(shared.grads, whole.grads)).toBeLessThan(1e-4);
    }
  });

  it('does so under a grammar mask', async () => {
    const allowed = grammarMask();
    expect(allowed).toBeDefined();
    const whole = await run(model, { allowed }, vars);
    const shared = await run(model, { allowed, prefix }, vars);
    expect(maxDiff(shared.logp, whole.logp)).toBeLessThan(1e-5);
    expect(gradDiff(shared.grads, whole.grads)).toBeLessThan(1e-4);
  });

  it('leaves no tensor behind over repeated calls', async () => {
    await run(model, { prefix }, vars);
    const before = tf.memory().numTensors;
    for (let i = 0; i < 3; i++) await run(model, { prefix }, vars);
    expect(tf.memory().numTensors).toBe(before);
  });
});

describe('shared-prefix forward with LoRA adapters beside the weights', () => {
  it('gives the whole-row forward’s log-probs and adapter gradients', async () => {
    const ckpt = await loadCheckpoint(join(FIXTURES, 'hf-tiny-llama3'));
    const model = LlamaModel.fromHostTensors(ckpt.config, ckpt.weights, { trainable: false });
    const spec = { r: 4, alpha: 8, dropout: 0, targetModules: 'all-linear' as const };
    const adapters = LoraAdapters.create(llamaParamShapes(ckpt.config), spec, 3);
    const host = await adapters.toHostTensors();
    let x = 5;
    for (const [name, t] of host) {
      if (name.includes('lora_B')) for (let i = 0; i < t.data.length; i++) t.data[i] = ((x = (x * 1103515245 + 12345) % 2 ** 31) / 2 ** 31 - 0.5) * 0.2;
    }
    adapters.setHostTensors(host);
    model.setAdapters(adapters, 'side');
    const vars = model.trainableVariables();
    const whole = await run(model, {}, vars);
    const shared = await run(model, { prefix: findSharedPrefix(IDS, B, T, P) }, vars);
    expect(maxDiff(shared.logp, whole.logp)).toBeLessThan(1e-5);
    expect(gradDiff(shared.grads, whole.grads)).toBeLessThan(1e-4);
    model.dispose();
    adapters.dispose();
  });
});

describe('shared-prefix arguments', () => {
  it('are checked: a bad prefix and gradient checkpointing are GRPO_ERR_MODEL_INPUT', async () => {
    const ckpt = await loadCheckpoint(join(FIXTURES, 'hf-tiny-llama3'));
    const model = LlamaModel.fromHostTensors(ckpt.config, ckpt.weights);
    const ids = tf.tensor2d(IDS, [B, T], 'int32');
    const good = findSharedPrefix(IDS, B, T, P);
    const call = (prefix: SharedPrefix, checkpoint = false) => () => tf.tidy(() => model.tokenLogProbs(ids, { leftPad: LEFT_PAD, prefix, checkpoint }).logp);
    expectCode(call({ ...good, length: T }), 'GRPO_ERR_MODEL_INPUT');
    expectCode(call({ ...good, promptOf: good.promptOf.subarray(1) }), 'GRPO_ERR_MODEL_INPUT');
    expectCode(call({ ...good, promptOf: Int32Array.from(good.promptOf, () => 3) }), 'GRPO_ERR_MODEL_INPUT');
    expectCode(call(good, true), 'GRPO_ERR_MODEL_INPUT');
    ids.dispose();
    model.dispose();
  });
});
