/**
 * The remote reward against a real loopback HTTP server (node:http on port 0) that answers,
 * is slow, fails transiently, answers malformed JSON, rejects, or hangs; and through a real
 * RewardPool (piscina threads from dist/: build first with `npx tsc -p .`).
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import type { GrpoError } from '../../src/shared/errors.js';
import { RemoteReward, type RemoteRewardOptions } from '../../src/rollout-worker/remote-reward.js';
import { RewardPool } from '../../src/rollout-worker/reward-pool.js';
import { rejection } from './helpers.js';

/** What the server does with one request: answer (status, body, headers), or hang. */
type Behaviour = { status?: number; body?: string; headers?: Record<string, string>; delayMs?: number } | 'hang';

interface Received {
  headers: IncomingMessage['headers'];
  body: { reward: string; items: { prompt: string; completion: string; meta: unknown }[] };
}

interface Judge {
  url: string;
  received: Received[];
  maxConcurrent: number;
  close(): Promise<void>;
}

const scoresFor = (b: Received['body']): string => JSON.stringify({ scores: b.items.map((it) => it.completion.length) });

/** A judge whose k-th request gets behaviours[k] (the last one repeats); default: lengths as scores. */
async function judge(behaviours: Behaviour[] = [{}]): Promise<Judge> {
  const received: Received[] = [];
  const sockets = new Set<Socket>();
  let concurrent = 0;
  const state = { maxConcurrent: 0 };
  const server: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
    let raw = '';
    req.on('data', (d: Buffer) => (raw += d.toString()));
    req.on('end', () => {
      const body = JSON.parse(raw) as Received['body'];
      received.push({ headers: req.headers, body });
      const b = behaviours[Math.min(received.length - 1, behaviours.length - 1)];
      if (b === 'hang') return; // never answers; the socket is destroyed at close
      concurrent++;
      state.maxConcurrent = Math.max(state.maxConcurrent, concurrent);
      setTimeout(() => {
        concurrent--;
        res.writeHead(b.status ?? 200, { 'content-type': 'application/json', ...b.headers });
        res.end(b.body ?? scoresFor(body));
      }, b.delayMs ?? 0);
    });
  });
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as { port: number };
  return {
    url: `http://127.0.0.1:${port}/score`,
    received,
    get maxConcurrent() {
      return state.maxConcurrent;
    },
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  await Promise.all(cleanups.splice(0).map((c) => c()));
});

async function setup(behaviours: Behaviour[], opts: Partial<RemoteRewardOptions> = {}) {
  const j = await judge(behaviours);
  const logs: { event: string; fields: Record<string, unknown> }[] = [];
  const remote = new RemoteReward({
    url: j.url,
    name: 'judge',
    timeoutMs: 1_000,
    retries: 2,
    backoffMs: 5,
    maxInFlight: 4,
    random: () => 0.5,
    log: (_level, event, fields = {}) => logs.push({ event, fields }),
    ...opts,
  });
  cleanups.push(() => remote.close(), () => j.close());
  return { j, remote, logs };
}

const items = (...completions: string[]) => completions.map((completion) => ({ prompt: '2+2=', completion, meta: { answer: '4' } }));

