/**
 * Shared pieces of the benchmarks: flag parsing, timing, the engine start-up line, and the
 * reference Llama config (the one /work/shared/bench/torch_llama_step.py times in PyTorch).
 */
import { initEngine, type BackendChoice, type EngineInfo } from '../src/engine/backend.js';
import { presetConfig } from '../src/model/presets.js';
import type { LlamaConfig } from '../src/model/types.js';

/** fp32 peak of the 2-core AVX-512 machine the targets refer to, GFLOP/s. */
export const PEAK_GFLOPS = 250;

/** `--key value` and `--flag` arguments over the given defaults (numbers parsed as numbers). */
export function parseFlags<T extends Record<string, string | number | boolean>>(defaults: T, argv = process.argv.slice(2)): T {
  const out: Record<string, string | number | boolean> = { ...defaults };
  for (let i = 0; i < argv.length; i++) {
    const key = argv[i].replace(/^--/, '');
    if (!argv[i].startsWith('--') || !(key in defaults)) {
      throw new Error(`unknown argument ${argv[i]}; flags: ${Object.keys(defaults).map((k) => `--${k}`).join(' ')}`);
    }
    const def = defaults[key];
    if (typeof def === 'boolean') {
      out[key] = true;
      continue;
    }
    const value = argv[++i];
    if (value === undefined) throw new Error(`--${key} needs a value`);
    out[key] = typeof def === 'number' ? Number(value) : value;
    if (typeof def === 'number' && !Number.isFinite(out[key])) throw new Error(`--${key} must be a number, got ${value}`);
  }
  return out as T;
}

export async function startEngine(backend: string): Promise<EngineInfo> {
  return initEngine({ backend: backend as BackendChoice, log: (line) => console.error(line) });
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** vocab 64, hidden 128, intermediate 352, 4 layers, 4 heads, 4 kv heads, tied embeddings. */
export function referenceConfig(): LlamaConfig {
  const config = presetConfig('small', { vocabSize: 64, bosId: null, eosId: 1, padId: 0 });
  const want = { vocab_size: 64, hidden_size: 128, intermediate_size: 352, num_hidden_layers: 4, num_attention_heads: 4, num_key_value_heads: 4, tie_word_embeddings: true };
  for (const [k, v] of Object.entries(want)) {
    if (config[k as keyof LlamaConfig] !== v) throw new Error(`the 'small' preset no longer matches the reference config: ${k} is ${String(config[k as keyof LlamaConfig])}, want ${v}`);
  }
  return config;
}

// Matmul FLOPs of a forward pass: the same count `grpo bench step` reports
export { forwardFlops } from '../src/commands/bench-shape.js';
