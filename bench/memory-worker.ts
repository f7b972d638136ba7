/**
 * One rollout worker for bench/memory.ts, in its own process: runs startWorker() and prints a JSON
 * line `{"rssMiB":..,"tensors":..,"groups":..}` every `--every-ms`, so the benchmark can read the
 * worker's resident memory and tf.memory().numTensors over a long run. Stops on SIGTERM.
 */
import { tf } from '../src/engine/tf.js';
import { startWorker } from '../src/rollout-worker/main.js';
import { silentLogger } from '../src/shared/protocol.js';
import { parseFlags } from './common.js';

const f = parseFlags({ coordinator: '', name: 'bench-worker', capacity: 8, 'every-ms': 2_000, backend: 'cpu' });
const w = await startWorker({ coordinator: f.coordinator, token: null, name: f.name, capacity: f.capacity, rewardThreads: 1, backend: f.backend as 'cpu', log: silentLogger });
const report = (): void => {
  const s = w.stats();
  process.stdout.write(`${JSON.stringify({ rssMiB: process.memoryUsage().rss / 2 ** 20, tensors: tf.memory().numTensors, groups: s.groupsDone })}\n`);
};
const timer = setInterval(report, f['every-ms']);
process.once('SIGTERM', () => {
  clearInterval(timer);
  void w.stop().then(() => process.exit(0));
});
