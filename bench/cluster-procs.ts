/**
 * Child processes of the cluster benchmark: `grpo coordinator` and `grpo worker` from the compiled
 * CLI (dist/cli.js; build it with `npx tsc -p .`), each in its own process group, the token in
 * GRPO_TOKEN; plus GET /healthz and a child's CPU time from /proc (to tell whether the
 * coordinator or the clients are the bottleneck).
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import type { CoordinatorStats } from '../src/coordinator/main.js';

export const CLI = resolve('dist/cli.js');
export const SLOW_TASK = resolve('tests/fixtures/tasks/slow-reward-task.js');

/** Fails early, with what to do, when run from elsewhere than the repository root or before a build. */
export function checkLayout(): void {
  for (const [path, fix] of [[CLI, 'build it with `npx tsc -p .`'], [SLOW_TASK, 'run the benchmark from the repository root']]) {
    if (!existsSync(path)) throw new Error(`${path} is missing; ${fix}`);
  }
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Polls `cond` every 50 ms until it returns a value other than undefined. */
export async function until<T>(cond: () => Promise<T | undefined> | T | undefined, timeoutMs: number, what: string): Promise<T> {
  const start = Date.now();
  for (;;) {
    const v = await cond();
    if (v !== undefined) return v;
    if (Date.now() - start > timeoutMs) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await sleep(50);
  }
}

export class Child {
  readonly proc: ChildProcess;
  readonly exited: Promise<void>;
  private done = false;
  private readonly lines: string[] = []; // the last 200 output lines
  private readonly head: string[] = []; // the first 50 (start-up events such as `engine`)

  constructor(args: string[], token: string) {
    this.proc = spawn(process.execPath, [CLI, ...args], { env: { ...process.env, GRPO_TOKEN: token }, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    this.exited = new Promise((r) =>
      this.proc.once('exit', () => {
        this.done = true;
        r();
      }),
    );
    for (const s of [this.proc.stdout!, this.proc.stderr!]) {
      createInterface({ input: s }).on('line', (l) => {
        if (this.head.length < 50) this.head.push(l);
        this.lines.push(l);
        if (this.lines.length > 200) this.lines.shift();
      });
    }
  }

  get pid(): number {
    return this.proc.pid!;
  }

  /** The last output lines (stdout and stderr interleaved). */
  output(): readonly string[] {
    return this.lines;
  }

  /** The first output lines. */
  firstLines(): readonly string[] {
    return this.head;
  }

  /** Signals the child's process group and waits for the child to exit. */
  async stop(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    if (!this.done) {
      try {
        process.kill(-this.pid, signal);
      } catch {
        // already gone
      }
    }
    await this.exited;
  }
}

/** `grpo coordinator` on a free loopback port. */
export async function startCoordinator(token: string): Promise<{ child: Child; url: string; http: string }> {
  const child = new Child(['coordinator', '--port', '0'], token);
  const url = await until(() => child.output().map((l) => /coordinator listening on (ws:\/\/\S+)/.exec(l)?.[1]).find((u) => u !== undefined), 30_000, 'coordinator start');
  return { child, url, http: url.replace(/^ws:/, 'http:') };
}

export interface WorkerFlags {
  capacity: number;
  rewardThreads: number;
  backend: string;
}

export function startWorker(url: string, token: string, name: string, f: WorkerFlags): Child {
  return new Child(['worker', '--coordinator', url, '--name', name, '--worker-capacity', String(f.capacity), '--reward-threads', String(f.rewardThreads), '--backend', f.backend, '--allowed-modules', dirname(SLOW_TASK)], token);
}

export async function healthz(http: string): Promise<CoordinatorStats> {
  const res = await fetch(`${http}/healthz`, { signal: AbortSignal.timeout(10_000) });
  return (await res.json()) as CoordinatorStats;
}

let ticksPerSecond: number | null = null;

/** User + system CPU seconds a process has used so far (Linux /proc). */
export function cpuSeconds(pid: number): number {
  ticksPerSecond ??= Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' '); // fields from the 3rd on; the name may hold spaces
  return (Number(fields[11]) + Number(fields[12])) / ticksPerSecond; // utime, stime (fields 14, 15)
}

/** CPU seconds of this process (all threads). */
export function selfCpuSeconds(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
}
