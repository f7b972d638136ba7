/**
 * Per-kernel timing for benchmarks: wraps every kernel of the active backend with a timer until
 * stop() puts the originals back. Kernels on the cpu, wasm and tfjs-node backends run
 * synchronously, so the wall time around a kernel call is its cost (including allocation of its
 * outputs, excluding the engine's bookkeeping around it, which `untracked` estimates).
 */
import { tf } from './tf.js';

export interface KernelStat {
  kernel: string; // kernel name, plus input shapes when profiling by shape
  calls: number;
  ms: number; // total wall time inside the kernel
  cpuMs: number; // process CPU time (user + sys, every thread) inside the kernel: steadier than wall on a loaded machine
}

type Config = ReturnType<typeof tf.getKernelsForBackend>[number];

export class KernelProfiler {
  private readonly stats = new Map<string, KernelStat>();
  private originals: Config[] = [];

  /** byShape: one row per kernel and input shapes instead of per kernel. */
  constructor(private readonly byShape = false) {}

  start(): void {
    if (this.originals.length > 0) return;
    const backend = tf.getBackend();
    this.originals = tf.getKernelsForBackend(backend);
    for (const config of this.originals) {
      const inner = config.kernelFunc;
      tf.unregisterKernel(config.kernelName, backend);
      tf.registerKernel({
        ...config,
        setupFunc: undefined, // already set up: the backend is initialised
        kernelFunc: (args) => {
          const c0 = process.cpuUsage();
          const t0 = performance.now();
          const out = inner(args);
          const ms = performance.now() - t0;
          const c1 = process.cpuUsage(c0);
          const key = this.byShape ? `${config.kernelName} ${shapesOf(args.inputs)}` : config.kernelName;
          const s = this.stats.get(key) ?? { kernel: key, calls: 0, ms: 0, cpuMs: 0 };
          s.calls += 1;
          s.ms += ms;
          s.cpuMs += (c1.user + c1.system) / 1000;
          this.stats.set(key, s);
          return out;
        },
      });
    }
  }

  /** Restores the original kernels and returns the stats, most expensive first. */
  stop(): KernelStat[] {
    const backend = tf.getBackend();
    for (const config of this.originals) {
      tf.unregisterKernel(config.kernelName, backend);
      tf.registerKernel(config);
    }
    this.originals = [];
    return this.results();
  }

  results(): KernelStat[] {
    return [...this.stats.values()].sort((a, b) => b.ms - a.ms);
  }

  reset(): void {
    this.stats.clear();
  }
}

function shapesOf(inputs: tf.NamedTensorInfoMap): string {
  return Object.values(inputs)
    .map((t) => (t ? `[${t.shape.join(',')}]` : '-'))
    .join(' ');
}
