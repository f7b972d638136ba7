/**
 * A remote reward: a judge served elsewhere scores a group of completions over HTTP.
 *
 *   POST <url>   content-type: application/json   [authorization: Bearer $GRPO_REMOTE_REWARD_TOKEN]
 *   { "reward": "judge", "items": [ { "prompt": "...", "completion": "...", "meta": ... }, ... ] }
 *   200 -> { "scores": [ 0.7, 1, null, ... ] }   one finite number (or null, "not applicable") per item
 *
 * One request per group (the items share a prompt). Each request has `timeoutMs` to connect,
 * answer and send its whole body. A failed request is retried up to `retries` times after an
 * exponential backoff with jitter: before retry k, a random wait in [d/2, d] with
 * d = min(backoffMs * 2^(k-1), MAX_BACKOFF_MS), or the server's Retry-After when that is longer
 * (capped the same way). Retried: timeouts, connection errors, malformed answers, HTTP 408, 429
 * and 5xx. Not retried: any other 4xx (the request itself is wrong; retrying cannot fix it).
 * At most `maxInFlight` requests of this worker are in flight at once (further groups queue here,
 * before their timeout starts; a group waiting out its backoff holds no slot).
 *
 * Runs on the worker's main thread: it is only I/O, the worker awaits scoring between sampling
 * calls, and the in-flight bound is then per worker, not per reward thread. undici is the client.
 */
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { Agent, request } from 'undici';
import { GrpoError } from '../shared/errors.js';
import type { ErrorCode } from '../shared/errors.js';
import { silentLogger } from '../shared/protocol.js';
import type { ProtocolLogger, RewardErrorInfo } from '../shared/protocol.js';

export const MAX_BACKOFF_MS = 10_000; // 10 s: longest wait before one retry
const MAX_RESPONSE_BYTES = 16 * 1024 * 1024; // 16 MiB: far above any list of scores

export interface RemoteRewardOptions {
  url: string; // http(s) endpoint
  name: string; // reward name: metrics, reward_weights, and "reward" in the request
  timeoutMs: number; // per request, ms
  retries: number; // extra attempts after a failed request
  backoffMs: number; // wait before the first retry, ms; doubles each retry
  maxInFlight: number; // requests in flight at once from this worker
  token?: string | null; // sent as a bearer token when set
  log?: ProtocolLogger;
  random?: () => number; // jitter in [0, 1); Math.random unless a test pins it
}

export interface RemoteItem {
  prompt: string;
  completion: string;
  meta: unknown;
}

export interface RemoteScore {
  values: (number | null)[]; // one per item
  errors: RewardErrorInfo[]; // failed attempts a retry then fixed
}

export interface RemoteRewardStats {
  requests: number; // attempts sent
  failedRequests: number;
  maxInFlight: number; // most requests seen in flight at once
}

interface Failure {
  code: ErrorCode;
  message: string;
  retry: boolean;
  retryAfterMs?: number;
}

/** Checks the options; throws GRPO_ERR_REMOTE_REWARD_CONFIG naming the bad one. */
export function checkRemoteRewardOptions(o: RemoteRewardOptions): void {
  const fail = (msg: string): never => {
    throw new GrpoError('GRPO_ERR_REMOTE_REWARD_CONFIG', msg);
  };
  let url: URL | null = null;
  try {
    url = new URL(o.url);
  } catch {
    fail(`remote_reward_url ${JSON.stringify(o.url)} is not a URL; give e.g. http://judge.example:8000/score`);
  }
  if (url!.protocol !== 'http:' && url!.protocol !== 'https:') fail(`remote_reward_url ${o.url} must be http:// or https://`);
  if (typeof o.name !== 'string' || !/^[A-Za-z_][A-Za-z0-9_.-]{0,63}$/.test(o.name)) {
    fail(`remote_reward_name ${JSON.stringify(o.name)} must be 1-64 letters, digits, _ . - starting with a letter or _`);
  }
  for (const key of ['timeoutMs', 'maxInFlight'] as const) {
    if (!Number.isInteger(o[key]) || o[key] < 1) fail(`remote reward ${key} is ${o[key]}; it must be an integer >= 1`);
  }
  for (const key of ['retries', 'backoffMs'] as const) {
    if (!Number.isInteger(o[key]) || o[key] < 0) fail(`remote reward ${key} is ${o[key]}; it must be an integer >= 0`);
  }
}

