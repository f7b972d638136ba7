/**
 * The distributed trainer's throughput, with a real `grpo coordinator` child process:
 *
 *   sampling   groups per second with 1, 2, 4, 8 `grpo worker` processes when the reward
 *              dominates: the slow-reward task (tests/fixtures/tasks/slow-reward-task.js) answers
 *              each reward call after --latency ms, like a remote judge. A stand-in learner (no
 *              training) keeps groups enqueued and admits every result at once. The reward pool
 *              runs one call per thread, so one worker scores at most --reward-threads completions
 *              at a time: the reward-bound ceiling is
 *              workers * min(reward_threads, capacity * group_size) / (group_size * latency).
 *   ceiling    the coordinator's own limit: leases and groups per second with in-process workers
 *              that answer every lease at once (no model, no reward).
 *   broadcast  seconds and bytes per weights version from the learner to N workers (in-process
 *              receivers that assemble and verify every version), for the reference model
 *              (REFERENCE_CONFIG, ~0.8 M parameters) in f32 and bf16.
 *
 *   npx tsc -p . && npx tsc -p bench && node dist-bench/bench/cluster.js [--part all|sampling|ceiling|broadcast]
 *       [--workers 1,2,4,8] [--latency 50] [--group-size 4] [--reward-threads 1] [--capacity 1]
 *       [--max-gen-len 4] [--backend auto] [--warmup 3] [--seconds 10]
 *       [--ceiling-workers 1,4,16] [--ceiling-capacity 1,8] [--ceiling-seconds 5]
 *       [--broadcast-workers 1,4,8] [--versions 5] [--json]
 *
 * Run from the repository root. Each configuration gets a fresh coordinator and fresh workers.
 */
import { randomBytes } from 'node:crypto';
import { runSpecOf } from '../src/learner/main.js';
import { parseConfig } from '../src/shared/config.js';
import { LlamaModel } from '../src/model/llama.js';
import { presetConfig, REFERENCE_CONFIG } from '../src/model/presets.js';
import type { WeightsEncoding } from '../src/shared/protocol.js';
import { loadTask, tokenizerForTask } from '../src/tasks/index.js';
import { ProtocolClient } from '../src/shared/ws-client.js';
import { median, parseFlags, startEngine } from './common.js';
import { StandInLearner, TrivialWorker, WeightsReceiver } from './cluster-clients.js';
import { checkLayout, cpuSeconds, healthz, selfCpuSeconds, sleep, SLOW_TASK, startCoordinator, startWorker, until, type Child } from './cluster-procs.js';

const flags = parseFlags({
  part: 'all',
  workers: '1,2,4,8',
  latency: 50, // ms per reward call
  'group-size': 4,
  'reward-threads': 1,
  capacity: 1,
  'max-gen-len': 4,
  backend: 'auto', // workers' engine, as `grpo train` starts them
  warmup: 3, // s before counting
  seconds: 10, // s counted
  'ceiling-workers': '1,4,16',
  'ceiling-capacity': '1,8',
  'ceiling-seconds': 5,
  'broadcast-workers': '1,4,8',
  versions: 5, // timed versions per encoding (after one untimed)
  json: false,
});

const list = (s: string): number[] => s.split(',').map(Number);
const token = (): string => randomBytes(12).toString('hex');
const round = (x: number, digits = 2): number => Number(x.toFixed(digits));

function report(result: Record<string, unknown>, line: string): void {
  console.log(flags.json ? JSON.stringify(result) : line);
}

/** Deltas of the `read` counters over `seconds` after `warmup` seconds, and CPU seconds of `pids` and of this process. */
async function window(read: () => Promise<number[]>, pids: number[], seconds: number): Promise<{ deltas: number[]; seconds: number; cpu: number[]; selfCpu: number }> {
  await sleep(flags.warmup * 1000);
  const c0 = await read();
  const cpu0 = pids.map(cpuSeconds);
  const self0 = selfCpuSeconds();
  const t0 = performance.now();
  await sleep(seconds * 1000);
  const c1 = await read();
  const elapsed = (performance.now() - t0) / 1000;
  return { deltas: c1.map((c, i) => c - c0[i]), seconds: elapsed, cpu: pids.map((p, i) => cpuSeconds(p) - cpu0[i]), selfCpu: selfCpuSeconds() - self0 };
}

