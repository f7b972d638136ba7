/**
 * The fit check before the first step: the estimate's parts, what checkpointing saves, and the
 * coded error naming the bytes and the knobs; the engine's memory limit sources.
 */
import { describe, expect, it } from 'vitest';
import { cgroupLimit, memoryLimit, WASM_HEAP_BYTES } from '../../src/engine/memory-limit.js';
import { parseLlamaConfig } from '../../src/model/checkpoint-config.js';
import { checkStepFits, estimateStepBytes } from '../../src/model/memory-estimate.js';
import { llamaParamShapes } from '../../src/model/llama-params.js';
import { loraTargets } from '../../src/model/lora.js';
import { REFERENCE_CONFIG } from '../../src/model/presets.js';
import type { LlamaConfig } from '../../src/model/types.js';
import { isGrpoError } from '../../src/shared/errors.js';

// SmolLM2-135M's shape (the bench's shapes/smollm2-135m.json)
const SMOL_RAW = {
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
};
const smol = parseLlamaConfig(SMOL_RAW);
// SmolLM2-360M's shape (shapes/smollm2-360m.json)
const smol360 = shape({ hidden_size: 960, intermediate_size: 2560, num_hidden_layers: 32, num_attention_heads: 15, num_key_value_heads: 5 });

const GB = 2 ** 30;
const MB = 2 ** 20;
const POOL = 2 * GB; // the native backend's default pool cap

function shape(over: Record<string, unknown>) {
  return parseLlamaConfig({ ...SMOL_RAW, ...over });
}

/**
 * Peak RSS measured on the native backend (2-core dev machine, 2026-12-04, BENCHMARKS.md "Real
 * model sizes" has the commands and loads): `grpo bench step --json`'s peak_rss_mb (forward,
 * log-probs, loss, backward, AdamW; random weights), with the eager backward pass.
 */
const MEASURED: { name: string; config: LlamaConfig; batch: number; seq: number; checkpoint?: boolean; rssMB: number }[] = [
  { name: 'SmolLM2-135M 4x128', config: smol, batch: 4, seq: 128, rssMB: 4641 },
  { name: 'SmolLM2-135M 1x128', config: smol, batch: 1, seq: 128, rssMB: 3346 },
  { name: 'SmolLM2-135M, 2 layers, 4x128', config: shape({ num_hidden_layers: 2 }), batch: 4, seq: 128, rssMB: 1438 },
  { name: 'the reference config 32x64', config: REFERENCE_CONFIG, batch: 32, seq: 64, rssMB: 394 },
  { name: 'SmolLM2-360M 2x128, gradient checkpointing', config: smol360, batch: 2, seq: 128, checkpoint: true, rssMB: 7453 },
];
/** The estimate may be this much above or below the measured peak (it must never be far below). */
const BAND = { low: 0.95, high: 1.6 };

