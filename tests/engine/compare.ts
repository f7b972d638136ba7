/**
 * Helpers for engine tests: run the same computation on the cpu backend (the reference: plain
 * JS kernels) and on the backends with our replaced kernels (wasm: tensors in the wasm heap;
 * native: tensors in their own typed arrays), and compare the results.
 */
import { expect } from 'vitest';
import { initEngine, type EngineInfo } from '../../src/engine/backend.js';
import { loadNativeAddon } from '../../src/engine/native-addon.js';
import { tf } from '../../src/engine/tf.js';

export type HostResult = { shape: number[]; dtype: string; values: number[] };

/** Runs `fn` on a backend and returns every output tensor as host data (all tensors disposed). */
export async function runOn(backend: 'cpu' | 'wasm' | 'native', fn: () => tf.Tensor | tf.Tensor[]): Promise<HostResult[]> {
  await initEngine({ backend, log: () => {} });
  const before = tf.memory().numTensors;
  const out = tf.tidy(fn);
  const list = Array.isArray(out) ? out : [out];
  const host = list.map((t) => ({ shape: [...t.shape], dtype: t.dtype, values: Array.from(t.dataSync()) }));
  tf.dispose(list);
  expect(tf.memory().numTensors).toBe(before);
  return host;
}

/** Elementwise |a - e| <= rtol * (|e| + mean |e|): relative, with a floor for values near zero. */
export function expectClose(actual: HostResult[], expected: HostResult[], rtol = 1e-5): void {
  expect(actual.length).toBe(expected.length);
  for (let k = 0; k < expected.length; k++) {
    const a = actual[k];
    const e = expected[k];
    expect(a.shape).toEqual(e.shape);
    expect(a.dtype).toBe(e.dtype);
    const finite = e.values.filter((v) => Number.isFinite(v));
    const scale = finite.reduce((s, v) => s + Math.abs(v), 0) / Math.max(1, finite.length);
    for (let i = 0; i < e.values.length; i++) {
      const x = a.values[i];
      const y = e.values[i];
      if (Number.isNaN(y)) {
        expect(x, `output ${k} element ${i}`).toBeNaN();
        continue;
      }
      if (!Number.isFinite(y)) {
        expect(x, `output ${k} element ${i}`).toBe(y);
        continue;
      }
      const tol = rtol * (Math.abs(y) + scale) + 1e-30;
      if (!(Math.abs(x - y) <= tol)) {
        expect.fail(`output ${k} [${e.shape}] element ${i}: got ${x}, reference ${y} (tolerance ${tol})`);
      }
    }
  }
}

/** Compares `fn` on wasm and native (replaced kernels) against cpu (reference). */
export async function expectSameOnBackends(fn: () => tf.Tensor | tf.Tensor[], rtol = 1e-5): Promise<void> {
  const reference = await runOn('cpu', fn);
  // without the addon (GRPO_NATIVE=0 or not built) only wasm's portable kernels can be checked
  for (const backend of loadNativeAddon().addon ? (['wasm', 'native'] as const) : (['wasm'] as const)) {
    const actual = await runOn(backend, fn);
    expectClose(actual, reference, rtol);
  }
}

/** Deterministic pseudo-random floats in [-scale, scale) (same on every backend). */
export function randomValues(n: number, seed: number, scale = 1): Float32Array {
  const out = new Float32Array(n);
  let s = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    out[i] = ((s / 4294967296) * 2 - 1) * scale;
  }
  return out;
}

/** A float32 tensor of the given shape with deterministic random values. */
export function rand(shape: number[], seed: number, scale = 1): tf.Tensor {
  return tf.tensor(randomValues(shape.reduce((a, b) => a * b, 1), seed, scale), shape, 'float32');
}

/** The engine with native kernels, or why it is not available (tests skip with that reason). */
export async function nativeEngine(): Promise<{ info: EngineInfo; skipReason: string | null }> {
  const info = await initEngine({ backend: 'wasm', log: () => {} });
  return { info, skipReason: info.native ? null : `native addon not built here (${info.warning ?? 'unknown'})` };
}