async function sampling(): Promise<void> {
  const G = flags['group-size'];
  const taskOptions = { latency_ms: flags.latency };
  const task = await loadTask(SLOW_TASK, { seed: 1, options: taskOptions });
  const tokenizer = tokenizerForTask(task);
  const model = LlamaModel.create(presetConfig('tiny', tokenizer), 1); // `grpo train`'s default size
  const weights = await model.toHostTensors();
  const config = parseConfig({ task: SLOW_TASK, task_options: taskOptions, group_size: G, max_gen_len: flags['max-gen-len'], seed: 1 });
  const rewardWeights = Object.fromEntries(task.rewards.map((r) => [r.name, r.weight ?? 1]));
  const spec = runSpecOf('bench-sampling', config, model, { tokenizer, task, moduleRewards: [], rewardWeights });
  model.dispose();
  const makeGroup = (groupId: string, i: number) => {
    const ex = task.example('train', i);
    return { groupId, promptIndex: i, prompt: ex.prompt, meta: ex.meta, groupSize: G };
  };

  for (const n of list(flags.workers)) {
    const t = token();
    const coord = await startCoordinator(t);
    const workers: Child[] = [];
    const learner = new StandInLearner(coord.url, t, makeGroup, 2 * n * flags.capacity + 4, spec);
    try {
      await learner.start();
      await learner.client.publishWeights(weights, 0, 'f32');
      for (let i = 0; i < n; i++) {
        workers.push(startWorker(coord.url, t, `bench-w${i}`, { capacity: flags.capacity, rewardThreads: flags['reward-threads'], backend: flags.backend }));
      }
      await until(async () => ((await healthz(coord.http)).workers.filter((w) => w.ready).length === n ? true : undefined), 180_000, `${n} workers ready`);
      const w = await window(async () => [learner.results], [coord.child.pid, ...workers.map((x) => x.pid)], flags.seconds);
      const groupsPerSecond = w.deltas[0] / w.seconds;
      // reward calls in flight per worker: one per thread, and no more than its groups' completions
      const ideal = (n * Math.min(flags['reward-threads'], flags.capacity * G)) / ((G * flags.latency) / 1000);
      const engine = workers[0].firstLines().map((l) => /"event":"engine".*"backend":"([^"]+)"/.exec(l)?.[1]).find((b) => b !== undefined);
      const workerCores = w.cpu.slice(1).reduce((a, b) => a + b, 0) / w.seconds;
      const result = {
        bench: 'cluster-sampling',
        workers: n,
        groupsPerSecond: round(groupsPerSecond),
        completionsPerSecond: round(groupsPerSecond * G, 1),
        rewardBoundGroupsPerSecond: round(ideal),
        efficiency: round(groupsPerSecond / ideal),
        workerCores: round(workerCores),
        coordinatorCores: round(w.cpu[0] / w.seconds, 3),
        groups: w.deltas[0],
        seconds: round(w.seconds),
        groupSize: G,
        latencyMs: flags.latency,
        rewardThreads: flags['reward-threads'],
        capacity: flags.capacity,
        backend: flags.backend,
        workerEngine: engine ?? 'unknown', // what --backend resolved to in the workers
      };
      report(
        result,
        `sampling  ${n} worker(s): ${result.groupsPerSecond} groups/s (${result.completionsPerSecond} completions/s), reward bound ${result.rewardBoundGroupsPerSecond}, ` +
          `efficiency ${result.efficiency}; workers (${result.workerEngine}) used ${result.workerCores} cores, coordinator ${result.coordinatorCores}`,
      );
    } finally {
      await Promise.all(workers.map((x) => x.stop()));
      await learner.close();
      await coord.child.stop('SIGTERM');
    }
  }
}

