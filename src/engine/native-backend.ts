/**
 * The 'native' backend: tfjs's cpu backend storage (every tensor its own typed array in ordinary
 * process memory, no 4 GB wasm32 ceiling) with the hot kernels replaced by the native addon's
 * (OpenBLAS GEMM, multithreaded elementwise, reductions, softmax, gather, segment sums, copies).
 * Registered through tfjs's public API under its own name, so the stock 'cpu' backend stays
 * untouched as the tests' reference. Kernels we do not replace run the cpu backend's JS ones.
 */
import { GrpoError } from '../shared/errors.js';
import { poolBackend, type PooledBackend } from './host-pool.js';
import { installNativeKernels, replacedKernels } from './kernels/index.js';
import type { NativeAddon } from './native-addon.js';
import { tf } from './tf.js';

export const NATIVE_BACKEND = 'native';

let registered = false;

/** Registers the backend and its kernels once per process; returns the replaced kernel names. */
export function registerNativeBackend(addon: NativeAddon): string[] {
  if (!registered) {
    const cpuFactory = tf.findBackendFactory('cpu');
    if (!cpuFactory) {
      throw new GrpoError('GRPO_ERR_BACKEND_UNAVAILABLE', 'the native backend builds on the cpu backend, which @tensorflow/tfjs did not register');
    }
    // priority 0: never picked by tfjs on its own, only by initEngine
    tf.registerBackend(
      NATIVE_BACKEND,
      () => {
        const backend = cpuFactory() as tf.KernelBackend;
        poolBackend(backend as unknown as PooledBackend); // recycles kernel outputs: see host-pool.ts
        return backend;
      },
      0,
    );
    for (const config of tf.getKernelsForBackend('cpu')) {
      tf.registerKernel({ ...config, backendName: NATIVE_BACKEND });
    }
    installNativeKernels(addon, NATIVE_BACKEND);
    registered = true;
  }
  return replacedKernels(NATIVE_BACKEND);
}
