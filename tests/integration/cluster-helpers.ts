/**
 * Real processes for the cluster integration tests: `node dist/cli.js <role>` children in their
 * own process groups, their JSON log lines parsed as they arrive, waits on log lines and on the
 * coordinator's GET /healthz (never on fixed sleeps), and a random-weight starting checkpoint
 * for the slow-reward task (tests/fixtures/tasks/slow-reward-task.js).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import type { CoordinatorStats } from '../../src/coordinator/main.js';
import { parseConfig } from '../../src/shared/config.js';
import { initEngine } from '../../src/engine/backend.js';
import { saveCheckpoint } from '../../src/model/checkpoint.js';
import { LlamaModel } from '../../src/model/llama.js';
import { loadTask, tokenizerForTask } from '../../src/tasks/index.js';
import { tinyLlamaConfig } from '../helpers.js';

export const CLI = resolve('dist/cli.js');
export const SLOW_TASK = resolve('tests/fixtures/tasks/slow-reward-task.js');

/** One structured log line of a child (`{t, level, event, ...fields}`). */
export interface LogEvent {
  level: string;
  event: string;
  [field: string]: unknown;
}

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Polls `cond` (sync or async) every `intervalMs` until it returns a value other than false/undefined/null. */
export async function until<T>(cond: () => T | false | null | undefined | Promise<T | false | null | undefined>, timeoutMs: number, what: string, intervalMs = 50): Promise<T> {
  const start = Date.now();
  for (;;) {
    const v = await cond();
    if (v !== false && v !== null && v !== undefined) return v;
    if (Date.now() - start > timeoutMs) throw new Error(`${what}: not met within ${timeoutMs} ms`);
    await sleep(intervalMs);
  }
}

/** Children still running; killed with their groups if this process exits without cleaning up. */
const live = new Set<GrpoProcess>();
process.once('exit', () => {
  for (const p of live) p.killGroup('SIGKILL');
});

/** A `grpo` child process with its output kept line by line. */
export class GrpoProcess {
  readonly child: ChildProcess;
  readonly stdout: string[] = [];
  readonly stderr: string[] = [];
  readonly events: LogEvent[] = [];
  readonly exited: Promise<Exit>;
  exit: Exit | null = null;
  private readonly listeners = new Set<() => void>();

