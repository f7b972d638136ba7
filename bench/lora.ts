/**
 * LoRA against full fine-tuning, on one model shape:
 *
 *   publish   bytes per weights version, and seconds from the learner's publish to every worker
 *             having loaded it (the coordinator's /healthz shows each worker's Ready version),
 *             with a real `grpo coordinator` and N real `grpo worker` child processes: full
 *             payloads vs LoRA (one base payload, then adapters alone)
 *   step      the learner's step time and its process RSS growth: GrpoTrainer on synthetic
 *             groups, full fine-tuning vs LoRA (adapters and their AdamW state only)
 *
 *   npx tsc -p . && npx tsc -p bench && node dist-bench/bench/lora.js [--size base] [--model-config FILE.json]
 *       [--lora-r 8] [--lora-dropout 0] [--targets all-linear] [--workers 2] [--versions 4] [--steps 3] [--micro-batch 32] [--backend auto]
 *       [--part publish|step|all] [--step-mode full|lora|both] [--json]
 *
 * RSS growth is comparable only when each step mode runs in a process of its own (the wasm heap
 * never shrinks): --part step --step-mode full, then --step-mode lora.
 *
 * Run from the repository root.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { GrpoTrainer } from '../src/learner/train-step.js';
import { runSpecOf } from '../src/learner/main.js';
import { parseLlamaConfig } from '../src/model/checkpoint-config.js';
import { LlamaModel } from '../src/model/llama.js';
import { llamaParamShapes } from '../src/model/llama-params.js';
import { baseFingerprint, LoraAdapters, type LoraSpec } from '../src/model/lora.js';
import { presetConfig } from '../src/model/presets.js';
import type { LlamaConfig, NamedHostTensors } from '../src/model/types.js';
import { parseConfig } from '../src/shared/config.js';
import { Kind, type GroupRollout } from '../src/shared/protocol.js';
import { ProtocolClient } from '../src/shared/ws-client.js';
import { loadTask, tokenizerForTask } from '../src/tasks/index.js';
import { median, parseFlags, startEngine } from './common.js';
import { checkLayout, healthz, startCoordinator, startWorker, until, type Child } from './cluster-procs.js';

const flags = parseFlags({
  size: 'base',
  'model-config': '',
  'lora-r': 8,
  'lora-dropout': 0, // > 0: the LoRA step runs the adapters beside W with dropout on their input (lora-side.ts)
  targets: 'all-linear',
  workers: 2,
  versions: 4, // timed versions per mode, after one untimed
  steps: 3, // timed learner steps per mode, after one untimed
  'micro-batch': 32, // sequences per forward/backward in the step part (8 fits the 135M shape in 24 GB)
  backend: 'auto',
  part: 'all', // publish | step | all
  'step-mode': 'both', // full | lora | both; RSS is only comparable when each mode runs in its own process
  json: false,
});

const round = (x: number, d = 3): number => Number(x.toFixed(d));
const rssMiB = (): number => process.memoryUsage().rss / 2 ** 20;

async function main(): Promise<void> {
  checkLayout();
  const engine = await startEngine(flags.backend);
  const task = await loadTask('arithmetic', { seed: 1, options: {} });
  const tokenizer = tokenizerForTask(task);
  // a Hugging Face config.json gives the shape; its vocabulary is used as is (random token ids)
  const config: LlamaConfig = flags['model-config']
    ? parseLlamaConfig(JSON.parse(readFileSync(flags['model-config'], 'utf8')), flags['model-config'])
    : presetConfig(flags.size as 'base', tokenizer);
  const spec: LoraSpec = { r: flags['lora-r'], alpha: 2 * flags['lora-r'], dropout: flags['lora-dropout'], targetModules: flags.targets === 'all-linear' ? 'all-linear' : flags.targets.split(',') };
  const model = LlamaModel.create(config, 1);
  const params = model.numParams();
  const out: Record<string, unknown> = { backend: engine.backend, params, loraR: spec.r, loraDropout: spec.dropout, targets: spec.targetModules, workers: flags.workers };
  if (flags.part !== 'step') out.publish = await publishBench(config, model, spec, tokenizer, task);
  if (flags.part !== 'publish') out.step = await stepBench(config, model, spec);
  model.dispose();
  if (flags.json) console.log(JSON.stringify(out));
  else console.log(JSON.stringify(out, null, 2));
  process.exit(0);
}

async function publishBench(config: LlamaConfig, model: LlamaModel, spec: LoraSpec, tokenizer: ReturnType<typeof tokenizerForTask>, task: Awaited<ReturnType<typeof loadTask>>) {
  const token = randomBytes(12).toString('hex');
  const results: Record<string, unknown> = {};
  for (const mode of ['full', 'lora'] as const) {
    const coord = await startCoordinator(token);
    const workers: Child[] = [];
    const client = new ProtocolClient({ url: coord.url, role: 'learner', name: 'bench-learner', token, maxPayloadBytes: 512 * 2 ** 20 });
    try {
      const runSpec = runSpecOf(`bench-${mode}`, parseConfig({ task: 'arithmetic' }), model, { tokenizer, task, moduleRewards: [], rewardWeights: { correct: 1, format: 0, partial: 0 } });
      client.onEvent('welcome', () => client.send({ kind: Kind.RunSpec, spec: runSpec }));
      await client.start();
      for (let i = 0; i < flags.workers; i++) workers.push(startWorker(coord.url, token, `w${i}`, { capacity: 1, rewardThreads: 1, backend: flags.backend }));
      const base = await model.toHostTensors();
      const fingerprint = baseFingerprint(base);
      const adapters = LoraAdapters.create(llamaParamShapes(config), spec, 2);
      const adapterHost = await adapters.toHostTensors();
      adapters.dispose();
      const times: number[] = [];
      const bytes: number[] = [];
      for (let v = 0; v <= flags.versions; v++) {
        let tensors: NamedHostTensors = base;
        let adapter;
        if (mode === 'lora') {
          adapter = { base: 0, baseFingerprint: fingerprint, r: spec.r, alpha: spec.alpha };
          tensors = v === 0 ? new Map([...base, ...adapterHost]) : adapterHost;
        }
        const t0 = performance.now();
        await client.publishWeights(tensors, v, 'f32', 1024 * 1024, adapter);
        await until(async () => {
          const s = await healthz(coord.http).catch(() => undefined); // a keep-alive socket closed under us: poll again
          if (s === undefined) return undefined;
          return s.workers.length === flags.workers && s.workers.every((w) => w.policyVersion === v) ? s : undefined;
        }, 300_000, `version ${v} loaded by every worker`);
        const seconds = (performance.now() - t0) / 1000;
        const s = await until(() => healthz(coord.http).catch(() => undefined), 10_000, 'healthz');
        if (v > 0) {
          times.push(seconds);
          bytes.push(s.weights.bytes);
        } else {
          results[`${mode}FirstVersion`] = { seconds: round(seconds), bytes: s.weights.bytes };
        }
      }
      results[mode] = { bytesPerVersion: median(bytes), secondsToAllWorkersLoaded: round(median(times)), versions: times.length };
    } finally {
      await client.close();
      for (const w of workers) await w.stop();
      await coord.child.stop();
    }
  }
  return results;
}

/** Synthetic groups: random completions of a fixed length, rewards alternating 1/0. */
function syntheticGroups(config: LlamaConfig, n: number, groupSize: number, promptLen: number, genLen: number): GroupRollout[] {
  let x = 7;
  const tok = (): number => 3 + ((x = (x * 1103515245 + 12345) % 2 ** 31) % (config.vocab_size - 3));
  return Array.from({ length: n }, (_, g) => ({
    groupId: `g${g}`,
    policyVersion: 0,
    promptTokens: [1, ...Array.from({ length: promptLen - 1 }, tok)],
    completions: Array.from({ length: groupSize }, (_, j) => ({
      tokens: Array.from({ length: genLen }, tok),
      logprobs: Array(genLen).fill(-Math.log(config.vocab_size)),
      text: '',
      rewards: { r: j % 2 },
      finishReason: 'length' as const,
    })),
  }));
}

