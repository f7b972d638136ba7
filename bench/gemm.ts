/**
 * GEMM throughput through the engine (tf.matMul on the chosen backend, so the kernel plus the
 * engine's per-op overhead): square sizes 64..1024 and the shapes one step of the reference Llama
 * runs (its projections forward and backward, batched attention).
 *
 *   npx tsc -p bench && node dist-bench/bench/gemm.js [--backend auto] [--seconds 0.3] [--json]
 */
import { tf } from '../src/engine/tf.js';
import { median, parseFlags, PEAK_GFLOPS, startEngine } from './common.js';

interface Case {
  name: string;
  a: number[];
  b: number[];
  transA: boolean;
  transB: boolean;
}

const square = (n: number): Case => ({ name: `${n}x${n}x${n}`, a: [n, n], b: [n, n], transA: false, transB: false });

// N = B*T = 2048 tokens, d = 128, I = 352, B*H = 128 attention matrices of 64 x 32
const CASES: Case[] = [
  ...[64, 128, 256, 512, 1024].map(square),
  { name: 'qkv x W^T   [2048,128]x[384,128]^T', a: [2048, 128], b: [384, 128], transA: false, transB: true },
  { name: 'mlp x W^T   [2048,128]x[704,128]^T', a: [2048, 128], b: [704, 128], transA: false, transB: true },
  { name: 'down x W^T  [2048,352]x[128,352]^T', a: [2048, 352], b: [128, 352], transA: false, transB: true },
  { name: 'dx = dy W   [2048,704]x[704,128]', a: [2048, 704], b: [704, 128], transA: false, transB: false },
  { name: 'dW = dy^T x [2048,704]^Tx[2048,128]', a: [2048, 704], b: [2048, 128], transA: true, transB: false },
  { name: 'scores      [128,64,32]x[128,64,32]^T', a: [128, 64, 32], b: [128, 64, 32], transA: false, transB: true },
  { name: 'context     [128,64,64]x[128,64,32]', a: [128, 64, 64], b: [128, 64, 32], transA: false, transB: false },
  { name: 'd scores^T  [128,64,64]^Tx[128,64,32]', a: [128, 64, 64], b: [128, 64, 32], transA: true, transB: false },
];

function flopsOf(c: Case): number {
  const batch = c.a.slice(0, -2).reduce((x, y) => x * y, 1);
  const [r, k] = c.a.slice(-2);
  const M = c.transA ? k : r;
  const K = c.transA ? r : k;
  const N = c.transB ? c.b[c.b.length - 2] : c.b[c.b.length - 1];
  return 2 * batch * M * N * K;
}

async function main(): Promise<void> {
  const flags = parseFlags({ backend: 'auto', seconds: 0.3, json: false });
  const info = await startEngine(flags.backend);
  const rows = [];
  for (const c of CASES) {
    const a = tf.randomNormal(c.a);
    const b = tf.randomNormal(c.b);
    // every backend initEngine picks (tensorflow, wasm, cpu) runs kernels synchronously, so the
    // call's wall time is the kernel's; reading the result back would add a copy of C to it
    const run = () => tf.matMul(a, b, c.transA, c.transB).dispose();
    for (let i = 0; i < 3; i++) run();
    const times: number[] = [];
    const until = performance.now() + flags.seconds * 1000;
    while (times.length < 5 || (performance.now() < until && times.length < 200)) {
      const t0 = performance.now();
      run();
      times.push(performance.now() - t0);
    }
    const ms = median(times);
    const gflops = flopsOf(c) / ms / 1e6;
    rows.push({ shape: c.name, ms: Number(ms.toFixed(3)), gflops: Number(gflops.toFixed(1)), peakFraction: Number((gflops / PEAK_GFLOPS).toFixed(3)) });
    tf.dispose([a, b]);
  }
  if (flags.json) {
    console.log(JSON.stringify({ bench: 'gemm', backend: info.backend, native: info.native, threads: info.threads, blasCore: info.blasCore, rows }));
    return;
  }
  console.log(`GEMM on ${info.backend}${info.native ? ` + native (${info.threads} threads, OpenBLAS ${info.blasCore})` : ''}; peak ${PEAK_GFLOPS} GFLOP/s`);
  for (const r of rows) console.log(`${r.shape.padEnd(40)} ${r.ms.toFixed(3).padStart(9)} ms ${r.gflops.toFixed(1).padStart(7)} GFLOP/s  ${(r.peakFraction * 100).toFixed(0).padStart(3)}% of peak`);
}

await main();
