import { beforeAll, describe, expect, it } from 'vitest';
import { initEngine } from '../../src/engine/backend.js';
import { tf } from '../../src/engine/tf.js';
import { LlamaModel } from '../../src/model/llama.js';
import { sftBatch, sftLoss } from '../../src/offline/sft-batch.js';
import { sftStep, type SftStepOptions } from '../../src/offline/sft-step.js';
import { AdamW } from '../../src/optim/adamw.js';
import { createTask, tokenizerForTask } from '../../src/tasks/index.js';
import { expectCode, tinyLlamaConfig } from '../helpers.js';

beforeAll(async () => {
  await initEngine({ backend: 'cpu', log: () => {} });
});

const task = createTask('arithmetic', { seed: 2 });
const tok = tokenizerForTask(task);
const OPTS: SftStepOptions = { lr: 1e-2, gradClip: 1, label: 'test step', lrHint: '--lr (now 0.01)' };

function setup(): { model: LlamaModel; optimizer: AdamW } {
  const model = LlamaModel.create(tinyLlamaConfig(tok, { initializer_range: 0.2 }), 3);
  return { model, optimizer: new AdamW(model.variables()) };
}

async function lossOf(model: LlamaModel, b: ReturnType<typeof sftBatch>): Promise<number> {
  const loss = tf.tidy(() => sftLoss(model, tf.tensor2d(b.ids, [b.batchSize, b.length], 'int32'), tf.tensor2d(b.mask, [b.batchSize, b.length - 1])));
  const v = (await loss.data())[0];
  loss.dispose();
  return v;
}

describe('sftStep', () => {
  it('returns the pre-step loss and grad norm, lowers the loss, and leaks no tensors', async () => {
    const { model, optimizer } = setup();
    const b = sftBatch(task, tok, 'train', 0, 4);
    const before = await lossOf(model, b);
    const first = await sftStep(model, optimizer, b, OPTS); // warm-up: AdamW's moments exist from the start
    expect(first.loss).toBeCloseTo(before, 4);
    expect(first.gradNorm).toBeGreaterThan(0);
    const tensors = tf.memory().numTensors;
    for (let i = 0; i < 4; i++) await sftStep(model, optimizer, b, OPTS);
    expect(tf.memory().numTensors).toBe(tensors);
    expect(await lossOf(model, b)).toBeLessThan(before);
    expect(optimizer.step).toBe(5);
    optimizer.dispose();
    model.dispose();
  });

  it('leaves tf.memory().numTensors unchanged when AdamW throws inside the step', async () => {
    const { model, optimizer } = setup();
    const b = sftBatch(task, tok, 'train', 0, 4);
    await lossOf(model, b); // warm-up: the first forward keeps the RoPE and causal-mask tables
    const tensors = tf.memory().numTensors;
    // AdamW refuses a non-finite learning rate after the gradients and their clipped copies exist
    await expectCode(sftStep(model, optimizer, b, { ...OPTS, lr: NaN }), 'GRPO_ERR_OPTIMIZER', 'learning rate is NaN');
    await expectCode(sftStep(model, optimizer, b, { ...OPTS, gradClip: -1 }), 'GRPO_ERR_OPTIMIZER', 'max gradient norm');
    expect(tf.memory().numTensors).toBe(tensors);
    expect(optimizer.step).toBe(0);
    optimizer.dispose();
    model.dispose();
  });

  it('throws GRPO_ERR_NAN_LOSS, naming the step and what to lower, on a non-finite loss', async () => {
    const { model, optimizer } = setup();
    const b = sftBatch(task, tok, 'train', 0, 2);
    await lossOf(model, b); // warm-up, as above
    const tensors = tf.memory().numTensors;
    const nanMask = { ...b, mask: b.mask.map((m) => m * NaN) };
    await expectCode(sftStep(model, optimizer, nanMask, OPTS), 'GRPO_ERR_NAN_LOSS', /test step: loss is NaN.*--lr \(now 0\.01\)/);
    expect(tf.memory().numTensors).toBe(tensors);
    optimizer.dispose();
    model.dispose();
  });
});
