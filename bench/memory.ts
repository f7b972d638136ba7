/**
 * Memory over a long run: the learner (this process, with the coordinator) and `--workers` rollout
 * workers (child processes, bench/memory-worker.ts) train a tiny model on loopback for `--steps`
 * steps. Every `--every` steps it records each role's resident memory (MiB) and
 * tf.memory().numTensors; it prints the table and, per role, the change from the first sample
 * after warm-up to the last. Flat numbers mean no tensor or memory leak per step.
 *
 *   npx tsc -p bench && node dist-bench/bench/memory.js [--steps 2000] [--every 200] [--workers 2] [--json]
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { startCoordinator } from '../src/coordinator/main.js';
import { tf } from '../src/engine/tf.js';
import { runLearner } from '../src/learner/main.js';
import { saveCheckpoint } from '../src/model/checkpoint.js';
import { LlamaModel } from '../src/model/llama.js';
import { presetConfig } from '../src/model/presets.js';
import { parseConfig } from '../src/shared/config.js';
import { silentLogger } from '../src/shared/protocol.js';
import { createTask, tokenizerForTask } from '../src/tasks/index.js';
import { parseFlags, startEngine } from './common.js';

interface Sample {
  step: number;
  learnerRssMiB: number;
  learnerTensors: number;
  workers: { rssMiB: number; tensors: number }[];
}

const f = parseFlags({ steps: 2_000, every: 200, workers: 2, json: false });
await startEngine('cpu');
const root = await mkdtemp(join(tmpdir(), 'grpo-bench-memory-'));
const TASK_OPTIONS = { max_digits: 1, max_depth: 1 };
const task = createTask('arithmetic', { seed: 5, options: TASK_OPTIONS });
const tokenizer = tokenizerForTask(task);
const modelConfig = presetConfig('tiny', tokenizer, { hidden_size: 32, intermediate_size: 48, num_hidden_layers: 1, max_position_embeddings: 64, initializer_range: 0.3 });
const model = LlamaModel.create(modelConfig, 3);
await saveCheckpoint(join(root, 'init'), { config: modelConfig, weights: await model.toHostTensors(), tokenizer });
model.dispose();

const coord = await startCoordinator({ port: 0, token: null, log: silentLogger });
const script = fileURLToPath(new URL('./memory-worker.js', import.meta.url));
const latest: { rssMiB: number; tensors: number }[] = [];
const children: ChildProcess[] = [];
for (let i = 0; i < f.workers; i++) {
  const c = spawn(process.execPath, [script, '--coordinator', coord.url, '--name', `w${i}`, '--every-ms', '1000'], { stdio: ['ignore', 'pipe', 'inherit'] });
  children.push(c);
  latest.push({ rssMiB: NaN, tensors: NaN });
  createInterface({ input: c.stdout! }).on('line', (line) => {
    const r = JSON.parse(line) as { rssMiB: number; tensors: number };
    latest[i] = { rssMiB: r.rssMiB, tensors: r.tensors };
  });
}

const samples: Sample[] = [];
const t0 = Date.now();
try {
  const config = parseConfig({
    backend: 'cpu', seed: 5, task_options: TASK_OPTIONS, coordinator: coord.url, group_size: 4, prompts_per_step: 8, max_gen_len: 6,
    micro_batch_size: 32, lr: 3e-3, lr_schedule: 'constant', warmup_steps: 0, reward_weights: { format: 0.5, partial: 1 },
    eval_samples: 8, eval_interval: 0, save_interval: 0, log_csv: null,
  });
  await runLearner(config, {
    checkpoint: join(root, 'init'),
    out: join(root, 'run'),
    steps: f.steps,
    log: (_level, event, fields = {}) => {
      if (event !== 'step' || (fields.step as number) % f.every !== 0) return;
      const s: Sample = { step: fields.step as number, learnerRssMiB: process.memoryUsage().rss / 2 ** 20, learnerTensors: tf.memory().numTensors, workers: latest.map((w) => ({ ...w })) };
      samples.push(s);
      if (!f.json) console.error(`step ${s.step}: learner ${s.learnerRssMiB.toFixed(0)} MiB ${s.learnerTensors} tensors; workers ${s.workers.map((w) => `${w.rssMiB.toFixed(0)} MiB ${w.tensors} tensors`).join(', ')}`);
    },
  });
} finally {
  for (const c of children) c.kill('SIGTERM');
  await Promise.all(children.map((c) => new Promise((r) => c.once('exit', r))));
  await coord.close();
  await rm(root, { recursive: true, force: true });
}

const first = samples[0];
const last = samples[samples.length - 1];
const summary = {
  steps: f.steps,
  seconds: (Date.now() - t0) / 1000,
  learner: { rssMiB: [first.learnerRssMiB, last.learnerRssMiB], tensors: [first.learnerTensors, last.learnerTensors] },
  workers: first.workers.map((w, i) => ({ rssMiB: [w.rssMiB, last.workers[i].rssMiB], tensors: [w.tensors, last.workers[i].tensors] })),
  samples,
};
if (f.json) console.log(JSON.stringify(summary));
else {
  const r = (x: number[]): string => `${x[0].toFixed(0)} -> ${x[1].toFixed(0)}`;
  console.log(`${f.steps} steps in ${summary.seconds.toFixed(0)} s (samples from step ${first.step} to ${last.step})`);
  console.log(`learner (+ coordinator): RSS ${r(summary.learner.rssMiB)} MiB, numTensors ${r(summary.learner.tensors)}`);
  summary.workers.forEach((w, i) => console.log(`worker ${i}: RSS ${r(w.rssMiB)} MiB, numTensors ${r(w.tensors)}`));
}