/** Seconds or an HTTP date, in ms from now; undefined when absent or unreadable. */
function retryAfterMs(header: string | string[] | undefined): number | undefined {
  const v = Array.isArray(header) ? header[0] : header;
  if (v === undefined) return undefined;
  const seconds = Number(v);
  if (Number.isFinite(seconds) && seconds >= 0) return seconds * 1000;
  const date = Date.parse(v);
  return Number.isNaN(date) ? undefined : Math.max(0, date - Date.now());
}

/** The scores of a 2xx body, or what is wrong with it. */
function parseScores(text: string, n: number): (number | null)[] | string {
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    return `the body is not JSON: ${JSON.stringify(text.slice(0, 80))}`;
  }
  const scores = (body as { scores?: unknown } | null)?.scores;
  if (!Array.isArray(scores)) return 'the body has no "scores" array';
  if (scores.length !== n) return `"scores" has ${scores.length} entries for ${n} items`;
  const bad = scores.findIndex((s) => s !== null && (typeof s !== 'number' || !Number.isFinite(s)));
  if (bad >= 0) return `score ${bad} is ${JSON.stringify(scores[bad])}; scores must be finite numbers or null`;
  return scores as (number | null)[];
}

export class RemoteReward {
  private readonly agent: Agent;
  private readonly log: ProtocolLogger;
  private readonly random: () => number;
  private readonly closing = new AbortController();
  private readonly waiting: (() => void)[] = [];
  private inFlight = 0;
  private readonly counters: RemoteRewardStats = { requests: 0, failedRequests: 0, maxInFlight: 0 };

  constructor(private readonly opts: RemoteRewardOptions) {
    checkRemoteRewardOptions(opts);
    this.log = opts.log ?? silentLogger;
    this.random = opts.random ?? Math.random;
    this.agent = new Agent({
      connections: opts.maxInFlight,
      connect: { timeout: opts.timeoutMs },
      headersTimeout: opts.timeoutMs,
      bodyTimeout: opts.timeoutMs,
      maxResponseSize: MAX_RESPONSE_BYTES,
    });
  }

  get name(): string {
    return this.opts.name;
  }

  stats(): RemoteRewardStats {
    return { ...this.counters };
  }

  /**
   * Scores one group. Throws GRPO_ERR_REWARD_FAILED (cause: the last GRPO_ERR_REMOTE_REWARD_*
   * error) when every attempt failed, or at once on a 4xx that is not worth retrying.
   */
  async score(items: readonly RemoteItem[]): Promise<RemoteScore> {
    const body = JSON.stringify({ reward: this.opts.name, items: items.map(({ prompt, completion, meta }) => ({ prompt, completion, meta })) });
    const attempts = this.opts.retries + 1;
    const errors: RewardErrorInfo[] = [];
    let last: Failure | null = null;
    for (let attempt = 1; attempt <= attempts; attempt++) {
      if (attempt > 1) await this.backoff(attempt - 1, last!.retryAfterMs);
      const t0 = performance.now();
      const result = await this.attempt(body, items.length);
      if (Array.isArray(result)) return { values: result, errors };
      last = result;
      this.counters.failedRequests++;
      errors.push({ reward: this.opts.name, code: result.code, message: result.message });
      const ms = Math.round(performance.now() - t0);
      this.log('warn', 'remote_reward_error', { code: result.code, reward: this.opts.name, attempt, attempts, ms, message: result.message });
      if (!result.retry) break;
    }
    const { code, message } = last!;
    throw new GrpoError(
      'GRPO_ERR_REWARD_FAILED',
      `remote reward ${this.opts.name} failed on a group of ${items.length} after ${errors.length} request(s) (remote_reward_retries ${this.opts.retries}); last error ${code}: ${message}`,
      { cause: new GrpoError(code, message) },
    );
  }

