/**
 * Kernels of our own (no stock tfjs kernel has their names) for work that would otherwise be a
 * chain of elementwise ops: an AdamW update, SwiGLU, RMSNorm and rotary embeddings forward and
 * backward. Registered
 * on the wasm and native backends only; ../fused-ops.ts calls them where they are registered and
 * composes stock ops everywhere else, so model code stays backend-agnostic.
 */
import type { NativeAddon } from '../native-addon.js';
import { memoryOf } from '../tensor-memory.js';
import { tf } from '../tf.js';
import { sizeOf, type TensorInfo } from '../wasm-heap.js';
import type { KernelBackendName } from './registry.js';

/** Names of the fused kernels (ours, not tfjs's). */
export const FusedKernel = {
  AdamW: 'GrpoAdamW',
  SwiGLU: 'GrpoSwiGLU',
  SwiGLUGrad: 'GrpoSwiGLUGrad',
  RmsNorm: 'GrpoRmsNorm',
  RmsNormGrad: 'GrpoRmsNormGrad',
  Rope: 'GrpoRope',
  RopeGrad: 'GrpoRopeGrad',
} as const;
export type FusedKernel = (typeof FusedKernel)[keyof typeof FusedKernel];

export interface AdamWAttrs {
  beta1: number;
  beta2: number;
  eps: number;
  stepSize: number; // lr / (1 - beta1^t)
  bc2Sqrt: number; // sqrt(1 - beta2^t)
  decay: number; // 1 - lr * weight_decay, or 1
  /** The caller replaces p, m and v by the results (a variable assign): the kernel may then update them in place. */
  inPlace?: boolean;
}

interface Args {
  inputs: Record<string, TensorInfo>;
  backend: unknown;
  attrs?: Record<string, unknown>;
}

const installed = new Set<KernelBackendName>();

export function installFusedKernels(addon: NativeAddon, target: KernelBackendName): void {
  if (installed.has(target)) return;
  installed.add(target);
  const register = (kernelName: FusedKernel, fn: (args: Args) => TensorInfo | TensorInfo[]): void => {
    tf.registerKernel({ kernelName, backendName: target, kernelFunc: fn as unknown as tf.KernelFunc });
  };

  // inputs p, g, m, v (same shape, float32) -> [p', m', v']: p, m, v themselves, updated in place,
  // when the caller allows it and no other tensor or reader can see their memory (no 3 x 540 MB
  // of fresh buffers per step at 135M parameters), else fresh tensors
  register(FusedKernel.AdamW, ({ inputs, backend, attrs }) => {
    const { p, g, m, v } = inputs;
    const k = attrs as unknown as AdamWAttrs;
    const mem = memoryOf(backend);
    const inPlace = k.inPlace === true && mem.exclusive(p) && mem.exclusive(m) && mem.exclusive(v);
    const outs = inPlace ? [p, m, v].map((t) => mem.share(t)) : [p, m, v].map(() => mem.makeOutput(p.shape, 'float32'));
    const n = sizeOf(p.shape);
    if (n > 0) {
      const [po, mo, vo] = outs.map((t) => mem.ref(t));
      addon.adamw(mem.heap(), mem.ref(p), mem.ref(g), mem.ref(m), mem.ref(v), po, mo, vo, n, k.beta1, k.beta2, k.eps, k.stepSize, k.bc2Sqrt, k.decay);
    }
    return outs;
  });

  // gu [rows, 2I] -> [rows, I]
  register(FusedKernel.SwiGLU, ({ inputs, backend }) => {
    const { gu } = inputs;
    const mem = memoryOf(backend);
    const [rows, twoI] = gu.shape;
    const out = mem.makeOutput([rows, twoI / 2], 'float32');
    if (rows > 0 && twoI > 0) addon.swiglu(mem.heap(), mem.ref(gu), mem.ref(out), rows, twoI / 2);
    return out;
  });

  // gu [rows, 2I], dy [rows, I] -> dgu [rows, 2I]
  register(FusedKernel.SwiGLUGrad, ({ inputs, backend }) => {
    const { gu, dy } = inputs;
    const mem = memoryOf(backend);
    const [rows, twoI] = gu.shape;
    const dgu = mem.makeOutput([rows, twoI], 'float32');
    if (rows > 0 && twoI > 0) addon.swigluGrad(mem.heap(), mem.ref(gu), mem.ref(dy), mem.ref(dgu), rows, twoI / 2);
    return dgu;
  });

  // x [rows, d], w [d] -> y [rows, d]
  register(FusedKernel.RmsNorm, ({ inputs, backend, attrs }) => {
    const { x, w } = inputs;
    const mem = memoryOf(backend);
    const [rows, d] = x.shape;
    const y = mem.makeOutput([rows, d], 'float32');
    if (rows > 0 && d > 0) addon.rmsNorm(mem.heap(), mem.ref(x), mem.ref(w), mem.ref(y), rows, d, attrs!.eps as number);
    return y;
  });

  // x [rows, d], w [d], dy [rows, d] -> [dx [rows, d], dw [d]]
  register(FusedKernel.RmsNormGrad, ({ inputs, backend, attrs }) => {
    const { x, w, dy } = inputs;
    const mem = memoryOf(backend);
    const [rows, d] = x.shape;
    const dx = mem.makeOutput([rows, d], 'float32');
    const dw = mem.makeOutput([d], 'float32');
    if (d > 0) addon.rmsNormGrad(mem.heap(), mem.ref(x), mem.ref(w), mem.ref(dy), rows > 0 ? mem.ref(dx) : mem.ref(dw), mem.ref(dw), rows, d, attrs!.eps as number);
    return [dx, dw];
  });

  // x [B, ...rest] (last axis hd), cos and sin [1 or B, ...rest] -> x cos + swap(x) sin; the
  // gradient kernel takes dy in place of x
  const rope = (kernelName: FusedKernel, grad: boolean): void =>
    register(kernelName, ({ inputs, backend }) => {
      const { x, cos, sin } = inputs;
      const mem = memoryOf(backend);
      const out = mem.makeOutput(x.shape, 'float32');
      const B = x.shape[0];
      const inner = sizeOf(x.shape.slice(1));
      const hd = x.shape[x.shape.length - 1];
      const call = grad ? addon.ropeGrad : addon.rope;
      if (B * inner > 0) call.call(addon, mem.heap(), mem.ref(x), mem.ref(cos), mem.ref(sin), mem.ref(out), B, inner, hd, cos.shape[0] === 1 ? 0 : inner);
      return out;
    });
  rope(FusedKernel.Rope, false);
  rope(FusedKernel.RopeGrad, true);
}
