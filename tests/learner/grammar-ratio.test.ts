/**
 * Behaviour log-probabilities under a grammar mask (docs/objective.md, "Behaviour
 * log-probabilities under a grammar mask"): workers report each sampled token's log-probability
 * renormalised over the grammar's allowed set, with the sets, and the learner renormalises its
 * recomputation over the same sets, so on the first inner iteration of an on-policy step the
 * importance ratio is 1 however much mass the grammar cut away. A peaked random model samples
 * Countdown under its grammar through the worker's batchGrammar; the groups go through the
 * learner's batch layout and GrpoTrainer.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { batchOptionsFromConfig, buildStepBatch, microBatchTensors } from '../../src/learner/batch.js';
import { GrpoTrainer } from '../../src/learner/train-step.js';
import { parseConfig } from '../../src/shared/config.js';
import { tf } from '../../src/engine/tf.js';
import { CharTokenizer } from '../../src/model/char-tokenizer.js';
import { LlamaModel } from '../../src/model/llama.js';
import { sample } from '../../src/model/sampling.js';
import type { GroupRollout } from '../../src/shared/protocol.js';
import { COUNTDOWN_ALPHABET, createCountdown, distanceReward, evaluateCountdown, reachedReward } from '../../src/tasks/countdown.js';
import { batchGrammar } from '../../src/tasks/grammar-batch.js';
import { decodeCompletion, promptIds } from '../../src/tasks/encoding.js';
import { tinyLlamaConfig } from '../helpers.js';

const GROUP = 6;
const TEMPERATURE = 1.3;
const task = createCountdown({ seed: 4, options: { min_count: 3, max_count: 3, max_number: 12, max_target: 60 } });
const tokenizer = CharTokenizer.fromAlphabet(COUNTDOWN_ALPHABET);
let model: LlamaModel;
let groups: GroupRollout[];
let rawMass: number[]; // per sampled token, its probability under the unmasked model

function config(o: Record<string, unknown> = {}) {
  return parseConfig({
    group_size: GROUP,
    micro_batch_size: 64,
    max_gen_len: task.maxCompletionTokens,
    temperature: TEMPERATURE,
    kl_coef: 0,
    lr: 1e-2,
    num_iterations: 2,
    ...o,
  });
}

beforeAll(async () => {
  await tf.setBackend('cpu');
  const mc = tinyLlamaConfig(tokenizer, {
    max_position_embeddings: 64,
    initializer_range: 0.6, // peaked: much of the mass sits on tokens the grammar forbids
  }, 'gqa');
  model = LlamaModel.create(mc, 21);
  const problems = Array.from({ length: 4 }, (_, i) => task.example('train', i));
  const rows = problems.flatMap((p) => Array.from({ length: GROUP }, () => ({ task, prompt: p.prompt })));
  const hook = batchGrammar(tokenizer, rows)!;
  const r = await sample(model, rows.map((row) => promptIds(tokenizer, row.prompt)), {
    maxNewTokens: task.maxCompletionTokens,
    temperature: TEMPERATURE,
    topK: 0,
    topP: 1,
    stopTokens: [tokenizer.eosId],
    seed: 5,
    allowedTokens: hook,
  });
  groups = problems.map((p, g) => ({
    groupId: `g${g}`,
    policyVersion: 0,
    promptTokens: promptIds(tokenizer, p.prompt),
    completions: Array.from({ length: GROUP }, (_, k) => {
      const row = g * GROUP + k;
      const text = decodeCompletion(tokenizer, r.tokens[row]);
      return {
        tokens: r.tokens[row],
        logprobs: r.logprobs[row],
        allowed: r.allowed![row],
        text,
        rewards: { reached: reachedReward(text, p.meta), distance: distanceReward(text, p.meta) },
        finishReason: r.finishReason[row],
      };
    }),
  }));
  // each sampled token's probability under the model alone, from the learner's full forward
  const opts = batchOptionsFromConfig(config(), model.config, { reached: 1, distance: 0.2 });
  const mb = buildStepBatch(groups, opts).microBatches[0];
  const t = microBatchTensors(mb);
  const lsm = tf.tidy(() => model.tokenLogProbs(t.ids, { temperature: TEMPERATURE, leftPad: t.leftPad }).logp);
  const logp = await lsm.data();
  tf.dispose([lsm, t.ids, t.mask, t.oldLogp]);
  rawMass = [];
  for (let i = 0; i < mb.mask.length; i++) if (mb.mask[i] === 1) rawMass.push(Math.exp(logp[i]));
});

describe('log-probabilities under a grammar mask', () => {
  it('samples only grammar-valid completions, with finite masked log-probs <= 0 and their allowed sets', () => {
    for (const g of groups) {
      for (const c of g.completions) {
        expect(c.allowed).toHaveLength(c.tokens.length);
        c.allowed!.forEach((set, t) => {
          expect(set).toContain(c.tokens[t]);
          if (set!.length === 1) expect(c.logprobs[t]).toBe(0); // a forced token: probability 1 under the mask
        });
        expect(c.finishReason).toBe('stop');
        expect(evaluateCountdown(c.text, task.example('train', Number(g.groupId.slice(1))).meta).valid, c.text).toBe(true);
        for (const lp of c.logprobs) {
          expect(Number.isFinite(lp)).toBe(true);
          expect(lp).toBeLessThanOrEqual(0);
        }
      }
    }
    // the mask mattered: the model alone would rarely have drawn some of these tokens
    expect(Math.min(...rawMass)).toBeLessThan(0.05);
  });

  it('recomputes exactly the workers\u2019 log-probs on the learner, so the first inner iteration has ratio 1', async () => {
    const c = config();
    const opts = batchOptionsFromConfig(c, model.config, { reached: 1, distance: 0.2 });
    const mb = buildStepBatch(groups, opts).microBatches[0];
    const t = microBatchTensors(mb);
    expect(t.allowed).toBeDefined();
    const masked = tf.tidy(() => model.tokenLogProbs(t.ids, { temperature: TEMPERATURE, leftPad: t.leftPad, allowed: t.allowed }).logp);
    const raw = tf.tidy(() => model.tokenLogProbs(t.ids, { temperature: TEMPERATURE, leftPad: t.leftPad }).logp);
    const [m, u] = [await masked.data(), await raw.data()];
    tf.dispose([masked, raw, t.ids, t.mask, t.oldLogp]);
    let worst = 0;
    let rawWorst = 0;
    for (let i = 0; i < mb.mask.length; i++) {
      if (mb.mask[i] !== 1) continue;
      worst = Math.max(worst, Math.abs(m[i] - mb.oldLogp[i]));
      rawWorst = Math.max(rawWorst, Math.abs(u[i] - mb.oldLogp[i]));
    }
    expect(worst).toBeLessThan(1e-4);
    expect(rawWorst).toBeGreaterThan(1); // without the sets the ratio would be off by the mask's kept mass

    const tensorsBefore = tf.memory().numTensors;
    const policy = LlamaModel.fromHostTensors(model.config, await model.toHostTensors());
    const trainer = new GrpoTrainer({ config: c, policy, rewardWeights: { reached: 1, distance: 0.2 } });
    try {
      const m = await trainer.step(groups, 0);
      expect(m.updated).toBe(true);
      expect(m.epochs).toHaveLength(2);
      expect(Math.abs(m.epochs[0].ratioMean - 1)).toBeLessThan(1e-4);
      expect(m.epochs[0].clipRegion).toBe(0);
      // the second iteration runs on updated weights: the ratio moved, which shows the check can fail
      expect(Math.abs(m.epochs[1].ratioMean - 1)).toBeGreaterThan(1e-4);
    } finally {
      trainer.dispose();
      policy.dispose();
    }
    expect(tf.memory().numTensors).toBe(tensorsBefore); // the masked path leaves nothing behind
  });

  it('rejects allowed sets that do not match their tokens', () => {
    const opts = batchOptionsFromConfig(config(), model.config, { reached: 1, distance: 0.2 });
    const c = groups[0].completions[0];
    const bad = [
      c.allowed!.slice(1), // one set short
      c.allowed!.map((set, t) => (t === 0 ? set!.filter((id) => id !== c.tokens[0]) : set)), // the token is not in its set
      c.allowed!.map((set, t) => (t === 0 ? [...set!].reverse() : set)), // not ascending
    ];
    expect(c.allowed![0]!.length).toBeGreaterThan(1); // a first digit or "(": several choices, so an order to break
    for (const allowed of bad) {
      const g = { ...groups[0], completions: [{ ...c, allowed }, ...groups[0].completions.slice(1)] };
      expect(() => buildStepBatch([g], opts)).toThrow(expect.objectContaining({ code: 'GRPO_ERR_BAD_ROLLOUT' }));
    }
  });
});