describe('RemoteReward', () => {
  it('POSTs the group as JSON and returns the scores in order', async () => {
    const { j, remote } = await setup([{}], { token: 's3cret' });
    const out = await remote.score(items('4', '44', '444'));
    expect(out).toEqual({ values: [1, 2, 3], errors: [] });
    expect(j.received).toHaveLength(1);
    expect(j.received[0].body).toEqual({ reward: 'judge', items: items('4', '44', '444') });
    expect(j.received[0].headers['content-type']).toBe('application/json');
    expect(j.received[0].headers.authorization).toBe('Bearer s3cret');
  });

  it('accepts null scores ("not applicable") and waits for a slow judge within the timeout', async () => {
    const { remote } = await setup([{ delayMs: 300, body: '{"scores":[0.5,null]}' }]);
    expect((await remote.score(items('a', 'b'))).values).toEqual([0.5, null]);
  });

  it('retries transient 503s with backoff and reports the failed attempts', async () => {
    const { j, remote, logs } = await setup([{ status: 503, body: 'busy' }, { status: 503, body: 'busy' }, {}]);
    const out = await remote.score(items('x'));
    expect(out.values).toEqual([1]);
    expect(out.errors.map((e) => e.code)).toEqual(['GRPO_ERR_REMOTE_REWARD_HTTP', 'GRPO_ERR_REMOTE_REWARD_HTTP']);
    expect(out.errors[0].message).toContain('HTTP 503');
    expect(j.received).toHaveLength(3);
    expect(logs.filter((l) => l.event === 'remote_reward_error').map((l) => l.fields.attempt)).toEqual([1, 2]);
  });

  it('honours Retry-After on 429 (waits at least that long)', async () => {
    const { remote } = await setup([{ status: 429, headers: { 'retry-after': '0.3' } }, {}]);
    const t0 = performance.now();
    expect((await remote.score(items('ab'))).values).toEqual([2]);
    expect(performance.now() - t0).toBeGreaterThanOrEqual(290);
  });

  it('retries malformed answers: not JSON, no scores, wrong length, a non-finite score', async () => {
    const { remote } = await setup([{ body: '{"scores": [1,' }, { body: '{"score": 1}' }, { body: '{"scores":[1,2]}' }, { body: '{"scores":["1"]}' }, {}], { retries: 4 });
    const out = await remote.score(items('abc'));
    expect(out.values).toEqual([3]);
    expect(out.errors.map((e) => e.code)).toEqual(Array(4).fill('GRPO_ERR_REMOTE_REWARD_BAD_RESPONSE'));
    expect(out.errors.map((e) => e.message)).toEqual([
      expect.stringContaining('not JSON'),
      expect.stringContaining('no "scores" array'),
      expect.stringContaining('2 entries for 1 items'),
      expect.stringContaining('finite numbers or null'),
    ]);
  });

  it('gives up on a judge that hangs: every attempt times out, then GRPO_ERR_REWARD_FAILED', async () => {
    const { j, remote } = await setup(['hang'], { timeoutMs: 200, retries: 1 });
    const err = await rejection(remote.score(items('a')));
    expect(err.code).toBe('GRPO_ERR_REWARD_FAILED');
    expect((err.cause as GrpoError).code).toBe('GRPO_ERR_REMOTE_REWARD_TIMEOUT');
    expect(err.message).toContain('after 2 request(s)');
    expect(j.received).toHaveLength(2);
  });

  it('does not retry a 4xx other than 408 and 429', async () => {
    const { j, remote } = await setup([{ status: 400, body: '{"error":"bad item"}' }, {}]);
    const err = await rejection(remote.score(items('a')));
    expect((err.cause as GrpoError).code).toBe('GRPO_ERR_REMOTE_REWARD_HTTP');
    expect(err.message).toContain('not retried');
    expect(j.received).toHaveLength(1);
  });

  it('reports a refused connection as GRPO_ERR_REMOTE_REWARD_CONNECT', async () => {
    const j = await judge();
    await j.close(); // the port is free again: connections are refused
    const remote = new RemoteReward({ url: j.url, name: 'judge', timeoutMs: 1_000, retries: 1, backoffMs: 5, maxInFlight: 1 });
    cleanups.push(() => remote.close());
    const err = await rejection(remote.score(items('a')));
    expect((err.cause as GrpoError).code).toBe('GRPO_ERR_REMOTE_REWARD_CONNECT');
  });

  it('keeps at most maxInFlight requests in flight', async () => {
    const { j, remote } = await setup([{ delayMs: 100 }], { maxInFlight: 3 });
    const outs = await Promise.all(Array.from({ length: 10 }, (_, i) => remote.score(items('x'.repeat(i + 1)))));
    expect(outs.map((o) => o.values[0])).toEqual(Array.from({ length: 10 }, (_, i) => i + 1));
    expect(j.maxConcurrent).toBe(3);
    expect(remote.stats()).toEqual({ requests: 10, failedRequests: 0, maxInFlight: 3 });
  });

  it('rejects bad options with GRPO_ERR_REMOTE_REWARD_CONFIG', () => {
    const base = { url: 'http://127.0.0.1:1/x', name: 'judge', timeoutMs: 1, retries: 0, backoffMs: 0, maxInFlight: 1 };
    for (const bad of [{ url: 'ftp://x/y' }, { url: 'not a url' }, { name: 'has space' }, { maxInFlight: 0 }, { retries: -1 }]) {
      expect(() => new RemoteReward({ ...base, ...bad })).toThrow(expect.objectContaining({ code: 'GRPO_ERR_REMOTE_REWARD_CONFIG' }));
    }
  });

  it('close() ends a request in flight at once with GRPO_ERR_REWARD_POOL_CLOSED', async () => {
    const { remote } = await setup(['hang'], { timeoutMs: 30_000 });
    const failure = rejection(remote.score(items('a'))); // handled from the start: it rejects during close()
    await new Promise((r) => setTimeout(r, 100));
    const t0 = performance.now();
    await remote.close();
    expect((await failure).code).toBe('GRPO_ERR_REWARD_POOL_CLOSED');
    expect(performance.now() - t0).toBeLessThan(10_000); // not the 30 s timeout
  });
});