  constructor(
    readonly name: string,
    args: string[],
    env: NodeJS.ProcessEnv = {},
  ) {
    // detached: the child leads its own process group, so kill(-pid) reaches anything it starts
    this.child = spawn(process.execPath, [CLI, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    live.add(this);
    this.exited = new Promise((r) =>
      this.child.once('exit', (code, signal) => {
        live.delete(this);
        this.exit = { code, signal };
        this.notify();
        r(this.exit);
      }),
    );
    createInterface({ input: this.child.stdout! }).on('line', (line) => {
      this.stdout.push(line);
      this.notify();
    });
    createInterface({ input: this.child.stderr! }).on('line', (line) => {
      this.stderr.push(line);
      const e = parseLogLine(line);
      if (e !== null) this.events.push(e);
      this.notify();
    });
  }

  get pid(): number {
    return this.child.pid!;
  }

  /** Log events named `event`. */
  all(event: string): LogEvent[] {
    return this.events.filter((e) => e.event === event);
  }

  /** Resolves with the first value of `find` that is not undefined, re-checked on every output line. */
  waitFor<T>(find: () => T | undefined, timeoutMs: number, what: string): Promise<T> {
    return new Promise((resolve, reject) => {
      const check = (): boolean => {
        const v = find();
        if (v === undefined) {
          if (this.exit === null) return false;
          reject(new Error(`${this.name} exited (${JSON.stringify(this.exit)}) before ${what}; last output:\n${this.tail()}`));
        } else resolve(v);
        clearTimeout(timer);
        this.listeners.delete(check);
        return true;
      };
      const timer = setTimeout(() => {
        this.listeners.delete(check);
        reject(new Error(`${this.name}: ${what} not seen within ${timeoutMs} ms; last output:\n${this.tail()}`));
      }, timeoutMs);
      this.listeners.add(check);
      check();
    });
  }

  /** The first log event named `event` matching `pred`, waiting for it. */
  waitForEvent(event: string, timeoutMs: number, pred: (e: LogEvent) => boolean = () => true): Promise<LogEvent> {
    return this.waitFor(() => this.events.find((e) => e.event === event && pred(e)), timeoutMs, `log event ${event}`);
  }

  /** Signals the whole process group (the child and anything it started). */
  killGroup(signal: NodeJS.Signals): void {
    if (this.exit !== null) return;
    try {
      process.kill(-this.pid, signal);
    } catch {
      // the group is already gone
    }
  }

  tail(lines = 12): string {
    return [...this.stdout, ...this.stderr].slice(-lines).join('\n');
  }

  private notify(): void {
    for (const l of [...this.listeners]) l();
  }
}

export function parseLogLine(line: string): LogEvent | null {
  if (!line.startsWith('{')) return null;
  try {
    const rec = JSON.parse(line) as LogEvent;
    return typeof rec.event === 'string' ? rec : null;
  } catch {
    return null;
  }
}

/** `grpo coordinator` on a free loopback port; resolves once it prints its URL. */
export async function startCoordinatorProcess(token: string, timeoutMs = 30_000): Promise<{ proc: GrpoProcess; url: string; http: string }> {
  const proc = new GrpoProcess('coordinator', ['coordinator', '--port', '0'], { GRPO_TOKEN: token });
  const url = await proc.waitFor(() => proc.stdout.map((l) => /coordinator listening on (ws:\/\/\S+)/.exec(l)?.[1]).find((u) => u !== undefined), timeoutMs, 'the listening line');
  return { proc, url, http: url.replace(/^ws:/, 'http:') };
}

/** GET /healthz of a coordinator (`http` = http://host:port). */
export async function healthz(http: string): Promise<CoordinatorStats> {
  const res = await fetch(`${http}/healthz`, { signal: AbortSignal.timeout(5_000) });
  if (!res.ok) throw new Error(`GET ${http}/healthz answered ${res.status}`);
  return (await res.json()) as CoordinatorStats;
}

/** `grpo worker` with the token in GRPO_TOKEN (never on the command line), allowed to import the test tasks. */
export function startWorkerProcess(url: string, token: string, name: string, extra: string[] = []): GrpoProcess {
  const args = ['worker', '--coordinator', url, '--name', name, '--backend', 'cpu', '--worker-capacity', '1', '--reward-threads', '1', '--allowed-modules', dirname(SLOW_TASK), ...extra];
  return new GrpoProcess(name, args, { GRPO_TOKEN: token });
}

/**
 * A random-weight starting policy for the slow-reward task: a one-layer Llama over the task's
 * character tokenizer. It answers nonsense, which is all the cluster tests need: the sampling,
 * scoring, accounting and weights paths are the same for a good model.
 */
export async function writeSlowTaskCheckpoint(dir: string, taskOptions: Record<string, unknown>): Promise<void> {
  await initEngine({ backend: 'cpu', log: () => {} });
  const task = await loadTask(SLOW_TASK, { seed: 1, options: taskOptions });
  const tokenizer = tokenizerForTask(task);
  const config = tinyLlamaConfig(tokenizer, { num_attention_heads: 2, num_key_value_heads: 2 });
  const model = LlamaModel.create(config, 7);
  try {
    await saveCheckpoint(dir, {
      config,
      weights: await model.toHostTensors(),
      tokenizer,
      trainerState: { step: 0, policyVersion: 0, dataCursor: null, rng: null, config: parseConfig({ task: SLOW_TASK, seed: 1, task_options: taskOptions }) },
    });
  } finally {
    model.dispose();
  }
}

/** SIGKILL to every process group still running, then waits for their exits. */
export async function killAll(procs: readonly GrpoProcess[]): Promise<void> {
  for (const p of procs) p.killGroup('SIGKILL');
  await Promise.all(procs.map((p) => p.exited));
}

/** True when the compiled CLI exists (the tests run it; `npx tsc -p .` builds it). */
export function cliBuilt(): boolean {
  return existsSync(CLI);
}
