/**
 * The replacement kernels of the wasm and native backends, installed by initEngine (backend.ts).
 * Native set (needs the addon): GEMM, elementwise, data movement, reductions and softmax, and
 * fused kernels of our own (AdamW, SwiGLU, RMSNorm; see fused.ts).
 * Portable set (plain JS): what the wasm backend lacks or gets wrong; see portable.ts.
 */
import type { NativeAddon } from '../native-addon.js';
import { installElementwiseKernels } from './elementwise.js';
import { installFusedKernels } from './fused.js';
import { installMatMulKernels } from './matmul.js';
import { installMovementKernels } from './movement.js';
import { installReduceKernels } from './reduce.js';
import type { KernelBackendName } from './registry.js';

export { installPortableKernels } from './portable.js';
export { replacedKernels, type KernelBackendName } from './registry.js';

export function installNativeKernels(addon: NativeAddon, target: KernelBackendName): void {
  installMatMulKernels(addon, target);
  installElementwiseKernels(addon, target);
  installMovementKernels(addon, target);
  installReduceKernels(addon, target);
  installFusedKernels(addon, target);
}