describe('RemoteReward in a RewardPool', () => {
  async function poolWith(behaviours: Behaviour[], extra: { weights?: Record<string, number>; name?: string } = {}) {
    const j = await judge(behaviours);
    const pool = new RewardPool({
      task: 'arithmetic',
      taskSeed: 1,
      threads: 1,
      rewardWeights: extra.weights,
      remote: { url: j.url, name: extra.name ?? 'judge', weight: 0.5, timeoutMs: 300, retries: 1, backoffMs: 5, maxInFlight: 2 },
      log: () => {},
    });
    cleanups.push(() => pool.close(), () => j.close());
    return { j, pool };
  }

  it('scores the task rewards in threads and the remote one once per group', async () => {
    const { j, pool } = await poolWith([{}]);
    expect((await pool.ready()).rewards).toEqual([
      { name: 'correct', weight: 1 },
      { name: 'judge', weight: 0.5, scope: 'group' },
    ]);
    const out = await pool.score(items('4', '44'));
    expect(out.rewards).toEqual([
      { correct: 1, judge: 1 },
      { correct: 0, judge: 2 },
    ]);
    expect(j.received).toHaveLength(1);
    expect(pool.remoteStats()).toMatchObject({ requests: 1, failedRequests: 0 });
  });

  it('takes the weight from reward_weights by name; weight 0 never calls the judge', async () => {
    const { pool } = await poolWith([{}], { weights: { judge: 2 } });
    expect((await pool.ready()).rewards.at(-1)).toEqual({ name: 'judge', weight: 2, scope: 'group' });
    const { j: j0, pool: p0 } = await poolWith([{}], { weights: { judge: 0 } });
    expect((await p0.score(items('4'))).rewards).toEqual([{ correct: 1 }]);
    expect(j0.received).toHaveLength(0);
  });

  it('a judge that keeps hanging fails the group with GRPO_ERR_REWARD_FAILED', async () => {
    const { pool } = await poolWith(['hang']);
    const err = await rejection(pool.score(items('4')));
    expect(err.code).toBe('GRPO_ERR_REWARD_FAILED');
    expect((err.cause as GrpoError).code).toBe('GRPO_ERR_REMOTE_REWARD_TIMEOUT');
  });

  it('a remote name that the task already uses is GRPO_ERR_REMOTE_REWARD_CONFIG', async () => {
    const { pool } = await poolWith([{}], { name: 'correct' });
    expect((await rejection(pool.ready())).code).toBe('GRPO_ERR_REMOTE_REWARD_CONFIG');
  });
});
