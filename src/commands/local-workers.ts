/**
 * Rollout workers as child processes of `grpo train`: `node <cli.js> worker --coordinator URL ...`
 * with the run's token in GRPO_TOKEN (never on the command line, where `ps` shows it). Their JSON
 * log lines are re-logged through the parent's logger with a `worker` field; other output lines
 * become `worker_output` events. A worker that exits while the run goes on is logged; when all of
 * them have exited, `onAllExited` gets a coded error with the last lines they printed.
 *
 * stop(): SIGTERM to each (a worker finishes its batch and reports it), SIGKILL after
 * STOP_GRACE_MS. If the parent process exits without stop() (a crash), the children are killed.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { GrpoError } from '../shared/errors.js';
import type { ProtocolLogger } from '../shared/protocol.js';

export const STOP_GRACE_MS = 10_000; // 10 s for a worker to finish its batch after SIGTERM
const TAIL_LINES = 5; // last output lines kept per worker for error messages

export interface LocalWorkersOptions {
  cli: string; // path of the compiled cli.js
  count: number;
  url: string; // ws://127.0.0.1:port
  token: string;
  args: string[]; // further `grpo worker` flags
  argsOf?: (i: number) => string[]; // flags of worker i only (its metrics port)
  log: ProtocolLogger;
  onAllExited: (err: GrpoError) => void;
}

export interface LocalWorkers {
  readonly processes: readonly ChildProcess[];
  alive(): number;
  stop(): Promise<void>;
}

const LEVELS = new Set(['debug', 'info', 'warn', 'error']);

/** Re-logs one output line of worker `i`. */
function relay(log: ProtocolLogger, i: number, line: string): void {
  if (line.trim() === '') return;
  try {
    const rec = JSON.parse(line) as Record<string, unknown>;
    if (rec !== null && typeof rec === 'object' && typeof rec.event === 'string') {
      const { t: _t, level, event, ...fields } = rec;
      log(LEVELS.has(level as string) ? (level as 'info') : 'info', event, { worker: i, ...fields });
      return;
    }
  } catch {
    // not a JSON log line: relayed as text below
  }
  log('info', 'worker_output', { worker: i, line });
}

export function startLocalWorkers(o: LocalWorkersOptions): LocalWorkers {
  const procs: ChildProcess[] = [];
  const tails: string[][] = [];
  const exited = new Set<number>();
  let stopping = false;

  const killAll = (): void => {
    for (const [i, p] of procs.entries()) if (!exited.has(i)) p.kill('SIGKILL');
  };
  process.on('exit', killAll);

  for (let i = 0; i < o.count; i++) {
    const argv = [o.cli, 'worker', '--coordinator', o.url, '--name', `local-worker-${i}`, ...o.args, ...(o.argsOf?.(i) ?? [])];
    const p = spawn(process.execPath, argv, {
      env: { ...process.env, GRPO_TOKEN: o.token, GRPO_WORKER_TOKEN: o.token },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    procs.push(p);
    tails.push([]);
    for (const stream of [p.stdout!, p.stderr!]) {
      createInterface({ input: stream }).on('line', (line) => {
        const tail = tails[i];
        tail.push(line);
        if (tail.length > TAIL_LINES) tail.shift();
        relay(o.log, i, line);
      });
    }
    const ended = (code: number | null, signal: NodeJS.Signals | null): void => {
      if (exited.has(i)) return;
      exited.add(i);
      if (stopping) return;
      o.log('warn', 'worker_exited', { worker: i, pid: p.pid, code, signal, alive: o.count - exited.size });
      if (exited.size === o.count) {
        const last = tails.flat().slice(-TAIL_LINES).join(' | ');
        o.onAllExited(
          new GrpoError('GRPO_ERR_WORKERS_EXITED', `all ${o.count} local workers exited (last: code ${code}, signal ${signal}); their last output: ${last || '(none)'}`),
        );
      }
    };
    p.on('exit', ended);
    p.on('error', (err) => {
      o.log('error', 'worker_spawn_failed', { worker: i, error: err.message });
      if (p.pid === undefined) ended(null, null); // never started: no 'exit' will come
    });
  }
  o.log('info', 'workers_started', { count: o.count, pids: procs.map((p) => p.pid), coordinator: o.url });

  return {
    processes: procs,
    alive: () => o.count - exited.size,
    async stop() {
      stopping = true;
      await Promise.all(
        procs.map(async (p, i) => {
          if (exited.has(i)) return;
          const gone = new Promise<void>((r) => p.once('exit', () => r()));
          p.kill('SIGTERM');
          const timer = setTimeout(() => p.kill('SIGKILL'), STOP_GRACE_MS);
          await gone;
          clearTimeout(timer);
        }),
      );
      process.off('exit', killAll);
    },
  };
}

/**
 * Which `--device` each of `count` local workers of `grpo train` gets. A device the user gave
 * goes to all of them. Otherwise, on the WebGPU route with several GPUs that the device-select
 * layer can tell apart, worker i gets GPU (i + 1) mod G: the learner holds GPU 0 (the default),
 * so workers fill the other GPUs first and share GPU 0 only when there are more workers than
 * other GPUs. Anything else (CPU backends, one GPU, no layer to tell identical GPUs apart): null,
 * every worker on the default device as before.
 */
export function localWorkerDevices(count: number, o: { backend: string; device: number | null; gpus: number; deviceSelectLayer: boolean }): (number | null)[] {
  const spread = o.device === null && o.backend === 'webgpu' && o.gpus > 1 && o.deviceSelectLayer;
  return Array.from({ length: count }, (_, i) => (o.device !== null ? o.device : spread ? (i + 1) % o.gpus : null));
}