async function stepBench(config: LlamaConfig, model: LlamaModel, spec: LoraSpec) {
  const groups = syntheticGroups(config, 8, 4, 16, 48);
  const base = await model.toHostTensors();
  const results: Record<string, unknown> = {};
  const modes = flags['step-mode'] === 'both' ? (['full', 'lora'] as const) : [flags['step-mode'] as 'full' | 'lora'];
  for (const mode of modes) {
    const rss0 = rssMiB();
    const policy = LlamaModel.fromHostTensors(config, base, { trainable: mode === 'full' });
    const adapters = mode === 'lora' ? LoraAdapters.create(llamaParamShapes(config), spec, 3) : null;
    if (adapters) policy.setAdapters(adapters);
    const trainer = new GrpoTrainer({
      config: parseConfig({ group_size: 4, max_gen_len: 48, micro_batch_size: flags['micro-batch'], lr: 1e-4, lr_schedule: 'constant', warmup_steps: 0, dynamic_sampling: false, lora_r: mode === 'lora' ? spec.r : 0, lora_dropout: mode === 'lora' ? spec.dropout : 0 }),
      policy,
    });
    const times: number[] = [];
    let peak = rssMiB();
    for (let s = 0; s <= flags.steps; s++) {
      const m = await trainer.step(groups, s);
      if (s > 0) times.push(m.seconds);
      peak = Math.max(peak, rssMiB());
    }
    results[mode] = { secondsPerStep: round(median(times)), trainableParams: adapters ? adapters.numParams() : policy.numParams(), rssGrowthMiB: round(peak - rss0, 0) };
    trainer.dispose();
    adapters?.dispose();
    policy.dispose();
  }
  return results;
}

await main();
