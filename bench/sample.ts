/**
 * Sampling throughput of the reference Llama: batched greedy decoding of `--batch` prompts of
 * `--prompt` tokens for `--new` tokens, once with the KV cache (sample(): prefill, then one
 * position per step) and once without (the full sequence through the model for every new token).
 *
 *   npx tsc -p bench && node dist-bench/bench/sample.js [--backend auto] [--batch 32]
 *       [--prompt 16] [--new 48] [--json]
 */
import { tf } from '../src/engine/tf.js';
import { LlamaModel } from '../src/model/llama.js';
import { sample } from '../src/model/sampling.js';
import { Rng } from '../src/shared/rng.js';
import { parseFlags, referenceConfig, startEngine } from './common.js';

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

async function main(): Promise<void> {
  const flags = parseFlags({ backend: 'auto', batch: 32, prompt: 16, new: 48, json: false });
  const info = await startEngine(flags.backend);
  const model = LlamaModel.create(referenceConfig(), 0);
  const rng = new Rng(2);
  const prompts = Array.from({ length: flags.batch }, () => Array.from({ length: flags.prompt }, () => rng.int(2, model.config.vocab_size - 1)));
  const opts = { maxNewTokens: flags.new, temperature: 0, topK: 0, topP: 1, stopTokens: [], seed: 3 };
  await sample(model, prompts.slice(0, 2), { ...opts, maxNewTokens: 2 }); // warm-up (kernels, tables)

  let t0 = performance.now();
  const cached = await sample(model, prompts, opts);
  const cachedMs = performance.now() - t0;
  t0 = performance.now();
  const uncached = await decodeWithoutCache(model, prompts, flags.new);
  const uncachedMs = performance.now() - t0;
  // the two paths compute the same greedy tokens (up to float ties), a cheap cross-check
  const agree = cached.tokens.filter((row, b) => row.join() === uncached[b].join()).length;

  const generated = flags.batch * flags.new;
  const result = {
    bench: 'sample',
    backend: info.backend,
    native: info.native,
    batch: flags.batch,
    prompt: flags.prompt,
    new_tokens: flags.new,
    kv_cache_ms: Math.round(cachedMs),
    kv_cache_tokens_per_s: Math.round((generated / cachedMs) * 1000),
    no_cache_ms: Math.round(uncachedMs),
    no_cache_tokens_per_s: Math.round((generated / uncachedMs) * 1000),
    rows_agreeing: `${agree}/${flags.batch}`,
  };
  if (flags.json) console.log(JSON.stringify(result));
  else {
    console.log(
      `sampling ${flags.batch} x (${flags.prompt} prompt + ${flags.new} new) tokens on ${info.backend}${info.native ? ' + native' : ''}: ` +
        `KV cache ${result.kv_cache_tokens_per_s} tokens/s (${result.kv_cache_ms} ms), ` +
        `no cache ${result.no_cache_tokens_per_s} tokens/s (${result.no_cache_ms} ms); greedy outputs agree on ${result.rows_agreeing} rows`,
    );
  }
  model.dispose();
}

await main();
