/**
 * Replacing kernels of the backends our native kernels serve: 'wasm' (tfjs's wasm backend) and
 * 'native' (our own, see ../native-backend.ts). A replacement handles the cases it is built for
 * and returns null for the rest (other dtypes, exotic attributes), which then run the stock
 * kernel, so replacing a kernel never removes a capability. Replacements are installed once per
 * process and backend.
 */
import { tf } from '../tf.js';
import { memoryOf, type KernelMemory } from '../tensor-memory.js';
import type { TensorInfo } from '../wasm-heap.js';

/** The backends kernels are installed on. */
export type KernelBackendName = 'wasm' | 'native';

/** What tfjs passes to a kernel function. */
export interface KernelArgs {
  inputs: Record<string, TensorInfo | undefined> & { [i: number]: TensorInfo };
  backend: unknown;
  attrs?: Record<string, unknown>;
}

export type KernelResult = TensorInfo | TensorInfo[];

/** A replacement: its result, or null to run the stock kernel instead. */
export type FastKernel = (args: KernelArgs, backend: KernelMemory) => KernelResult | null;

const installed = new Map<KernelBackendName, Set<string>>();

/** Names of the kernels replaced so far in this process on `backendName`. */
export function replacedKernels(backendName: KernelBackendName = 'wasm'): string[] {
  return [...(installed.get(backendName) ?? [])].sort();
}

/**
 * Registers `fast` for `kernelName` on `backendName`, keeping the stock kernel (if any) as the
 * fallback. A second call for the same name and backend is ignored.
 */
export function replaceKernel(backendName: KernelBackendName, kernelName: string, fast: FastKernel): void {
  let done = installed.get(backendName);
  if (!done) installed.set(backendName, (done = new Set()));
  if (done.has(kernelName)) return;
  const stock = tf.getKernel(kernelName, backendName);
  if (stock) tf.unregisterKernel(kernelName, backendName);
  const kernelFunc = (args: KernelArgs): KernelResult => {
    const result = fast(args, memoryOf(args.backend));
    if (result !== null) return result;
    if (!stock) {
      throw new Error(`${kernelName} on the ${backendName} backend: unsupported inputs (${describeInputs(args)}) and no stock kernel`);
    }
    return stock.kernelFunc(args as unknown as Parameters<tf.KernelFunc>[0]) as KernelResult;
  };
  tf.registerKernel({
    kernelName,
    backendName,
    kernelFunc: kernelFunc as unknown as tf.KernelFunc,
    setupFunc: stock?.setupFunc,
    disposeFunc: stock?.disposeFunc,
  });
  done.add(kernelName);
}

function describeInputs(args: KernelArgs): string {
  return Object.entries(args.inputs)
    .map(([k, t]) => (t ? `${k}: ${t.dtype}[${t.shape.join(',')}]` : `${k}: none`))
    .join(', ');
}
