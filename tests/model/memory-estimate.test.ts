/**
 * The fit check before the first step: the estimate's parts, what checkpointing saves, and the
 * coded error naming the bytes and the knobs; the engine's memory limit sources.
 */
import { describe, expect, it } from 'vitest';
import { cgroupLimit, memoryLimit, WASM_HEAP_BYTES } from '../../src/engine/memory-limit.js';
import { parseLlamaConfig } from '../../src/model/checkpoint-config.js';
import { checkStepFits, estimateStepBytes } from '../../src/model/memory-estimate.js';
import { isGrpoError } from '../../src/shared/errors.js';

// SmolLM2-135M's shape (the bench's shapes/smollm2-135m.json)
const smol = parseLlamaConfig({
  model_type: 'llama',
  vocab_size: 49152,
  hidden_size: 576,
  intermediate_size: 1536,
  num_hidden_layers: 30,
  num_attention_heads: 9,
  num_key_value_heads: 3,
  rms_norm_eps: 1e-5,
  rope_theta: 100000,
  tie_word_embeddings: true,
});

describe('estimateStepBytes', () => {
  it('counts 16 bytes of weight, gradient and AdamW state per parameter, plus activations', () => {
    const b = estimateStepBytes(smol, { batch: 4, seq: 128 });
    expect(b.params).toBe(134_515_008); // SmolLM2-135M
    expect(b.optimizer).toBe(8 * b.params);
    expect(b.weights).toBeGreaterThanOrEqual(4 * b.params);
    expect(b.total).toBe(b.weights + b.gradients + b.optimizer + b.reference + b.activations);
    expect(b.total / 2 ** 30).toBeGreaterThan(3.4); // more than the wasm heap can take: the Aborted()
  });

  it('shrinks activations with gradient checkpointing and grows them with the batch', () => {
    const plain = estimateStepBytes(smol, { batch: 4, seq: 128 });
    const ckpt = estimateStepBytes(smol, { batch: 4, seq: 128, checkpoint: true });
    const double = estimateStepBytes(smol, { batch: 8, seq: 128 });
    expect(ckpt.activations).toBeLessThan(plain.activations / 5);
    expect(double.activations).toBeGreaterThan(1.8 * plain.activations);
    expect(estimateStepBytes(smol, { batch: 4, seq: 128, reference: 'f32' }).reference).toBe(4 * plain.params);
  });
});

describe('checkStepFits', () => {
  it('passes a model that fits and returns the estimate', () => {
    expect(checkStepFits(smol, { batch: 4, seq: 128 }, 24 * 2 ** 30, '24 GB of RAM').params).toBe(134_515_008);
  });

  it("counts the engine's own buffers (the native pool) against the limit", () => {
    const total = estimateStepBytes(smol, { batch: 4, seq: 128 }).total;
    const limit = (total + 2 ** 30) / 0.85; // fits with 1 GB to spare, not with a 2 GB pool
    expect(() => checkStepFits(smol, { batch: 4, seq: 128 }, limit, 'RAM', 2 ** 30 / 2)).not.toThrow();
    expect(() => checkStepFits(smol, { batch: 4, seq: 128 }, limit, 'RAM', 2 ** 31)).toThrow(/engine buffer pool up to 2\.00 GB/);
  });

  it('fails with GRPO_ERR_MODEL_TOO_LARGE naming the bytes and the knobs', () => {
    let err: unknown;
    try {
      checkStepFits(smol, { batch: 4, seq: 128, reference: 'f32' }, WASM_HEAP_BYTES, "the wasm backend's 4 GB heap");
    } catch (e) {
      err = e;
    }
    expect(isGrpoError(err, 'GRPO_ERR_MODEL_TOO_LARGE')).toBe(true);
    const msg = (err as Error).message;
    for (const part of ['weights', 'gradients', 'AdamW state', 'reference model', 'activations', 'micro_batch_size (now 4', 'gradient_checkpointing: true', '--backend native']) {
      expect(msg).toContain(part);
    }
    expect(msg).toMatch(/needs about \d+\.\d\d GB/);
  });
});

describe('memoryLimit', () => {
  it('reads cgroup v2 and v1 limits and skips "max"', () => {
    const files = (map: Record<string, string>) => (p: string) => {
      if (p in map) return map[p];
      throw new Error('ENOENT');
    };
    expect(cgroupLimit(files({ '/sys/fs/cgroup/memory.max': '8589934592\n' }))).toBe(8 * 2 ** 30);
    expect(cgroupLimit(files({ '/sys/fs/cgroup/memory.max': 'max\n' }))).toBeNull();
    expect(cgroupLimit(files({ '/sys/fs/cgroup/memory/memory.limit_in_bytes': '1073741824' }))).toBe(2 ** 30);
    expect(cgroupLimit(files({}))).toBeNull();
  });

  it('caps the wasm backend at its 4 GB heap', () => {
    expect(memoryLimit('wasm').bytes).toBeLessThanOrEqual(WASM_HEAP_BYTES);
    expect(memoryLimit('native').bytes).toBeGreaterThan(0);
  });
});