describe('estimateStepBytes', () => {
  it('counts weights, gradients and AdamW state per parameter, plus activations', () => {
    const b = estimateStepBytes(smol, { batch: 4, seq: 128 });
    expect(b.params).toBe(134_515_008); // SmolLM2-135M
    expect(b.optimizer).toBeGreaterThanOrEqual(8 * b.params);
    expect(b.weights).toBeGreaterThanOrEqual(4 * b.params);
    expect(b.gradients).toBeGreaterThanOrEqual(4 * b.params);
    expect(b.pool).toBe(0); // no engine pool given
    expect(b.total / GB).toBeGreaterThan(3.4); // more than the wasm heap can take: the Aborted()
  });

  it('shrinks activations with gradient checkpointing and grows them with the batch', () => {
    const plain = estimateStepBytes(smol, { batch: 4, seq: 128 });
    const ckpt = estimateStepBytes(smol, { batch: 4, seq: 128, checkpoint: true });
    const double = estimateStepBytes(smol, { batch: 8, seq: 128 });
    expect(ckpt.activations).toBeLessThan(plain.activations / 2);
    expect(double.activations).toBeGreaterThan(1.5 * plain.activations);
    expect(estimateStepBytes(smol, { batch: 4, seq: 128, reference: 'f32' }).reference).toBeGreaterThanOrEqual(4 * plain.params);
    const f16 = estimateStepBytes(smol, { batch: 4, seq: 128, reference: 'f16' }).reference;
    expect(f16).toBeLessThan(estimateStepBytes(smol, { batch: 4, seq: 128, reference: 'f32' }).reference);
    expect(estimateStepBytes(smol, { batch: 4, seq: 128, hostCopies: 2 }).hostCopies).toBe(8 * plain.params);
    expect(estimateStepBytes(smol, { batch: 4, seq: 128, extraGradients: 1 }).gradients).toBe(plain.gradients + 4 * plain.params);
  });

  it('with LoRA counts AdamW state of the adapters only, and their side paths in the activations', () => {
    const targets = loraTargets(llamaParamShapes(smol), { r: 8, alpha: 16, dropout: 0, targetModules: 'all-linear' });
    const trainable = targets.reduce((a, t) => a + 8 * (t.in + t.out), 0);
    expect(trainable).toBe(2_442_240); // SmolLM2-135M, r 8 on every linear layer (BENCHMARKS.md, LoRA)
    const step = { batch: 8, seq: 64, extraGradients: 1, hostCopies: 2 };
    const full = estimateStepBytes(smol, step);
    const lora = estimateStepBytes(smol, { ...step, lora: { r: 8, dropout: false, targets } });
    const dropout = estimateStepBytes(smol, { ...step, lora: { r: 8, dropout: true, targets } });
    expect(lora.gradients).toBe(full.gradients); // kept whole: the measured LoRA peak is near the full one (below)
    expect(lora.optimizer).toBe(8 * trainable + 2 * 4 * 8 * 1536); // two moments; temporaries of the largest adapter (down_proj's A)
    expect(lora.weights).toBe(full.weights); // the frozen base is all still there
    expect(lora.hostCopies).toBe(full.hostCopies);
    // per token and adapted module: the [r] low-rank product and the [out] side term; dropout adds its input and mask
    const N = 8 * 64;
    expect(lora.activations - full.activations).toBe(4 * N * targets.reduce((a, t) => a + 8 + t.out, 0));
    expect(dropout.activations - lora.activations).toBe(4 * N * targets.reduce((a, t) => a + 2.25 * t.in, 0));
    expect(full.total - lora.total).toBeGreaterThan(0.8 * GB); // AdamW's 8 bytes per frozen parameter, less the side paths
    const ckpt = estimateStepBytes(smol, { ...step, checkpoint: true, lora: { r: 8, dropout: true, targets } });
    expect(ckpt.activations).toBeLessThan(dropout.activations / 2);
  });

  it('lets a LoRA step through where the full fine-tune of the same model is refused', () => {
    const big = shape({ hidden_size: 1536, intermediate_size: 8960, num_hidden_layers: 28, num_attention_heads: 12, num_key_value_heads: 2, vocab_size: 151936 }); // a 1.5B shape
    const targets = loraTargets(llamaParamShapes(big), { r: 16, alpha: 32, dropout: 0, targetModules: 'all-linear' });
    const step = { batch: 2, seq: 256, extraGradients: 1, hostCopies: 2 };
    const limit = 56 * GB;
    expect(() => checkStepFits(big, step, limit, '56 GB of RAM', POOL)).toThrow(/GRPO_ERR_MODEL_TOO_LARGE|needs about/);
    expect(checkStepFits(big, { ...step, lora: { r: 16, dropout: false, targets } }, limit, '56 GB of RAM', POOL).total).toBeLessThan(0.95 * limit);
  });

  // bench/lora.ts --part step, SmolLM2-135M shape, micro-batch 8 x (16 + 48), r 8 on every linear
  // layer, native backend (2026-12-05, BENCHMARKS.md "LoRA against full fine-tuning"); the bench
  // process holds the weights twice more than a learner (hostCopies 2)
  const LORA_MEASURED: { name: string; lora: 'none' | 'plain' | 'dropout'; rssKB: number }[] = [
    { name: 'full fine-tune', lora: 'none', rssKB: 5_848_180 },
    { name: 'LoRA', lora: 'plain', rssKB: 5_223_392 },
    { name: 'LoRA with dropout 0.05', lora: 'dropout', rssKB: 5_629_176 },
  ];
  for (const row of LORA_MEASURED) {
    it(`is within [${BAND.low}, ${BAND.high}] of the peak RSS measured for bench/lora.ts's ${row.name} step`, () => {
      const targets = loraTargets(llamaParamShapes(smol), { r: 8, alpha: 16, dropout: 0, targetModules: 'all-linear' });
      const lora = row.lora === 'none' ? {} : { lora: { r: 8, dropout: row.lora === 'dropout', targets } };
      const est = estimateStepBytes(smol, { batch: 8, seq: 64, extraGradients: 1, hostCopies: 2, ...lora }, POOL).total;
      const ratio = est / (row.rssKB * 1024);
      expect(ratio).toBeGreaterThanOrEqual(BAND.low);
      expect(ratio).toBeLessThanOrEqual(BAND.high);
    });
  }

  for (const row of MEASURED) {
    it(`is within [${BAND.low}, ${BAND.high}] of the peak RSS measured for ${row.name}`, () => {
      const est = estimateStepBytes(row.config, { batch: row.batch, seq: row.seq, checkpoint: row.checkpoint }, POOL).total;
      const ratio = est / (row.rssMB * MB);
      expect(ratio).toBeGreaterThanOrEqual(BAND.low);
      expect(ratio).toBeLessThanOrEqual(BAND.high);
    });
  }
});