  /** Aborts requests in flight and closes the connections. */
  async close(): Promise<void> {
    this.closing.abort();
    for (const wake of this.waiting.splice(0)) wake();
    await this.agent.destroy().catch(() => undefined);
  }

  private async backoff(retry: number, retryAfter: number | undefined): Promise<void> {
    const d = Math.min(this.opts.backoffMs * 2 ** (retry - 1), MAX_BACKOFF_MS);
    const jittered = d / 2 + (this.random() * d) / 2;
    const wait = Math.min(Math.max(jittered, retryAfter ?? 0), MAX_BACKOFF_MS);
    await sleep(wait, undefined, { signal: this.closing.signal }).catch(() => undefined);
    this.checkOpen();
  }

  private checkOpen(): void {
    if (this.closing.signal.aborted) throw new GrpoError('GRPO_ERR_REWARD_POOL_CLOSED', `remote reward ${this.opts.name} was closed`);
  }

  private async acquire(): Promise<void> {
    while (this.inFlight >= this.opts.maxInFlight) {
      await new Promise<void>((wake) => this.waiting.push(wake));
      this.checkOpen();
    }
    this.inFlight++;
    this.counters.maxInFlight = Math.max(this.counters.maxInFlight, this.inFlight);
  }

  private release(): void {
    this.inFlight--;
    this.waiting.shift()?.();
  }

  /** One request: the scores, or why it failed and whether a retry may help. */
  private async attempt(body: string, n: number): Promise<(number | null)[] | Failure> {
    await this.acquire();
    this.counters.requests++;
    const timeout = AbortSignal.timeout(this.opts.timeoutMs);
    const signal = AbortSignal.any([timeout, this.closing.signal]);
    const headers: Record<string, string> = { 'content-type': 'application/json', accept: 'application/json' };
    if (this.opts.token) headers.authorization = `Bearer ${this.opts.token}`;
    const timedOut = (): Failure => ({
      code: 'GRPO_ERR_REMOTE_REWARD_TIMEOUT',
      message: `${this.opts.url} did not answer in full within ${this.opts.timeoutMs} ms (remote_reward_timeout_ms)`,
      retry: true,
    });
    try {
      const res = await request(this.opts.url, { method: 'POST', headers, body, dispatcher: this.agent, signal });
      let text: string;
      try {
        text = await res.body.text();
      } catch (err) {
        if (timeout.aborted) return timedOut();
        this.checkOpen();
        return { code: 'GRPO_ERR_REMOTE_REWARD_BAD_RESPONSE', message: `reading the answer of ${this.opts.url} failed: ${(err as Error).message}`, retry: true };
      }
      const status = res.statusCode;
      if (status < 200 || status >= 300) {
        const retry = status === 408 || status === 429 || status >= 500;
        const hint = retry ? '' : ' (not retried: fix the request or the judge)';
        return {
          code: 'GRPO_ERR_REMOTE_REWARD_HTTP',
          message: `${this.opts.url} answered HTTP ${status}${hint}: ${JSON.stringify(text.slice(0, 120))}`,
          retry,
          retryAfterMs: retryAfterMs(res.headers['retry-after']),
        };
      }
      const scores = parseScores(text, n);
      if (typeof scores === 'string') {
        return { code: 'GRPO_ERR_REMOTE_REWARD_BAD_RESPONSE', message: `${this.opts.url} answered HTTP ${status}, but ${scores}; expected {"scores": [one number per item]}`, retry: true };
      }
      return scores;
    } catch (err) {
      if (timeout.aborted) return timedOut();
      this.checkOpen();
      const e = err as Error & { code?: string };
      if (e.code === 'UND_ERR_HEADERS_TIMEOUT' || e.code === 'UND_ERR_BODY_TIMEOUT' || e.code === 'UND_ERR_CONNECT_TIMEOUT') return timedOut();
      return { code: 'GRPO_ERR_REMOTE_REWARD_CONNECT', message: `cannot reach ${this.opts.url}: ${e.code ? `${e.code} ` : ''}${e.message}`, retry: true };
    } finally {
      this.release();
    }
  }
}
