/**
 * Sampling throughput of the reference Llama: batched decoding of `--batch` rows of `--prompt`
 * tokens for `--new` tokens with sample() (KV cache), on the native rollout decoder and on the
 * tfjs reference decoder, back to back; optionally also without a cache (`--uncached`: the whole
 * sequence through the model for every new token). `--group G` gives every G consecutive rows
 * the same prompt (a GRPO group: batch / G distinct prompts), which the native decoder prefills
 * once. New tokens/s = batch x new / wall time, median of `--runs`; CPU ms (this process) beside it. The greedy tokens of the two
 * decoders are compared row by row, and their log-probabilities (max absolute difference).
 *
 *   npx tsc -p bench && node dist-bench/bench/sample.js [--backend auto] [--batch 32]
 *       [--prompt 16] [--new 48] [--group 1] [--temperature 0] [--runs 3] [--uncached] [--json]
 * The PyTorch peer of the same work: python3 /work/shared/bench/torch_llama_sample.py
 *   --threads 1 --batch 32 --prompt 16 --new 48   (BENCHMARKS.md has both, side by side)
 */
import { tf } from '../src/engine/tf.js';
import { LlamaModel } from '../src/model/llama.js';
import { sample } from '../src/model/sampling.js';
import type { SampleOptions, SampleResult } from '../src/model/types.js';
import { Rng } from '../src/shared/rng.js';
import { median, parseFlags, referenceConfig, startEngine } from './common.js';

/** Greedy decoding that re-runs the whole sequence each step: the baseline the cache avoids. */
async function decodeWithoutCache(model: LlamaModel, prompts: number[][], newTokens: number): Promise<number[][]> {
  const V = model.config.vocab_size;
  const seqs = prompts.map((p) => [...p]);
  for (let s = 0; s < newTokens; s++) {
    const T = seqs[0].length;
    const last = tf.tidy(() => {
      const ids = tf.tensor2d(Int32Array.from(seqs.flat()), [seqs.length, T], 'int32');
      return model.logits(ids).slice([0, T - 1, 0], [seqs.length, 1, V]).reshape([seqs.length, V]).argMax(1); // [B]
    });
    const next = await last.data();
    last.dispose();
    seqs.forEach((row, b) => row.push(next[b]));
  }
  return seqs.map((row, b) => row.slice(prompts[b].length));
}

/** Median wall and CPU milliseconds of `runs` calls (CPU: this process, all threads; on a loaded machine the steadier figure). */
async function timed(runs: number, fn: () => Promise<SampleResult>): Promise<{ ms: number; cpuMs: number; result: SampleResult }> {
  const times: number[] = [];
  const cpu: number[] = [];
  let result: SampleResult | undefined;
  for (let i = 0; i < runs; i++) {
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    result = await fn();
    times.push(performance.now() - t0);
    const c = process.cpuUsage(c0);
    cpu.push((c.user + c.system) / 1000);
  }
  return { ms: median(times), cpuMs: median(cpu), result: result! };
}

async function main(): Promise<void> {
  const flags = parseFlags({ backend: 'auto', batch: 32, prompt: 16, new: 48, group: 1, temperature: 0, runs: 3, uncached: false, json: false });
  if (flags.batch % flags.group !== 0) throw new Error(`--batch ${flags.batch} is not a multiple of --group ${flags.group}`);
  const info = await startEngine(flags.backend);
  const model = LlamaModel.create(referenceConfig(), 0);
  const rng = new Rng(2);
  const distinct = Array.from({ length: flags.batch / flags.group }, () =>
    Array.from({ length: flags.prompt }, () => rng.int(2, model.config.vocab_size - 1)),
  );
  const prompts = distinct.flatMap((p) => Array.from({ length: flags.group }, () => p));
  const opts: SampleOptions = { maxNewTokens: flags.new, temperature: flags.temperature, topK: 0, topP: 1, stopTokens: [], seed: 3 };
  for (const decoder of ['native', 'reference'] as const) {
    await sample(model, prompts.slice(0, 2), { ...opts, maxNewTokens: 2, decoder }); // warm-up (kernels, tables, weights)
  }

  const native = await timed(flags.runs, () => sample(model, prompts, { ...opts, decoder: 'native' }));
  const reference = await timed(flags.runs, () => sample(model, prompts, { ...opts, decoder: 'reference' }));
  const agree = native.result.tokens.filter((row, b) => row.join() === reference.result.tokens[b].join()).length;
  let maxLogpDiff = 0;
  native.result.logprobs.forEach((row, b) =>
    row.forEach((lp, t) => {
      const other = reference.result.logprobs[b][t];
      if (other !== undefined) maxLogpDiff = Math.max(maxLogpDiff, Math.abs(lp - other));
    }),
  );
  let uncachedMs: number | null = null;
  if (flags.uncached) {
    const t0 = performance.now();
    await decodeWithoutCache(model, prompts, flags.new);
    uncachedMs = performance.now() - t0;
  }

  const generated = flags.batch * flags.new;
  const perS = (ms: number): number => Math.round((generated / ms) * 1000);
  const result = {
    bench: 'sample',
    backend: info.backend,
    native: info.native,
    batch: flags.batch,
    prompt: flags.prompt,
    new_tokens: flags.new,
    group: flags.group,
    temperature: flags.temperature,
    native_decoder_ms: Math.round(native.ms),
    native_decoder_tokens_per_s: perS(native.ms),
    native_decoder_cpu_ms: Math.round(native.cpuMs),
    reference_decoder_ms: Math.round(reference.ms),
    reference_decoder_tokens_per_s: perS(reference.ms),
    reference_decoder_cpu_ms: Math.round(reference.cpuMs),
    ...(uncachedMs === null ? {} : { no_cache_ms: Math.round(uncachedMs), no_cache_tokens_per_s: perS(uncachedMs) }),
    rows_agreeing: `${agree}/${flags.batch}`,
    max_logp_diff: Number(maxLogpDiff.toExponential(2)),
  };
  if (flags.json) console.log(JSON.stringify(result));
  else {
    console.log(
      `sampling ${flags.batch} x (${flags.prompt} prompt + ${flags.new} new) tokens, groups of ${flags.group}, on ${info.backend}${info.native ? ' + native' : ''}: ` +
        `native decoder ${result.native_decoder_tokens_per_s} tokens/s (${result.native_decoder_ms} ms, CPU ${result.native_decoder_cpu_ms} ms), ` +
        `tfjs reference decoder ${result.reference_decoder_tokens_per_s} tokens/s (${result.reference_decoder_ms} ms, CPU ${result.reference_decoder_cpu_ms} ms)` +
        (uncachedMs === null ? '' : `, no cache ${result.no_cache_tokens_per_s} tokens/s`) +
        `; tokens agree on ${result.rows_agreeing} rows, log-probs within ${result.max_logp_diff}`,
    );
  }
  model.dispose();
}

await main();
