/**
 * The wasm backend's replacement kernels, installed by initEngine (backend.ts).
 * Native set (needs the addon): GEMM, elementwise, data movement, reductions and softmax.
 * Portable set (plain JS): what the wasm backend lacks or gets wrong; see portable.ts.
 */
import type { NativeAddon } from '../native-addon.js';
import { installElementwiseKernels } from './elementwise.js';
import { installMatMulKernels } from './matmul.js';
import { installMovementKernels } from './movement.js';
import { installReduceKernels } from './reduce.js';

export { installPortableKernels } from './portable.js';
export { replacedKernels } from './registry.js';

export function installNativeKernels(addon: NativeAddon): void {
  installMatMulKernels(addon);
  installElementwiseKernels(addon);
  installMovementKernels(addon);
  installReduceKernels(addon);
}
