/**
 * `grpo bench step|sample` in-process on small shapes: the report's fields, a qwen2 config run
 * as its Llama shape, the fit check refusing an impossible step, and bad flags.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { benchSample } from '../../src/commands/bench-sample.js';
import { loadDecodeAddon } from '../../src/model/native-decoder.js';
import { benchStep } from '../../src/commands/bench-step.js';
import { tf } from '../../src/engine/tf.js';
import { isGrpoError } from '../../src/shared/errors.js';
import { captureIO } from './helpers.js';

let root: string;
let qwen: string;
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'grpo-bench-'));
  qwen = join(root, 'config.json');
  // a tiny qwen2-shaped config.json, as Hugging Face writes it
  await writeFile(
    qwen,
    JSON.stringify({ architectures: ['Qwen2ForCausalLM'], model_type: 'qwen2', vocab_size: 97, hidden_size: 32, intermediate_size: 64, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, rms_norm_eps: 1e-6, rope_theta: 1e6, tie_word_embeddings: true, hidden_act: 'silu' }),
  );
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

describe('grpo bench step', () => {
  it('reports ms, tokens/s, peak share, peak RSS and the device for a preset', async () => {
    const cap = captureIO();
    const before = tf.memory().numTensors;
    const r = await benchStep({ modelSize: 'tiny', batch: '2', seq: '12', steps: '2', backend: 'cpu', peakGflops: '100', json: true }, cap.io);
    expect(JSON.parse(cap.out[0])).toEqual(r);
    expect(r.backend).toBe('cpu');
    expect(r.device).toContain('cpu');
    expect(r.best_ms).toBeGreaterThan(0);
    expect(r.median_ms).toBeGreaterThanOrEqual(r.best_ms);
    expect(r.tokens_per_s).toBeGreaterThan(0);
    expect(r.matmul_gflops).toBeGreaterThanOrEqual(0); // rounded to 0.1: a tiny model on the JS cpu backend may show 0.0
    expect(r.peak_fraction).toBeCloseTo(r.matmul_gflops / 100, 2);
    expect(r.peak_rss_mb).toBeGreaterThan(0);
    expect(Number.isFinite(r.loss)).toBe(true);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('runs a qwen2 config.json (its q/k/v biases included) with gradient checkpointing', async () => {
    const cap = captureIO();
    const r = await benchStep({ modelConfig: qwen, batch: '1', seq: '8', steps: '1', backend: 'cpu', peakGflops: '250', gradientCheckpointing: true }, cap.io);
    expect(r.params).toBe(97 * 32 + 2 * (32 * (4 + 2 + 2) * 8 + (4 + 2 + 2) * 8 + 32 * 32 + 3 * 32 * 64 + 2 * 32) + 32);
    expect(r.gradient_checkpointing).toBe(true);
    expect(cap.out[0]).toMatch(/train step of .*config\.json .*gradient checkpointing.*\n.*ms.*tokens\/s.*% of 250 GFLOP\/s fp32 peak.*peak RSS/);
  });

  it('refuses a step that cannot fit with GRPO_ERR_MODEL_TOO_LARGE before allocating weights', async () => {
    const cap = captureIO();
    const before = tf.memory().numTensors;
    const err = await benchStep({ modelSize: 'base', batch: '100000', seq: '1024', steps: '1', backend: 'cpu', peakGflops: '250' }, cap.io).catch((e: unknown) => e);
    expect(isGrpoError(err, 'GRPO_ERR_MODEL_TOO_LARGE')).toBe(true);
    expect(String(err)).toMatch(/activations .* GB.*micro_batch_size/);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('runs groups sharing their prompt once, with the loss of the whole-row step', async () => {
    const cap = captureIO();
    const base = { modelSize: 'tiny', batch: '8', seq: '12', steps: '1', backend: 'cpu', peakGflops: '250', json: true, group: '4', prompt: '8' };
    const shared = await benchStep(base, cap.io);
    const whole = await benchStep({ ...base, sharedPrefix: false }, cap.io);
    expect([shared.group, shared.prompt, shared.shared_prefix, whole.shared_prefix]).toEqual([4, 8, true, false]);
    expect(shared.loss).toBeCloseTo(whole.loss, 5);
    const checkpointed = await benchStep({ ...base, gradientCheckpointing: true }, cap.io); // layers recomputed: whole rows
    expect(checkpointed.shared_prefix).toBe(false);
    expect(checkpointed.loss).toBeCloseTo(whole.loss, 5);
    for (const bad of [{ group: '3' }, { group: '0' }, { prompt: '0' }, { prompt: '12' }]) {
      const err = await benchStep({ ...base, ...bad }, cap.io).catch((e: unknown) => e);
      expect(isGrpoError(err, 'GRPO_ERR_USAGE'), String(err)).toBe(true);
    }
  });

  it('rejects missing or conflicting shape flags and bad numbers with GRPO_ERR_USAGE', async () => {
    const cap = captureIO();
    const base = { batch: '1', seq: '8', steps: '1', backend: 'cpu', peakGflops: '250' };
    for (const opts of [base, { ...base, modelSize: 'tiny', modelConfig: qwen }, { ...base, modelSize: 'huge' }, { ...base, modelSize: 'tiny', batch: '0' }, { ...base, modelConfig: join(root, 'missing.json') }]) {
      const err = await benchStep(opts, cap.io).catch((e: unknown) => e);
      expect(isGrpoError(err, 'GRPO_ERR_USAGE'), String(err)).toBe(true);
    }
  });
});

describe('grpo bench sample', () => {
  it('reports new tokens/s with the KV cache', async () => {
    const cap = captureIO();
    const r = await benchSample({ modelSize: 'tiny', batch: '3', prompt: '5', new: '4', backend: 'cpu', json: true }, cap.io);
    expect(r).toMatchObject({ bench: 'sample', batch: 3, prompt: 5, new_tokens: 4, backend: 'cpu' });
    expect(r.tokens_per_s).toBeGreaterThan(0);
    // the decoder the workers would take for this model: native when the addon is built
    expect(r.decoder).toEqual(loadDecodeAddon().addon === null ? expect.stringMatching(/^tfjs \(addon/) : 'native');
    const split = await benchSample({ modelSize: 'tiny', batch: '1', seq: '10', backend: 'cpu' }, cap.io);
    expect([split.prompt, split.new_tokens]).toEqual([5, 5]);
  });
});
