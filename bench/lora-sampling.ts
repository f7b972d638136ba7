/**
 * LoRA sampling on a worker: the adapters merged into the sampling weights against applied as a
 * side path beside the frozen base at every token (config lora_sampling), on one model shape:
 *
 *   sampling   new tokens/s of sample() (KV cache, greedy) with
 *                merged         the merged weights, the decoder sample() picks (native when built)
 *                merged-tfjs    the merged weights on the tfjs decoder (same decoder as side)
 *                side           base + adapters beside it (tfjs decoder: the native one has no side path)
 *              in turn (ABC ABC ...), median of --runs each; the greedy tokens are compared
 *   version    seconds to apply one adapter version on the worker: merged = W + s B A for every
 *              target on the host and all weights copied into the model (run-state.ts); side =
 *              A and B assigned (median of 3)
 *
 *   npx tsc -p bench && node dist-bench/bench/lora-sampling.js [--model-config FILE.json]
 *       [--batch 32] [--prompt 16] [--new 48] [--group 1] [--lora-r 8] [--targets all-linear]
 *       [--runs 3] [--backend auto] [--json]
 *
 * Without --model-config the model is bench/common.ts's reference config (the demo's shape).
 */
import { readFileSync } from 'node:fs';
import { LlamaModel } from '../src/model/llama.js';
import { llamaParamShapes } from '../src/model/llama-params.js';
import { LoraAdapters, mergeNamedAdapters, type LoraSpec } from '../src/model/lora.js';
import { parseLlamaConfig } from '../src/model/checkpoint-config.js';
import { sample } from '../src/model/sampling.js';
import type { LlamaConfig, SampleOptions, SampleResult } from '../src/model/types.js';
import { Rng } from '../src/shared/rng.js';
import { median, parseFlags, referenceConfig, startEngine } from './common.js';

const flags = parseFlags({ 'model-config': '', batch: 32, prompt: 16, new: 48, group: 1, 'lora-r': 8, targets: 'all-linear', runs: 3, backend: 'auto', json: false });

async function main(): Promise<void> {
  if (flags.batch % flags.group !== 0) throw new Error(`--batch ${flags.batch} is not a multiple of --group ${flags.group}`);
  const info = await startEngine(flags.backend);
  const config: LlamaConfig = flags['model-config']
    ? parseLlamaConfig(JSON.parse(readFileSync(flags['model-config'], 'utf8')), flags['model-config'])
    : referenceConfig();
  const r = flags['lora-r'];
  const spec: LoraSpec = { r, alpha: 2 * r, dropout: 0, targetModules: flags.targets === 'all-linear' ? 'all-linear' : flags.targets.split(',') };
  const shapes = llamaParamShapes(config);

  const init = LlamaModel.create(config, 1);
  const base = await init.toHostTensors();
  init.dispose();
  // a trained-looking adapter: B non-zero, so the side path's output matters
  const adapters = LoraAdapters.create(shapes, spec, 2);
  const host = await adapters.toHostTensors();
  const rng = new Rng(4);
  for (const [name, t] of host) if (name.includes('lora_B')) for (let i = 0; i < t.data.length; i++) t.data[i] = (rng.next() - 0.5) * 0.02;
  adapters.setHostTensors(host);

  const merged = LlamaModel.fromHostTensors(config, mergeNamedAdapters(shapes, base, host, r, spec.alpha), { trainable: false });
  const side = LlamaModel.fromHostTensors(config, base, { trainable: false });
  side.setAdapters(adapters, 'side');

  const distinct = Array.from({ length: flags.batch / flags.group }, () => Array.from({ length: flags.prompt }, () => rng.int(3, config.vocab_size - 1)));
  const prompts = distinct.flatMap((p) => Array.from({ length: flags.group }, () => p));
  const opts: SampleOptions = { maxNewTokens: flags.new, temperature: 0, topK: 0, topP: 1, stopTokens: [], seed: 3 };
  const modes = {
    merged: () => sample(merged, prompts, opts),
    'merged-tfjs': () => sample(merged, prompts, { ...opts, decoder: 'reference' }),
    side: () => sample(side, prompts, opts),
  };
  const times: Record<string, number[]> = { merged: [], 'merged-tfjs': [], side: [] };
  const results: Record<string, SampleResult> = {};
  for (const fn of Object.values(modes)) await (fn as () => Promise<SampleResult>)(); // warm-up
  for (let i = 0; i < flags.runs; i++) {
    for (const [mode, fn] of Object.entries(modes)) {
      const t0 = performance.now();
      results[mode] = await fn();
      times[mode]!.push(performance.now() - t0);
    }
  }
  const generated = flags.batch * flags.new;
  const perS = (ms: number): number => Math.round((generated / ms) * 1000);
  const agree = (a: SampleResult, b: SampleResult): string => `${a.tokens.filter((row, j) => row.join() === b.tokens[j]!.join()).length}/${flags.batch}`;

  // applying one new adapter version, as run-state.ts does in each mode
  const version = { merged: [] as number[], side: [] as number[] };
  for (let i = 0; i < 3; i++) {
    let t0 = performance.now();
    merged.setWeights(mergeNamedAdapters(shapes, base, host, r, spec.alpha));
    version.merged.push((performance.now() - t0) / 1000);
    t0 = performance.now();
    adapters.setHostTensors(host);
    version.side.push((performance.now() - t0) / 1000);
  }

  const out = {
    bench: 'lora-sampling',
    backend: info.backend,
    params: merged.numParams(),
    loraR: r,
    adapterParams: adapters.numParams(),
    shape: `${flags.batch} x (${flags.prompt} + ${flags.new}), groups of ${flags.group}`,
    tokensPerSecond: Object.fromEntries(Object.entries(times).map(([m, t]) => [m, perS(median(t))])),
    msPerRun: Object.fromEntries(Object.entries(times).map(([m, t]) => [m, t.map(Math.round)])),
    rowsAgreeingWithMerged: { 'merged-tfjs': agree(results['merged-tfjs']!, results.merged!), side: agree(results.side!, results.merged!) },
    secondsPerAdapterVersion: { merged: Number(median(version.merged).toFixed(3)), side: Number(median(version.side).toFixed(4)) },
  };
  console.log(flags.json ? JSON.stringify(out) : JSON.stringify(out, null, 2));
  for (const m of [merged, side, adapters]) m.dispose();
}

await main();
