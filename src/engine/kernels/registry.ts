/**
 * Replacing kernels of the wasm backend. A replacement handles the cases it is built for and
 * returns null for the rest (other dtypes, exotic attributes), which then run the stock kernel,
 * so replacing a kernel never removes a capability. Replacements are installed once per process.
 */
import { tf } from '../tf.js';
import type { NativeAddon } from '../native-addon.js';
import type { TensorInfo, WasmBackend } from '../wasm-heap.js';

export const WASM = 'wasm';

/** What tfjs passes to a kernel function. */
export interface KernelArgs {
  inputs: Record<string, TensorInfo | undefined> & { [i: number]: TensorInfo };
  backend: unknown;
  attrs?: Record<string, unknown>;
}

export type KernelResult = TensorInfo | TensorInfo[];

/** A replacement: its result, or null to run the stock kernel instead. */
export type FastKernel = (args: KernelArgs, backend: WasmBackend) => KernelResult | null;

/** The addon, or null when kernels must work without it (portable JS kernels). */
export interface KernelEnv {
  addon: NativeAddon | null;
}

const installed = new Set<string>();

/** Names of the wasm kernels replaced so far in this process. */
export function replacedKernels(): string[] {
  return [...installed].sort();
}

/**
 * Registers `fast` for `kernelName` on the wasm backend, keeping the stock kernel (if any) as the
 * fallback. A second call for the same name is ignored.
 */
export function replaceKernel(kernelName: string, fast: FastKernel): void {
  if (installed.has(kernelName)) return;
  const stock = tf.getKernel(kernelName, WASM);
  if (stock) tf.unregisterKernel(kernelName, WASM);
  const kernelFunc = (args: KernelArgs): KernelResult => {
    const result = fast(args, args.backend as WasmBackend);
    if (result !== null) return result;
    if (!stock) {
      throw new Error(`${kernelName} on the wasm backend: unsupported inputs (${describeInputs(args)}) and no stock kernel`);
    }
    return stock.kernelFunc(args as unknown as Parameters<tf.KernelFunc>[0]) as KernelResult;
  };
  tf.registerKernel({
    kernelName,
    backendName: WASM,
    kernelFunc: kernelFunc as unknown as tf.KernelFunc,
    setupFunc: stock?.setupFunc,
    disposeFunc: stock?.disposeFunc,
  });
  installed.add(kernelName);
}

function describeInputs(args: KernelArgs): string {
  return Object.entries(args.inputs)
    .map(([k, t]) => (t ? `${k}: ${t.dtype}[${t.shape.join(',')}]` : `${k}: none`))
    .join(', ');
}