describe('checkStepFits', () => {
  it('passes a model that fits and returns the estimate', () => {
    expect(checkStepFits(smol, { batch: 4, seq: 128 }, 24 * GB, '24 GB of RAM', POOL).params).toBe(134_515_008);
  });

  it("counts the engine's own buffers (the native pool) against the limit", () => {
    const small = shape({ num_hidden_layers: 2 }); // the pool outgrows gradients and activations here
    const without = estimateStepBytes(small, { batch: 4, seq: 128 }).total;
    const withPool = estimateStepBytes(small, { batch: 4, seq: 128 }, POOL).total;
    expect(withPool).toBeGreaterThan(without);
    const limit = (without + withPool) / 2 / 0.95; // fits without the pool, not with it
    expect(() => checkStepFits(small, { batch: 4, seq: 128 }, limit, 'RAM')).not.toThrow();
    expect(() => checkStepFits(small, { batch: 4, seq: 128 }, limit, 'RAM', POOL)).toThrow(/engine buffer pool \d\.\d\d GB.*GRPO_POOL_MB/);
  });

  it('refuses the micro-batch of 16 that was OOM-killed at 23 GB, naming the bytes and the knobs', () => {
    // grpo train --micro-batch-size 16 on SmolLM2-135M's shape, 32 new tokens after a ~100-token prompt
    const trainer = { batch: 16, seq: 128, reference: 'f32' as const, extraGradients: 1, hostCopies: 2 };
    let err: unknown;
    try {
      checkStepFits(smol, trainer, 8 * GB, 'the memory available to this process (8.0 GB)', POOL);
    } catch (e) {
      err = e;
    }
    expect(isGrpoError(err, 'GRPO_ERR_MODEL_TOO_LARGE')).toBe(true);
    const msg = (err as Error).message;
    for (const part of ['weights', 'gradients', 'AdamW state', 'reference model', 'host copies', 'activations at this batch', 'micro_batch_size (now 16', 'gradient_checkpointing: true', 'max_gen_len', 'reference_dtype: bfloat16', 'kl_coef: 0']) {
      expect(msg).toContain(part);
    }
    expect(msg).toMatch(/needs about \d+\.\d\d GB/);
    // the knobs work: micro-batch 4 with checkpointing fits in the same 8 GB
    expect(() => checkStepFits(smol, { ...trainer, batch: 4, checkpoint: true, reference: 'none' }, 8 * GB, 'RAM', POOL)).not.toThrow();
  });

  it('names --backend native when the wasm heap is the limit', () => {
    expect(() => checkStepFits(smol, { batch: 4, seq: 128, reference: 'f32' }, WASM_HEAP_BYTES, "the wasm backend's 4 GB heap")).toThrow(/--backend native/);
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

  it('gives MemAvailable plus the process\'s own RSS, or less room left in a cgroup', () => {
    const meminfo = 'MemTotal:       24000000 kB\nMemAvailable:    8388608 kB\n';
    const files = (map: Record<string, string>) => (p: string) => {
      if (p in map) return map[p];
      throw new Error('ENOENT');
    };
    const machine = memoryLimit('native', { read: files({ '/proc/meminfo': meminfo }), rss: GB });
    expect(machine.bytes).toBe(8 * GB + GB);
    expect(machine.where).toContain('MemAvailable 8.0 GB');
    expect(machine.engineBytes).toBeGreaterThan(0);
    // a 6 GB cgroup in which other processes use 2 GB: 4 GB for this one
    const cg = memoryLimit('native', {
      read: files({ '/proc/meminfo': meminfo, '/sys/fs/cgroup/memory.max': String(6 * GB), '/sys/fs/cgroup/memory.current': String(3 * GB) }),
      rss: GB,
    });
    expect(cg.bytes).toBe(4 * GB);
    expect(cg.where).toContain('cgroup');
    expect(memoryLimit('native', { read: files({}), rss: GB, total: 16 * GB }).bytes).toBe(16 * GB);
    expect(memoryLimit('cpu', { read: files({ '/proc/meminfo': meminfo }), rss: GB }).engineBytes).toBe(0);
  });

  it('caps the wasm backend at its 4 GB heap', () => {
    expect(memoryLimit('wasm').bytes).toBeLessThanOrEqual(WASM_HEAP_BYTES);
    expect(memoryLimit('native').bytes).toBeGreaterThan(0);
  });
});
