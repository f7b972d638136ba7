/**
 * One GRPO-shaped training step of the reference Llama (vocab 64, hidden 128, intermediate 352,
 * 4 layers, 4 heads, 4 kv heads, tied embeddings; batch 32 x seq 64), the same step that
 * /work/shared/bench/torch_llama_step.py times in PyTorch: forward, log-softmax gather of the
 * target tokens, loss -(mean_t logp * advantage).mean(), backward, AdamW.
 *
 *   npx tsc -p bench && node dist-bench/bench/train-step.js [--backend auto] [--steps 5]
 *       [--warmup 2] [--optimizer adamw|adam] [--profile | --by-shape] [--json]
 *
 * Prints the median ms per step, tokens/s and the matmul FLOP rate as a fraction of the
 * machine's fp32 peak; --profile adds the time per kernel (kernels wrapped with timers),
 * --by-shape the same per kernel and input shapes.
 */
import { KernelProfiler } from '../src/engine/profiler.js';
import { tf } from '../src/engine/tf.js';
import { LlamaModel } from '../src/model/llama.js';
import { Rng } from '../src/shared/rng.js';
import { AdamW } from '../src/optim/adamw.js';
import { forwardFlops, median, parseFlags, PEAK_GFLOPS, referenceConfig, startEngine } from './common.js';

const B = 32;
const T = 64;

async function main(): Promise<void> {
  const flags = parseFlags({ backend: 'auto', steps: 5, warmup: 2, optimizer: 'adamw', profile: false, 'by-shape': false, json: false, batch: B, seq: T });
  if (flags.optimizer !== 'adamw' && flags.optimizer !== 'adam') throw new Error(`--optimizer is adamw or adam, got ${flags.optimizer}`);
  const info = await startEngine(flags.backend);
  const config = referenceConfig();
  const model = LlamaModel.create(config, 0);
  const params = model.variables(); // by Hugging Face name
  const rng = new Rng(1);
  const ids = tf.tensor2d(Int32Array.from({ length: flags.batch * flags.seq }, () => rng.int(0, config.vocab_size - 1)), [flags.batch, flags.seq], 'int32');
  const adv = tf.tensor1d(Float32Array.from({ length: flags.batch }, () => rng.normal())); // [B]
  const adamw = new AdamW(params);
  const adam = tf.train.adam(1e-3);
  const vars = [...params.values()];
  const names = new Map(vars.map((v) => [v.name, [...params].find(([, p]) => p === v)![0]]));

  const step = async (): Promise<number> => {
    const loss = (): tf.Scalar =>
      tf.tidy(() => {
        const { logp } = model.tokenLogProbs(ids); // [B, T-1]
        return logp.mean(1).mul(adv).mean().neg() as tf.Scalar;
      });
    let value: tf.Scalar;
    if (flags.optimizer === 'adam') {
      value = adam.minimize(loss, true, vars) as tf.Scalar;
    } else {
      const { value: v, grads } = tf.variableGrads(loss, vars);
      adamw.apply(new Map(Object.entries(grads).map(([k, g]) => [names.get(k)!, g])), 1e-3);
      tf.dispose(Object.values(grads));
      value = v;
    }
    const out = (await value.data())[0]; // the one device-to-host read per step
    value.dispose();
    return out;
  };

  for (let i = 0; i < flags.warmup; i++) await step();
  const profiler = flags.profile || flags['by-shape'] ? new KernelProfiler(flags['by-shape']) : null;
  profiler?.start();
  const times: number[] = [];
  let lastLoss = 0;
  for (let i = 0; i < flags.steps; i++) {
    const t0 = performance.now();
    lastLoss = await step();
    times.push(performance.now() - t0);
  }
  const kernels = profiler?.stop() ?? [];
  const ms = median(times);
  const tokens = flags.batch * flags.seq;
  const flops = 3 * forwardFlops(config, flags.batch, flags.seq, flags.seq - 1); // forward + 2x backward
  const gflops = flops / ms / 1e6;
  const result = {
    bench: 'train-step',
    backend: info.backend,
    native: info.native,
    threads: info.threads,
    optimizer: flags.optimizer,
    params: model.numParams(),
    batch: flags.batch,
    seq: flags.seq,
    steps: flags.steps,
    median_ms: Number(ms.toFixed(1)),
    min_ms: Number(Math.min(...times).toFixed(1)),
    tokens_per_s: Math.round((tokens / ms) * 1000),
    matmul_gflops: Number(gflops.toFixed(1)),
    peak_fraction: Number((gflops / PEAK_GFLOPS).toFixed(3)),
    loss: lastLoss,
    tensors: tf.memory().numTensors,
  };
  if (flags.json) console.log(JSON.stringify(result));
  else {
    console.log(
      `train step (${result.params} params, ${flags.batch}x${flags.seq} tokens, ${flags.optimizer}) on ${info.backend}${info.native ? ` + native x${info.threads}` : ''}: ` +
        `median ${result.median_ms} ms (min ${result.min_ms}) over ${flags.steps} steps, ${result.tokens_per_s} tokens/s, ` +
        `${result.matmul_gflops} GFLOP/s = ${(result.peak_fraction * 100).toFixed(1)}% of ${PEAK_GFLOPS} GFLOP/s peak`,
    );
  }
  if (profiler) {
    const total = kernels.reduce((s, k) => s + k.ms, 0) / flags.steps;
    const calls = kernels.reduce((s, k) => s + k.calls, 0) / flags.steps;
    console.log(`kernels: ${total.toFixed(1)} ms and ${calls} calls per step (the rest of the step is engine and JS overhead)`);
    for (const k of kernels.slice(0, flags['by-shape'] ? 30 : 15)) console.log(`  ${(k.ms / flags.steps).toFixed(2).padStart(8)} ms ${String(k.calls / flags.steps).padStart(5)}x  ${k.kernel}`);
  }
  tf.dispose([ids, adv]);
  adam.dispose();
  model.dispose();
}

await main();