async function ceiling(): Promise<void> {
  const G = 2;
  const makeGroup = (groupId: string, i: number) => ({ groupId, promptIndex: i, prompt: 'p', meta: null, groupSize: G });
  for (const capacity of list(flags['ceiling-capacity'])) {
    for (const n of list(flags['ceiling-workers'])) {
      const t = token();
      const coord = await startCoordinator(t);
      const learner = new StandInLearner(coord.url, t, makeGroup, 256, null); // the ledger pauses leasing at 512 held
      const workers = Array.from({ length: n }, (_, i) => new TrivialWorker(coord.url, t, `trivial-${i}`, capacity));
      try {
        await Promise.all(workers.map((w) => w.start()));
        await learner.start();
        const w = await window(async () => [learner.results, (await healthz(coord.http)).ledger.leases], [coord.child.pid], flags['ceiling-seconds']);
        const result = {
          bench: 'cluster-ceiling',
          workers: n,
          capacity,
          groupsPerSecond: Math.round(w.deltas[0] / w.seconds),
          leasesPerSecond: Math.round(w.deltas[1] / w.seconds),
          coordinatorCores: round(w.cpu[0] / w.seconds),
          clientsCores: round(w.selfCpu / w.seconds),
          groupSize: G,
          seconds: round(w.seconds),
        };
        report(
          result,
          `ceiling   ${n} trivial worker(s) x capacity ${capacity}: ${result.leasesPerSecond} leases/s, ${result.groupsPerSecond} groups/s; ` +
            `coordinator used ${result.coordinatorCores} cores, the clients' process ${result.clientsCores}`,
        );
      } finally {
        await Promise.all(workers.map((x) => x.close()));
        await learner.close();
        await coord.child.stop('SIGTERM');
      }
    }
  }
}

async function broadcast(): Promise<void> {
  const model = LlamaModel.create(REFERENCE_CONFIG, 1);
  const weights = await model.toHostTensors();
  const params = model.numParams();
  model.dispose();
  for (const n of list(flags['broadcast-workers'])) {
    const t = token();
    const coord = await startCoordinator(t);
    const learner = new ProtocolClient({ url: coord.url, role: 'learner', name: 'bench-learner', token: t }); // uploads only
    const receivers = Array.from({ length: n }, (_, i) => new WeightsReceiver(coord.url, t, `receiver-${i}`));
    let version = 0;
    try {
      await learner.start();
      await Promise.all(receivers.map((r) => r.start()));
      for (const encoding of ['f32', 'bf16'] as WeightsEncoding[]) {
        const total: number[] = [];
        const upload: number[] = [];
        const perWorkerBytes: number[] = [];
        let payload = 0;
        for (let k = 0; k <= flags.versions; k++) {
          version += 1;
          const sent0 = (await healthz(coord.http)).weights.bytesSent;
          const t0 = performance.now();
          await learner.publishWeights(weights, version, encoding);
          const up = performance.now() - t0;
          const v = version;
          await until(() => (receivers.every((r) => r.arrived.has(v)) ? true : undefined), 60_000, `version ${v} at ${n} workers`);
          const last = Math.max(...receivers.map((r) => r.arrived.get(v)!));
          const h = await healthz(coord.http);
          payload = h.weights.bytes;
          if (k === 0) continue; // the first version warms up buffers and code paths
          total.push((last - t0) / 1000);
          upload.push(up / 1000);
          perWorkerBytes.push((h.weights.bytesSent - sent0) / n);
        }
        const result = {
          bench: 'cluster-broadcast',
          workers: n,
          encoding,
          params,
          payloadBytes: payload,
          bytesPerWorker: Math.round(median(perWorkerBytes)),
          secondsToAllWorkers: round(median(total), 4),
          uploadSeconds: round(median(upload), 4),
          fanoutMBPerSecond: round((median(perWorkerBytes) * n) / median(total) / 1e6, 1),
          versions: flags.versions,
        };
        report(
          result,
          `broadcast ${n} worker(s) ${encoding}: ${result.secondsToAllWorkers} s per version to all workers (upload ${result.uploadSeconds} s), ` +
            `${(payload / 1e6).toFixed(2)} MB payload, ${(result.bytesPerWorker / 1e6).toFixed(2)} MB sent per worker, ${result.fanoutMBPerSecond} MB/s out`,
        );
      }
    } finally {
      await Promise.all(receivers.map((r) => r.close()));
      await learner.close();
      await coord.child.stop('SIGTERM');
    }
  }
}

async function main(): Promise<void> {
  checkLayout();
  const info = await startEngine('cpu'); // the bench process only builds models and copies weights
  const parts = flags.part === 'all' ? ['sampling', 'ceiling', 'broadcast'] : [flags.part];
  if (!flags.json) console.log(`cluster bench: bench process on ${info.backend}; coordinator and workers are dist/cli.js child processes`);
  for (const part of parts) {
    if (part === 'sampling') await sampling();
    else if (part === 'ceiling') await ceiling();
    else if (part === 'broadcast') await broadcast();
    else throw new Error(`unknown --part ${part}; use all, sampling, ceiling or broadcast`);
  }
}

await main();
